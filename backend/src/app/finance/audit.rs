//! The finance actions of a month (settlements, resolutions, adjustments, closes, refund
//! decisions), for city-wide finance.

use super::{city_writer, parse_month};
use crate::{
    App,
    error::AppError,
    store::{Principal, finance::AuditRow},
};

/// The month's (`YYYY-MM`) finance actions, oldest first.
pub async fn audit(app: &App, p: &Principal, month: &str) -> Result<Vec<AuditRow>, AppError> {
    city_writer(p)?;
    let range = parse_month(month)?;
    Ok(app.store.audit(range.start(), range.end()).await?)
}
