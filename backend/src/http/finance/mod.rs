//! Finance's JSON routes (`/v1/finance/…`, and a driver's refund requests under `/v1/me`):
//! extract, call [`crate::app::finance`], answer. One file per sub-resource. The dashboard
//! (`http::finance_web`) calls the same use-cases.

pub mod adjustments;
pub mod periods;
pub mod reconciliation;
pub mod refunds;
pub mod revenue;
pub mod settlements;
