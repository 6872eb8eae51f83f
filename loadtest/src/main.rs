//! `iparking-loadtest`: drives a running iParking server through the typed client of
//! `mobile-api/`, with the machine's own limits (our `/healthz`, `pgbench`, `redis-benchmark`)
//! measured in the same run. See loadtest/README.md.
#![forbid(unsafe_code)]

mod baselines;
mod runner;
mod scenarios;
mod schedule;
mod seed;
mod stats;
mod verify;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::{
    baselines::ToolBaseline,
    runner::{Model, Outcome},
    scenarios::{Kind, Options, Scenario},
    stats::{Summary, fmt_us, ratio},
};

#[derive(Parser)]
#[command(name = "iparking-loadtest", version, about = "Load generator for iParking")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against a running server.
    Run(Box<RunArgs>),
    /// Measure pgbench TPC-B and/or redis-benchmark GET (missing tool: error).
    Baselines {
        #[command(flatten)]
        tools: ToolArgs,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Check the ledger, that recorded sessions were kept, and that Redis agrees with the database.
    Verify {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Session ids from `run --record-sessions`.
        #[arg(long)]
        sessions: Option<PathBuf>,
        /// Compare the live state in this Redis with the database.
        #[arg(long, hide_env_values = true)]
        redis_url: Option<String>,
        #[arg(long, default_value = "ipk:")]
        redis_prefix: String,
    },
    /// Seed a synthetic city (and past sessions, on PostgreSQL) into a database.
    Seed {
        /// `postgres://…` or `sqlite://FILE`.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, default_value_t = 100_000)]
        points: usize,
        #[arg(long, default_value_t = 2017)]
        rng_seed: u64,
        /// Past (ended) sessions with their ledger; PostgreSQL only; 0 for none.
        #[arg(long, default_value_t = 1_000_000)]
        sessions: i64,
        /// Sessions start in this many days before now.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Drivers the app sessions belong to.
        #[arg(long, default_value_t = 20_000)]
        drivers: i64,
        /// Then make this many driver tokens (for `run --driver-tokens`), written to --tokens-out.
        #[arg(long, requires = "tokens_out")]
        driver_tokens: Option<u32>,
        /// Where the driver tokens go (one per line, mode 0600).
        #[arg(long)]
        tokens_out: Option<PathBuf>,
        /// SANDBOX play money put in each token driver's wallet, VND.
        #[arg(long, default_value_t = 1_000_000_000)]
        wallet_vnd: i64,
    },
}

#[derive(Args, Clone)]
struct ToolArgs {
    /// PostgreSQL for pgbench (it creates its pgbench_* tables there: use a scratch database).
    #[arg(long)]
    pg_url: Option<String>,
    /// pgbench -s.
    #[arg(long, default_value_t = 10)]
    pg_scale: u32,
    /// pgbench -c.
    #[arg(long, default_value_t = 8)]
    pg_clients: u32,
    /// pgbench -T.
    #[arg(long, default_value_t = 10)]
    pg_secs: u64,
    /// Redis for redis-benchmark (`redis://host:port`).
    #[arg(long)]
    redis_url: Option<String>,
    /// redis-benchmark -n.
    #[arg(long, default_value_t = 200_000)]
    redis_requests: u64,
    /// redis-benchmark -c.
    #[arg(long, default_value_t = 50)]
    redis_clients: u32,
}

#[derive(Args)]
struct RunArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Scenarios, run in turn (repeat the flag).
    #[arg(long = "scenario", value_enum, required = true)]
    scenarios: Vec<Kind>,
    /// Closed loop: this many workers back to back (default 16 unless --rate).
    #[arg(long, conflicts_with = "rate")]
    concurrency: Option<usize>,
    /// Open loop: this many arrivals per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: most requests outstanding at once.
    #[arg(long, default_value_t = 4096)]
    max_in_flight: usize,
    /// Open loop: the pacer wakes at most once every this many microseconds, and hands over
    /// every arrival due by then (each is late by up to this, plus the scheduler's delay,
    /// counted in its latency).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pace_us: u64,
    /// Seconds of load before recording.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds recorded.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Per-request timeout, ms.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Run this scenario first with the same load model and print every result as a ratio to it.
    #[arg(long, value_enum)]
    baseline: Option<Kind>,
    /// Write one JSON object per scenario run (an array) here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Random positions: lat_min,lat_max,lon_min,lon_max (default: the demo's Hoàn Kiếm pilot;
    /// for `seed` cities use 20.92,21.12,105.74,105.95).
    #[arg(long, default_value = "21.018,21.030,105.842,105.860")]
    area: String,
    /// Radius of nearby searches, m.
    #[arg(long, default_value_t = 1000.0)]
    radius_m: f64,
    /// Warden bearer token.
    #[arg(long, env = "LOADTEST_WARDEN_TOKEN", hide_env_values = true)]
    warden_token: Option<String>,
    /// Warden username (with --warden-password or LOADTEST_WARDEN_PASSWORD).
    #[arg(long)]
    warden_username: Option<String>,
    #[arg(long, env = "LOADTEST_WARDEN_PASSWORD", hide_env_values = true)]
    warden_password: Option<String>,
    /// Sessions the warden scenario starts (cash) at set-up for its 80% hits.
    #[arg(long, default_value_t = 100)]
    warden_sessions: usize,
    /// File of driver tokens, one per line (driver scenario).
    #[arg(long)]
    driver_tokens: Option<PathBuf>,
    /// Sandbox top-up per driver at set-up, VND (0: none; needs the demo sandbox).
    #[arg(long, default_value_t = 10_000_000)]
    driver_topup: i64,
    /// SMS carrier `name=secret` (demo: sandbox=sandbox-secret).
    #[arg(long, hide_env_values = true)]
    carrier: Option<String>,
    /// Points the SMS scenario buys at (repeat).
    #[arg(long = "sms-point", default_values_t = ["HK001".to_owned(), "HK002".to_owned(), "HK003".to_owned()])]
    sms_points: Vec<String>,
    /// Finance bearer token.
    #[arg(long, env = "LOADTEST_FINANCE_TOKEN", hide_env_values = true)]
    finance_token: Option<String>,
    /// Finance report: first and last local day (default: the last 30 days).
    #[arg(long)]
    finance_from: Option<String>,
    #[arg(long)]
    finance_to: Option<String>,
    /// Start scenario: write the id of every session the server answered as started here
    /// (one per line), to check afterwards that none was lost.
    #[arg(long)]
    record_sessions: Option<PathBuf>,
    #[command(flatten)]
    tools: ToolArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Baselines { tools, json } => {
            anyhow::ensure!(tools.pg_url.is_some() || tools.redis_url.is_some(), "give --pg-url and/or --redis-url");
            let results = tool_baselines(&tools).await?;
            print_tools(&results);
            if let Some(path) = json {
                write_json(&path, &results.iter().map(|b| json!(b)).collect::<Vec<_>>())?;
            }
            Ok(())
        }
        Command::Verify { database_url, sessions, redis_url, redis_prefix } => {
            verify::run(&database_url, sessions.as_deref(), redis_url.as_deref(), &redis_prefix).await
        }
        Command::Seed {
            database_url,
            points,
            rng_seed,
            sessions,
            days,
            drivers,
            driver_tokens,
            tokens_out,
            wallet_vnd,
        } => {
            seed::run(&database_url, points, rng_seed, sessions, days, drivers).await?;
            match (driver_tokens, tokens_out) {
                (Some(n), Some(out)) => seed::driver_tokens(&database_url, n, wallet_vnd, &out).await,
                _ => Ok(()),
            }
        }
    }
}

async fn tool_baselines(tools: &ToolArgs) -> anyhow::Result<Vec<ToolBaseline>> {
    let t = tools.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = vec![];
        if let Some(url) = &t.pg_url {
            out.push(baselines::pgbench(url, t.pg_scale, t.pg_clients, t.pg_secs)?);
        }
        if let Some(url) = &t.redis_url {
            out.push(baselines::redis_get(url, t.redis_requests, t.redis_clients)?);
        }
        Ok(out)
    })
    .await?
}

fn print_tools(results: &[ToolBaseline]) {
    for b in results {
        let lat = b.latency_ms.map(|l| format!(", {l} ms")).unwrap_or_default();
        println!("{:<14} {:>12.1} /s{lat}   ({})", b.scenario, b.throughput, b.command);
    }
}

fn parse_area(s: &str) -> anyhow::Result<(f64, f64, f64, f64)> {
    let v: Vec<f64> = s.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>().context("--area")?;
    anyhow::ensure!(v.len() == 4 && v[0] < v[1] && v[2] < v[3], "--area is lat_min,lat_max,lon_min,lon_max");
    Ok((v[0], v[1], v[2], v[3]))
}

struct Run {
    kind: Kind,
    model: Model,
    outcome: Outcome,
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    iparking_mobile_api::install_tls_provider();
    let model = match a.rate {
        Some(rate) => {
            schedule::Schedule::new(rate)?;
            Model::Open { rate, max_in_flight: a.max_in_flight, pace_us: a.pace_us }
        }
        None => Model::Closed { concurrency: a.concurrency.unwrap_or(16).max(1) },
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(a.timeout_ms))
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .build()?;
    let today = chrono::Utc::now().date_naive();
    let opts = Options {
        area: parse_area(&a.area)?,
        radius_m: a.radius_m,
        warden_token: a.warden_token.clone(),
        warden_login: match (&a.warden_username, &a.warden_password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(_), None) => anyhow::bail!("--warden-username needs --warden-password or LOADTEST_WARDEN_PASSWORD"),
            _ => None,
        },
        warden_sessions: a.warden_sessions,
        driver_tokens: match &a.driver_tokens {
            Some(p) => {
                scenarios::read_tokens(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
            }
            None => vec![],
        },
        driver_topup: a.driver_topup,
        carrier: a.carrier.as_deref().map(scenarios::parse_carrier).transpose()?,
        sms_points: a.sms_points.clone(),
        finance_token: a.finance_token.clone(),
        finance_from: a.finance_from.clone().unwrap_or_else(|| (today - chrono::Days::new(30)).to_string()),
        finance_to: a.finance_to.clone().unwrap_or_else(|| today.to_string()),
    };
    let tools = if a.tools.pg_url.is_some() || a.tools.redis_url.is_some() {
        let t = tool_baselines(&a.tools).await?;
        print_tools(&t);
        t
    } else {
        vec![]
    };
    let (warmup, duration) = (Duration::from_secs_f64(a.warmup), Duration::from_secs_f64(a.duration));
    let mut kinds: Vec<Kind> = a.baseline.into_iter().collect();
    kinds.extend(a.scenarios.iter().copied().filter(|k| Some(*k) != a.baseline));
    // Every set-up first, so a scenario that cannot start fails before any load is sent.
    let mut prepared = vec![];
    for kind in kinds {
        let scenario = Scenario::prepare(kind, http.clone(), &a.base_url, opts.clone())
            .await
            .with_context(|| format!("setting up the {} scenario", kind.name()))?;
        prepared.push(scenario);
    }
    let mut runs: Vec<Run> = vec![];
    for scenario in prepared {
        let kind = scenario.kind;
        let mut model = model;
        if let (Some(max), Model::Closed { concurrency }) = (scenario.max_workers(), &mut model)
            && *concurrency > max
        {
            eprintln!("{}: {concurrency} workers asked, {max} driver tokens: using {max}", kind.name());
            *concurrency = max;
        }
        eprintln!("{}: {:.0} s warm-up, {:.0} s recorded, {model:?}", kind.name(), a.warmup, a.duration);
        let scenario = Arc::new(scenario);
        let outcome = runner::run(scenario.clone(), model, warmup, duration).await;
        if let (Kind::Start, Some(path)) = (kind, &a.record_sessions) {
            let ids = scenario.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("start: {} session ids written to {}", ids.len(), path.display());
        }
        runs.push(Run { kind, model, outcome });
    }
    let base = a.baseline.and_then(|b| runs.iter().find(|r| r.kind == b)).map(|r| r.outcome.total.clone());
    let pg = tools.iter().find(|t| t.scenario == "pgbench_tpcb").map(|t| t.throughput);
    print_table(&runs, base.as_ref(), a.baseline, pg);
    if let Some(path) = &a.json {
        let mut out: Vec<Value> = tools.iter().map(|t| json!(t)).collect();
        out.extend(runs.iter().map(|r| run_json(r, base.as_ref(), a.baseline, pg, a.warmup)));
        write_json(path, &out)?;
    }
    Ok(())
}

fn write_json(path: &PathBuf, v: &[Value]) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v)? + "\n").with_context(|| format!("writing {}", path.display()))
}

fn with_unfinished(o: &Outcome) -> Summary {
    let mut s = o.total.clone();
    if o.unfinished > 0 {
        s.errors.insert("unfinished at drain".into(), o.unfinished);
        s.requests += o.unfinished;
    }
    s
}

fn ratios(s: &Summary, base: &Summary) -> Value {
    json!({
        "throughput": s.throughput / base.throughput.max(f64::MIN_POSITIVE),
        "p50": s.latency_us.p50 as f64 / (base.latency_us.p50.max(1)) as f64,
        "p99": s.latency_us.p99 as f64 / (base.latency_us.p99.max(1)) as f64,
    })
}

fn run_json(r: &Run, base: Option<&Summary>, base_kind: Option<Kind>, pg: Option<f64>, warmup: f64) -> Value {
    let total = with_unfinished(&r.outcome);
    let mut v = json!({
        "scenario": r.kind.name(),
        "model": r.model,
        "warmup_s": warmup,
        "duration_s": total.seconds,
        "requests": total.requests,
        "ok": total.ok,
        "throughput": total.throughput,
        "latency_us": total.latency_us,
        "errors": total.errors,
        "steps": r.outcome.steps,
    });
    if let (Some(b), Some(k)) = (base, base_kind) {
        v["baseline"] = json!({ "scenario": k.name(), "ratio": ratios(&total, b) });
    }
    if let (Some(pg), Some(start)) = (pg, r.outcome.steps.get("start")) {
        v["pgbench_ratio"] = json!({ "start_throughput": start.throughput / pg });
    }
    v
}

fn print_table(runs: &[Run], base: Option<&Summary>, base_kind: Option<Kind>, pg: Option<f64>) {
    let header = ["scenario", "ok", "errors", "ok/s", "p50", "p90", "p99", "p99.9", "max", "vs baseline (ok/s, p99)"];
    println!(
        "{:<16} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7], header[8], header[9]
    );
    let line = |name: String, s: &Summary, vs: String| {
        let errors: u64 = s.errors.values().sum();
        println!(
            "{:<16} {:>8} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9} {:>9}  {vs}",
            name,
            s.ok,
            errors,
            s.throughput,
            fmt_us(s.latency_us.p50),
            fmt_us(s.latency_us.p90),
            fmt_us(s.latency_us.p99),
            fmt_us(s.latency_us.p999),
            fmt_us(s.latency_us.max),
        );
    };
    let vs = |s: &Summary, own: bool| match (base, base_kind) {
        (Some(b), Some(k)) if !own => format!(
            "{} / {} of {}",
            ratio(s.throughput, b.throughput),
            ratio(s.latency_us.p99 as f64, b.latency_us.p99 as f64),
            k.name()
        ),
        (Some(_), Some(_)) => "(baseline)".to_owned(),
        _ => String::new(),
    };
    for r in runs {
        let total = with_unfinished(&r.outcome);
        let own = Some(r.kind) == base_kind;
        line(r.kind.name().to_owned(), &total, vs(&total, own));
        for (step, s) in &r.outcome.steps {
            let mut v = vs(s, false);
            if let (Some(pg), "start") = (pg, step.as_str()) {
                v.push_str(&format!("; {} of pgbench TPS", ratio(s.throughput, pg)));
            }
            line(format!("  {}/{step}", r.kind.name()), s, v);
        }
        for (kind, n) in &total.errors {
            println!("  {:<14} {n:>8} × {kind}", "error");
        }
    }
}
