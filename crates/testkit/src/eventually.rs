use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` every 20 ms until it gives `Some`, and returns that; panics with `what` after
/// `timeout`. The one way tests wait for something to happen.
pub async fn eventually<T, Fut>(
    timeout: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> Fut,
) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
