//! The server's log lines, written out in batches.
//!
//! Every request leaves an `INFO` line (`tower_http`'s trace layer). Written one by one to an
//! unbuffered stderr, that is a `write(2)` for each request. The lines cost the node about
//! a sixth of its CPU at 20,000 `/healthz` requests a second (against `RUST_LOG=warn`); the
//! `write`s are the part that batching saves. Here the lines gather in memory and go out
//! together:
//! - when [`FLUSH_AT`] bytes have gathered, by the thread that wrote the last line;
//! - every [`BufferedLog::start_flusher`] period (100 ms for `serve`), by a thread of its own,
//!   so that a quiet node's lines still appear at once to a person watching;
//! - at once for `WARN` and `ERROR` lines (with everything before them);
//! - by [`BufferedLog::flush`], which `main` calls when the server stops;
//! - and, best effort, by the panic hook before the panic's message
//!   ([`BufferedLog::try_flush`]).
//!
//! Lines keep their order: they are appended and written out under one lock. A process
//! killed outright (`SIGKILL`, the OOM killer) loses at most the last period's `INFO` lines.
//! A failed write drops the batch (counted in `log_bytes_dropped_total`) rather than grow
//! without bound. A reader that stalls (a full pipe) stalls the lines' writers, as
//! unbuffered writes did.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes gathered before the writer of the last line writes them out.
pub const FLUSH_AT: usize = 64 * 1024;

struct State<W> {
    pending: Vec<u8>,
    out: W,
}

impl<W: Write> State<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.out.write_all(&self.pending).and_then(|()| self.out.flush());
        if r.is_err() {
            // Part of the batch may have gone out, ending mid-line: the next batch starts on
            // a line of its own.
            metrics::counter!("log_bytes_dropped_total").increment(self.pending.len() as u64);
            self.pending.clear();
            self.pending.push(b'\n');
        } else {
            self.pending.clear();
        }
        r
    }
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt` that batches lines into `W`.
pub struct BufferedLog<W> {
    state: Arc<Mutex<State<W>>>,
}

impl<W> Clone for BufferedLog<W> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone() }
    }
}

impl<W: Write + Send + 'static> BufferedLog<W> {
    /// Lines for `out`, gathered until one of the flushes (see the module's docs).
    pub fn new(out: W) -> Self {
        Self { state: Arc::new(Mutex::new(State { pending: Vec::with_capacity(FLUSH_AT), out })) }
    }

    fn lock(&self) -> MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes out everything gathered.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().write_out()
    }

    /// Writes out what has gathered, if the lock comes free within about a millisecond:
    /// best effort, for a panic hook, which must not wait on a lock that the panicking
    /// thread may hold.
    pub fn try_flush(&self) {
        for _ in 0..1_000 {
            match self.state.try_lock() {
                Ok(mut s) => {
                    let _ = s.write_out();
                    return;
                }
                Err(std::sync::TryLockError::Poisoned(e)) => {
                    let _ = e.into_inner().write_out();
                    return;
                }
                Err(std::sync::TryLockError::WouldBlock) => std::thread::yield_now(),
            }
        }
    }

    /// A thread that writes out what has gathered every `every`, until every handle to this
    /// log is gone.
    pub fn start_flusher(&self, every: Duration) -> io::Result<()> {
        let state: Weak<Mutex<State<W>>> = Arc::downgrade(&self.state);
        std::thread::Builder::new().name("log-flusher".into()).spawn(move || {
            loop {
                std::thread::sleep(every);
                let Some(state) = state.upgrade() else { return };
                let _ = Self { state }.flush();
            }
        })?;
        Ok(())
    }

    /// Installs a panic hook that writes out what has gathered ([`Self::try_flush`]), then
    /// runs the hook that was there (which prints the panic's message).
    pub fn flush_before_panics(&self) {
        let log = self.clone();
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            log.try_flush();
            hook(info);
        }));
    }
}

/// One line's writer: appends to the batch, and writes the batch out when it is full or the
/// line is a warning or an error.
pub struct Line<'a, W> {
    log: &'a BufferedLog<W>,
    urgent: bool,
}

impl<W: Write + Send + 'static> Write for Line<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.log.lock();
        s.pending.extend_from_slice(buf);
        if self.urgent || s.pending.len() >= FLUSH_AT {
            // A log line that cannot be written is dropped; the caller must not fail for it.
            let _ = s.write_out();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for BufferedLog<W> {
    type Writer = Line<'a, W>;

    /// A line of unknown level: written out at once.
    fn make_writer(&'a self) -> Self::Writer {
        Line { log: self, urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line { log: self, urgent: matches!(*meta.level(), Level::ERROR | Level::WARN) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that records each `write` call, to count the system calls a real file
    /// would see.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Calls {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().concat()).unwrap()
        }
        fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// As `main` sets it up: through a `BoxMakeWriter`, which must pass each line's level on.
    fn subscriber(log: BufferedLog<Calls>) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_writer(tracing_subscriber::fmt::writer::BoxMakeWriter::new(log))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .finish()
    }

    #[test]
    fn info_lines_gather_and_come_out_in_order_in_one_write() {
        let out = Calls::default();
        let log = BufferedLog::new(out.clone());
        tracing::subscriber::with_default(subscriber(log.clone()), || {
            for i in 0..100 {
                tracing::info!(n = i, "request");
            }
        });
        assert_eq!(out.count(), 0, "nothing written before a flush");
        log.flush().unwrap();
        assert_eq!(out.count(), 1, "a hundred lines in one write");
        let text = out.text();
        let ns: Vec<u32> = text
            .lines()
            .map(|l| l.rsplit("n=").next().unwrap().trim().parse().unwrap_or_else(|_| panic!("line {l:?}")))
            .collect();
        assert_eq!(ns, (0..100).collect::<Vec<_>>());
        log.flush().unwrap();
        assert_eq!(out.count(), 1, "an empty batch writes nothing");
    }

    #[test]
    fn a_warning_goes_out_at_once_with_the_lines_before_it() {
        let out = Calls::default();
        let log = BufferedLog::new(out.clone());
        tracing::subscriber::with_default(subscriber(log.clone()), || {
            tracing::info!("first");
            tracing::warn!("second");
            tracing::info!("third");
        });
        let text = out.text();
        assert!(text.contains("first") && text.contains("second"), "{text}");
        assert!(text.find("first") < text.find("second"));
        assert!(!text.contains("third"), "an INFO line after the warning waits: {text}");
        log.flush().unwrap();
        assert!(out.text().ends_with("third\n"), "{}", out.text());
    }

    #[test]
    fn a_full_batch_is_written_by_the_line_that_fills_it() {
        let out = Calls::default();
        let log = BufferedLog::new(out.clone());
        let line = "x".repeat(999) + "\n";
        // An INFO line's writer.
        let mut w = Line { log: &log, urgent: false };
        for _ in 0..(FLUSH_AT / line.len()) {
            w.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(out.count(), 0, "just under the threshold: {}", FLUSH_AT / line.len() * line.len());
        w.write_all(line.as_bytes()).unwrap();
        assert_eq!(out.count(), 1);
        assert_eq!(out.text().len(), (FLUSH_AT / line.len() + 1) * line.len());
    }

    /// Fails every write after the first `ok` bytes, having written those.
    struct Breaks {
        ok: usize,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Breaks {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            let room = self.ok.saturating_sub(got.len()).min(buf.len());
            if room == 0 {
                return Err(io::Error::other("broken"));
            }
            got.extend_from_slice(&buf[..room]);
            Ok(room)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_drops_the_batch_and_the_next_starts_on_a_new_line() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = BufferedLog::new(Breaks { ok: 10, got: got.clone() });
        let mut w = Line { log: &log, urgent: false };
        w.write_all(b"first line\nsecond line\n").unwrap();
        assert!(log.flush().is_err());
        assert_eq!(&*got.lock().unwrap(), b"first line");
        assert_eq!(log.lock().pending, b"\n", "the batch is dropped, not kept to grow");
        got.lock().unwrap().clear();
        log.lock().out.ok = usize::MAX;
        w.write_all(b"third\n").unwrap();
        log.flush().unwrap();
        assert_eq!(&*got.lock().unwrap(), b"\nthird\n");
    }

    #[test]
    fn the_flusher_writes_out_a_quiet_nodes_lines() {
        let out = Calls::default();
        let log = BufferedLog::new(out.clone());
        log.start_flusher(Duration::from_millis(10)).unwrap();
        tracing::subscriber::with_default(subscriber(log.clone()), || tracing::info!("alone"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !out.text().contains("alone") {
            assert!(std::time::Instant::now() < deadline, "the flusher never wrote the line out");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
