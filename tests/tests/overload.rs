//! A node bounds the requests it works on at once (`Settings::max_in_flight`): one more is
//! answered 503 `overloaded` with `Retry-After` at once, the probes still answer, and the
//! node takes requests again as soon as one finishes.

use std::time::{Duration, Instant};

use iparking_tests::{Db, Live, Options, TestApp, assert_error, raw};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_limit_sheds_requests_at_once_and_recovers() {
    let settings = iparking::Settings { max_in_flight: 1, ..Options::default().settings };
    let t = TestApp::start_with(Db::Sqlite, Live::Memory, Options { settings, ..Options::default() }).await;
    let http = reqwest::Client::new();
    let points = || http.get(t.url("/v1/points?lat=21.0245&lon=105.853&radius_m=1000"));
    assert_eq!(raw(points()).await.0, 200, "under the limit: answered");

    // One request in flight: its headers promise a body that has not come yet.
    let mut slow = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    slow.write_all(
        b"POST /v1/quotes HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{",
    )
    .await
    .expect("write the head");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    let resp = points().send().await.expect("request");
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let status = resp.status().as_u16();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_error(&(status, body), 503, "overloaded");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused at once, not queued: {:?}", asked.elapsed());
    assert_eq!(raw(http.get(t.url("/healthz"))).await.0, 200, "the probes are never refused");

    // The slow request ends (its connection closes): the node takes requests again.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = raw(points()).await;
        if status == 200 {
            break;
        }
        assert_error(&(status, body), 503, "overloaded");
        assert!(Instant::now() < deadline, "the node did not take requests again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t.stop().await;
}

/// A node keeps at most `Settings::max_connections` connections open: idle ones hold their
/// slots, one more is answered 503 `overloaded` at once (in the error shape, with
/// `Retry-After`) and closed, and a new connection is served as soon as a slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_connection_limit_refuses_more_at_once_and_recovers() {
    let settings = iparking::Settings { max_connections: 2, ..Options::default().settings };
    let t = TestApp::start_with(Db::Sqlite, Live::Memory, Options { settings, ..Options::default() }).await;
    let idle_a = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    let idle_b = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A new client (no pooled connection) is refused while both slots are held.
    let http = || reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let asked = Instant::now();
    let resp = http().get(t.url("/v1/points/HK001")).timeout(Duration::from_secs(5)).send().await.expect("answered");
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let status = resp.status().as_u16();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_error(&(status, body), 503, "overloaded");
    assert!(asked.elapsed() < Duration::from_secs(2), "refused at once: {:?}", asked.elapsed());

    // One idle connection closes: a new one is served.
    drop(idle_a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp =
            http().get(t.url("/v1/points/HK001")).timeout(Duration::from_secs(5)).send().await.expect("answered");
        if resp.status().as_u16() == 200 {
            break;
        }
        assert_eq!(resp.status().as_u16(), 503);
        assert!(Instant::now() < deadline, "still refused after a slot freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle_b);
    t.stop().await;
}
