//! iParking: pay-by-phone street parking.
//!
//! The library exposes [`App`] (the shared state), [`http::router`] and [`http::serve`],
//! so `main.rs` stays thin and the black-box tests start the real server on
//! `127.0.0.1:0`.
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};

pub mod app;
pub mod auth;
pub mod check_log;
pub mod config;
pub mod domain;
pub mod error;
pub mod fact_batch;
pub mod http;
pub mod import;
pub mod jobs;
pub mod live;
pub mod log_throttle;
pub mod log_writer;
pub mod nearby;
pub mod payments;
pub mod push;
pub mod registry;
pub mod seed;
pub mod sms;
pub mod store;
pub mod token_cache;

use domain::tariff::Tariff;
use live::LiveState;
use nearby::PointIndex;
use store::{Store, StoreResult};

/// The time source; tests can drive it.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Whole microseconds: PostgreSQL keeps no finer, so both databases store the same instant.
    fn now(&self) -> DateTime<Utc> {
        domain::tariff::truncate_micros(Utc::now())
    }
}

/// Tunables of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a request may take before it is answered 503 `timeout`.
    pub request_timeout: Duration,
    /// Most requests a node works on at once; more are answered 503 `overloaded` at once
    /// (with `Retry-After`), instead of queueing until they time out. The probes
    /// (`/healthz`, `/readyz`, `/metrics`) are never refused.
    pub max_in_flight: usize,
    /// Most client connections a node keeps open at once (each holds its buffers). One more
    /// takes the slot of an idle connection, closed for it; when every connection has a
    /// request in progress, it is answered 503 `overloaded` with `Retry-After` and closed
    /// at once (`http::conns`).
    pub max_connections: usize,
    /// Largest JSON body accepted.
    pub json_body_limit: usize,
    /// Largest point file accepted by the import route.
    pub import_body_limit: usize,
    /// How often each node checks whether the registry changed (other nodes' writes).
    pub index_refresh: Duration,
    /// How often each node closes expired sessions.
    pub expiry_interval: Duration,
    /// How long a node keeps a staff token's principal before asking the database again
    /// (zero: every call asks). A token revoked on another node works here until then.
    pub staff_token_cache: Duration,
    /// The same for a driver's token (zero: every call asks). A driver logged out or closed
    /// on another node can use the token here until then; on this node it stops at once.
    pub driver_token_cache: Duration,
    /// How often each node's live-state watchdog probes the live state (and rebuilds it from
    /// the database when it came back after being unreachable, or lost its data).
    pub live_check_interval: Duration,
    /// One-time codes a phone may request per window.
    pub otp_per_phone: u32,
    /// One-time codes a client address may request per window.
    pub otp_per_ip: u32,
    /// The rate-limit window for one-time codes.
    pub otp_window: Duration,
    /// Whether the demo sandbox payment gateway is on (embedded default only).
    pub sandbox_payments: bool,
    /// Mobile carriers whose SMS purchases are accepted.
    pub carriers: Vec<Carrier>,
    /// Reminders go out this long before a session's paid time ends.
    pub reminder_before: Duration,
    /// Smallest card top-up, VND.
    pub topup_min: i64,
    /// Largest card top-up, VND.
    pub topup_max: i64,
    /// How often the payments sweeper runs (one node at a time, under a lease).
    pub sweep_interval: Duration,
    /// A card charge still open this long is looked up at the processor by the sweeper.
    pub sweep_after: Duration,
    /// A driver has this long to finish 3-D Secure before the charge is cancelled.
    pub charge_action_timeout: Duration,
    /// How often settlement data is imported from the processor (one node at a time).
    pub settlement_interval: Duration,
    /// How often the ledger's sealer runs (one node at a time, under a lease): each run
    /// gives every ledger transaction older than a second its place and hash in the chain
    /// (`app::ledger_chain`). Zero: not sealed (for measurement only; the chain then lags).
    pub ledger_seal_interval: Duration,
    /// Where violation photos are stored (by content hash), under the data directory.
    pub photo_dir: std::path::PathBuf,
    /// Where this node journals plate checks before answering them (`check_log`), under the
    /// data directory; journals left there by a stopped node are replayed at start. `None`:
    /// no journal (for measuring its cost only: a crash then loses the checks not written).
    pub check_journal_dir: Option<std::path::PathBuf>,
    /// Failed password logins allowed per username per window.
    pub login_per_user: u32,
    /// Failed password logins allowed per client address per window.
    pub login_per_ip: u32,
    /// The window of the login limits.
    pub login_window: Duration,
    /// The drivers' app's map tiles: a URL template with `{z}`, `{x}`, `{y}`
    /// (`IPARKING_MAP_TILES`; OpenStreetMap's by default). Its origin joins the apps' CSP.
    pub map_tiles: String,
    /// Stripe's publishable key (`STRIPE_PUBLISHABLE_KEY`): with Stripe configured, the
    /// drivers' app collects cards with Stripe's Payment Element, and only then may the page
    /// load Stripe.js (its origins join the CSP).
    pub stripe_publishable_key: Option<String>,
    /// The CDS Events and Metrics feeds are open to anyone (`IPARKING_OPEN_DATA=public`);
    /// otherwise they need a token of the staff role `data`. The Curbs feed is always public.
    pub open_data_public: bool,
    /// The licence of the published data, the CDS answers' `license_url`
    /// (`IPARKING_DATA_LICENSE_URL`; CC BY 4.0 by default).
    pub data_license_url: String,
    /// Who produces the published data, the CDS answers' `author` (`IPARKING_DATA_AUTHOR`).
    pub data_author: String,
}

/// The default licence of the published data (the CDS feeds' `license_url`).
pub const DEFAULT_DATA_LICENSE_URL: &str = "https://creativecommons.org/licenses/by/4.0/";
/// The default author of the published data.
pub const DEFAULT_DATA_AUTHOR: &str = "iParking";

/// A mobile carrier of the SMS channel.
#[derive(Clone)]
pub struct Carrier {
    /// Name in the webhook path (`/webhooks/sms/{name}`) and the ledger.
    pub name: String,
    /// Shared secret the carrier sends in `X-Carrier-Secret`.
    pub secret: String,
    /// The carrier's share of each SMS purchase, percent (10 in the pilot).
    pub share_percent: u32,
}

impl std::fmt::Debug for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Carrier").field("name", &self.name).field("share_percent", &self.share_percent).finish()
    }
}

impl Carrier {
    /// Parses `name=secret:share,name2=secret2` (share defaults to 10).
    pub fn parse_list(s: &str) -> Result<Vec<Carrier>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|part| {
                let (name, rest) =
                    part.split_once('=').ok_or_else(|| format!("carrier `{part}`: expected name=secret[:share]"))?;
                let (secret, share) = match rest.rsplit_once(':') {
                    Some((secret, share)) => (
                        secret,
                        share.parse::<u32>().map_err(|_| format!("carrier {name}: share must be a whole percent"))?,
                    ),
                    None => (rest, 10),
                };
                let valid_name =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !valid_name || secret.len() < 8 || share > 100 {
                    return Err(format!("carrier {name}: lower-case name, a secret of 8+ characters, share 0–100"));
                }
                Ok(Carrier { name: name.to_owned(), secret: secret.to_owned(), share_percent: share })
            })
            .collect()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            max_in_flight: 512,
            max_connections: 1024,
            json_body_limit: 64 * 1024,
            import_body_limit: 32 * 1024 * 1024,
            index_refresh: Duration::from_secs(2),
            expiry_interval: Duration::from_secs(30),
            live_check_interval: Duration::from_secs(1),
            staff_token_cache: Duration::from_secs(5),
            driver_token_cache: Duration::from_secs(5),
            otp_per_phone: 5,
            otp_per_ip: 30,
            otp_window: Duration::from_secs(15 * 60),
            sandbox_payments: false,
            carriers: Vec::new(),
            reminder_before: Duration::from_secs(10 * 60),
            topup_min: 10_000,
            topup_max: 5_000_000,
            sweep_interval: Duration::from_secs(60),
            sweep_after: Duration::from_secs(120),
            charge_action_timeout: Duration::from_secs(15 * 60),
            settlement_interval: Duration::from_secs(15 * 60),
            ledger_seal_interval: Duration::from_secs(1),
            photo_dir: std::path::PathBuf::from("./data/photos"),
            check_journal_dir: Some(std::path::PathBuf::from("./data/checks-journal")),
            login_per_user: 5,
            login_per_ip: 50,
            login_window: Duration::from_secs(15 * 60),
            map_tiles: http::apps::DEFAULT_TILES.to_owned(),
            stripe_publishable_key: None,
            open_data_public: false,
            data_license_url: DEFAULT_DATA_LICENSE_URL.to_owned(),
            data_author: DEFAULT_DATA_AUTHOR.to_owned(),
        }
    }
}

/// Everything a request handler needs, shared by all of them.
pub struct App {
    /// Durable truth.
    pub store: Arc<dyn Store>,
    /// Fast shared state.
    pub live: Arc<dyn LiveState>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
    /// Outgoing SMS.
    pub sms: Arc<dyn sms::SmsGateway>,
    /// Push notifications for app drivers (reminders), when configured.
    pub push: Option<sms::PushWebhook>,
    /// Web Push to the drivers' app (reminders), when a VAPID key is configured.
    pub web_push: Option<Arc<push::WebPush>>,
    /// The card processor (Stripe, or the demo sandbox), when configured.
    pub payments: Option<Arc<dyn payments::PaymentGateway>>,
    /// The secret Stripe signs webhooks with (never logged).
    stripe_webhook_secret: Option<String>,
    /// This node's name for job leases (unique per process and app).
    pub node_id: String,
    /// The deployment's key for session receipts' check codes (`domain::receipt`), shared by
    /// every node through the database. Never logged.
    pub receipt_key: Vec<u8>,
    /// The durable record of plate checks (batched writer).
    pub checks: check_log::CheckRecorder,
    /// The database's confirmations of plate checks (asked in batches).
    pub facts: fact_batch::FactBatcher,
    index: ArcSwap<PointIndex>,
    index_rebuild: tokio::sync::Mutex<()>,
    tariffs: ArcSwap<TariffBook>,
    tariff_reload: tokio::sync::Mutex<()>,
    staff_tokens: token_cache::TokenCache<store::Principal>,
    driver_tokens: token_cache::TokenCache<store::drivers::DriverPrincipal>,
}

/// The outside services an [`App`] talks to.
pub struct Gateways {
    /// Outgoing SMS.
    pub sms: Arc<dyn sms::SmsGateway>,
    /// Push webhook for reminders.
    pub push: Option<sms::PushWebhook>,
    /// Web Push (VAPID) for the drivers' app.
    pub web_push: Option<Arc<push::WebPush>>,
    /// Card processor.
    pub payments: Option<Arc<dyn payments::PaymentGateway>>,
    /// Stripe's webhook signing secret.
    pub stripe_webhook_secret: Option<String>,
}

impl Default for Gateways {
    fn default() -> Self {
        Self { sms: Arc::new(sms::ConsoleSms), push: None, web_push: None, payments: None, stripe_webhook_secret: None }
    }
}

/// Every published tariff, in memory: they are few, immutable, and read on every quote.
#[derive(Debug, Default)]
pub struct TariffBook {
    /// Tariff version this snapshot was loaded at (-1: never loaded).
    pub version: i64,
    /// All tariffs, by id.
    pub tariffs: Vec<Tariff>,
}

impl TariffBook {
    /// The tariff with this id.
    pub fn get(&self, id: i64) -> Option<&Tariff> {
        self.tariffs.binary_search_by_key(&id, |t| t.id).ok().map(|i| &self.tariffs[i])
    }
}

impl App {
    /// Builds the app: rebuilds the live state from the database and loads the point index.
    pub async fn new(
        store: Arc<dyn Store>,
        live: Arc<dyn LiveState>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_sms(store, live, clock, settings, Arc::new(sms::ConsoleSms)).await
    }

    /// [`App::new`] with a given SMS gateway.
    pub async fn with_sms(
        store: Arc<dyn Store>,
        live: Arc<dyn LiveState>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        sms: Arc<dyn sms::SmsGateway>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::with_gateways(store, live, clock, settings, Gateways { sms, ..Gateways::default() }).await
    }

    /// [`App::new`] with every outside gateway given.
    pub async fn with_gateways(
        store: Arc<dyn Store>,
        live: Arc<dyn LiveState>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        gateways: Gateways,
    ) -> anyhow::Result<Arc<Self>> {
        let Gateways { sms, push, web_push, payments, stripe_webhook_secret } = gateways;
        let candidate: String = {
            use rand::RngCore as _;
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        let receipt_key = store.server_secret("receipt_key", &candidate, clock.now()).await?.into_bytes();
        let checks = check_log::CheckRecorder::start(store.clone(), settings.check_journal_dir.as_deref()).await?;
        let facts = fact_batch::FactBatcher::start(store.clone());
        let staff_tokens = token_cache::TokenCache::new(settings.staff_token_cache);
        let driver_tokens = token_cache::TokenCache::new(settings.driver_token_cache);
        let app = Arc::new(Self {
            checks,
            facts,
            store,
            live,
            clock,
            settings,
            sms,
            push,
            web_push,
            payments,
            stripe_webhook_secret,
            node_id: new_node_id(),
            receipt_key,
            index: ArcSwap::from_pointee(PointIndex::empty()),
            index_rebuild: tokio::sync::Mutex::new(()),
            tariffs: ArcSwap::from_pointee(TariffBook { version: -1, tariffs: Vec::new() }),
            tariff_reload: tokio::sync::Mutex::new(()),
            staff_tokens,
            driver_tokens,
        });
        live::rebuild_occupancy(app.store.as_ref(), app.live.as_ref()).await?;
        app.refresh_index().await?;
        app.refresh_tariffs().await?;
        Ok(app)
    }

    /// The staff principal holding the token with this hash (cached for
    /// `settings.staff_token_cache`; see [`token_cache`]).
    pub async fn staff_principal(&self, token_hash: &str) -> StoreResult<Option<store::Principal>> {
        if let Some(p) = self.staff_tokens.get(token_hash) {
            return Ok(Some(p));
        }
        let p = self.store.principal_by_token(token_hash).await?;
        if let Some(p) = &p {
            self.staff_tokens.put(token_hash, p.token_id, p);
        }
        Ok(p)
    }

    /// Revokes a staff token, here at once (other nodes within `settings.staff_token_cache`).
    pub async fn revoke_staff_token(&self, token_id: i64) -> StoreResult<bool> {
        let revoked = self.store.revoke_token(token_id, self.clock.now()).await?;
        self.staff_tokens.forget_token(token_id);
        Ok(revoked)
    }

    /// The driver holding the token with this hash (cached for
    /// `settings.driver_token_cache`; see [`token_cache`]).
    pub async fn driver_principal(&self, token_hash: &str) -> StoreResult<Option<store::drivers::DriverPrincipal>> {
        if let Some(p) = self.driver_tokens.get(token_hash) {
            return Ok(Some(p));
        }
        let p = self.store.driver_by_token(token_hash).await?;
        if let Some(p) = &p {
            self.driver_tokens.put(token_hash, p.token_id, p);
        }
        Ok(p)
    }

    /// Revokes a driver's token, here at once (other nodes within
    /// `settings.driver_token_cache`).
    pub async fn revoke_driver_token(&self, token_id: i64) -> StoreResult<bool> {
        let revoked = self.store.revoke_driver_token(token_id, self.clock.now()).await?;
        self.driver_tokens.forget_token(token_id);
        Ok(revoked)
    }

    /// Forgets every cached token of a driver whose tokens were all revoked (a closed
    /// account).
    pub fn forget_driver_tokens(&self, driver_id: i64) {
        self.driver_tokens.forget_where(|p| p.driver_id == driver_id);
    }

    /// Stripe's webhook signing secret, if Stripe is configured.
    pub fn stripe_webhook_secret(&self) -> Option<&str> {
        self.stripe_webhook_secret.as_deref()
    }

    /// The current tariff snapshot.
    pub fn tariffs(&self) -> Arc<TariffBook> {
        self.tariffs.load_full()
    }

    /// Reloads the tariffs if any changed (this node's writes or another node's).
    pub async fn refresh_tariffs(&self) -> StoreResult<bool> {
        let _one_at_a_time = self.tariff_reload.lock().await;
        let version = self.store.tariff_version().await?;
        if version == self.tariffs.load().version {
            return Ok(false);
        }
        let mut tariffs = self.store.tariffs().await?;
        tariffs.sort_by_key(|t| t.id);
        tracing::info!(tariff.version = version, tariffs = tariffs.len(), "tariffs reloaded");
        self.tariffs.store(Arc::new(TariffBook { version, tariffs }));
        Ok(true)
    }

    /// The current point index snapshot.
    pub fn index(&self) -> Arc<PointIndex> {
        self.index.load_full()
    }

    /// Rebuilds the point index if the registry changed since it was built. Returns
    /// whether it was rebuilt. Called after this node's own registry writes and
    /// periodically for other nodes' writes.
    pub async fn refresh_index(&self) -> StoreResult<bool> {
        let _one_at_a_time = self.index_rebuild.lock().await;
        // Read the version before the points: a change racing with us bumps the version
        // past what we record, so the next refresh picks it up.
        let version = self.store.registry_version().await?;
        if version == self.index.load().version() {
            return Ok(false);
        }
        let points = self.store.points().await?;
        let started = std::time::Instant::now();
        let index = PointIndex::build(points, version);
        tracing::info!(
            registry.version = version,
            points = index.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "point index rebuilt"
        );
        self.index.store(Arc::new(index));
        Ok(true)
    }
}

/// A name unique to this process and app, for job leases.
fn new_node_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(
        "node-{}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff,
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
