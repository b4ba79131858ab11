use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tenancy_e2e::Deployment;

fn connect(base: &str) -> TcpStream {
    let stream = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads until the server closes; how long that took.
fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

/// A client that never finishes its headers is cut off; more connections than allowed are
/// closed at once; beyond the requests in flight allowed, the answer is 503 `overloaded`; an
/// invented HTTP method cannot add a label to `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_numerous_clients_cannot_hold_the_service() {
    let deployment = Deployment::new().unwrap();
    let registry = deployment
        .start_with_env(&[
            ("TENANCY_HEADER_READ_TIMEOUT", "1s"),
            ("TENANCY_MAX_CONNECTIONS", "6"),
            ("TENANCY_MAX_IN_FLIGHT", "1"),
        ])
        .await
        .unwrap();

    // Slow headers.
    let mut slow = connect(&registry.base);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: registry\r\n")
        .unwrap();
    let waited = closed_after(&mut slow);
    assert!(
        waited < Duration::from_secs(3),
        "a slow client held its connection {waited:?}"
    );

    // Too many connections: those beyond the cap are closed as soon as they are accepted. First
    // let every earlier connection go (the readiness probe's keep-alive connection is closed by
    // the header-read timeout): one closing while the held ones are accepted would free a
    // place for the extra one.
    std::thread::sleep(Duration::from_millis(1500));
    let held: Vec<TcpStream> = (0..6).map(|_| connect(&registry.base)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect(&registry.base);
    let waited = closed_after(&mut extra);
    assert!(
        waited < Duration::from_millis(500),
        "over the cap, yet open {waited:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));

    // One request in flight at a time: a long one (onboarding with nowhere to place it, waiting)
    // makes the next one shed.
    registry
        .call(Method::POST, "/v1/servers/pg-1/drain", None)
        .await;
    let waiting = registry.call(
        Method::POST,
        "/v1/tenants?wait=3s",
        Some(json!({"org_id": "60", "name": "Waiting"})),
    );
    let shed = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        registry.call(Method::GET, "/v1/tenants", None).await
    };
    let (waited, shed) = tokio::join!(waiting, shed);
    assert_eq!(waited.status, StatusCode::ACCEPTED);
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{shed:?}");
    assert_eq!(shed.body["code"], "overloaded");
    assert_eq!(shed.content_type, "application/problem+json");

    // An invented method is counted as `other`.
    let odd = registry
        .http
        .request(
            Method::from_bytes(b"FROBNICATE").unwrap(),
            format!("{}/v1/tenants", registry.base),
        )
        .send()
        .await
        .unwrap();
    // Answered like every other error: problem+json, with the methods the route takes.
    assert_eq!(odd.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        odd.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert!(odd.headers()["allow"].to_str().unwrap().contains("POST"));
    let problem: serde_json::Value = odd.json().await.unwrap();
    assert_eq!(problem["code"], "method_not_allowed", "{problem}");
    let metrics = reqwest::get(format!("{}/metrics", registry.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("FROBNICATE"));
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}
