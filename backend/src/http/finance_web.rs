//! The finance dashboard at `/finance` (work in progress).

use axum::Router;

use super::AppState;

/// The dashboard's routes.
pub fn router() -> Router<AppState> {
    Router::new()
}
