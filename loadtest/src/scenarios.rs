//! The scenarios: what one operation is, and the set-up each needs.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::ValueEnum;
use iparking_mobile_api::{
    CheckVerdict, Client, ClientError, ExtendSession, NearbyQuery, OpenShift, QuoteRequest, StartSession, VehicleClass,
    WardenStartSession,
};
use rand::{Rng, rngs::SmallRng};
use serde::Serialize;

/// Which scenario to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `GET /healthz`: the HTTP ceiling.
    Healthz,
    /// `GET /v1/points` near random positions of the seeded area.
    Nearby,
    /// `GET /v1/warden/checks`: 80% plates of sessions started at set-up, 20% unknown.
    Warden,
    /// nearby → quote → start → extend → stop, per driver token.
    Driver,
    /// Session starts only (wallet, durable, ledger included), unique plates, random points.
    Start,
    /// `POST /webhooks/sms/{carrier}` with unique message ids.
    Sms,
    /// `GET /v1/finance/revenue?group_by=street,channel`.
    Finance,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Nearby => "nearby",
            Self::Warden => "warden",
            Self::Driver => "driver",
            Self::Start => "start",
            Self::Sms => "sms",
            Self::Finance => "finance",
        }
    }
}

/// Settings the scenarios read.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bounding box of random positions: (lat_min, lat_max, lon_min, lon_max).
    pub area: (f64, f64, f64, f64),
    pub radius_m: f64,
    pub warden_token: Option<String>,
    pub warden_login: Option<(String, String)>,
    /// Sessions started at set-up for the warden scenario's hits.
    pub warden_sessions: usize,
    pub driver_tokens: Vec<String>,
    /// Sandbox top-up per driver at set-up (0: none).
    pub driver_topup: i64,
    pub carrier: Option<(String, String)>,
    /// Point codes the SMS scenario buys at (`HK001` → `IP25HK 001 …`).
    pub sms_points: Vec<String>,
    pub finance_token: Option<String>,
    pub finance_from: String,
    pub finance_to: String,
}

/// One step's outcome inside an operation (the driver flow has five).
pub type Steps = Vec<(&'static str, Duration, Result<(), String>)>;

/// A scenario ready to run: shared by every worker.
pub struct Scenario {
    pub kind: Kind,
    api: Client,
    http: reqwest::Client,
    opts: Options,
    /// Warden scenario: (plate, point) of sessions started at set-up; misses use other plates.
    hits: Vec<(String, String)>,
    points: Vec<String>,
    drivers: Vec<Client>,
    next: AtomicU64,
    /// Distinguishes runs (SMS message ids, idempotency keys).
    run_id: u64,
    /// Start scenario: first plate number of this run (random, so runs do not collide).
    plate_base: u64,
    /// Start scenario: ids of the sessions the server answered as started.
    pub started: std::sync::Mutex<Vec<i64>>,
}

/// Two-letter series of [`start_plate`].
const SERIES: &[u8; 20] = b"ABCDEFGHKLMNPSTUVXYZ";
/// Distinct plates [`start_plate`] makes: 89 provinces × 400 series × 100,000 numbers.
const START_PLATES: u64 = 89 * 400 * 100_000;

/// The `k`-th plate of the start scenario (`k` below [`START_PLATES`] gives distinct plates):
/// province 11–99, a two-letter series, five digits, e.g. `11AA00000`.
pub fn start_plate(k: u64) -> String {
    let k = k % START_PLATES;
    let (number, rest) = (k % 100_000, k / 100_000);
    let (series, province) = (rest % 400, rest / 400);
    let (a, b) = (SERIES[(series / 20) as usize] as char, SERIES[(series % 20) as usize] as char);
    format!("{}{a}{b}{number:05}", 11 + province)
}

/// The kind of a failure, as counted: `HTTP status + code`, or the transport problem.
pub fn error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Api { status, error } => format!("{status} {}", error.code),
        ClientError::Unexpected { status, .. } => format!("{status} unexpected body"),
        ClientError::Transport(t) if t.is_timeout() => "transport timeout".into(),
        ClientError::Transport(t) if t.is_connect() => "transport connect".into(),
        ClientError::Transport(_) => "transport other".into(),
    }
}

fn reqwest_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "transport timeout".into()
    } else if e.is_connect() {
        "transport connect".into()
    } else {
        "transport other".into()
    }
}

/// A plate that is valid and unlikely to be anyone's: province 30–99, series letter, 5 digits.
fn plate(prefix: &str, n: u64) -> String {
    format!("{prefix}{:05}", n % 100_000)
}

/// The plate of the warden scenario's `n`th hit, spread over the numbers (7919 is prime to
/// 100,000, so they stay distinct): the cars on a street have unrelated plates. Consecutive
/// numbers would make every plate a near miss of nine others, which a real roster is not.
fn hit_plate(n: u64) -> String {
    plate("30L", n.wrapping_mul(7919))
}

impl Scenario {
    /// Builds the scenario and runs its set-up (logins, sessions for the hits, top-ups).
    pub async fn prepare(kind: Kind, http: reqwest::Client, base: &str, opts: Options) -> anyhow::Result<Self> {
        let api = Client::with_http(http.clone(), base);
        let run_id = chrono::Utc::now().timestamp_millis() as u64;
        let mut s = Scenario {
            kind,
            api,
            http,
            opts,
            hits: vec![],
            points: vec![],
            drivers: vec![],
            next: AtomicU64::new(0),
            run_id,
            plate_base: rand::random::<u64>() % START_PLATES,
            started: std::sync::Mutex::new(vec![]),
        };
        match kind {
            Kind::Healthz | Kind::Nearby => {}
            Kind::Warden => s.prepare_warden().await?,
            Kind::Driver => s.prepare_drivers().await?,
            Kind::Start => {
                s.prepare_drivers().await?;
                s.prepare_start_points().await?;
            }
            Kind::Sms => {
                if s.opts.carrier.is_none() {
                    bail!("the sms scenario needs --carrier name=secret (the demo sandbox: sandbox=sandbox-secret)");
                }
                if s.opts.sms_points.is_empty() {
                    bail!("the sms scenario needs at least one --sms-point");
                }
            }
            Kind::Finance => {
                if s.opts.finance_token.is_none() {
                    bail!("the finance scenario needs --finance-token");
                }
            }
        }
        Ok(s)
    }

    async fn prepare_warden(&mut self) -> anyhow::Result<()> {
        let token = match (&self.opts.warden_token, &self.opts.warden_login) {
            (Some(t), _) => t.clone(),
            (None, Some((user, password))) => {
                self.api.warden_login(user, password, "loadtest").await.context("warden login")?.token
            }
            (None, None) => bail!("the warden scenario needs --warden-token or --warden-username/--warden-password"),
        };
        let warden = self.api.with_token(token);
        // Points in the warden's scope near the area's centre.
        let (la0, la1, lo0, lo1) = self.opts.area;
        let near = self
            .api
            .nearby_points(&NearbyQuery {
                lat: (la0 + la1) / 2.0,
                lon: (lo0 + lo1) / 2.0,
                radius_m: Some(5_000.0),
                limit: Some(100),
                vehicle_class: Some(VehicleClass::Car),
            })
            .await
            .context("listing points for the warden")?;
        let mut points: Vec<(String, i32)> = near
            .points
            .iter()
            .map(|p| (p.point.code.clone(), p.point.free_spaces.unwrap_or(p.point.capacity)))
            .collect();
        // Cash sessions need an open shift; one already open is fine.
        match warden
            .open_shift(&OpenShift { note: Some("loadtest".into()) }, &format!("lt-shift-{}", self.run_id))
            .await
        {
            Ok(_) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e).context("opening a shift"),
        }
        let wanted = self.opts.warden_sessions;
        let mut started = 0;
        let mut n = self.run_id % 100_000;
        'outer: for (code, free) in points.iter_mut() {
            while *free > 1 {
                if started >= wanted {
                    break 'outer;
                }
                n += 1;
                let p = hit_plate(n);
                let body = WardenStartSession {
                    point_code: code.clone(),
                    plate: p.clone(),
                    vehicle_class: VehicleClass::Car,
                    turns: Some(4),
                    minutes: None,
                    payment: Default::default(),
                };
                match warden.warden_start_session(&body, &format!("lt-w-{}-{n}", self.run_id)).await {
                    Ok(_) => {
                        self.hits.push((p, code.clone()));
                        started += 1;
                        *free -= 1;
                    }
                    // Out of the warden's scope, full, or this plate already paid: next point.
                    Err(e) if matches!(e.status(), Some(403 | 409)) => continue 'outer,
                    Err(e) => return Err(e).context("starting a session for the warden's hits"),
                }
            }
        }
        if self.hits.is_empty() {
            bail!(
                "could not start any session in the warden's scope for the hits (are there free points near the area?)"
            );
        }
        self.points = self.hits.iter().map(|(_, p)| p.clone()).collect();
        self.points.dedup();
        eprintln!("warden: {} sessions started for the hits at {} points", self.hits.len(), self.points.len());
        self.drivers = vec![warden];
        Ok(())
    }

    async fn prepare_drivers(&mut self) -> anyhow::Result<()> {
        if self.opts.driver_tokens.is_empty() {
            bail!("the driver scenario needs --driver-tokens FILE (one driver token per line; see README)");
        }
        for (i, t) in self.opts.driver_tokens.iter().enumerate() {
            let d = self.api.with_token(t.clone());
            if self.opts.driver_topup > 0 {
                d.sandbox_topup(self.opts.driver_topup, &format!("lt-topup-{}-{i}", self.run_id))
                    .await
                    .with_context(|| format!("sandbox top-up of driver token #{}", i + 1))?;
            } else {
                d.wallet().await.with_context(|| format!("driver token #{} does not work", i + 1))?;
            }
            self.drivers.push(d);
        }
        Ok(())
    }

    /// Car points with free spaces over the area (a 10 × 10 grid of nearby searches).
    async fn prepare_start_points(&mut self) -> anyhow::Result<()> {
        let (la0, la1, lo0, lo1) = self.opts.area;
        let mut codes = std::collections::BTreeSet::new();
        for i in 0..10 {
            for j in 0..10 {
                let q = NearbyQuery {
                    lat: la0 + (la1 - la0) * (f64::from(i) + 0.5) / 10.0,
                    lon: lo0 + (lo1 - lo0) * (f64::from(j) + 0.5) / 10.0,
                    radius_m: Some(self.opts.radius_m.max(2_000.0)),
                    limit: Some(100),
                    vehicle_class: Some(VehicleClass::Car),
                };
                let near = self.api.nearby_points(&q).await.context("listing points for the start scenario")?;
                codes.extend(
                    near.points
                        .iter()
                        .filter(|p| p.point.free_spaces.is_none_or(|f| f > 0))
                        .map(|p| p.point.code.clone()),
                );
            }
        }
        if codes.is_empty() {
            bail!("no car point with free spaces in --area for the start scenario");
        }
        self.points = codes.into_iter().collect();
        eprintln!("start: {} points, {} drivers", self.points.len(), self.drivers.len());
        Ok(())
    }

    fn random_position(&self, rng: &mut SmallRng) -> (f64, f64) {
        let (la0, la1, lo0, lo1) = self.opts.area;
        (rng.random_range(la0..=la1), rng.random_range(lo0..=lo1))
    }

    /// One operation. `worker` picks the driver in the driver scenario (closed loop: one
    /// driver per worker, so a driver never runs two flows at once).
    pub async fn once(&self, worker: usize, rng: &mut SmallRng, steps: &mut Steps) -> Result<(), String> {
        match self.kind {
            Kind::Healthz => self.api.healthz().await.map(drop).map_err(|e| error_kind(&e)),
            Kind::Nearby => {
                let (lat, lon) = self.random_position(rng);
                let q =
                    NearbyQuery { lat, lon, radius_m: Some(self.opts.radius_m), limit: Some(20), vehicle_class: None };
                self.api.nearby_points(&q).await.map(drop).map_err(|e| error_kind(&e))
            }
            Kind::Warden => {
                let warden = &self.drivers[0];
                let hit = rng.random_bool(0.8);
                let (plate_s, point) = if hit {
                    self.hits[rng.random_range(0..self.hits.len())].clone()
                } else {
                    let point = self.points[rng.random_range(0..self.points.len())].clone();
                    (plate("99Z", rng.random_range(0..100_000)), point)
                };
                let t = Instant::now();
                // A wrong answer is an error too: hits were paid for hours at this point,
                // misses never.
                let r = match warden.check_plate(&plate_s, &point).await {
                    Err(e) => Err(error_kind(&e)),
                    Ok(view) => match (hit, view.verdict) {
                        (true, CheckVerdict::Valid) | (false, CheckVerdict::Unpaid) => Ok(()),
                        (true, v) => Err(format!("wrong verdict {v:?} for a paid plate")),
                        (false, v) => Err(format!("wrong verdict {v:?} for an unknown plate")),
                    },
                };
                // Hits answer from the live state; misses (a verdict that may lead to a fine)
                // are confirmed against the database: their latencies apart.
                steps.push((if hit { "hit" } else { "miss" }, t.elapsed(), r.clone()));
                r
            }
            Kind::Driver => self.driver_flow(worker, rng, steps).await,
            Kind::Start => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let d = &self.drivers[(n % self.drivers.len() as u64) as usize];
                let body = StartSession {
                    point_code: self.points[rng.random_range(0..self.points.len())].clone(),
                    plate: start_plate(self.plate_base + n),
                    vehicle_class: Some(VehicleClass::Car),
                    minutes: Some(60),
                    turns: None,
                    payment: None,
                    card_id: None,
                    lat: None,
                    lon: None,
                };
                let session = d
                    .start_session(&body, &format!("lt-{}-{n}-start", self.run_id))
                    .await
                    .map_err(|e| error_kind(&e))?;
                self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(session.id);
                Ok(())
            }
            Kind::Sms => {
                let (carrier, secret) = self.opts.carrier.as_ref().expect("checked at set-up");
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let code = &self.opts.sms_points[rng.random_range(0..self.opts.sms_points.len())];
                let split = code.find(|c: char| c.is_ascii_digit()).unwrap_or(code.len());
                let (district, number) = code.split_at(split);
                let body = serde_json::json!({
                    "message_id": format!("lt-{}-{n}", self.run_id),
                    "from": format!("09{:08}", (self.run_id + n) % 100_000_000),
                    "text": format!("IP25{district} {number} {}", plate("51S", self.run_id + n)),
                });
                let r = self
                    .http
                    .post(format!("{}/webhooks/sms/{carrier}", self.api.base()))
                    .header("X-Carrier-Secret", secret)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        resp.bytes().await.map(drop).map_err(|e| reqwest_kind(&e))
                    }
                    Ok(resp) => Err(format!("{}", resp.status().as_u16())),
                    Err(e) => Err(reqwest_kind(&e)),
                }
            }
            Kind::Finance => {
                let token = self.opts.finance_token.as_deref().expect("checked at set-up");
                let r = self
                    .http
                    .get(format!("{}/v1/finance/revenue", self.api.base()))
                    .bearer_auth(token)
                    .query(&[
                        ("from", self.opts.finance_from.as_str()),
                        ("to", self.opts.finance_to.as_str()),
                        ("group_by", "street,channel"),
                    ])
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        resp.bytes().await.map(drop).map_err(|e| reqwest_kind(&e))
                    }
                    Ok(resp) => Err(format!("{}", resp.status().as_u16())),
                    Err(e) => Err(reqwest_kind(&e)),
                }
            }
        }
    }

    async fn driver_flow(&self, worker: usize, rng: &mut SmallRng, steps: &mut Steps) -> Result<(), String> {
        let d = &self.drivers[worker % self.drivers.len()];
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let key = |step: &str| format!("lt-{}-{n}-{step}", self.run_id);
        let (lat, lon) = self.random_position(rng);
        macro_rules! step {
            ($name:literal, $call:expr) => {{
                let t = Instant::now();
                let r = $call.await;
                steps.push(($name, t.elapsed(), r.as_ref().map(drop).map_err(error_kind)));
                r.map_err(|e| error_kind(&e))?
            }};
        }
        let near = step!(
            "nearby",
            d.nearby_points(&NearbyQuery {
                lat,
                lon,
                radius_m: Some(self.opts.radius_m),
                limit: Some(20),
                vehicle_class: Some(VehicleClass::Car),
            })
        );
        let Some(point) = near.points.iter().find(|p| p.point.free_spaces.is_none_or(|f| f > 0)) else {
            return Err("no free point nearby".into());
        };
        let code = point.point.code.clone();
        step!(
            "quote",
            d.quote(&QuoteRequest {
                point_code: code.clone(),
                vehicle_class: VehicleClass::Car,
                start: None,
                minutes: Some(60),
                amount: None,
                channel: None,
            })
        );
        let start = StartSession {
            point_code: code,
            plate: plate("29K", (worker as u64) * 1_000 + n % 1_000),
            vehicle_class: Some(VehicleClass::Car),
            minutes: Some(60),
            turns: None,
            payment: None,
            card_id: None,
            lat: Some(lat),
            lon: Some(lon),
        };
        let t = Instant::now();
        let session = match d.start_session(&start, &key("start")).await {
            // Out of play money: top up (sandbox) and count the flow as failed once.
            Err(e) if e.status() == Some(402) && self.opts.driver_topup > 0 => {
                let _ = d.sandbox_topup(self.opts.driver_topup, &key("topup")).await;
                return Err(format!("{} (topped up)", error_kind(&e)));
            }
            r => {
                steps.push(("start", t.elapsed(), r.as_ref().map(drop).map_err(error_kind)));
                r.map_err(|e| error_kind(&e))?
            }
        };
        step!(
            "extend",
            d.extend_session(session.id, &ExtendSession { turns: Some(1), ..Default::default() }, &key("extend"))
        );
        step!("stop", d.stop_session(session.id, &key("stop")));
        Ok(())
    }

    /// How many workers the scenario can use at most (drivers: one per token).
    pub fn max_workers(&self) -> Option<usize> {
        (self.kind == Kind::Driver).then_some(self.drivers.len())
    }
}

/// Reads a token file: one token per line, blank lines and `#` comments ignored.
pub fn read_tokens(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
}

/// `name=secret`.
pub fn parse_carrier(s: &str) -> anyhow::Result<(String, String)> {
    let (n, sec) = s.split_once('=').context("--carrier takes name=secret")?;
    anyhow::ensure!(!n.is_empty() && !sec.is_empty(), "--carrier takes name=secret");
    Ok((n.to_owned(), sec.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_and_carriers() {
        assert_eq!(read_tokens("# drivers\nabc\n\n  def  \n"), vec!["abc", "def"]);
        assert_eq!(parse_carrier("sandbox=sandbox-secret").unwrap(), ("sandbox".into(), "sandbox-secret".into()));
        assert!(parse_carrier("sandbox").is_err());
        assert!(parse_carrier("=x").is_err());
    }

    #[test]
    fn start_plates_are_distinct_and_valid() {
        let plates: std::collections::HashSet<String> =
            [0, 1, 99_999, 100_000, 39_999_999, 40_000_000, START_PLATES - 1].into_iter().map(start_plate).collect();
        assert_eq!(plates.len(), 7);
        assert_eq!(start_plate(0), "11AA00000");
        assert_eq!(start_plate(START_PLATES - 1), "99ZZ99999");
        assert_eq!(start_plate(START_PLATES), start_plate(0), "wraps around");
        for p in &plates {
            iparking::domain::plate::Plate::parse(p).unwrap_or_else(|e| panic!("{p}: {e:?}"));
        }
    }

    #[test]
    fn plates_have_five_digits() {
        assert_eq!(plate("30L", 7), "30L00007");
        assert_eq!(plate("30L", 1_234_567), "30L34567");
    }

    #[test]
    fn the_hits_of_a_run_are_distinct_and_no_near_misses_of_each_other() {
        use iparking::domain::plate::Plate;
        for start in [0, 1_700_000, 99_990] {
            let plates: Vec<Plate> =
                (start + 1..=start + 200).map(|n| Plate::parse(&hit_plate(n)).expect("a valid plate")).collect();
            let distinct: std::collections::HashSet<&str> = plates.iter().map(Plate::as_str).collect();
            assert_eq!(distinct.len(), plates.len());
            let pairs = plates.iter().flat_map(|a| plates.iter().map(move |b| (a, b)));
            let near: Vec<_> = pairs.filter(|(a, b)| a.near_miss(b)).collect();
            assert!(near.is_empty(), "near misses among the hits from {start}: {near:?}");
        }
    }
}
