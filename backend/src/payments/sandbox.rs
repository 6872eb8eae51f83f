//! SANDBOX (demo only): a payment gateway that takes no money. Every intent it creates is
//! marked `sandbox` and succeeds at once; it is refused outside the embedded default.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Intent, PaymentError, PaymentGateway};
use crate::domain::money::Vnd;

/// The demo's play-money gateway.
#[derive(Debug, Default)]
pub struct SandboxGateway;

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn is_sandbox(&self) -> bool {
        true
    }

    async fn create_topup(&self, driver_id: i64, amount: Vnd, idempotency_key: &str) -> Result<Intent, PaymentError> {
        // Deterministic per key, like a processor's idempotency.
        let digest = hex::encode(&Sha256::digest(format!("{driver_id}:{}:{idempotency_key}", amount.get()))[..12]);
        Ok(Intent { id: format!("sandbox_pi_{digest}"), client_secret: None, status: "succeeded".into() })
    }
}
