//! The finance dashboard at `/finance` (`docs/finance.md`, "Dashboard"): server-rendered
//! HTML over the finance service layer ([`super::finance`]), every asset served by the binary,
//! plain forms that work without JavaScript.
//!
//! - Vietnamese first; `?lang=en` (or `?lang=vi`) switches and is remembered in a cookie.
//! - Login with username and password (role `finance`, or `admin` read only), limited like the
//!   wardens' logins (`app::staff::password_login`). The staff token lives in the
//!   `iparking_finance` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/finance`); logout (a
//!   POST; `GET /finance/logout` only shows the button) revokes it.
//! - Every POST must come from our own pages ([`post_allowed`]: Fetch Metadata and `Origin`,
//!   as OWASP's CSRF cheat sheet has it), else 403; `SameSite` is not the only guard.
//! - Pages are maud templates, which escape every interpolated string; pages carry a strict
//!   `Content-Security-Policy` (no script at all). Query strings and form bodies are read
//!   into typed structs (`serde_urlencoded`), cookies with the `cookie` crate.
//! - Errors are HTML pages (`text/html`), which the JSON error middleware lets through.
//!
//! One module per page family (`auth`, `revenue`, `reconciliation`, `periods`); what they
//! share is in `request` (reading the request, answering), `access` (the signed-in user),
//! `guard`, `views` (shared templates), `labels` and `chart`.

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};

use super::AppState;

mod access;
mod auth;
mod chart;
mod digests;
mod guard;
mod labels;
mod periods;
mod public;
mod reconciliation;
mod request;
mod revenue;
mod views;

pub use chart::{Bar, bar_chart, scale_bars};
pub use guard::{origin_allowed, post_allowed, safe_next};
pub use labels::{Lang, Month, group_thousands, money};
pub use request::{cookie_value, enc};

/// The session cookie (a staff token).
pub const SESSION_COOKIE: &str = "iparking_finance";
/// The language cookie (`vi` or `en`).
pub const LANG_COOKIE: &str = "iparking_finance_lang";
/// The device name of dashboard tokens.
const DEVICE: &str = "finance-dashboard";
/// Longest form body read.
const FORM_MAX: usize = 16 * 1024;

const CSS: &str = include_str!("finance.css");

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/finance", get(revenue::revenue_page))
        .route("/finance/", get(|| async { request::see_other("/finance") }))
        .route("/finance/login", get(auth::login_page).post(auth::login_submit))
        .route("/finance/logout", get(auth::logout_page).post(auth::logout))
        .route("/finance/revenue.csv", get(revenue::revenue_csv))
        .route("/finance/streets/{id}", get(revenue::street_page))
        .route("/finance/reconciliation", get(reconciliation::reconciliation_page))
        .route("/finance/reconciliation.csv", get(reconciliation::reconciliation_csv))
        .route("/finance/discrepancies/{id}/resolve", post(reconciliation::resolve_submit))
        .route("/finance/periods", get(periods::period_index))
        .route("/finance/periods/{month}", get(periods::period_page))
        .route("/finance/periods/{month}/close", post(periods::close_submit))
        .route("/finance/assets/finance.css", get(stylesheet))
        .route("/public", get(public::public_page))
        .route("/public/revenue.csv", get(public::public_csv))
        .route("/public/revenue.json", get(public::public_json))
        .route("/public/ledger/digests", get(digests::digests_page))
        .route("/public/ledger/digests.json", get(digests::digests_json))
        .route("/public/ledger/digests.csv", get(digests::digests_csv))
        .route("/public/ledger/days/{file}", get(digests::day_export))
        .route("/public/ledger/ledger-rehash.py", get(digests::rehash_script))
}

async fn stylesheet() -> Response {
    let mut r = CSS.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}
