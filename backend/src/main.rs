//! The `iparking` binary: thin. Parse flags, connect, delegate to the library.
#![forbid(unsafe_code)]

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use iparking::log_writer::BufferedLog;
use iparking::{
    App, Settings, SystemClock,
    config::{DatabaseArgs, LiveArgs},
    http, import,
    registry::{self, import_drafts},
    seed,
};
use iparking_mobile_api::{ImportFormat, ImportMode, StaffRole};
use tracing_subscriber::{EnvFilter, fmt::writer::BoxMakeWriter};

#[derive(Parser)]
#[command(name = "iparking", version, about = "Pay-by-phone street parking backend")]
struct Cli {
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the serve variant's size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (migrates first; seeds Hanoi's pilot into an empty embedded database).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "IPARKING_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the Prometheus metrics listener (`GET /metrics`), e.g. `127.0.0.1:9090`:
        /// keep it off the public network. Without it no metrics are served; the API's
        /// listener never serves them.
        #[arg(long, env = "IPARKING_METRICS_LISTEN")]
        metrics_listen: Option<SocketAddr>,
        #[command(flatten)]
        live: LiveArgs,
        /// Do not seed the demo data into an empty embedded database.
        #[arg(long, env = "IPARKING_NO_SEED")]
        no_seed: bool,
        /// Seconds before a request is answered 503 timeout.
        #[arg(long, env = "IPARKING_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
        request_timeout_secs: u64,
        /// Most requests worked on at once; more are answered 503 `overloaded` at once.
        #[arg(long, env = "IPARKING_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_in_flight: u32,
        /// Most client connections kept open at once. One more takes the slot of an idle
        /// connection (closed for it); when none is idle, it is answered 503 `overloaded`.
        #[arg(long, env = "IPARKING_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: u32,
        /// The demo's SANDBOX payment gateway (play-money wallet top-ups). Default: on for the
        /// embedded default, off when DATABASE_URL is set.
        #[arg(long, env = "IPARKING_SANDBOX_PAYMENTS")]
        sandbox_payments: Option<bool>,
        /// SMS carriers: `name=secret[:share%],…` (share defaults to 10). The sandbox adds a
        /// demo carrier `sandbox` with secret `sandbox-secret`.
        #[arg(long, env = "IPARKING_SMS_CARRIERS", hide_env_values = true)]
        sms_carriers: Option<String>,
        /// Outgoing SMS gateways: `carrier=url|token,…` (`default=` for the rest). Required
        /// unless the sandbox is on (which prints messages on standard output instead).
        #[arg(long, env = "IPARKING_SMS_GATEWAYS", hide_env_values = true)]
        sms_gateways: Option<String>,
        /// Push webhook for app drivers' reminders: `url|token`.
        #[arg(long, env = "IPARKING_PUSH_WEBHOOK", hide_env_values = true)]
        push_webhook: Option<String>,
        /// Web Push (VAPID) private key for the drivers' app's reminders: base64url of the
        /// P-256 scalar. Default: generated once in the data dir for the embedded default;
        /// with DATABASE_URL, no Web Push unless it is set (every node needs the same key).
        #[arg(long, env = "IPARKING_VAPID_PRIVATE_KEY", hide_env_values = true)]
        vapid_private_key: Option<String>,
        /// More push services a browser's subscription may name, besides FCM, Mozilla's,
        /// Apple's and Windows' (comma-separated hosts; their subdomains too).
        #[arg(long, env = "IPARKING_PUSH_HOSTS", value_delimiter = ',')]
        push_hosts: Vec<String>,
        /// The operator's contact given to push services with each message.
        #[arg(long, env = "IPARKING_VAPID_SUBJECT", default_value = "mailto:ops@iparking.invalid")]
        vapid_subject: String,
        /// Stripe secret key: card payments through Stripe.
        #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
        stripe_secret_key: Option<String>,
        /// Stripe webhook signing secret.
        #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
        stripe_webhook_secret: Option<String>,
        /// Stripe publishable key (`pk_…`): the drivers' app collects new cards and card
        /// top-ups with Stripe's Payment Element.
        #[arg(long, env = "STRIPE_PUBLISHABLE_KEY")]
        stripe_publishable_key: Option<String>,
        /// Another Stripe API host (tests, proxies), e.g. `http://127.0.0.1:12111`.
        #[arg(long, env = "STRIPE_API_BASE")]
        stripe_api_base: Option<String>,
        /// The drivers' app's map tiles, a URL template with `{z}`, `{x}` and `{y}`
        /// (OpenStreetMap's by default).
        #[arg(long, env = "IPARKING_MAP_TILES")]
        map_tiles: Option<String>,
        /// Who may read the CDS Events and Metrics feeds: `token` (a token of the role
        /// `data`; the default) or `public` (anyone). The Curbs feed is always public.
        #[arg(long, env = "IPARKING_OPEN_DATA", default_value = "token", value_parser = ["token", "public"])]
        open_data: String,
        /// The licence of the published data (the CDS feeds' `license_url`): an http(s) URL.
        #[arg(long, env = "IPARKING_DATA_LICENSE_URL", default_value = iparking::DEFAULT_DATA_LICENSE_URL)]
        data_license_url: String,
        /// Who produces the published data (the CDS feeds' `author`).
        #[arg(long, env = "IPARKING_DATA_AUTHOR", default_value = iparking::DEFAULT_DATA_AUTHOR)]
        data_author: String,
        /// Journal plate checks under the data directory before answering them, so that an
        /// answered check survives the process. `false` is for measuring its cost only.
        #[arg(long, env = "IPARKING_CHECK_JOURNAL", default_value_t = true, action = clap::ArgAction::Set)]
        check_journal: bool,
        /// Where the journal lives (default: `checks-journal` under the data directory). Keep
        /// it on the node's own disk: a shared volume's file locks may not hold.
        #[arg(long, env = "IPARKING_CHECK_JOURNAL_DIR")]
        check_journal_dir: Option<PathBuf>,
        /// How often the ledger's sealer runs, in milliseconds; 0 stops sealing (for
        /// measuring its cost only: the chain then falls behind).
        #[arg(long, env = "IPARKING_LEDGER_SEAL_MS", default_value_t = 1000)]
        ledger_seal_ms: u64,
    },
    /// Apply the database migrations and exit.
    Migrate,
    /// Load seed data (safe to run again: present rows are kept).
    Seed {
        #[command(subcommand)]
        which: SeedCommand,
    },
    /// Import data from a file.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Manage staff principals.
    Staff {
        #[command(subcommand)]
        action: StaffCommand,
    },
    /// The tamper-evident ledger: verify its hash chain, export a day (docs/open-data.md).
    Ledger {
        #[command(subcommand)]
        action: LedgerCommand,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Re-compute the hash chain from the database (or re-hash an export) and report the first
    /// broken link; exits 1 when one is found.
    Verify {
        /// Re-hash this export (written by `ledger export`) instead of reading the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Compare with digests kept elsewhere too: a copy of /public/ledger/digests.json.
        #[arg(long)]
        digests: Option<PathBuf>,
    },
    /// Write a Hanoi day's ledger transactions, without personal data, in the canonical form
    /// anyone can re-hash (`docs/ledger-rehash.py`). The day needs its digest (made after it
    /// ends).
    Export {
        /// The day, YYYY-MM-DD.
        #[arg(long)]
        day: chrono::NaiveDate,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SeedCommand {
    /// Hanoi's 2017 pilot: 17 points, 248 spaces in Hoàn Kiếm, plus streets of Ba Đình, Hai Bà Trưng, Đống Đa.
    HanoiPilot,
    /// A synthetic city for load tests.
    Synthetic {
        /// Number of points.
        #[arg(long, default_value_t = 100_000)]
        points: usize,
        /// Random seed (the same seed gives the same city).
        #[arg(long, default_value_t = 2017)]
        rng_seed: u64,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Import parking points from GeoJSON (.geojson/.json) or CSV (.csv).
    Points {
        /// The file.
        file: PathBuf,
        /// File format; default from the extension.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// What to do when some rows are invalid.
        #[arg(long, value_enum, default_value = "all-or-nothing")]
        mode: ModeArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Geojson,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Import nothing if any row is invalid.
    AllOrNothing,
    /// Import the valid rows, report the others.
    ValidOnly,
}

#[derive(Subcommand)]
enum StaffCommand {
    /// Create a staff member and print its bearer token (shown once).
    Add {
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Display name.
        #[arg(long)]
        name: String,
        /// District code of the scope (repeat for several); none (and no street) means city-wide.
        #[arg(long = "district")]
        districts: Vec<String>,
        /// Street id assigned (wardens; repeat for several).
        #[arg(long = "street")]
        streets: Vec<i64>,
        /// Username for password login on handhelds; the password is read from
        /// IPARKING_STAFF_PASSWORD (never from the command line, which other users can see).
        #[arg(long)]
        username: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id (printed by `staff add`).
        #[arg(long)]
        token_id: i64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Finance,
    Warden,
    Inspector,
    /// Reads the CDS Events and Metrics feeds.
    Data,
}

impl From<RoleArg> for StaffRole {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Admin => StaffRole::Admin,
            RoleArg::Finance => StaffRole::Finance,
            RoleArg::Warden => StaffRole::Warden,
            RoleArg::Inspector => StaffRole::Inspector,
            RoleArg::Data => StaffRole::Data,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server's lines (one per request) go out in batches (see `log_writer`); the other
    // commands' few lines go out at once, in order with what they print.
    let serve = matches!(cli.command, Command::Serve { .. });
    let batched = serve.then(|| BufferedLog::new(std::io::stderr()));
    let writer = match &batched {
        Some(log) => {
            log.start_flusher(Duration::from_millis(100))?;
            log.flush_before_panics();
            BoxMakeWriter::new(log.clone())
        }
        None => BoxMakeWriter::new(std::io::stderr),
    };
    // The server logs what it does; a one-off command says only what went wrong (its own
    // output says what it did), unless RUST_LOG asks for more.
    let default_filter = if serve { "info,sqlx=warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(writer)
        // Colours only for a person at a terminal; a log file or collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let done = run(cli).await;
    if let Some(log) = &batched {
        let _ = log.flush();
    }
    done
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let now = || iparking::Clock::now(&SystemClock);
    match cli.command {
        Command::Migrate => {
            cli.db.connect().await?;
            eprintln!("migrations applied");
        }
        Command::Serve {
            listen,
            metrics_listen,
            live,
            no_seed,
            request_timeout_secs,
            max_in_flight,
            max_connections,
            sandbox_payments,
            sms_carriers,
            sms_gateways,
            push_webhook,
            vapid_private_key,
            push_hosts,
            vapid_subject,
            stripe_secret_key,
            stripe_webhook_secret,
            stripe_publishable_key,
            stripe_api_base,
            map_tiles,
            open_data,
            data_license_url,
            data_author,
            check_journal,
            check_journal_dir,
            ledger_seal_ms,
        } => {
            if !iparking::app::cds::is_licence_url(&data_license_url) {
                anyhow::bail!("IPARKING_DATA_LICENSE_URL: an http:// or https:// URL without spaces is expected");
            }
            let store = cli.db.connect().await?;
            if cli.db.is_embedded_default() && !no_seed && store.districts().await?.is_empty() {
                let r = registry::load_seed(store.as_ref(), seed::hanoi_pilot(), now()).await?;
                tracing::info!(points = r.points_created, "empty embedded database: seeded Hanoi's pilot");
            }
            let live = live.connect().await?;
            let settings = Settings {
                request_timeout: Duration::from_secs(request_timeout_secs),
                max_in_flight: max_in_flight as usize,
                max_connections: max_connections as usize,
                sandbox_payments: sandbox_payments.unwrap_or(cli.db.is_embedded_default()),
                ..Settings::default()
            };
            let mut settings = settings;
            settings.photo_dir = cli.db.data_dir.join("photos");
            settings.check_journal_dir =
                check_journal.then(|| check_journal_dir.unwrap_or_else(|| cli.db.data_dir.join("checks-journal")));
            settings.ledger_seal_interval = Duration::from_millis(ledger_seal_ms);
            if let Some(tiles) = map_tiles {
                settings.map_tiles = tiles;
            }
            settings.open_data_public = open_data == "public";
            settings.data_license_url = data_license_url;
            settings.data_author = data_author.trim().to_owned();
            if let Some(key) = &stripe_publishable_key
                && !iparking::http::apps::is_publishable_key(key)
            {
                anyhow::bail!("STRIPE_PUBLISHABLE_KEY: a pk_test_… or pk_live_… key is expected");
            }
            if stripe_secret_key.is_some() && stripe_publishable_key.is_none() {
                tracing::warn!(
                    "no STRIPE_PUBLISHABLE_KEY: the drivers' app can pay with saved cards but not add new ones"
                );
            }
            settings.stripe_publishable_key = stripe_publishable_key;
            settings.carriers =
                iparking::Carrier::parse_list(sms_carriers.as_deref().unwrap_or("")).map_err(|e| anyhow::anyhow!(e))?;
            if settings.sandbox_payments {
                tracing::warn!("SANDBOX payment gateway is ON: wallets take play money. Not for production.");
                if !settings.carriers.iter().any(|c| c.name == "sandbox") {
                    settings.carriers.push(iparking::Carrier {
                        name: "sandbox".into(),
                        secret: "sandbox-secret".into(),
                        share_percent: 10,
                    });
                }
            }
            let sms: Arc<dyn iparking::sms::SmsGateway> = match (&sms_gateways, settings.sandbox_payments) {
                (Some(config), _) => {
                    Arc::new(iparking::sms::HttpSms::from_config(config).map_err(|e| anyhow::anyhow!(e))?)
                }
                (None, true) => Arc::new(iparking::sms::ConsoleSms),
                (None, false) => anyhow::bail!(
                    "no SMS gateway: set IPARKING_SMS_GATEWAYS (login codes must not go to standard output in \
                     production), or IPARKING_SANDBOX_PAYMENTS=true to try it locally with the sandbox gateways"
                ),
            };
            let push = push_webhook
                .as_deref()
                .map(iparking::sms::PushWebhook::from_config)
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?;
            let payments: Option<Arc<dyn iparking::payments::PaymentGateway>> = match &stripe_secret_key {
                Some(key) => Some(Arc::new(
                    iparking::payments::StripeGateway::new(key, stripe_api_base.as_deref())
                        .map_err(|e| anyhow::anyhow!(e))?,
                )),
                None if settings.sandbox_payments => Some(Arc::new(iparking::payments::SandboxGateway)),
                None => None,
            };
            if stripe_secret_key.is_some() && stripe_webhook_secret.is_none() {
                anyhow::bail!(
                    "STRIPE_WEBHOOK_SECRET is needed with STRIPE_SECRET_KEY: top-ups are credited by webhooks"
                );
            }
            let web_push = match &vapid_private_key {
                Some(key) => Some(iparking::push::WebPush::from_private_key(key, &vapid_subject)),
                None if cli.db.is_embedded_default() => {
                    Some(iparking::push::WebPush::load_or_generate(&cli.db.data_dir, &vapid_subject))
                }
                None => {
                    tracing::warn!(
                        "no IPARKING_VAPID_PRIVATE_KEY: the drivers' app gets no Web Push reminders (SMS instead)"
                    );
                    None
                }
            }
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?
            .map(|p| Arc::new(p.with_hosts(&push_hosts)));
            let gateways = iparking::Gateways { sms, push, web_push, payments, stripe_webhook_secret };
            let app = App::with_gateways(store, live, Arc::new(SystemClock), settings, gateways).await?;
            let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
            tracing::info!(
                listen = %listener.local_addr()?,
                database = app.store.backend(),
                live_state = app.live.backend(),
                points = app.index().len(),
                "iparking serving; API docs at /docs"
            );
            if let Some(addr) = metrics_listen {
                let metrics =
                    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr} (metrics)"))?;
                tracing::info!(listen = %metrics.local_addr()?, "metrics served at /metrics");
                tokio::spawn(http::serve_metrics(metrics));
            }
            http::serve(listener, app, shutdown_signal()).await?;
            tracing::info!("stopped");
        }
        Command::Seed { which } => {
            let store = cli.db.connect().await?;
            let seed = match which {
                SeedCommand::HanoiPilot => seed::hanoi_pilot(),
                SeedCommand::Synthetic { points, rng_seed } => seed::synthetic(points, rng_seed),
            };
            let r = registry::load_seed(store.as_ref(), seed, now()).await?;
            println!(
                "districts created: {}, points created: {}, points already present: {}, tariffs published: {}",
                r.districts_created, r.points_created, r.points_present, r.tariffs_published
            );
        }
        Command::Import { what: ImportCommand::Points { file, format, mode } } => {
            let format = match format {
                Some(FormatArg::Geojson) => ImportFormat::Geojson,
                Some(FormatArg::Csv) => ImportFormat::Csv,
                None => match file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                    Some("csv") => ImportFormat::Csv,
                    Some("geojson" | "json") => ImportFormat::Geojson,
                    _ => anyhow::bail!("cannot tell the format from the file name; pass --format geojson|csv"),
                },
            };
            let mode = match mode {
                ModeArg::AllOrNothing => ImportMode::AllOrNothing,
                ModeArg::ValidOnly => ImportMode::ValidOnly,
            };
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let rows = import::parse(format, &bytes).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.0))?;
            let store = cli.db.connect().await?;
            let report = import_drafts(store.as_ref(), rows, mode, None, now()).await?;
            for e in &report.rejected {
                eprintln!(
                    "line {}: {}{}",
                    e.line,
                    e.code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(),
                    e.message
                );
            }
            println!("rows: {}, imported: {}, rejected: {}", report.rows, report.imported, report.rejected.len());
            if !report.rejected.is_empty() {
                std::process::exit(if report.imported == 0 { 2 } else { 1 });
            }
        }
        Command::Staff { action } => {
            let store = cli.db.connect().await?;
            // One-off commands check no plates: no journal of their own (`serve` replays the
            // journals of stopped nodes).
            let settings = Settings { check_journal_dir: None, ..Settings::default() };
            let app =
                App::new(store, Arc::new(iparking::live::MemoryLive::new()), Arc::new(SystemClock), settings).await?;
            match action {
                StaffCommand::Add { role, name, districts, streets, username } => {
                    let name =
                        iparking::domain::city::validate_name("name", &name).map_err(|e| anyhow::anyhow!(e.en))?;
                    let password = match &username {
                        Some(_) => Some(std::env::var("IPARKING_STAFF_PASSWORD").map_err(|_| {
                            anyhow::anyhow!("--username needs the password in IPARKING_STAFF_PASSWORD")
                        })?),
                        None => None,
                    };
                    let spec = iparking::app::staff::StaffSpec {
                        streets,
                        username,
                        password,
                        ..iparking::app::staff::StaffSpec::new(name, role.into(), &districts)
                    };
                    let created =
                        iparking::app::staff::add_staff(&app, spec).await.map_err(|e| anyhow::anyhow!("{}", e.en))?;
                    eprintln!(
                        "staff {} ({}) created, token id {}; the token is shown once:",
                        created.id,
                        created.role.as_str(),
                        created.token_id
                    );
                    println!("{}", created.token);
                }
                StaffCommand::Revoke { token_id } => {
                    if app.store.revoke_token(token_id, now()).await? {
                        println!("token {token_id} revoked");
                    } else {
                        anyhow::bail!("no active token with id {token_id}");
                    }
                }
            }
        }
        Command::Ledger { action } => ledger(cli.db, action).await?,
    }
    Ok(())
}

async fn ledger(db: DatabaseArgs, action: LedgerCommand) -> anyhow::Result<()> {
    use iparking::app::ledger_chain;
    if let LedgerCommand::Verify { file: Some(file), digests } = &action {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        match ledger_chain::verify_export(&text) {
            Ok(check) => {
                println!(
                    "{}: {} transactions re-hashed, last hash {}",
                    file.display(),
                    check.transactions,
                    check.last_hash
                );
                if let Some(path) = digests {
                    let anchors = read_digests(path)?;
                    if !anchors.iter().any(|d| d.last_hash == check.last_hash) {
                        println!("BROKEN: no digest in {} has the last hash {}", path.display(), check.last_hash);
                        std::process::exit(1);
                    }
                    println!("the last hash is a published digest's");
                }
            }
            Err(broken) => {
                println!("BROKEN: {}: {broken}", file.display());
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    let store = db.connect().await?;
    let settings = Settings { check_journal_dir: None, ..Settings::default() };
    let app = App::new(store, Arc::new(iparking::live::MemoryLive::new()), Arc::new(SystemClock), settings).await?;
    match action {
        LedgerCommand::Verify { digests, .. } => {
            let anchors = match &digests {
                Some(path) => read_digests(path)?,
                None => Vec::new(),
            };
            let report = ledger_chain::verify_store(app.store.as_ref(), &app.receipt_key, &anchors)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.en))?;
            match &report.broken {
                None => println!(
                    "ledger chain sound: {} transactions (places 1..{}), last hash {}; {} digests match; {} not sealed yet",
                    report.checked, report.head.0, report.head.1, report.digests_checked, report.unsealed
                ),
                Some(broken) => {
                    println!("BROKEN: {broken} (checked {} transactions before it)", report.checked);
                    std::process::exit(1);
                }
            }
        }
        LedgerCommand::Export { day, out } => {
            let Some(text) = ledger_chain::export_day(app.store.as_ref(), &app.receipt_key, day)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.en))?
            else {
                anyhow::bail!("{day} has no digest yet: a day is digested a few minutes after it ends (Hanoi time)");
            };
            match out {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
    }
    Ok(())
}

/// Digests kept elsewhere: `/public/ledger/digests.json` as downloaded.
fn read_digests(path: &std::path::Path) -> anyhow::Result<Vec<iparking::store::chain::DigestRow>> {
    #[derive(serde::Deserialize)]
    struct File {
        digests: Vec<iparking::store::chain::DigestRow>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File = serde_json::from_str(&text).with_context(|| format!("{}: not a digests file", path.display()))?;
    Ok(file.digests)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
