use std::time::{Duration, Instant};
use tenancy_core::SuspendedBy;

use crate::helpers::*;
use tenancy_testkit::TestFleet;

/// A parked long poll answers as soon as a change commits, not on its next poll tick.
#[tokio::test]
async fn a_waiting_long_poll_returns_within_milliseconds_of_a_change() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    let tenant = onboard(&engine, request("1100", "Feed Watch")).await;
    let after = engine
        .changes(0, 100, Duration::ZERO)
        .await
        .unwrap()
        .last_seq;

    for round in 0..3 {
        let poll = tokio::spawn({
            let engine = engine.clone();
            async move {
                let feed = engine
                    .changes(after, 100, Duration::from_secs(10))
                    .await
                    .unwrap();
                (Instant::now(), feed)
            }
        });
        // Parked well inside its one-second fallback tick.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let operation = if round % 2 == 0 {
            engine
                .suspend(&tenant.org_id, SuspendedBy::Platform, &actor())
                .await
                .unwrap()
        } else {
            engine
                .resume(&tenant.org_id, SuspendedBy::Platform, &actor())
                .await
                .unwrap()
        };
        let committed = Instant::now();
        let (answered, feed) = poll.await.unwrap();
        let latency = answered.saturating_duration_since(committed);
        assert!(
            latency < Duration::from_millis(250),
            "round {round}: the long poll answered {latency:?} after the change"
        );
        assert_eq!(feed.changes.last().unwrap().org_id, tenant.org_id);
        engine
            .wait_operation(operation.id, Duration::from_secs(30))
            .await
            .unwrap();
    }
}

/// Asked after a sequence number it never gave (a registry restored from a backup), the feed
/// answers at once with `reset` and where to go on from (first security review, L13).
#[tokio::test]
async fn a_sequence_number_from_the_future_is_answered_with_a_reset() {
    let fleet = TestFleet::single().unwrap();
    let engine = engine_with_workers(&fleet).await;
    onboard(&engine, request("9901", "Fed")).await;
    let now = engine
        .changes(0, 1000, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(!now.reset && now.last_seq > 0, "{now:?}");
    let started = std::time::Instant::now();
    let ahead = engine
        .changes(
            now.last_seq + 1000,
            1000,
            std::time::Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered at once"
    );
    assert!(ahead.reset && ahead.changes.is_empty(), "{ahead:?}");
    assert_eq!(ahead.last_seq, now.last_seq);
    let caught_up = engine
        .changes(now.last_seq, 1000, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(!caught_up.reset, "{caught_up:?}");
}
