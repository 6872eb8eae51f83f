//! Offline sync: a batch of actions a warden made without a network (checks, cash,
//! violations), each applied exactly once however often it is sent, with one result per
//! action. A malformed batch applies nothing.

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use iparking_mobile_api::{
    ErrorDetail, SyncAction, SyncActionResult, SyncBatch, SyncKind, SyncResultView, SyncStatus, ViolationView,
    WardenExtendSession, WardenPayment, WardenStartSession,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    Applying, Warden,
    cash::{CashResult, cash_extend, cash_start, check_turns},
    violations::{Photo, ViolationFields, check_photo, check_violation_fields, issue_violation, photo_count_error},
};
use crate::{
    App,
    app::{checks as check_use, points::point_for},
    domain::{check::CheckSource, plate::Plate},
    error::AppError,
    store::{drivers::IdemClaim, wardens::ShiftRule},
};

/// Most actions per sync batch.
pub const SYNC_MAX_ACTIONS: usize = 100;
/// A device clock may run this far ahead of ours.
pub const DEVICE_CLOCK_SKEW_SECS: i64 = 300;

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

fn plan_action(action: &SyncAction, now: DateTime<Utc>) -> Result<Planned, AppError> {
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

/// Applies a batch (validated whole first), each action once, in order.
pub async fn sync(app: &App, w: &Warden, batch: &SyncBatch, english: bool) -> Result<SyncResultView, AppError> {
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
        planned.push(plan_action(a, now).map_err(|e| batch_error(i, a, e))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (a, p) in batch.actions.iter().zip(planned) {
        results.push(apply_action(app, w, a, p, english).await?);
    }
    Ok(SyncResultView { results })
}

async fn apply_action(
    app: &App,
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
                    check_use::run_check(app, w.0.staff_id, &plate, &point, at, CheckSource::Sync)
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
            cash_start(
                app,
                w,
                &req,
                ShiftRule::Covering,
                &Applying { at, action_id: Some(&a.id), idem: Some(&claim), render: &render },
            )
            .await
            .and_then(sync_cash)
        }
        Planned::CashExtension(id, req) => {
            let render = |r: CashResult| sync_answer(&a.id, sync_cash(r)?);
            cash_extend(
                app,
                w,
                id,
                &req,
                ShiftRule::Covering,
                &Applying { at, action_id: Some(&a.id), idem: Some(&claim), render: &render },
            )
            .await
            .and_then(sync_cash)
        }
        Planned::Violation(fields, photos) => {
            let render = |r: Result<ViolationView, AppError>| sync_answer(&a.id, sync_violation(r)?);
            sync_violation(
                issue_violation(
                    app,
                    w,
                    &fields,
                    photos,
                    &Applying { at, action_id: Some(&a.id), idem: Some(&claim), render: &render },
                )
                .await,
            )
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
    serde_json::to_string(&sync_applied(id, applied)).map(|json| (200, json)).map_err(|e| AppError::internal(&e))
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
