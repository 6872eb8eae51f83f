//! SANDBOX (demo only): a payment gateway that takes no money. Every object it creates is
//! marked `sandbox` and succeeds at once; it is refused outside the embedded default.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{
    BalanceTxn, CardInfo, ChargeRequest, ChargeResult, Intent, IntentState, Page, PaymentError, PaymentGateway, Payout,
    RefundState, Setup,
};
use crate::domain::money::Vnd;

/// The demo's play-money gateway.
#[derive(Debug, Default)]
pub struct SandboxGateway;

/// Deterministic per input, like a processor's idempotency.
fn id(prefix: &str, input: &str) -> String {
    format!("sandbox_{prefix}_{}", hex::encode(&Sha256::digest(input)[..12]))
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn is_sandbox(&self) -> bool {
        true
    }

    async fn create_topup(&self, driver_id: i64, amount: Vnd, idempotency_key: &str) -> Result<Intent, PaymentError> {
        let digest = hex::encode(&Sha256::digest(format!("{driver_id}:{}:{idempotency_key}", amount.get()))[..12]);
        Ok(Intent { id: format!("sandbox_pi_{digest}"), client_secret: None, status: "succeeded".into() })
    }

    async fn create_customer(&self, driver_id: i64, idempotency_key: &str) -> Result<String, PaymentError> {
        Ok(id("cus", &format!("{driver_id}:{idempotency_key}")))
    }

    async fn create_setup(
        &self,
        customer: &str,
        _driver_id: i64,
        idempotency_key: &str,
    ) -> Result<Setup, PaymentError> {
        let seti = id("seti", &format!("{customer}:{idempotency_key}"));
        Ok(Setup {
            card: Some(sandbox_card(&seti)),
            id: seti,
            client_secret: None,
            status: "succeeded".into(),
            customer: Some(customer.to_owned()),
        })
    }

    async fn setup(&self, seti: &str) -> Result<Setup, PaymentError> {
        Ok(Setup {
            id: seti.to_owned(),
            client_secret: None,
            status: "succeeded".into(),
            customer: None,
            card: Some(sandbox_card(seti)),
        })
    }

    async fn detach_card(&self, _payment_method: &str) -> Result<(), PaymentError> {
        Ok(())
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeResult, PaymentError> {
        let pi = id("pi", req.idempotency_key);
        Ok(ChargeResult::Succeeded(IntentState {
            charge: Some(pi.replace("_pi_", "_ch_")),
            id: pi,
            status: "succeeded".into(),
            amount: req.amount.get(),
            amount_received: req.amount.get(),
            metadata: req.metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            client_secret: None,
            created: 0,
            last_error: None,
        }))
    }

    async fn intent(&self, _id: &str) -> Result<Option<IntentState>, PaymentError> {
        Ok(None)
    }

    async fn customer_intents(&self, _customer: &str, _created_gte: i64) -> Result<Vec<IntentState>, PaymentError> {
        Ok(Vec::new())
    }

    async fn cancel_intent(&self, pi: &str) -> Result<IntentState, PaymentError> {
        Ok(IntentState {
            id: pi.to_owned(),
            status: "canceled".into(),
            amount: 0,
            amount_received: 0,
            charge: None,
            metadata: Default::default(),
            client_secret: None,
            created: 0,
            last_error: None,
        })
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Vnd,
        metadata: Vec<(&'static str, String)>,
        idempotency_key: &str,
    ) -> Result<RefundState, PaymentError> {
        Ok(RefundState {
            id: id("re", &format!("{intent_id}:{idempotency_key}")),
            status: "succeeded".into(),
            amount: amount.get(),
            failure_reason: None,
            metadata: metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        })
    }

    async fn balance_transactions(
        &self,
        _created_gte: i64,
        _starting_after: Option<&str>,
        _limit: i64,
    ) -> Result<Page<BalanceTxn>, PaymentError> {
        Ok(Page { items: Vec::new(), has_more: false })
    }

    async fn payouts(
        &self,
        _created_gte: i64,
        _starting_after: Option<&str>,
        _limit: i64,
    ) -> Result<Page<Payout>, PaymentError> {
        Ok(Page { items: Vec::new(), has_more: false })
    }
}

/// SANDBOX: a play card (brand `sandbox`), never a real one.
fn sandbox_card(seti: &str) -> CardInfo {
    CardInfo {
        payment_method: seti.replace("_seti_", "_pm_"),
        brand: "sandbox".into(),
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2099,
    }
}
