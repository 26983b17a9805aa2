//! Broken answers on purpose: bodies cut short, reset, dripped, unsized or
//! not JSON, so a client's handling of each can be tested.

use std::io;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::conn::{sleep, Conn};
use crate::http::write_head;

impl Conn {
    /// [`crate::Behavior::Truncated`]: a `Content-Length` larger than the
    /// bytes sent (half of a completion), then the connection is closed.
    pub(crate) async fn truncated(&mut self, model: &str, request: &Value) -> io::Result<bool> {
        self.completion_body(model, request, None, 0);
        let claimed = self.body.len();
        self.out.clear();
        write_head(&mut self.out, 200, Some(claimed), None, true);
        self.out.extend_from_slice(&self.body[..claimed / 2]);
        self.stream.write_all(&self.out).await?;
        let _ = self.stream.shutdown().await;
        Ok(false)
    }

    /// [`crate::Behavior::ResetMidBody`]: half of the body, then a reset.
    pub(crate) async fn reset_mid_body(
        &mut self,
        model: &str,
        request: &Value,
        keep_alive: bool,
    ) -> io::Result<bool> {
        self.completion_body(model, request, None, 0);
        let len = self.body.len();
        self.out.clear();
        write_head(&mut self.out, 200, Some(len), None, !keep_alive);
        self.out.extend_from_slice(&self.body[..len / 2]);
        self.stream.write_all(&self.out).await?;
        // Give the bytes time to leave before the reset discards the send queue.
        tokio::time::sleep(Duration::from_millis(10)).await;
        #[allow(deprecated)] // A zero linger never blocks on close.
        let _ = self.stream.set_linger(Some(Duration::ZERO));
        Ok(false)
    }

    /// [`crate::Behavior::Drip`]: a completion one byte every `interval`.
    pub(crate) async fn drip(
        &mut self,
        model: &str,
        request: &Value,
        interval: Duration,
        keep_alive: bool,
    ) -> io::Result<bool> {
        self.completion_body(model, request, None, 0);
        self.out.clear();
        write_head(&mut self.out, 200, Some(self.body.len()), None, !keep_alive);
        self.stream.write_all(&self.out).await?;
        for i in 0..self.body.len() {
            sleep(interval).await;
            let byte = [self.body[i]];
            self.stream.write_all(&byte).await?;
        }
        self.finish(keep_alive).await
    }

    /// [`crate::Behavior::NonJson`]: 200 with an HTML page.
    pub(crate) async fn non_json(&mut self, keep_alive: bool) -> io::Result<bool> {
        self.body.clear();
        self.body.extend_from_slice(
            b"<html><head><title>502 Bad Gateway</title></head>\
              <body>upstream sent an invalid response</body></html>",
        );
        self.respond(200, None, keep_alive).await
    }

    /// [`crate::Behavior::BigBodyUnsized`]: a padded completion with no
    /// `Content-Length`, ended by closing the connection.
    pub(crate) async fn big_body_unsized(
        &mut self,
        model: &str,
        request: &Value,
        bytes: usize,
    ) -> io::Result<bool> {
        self.big_body(model, request, bytes);
        self.out.clear();
        write_head(&mut self.out, 200, None, None, true);
        self.stream.write_all(&self.out).await?;
        // A client that has read enough hangs up: that is no error here.
        let _ = self.stream.write_all(&self.body).await;
        let _ = self.stream.shutdown().await;
        Ok(false)
    }
}
