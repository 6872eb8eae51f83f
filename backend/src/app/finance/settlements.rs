//! Carrier settlements: a carrier's monthly file of the SMS turns it charged, matched
//! against ours by reconciliation.

use iparking_mobile_api::SettlementView;
use sha2::{Digest, Sha256};

use super::{city_writer, parse_month};
use crate::{
    App,
    app::{Keyed, keyed},
    domain::finance as fin,
    error::AppError,
    store::{
        Principal,
        drivers::{Answer, IdemClaim},
        finance::{NewSettlement, SettlementRow},
    },
};

/// The most a settlement file may weigh.
pub const SETTLEMENT_LIMIT: usize = 5 * 1024 * 1024;

/// A stored settlement file as finance reads it.
pub fn settlement_view(r: SettlementRow) -> SettlementView {
    SettlementView {
        id: r.id,
        carrier: r.carrier,
        month: r.month,
        lines: r.lines,
        gross: r.gross,
        share: r.share,
        net: r.net,
        replaces: r.replaces,
        uploaded_by: r.uploaded_by,
        uploaded_at: r.uploaded_at,
    }
}

/// One uploaded file: whose, for which month (`YYYY-MM`), and its bytes (CSV:
/// `message_id,received_at,gross,share,net`).
pub struct Upload<'a> {
    /// The carrier's name.
    pub carrier: &'a str,
    /// The month it settles.
    pub month: &'a str,
    /// The file.
    pub file: &'a [u8],
}

/// Stores a carrier's settlement file (city-wide finance). Every line is validated; one bad
/// line refuses the file and every problem is listed. A new file for the same month
/// replaces the earlier one. `answer` is stored with the key in the same transaction.
pub async fn store_settlement(
    app: &App,
    p: &Principal,
    upload: &Upload<'_>,
    idem: &IdemClaim,
    answer: &Answer<'_, SettlementRow>,
) -> Result<Keyed<SettlementView>, AppError> {
    city_writer(p)?;
    let carrier = upload.carrier;
    if !app.settings.carriers.iter().any(|c| c.name == carrier) {
        return Err(AppError::not_found("carrier_not_found", "Không có nhà mạng này.", "No such carrier."));
    }
    let range = parse_month(upload.month)?;
    let month = fin::month_of(range.from);
    let lines = fin::parse_settlement(upload.file, &range).map_err(|errors| {
        AppError::unprocessable(
            "invalid_settlement",
            format!("Tệp đối soát có {} lỗi; không lưu gì.", errors.len()),
            format!("The settlement file has {} problems; nothing was stored.", errors.len()),
        )
        .with_details(serde_json::json!({ "lines": errors }))
    })?;
    let sha = hex::encode(Sha256::digest(upload.file));
    let now = app.clock.now();
    let file = NewSettlement { carrier, month: &month, lines: &lines, sha256: &sha, staff_id: p.staff_id };
    let stored = app.store.store_settlement(&file, Some(idem), answer, now).await;
    let row = match keyed(stored)? {
        Keyed::Done(r) => r,
        Keyed::Taken => return Ok(Keyed::Taken),
    };
    tracing::info!(staff.id = p.staff_id, settlement.id = row.id, lines = row.lines, "carrier settlement stored");
    Ok(Keyed::Done(settlement_view(row)))
}
