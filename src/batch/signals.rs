//! Ctrl-C and SIGTERM, as the exit status each means.

/// Waits for SIGINT (130) or SIGTERM (143), and returns the exit status it means.
pub async fn signal() -> i32 {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        _ = terminated => 143,
    }
}
