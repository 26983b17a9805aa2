//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) on one port, a time limit on
//! request headers and on idle connections, and a graceful stop — no new
//! connections, requests in flight finish within the grace period, and
//! streams still open after it end with an `error` event.

use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long the streams cut at the end of the grace period have to send
/// their last event.
pub const LAST_EVENT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `stop` resolves; then lets requests in
/// flight finish for up to `grace`, and then cancels `cut` and gives the
/// streams it ends [`LAST_EVENT`] to close. Returns whether every request
/// finished within the grace period. A connection whose client takes
/// nothing of what it is sent for `send_timeout` is cut off.
pub async fn serve(
    listener: TcpListener,
    app: super::http::Api,
    (header_timeout, send_timeout, max_connections): (Duration, Duration, usize),
    stop: impl Future<Output = ()>,
    (grace, cut): (Duration, CancellationToken),
) -> bool {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let graceful = GracefulShutdown::new();
    // One permit a connection: past the cap, new connections are not
    // accepted and wait in the kernel's listen backlog.
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections));
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = open.clone().acquire_owned() => p.expect("the connection semaphore is never closed"),
            _ = &mut stop => break,
        };
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset while
                    // queued: wait a little, then go on accepting.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = socket.set_nodelay(true);
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|r: axum::http::Request<Incoming>| r.map(axum::body::Body::new)),
        );
        let socket = super::stall::Stalls::new(socket, send_timeout).opening_within(header_timeout);
        let conn = builder
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let finished = graceful.shutdown();
    tokio::pin!(finished);
    tokio::select! {
        _ = &mut finished => return true,
        _ = tokio::time::sleep(grace) => {}
    }
    cut.cancel();
    let _ = tokio::time::timeout(LAST_EVENT, finished).await;
    false
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
