//! Receipts anyone can check: a warden's cash slip (`HK-20261201-000042`, stored with its
//! code) and every other session's receipt (`IP-00000042`, its code derived with the
//! deployment's key: `domain::receipt`). Lookups are rate-limited per client address, so
//! codes cannot be guessed by trying.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use iparking_mobile_api::SessionReceiptView;

use crate::{
    App,
    app::sessions::own_session,
    domain::{
        money::Vnd,
        receipt::{parse_session_number, session_code, session_number},
        session::SessionChannel,
    },
    error::AppError,
    store::{drivers::DriverPrincipal, wardens::ReceiptRow},
};

/// Lookups one client address may make per [`LOOKUP_WINDOW`] (page and API together).
pub const LOOKUPS_PER_WINDOW: u32 = 60;
/// The lookups' window.
pub const LOOKUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Counts one lookup from `peer`; 429 beyond [`LOOKUPS_PER_WINDOW`].
pub async fn count_lookup(app: &App, peer: IpAddr) -> Result<(), AppError> {
    if app.live.rate_limit(&format!("receipt-ip:{peer}"), LOOKUPS_PER_WINDOW, LOOKUP_WINDOW).await? {
        Ok(())
    } else {
        Err(AppError::too_many_requests(
            "rate_limited",
            "Tra cứu biên lai quá nhiều lần. Vui lòng thử lại sau 10 phút.",
            "Too many receipt lookups. Please try again in 10 minutes.",
        ))
    }
}

/// The receipt of one of the driver's sessions: its number, check code and public page.
pub async fn session_receipt(app: &App, d: &DriverPrincipal, id: i64) -> Result<SessionReceiptView, AppError> {
    let s = own_session(app, d.driver_id, id).await?;
    let code = session_code(&app.receipt_key, s.id);
    let number = session_number(s.id);
    Ok(SessionReceiptView { public_path: format!("/r/{number}?code={code}"), number, code })
}

/// A session's receipt as its public page shows it.
#[derive(Debug, Clone)]
pub struct SessionReceipt {
    /// `IP-…`.
    pub number: String,
    /// Where it was bought.
    pub channel: SessionChannel,
    /// Point code.
    pub point_code: String,
    /// Point name and street, when the point is known.
    pub point_name: Option<(String, String)>,
    /// Plate (the page masks it).
    pub plate: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Paid until.
    pub paid_until: DateTime<Utc>,
    /// Ended, if it has.
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether it is running.
    pub active: bool,
    /// Turns paid.
    pub turns: u32,
    /// Paid in all.
    pub charged: Vnd,
    /// Refunded in all.
    pub refunded: Vnd,
    /// Its ledger transactions (payments and refunds), oldest first.
    pub transactions: Vec<i64>,
}

/// What a receipt number and code name, if they match.
#[derive(Debug, Clone)]
pub enum Found {
    /// A warden's slip.
    Slip(Box<ReceiptRow>),
    /// A session's receipt.
    Session(Box<SessionReceipt>),
}

/// Looks a receipt up by the number and the code printed on it (`None`: no such receipt,
/// or a wrong code: the two read the same).
pub async fn find(app: &App, number: &str, code: &str) -> Result<Option<Found>, AppError> {
    let (number, code) = (number.trim(), code.trim());
    if number.len() > 40 || code.is_empty() || code.len() > 16 {
        return Ok(None);
    }
    if let Some(id) = parse_session_number(number) {
        if !super::wardens::same_code(code, &session_code(&app.receipt_key, id)) {
            return Ok(None);
        }
        let Some(s) = app.store.session(id).await? else { return Ok(None) };
        let point_name = app.store.point(&s.point_code).await?.map(|p| (p.name, p.street_name));
        let transactions = app.store.session_transactions(s.id).await?;
        return Ok(Some(Found::Session(Box::new(SessionReceipt {
            number: session_number(s.id),
            channel: s.channel,
            point_code: s.point_code.clone(),
            point_name,
            plate: s.plate.as_str().to_owned(),
            started_at: s.started_at,
            paid_until: s.paid_until,
            ended_at: s.ended_at,
            active: s.active && s.expires_at > app.clock.now(),
            turns: s.turns,
            charged: s.amount_charged,
            refunded: s.amount_refunded,
            transactions,
        }))));
    }
    let slip = app.store.receipt(number).await?;
    Ok(slip.filter(|r| super::wardens::same_code(code, &r.verification_code)).map(|r| Found::Slip(Box::new(r))))
}
