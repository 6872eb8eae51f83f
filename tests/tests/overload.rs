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

/// A node keeps at most `Settings::max_connections` connections open. A new client past the
/// limit takes the slot of an idle connection (closed for it: one that never sent a
/// request, or one between requests), never of one with a request in progress; when every
/// connection has a request in progress, it is answered 503 `overloaded` at once (in the
/// error shape, with `Retry-After`) and closed, and it is served again as soon as a slot
/// frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_connection_limit_closes_idle_connections_and_refuses_busy_ones() {
    use tokio::io::AsyncReadExt;
    let settings = iparking::Settings { max_connections: 2, ..Options::default().settings };
    let t = TestApp::start_with(Db::Sqlite, Live::Memory, Options { settings, ..Options::default() }).await;
    let fresh = || reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let get = |c: &reqwest::Client| c.get(t.url("/v1/points/HK001")).timeout(Duration::from_secs(5)).send();

    // Two connections that never send a byte hold both slots; then a third client comes.
    let mut silent_a = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut silent_b = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let resp = get(&fresh()).await.expect("answered");
    assert_eq!(resp.status().as_u16(), 200, "served in the slot of an idle connection");
    assert!(asked.elapsed() < Duration::from_secs(2), "served at once: {:?}", asked.elapsed());
    // The older silent connection was the one closed (its read ends); the newer one is open.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), silent_a.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0))), "the oldest idle connection is closed: {read:?}");
    let read = tokio::time::timeout(Duration::from_millis(300), silent_b.read(&mut byte)).await;
    assert!(read.is_err(), "the newer idle connection stays open: {read:?}");
    drop(silent_a);

    // Kept-alive connections between requests are idle too: the one whose last request is
    // oldest gives its slot up, and its client opens another when it next asks.
    tokio::time::sleep(Duration::from_millis(200)).await; // the closed connections are gone
    let (pooled_a, pooled_b, pooled_c) = (reqwest::Client::new(), reqwest::Client::new(), reqwest::Client::new());
    assert_eq!(get(&pooled_a).await.expect("answered").status().as_u16(), 200, "a free slot");
    assert_eq!(get(&pooled_b).await.expect("answered").status().as_u16(), 200, "silent_b's slot");
    let read = tokio::time::timeout(Duration::from_secs(2), silent_b.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0))), "silent_b (older than pooled_a's request) was closed: {read:?}");
    assert_eq!(get(&pooled_c).await.expect("answered").status().as_u16(), 200, "pooled_a's slot");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&pooled_a).await.expect("answered").status().as_u16(), 200, "pooled_b's slot, on a new connection");
    assert_eq!(get(&pooled_c).await.expect("answered").status().as_u16(), 200, "its own connection, still open");

    // Two connections with a request in progress (a body promised, not sent): never closed
    // for a newcomer, who is refused at once.
    let head =
        b"POST /v1/quotes HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{";
    let mut busy_a = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    busy_a.write_all(head).await.expect("write the head");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy_b = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    busy_b.write_all(head).await.expect("write the head");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = Instant::now();
    let resp = get(&fresh()).await.expect("answered");
    assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let status = resp.status().as_u16();
    let body: serde_json::Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_error(&(status, body), 503, "overloaded");
    assert!(asked.elapsed() < Duration::from_secs(3), "refused without queueing: {:?}", asked.elapsed());
    // Both requests in progress are intact: each is answered when its body comes.
    let rest = vec![b' '; 199];
    for busy in [&mut busy_a, &mut busy_b] {
        busy.write_all(&rest).await.expect("write the body");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
                let n = busy.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(got.is_ok(), "no answer: {}", String::from_utf8_lossy(&answer));
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 4"), "the request was answered (a bad body: 4xx): {text}");
    }

    // With the requests answered, those connections are idle: a newcomer is served.
    assert_eq!(get(&fresh()).await.expect("answered").status().as_u16(), 200, "served after the answers");
    drop((busy_a, busy_b));

    // Shutdown closes idle connections, silent ones included, and ends.
    let mut silent = tokio::net::TcpStream::connect(t.addr).await.expect("connect");
    let kept = reqwest::Client::new();
    assert_eq!(get(&kept).await.expect("answered").status().as_u16(), 200);
    // Each connection closed for a newcomer is counted: six above, at least.
    let metrics = kept.get(t.metrics_url()).send().await.expect("metrics").text().await.expect("body");
    let closed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_connections_closed_idle_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no http_connections_closed_idle_total in /metrics"));
    assert!(closed >= 6.0, "closed idle connections counted: {closed}");
    tokio::time::timeout(Duration::from_secs(5), t.stop()).await.expect("shutdown waited on idle connections");
    let read = tokio::time::timeout(Duration::from_secs(2), silent.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0))), "the silent connection was closed at shutdown: {read:?}");
}
