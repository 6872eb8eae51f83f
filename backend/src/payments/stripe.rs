//! The Stripe adapter, through the real async-stripe client. `STRIPE_API_BASE` points it at
//! another host (the tests' fake Stripe on 127.0.0.1).

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use stripe::{Client, ClientBuilder, StripeError};
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_core::payment_intent::CreatePaymentIntent;

use super::{Intent, PaymentError, PaymentGateway};
use crate::domain::money::Vnd;

/// Attempts per Stripe call (same idempotency key each time).
const ATTEMPTS: u32 = 3;

/// Stripe.
pub struct StripeGateway {
    client: Client,
    backoff: Duration,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the secret key: print nothing of it.
        f.write_str("StripeGateway")
    }
}

impl StripeGateway {
    /// A gateway with the secret key, optionally at another API base URL (no path).
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self, String> {
        crate::sms::install_tls_provider();
        let mut builder = ClientBuilder::new(secret_key).timeout(Duration::from_secs(15));
        if let Some(base) = api_base {
            builder = builder.url(base);
        }
        let client = builder.build().map_err(|e| format!("Stripe client: {e}"))?;
        Ok(Self { client, backoff: Duration::from_millis(250) })
    }

    /// The same gateway with another first backoff (tests shorten it).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }
}

fn retryable(e: &StripeError) -> bool {
    match e {
        StripeError::Stripe(_, status) => matches!(status, 409 | 429 | 500..=599),
        StripeError::ClientError(_) | StripeError::Timeout => true,
        StripeError::JSONDeserialize(_) | StripeError::ConfigError(_) => false,
    }
}

fn refused(e: StripeError) -> PaymentError {
    match e {
        StripeError::Stripe(api, status) if !(status == 409 || status == 429 || status >= 500) => {
            let code = api
                .decline_code
                .clone()
                .or_else(|| api.code.as_ref().map(|c| format!("{c:?}").to_lowercase()))
                .unwrap_or_else(|| "refused".into());
            PaymentError::Refused { code, message: api.message.clone().unwrap_or_default() }
        }
        other => PaymentError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    fn is_sandbox(&self) -> bool {
        false
    }

    async fn create_topup(&self, driver_id: i64, amount: Vnd, idempotency_key: &str) -> Result<Intent, PaymentError> {
        let key = IdempotencyKey::new(idempotency_key)
            .map_err(|e| PaymentError::Refused { code: "invalid_idempotency_key".into(), message: format!("{e:?}") })?;
        let metadata = HashMap::from([
            ("purpose".to_owned(), "wallet_topup".to_owned()),
            ("driver_id".to_owned(), driver_id.to_string()),
        ]);
        // VND is a zero-decimal currency for Stripe: the amount is whole đồng.
        let request = CreatePaymentIntent::new(amount.get(), stripe_types::Currency::VND).metadata(metadata);
        let mut wait = self.backoff;
        let mut last = None;
        for attempt in 1..=ATTEMPTS {
            let result =
                request.customize().request_strategy(RequestStrategy::Idempotent(key.clone())).send(&self.client).await;
            match result {
                Ok(pi) => {
                    return Ok(Intent {
                        id: pi.id.to_string(),
                        client_secret: pi.client_secret.clone(),
                        status: pi.status.as_str().to_owned(),
                    });
                }
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "Stripe call failed; retrying with the same idempotency key");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    last = Some(e);
                }
                Err(e) => return Err(refused(e)),
            }
        }
        Err(last.map_or_else(|| PaymentError::Unavailable("no attempt made".into()), refused))
    }
}
