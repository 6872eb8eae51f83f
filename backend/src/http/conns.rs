//! The node's HTTP/1.1 connections: accepted up to a limit, each served by hyper, and the
//! idle ones closed when a new client needs their slot.
//!
//! A node keeps at most `Settings::max_connections` connections open, because each one holds
//! buffers in the node. Clients and load balancers keep their connections open between
//! requests, and such idle connections once held their slots for good: 1,024 idle clients
//! (or one client opening 1,024 connections and sending nothing) and the next connection
//! was refused. Now a connection past the limit takes the slot of an idle one:
//! - The idle one is chosen among the connections with no request in progress, the one whose
//!   last request (or whose opening, if it never sent one) is oldest.
//! - It is closed the way hyper closes a connection at shutdown: at once if it is between
//!   requests, else once its request is answered. A connection that never sent a whole
//!   request head (a client that connected and said nothing, or trickles a head) is closed
//!   at once: its reads end.
//! - When no connection is idle (every one has a request in progress), or no slot frees
//!   within [`EVICT_WAIT`], the new connection is answered 503 `overloaded` with
//!   `Retry-After: 1`, in the error shape, and closed, as `shed_load` answers a request past
//!   its limit.
//!
//! A client whose idle connection is closed sees it closed, as when any server times an idle
//! connection out, and opens a new one; a request it sends at that very instant may meet
//! the close, which HTTP clients retry for idempotent requests (and this API's state-changing
//! requests carry an `Idempotency-Key`, so a retry is safe).
//!
//! At shutdown every connection is closed the same way, and serving ends when the last one
//! has answered its request.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt;

/// The client's address, for handlers (`ConnectInfo<Peer>`): rate limits by address.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Most connections answered 503 at once (each holds a small buffer for up to a second).
const MAX_REFUSING: usize = 256;

/// How long a connection past the limit waits for the slot of the idle connection closed
/// for it (closing an idle connection takes well under a millisecond; one that turned out
/// to be answering a request frees its slot when the answer is written).
const EVICT_WAIT: Duration = Duration::from_secs(1);

/// What the node knows of one open connection.
#[derive(Debug)]
struct Conn {
    /// Whether the connection has sent a whole request head (set as hyper hands the first to
    /// the router).
    sent_request: AtomicBool,
    /// Requests in progress (from the head to the router's answer).
    in_flight: AtomicU32,
    /// A ticket from [`Table::clock`], taken at the opening and at every request: lower is
    /// older.
    last: AtomicU64,
    /// Chosen to be closed.
    closing: AtomicBool,
    /// Wakes the connection's task to close it.
    close: Notify,
}

/// Counts a request in progress until it is answered.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections.
struct Table {
    slots: Arc<Semaphore>,
    /// Refusals being written at once; past them a connection is closed without an answer.
    refusing: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Tickets for [`Conn::last`] and connection ids.
    clock: AtomicU64,
}

impl Table {
    fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.max(1))),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            conns: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(1),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> Registered {
        let id = self.tick();
        let conn = Arc::new(Conn {
            sent_request: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            last: AtomicU64::new(id),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.lock().insert(id, conn.clone());
        Registered { table: self.clone(), id, conn, _slot: slot }
    }

    /// Chooses the idle connection to close for a new one and tells it to close; false if
    /// every connection has a request in progress (or is closing already).
    fn close_one_idle(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| !c.closing.load(Ordering::Relaxed) && c.in_flight.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.closing.store(true, Ordering::Relaxed);
                c.close.notify_one();
                metrics::counter!("http_connections_closed_idle_total").increment(1);
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for c in self.lock().values() {
            c.closing.store(true, Ordering::Relaxed);
            c.close.notify_one();
        }
    }
}

/// A connection in the table, with its slot, until its task ends.
struct Registered {
    table: Arc<Table>,
    id: u64,
    conn: Arc<Conn>,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

/// An accepted connection's socket. Once its connection is chosen to be closed, reads end
/// if it has not yet sent a whole request head: hyper then closes it (it would otherwise
/// wait for a first request that may never come).
///
/// hyper answers a request it cannot parse by itself, before any service sees it (400, 414
/// for a URI over 64 KB, 431 for headers over its buffer), with an empty body: such an answer
/// is rewritten here into the error shape on its way out ([`shaped_parse_error`]).
struct Stream {
    tcp: TcpStream,
    conn: Arc<Conn>,
    /// The shaped answer still to write, and how much of it is written.
    shaped: Option<(Vec<u8>, usize)>,
}

impl Stream {
    /// Writes what is left of the shaped answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, written)) = &mut self.shaped {
            if *written == bytes.len() {
                self.shaped = None;
                break;
            }
            match Pin::new(&mut self.tcp).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` in place of writing it when it is hyper's own answer to a request it
    /// could not parse: the shaped answer is written instead. `None`: write `head` as it is.
    fn take_parse_error(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<std::io::Result<usize>>> {
        let shaped = shaped_parse_error(head)?;
        metrics::counter!("http_requests_unparsed_total").increment(1);
        self.shaped = Some((shaped, 0));
        Some(match self.drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // The rest goes out with the flush hyper makes next.
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

/// hyper's own answer to a request it could not parse (a response head of status 400, 414 or
/// 431 with no body and no content type, which every answer of ours has), rewritten into the
/// error shape, in Vietnamese (the request's `Accept-Language` could not be read), closing
/// the connection as hyper does.
fn shaped_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let (code, message) = match status {
        b"400" => ("bad_request", "Yêu cầu HTTP không đúng định dạng. / Malformed HTTP request."),
        b"414" => ("uri_too_long", "Đường dẫn quá dài. / The URI is too long."),
        b"431" => ("headers_too_large", "Tiêu đề yêu cầu quá lớn. / The request headers are too large."),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, rest) = text.split_once("\r\n")?;
    let headers = rest.strip_suffix("\r\n\r\n").or_else(|| (rest == "\r\n").then_some(""))?;
    let mut kept = String::new();
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-type" | "transfer-encoding" => return None,
            "content-length" if value.trim() != "0" => return None,
            "content-length" | "connection" => {}
            _ => {
                kept.push_str(line);
                kept.push_str("\r\n");
            }
        }
    }
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "{status_line}\r\n{kept}content-type: application/json\r\ncontent-language: vi\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.conn.closing.load(Ordering::Relaxed) && !this.conn.sent_request.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.drain(cx))?;
        if let Some(taken) = this.take_parse_error(cx, buf) {
            return taken;
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.drain(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(taken) = this.take_parse_error(cx, first)
        {
            return taken;
        }
        Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Serves `router` on `listener`, keeping at most `max` connections open, until `shutdown`
/// resolves; then closes every connection (each once its request in progress is answered)
/// and returns when the last one has closed.
pub async fn serve(
    mut listener: TcpListener,
    router: Router,
    max: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let table = Arc::new(Table::new(max));
    // Every connection's task holds a receiver: when the last is dropped, all have ended.
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        if let Ok(slot) = table.slots.clone().try_acquire_owned() {
            spawn_connection(table.open(slot), tcp, addr, router.clone(), done_rx.clone());
            continue;
        }
        if table.close_one_idle() {
            // Wait for the freed slot off the accept loop, which goes on accepting.
            let (table, router, done) = (table.clone(), router.clone(), done_rx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(EVICT_WAIT, table.slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => spawn_connection(table.open(slot), tcp, addr, router, done),
                    _ => refuse(&table, tcp),
                }
            });
            continue;
        }
        refuse(&table, tcp);
    }
    drop(listener);
    table.close_all();
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

fn refuse(table: &Table, tcp: TcpStream) {
    metrics::counter!("http_connections_refused_total").increment(1);
    if let Ok(turn) = table.refusing.clone().try_acquire_owned() {
        tokio::spawn(async move {
            refuse_connection(tcp).await;
            drop(turn);
        });
    }
}

fn spawn_connection(reg: Registered, tcp: TcpStream, addr: SocketAddr, router: Router, done: watch::Receiver<()>) {
    let conn = reg.conn.clone();
    let table = reg.table.clone();
    let stream = Stream { tcp, conn: conn.clone(), shaped: None };
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            // Marked here, as hyper hands the head over, before any later read: so a
            // connection with a request never has its reads ended under it.
            conn.sent_request.store(true, Ordering::Relaxed);
            conn.in_flight.fetch_add(1, Ordering::Relaxed);
            conn.last.store(table.tick(), Ordering::Relaxed);
            let in_flight = InFlight(conn.clone());
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo(Peer(addr)));
            let router = router.clone();
            async move {
                let resp = router.oneshot(req).await;
                drop(in_flight);
                resp
            }
        })
    };
    tokio::spawn(async move {
        let http =
            hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut http = pin!(http);
        let mut closing = false;
        loop {
            tokio::select! {
                result = http.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = conn.close.notified(), if !closing => {
                    closing = true;
                    http.as_mut().graceful_shutdown();
                }
            }
        }
        drop(reg);
        drop(done);
    });
}

/// Answers a connection past the limit 503 `overloaded` in the error shape, and closes it.
/// The request's first bytes are read first (for at most a second), so that the answer is
/// not lost to a reset.
async fn refuse_connection(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut head)).await;
    let body = serde_json::json!({"error": {
        "code": "overloaded",
        "message": "Máy chủ đang quá tải. Vui lòng thử lại sau giây lát.",
    }})
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::shaped_parse_error;

    fn body(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hypers_own_answers_are_shaped() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 02:00:00 GMT\r\n\r\n";
        let shaped = shaped_parse_error(head).expect("shaped");
        let text = std::str::from_utf8(&shaped).unwrap();
        assert!(text.starts_with("HTTP/1.1 414 URI Too Long\r\ndate: Sat, 05 Dec 2026 02:00:00 GMT\r\n"), "{text}");
        assert!(text.contains("content-type: application/json\r\n") && text.contains("connection: close\r\n"));
        let json = body(&shaped);
        assert_eq!(json["error"]["code"], "uri_too_long");
        let len: usize = text.split("content-length: ").nth(1).unwrap().split("\r\n").next().unwrap().parse().unwrap();
        assert_eq!(len, text.split_once("\r\n\r\n").unwrap().1.len());
        for (status, code) in
            [("400 Bad Request", "bad_request"), ("431 Request Header Fields Too Large", "headers_too_large")]
        {
            let head = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            assert_eq!(body(&shaped_parse_error(head.as_bytes()).unwrap())["error"]["code"], code);
        }
    }

    #[test]
    fn our_own_answers_pass_untouched() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
            b"{\"error\":1}",
            b"HTTP/1.1 400",
        ] {
            assert!(shaped_parse_error(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}
