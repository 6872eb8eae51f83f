//! Wardens on handhelds: login, plate checks, point rosters, cash paid on a driver's behalf
//! (thanh toán hộ) with slips, violations with photos, offline sync, shifts. See
//! `docs/wardens.md`.

use std::{path::PathBuf, sync::Arc};

use axum::{
    body::{Body, Bytes, to_bytes},
    extract::{ConnectInfo, FromRequestParts, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    CashPaymentView, Channel, CheckVerdict, CitationDetails, CitationPhoto, CitationQuery, CloseShift, DriverCitation,
    ElsewherePoint, ErrorBody, ErrorDetail, NearMiss, OpenShift, PhotoRef, PlateCheckQuery, PlateCheckView,
    PointRoster, PointStatus, ReceiptCheckView, ReceiptQuery, ReceiptStatus, ReceiptView, RosterVehicle, ShiftStatus,
    ShiftView, StaffRole, SyncAction, SyncActionResult, SyncBatch, SyncKind, SyncResultView, SyncStatus, VehicleClass,
    ViolationKind, ViolationView, WardenExtendSession, WardenLogin, WardenPayment, WardenStartSession, WardenToken,
};
use rand::Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    AppState,
    drivers::Driver,
    extract::{Json, Path, Query, Staff},
    idempotency::Idempotency,
    input::parse_json,
    prefers_english,
    views::session_view,
};
use crate::{
    App,
    app::points::point_for,
    app::quotes::quote_view,
    app::sessions::requested_turns,
    app::staff::password_login,
    domain::{
        check::{Finding, SessionFact, may_fine, verdict},
        city::validate_position,
        ledger::Entry,
        money::Vnd,
        plate::Plate,
        tariff::{PointRef, QuoteError, resolve},
    },
    error::AppError,
    live::{PlateEntry, mirror},
    store::{
        PointRecord, Principal, StoreError,
        drivers::{IdemClaim, NewSession, PricedChange, SessionRow},
        wardens::{
            CashContext, CashOutcome, CheckRecord, CloseShiftOutcome, NewViolation, OpenShiftOutcome, ReceiptRow,
            ShiftRow, ShiftRule, ViolationOutcome, ViolationRow,
        },
    },
};

/// Largest photo accepted.
pub const PHOTO_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Most photos per violation.
pub const PHOTOS_MAX: usize = 5;
/// Largest violation form (5 photos and the fields).
pub const VIOLATION_BODY_MAX: usize = PHOTOS_MAX * PHOTO_MAX_BYTES + 256 * 1024;
/// Largest sync batch (base64 photos included).
pub const SYNC_BODY_MAX: usize = 48 * 1024 * 1024;
/// Most actions per sync batch.
pub const SYNC_MAX_ACTIONS: usize = 100;
/// A device clock may run this far ahead of ours.
pub const DEVICE_CLOCK_SKEW_SECS: i64 = 300;
/// Longest violation note.
pub const NOTE_MAX_CHARS: usize = 500;

// ---- who ---------------------------------------------------------------------------------

/// A warden or an inspector (admins and finance staff are refused on warden routes).
#[derive(Debug, Clone)]
pub struct Warden(pub Principal);

impl FromRequestParts<AppState> for Warden {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Staff(p) = Staff::from_request_parts(parts, state).await?;
        if !matches!(p.role, StaffRole::Warden | StaffRole::Inspector) {
            return Err(AppError::forbidden(
                "Chỉ nhân viên kiểm soát (warden, inspector) dùng được chức năng này.",
                "Only wardens and inspectors may do this.",
            ));
        }
        Ok(Warden(p))
    }
}

impl Warden {
    /// Refuses a point outside the assignment.
    pub fn require_point(&self, p: &PointRecord) -> Result<(), AppError> {
        if self.0.covers_point(&p.district_code, p.street_id) { Ok(()) } else { Err(outside_assignment(&p.code)) }
    }

    /// Refuses inspectors: only wardens take cash and keep shifts.
    pub fn require_cash_role(&self) -> Result<(), AppError> {
        if self.0.role == StaffRole::Warden {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "Chỉ nhân viên thu (warden) được thu tiền và mở ca.",
                "Only wardens take cash and keep shifts.",
            ))
        }
    }
}

fn outside_assignment(code: &str) -> AppError {
    AppError::forbidden(
        format!("Điểm {code} không thuộc địa bàn được phân công cho bạn."),
        format!("Point {code} is outside your assignment."),
    )
}

fn staff_idem(staff_id: i64, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Idempotency, AppError> {
    Idempotency::from_request(format!("staff:{staff_id}"), headers, "POST", path, body)
}

/// The key of a staff POST: `Err` carries the first answer of a replayed key.
async fn claim_staff(
    app: &AppState,
    staff_id: i64,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<Result<Idempotency, Response>, AppError> {
    let idem = staff_idem(staff_id, headers, path, body)?;
    Ok(match idem.replay(app).await? {
        Some(replayed) => Err(replayed),
        None => Ok(idem),
    })
}

// ---- login -------------------------------------------------------------------------------

/// Logs a warden or inspector in with username and password on a named handheld. Failed
/// attempts are rate-limited per username and per client address, across nodes.
#[utoipa::path(
    post, path = "/v1/warden/auth/token", tag = "wardens", request_body = WardenLogin,
    responses(
        (status = 200, description = "Logged in", body = WardenToken),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong username or password", body = ErrorBody),
        (status = 403, description = "Not a warden or inspector", body = ErrorBody),
        (status = 429, description = "Too many failed attempts", body = ErrorBody),
    )
)]
pub async fn warden_login(
    State(app): State<AppState>,
    ConnectInfo(super::Peer(peer)): ConnectInfo<super::Peer>,
    Json(body): Json<WardenLogin>,
) -> Result<Json<WardenToken>, AppError> {
    let roles = [StaffRole::Warden, StaffRole::Inspector];
    let (token, p) = match password_login(&app, peer.ip(), &body.username, &body.password, &body.device, &roles).await {
        Ok(ok) => ok,
        Err(e) if e.status == StatusCode::FORBIDDEN => {
            return Err(AppError::forbidden(
                "Đăng nhập thiết bị cầm tay chỉ dành cho warden và inspector.",
                "Handheld login is for wardens and inspectors.",
            ));
        }
        Err(e) => return Err(e),
    };
    tracing::info!(staff.id = p.staff_id, token.id = p.token_id, "warden logged in");
    Ok(Json(WardenToken {
        token,
        token_id: p.token_id,
        staff_id: p.staff_id,
        name: p.name,
        role: p.role,
        districts: p.district_codes,
        streets: p.street_ids,
    }))
}

/// Revokes the token of this call.
#[utoipa::path(
    post, path = "/v1/warden/auth/logout", tag = "wardens", security(("bearer" = [])),
    responses((status = 204, description = "Logged out"), (status = 401, description = "No valid token", body = ErrorBody))
)]
pub async fn warden_logout(State(app): State<AppState>, w: Warden) -> Result<StatusCode, AppError> {
    app.revoke_staff_token(w.0.token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- plate checks ------------------------------------------------------------------------

fn entry_fact(e: &PlateEntry) -> SessionFact {
    SessionFact {
        session_id: e.session_id,
        point_id: e.point_id,
        point_code: e.point_code.clone(),
        paid_until: DateTime::from_timestamp_micros(e.paid_until_us).unwrap_or_default(),
        expires_at: DateTime::from_timestamp_micros(e.expires_at_us).unwrap_or_default(),
        active: true,
        end_reason: None,
    }
}

/// The plates among `vehicles` (plate, session id, paid until and expiry in Unix
/// microseconds) that are near misses of `plate`. Only those are copied: this runs over
/// every vehicle at the point on every check.
fn near_misses_in<'a>(
    plate: &Plate,
    vehicles: impl Iterator<Item = (&'a str, i64, i64, i64)>,
    at: DateTime<Utc>,
) -> Vec<NearMiss> {
    let time = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
    vehicles
        .filter(|(p, ..)| plate.near_miss_str(p))
        .map(|(p, session_id, paid_until, expires_at)| NearMiss {
            plate: p.to_owned(),
            session_id,
            paid_until: time(paid_until),
            verdict: time_verdict(time(paid_until), time(expires_at), at),
        })
        .collect()
}

fn time_verdict(paid_until: DateTime<Utc>, expires_at: DateTime<Utc>, at: DateTime<Utc>) -> CheckVerdict {
    if at < paid_until {
        CheckVerdict::Valid
    } else if at < expires_at {
        CheckVerdict::Grace
    } else {
        CheckVerdict::Expired
    }
}

/// Checks a plate at a point at `at` (now online, the device time offline), records the
/// check, and answers. Online, the live state answers; a verdict that may lead to a fine is
/// confirmed against the database (and a live state that missed the session is repaired).
pub async fn run_check(
    app: &App,
    staff_id: i64,
    plate: &Plate,
    point: &PointRecord,
    at: DateTime<Utc>,
    source: &'static str,
) -> Result<PlateCheckView, AppError> {
    let now = app.clock.now();
    let mut finding: Option<Finding> = None;
    // The near misses among the vehicles at the point; `None` until a roster was seen.
    let mut near_misses: Option<Vec<NearMiss>> = None;
    if source == "online" {
        match app.live.plate_lookup(plate.as_str(), point.id).await {
            Ok(lk) => {
                let f = verdict(point.id, lk.entry.as_ref().map(entry_fact).as_ref(), None, at);
                if !lk.roster.is_empty() {
                    near_misses = Some(near_misses_in(
                        plate,
                        lk.roster.iter().map(|(p, e)| (p.as_str(), e.session_id, e.paid_until_us, e.expires_at_us)),
                        at,
                    ));
                }
                if !may_fine(f.verdict) {
                    finding = Some(f);
                }
            }
            Err(e) => {
                crate::warn_throttled!(error = %e, "live state unavailable: plate check answered from the database")
            }
        }
    }
    let finding = match finding {
        Some(f) => f,
        None => {
            let facts = app.facts.plate_facts(plate, point.id, at).await?;
            let f = verdict(point.id, facts.covering.as_ref(), facts.last_here.as_ref(), at);
            if source == "online"
                && let Some(s) = facts.covering.as_ref().filter(|s| s.active && !may_fine(f.verdict))
            {
                // The live state missed a session the database has: repair it now.
                let entry = PlateEntry {
                    session_id: s.session_id,
                    point_id: s.point_id,
                    point_code: s.point_code.clone(),
                    paid_until_us: s.paid_until.timestamp_micros(),
                    expires_at_us: s.expires_at.timestamp_micros(),
                };
                if app.live.set_active_plate(plate.as_str(), &entry).await.is_ok() {
                    tracing::warn!(session.id = s.session_id, "live plate index missed a session; repaired");
                }
            }
            if near_misses.is_none() {
                let here = app.store.point_sessions(point.id).await?;
                near_misses = Some(near_misses_in(
                    plate,
                    here.iter().filter(|s| s.started_at <= at).map(|s| {
                        (s.plate.as_str(), s.id, s.paid_until.timestamp_micros(), s.expires_at.timestamp_micros())
                    }),
                    at,
                ));
            }
            f
        }
    };
    let near_misses = near_misses.unwrap_or_default();
    let elsewhere = match (&finding.verdict, &finding.session) {
        (CheckVerdict::Elsewhere, Some(s)) => {
            let other = match app.index().point_by_id(s.point_id) {
                Some(p) => Some(p),
                None => app.store.point(&s.point_code).await?.map(Arc::new),
            };
            other.map(|p| ElsewherePoint { code: p.code.clone(), name: p.name.clone(), street: p.street_name.clone() })
        }
        _ => None,
    };
    let session = finding.session.as_ref();
    let view = PlateCheckView {
        plate: plate.as_str().to_owned(),
        point_code: point.code.clone(),
        verdict: finding.verdict,
        session_id: session.map(|s| s.session_id),
        paid_until: session.map(|s| s.paid_until),
        grace_until: session
            .filter(|_| matches!(finding.verdict, CheckVerdict::Valid | CheckVerdict::Grace))
            .map(|s| s.expires_at),
        minutes_over: finding.minutes_over,
        elsewhere,
        near_misses,
        checked_at: if source == "online" { now } else { at },
    };
    app.checks
        .record(CheckRecord {
            staff_id,
            point_id: point.id,
            plate: plate.clone(),
            verdict: view.verdict,
            session_id: view.session_id,
            near_misses: view.near_misses.len() as u32,
            source,
            checked_at: view.checked_at,
        })
        .await;
    metrics::counter!("plate_checks_total", "verdict" => crate::store::wardens::verdict_name(view.verdict))
        .increment(1);
    Ok(view)
}

/// Checks a plate at a point: valid, grace, expired, unpaid, or paid elsewhere, with the
/// near-miss plates parked there. Every check is recorded.
#[utoipa::path(
    get, path = "/v1/warden/checks", tag = "wardens", params(PlateCheckQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "The verdict", body = PlateCheckView),
        (status = 400, description = "Not a plate", body = ErrorBody),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
    )
)]
pub async fn check_plate(
    State(app): State<AppState>,
    w: Warden,
    Query(q): Query<PlateCheckQuery>,
) -> Result<Json<PlateCheckView>, AppError> {
    let plate = Plate::parse(&q.plate).map_err(AppError::from)?;
    let point = point_for(&app, &q.point).await?;
    w.require_point(&point)?;
    let now = app.clock.now();
    Ok(Json(run_check(&app, w.0.staff_id, &plate, &point, now, "online").await?))
}

/// The vehicles that should be at a point (paid or in grace), and occupancy vs capacity.
#[utoipa::path(
    get, path = "/v1/warden/points/{code}/vehicles", tag = "wardens", security(("bearer" = [])),
    params(("code" = String, Path, description = "Point code")),
    responses(
        (status = 200, description = "The roster", body = PointRoster),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
    )
)]
pub async fn point_roster(
    State(app): State<AppState>,
    w: Warden,
    Path(code): Path<String>,
) -> Result<Json<PointRoster>, AppError> {
    let point = point_for(&app, &code).await?;
    w.require_point(&point)?;
    let now = app.clock.now();
    let vehicles: Vec<RosterVehicle> = app
        .store
        .point_sessions(point.id)
        .await?
        .into_iter()
        .filter(|s| s.expires_at > now)
        .map(|s| RosterVehicle {
            session_id: s.id,
            plate: s.plate.as_str().to_owned(),
            vehicle_class: s.vehicle_class,
            channel: s.channel.clone(),
            started_at: s.started_at,
            paid_until: s.paid_until,
            expires_at: s.expires_at,
            verdict: time_verdict(s.paid_until, s.expires_at, now),
        })
        .collect();
    let occupied = vehicles.len() as i64;
    Ok(Json(PointRoster {
        point_code: point.code.clone(),
        point_name: point.name.clone(),
        street: point.street_name.clone(),
        district: point.district_code.clone(),
        capacity: point.capacity,
        occupied,
        free: (i64::from(point.capacity) - occupied).max(0),
        vehicles,
    }))
}

// ---- cash --------------------------------------------------------------------------------

/// Whether a code read off a slip or a ticket is `stored` (case and surrounding spaces
/// aside). Constant-time enough: the codes are short and random; all bytes are compared
/// anyway. An empty stored code matches nothing.
fn same_code(given: &str, stored: &str) -> bool {
    let given = given.trim().to_uppercase();
    !stored.is_empty()
        && given.len() == stored.len()
        && given.bytes().zip(stored.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn verification_code() -> String {
    // Crockford base32 without I, L, O, U: easy to read off a slip.
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..8).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// The slip of a cash payment.
pub fn receipt_view(r: &ReceiptRow) -> ReceiptView {
    ReceiptView {
        number: r.number.clone(),
        verification_code: r.verification_code.clone(),
        qr_payload: format!("IPK1|{}|{}", r.number, r.verification_code),
        verify_path: format!("/v1/receipts/{}?code={}", r.number, r.verification_code),
        kind: r.kind.clone(),
        status: if r.applied { ReceiptStatus::Applied } else { ReceiptStatus::Unapplied },
        amount: r.amount.get(),
        turns: r.turns,
        paid_until: r.paid_until,
        plate: r.plate.as_str().to_owned(),
        point_code: r.point_code.clone(),
        point_name: r.point_name.clone(),
        street: r.street.clone(),
        district: r.district.clone(),
        session_id: r.session_id,
        collected_by: r.staff_id,
        collected_by_name: r.staff_name.clone(),
        shift_id: r.shift_id,
        issued_at: r.issued_at,
    }
}

/// What a cash payment came to, for the online routes and sync alike.
pub enum CashResult {
    /// Paid (maybe with flags).
    Paid(Box<CashPaymentView>, Vec<String>),
    /// Recorded in suspense (offline conflict).
    Unapplied(serde_json::Value, Vec<String>),
}

/// Renders the answer (status, JSON body) of a keyed call from what it came to: the store
/// writes it with the key in the effect's transaction (issue 30, bug 7).
pub type Render<'a, T> = dyn Fn(T) -> Result<(u16, String), AppError> + Send + Sync + 'a;

/// `view` as a stored answer with `status`.
fn json_answer<T: serde::Serialize>(status: StatusCode, view: &T) -> Result<(u16, String), AppError> {
    serde_json::to_string(view).map(|json| (status.as_u16(), json)).map_err(|e| AppError::internal(&e))
}

/// An answer that cannot be rendered fails the store's transaction (nothing commits).
fn render_failed(e: AppError) -> StoreError {
    StoreError::Internal(format!("answer not rendered: {} ({})", e.code, e.en))
}

fn no_open_shift() -> AppError {
    AppError::conflict(
        "no_open_shift",
        "Hãy mở ca trước khi thu tiền (POST /v1/warden/shifts).",
        "Open a shift before taking cash (POST /v1/warden/shifts).",
    )
}

fn check_turns(turns: Option<u32>, minutes: Option<u32>) -> Result<(), AppError> {
    let too_many = turns.is_some_and(|t| t > 48) || minutes.is_some_and(|m| m > 48 * 60);
    if too_many {
        return Err(AppError::bad_request(
            "invalid_duration",
            "Tối đa 48 lượt (48 giờ) mỗi lần thu.",
            "At most 48 turns (48 hours) per payment.",
        ));
    }
    Ok(())
}

/// Takes cash for a new session at `at` (online: now, with an open shift; offline: the
/// device time).
#[allow(clippy::too_many_arguments)]
pub async fn cash_start(
    app: &App,
    w: &Warden,
    req: &WardenStartSession,
    at: DateTime<Utc>,
    shift: ShiftRule,
    action_id: Option<&str>,
    idem: Option<&IdemClaim>,
    render: &Render<'_, CashResult>,
) -> Result<CashResult, AppError> {
    w.require_cash_role()?;
    let WardenPayment::Cash = req.payment;
    check_turns(req.turns, req.minutes)?;
    let plate = Plate::parse(&req.plate).map_err(AppError::from)?;
    let point = point_for(app, &req.point_code).await?;
    w.require_point(&point)?;
    if point.status == PointStatus::Closed && shift == ShiftRule::OpenRequired {
        return Err(AppError::conflict(
            "point_closed",
            format!("Điểm {} đang tạm đóng.", point.code),
            format!("Point {} is closed.", point.code),
        ));
    }
    let class = req.vehicle_class;
    if !point.vehicle_classes.contains(&class) {
        return Err(class_not_allowed(&point, class));
    }
    let book = app.tariffs();
    let pref = PointRef { code: &point.code, street_id: point.street_id, district_code: &point.district_code };
    let tariff = resolve(&book.tariffs, &pref, class, at).ok_or_else(|| {
        AppError::unprocessable(
            "no_tariff",
            format!("Chưa có biểu giá cho loại xe này tại {}.", point.code),
            format!("No tariff prices this vehicle class at {}.", point.code),
        )
    })?;
    let turns = requested_turns(tariff, req.minutes, req.turns)?;
    let priced = tariff.price(at, 0, turns, Channel::Warden).map_err(AppError::from)?;
    let quote = quote_view(tariff, &point.code, class, Channel::Warden, &priced, false);
    let entry = Entry::cash_payment("cash_session_start", w.0.staff_id, point.id, priced.total)
        .map_err(|e| AppError::internal(&e))?;
    let new = NewSession {
        driver_id: None,
        plate,
        vehicle_class: class,
        point_id: point.id,
        tariff_id: tariff.id,
        channel: "warden_cash".into(),
        started_at: at,
        paid_until: priced.until,
        expires_at: priced.until + Duration::minutes(i64::from(tariff.grace_minutes)),
        turns,
        amount: priced.total,
        quote: serde_json::to_string(&quote).map_err(|e| AppError::internal(&e))?,
        entry,
        notify_phone: None,
    };
    let ctx = CashContext {
        staff_id: w.0.staff_id,
        shift,
        issued_at: at,
        district_code: point.district_code.clone(),
        verification_code: verification_code(),
        action_id: action_id.map(str::to_owned),
    };
    let now = app.clock.now();
    let answer = |o: &CashOutcome| cash_view(o, now).and_then(render).map_err(render_failed);
    let outcome = app.store.cash_start(&new, point.capacity, &ctx, idem, &answer, now).await?;
    cash_result(app, outcome, now).await
}

fn class_not_allowed(point: &PointRecord, class: VehicleClass) -> AppError {
    AppError::unprocessable(
        "vehicle_class_not_allowed",
        format!("Điểm {} không nhận loại xe {}.", point.code, class.as_str()),
        format!("Point {} does not take {} vehicles.", point.code, class.as_str()),
    )
}

/// What a cash outcome comes to (its answer), without effects: rendered in the store's
/// transaction, and again after it.
fn cash_view(outcome: &CashOutcome, now: DateTime<Utc>) -> Result<CashResult, AppError> {
    match outcome {
        CashOutcome::Paid { session, receipt, flags, .. } => Ok(CashResult::Paid(
            Box::new(CashPaymentView { session: session_view(session, now), receipt: receipt_view(receipt) }),
            flags.clone(),
        )),
        CashOutcome::Unapplied { receipt, existing, flags } => Ok(CashResult::Unapplied(
            serde_json::json!({
                "receipt": receipt_view(receipt),
                "existing_session_id": existing.as_ref().map(|s| s.id),
            }),
            flags.clone(),
        )),
        CashOutcome::PlateActive(other) => Err(AppError::conflict(
            "plate_active",
            format!("Xe này đang có lượt đỗ tại điểm {}.", other.point_code),
            format!("This vehicle is already parked (paid) at point {}.", other.point_code),
        )
        .with_details(serde_json::json!({ "point_code": other.point_code, "session_id": other.id }))),
        CashOutcome::PointFull => Err(AppError::conflict(
            "point_full",
            "Điểm đã hết chỗ theo dữ liệu: kiểm tra danh sách xe tại điểm.",
            "The point is full by our records: check the point's roster.",
        )),
        CashOutcome::NoOpenShift => Err(no_open_shift()),
        CashOutcome::NotFound => Err(session_not_found()),
        CashOutcome::Ended(_) => Err(AppError::conflict(
            "session_ended",
            "Lượt đỗ đã kết thúc; hãy thu cho lượt mới.",
            "This parking session has ended; take payment for a new one.",
        )),
        CashOutcome::Refused(e) => Err(AppError::from(e.clone())),
    }
}

async fn cash_result(app: &App, outcome: CashOutcome, now: DateTime<Utc>) -> Result<CashResult, AppError> {
    match &outcome {
        CashOutcome::Paid { session, receipt, expired, historic, .. } => {
            // Mirrored before the answer leaves, so a check on any node sees it at once.
            let closed: Vec<&SessionRow> = expired.iter().collect();
            if *historic {
                mirror(app.live.as_ref(), &[], &[], &closed).await;
            } else if receipt.kind == "start" {
                mirror(app.live.as_ref(), &[session], &[], &closed).await;
            } else {
                mirror(app.live.as_ref(), &[], &[session], &closed).await;
            }
            tracing::info!(
                session.id = session.id,
                receipt.id = receipt.id,
                amount_vnd = receipt.amount.get(),
                "cash payment recorded"
            );
        }
        CashOutcome::Unapplied { receipt, flags, .. } => {
            tracing::warn!(receipt.id = receipt.id, flags = ?flags, "cash recorded in suspense");
        }
        _ => {}
    }
    cash_view(&outcome, now)
}

fn session_not_found() -> AppError {
    AppError::not_found("session_not_found", "Không tìm thấy lượt đỗ này.", "No such parking session.")
}

/// Takes cash for an extension of any active session at a point the warden covers.
#[allow(clippy::too_many_arguments)]
pub async fn cash_extend(
    app: &App,
    w: &Warden,
    session_id: i64,
    req: &WardenExtendSession,
    at: DateTime<Utc>,
    shift: ShiftRule,
    action_id: Option<&str>,
    idem: Option<&IdemClaim>,
    render: &Render<'_, CashResult>,
) -> Result<CashResult, AppError> {
    w.require_cash_role()?;
    let WardenPayment::Cash = req.payment;
    check_turns(req.turns, req.minutes)?;
    let session = app.store.session(session_id).await?.ok_or_else(session_not_found)?;
    let point = match app.index().point_by_id(session.point_id) {
        Some(p) => p,
        None => point_for(app, &session.point_code).await?,
    };
    w.require_point(&point)?;
    let tariff = app
        .tariffs()
        .get(session.tariff_id)
        .cloned()
        .ok_or_else(|| AppError::internal(&format!("tariff {} is not loaded", session.tariff_id)))?;
    let add = requested_turns(&tariff, req.minutes, req.turns)?;
    let staff_id = w.0.staff_id;
    let price = |row: &SessionRow| -> Result<PricedChange, QuoteError> {
        let p = tariff.price(row.started_at, row.turns, add, Channel::Warden)?;
        let quote = quote_view(&tariff, &row.point_code, row.vehicle_class, Channel::Warden, &p, false);
        Ok(PricedChange {
            turns: row.turns + add,
            paid_until: p.until,
            expires_at: p.until + Duration::minutes(i64::from(tariff.grace_minutes)),
            amount: p.total,
            entry: Entry::cash_payment("cash_session_extend", staff_id, row.point_id, p.total)
                .ok()
                .filter(|e| !e.is_empty()),
            quote: serde_json::to_string(&quote).ok(),
        })
    };
    let ctx = CashContext {
        staff_id,
        shift,
        issued_at: at,
        district_code: point.district_code.clone(),
        verification_code: verification_code(),
        action_id: action_id.map(str::to_owned),
    };
    let now = app.clock.now();
    let answer = |o: &CashOutcome| cash_view(o, now).and_then(render).map_err(render_failed);
    let outcome = app.store.cash_extend(session_id, &price, &ctx, idem, &answer, now).await?;
    cash_result(app, outcome, now).await
}

/// The stored answer of an online cash payment. Rendered through a JSON value, as it
/// always was (keys in order: replays of answers stored before stay identical).
fn cash_answer(r: CashResult, status: StatusCode) -> Result<(u16, String), AppError> {
    match r {
        CashResult::Paid(view, _) => {
            json_answer(status, &serde_json::to_value(view).map_err(|e| AppError::internal(&e))?)
        }
        CashResult::Unapplied(..) => Err(AppError::internal(&"an online cash payment cannot be unapplied")),
    }
}

/// A session paid in cash to the warden on the driver's behalf (thanh toán hộ): priced by
/// the tariff, posted from the warden's cash to the point's revenue, with a slip to print.
/// Needs an open shift and an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/sessions", tag = "wardens", request_body = WardenStartSession,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per payment; retries reuse it")),
    responses(
        (status = 201, description = "Paid; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad plate, duration, body; missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "No open shift, plate already paid, point full or closed", body = ErrorBody),
        (status = 422, description = "Class not allowed, no tariff, too long, key reused", body = ErrorBody),
    )
)]
pub async fn start_cash_session(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/sessions", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenStartSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::CREATED);
    let r = cash_start(&app, &w, &req, now, ShiftRule::OpenRequired, None, Some(idem.claim()), &render).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// An extension of an active session paid in cash to the warden, with its own slip.
#[utoipa::path(
    post, path = "/v1/warden/sessions/{id}/extend", tag = "wardens", request_body = WardenExtendSession,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Session id"), ("Idempotency-Key" = String, Header, description = "Unique per payment")),
    responses(
        (status = 200, description = "Extended; the session and the slip", body = CashPaymentView),
        (status = 400, description = "Bad duration, missing Idempotency-Key", body = ErrorBody),
        (status = 403, description = "Outside the assignment, or not a warden", body = ErrorBody),
        (status = 404, description = "No such session", body = ErrorBody),
        (status = 409, description = "No open shift; the session has ended", body = ErrorBody),
        (status = 422, description = "Beyond the maximum stay; key reused", body = ErrorBody),
    )
)]
pub async fn extend_cash_session(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let path = format!("/v1/warden/sessions/{id}/extend");
    let idem = match claim_staff(&app, w.0.staff_id, &headers, &path, &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: WardenExtendSession = parse_json(&headers, &body)?;
    let now = app.clock.now();
    let render = |r: CashResult| cash_answer(r, StatusCode::OK);
    let r = cash_extend(&app, &w, id, &req, now, ShiftRule::OpenRequired, None, Some(idem.claim()), &render).await?;
    // The answer was stored with the key in the payment's transaction.
    let (status, json) = render(r)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// Checks a cash slip: the number and the code printed on it. No login needed; a wrong
/// code answers exactly like an unknown number.
#[utoipa::path(
    get, path = "/v1/receipts/{number}", tag = "wardens", params(("number" = String, Path, description = "Receipt number"), ReceiptQuery),
    responses(
        (status = 200, description = "The slip is genuine", body = ReceiptCheckView),
        (status = 404, description = "No such slip (or a wrong code)", body = ErrorBody),
    )
)]
pub async fn get_receipt(
    State(app): State<AppState>,
    Path(number): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Json<ReceiptCheckView>, AppError> {
    let not_found = || {
        AppError::not_found(
            "receipt_not_found",
            "Không có biên lai với số và mã kiểm tra này.",
            "No receipt with this number and verification code.",
        )
    };
    if number.len() > 40 || q.code.len() > 16 {
        return Err(not_found());
    }
    let r = app.store.receipt(number.trim()).await?.ok_or_else(not_found)?;
    if !same_code(&q.code, &r.verification_code) {
        return Err(not_found());
    }
    let session = match r.session_id {
        Some(id) => app.store.session(id).await?,
        None => None,
    };
    let now = app.clock.now();
    Ok(Json(ReceiptCheckView {
        number: r.number.clone(),
        status: if r.applied { ReceiptStatus::Applied } else { ReceiptStatus::Unapplied },
        amount: r.amount.get(),
        turns: r.turns,
        plate: r.plate.as_str().to_owned(),
        point_code: r.point_code.clone(),
        point_name: r.point_name.clone(),
        paid_until: r.paid_until,
        session_paid_until: session.as_ref().map(|s| s.paid_until),
        session_active: session.as_ref().is_some_and(|s| s.active && s.expires_at > now),
        issued_at: r.issued_at,
    }))
}

// ---- violations --------------------------------------------------------------------------

/// The fields of a violation, from the form or a sync payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationFields {
    /// Plate.
    pub plate: String,
    /// Point code.
    pub point: String,
    /// Kind.
    pub kind: ViolationKind,
    /// Note.
    #[serde(default)]
    pub note: String,
    /// Latitude.
    #[serde(default)]
    pub lat: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub lon: Option<f64>,
    /// Photos as base64 (sync only).
    #[serde(default)]
    pub photos: Vec<String>,
}

/// A photo checked by content.
pub struct Photo {
    bytes: Bytes,
    content_type: &'static str,
    ext: &'static str,
    sha256: String,
}

/// Checks a photo's size and kind by its content (magic bytes), not its name.
pub fn check_photo(bytes: Bytes) -> Result<Photo, AppError> {
    if bytes.len() > PHOTO_MAX_BYTES {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "photo_too_large",
            "Mỗi ảnh tối đa 5 MB.",
            "Each photo may be at most 5 MB.",
        ));
    }
    let (content_type, ext) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        ("image/jpeg", "jpg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ("image/png", "png")
    } else {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "photo_not_image",
            "Ảnh phải là JPEG hoặc PNG.",
            "Photos must be JPEG or PNG images.",
        ));
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Photo { bytes, content_type, ext, sha256 })
}

fn photo_count_error(n: usize) -> Option<AppError> {
    if n == 0 {
        Some(AppError::bad_request(
            "photos_required",
            "Cần ít nhất một ảnh làm bằng chứng.",
            "At least one photo is needed as evidence.",
        ))
    } else if n > PHOTOS_MAX {
        Some(AppError::bad_request(
            "too_many_photos",
            format!("Tối đa {PHOTOS_MAX} ảnh cho mỗi vi phạm."),
            format!("At most {PHOTOS_MAX} photos per violation."),
        ))
    } else {
        None
    }
}

fn photo_path(dir: &std::path::Path, sha256: &str, ext: &str) -> PathBuf {
    dir.join(&sha256[..2]).join(format!("{sha256}.{ext}"))
}

/// Stores a photo under its content hash: written once (a temp file renamed into place),
/// the same photo twice is stored once.
async fn store_photo(dir: &std::path::Path, p: &Photo) -> Result<(), AppError> {
    let path = photo_path(dir, &p.sha256, p.ext);
    if tokio::fs::try_exists(&path).await.unwrap_or(false) {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(dir);
    tokio::fs::create_dir_all(parent).await.map_err(|e| AppError::internal(&format!("photo directory: {e}")))?;
    let tmp = parent.join(format!(".{}.{:x}.tmp", p.sha256, rand::rng().random::<u64>()));
    tokio::fs::write(&tmp, &p.bytes).await.map_err(|e| AppError::internal(&format!("photo write: {e}")))?;
    tokio::fs::rename(&tmp, &path).await.map_err(|e| AppError::internal(&format!("photo rename: {e}")))?;
    Ok(())
}

/// A violation's plate, position and note, validated.
type CheckedFields = (Plate, Option<(f64, f64)>, String);

/// Validates the fields of a violation (everything but the photos and the point's scope).
pub fn check_violation_fields(f: &ViolationFields) -> Result<CheckedFields, AppError> {
    let plate = Plate::parse(&f.plate).map_err(AppError::from)?;
    let note = crate::domain::city::trim_blank(&f.note).to_owned();
    if f.note.chars().count() > NOTE_MAX_CHARS {
        return Err(AppError::bad_request(
            "invalid_note",
            format!("Ghi chú tối đa {NOTE_MAX_CHARS} ký tự."),
            format!("The note may be at most {NOTE_MAX_CHARS} characters."),
        ));
    }
    let position = match (f.lat, f.lon) {
        (Some(lat), Some(lon)) => {
            validate_position(lat, lon).map_err(AppError::from)?;
            Some((lat, lon))
        }
        (None, None) => None,
        _ => return Err(AppError::bad_request("invalid_coordinates", "Cần cả lat và lon.", "Give both lat and lon.")),
    };
    Ok((plate, position, note))
}

/// Issues a violation at `at` with checked photos (stored before the citation is written).
#[allow(clippy::too_many_arguments)]
pub async fn issue_violation(
    app: &App,
    w: &Warden,
    f: &ViolationFields,
    photos: Vec<Photo>,
    at: DateTime<Utc>,
    action_id: Option<&str>,
    idem: Option<&IdemClaim>,
    render: &Render<'_, Result<ViolationView, AppError>>,
) -> Result<ViolationView, AppError> {
    let (plate, position, note) = check_violation_fields(f)?;
    if let Some(e) = photo_count_error(photos.len()) {
        return Err(e);
    }
    let point = point_for(app, &f.point).await?;
    w.require_point(&point)?;
    for p in &photos {
        store_photo(&app.settings.photo_dir, p).await?;
    }
    let v = NewViolation {
        staff_id: w.0.staff_id,
        point_id: point.id,
        district_code: point.district_code.clone(),
        plate,
        kind: f.kind,
        note,
        position,
        photos: photos.iter().map(|p| (p.sha256.clone(), p.content_type.to_owned(), p.bytes.len() as i64)).collect(),
        issued_at: at,
        verification_code: verification_code(),
    };
    let now = app.clock.now();
    let answer = |o: &ViolationOutcome| render(violation_result(o, now)).map_err(render_failed);
    match app.store.issue_violation(&v, action_id, idem, &answer, now).await? {
        ViolationOutcome::Issued(row) => {
            tracing::info!(violation.id = row.id, staff.id = w.0.staff_id, point.code = %point.code, "violation issued");
            Ok(violation_view(&row))
        }
        ViolationOutcome::SessionValid(s) => {
            // No citation: drop the photos no other citation uses.
            for p in &photos {
                if app.store.photo_scopes(&p.sha256).await?.is_empty() {
                    let _ = tokio::fs::remove_file(photo_path(&app.settings.photo_dir, &p.sha256, p.ext)).await;
                }
            }
            Err(session_valid(&s, now))
        }
    }
}

/// What a violation outcome comes to (its answer), without effects.
fn violation_result(o: &ViolationOutcome, now: DateTime<Utc>) -> Result<ViolationView, AppError> {
    match o {
        ViolationOutcome::Issued(row) => Ok(violation_view(row)),
        ViolationOutcome::SessionValid(s) => Err(session_valid(s, now)),
    }
}

fn session_valid(s: &SessionRow, now: DateTime<Utc>) -> AppError {
    let until = crate::domain::tariff::local_time_for_people(s.paid_until, now);
    AppError::conflict(
        "session_valid",
        format!("Xe đã trả phí tại điểm {} đến {until}: không lập biên bản.", s.point_code),
        format!("This vehicle is paid at {} until {until}: no citation.", s.point_code),
    )
    .with_details(serde_json::json!({ "session_id": s.id, "paid_until": s.paid_until }))
}

/// A citation as staff see it.
pub fn violation_view(v: &ViolationRow) -> ViolationView {
    ViolationView {
        number: v.number.clone(),
        plate: v.plate.as_str().to_owned(),
        point_code: v.point_code.clone(),
        point_name: v.point_name.clone(),
        street: v.street.clone(),
        district: v.district.clone(),
        kind: v.kind,
        note: v.note.clone(),
        lat: v.lat,
        lon: v.lon,
        issued_by: v.staff_id,
        issued_at: v.issued_at,
        photos: v
            .photos
            .iter()
            .map(|(sha, ct, size)| PhotoRef {
                sha256: sha.clone(),
                content_type: ct.clone(),
                size: *size,
                path: format!("/v1/warden/photos/{sha}"),
            })
            .collect(),
        verification_code: v.verification_code.clone(),
        verify_path: format!("/v1/citations/{}?{}", v.number, ticket_query(v)),
    }
}

/// `plate=…&code=…` of a citation's ticket (both ASCII letters and digits: nothing to escape).
fn ticket_query(v: &ViolationRow) -> String {
    format!("plate={}&code={}", v.plate.as_str(), v.verification_code)
}

fn form_error(e: impl std::fmt::Display) -> AppError {
    AppError::bad_request(
        "invalid_form",
        format!("Biểu mẫu multipart không hợp lệ: {e}"),
        format!("Invalid multipart form: {e}"),
    )
}

/// Records a violation with photo evidence (`multipart/form-data`: `plate`, `point`, `kind`,
/// `note`, `lat`, `lon`, 1–5 `photo` files, JPEG or PNG by content, 5 MB each). Refused while
/// the plate has a valid session at the point. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/violations", tag = "wardens", security(("bearer" = [])),
    request_body(content = String, content_type = "multipart/form-data", description = "plate, point, kind, note, lat, lon, photo (1–5 files)"),
    params(("Idempotency-Key" = String, Header, description = "Unique per citation")),
    responses(
        (status = 201, description = "Issued", body = ViolationView),
        (status = 400, description = "Bad plate, fields, no photo or too many", body = ErrorBody),
        (status = 403, description = "Outside the assignment", body = ErrorBody),
        (status = 404, description = "Unknown point", body = ErrorBody),
        (status = 409, description = "The plate has a valid session here", body = ErrorBody),
        (status = 413, description = "A photo over 5 MB, or the form too large", body = ErrorBody),
        (status = 415, description = "A photo that is not JPEG or PNG; not a multipart form", body = ErrorBody),
    )
)]
pub async fn create_violation(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let bytes = to_bytes(body, VIOLATION_BODY_MAX).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Biểu mẫu quá lớn (tối đa 5 ảnh, mỗi ảnh 5 MB).",
            "The form is too large (at most 5 photos of 5 MB).",
        )
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).cloned().unwrap_or(HeaderValue::from_static(""));
    if !content_type.to_str().unwrap_or("").starts_with("multipart/form-data") {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Cần gửi multipart/form-data.",
            "Send multipart/form-data.",
        ));
    }
    let boundary = multer::parse_boundary(content_type.to_str().unwrap_or("")).map_err(form_error)?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let (mut plate, mut point, mut kind, mut note, mut lat, mut lon) = (None, None, None, None, None, None);
    let mut photos = Vec::new();
    let mut photo_parts = 0usize;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if name == "photo" {
            photo_parts += 1;
            let data = field.bytes().await.map_err(form_error)?;
            if photo_parts <= PHOTOS_MAX {
                photos.push(check_photo(data)?);
            }
            continue;
        }
        let text = field.text().await.map_err(form_error)?;
        if text.len() > 4096 {
            return Err(form_error(format!("field {name} is too long")));
        }
        super::input::check_text(&name, &text)?;
        match name.as_str() {
            "plate" => plate = Some(text),
            "point" => point = Some(text),
            "kind" => kind = Some(text),
            "note" => note = Some(text),
            "lat" => lat = Some(text.trim().parse::<f64>().map_err(|_| form_error("lat is not a number"))?),
            "lon" => lon = Some(text.trim().parse::<f64>().map_err(|_| form_error("lon is not a number"))?),
            other => return Err(form_error(format!("unknown field {other}"))),
        }
    }
    if let Some(e) = photo_count_error(photo_parts) {
        return Err(e);
    }
    let missing = |f: &str| form_error(format!("field {f} is required"));
    let kind_text = kind.ok_or_else(|| missing("kind"))?;
    let kind = ViolationKind::parse(&kind_text).ok_or_else(|| {
        AppError::bad_request(
            "invalid_kind",
            "Loại vi phạm: unpaid, overstay, wrong_vehicle_class, outside_bay, obstruction.",
            "Kind must be one of unpaid, overstay, wrong_vehicle_class, outside_bay, obstruction.",
        )
    })?;
    let fields = ViolationFields {
        plate: plate.ok_or_else(|| missing("plate"))?,
        point: point.ok_or_else(|| missing("point"))?,
        kind,
        note: note.unwrap_or_default(),
        lat,
        lon,
        photos: Vec::new(),
    };
    // A retry rebuilds the form with a new boundary: the key is bound to what the form
    // says (fields and photo hashes), not to its bytes.
    let canonical = serde_json::to_vec(&(
        &fields.plate,
        &fields.point,
        fields.kind,
        &fields.note,
        fields.lat,
        fields.lon,
        photos.iter().map(|p| p.sha256.as_str()).collect::<Vec<_>>(),
    ))
    .map_err(|e| AppError::internal(&e))?;
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/violations", &canonical).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let now = app.clock.now();
    let render = |r: Result<ViolationView, AppError>| r.and_then(|v| json_answer(StatusCode::CREATED, &v));
    let view = issue_violation(&app, &w, &fields, photos, now, None, Some(idem.claim()), &render).await?;
    // The answer was stored with the key in the citation's transaction.
    let (status, json) = json_answer(StatusCode::CREATED, &view)?;
    Ok(Idempotency::stored_answer(status, json))
}

/// One citation (staff covering its point).
#[utoipa::path(
    get, path = "/v1/warden/violations/{number}", tag = "wardens", security(("bearer" = [])),
    params(("number" = String, Path, description = "Citation number")),
    responses(
        (status = 200, description = "The citation", body = ViolationView),
        (status = 404, description = "No such citation (or outside the assignment)", body = ErrorBody),
    )
)]
pub async fn get_violation(
    State(app): State<AppState>,
    w: Warden,
    Path(number): Path<String>,
) -> Result<Json<ViolationView>, AppError> {
    let not_found = || AppError::not_found("violation_not_found", "Không có biên bản này.", "No such citation.");
    if number.len() > 40 {
        return Err(not_found());
    }
    let v = app.store.violation(number.trim()).await?.ok_or_else(not_found)?;
    if !w.0.covers_point(&v.district, v.street_id) {
        return Err(not_found());
    }
    Ok(Json(violation_view(&v)))
}

/// A violation photo, for staff whose scope covers a citation that uses it.
#[utoipa::path(
    get, path = "/v1/warden/photos/{sha256}", tag = "wardens", security(("bearer" = [])),
    params(("sha256" = String, Path, description = "SHA-256 of the photo, hex")),
    responses(
        (status = 200, description = "The photo (image/jpeg or image/png)"),
        (status = 401, description = "Not staff", body = ErrorBody),
        (status = 404, description = "No such photo (or outside the scope)", body = ErrorBody),
    )
)]
pub async fn get_photo(
    State(app): State<AppState>,
    Staff(p): Staff,
    Path(sha): Path<String>,
) -> Result<Response, AppError> {
    let not_found = || AppError::not_found("photo_not_found", "Không có ảnh này.", "No such photo.");
    let sha = sha.to_ascii_lowercase();
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let scopes = app.store.photo_scopes(&sha).await?;
    if !scopes.iter().any(|(district, street)| p.covers_point(district, *street)) {
        return Err(not_found());
    }
    photo_file(&app, &sha, not_found).await
}

/// The stored photo `sha` (a recorded one) as a response; `not_found` if its file is missing.
async fn photo_file(app: &App, sha: &str, not_found: impl Fn() -> AppError) -> Result<Response, AppError> {
    for (ext, ct) in [("jpg", "image/jpeg"), ("png", "image/png")] {
        let path = photo_path(&app.settings.photo_dir, sha, ext);
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let mut resp = bytes.into_response();
                let h = resp.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
                h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
                return Ok(resp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AppError::internal(&format!("photo read: {e}"))),
        }
    }
    tracing::error!("a recorded photo is missing from the photo directory");
    Err(not_found())
}

/// Citations on the driver's registered plates, newest first: number, time and point only.
/// Adding a plate needs no proof, so the reason, the note and the photos are not here: they
/// open with the ticket (`GET /v1/citations/{number}`).
#[utoipa::path(
    get, path = "/v1/me/citations", tag = "drivers", security(("bearer" = [])),
    responses(
        (status = 200, description = "Citations", body = [DriverCitation]),
        (status = 401, description = "Not logged in", body = ErrorBody),
    )
)]
pub async fn list_citations(
    State(app): State<AppState>,
    Driver(d): Driver,
) -> Result<Json<Vec<DriverCitation>>, AppError> {
    let rows = app.store.driver_citations(d.driver_id, 200).await?;
    Ok(Json(
        rows.into_iter()
            .map(|v| DriverCitation {
                number: v.number,
                plate: v.plate.as_str().to_owned(),
                point_code: v.point_code,
                point_name: v.point_name,
                issued_at: v.issued_at,
            })
            .collect(),
    ))
}

fn citation_not_found() -> AppError {
    AppError::not_found(
        "citation_not_found",
        "Không có biên bản với số, biển số và mã kiểm tra này.",
        "No citation with this number, plate and verification code.",
    )
}

/// The citation the ticket names: the number, the plate and the code must all match, and
/// any mismatch (or malformed input) answers the same `404`, so nothing tells which was
/// wrong.
async fn ticket_citation(app: &App, number: &str, q: &CitationQuery) -> Result<ViolationRow, AppError> {
    if number.len() > 40 || q.plate.len() > 32 || q.code.len() > 16 {
        return Err(citation_not_found());
    }
    let plate = Plate::parse(&q.plate).map_err(|_| citation_not_found())?;
    let v = app.store.violation(number.trim()).await?.ok_or_else(citation_not_found)?;
    // Both checked, whatever the first answers.
    let code_ok = same_code(&q.code, &v.verification_code);
    if !(code_ok & (v.plate == plate)) {
        return Err(citation_not_found());
    }
    Ok(v)
}

/// A citation's details for whoever holds the ticket: the number, the plate and the
/// verification code printed on it (no login needed). The reason, the note and the photos;
/// not the warden, not the position.
#[utoipa::path(
    get, path = "/v1/citations/{number}", tag = "drivers",
    params(("number" = String, Path, description = "Citation number"), CitationQuery),
    responses(
        (status = 200, description = "The citation", body = CitationDetails),
        (status = 404, description = "No such citation (or a wrong plate or code)", body = ErrorBody),
    )
)]
pub async fn get_citation(
    State(app): State<AppState>,
    Path(number): Path<String>,
    Query(q): Query<CitationQuery>,
) -> Result<Json<CitationDetails>, AppError> {
    let v = ticket_citation(&app, &number, &q).await?;
    let query = ticket_query(&v);
    Ok(Json(CitationDetails {
        number: v.number.clone(),
        plate: v.plate.as_str().to_owned(),
        point_code: v.point_code.clone(),
        point_name: v.point_name.clone(),
        street: v.street.clone(),
        kind: v.kind,
        note: v.note.clone(),
        issued_at: v.issued_at,
        photos: v
            .photos
            .iter()
            .enumerate()
            .map(|(i, (_, ct, size))| CitationPhoto {
                content_type: ct.clone(),
                size: *size,
                path: format!("/v1/citations/{}/photos/{i}?{query}", v.number),
            })
            .collect(),
    }))
}

/// A citation's photo for whoever holds the ticket (number, plate and code, as for the
/// details); `index` from 0 in the order of the details.
#[utoipa::path(
    get, path = "/v1/citations/{number}/photos/{index}", tag = "drivers",
    params(
        ("number" = String, Path, description = "Citation number"),
        ("index" = u32, Path, description = "The photo's place in the details, from 0"),
        CitationQuery,
    ),
    responses(
        (status = 200, description = "The photo (image/jpeg or image/png)"),
        (status = 404, description = "No such citation or photo (or a wrong plate or code)", body = ErrorBody),
    )
)]
pub async fn get_citation_photo(
    State(app): State<AppState>,
    Path((number, index)): Path<(String, String)>,
    Query(q): Query<CitationQuery>,
) -> Result<Response, AppError> {
    let v = ticket_citation(&app, &number, &q).await?;
    let (sha, _, _) = index
        .parse::<usize>()
        .ok()
        .and_then(|i| v.photos.get(i))
        .ok_or_else(|| AppError::not_found("photo_not_found", "Không có ảnh này.", "No such photo."))?;
    photo_file(&app, sha, citation_not_found).await
}

// ---- shifts ------------------------------------------------------------------------------

fn shift_view(s: &ShiftRow) -> ShiftView {
    ShiftView {
        id: s.id,
        staff_id: s.staff_id,
        status: if s.open { ShiftStatus::Open } else { ShiftStatus::Closed },
        device: s.device.clone(),
        opened_at: s.opened_at,
        closed_at: s.closed_at,
        collections: s.collections,
        expected_cash: s.expected_cash.get(),
        declared_cash: s.declared_cash.map(Vnd::get),
        difference: s.difference.map(Vnd::get),
        late_cash: s.late_cash.get(),
        note: s.note.clone(),
        close_note: s.close_note.clone(),
    }
}

fn shift_not_found() -> AppError {
    AppError::not_found("shift_not_found", "Không có ca này.", "No such shift.")
}

fn check_note(note: Option<&str>) -> Result<Option<String>, AppError> {
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(AppError::bad_request(
            "invalid_note",
            format!("Ghi chú tối đa {NOTE_MAX_CHARS} ký tự."),
            format!("The note may be at most {NOTE_MAX_CHARS} characters."),
        ));
    }
    let note = note.map(crate::domain::city::trim_blank).filter(|n| !n.is_empty());
    Ok(note.map(str::to_owned))
}

/// Opens a shift on this handheld (one open shift per warden). Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/shifts", tag = "wardens", request_body = OpenShift, security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per shift")),
    responses(
        (status = 201, description = "Opened", body = ShiftView),
        (status = 403, description = "Not a warden", body = ErrorBody),
        (status = 409, description = "A shift is already open", body = ErrorBody),
    )
)]
pub async fn open_shift(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    w.require_cash_role()?;
    let idem = match claim_staff(&app, w.0.staff_id, &headers, "/v1/warden/shifts", &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: OpenShift = parse_json(&headers, &body)?;
    let note = check_note(req.note.as_deref())?;
    let device = app.store.token_device(w.0.token_id).await?.unwrap_or_else(|| "unknown".to_owned());
    let now = app.clock.now();
    let answer = |s: &ShiftRow| json_answer(StatusCode::CREATED, &shift_view(s)).map_err(render_failed);
    match app.store.open_shift(w.0.staff_id, &device, note.as_deref(), Some(idem.claim()), &answer, now).await? {
        OpenShiftOutcome::Opened(s) => {
            tracing::info!(shift.id = s.id, staff.id = w.0.staff_id, "shift opened");
            // The answer was stored with the key in the opening's transaction.
            answer(&s).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        OpenShiftOutcome::AlreadyOpen(s) => Err(AppError::conflict(
            "shift_open",
            format!("Bạn đang có ca số {} chưa đóng.", s.id),
            format!("Shift {} is still open.", s.id),
        )
        .with_details(serde_json::json!({ "shift_id": s.id }))),
    }
}

/// One of the warden's shifts, with its cash so far.
#[utoipa::path(
    get, path = "/v1/warden/shifts/{id}", tag = "wardens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Shift id")),
    responses(
        (status = 200, description = "The shift", body = ShiftView),
        (status = 404, description = "No such shift of this warden", body = ErrorBody),
    )
)]
pub async fn get_shift(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
) -> Result<Json<ShiftView>, AppError> {
    let s = app.store.shift(id).await?.filter(|s| s.staff_id == w.0.staff_id).ok_or_else(shift_not_found)?;
    Ok(Json(shift_view(&s)))
}

/// Closes a shift with the cash handed over: expected cash (the shift's collections), the
/// declared amount and the difference are recorded for finance, and the cash moves to the
/// cash office in the ledger. Needs an `Idempotency-Key`.
#[utoipa::path(
    post, path = "/v1/warden/shifts/{id}/close", tag = "wardens", request_body = CloseShift,
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Shift id"), ("Idempotency-Key" = String, Header, description = "Unique per closing")),
    responses(
        (status = 200, description = "Closed", body = ShiftView),
        (status = 400, description = "Negative or absurd amount", body = ErrorBody),
        (status = 404, description = "No such shift of this warden", body = ErrorBody),
        (status = 409, description = "Already closed", body = ErrorBody),
    )
)]
pub async fn close_shift(
    State(app): State<AppState>,
    w: Warden,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    w.require_cash_role()?;
    let path = format!("/v1/warden/shifts/{id}/close");
    let idem = match claim_staff(&app, w.0.staff_id, &headers, &path, &body).await? {
        Ok(idem) => idem,
        Err(replayed) => return Ok(replayed),
    };
    let req: CloseShift = parse_json(&headers, &body)?;
    if !(0..=10_000_000_000).contains(&req.cash_handed_over) {
        return Err(AppError::bad_request(
            "invalid_amount",
            "Số tiền nộp phải từ 0 đến 10 tỷ đồng.",
            "The cash handed over must be between 0 and 10,000,000,000 VND.",
        ));
    }
    let note = check_note(req.note.as_deref())?;
    let now = app.clock.now();
    let declared = Vnd(req.cash_handed_over);
    let answer = |s: &ShiftRow| json_answer(StatusCode::OK, &shift_view(s)).map_err(render_failed);
    match app.store.close_shift(id, w.0.staff_id, declared, note.as_deref(), Some(idem.claim()), &answer, now).await? {
        CloseShiftOutcome::Closed(s) => {
            tracing::info!(
                shift.id = s.id,
                staff.id = w.0.staff_id,
                expected_vnd = s.expected_cash.get(),
                declared_vnd = declared.get(),
                "shift closed"
            );
            // The answer was stored with the key in the closing's transaction.
            answer(&s).map(|(status, json)| Idempotency::stored_answer(status, json)).map_err(AppError::from)
        }
        CloseShiftOutcome::NotFound => Err(shift_not_found()),
        CloseShiftOutcome::AlreadyClosed(s) => Err(AppError::conflict(
            "shift_closed",
            format!("Ca số {} đã đóng.", s.id),
            format!("Shift {} is already closed.", s.id),
        )),
    }
}

// ---- offline sync ------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncCheck {
    plate: String,
    point: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncExtension {
    session_id: i64,
    #[serde(default)]
    turns: Option<u32>,
    #[serde(default)]
    minutes: Option<u32>,
    #[serde(default)]
    payment: WardenPayment,
}

/// A validated offline action.
enum Planned {
    Check(Plate, String),
    CashSession(WardenStartSession),
    CashExtension(i64, WardenExtendSession),
    Violation(ViolationFields, Vec<Photo>),
}

/// An offline payment carries exactly one of turns or minutes, within the limit (checked
/// before anything in the batch is applied; online, the tariff's `requested_turns` does it).
fn one_duration(turns: Option<u32>, minutes: Option<u32>) -> Result<(), AppError> {
    check_turns(turns, minutes)?;
    if turns.is_some() == minutes.is_some() {
        return Err(AppError::bad_request(
            "invalid_duration",
            "Gửi một trong hai: minutes hoặc turns.",
            "Give exactly one of minutes or turns.",
        ));
    }
    Ok(())
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

fn batch_error(index: usize, action: &SyncAction, e: AppError) -> AppError {
    let detail = serde_json::json!({ "index": index, "id": action.id, "code": e.code });
    AppError {
        // The action's own refusal: 400 malformed, 415 a photo that is no image, 422 a rule
        // the document cannot state (a device clock in the future).
        status: e.status,
        code: "invalid_action",
        vi: format!("Thao tác số {} ({}) không hợp lệ: {}", index, action.id, e.vi).into(),
        en: format!("Action {} ({}) is invalid: {}", index, action.id, e.en).into(),
        details: Some(detail),
    }
}

fn plan(action: &SyncAction, now: DateTime<Utc>) -> Result<Planned, AppError> {
    if action.device_time > now + Duration::seconds(DEVICE_CLOCK_SKEW_SECS) {
        return Err(AppError::unprocessable(
            "device_time_in_future",
            "Giờ thiết bị ở tương lai: hãy chỉnh đồng hồ.",
            "The device time is in the future: set the handheld's clock.",
        ));
    }
    let bad = |e: serde_json::Error| {
        AppError::bad_request("invalid_payload", format!("Dữ liệu không hợp lệ: {e}"), format!("Invalid payload: {e}"))
    };
    let payload = action.payload.clone();
    Ok(match action.kind {
        SyncKind::Check => {
            let c: SyncCheck = serde_json::from_value(payload).map_err(bad)?;
            Planned::Check(Plate::parse(&c.plate).map_err(AppError::from)?, c.point)
        }
        SyncKind::CashSession => {
            let c: WardenStartSession = serde_json::from_value(payload).map_err(bad)?;
            Plate::parse(&c.plate).map_err(AppError::from)?;
            one_duration(c.turns, c.minutes)?;
            Planned::CashSession(c)
        }
        SyncKind::CashExtension => {
            let c: SyncExtension = serde_json::from_value(payload).map_err(bad)?;
            one_duration(c.turns, c.minutes)?;
            Planned::CashExtension(
                c.session_id,
                WardenExtendSession { turns: c.turns, minutes: c.minutes, payment: c.payment },
            )
        }
        SyncKind::Violation => {
            let f: ViolationFields = serde_json::from_value(payload).map_err(bad)?;
            check_violation_fields(&f)?;
            if let Some(e) = photo_count_error(f.photos.len()) {
                return Err(e);
            }
            let mut photos = Vec::with_capacity(f.photos.len());
            for p in &f.photos {
                let bytes = base64::engine::general_purpose::STANDARD.decode(p.as_bytes()).map_err(|_| {
                    AppError::bad_request("invalid_photo", "Ảnh phải mã hóa base64.", "Photos must be base64-encoded.")
                })?;
                photos.push(check_photo(Bytes::from(bytes))?);
            }
            Planned::Violation(ViolationFields { photos: Vec::new(), ..f }, photos)
        }
    })
}

fn action_hash(a: &SyncAction) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&(a.kind, a.device_time, &a.payload)).unwrap_or_default());
    hex::encode(h.finalize())
}

fn error_detail(e: &AppError, english: bool) -> ErrorDetail {
    ErrorDetail { code: e.code.to_owned(), message: e.message(english).to_owned(), details: e.details.clone() }
}

/// Applies actions recorded on the handheld while offline, each exactly once whatever the
/// retries, and answers one result per action. A malformed batch changes nothing.
#[utoipa::path(
    post, path = "/v1/warden/sync", tag = "wardens", request_body = SyncBatch, security(("bearer" = [])),
    responses(
        (status = 200, description = "One result per action, in order", body = SyncResultView),
        (status = 400, description = "Malformed batch: too many, duplicate or invalid actions (details name the first)", body = ErrorBody),
        (status = 413, description = "The batch is too large", body = ErrorBody),
    )
)]
pub async fn sync_actions(
    State(app): State<AppState>,
    w: Warden,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SyncResultView>, AppError> {
    let english = prefers_english(&headers);
    let bytes = to_bytes(body, SYNC_BODY_MAX).await.map_err(|_| {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Gói đồng bộ quá lớn: gửi làm nhiều lần.",
            "The sync batch is too large: send it in parts.",
        )
    })?;
    let batch: SyncBatch = parse_json(&headers, &bytes)?;
    if batch.actions.is_empty() || batch.actions.len() > SYNC_MAX_ACTIONS {
        return Err(AppError::bad_request(
            "invalid_batch",
            format!("Mỗi lần đồng bộ gửi 1–{SYNC_MAX_ACTIONS} thao tác."),
            format!("A sync batch holds 1–{SYNC_MAX_ACTIONS} actions."),
        ));
    }
    let now = app.clock.now();
    // Validate everything first: a malformed batch applies nothing.
    let mut seen = std::collections::HashSet::new();
    let mut planned = Vec::with_capacity(batch.actions.len());
    for (i, a) in batch.actions.iter().enumerate() {
        if !is_uuid(&a.id) {
            return Err(batch_error(
                i,
                a,
                AppError::bad_request("invalid_action_id", "id phải là UUID.", "The id must be a UUID."),
            ));
        }
        if !seen.insert(a.id.to_ascii_lowercase()) {
            return Err(batch_error(
                i,
                a,
                // A rule between the batch's items (422, docs/decisions/0016).
                AppError::unprocessable(
                    "duplicate_action",
                    "Hai thao tác trùng id trong một gói.",
                    "Two actions in the batch share this id.",
                ),
            ));
        }
        planned.push(plan(a, now).map_err(|e| batch_error(i, a, e))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (a, p) in batch.actions.iter().zip(planned) {
        results.push(apply_action(&app, &w, a, p, english).await?);
    }
    Ok(Json(SyncResultView { results }))
}

async fn apply_action(
    app: &AppState,
    w: &Warden,
    a: &SyncAction,
    p: Planned,
    english: bool,
) -> Result<SyncActionResult, AppError> {
    let claim = IdemClaim {
        scope: format!("staff:{}:sync", w.0.staff_id),
        key: a.id.to_ascii_lowercase(),
        request_hash: action_hash(a),
    };
    if let Some(rec) = app.store.idempotency_get(&claim.scope, &claim.key).await? {
        if rec.request_hash != claim.request_hash {
            let e = AppError::unprocessable(
                "action_id_reused",
                "id này đã dùng cho một thao tác khác.",
                "This id was used for a different action.",
            );
            return Ok(SyncActionResult {
                id: a.id.clone(),
                status: SyncStatus::Rejected,
                replayed: false,
                result: None,
                error: Some(error_detail(&e, english)),
                flags: Vec::new(),
            });
        }
        let mut stored =
            rec.response.as_deref().and_then(|r| serde_json::from_str::<SyncActionResult>(r).ok()).unwrap_or(
                SyncActionResult {
                    id: a.id.clone(),
                    status: SyncStatus::Applied,
                    replayed: true,
                    result: None,
                    error: None,
                    flags: vec!["result_unavailable".into()],
                },
            );
        stored.replayed = true;
        return Ok(stored);
    }
    let at = iparking_time(a.device_time);
    let outcome: Result<SyncApplied, AppError> = match p {
        Planned::Check(plate, code) => match point_for(app, &code).await {
            Ok(point) => match w.require_point(&point) {
                Ok(()) => {
                    // A check changes no state but its record: claimed, then recorded.
                    app.store.record_answer(&claim, 0, "", app.clock.now()).await?;
                    run_check(app, w.0.staff_id, &plate, &point, at, "sync")
                        .await
                        .and_then(|v| serde_json::to_value(v).map_err(|e| AppError::internal(&e)))
                        .map(|v| (SyncStatus::Applied, Some(v), Vec::new()))
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        // The effect commits with the claim and its answer (the action's result).
        Planned::CashSession(req) => {
            let render = |r: CashResult| sync_answer(&a.id, sync_cash(r)?);
            cash_start(app, w, &req, at, ShiftRule::Covering, Some(&a.id), Some(&claim), &render)
                .await
                .and_then(sync_cash)
        }
        Planned::CashExtension(id, req) => {
            let render = |r: CashResult| sync_answer(&a.id, sync_cash(r)?);
            cash_extend(app, w, id, &req, at, ShiftRule::Covering, Some(&a.id), Some(&claim), &render)
                .await
                .and_then(sync_cash)
        }
        Planned::Violation(fields, photos) => {
            let render = |r: Result<ViolationView, AppError>| sync_answer(&a.id, sync_violation(r)?);
            sync_violation(issue_violation(app, w, &fields, photos, at, Some(&a.id), Some(&claim), &render).await)
        }
    };
    let result = match outcome {
        Ok(applied) => sync_applied(&a.id, applied),
        Err(e) if e.status.is_server_error() => return Err(e),
        Err(e) => SyncActionResult {
            id: a.id.clone(),
            status: SyncStatus::Rejected,
            replayed: false,
            result: None,
            error: Some(error_detail(&e, english)),
            flags: Vec::new(),
        },
    };
    let json = serde_json::to_string(&result).map_err(|e| AppError::internal(&e))?;
    if result.error.as_ref().is_some_and(|e| e.code == "idempotency_in_progress") {
        return Ok(result);
    }
    // A payment or a citation (or its refusal's flag) committed with the claim and this
    // answer. A check's claim was recorded without one: its answer now. A rejection had no
    // claim committed: claim and answer at once.
    match app.store.idempotency_get(&claim.scope, &claim.key).await? {
        Some(rec) if rec.status == Some(200) => {}
        Some(_) => app.store.idempotency_complete(&claim.scope, &claim.key, 200, &json).await?,
        None => app.store.record_answer(&claim, 200, &json, app.clock.now()).await?,
    }
    Ok(result)
}

/// The result of an action applied (maybe with a conflict).
fn sync_applied(id: &str, (status, result, flags): SyncApplied) -> SyncActionResult {
    SyncActionResult { id: id.to_owned(), status, replayed: false, result, error: None, flags }
}

/// The stored answer of an action applied: its result.
fn sync_answer(id: &str, applied: SyncApplied) -> Result<(u16, String), AppError> {
    json_answer(StatusCode::OK, &sync_applied(id, applied))
}

/// What a synced citation comes to: issued, or refused for a session paid then (its flag
/// and claim committed together).
fn sync_violation(r: Result<ViolationView, AppError>) -> Result<SyncApplied, AppError> {
    match r {
        Ok(v) => serde_json::to_value(v)
            .map(|v| (SyncStatus::Applied, Some(v), Vec::new()))
            .map_err(|e| AppError::internal(&e)),
        Err(e) if e.code == "session_valid" => {
            Ok((SyncStatus::Conflict, e.details.clone(), vec!["paid_at_device_time".into()]))
        }
        Err(e) => Err(e),
    }
}

/// An action's status, result and flags.
type SyncApplied = (SyncStatus, Option<serde_json::Value>, Vec<String>);

fn sync_cash(r: CashResult) -> Result<SyncApplied, AppError> {
    match r {
        CashResult::Paid(view, flags) => {
            let status = if flags.is_empty() { SyncStatus::Applied } else { SyncStatus::Conflict };
            Ok((status, Some(serde_json::to_value(view).map_err(|e| AppError::internal(&e))?), flags))
        }
        CashResult::Unapplied(v, flags) => Ok((SyncStatus::Conflict, Some(v), flags)),
    }
}

/// Device times, like ours, are kept to the microsecond (what PostgreSQL stores).
fn iparking_time(t: DateTime<Utc>) -> DateTime<Utc> {
    crate::domain::tariff::truncate_micros(t)
}
