//! Use-cases: what drivers, wardens, finance and the jobs do, independent of HTTP. Each
//! takes the app's services ([`crate::App`]: store, live state, payments, clock) and typed
//! input, and returns a domain outcome or an [`AppError`]; `http` extracts and renders, and
//! `jobs` schedules. The arrows run one way: `http` → `app` → (`domain`, `store`, `live`,
//! `payments`). See docs/architecture.md.

pub mod cds;
pub mod charges;
pub mod checks;
pub mod drivers;
pub mod finance;
pub mod ledger_chain;
pub mod points;
pub mod quotes;
pub mod receipts;
pub mod refunds;
pub mod registry;
pub mod reminders;
pub mod sessions;
pub mod sms;
pub mod staff;
pub mod views;
pub mod wardens;

use crate::{
    error::AppError,
    store::{StoreError, StoreResult},
};

/// The outcome of a call whose `Idempotency-Key` is claimed in the same transaction as its
/// effect.
#[derive(Debug)]
pub enum Keyed<T> {
    /// The effect was made, and the key claimed with it.
    Done(T),
    /// The key was already claimed (an earlier or concurrent call with it): nothing was
    /// written, and the caller answers the key's first answer.
    Taken,
}

/// Whether a store error is the key's claim colliding with an earlier one.
pub fn key_taken(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(c) if c == "idempotency_keys_pkey")
}

/// A store call that claims a key: a collision on the key is [`Keyed::Taken`].
pub fn keyed<T>(r: StoreResult<T>) -> Result<Keyed<T>, AppError> {
    match r {
        Ok(t) => Ok(Keyed::Done(t)),
        Err(e) if key_taken(&e) => Ok(Keyed::Taken),
        Err(e) => Err(e.into()),
    }
}
