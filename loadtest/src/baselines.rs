//! The machine's own limits, measured by the standard tools: `pgbench` TPC-B (the durable
//! write ceiling) and `redis-benchmark` GET. A missing tool is an error, never a skip.

use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;

/// One external baseline's result.
#[derive(Debug, Clone, Serialize)]
pub struct ToolBaseline {
    /// `pgbench_tpcb` or `redis_get`.
    pub scenario: String,
    /// The command line run (without secrets).
    pub command: String,
    /// Transactions (pgbench) or requests (redis-benchmark) per second.
    pub throughput: f64,
    /// Average latency in ms when the tool prints it (pgbench), p50 ms (redis-benchmark ≥ 7).
    pub latency_ms: Option<f64>,
}

/// The tool on `PATH`, or a clear error.
fn require(tool: &str) -> anyhow::Result<()> {
    match Command::new(tool).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!("{tool} --version failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => bail!("{tool} not found on PATH ({e}); install it (Debian: postgresql-client / redis-tools)"),
    }
}

fn run(cmd: &mut Command, shown: &str) -> anyhow::Result<String> {
    eprintln!("baseline: {shown}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{shown} failed ({}):\n{}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
    }
    Ok(stdout)
}

/// `pgbench -i -s SCALE` then `pgbench -c CLIENTS -j 2 -T SECS` against `pg_url`.
pub fn pgbench(pg_url: &str, scale: u32, clients: u32, secs: u64) -> anyhow::Result<ToolBaseline> {
    require("pgbench")?;
    let scale_s = scale.to_string();
    run(
        Command::new("pgbench").args(["-i", "-q", "-s", &scale_s, pg_url]),
        &format!("pgbench -i -q -s {scale} <pg-url>"),
    )?;
    let (c, t) = (clients.to_string(), secs.to_string());
    let shown = format!("pgbench -c {clients} -j 2 -T {secs} <pg-url>");
    let out = run(Command::new("pgbench").args(["-c", &c, "-j", "2", "-T", &t, pg_url]), &shown)?;
    let (tps, latency) = parse_pgbench(&out).with_context(|| format!("no tps in pgbench's output:\n{out}"))?;
    Ok(ToolBaseline { scenario: "pgbench_tpcb".into(), command: shown, throughput: tps, latency_ms: latency })
}

/// `redis-benchmark -t get -n REQUESTS -c CLIENTS -q` against `redis_url` (`redis://host:port`).
pub fn redis_get(redis_url: &str, requests: u64, clients: u32) -> anyhow::Result<ToolBaseline> {
    require("redis-benchmark")?;
    let (host, port) = redis_host_port(redis_url)?;
    let (n, c) = (requests.to_string(), clients.to_string());
    let shown = format!("redis-benchmark -h {host} -p {port} -t get -n {requests} -c {clients} -q");
    let out = run(
        Command::new("redis-benchmark").args(["-h", &host, "-p", &port, "-t", "get", "-n", &n, "-c", &c, "-q"]),
        &shown,
    )?;
    let (rps, p50) = parse_redis_benchmark(&out, "GET").with_context(|| format!("no GET rate in:\n{out}"))?;
    Ok(ToolBaseline { scenario: "redis_get".into(), command: shown, throughput: rps, latency_ms: p50 })
}

/// Host and port of `redis://[user:pass@]host[:port][/db]`.
pub fn redis_host_port(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("redis://").context("--redis-url must start with redis://")?;
    let rest = rest.split('/').next().unwrap_or("");
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    anyhow::ensure!(!rest.contains('@') && !rest.is_empty(), "no host in --redis-url");
    match rest.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_owned(), p.to_owned())),
        None => Ok((rest.to_owned(), "6379".to_owned())),
    }
}

/// TPS and average latency (ms) of pgbench's report. Prefers the figure without connection
/// time (`without initial connection time`, or `excluding connections establishing` before
/// PostgreSQL 14).
pub fn parse_pgbench(out: &str) -> Option<(f64, Option<f64>)> {
    let number = |line: &str, key: &str| -> Option<f64> {
        line.trim().strip_prefix(key)?.split_whitespace().next()?.parse().ok()
    };
    let mut tps = None;
    let mut latency = None;
    for line in out.lines() {
        if let Some(v) = number(line, "latency average =") {
            latency = Some(v);
        }
        if let Some(v) = number(line, "tps =") {
            let preferred = line.contains("without initial connection") || line.contains("excluding connections");
            if preferred || tps.is_none() {
                tps = Some(v);
            }
        }
    }
    tps.map(|t| (t, latency))
}

/// Requests per second (and p50 ms when printed) of `redis-benchmark -q` for `test`. The
/// quiet mode overwrites progress lines with carriage returns; the final line is
/// `GET: 77519.38 requests per second, p50=0.327 msec` (older versions stop after `second`).
pub fn parse_redis_benchmark(out: &str, test: &str) -> Option<(f64, Option<f64>)> {
    let prefix = format!("{test}:");
    out.split(['\r', '\n']).map(str::trim).filter(|s| s.starts_with(&prefix)).find_map(|s| {
        let rest = s[prefix.len()..].trim();
        let (rate, tail) = rest.split_once(" requests per second")?;
        let rate: f64 = rate.trim().parse().ok()?;
        let p50 = tail.split_once("p50=").and_then(|(_, v)| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        Some((rate, p50))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pgbench 15.18 against PostgreSQL 15 on this machine (`pgbench -c 2 -j 2 -T 3`).
    const PGBENCH_15: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
starting vacuum...end.
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 2
query mode: simple
number of clients: 2
number of threads: 2
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 5358
number of failed transactions: 0 (0.000%)
latency average = 1.119 ms
initial connection time = 6.745 ms
tps = 1786.932779 (without initial connection time)
";

    /// pgbench 12's report (two tps lines).
    const PGBENCH_12: &str = "starting vacuum...end.
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 4
number of threads: 2
duration: 10 s
number of transactions actually processed: 9876
latency average = 4.051 ms
tps = 987.412345 (including connections establishing)
tps = 988.001234 (excluding connections establishing)
";

    /// `redis-benchmark -t get -n 20000 -q` of redis-tools 7.0 on this machine, as bytes
    /// (progress lines end in `\r`).
    const REDIS_7: &str = " \rGET: rps=0.0 (overall: 0.0) avg_msec=-nan (overall: -nan)\r                                                          \rGET: rps=77840.0 (overall: 77529.9) avg_msec=0.344 (overall: 0.344)\r                                                                    \rGET: 77519.38 requests per second, p50=0.327 msec\n\n";

    /// redis-benchmark 5/6 quiet output.
    const REDIS_5: &str = "GET: 91743.12 requests per second\n\n";

    #[test]
    fn parses_pgbench() {
        assert_eq!(parse_pgbench(PGBENCH_15), Some((1786.932779, Some(1.119))));
        assert_eq!(parse_pgbench(PGBENCH_12), Some((988.001234, Some(4.051))));
        assert_eq!(parse_pgbench("pgbench: error: connection refused\n"), None);
    }

    #[test]
    fn parses_redis_benchmark() {
        assert_eq!(parse_redis_benchmark(REDIS_7, "GET"), Some((77519.38, Some(0.327))));
        assert_eq!(parse_redis_benchmark(REDIS_5, "GET"), Some((91743.12, None)));
        assert_eq!(parse_redis_benchmark(REDIS_5, "SET"), None);
        assert_eq!(parse_redis_benchmark("Could not connect to Redis at 127.0.0.1:1\n", "GET"), None);
    }

    #[test]
    fn redis_urls() {
        let hp = |u: &str| redis_host_port(u).unwrap();
        assert_eq!(hp("redis://127.0.0.1:6380"), ("127.0.0.1".into(), "6380".into()));
        assert_eq!(hp("redis://localhost"), ("localhost".into(), "6379".into()));
        assert_eq!(hp("redis://:pw@10.0.0.2:7000/1"), ("10.0.0.2".into(), "7000".into()));
        assert!(redis_host_port("http://x").is_err());
    }
}
