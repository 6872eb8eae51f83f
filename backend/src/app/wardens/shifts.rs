//! Shifts: a warden opens one on a handheld, and closes it by counting the cash handed
//! over; the expected cash, the declared amount and the difference are kept for finance.

use iparking_mobile_api::{CheckVerdict, CloseShift, HistoryCheck, ShiftHistoryView, ShiftStatus, ShiftView};

use super::{NOTE_MAX_CHARS, Warden};
use crate::{
    App,
    domain::money::Vnd,
    error::AppError,
    store::{
        drivers::{Answer, IdemClaim},
        wardens::{CloseShiftOutcome, OpenShiftOutcome, ShiftClose, ShiftRow},
    },
};

/// A shift as its warden sees it.
pub fn shift_view(s: &ShiftRow) -> ShiftView {
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

/// A warden's note: at most [`NOTE_MAX_CHARS`] characters, blank is none.
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

/// Opens a shift on the warden's handheld (one open shift per warden); `answer` is stored
/// with the key in the opening's transaction.
pub async fn open(
    app: &App,
    w: &Warden,
    note: Option<&str>,
    idem: &IdemClaim,
    answer: &Answer<'_, ShiftRow>,
) -> Result<ShiftView, AppError> {
    w.require_cash_role()?;
    let note = check_note(note)?;
    let device = app.store.token_device(w.0.token_id).await?.unwrap_or_else(|| "unknown".to_owned());
    let now = app.clock.now();
    match app.store.open_shift(w.0.staff_id, &device, note.as_deref(), Some(idem), answer, now).await? {
        OpenShiftOutcome::Opened(s) => {
            tracing::info!(shift.id = s.id, staff.id = w.0.staff_id, "shift opened");
            Ok(shift_view(&s))
        }
        OpenShiftOutcome::AlreadyOpen(s) => Err(AppError::conflict(
            "shift_open",
            format!("Bạn đang có ca số {} chưa đóng.", s.id),
            format!("Shift {} is still open.", s.id),
        )
        .with_details(serde_json::json!({ "shift_id": s.id }))),
    }
}

/// One of the warden's own shifts, with its cash so far.
pub async fn shift(app: &App, w: &Warden, id: i64) -> Result<ShiftView, AppError> {
    let s = app.store.shift(id).await?.filter(|s| s.staff_id == w.0.staff_id).ok_or_else(shift_not_found)?;
    Ok(shift_view(&s))
}

/// The warden's open shift (a handheld that restarts finds it again).
pub async fn current(app: &App, w: &Warden) -> Result<ShiftView, AppError> {
    let s = app
        .store
        .open_shift_of(w.0.staff_id)
        .await?
        .ok_or_else(|| AppError::not_found("no_open_shift", "Bạn chưa mở ca nào.", "You have no open shift."))?;
    Ok(shift_view(&s))
}

/// Most of each kind a shift's history shows.
pub const HISTORY_LIMIT: i64 = 200;

/// What the warden did in one of their shifts: checks, slips and citations, newest first.
pub async fn history(app: &App, w: &Warden, id: i64) -> Result<ShiftHistoryView, AppError> {
    let s = app.store.shift(id).await?.filter(|s| s.staff_id == w.0.staff_id).ok_or_else(shift_not_found)?;
    let until = s.closed_at.unwrap_or_else(|| app.clock.now());
    let h = app.store.shift_history(&s, until, HISTORY_LIMIT).await?;
    let verdict = |v: &str| crate::store::wardens::verdict_from_name(v).unwrap_or(CheckVerdict::Unpaid);
    Ok(ShiftHistoryView {
        shift: shift_view(&s),
        checks: h
            .checks
            .iter()
            .map(|c| HistoryCheck {
                plate: c.plate.clone(),
                point_code: c.point_code.clone(),
                verdict: verdict(&c.verdict),
                at: c.at,
            })
            .collect(),
        slips: h.receipts.iter().map(super::cash::receipt_view).collect(),
        citations: h.violations.iter().map(super::violations::violation_view).collect(),
    })
}

/// Closes a shift with the cash handed over; the cash moves to the cash office in the
/// ledger, and `answer` is stored with the key in the same transaction.
pub async fn close(
    app: &App,
    w: &Warden,
    id: i64,
    req: &CloseShift,
    idem: &IdemClaim,
    answer: &Answer<'_, ShiftRow>,
) -> Result<ShiftView, AppError> {
    w.require_cash_role()?;
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
    let close = ShiftClose { id, staff_id: w.0.staff_id, declared, note: note.as_deref() };
    match app.store.close_shift(&close, Some(idem), answer, now).await? {
        CloseShiftOutcome::Closed(s) => {
            tracing::info!(
                shift.id = s.id,
                staff.id = w.0.staff_id,
                expected_vnd = s.expected_cash.get(),
                declared_vnd = declared.get(),
                "shift closed"
            );
            Ok(shift_view(&s))
        }
        CloseShiftOutcome::NotFound => Err(shift_not_found()),
        CloseShiftOutcome::AlreadyClosed(s) => Err(AppError::conflict(
            "shift_closed",
            format!("Ca số {} đã đóng.", s.id),
            format!("Shift {} is already closed.", s.id),
        )),
    }
}
