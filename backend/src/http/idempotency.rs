//! The `Idempotency-Key` of a state-changing call: read from the request, hashed with it,
//! claimed in the same database transaction as the call's effect, and replayed to a retry
//! (the same answer for the same request, 422 for another request, 409 while the first runs).

use axum::{
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::{
    error::AppError,
    store::{StoreError, StoreResult, drivers::IdemClaim},
};

/// Where a state-changing call that may pay by card stands.
pub enum Prelude {
    /// A new key.
    Fresh(Idempotency),
    /// The key's first answer.
    Replayed(Response),
    /// The key's first request made this card charge: resume it.
    Charge(Box<crate::store::cards::ChargeRow>),
}

/// The `Idempotency-Key` of a state-changing call, claimed for a caller.
#[derive(Clone)]
pub struct Idempotency {
    claim: IdemClaim,
}

impl Idempotency {
    /// Reads the header (required) and hashes the request.
    pub fn from_request(
        scope: String,
        headers: &HeaderMap,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Self, AppError> {
        let key = headers
            .get("idempotency-key")
            .ok_or_else(|| {
                AppError::bad_request(
                    "idempotency_key_required",
                    "Thiếu tiêu đề Idempotency-Key cho thao tác có thu/chi tiền.",
                    "This call moves money: send an Idempotency-Key header (e.g. a UUID).",
                )
            })?
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                AppError::bad_request(
                    "invalid_idempotency_key",
                    "Idempotency-Key cần 1–255 ký tự ASCII in được.",
                    "Idempotency-Key must be 1–255 printable ASCII characters.",
                )
            })?;
        let mut h = Sha256::new();
        h.update(method.as_bytes());
        h.update(b" ");
        h.update(path.as_bytes());
        h.update(b"\n");
        h.update(body);
        Ok(Self { claim: IdemClaim { scope, key: key.to_owned(), request_hash: hex::encode(h.finalize()) } })
    }

    /// The key of a driver's `POST path`, not looked up yet.
    pub fn of_driver(driver_id: i64, headers: &HeaderMap, path: &str, body: &[u8]) -> Result<Self, AppError> {
        Self::from_request(format!("driver:{driver_id}"), headers, "POST", path, body)
    }

    /// The key of a driver's POST to `path`: `Err` carries the first answer when this key
    /// was used before (replayed), so the route returns it as is.
    pub async fn for_driver(
        app: &AppState,
        driver_id: i64,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<Result<Self, Response>, AppError> {
        let idem = Self::of_driver(driver_id, headers, path, body)?;
        Ok(match idem.replay(app).await? {
            Some(replayed) => Err(replayed),
            None => Ok(idem),
        })
    }

    /// Like [`Idempotency::for_driver`], for calls that may pay by card: a key whose first
    /// request recorded a card charge resumes that charge (the charge is the record).
    pub async fn for_driver_or_charge(
        app: &AppState,
        driver_id: i64,
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<Prelude, AppError> {
        let idem = Self::of_driver(driver_id, headers, path, body)?;
        let (scope, key) = (&idem.claim.scope, &idem.claim.key);
        let rec = app.store.idempotency_get(scope, key).await?;
        if let Some(rec) = &rec
            && rec.request_hash == idem.claim.request_hash
            && rec.status.is_none()
            && let Some(charge) = app.store.charge_by_idem(scope, key).await?
        {
            return Ok(Prelude::Charge(Box::new(charge)));
        }
        Ok(match idem.replay_record(rec)? {
            Some(replayed) => Prelude::Replayed(replayed),
            None => Prelude::Fresh(idem),
        })
    }

    /// The claim to write in the same transaction as the effect.
    pub fn claim(&self) -> &IdemClaim {
        &self.claim
    }

    /// The first answer if this key was used before: the same answer for the same request,
    /// 422 for a different request, 409 while the first is still running.
    pub async fn replay(&self, app: &AppState) -> Result<Option<Response>, AppError> {
        self.replay_record(app.store.idempotency_get(&self.claim.scope, &self.claim.key).await?)
    }

    /// [`Self::replay`] from the key's record, already read.
    fn replay_record(&self, rec: Option<crate::store::drivers::IdemRecord>) -> Result<Option<Response>, AppError> {
        let Some(rec) = rec else {
            return Ok(None);
        };
        if rec.request_hash != self.claim.request_hash {
            return Err(AppError::unprocessable(
                "idempotency_key_reused",
                "Idempotency-Key này đã dùng cho một yêu cầu khác.",
                "This Idempotency-Key was used for a different request.",
            ));
        }
        match (rec.status, rec.response) {
            (Some(status), Some(body)) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                let mut resp = (status, body).into_response();
                resp.headers_mut()
                    .insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static"));
                resp.headers_mut().insert("idempotent-replayed", "true".parse().expect("static"));
                Ok(Some(resp))
            }
            _ => Err(AppError::conflict(
                "idempotency_in_progress",
                "Yêu cầu trước với cùng Idempotency-Key đang được xử lý. Thử lại sau giây lát.",
                "A request with this Idempotency-Key is still being processed. Retry shortly.",
            )),
        }
    }

    /// The response of an answer already stored with its key (in the effect's transaction).
    pub fn stored_answer(status: u16, json: String) -> Response {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut resp = (status, json).into_response();
        resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static"));
        resp
    }

    /// Answers a call whose key was found taken when its effect was written
    /// ([`crate::app::Keyed::Taken`]): the key's first answer.
    pub async fn replay_taken(&self, app: &AppState) -> Result<Response, AppError> {
        match self.replay(app).await? {
            Some(resp) => Ok(resp),
            None => Err(StoreError::Conflict("idempotency_keys_pkey".into()).into()),
        }
    }

    /// Maps the store's error: a concurrent duplicate (the claim collided) is replayed.
    pub async fn on_store_error(&self, app: &AppState, e: StoreError) -> Result<Response, AppError> {
        if matches!(&e, StoreError::Conflict(c) if c == "idempotency_keys_pkey")
            && let Some(resp) = self.replay(app).await?
        {
            return Ok(resp);
        }
        Err(e.into())
    }
}

/// Renders the answer of a keyed call from its view: inside the call's transaction, where
/// the store writes it with the key before the commit (issue 30, bug 7), and again for the
/// first caller from the same committed row, so both are the same bytes.
pub fn rendered<T: serde::Serialize>(status: StatusCode, view: &T) -> StoreResult<(u16, String)> {
    serde_json::to_string(view).map(|json| (status.as_u16(), json)).map_err(|e| StoreError::Internal(e.to_string()))
}

/// The first caller's response: the answer stored with its key.
pub fn answered(rendered: StoreResult<(u16, String)>) -> Result<Response, AppError> {
    let (status, json) = rendered?;
    Ok(Idempotency::stored_answer(status, json))
}
