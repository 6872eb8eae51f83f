//! The iParking wire contract.
//!
//! Every request and response body the server speaks is defined here, once. The server
//! serialises these types and publishes their schemas in `/openapi.json`; the typed
//! [`Client`] in this crate sends and parses the same types, so the load test, the
//! black-box tests and any Rust client cannot drift from the server.
#![forbid(unsafe_code)]

mod client;
mod finance;
mod tariff;
mod types;
mod warden;

pub use client::{Client, ClientError, install_tls_provider};
pub use finance::*;
pub use tariff::*;
pub use types::*;
pub use warden::*;
