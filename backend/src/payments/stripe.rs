//! The Stripe adapter, through the real async-stripe client. `STRIPE_API_BASE` points it at
//! another host (the tests' fake Stripe on 127.0.0.1).

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use stripe::{Client, ClientBuilder, StripeError};
use stripe_client_core::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_core::{
    balance_transaction::ListBalanceTransaction,
    customer::CreateCustomer,
    payment_intent::{
        CancelPaymentIntent, CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
        CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, CreatePaymentIntentOffSession, ListPaymentIntent,
        RetrievePaymentIntent,
    },
    payout::ListPayout,
    refund::CreateRefund,
    setup_intent::{CreateSetupIntent, CreateSetupIntentUsage, RetrieveSetupIntent},
};
use stripe_payment::payment_method::DetachPaymentMethod;
use stripe_shared::{PaymentIntent, SetupIntent};
use stripe_types::{RangeQueryTs, Timestamp};

use super::{
    BalanceTxn, CardInfo, ChargeRequest, ChargeResult, Intent, IntentState, Page, PaymentError, PaymentGateway, Payout,
    RefundState, Setup,
};
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
        Self::with_timeout(secret_key, api_base, Duration::from_secs(15))
    }

    /// A gateway whose calls time out after `timeout` (then they are retried with the same key).
    pub fn with_timeout(secret_key: &str, api_base: Option<&str>, timeout: Duration) -> Result<Self, String> {
        crate::sms::install_tls_provider();
        let mut builder = ClientBuilder::new(secret_key).timeout(timeout);
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

    /// Runs a call up to [`ATTEMPTS`] times while it fails in a retryable way (timeouts,
    /// 409/429, 5xx), with exponential backoff. State-changing calls carry the same
    /// idempotency key each time, so a retry reaches the first attempt's object.
    async fn retrying<T, F, Fut>(&self, what: &'static str, call: F) -> Result<T, StripeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    tracing::warn!(attempt, call = what, error = %e, "Stripe call failed; retrying with the same idempotency key");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn key(k: &str) -> Result<RequestStrategy, PaymentError> {
    IdempotencyKey::new(k)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| PaymentError::Refused { code: "invalid_idempotency_key".into(), message: format!("{e:?}") })
}

fn metadata(pairs: Vec<(&'static str, String)>) -> HashMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn intent_state(pi: &PaymentIntent) -> IntentState {
    IntentState {
        id: pi.id.to_string(),
        status: pi.status.as_str().to_owned(),
        amount: pi.amount,
        amount_received: pi.amount_received,
        charge: pi.latest_charge.as_ref().map(|c| c.id().to_string()),
        metadata: pi.metadata.clone(),
        client_secret: pi.client_secret.clone(),
        created: pi.created,
        last_error: pi.last_payment_error.as_ref().and_then(|e| {
            e.decline_code
                .clone()
                .filter(|c| c == "authentication_required")
                .or_else(|| e.code.as_ref().map(|c| c.as_str().to_owned()))
        }),
    }
}

fn setup_state(si: &SetupIntent) -> Setup {
    let card = si.payment_method.as_ref().and_then(|pm| pm.as_object()).and_then(|pm| {
        pm.card.as_ref().map(|c| CardInfo {
            payment_method: pm.id.to_string(),
            brand: c.brand.clone(),
            last4: c.last4.clone(),
            exp_month: i32::try_from(c.exp_month).unwrap_or(0),
            exp_year: i32::try_from(c.exp_year).unwrap_or(0),
        })
    });
    Setup {
        id: si.id.to_string(),
        client_secret: si.client_secret.clone(),
        status: si.status.as_str().to_owned(),
        customer: si.customer.as_ref().map(|c| c.id().to_string()),
        card,
    }
}

fn created_from(ts: i64) -> RangeQueryTs {
    RangeQueryTs::gte(Timestamp::from(ts))
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
                .or_else(|| api.code.as_ref().map(|c| c.as_str().to_owned()))
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
        let strategy = key(idempotency_key)?;
        let meta = metadata(vec![("purpose", "wallet_topup".into()), ("driver_id", driver_id.to_string())]);
        // VND is a zero-decimal currency for Stripe: the amount is whole đồng.
        let request = CreatePaymentIntent::new(amount.get(), stripe_types::Currency::VND).metadata(meta);
        let pi = self
            .retrying("create_topup", || request.customize().request_strategy(strategy.clone()).send(&self.client))
            .await
            .map_err(refused)?;
        Ok(Intent {
            id: pi.id.to_string(),
            client_secret: pi.client_secret.clone(),
            status: pi.status.as_str().to_owned(),
        })
    }

    async fn create_customer(&self, driver_id: i64, idempotency_key: &str) -> Result<String, PaymentError> {
        let strategy = key(idempotency_key)?;
        let request = CreateCustomer::new()
            .description(format!("iParking driver {driver_id}"))
            .metadata(metadata(vec![("driver_id", driver_id.to_string())]));
        let c = self
            .retrying("create_customer", || request.customize().request_strategy(strategy.clone()).send(&self.client))
            .await
            .map_err(refused)?;
        Ok(c.id.to_string())
    }

    async fn create_setup(&self, customer: &str, driver_id: i64, idempotency_key: &str) -> Result<Setup, PaymentError> {
        let strategy = key(idempotency_key)?;
        let request = CreateSetupIntent::new()
            .customer(customer)
            .usage(CreateSetupIntentUsage::OffSession)
            .metadata(metadata(vec![("purpose", "save_card".into()), ("driver_id", driver_id.to_string())]));
        let si = self
            .retrying("create_setup", || request.customize().request_strategy(strategy.clone()).send(&self.client))
            .await
            .map_err(refused)?;
        Ok(setup_state(&si))
    }

    async fn setup(&self, id: &str) -> Result<Setup, PaymentError> {
        let request = RetrieveSetupIntent::new(id).expand(vec!["payment_method".to_owned()]);
        let si = self.retrying("retrieve_setup", || request.send(&self.client)).await.map_err(refused)?;
        Ok(setup_state(&si))
    }

    async fn detach_card(&self, payment_method: &str) -> Result<(), PaymentError> {
        let request = DetachPaymentMethod::new(payment_method);
        self.retrying("detach_card", || request.send(&self.client)).await.map_err(refused)?;
        Ok(())
    }

    async fn charge(&self, req: &ChargeRequest<'_>) -> Result<ChargeResult, PaymentError> {
        let strategy = key(req.idempotency_key)?;
        let request = CreatePaymentIntent::new(req.amount.get(), stripe_types::Currency::VND)
            .customer(req.customer)
            .payment_method(req.payment_method)
            .confirm(true)
            .off_session(CreatePaymentIntentOffSession::Bool(true))
            .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods {
                allow_redirects: Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never),
                enabled: true,
            })
            .metadata(metadata(req.metadata.clone()));
        let result =
            self.retrying("charge", || request.customize().request_strategy(strategy.clone()).send(&self.client)).await;
        match result {
            Ok(pi) => {
                let state = intent_state(&pi);
                Ok(match state.status.as_str() {
                    "succeeded" => ChargeResult::Succeeded(state),
                    "requires_action" | "requires_confirmation" => ChargeResult::RequiresAction(state),
                    "processing" => ChargeResult::Processing(state),
                    other => ChargeResult::Declined {
                        code: other.to_owned(),
                        message: "The payment did not complete.".into(),
                        intent: Some(state),
                    },
                })
            }
            // Off-session, a card that needs 3-D Secure is refused with
            // `authentication_required`: the driver (who is in the app) confirms it on-session.
            Err(StripeError::Stripe(api, 402))
                if api.code.as_ref().is_some_and(|c| c.as_str() == "authentication_required")
                    || api.decline_code.as_deref() == Some("authentication_required") =>
            {
                match api.payment_intent.as_ref() {
                    Some(pi) => Ok(ChargeResult::RequiresAction(intent_state(pi))),
                    None => Err(PaymentError::Refused {
                        code: "authentication_required".into(),
                        message: api.message.clone().unwrap_or_default(),
                    }),
                }
            }
            Err(StripeError::Stripe(api, status)) if (400..500).contains(&status) && status != 409 && status != 429 => {
                if api.type_.as_str() == "card_error" || status == 402 {
                    let code = api
                        .decline_code
                        .clone()
                        .or_else(|| api.code.as_ref().map(|c| c.as_str().to_owned()))
                        .unwrap_or_else(|| "card_declined".into());
                    Ok(ChargeResult::Declined {
                        intent: api.payment_intent.as_ref().map(intent_state),
                        code,
                        message: api.message.clone().unwrap_or_default(),
                    })
                } else {
                    Err(refused(StripeError::Stripe(api, status)))
                }
            }
            Err(e) => Err(refused(e)),
        }
    }

    async fn intent(&self, id: &str) -> Result<Option<IntentState>, PaymentError> {
        let request = RetrievePaymentIntent::new(id);
        match self.retrying("retrieve_intent", || request.send(&self.client)).await {
            Ok(pi) => Ok(Some(intent_state(&pi))),
            Err(StripeError::Stripe(_, 404)) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    async fn customer_intents(&self, customer: &str, created_gte: i64) -> Result<Vec<IntentState>, PaymentError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        // At most 10 pages of 100: a driver does not make a thousand charges in minutes.
        for _ in 0..10 {
            let mut request = ListPaymentIntent::new().customer(customer).created(created_from(created_gte)).limit(100);
            if let Some(a) = &after {
                request = request.starting_after(a.clone());
            }
            let page = self.retrying("list_intents", || request.send(&self.client)).await.map_err(refused)?;
            out.extend(page.data.iter().map(intent_state));
            after = page.data.last().map(|pi| pi.id.to_string());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn cancel_intent(&self, id: &str) -> Result<IntentState, PaymentError> {
        let request = CancelPaymentIntent::new(id);
        let strategy = key(&format!("cancel-{id}"))?;
        let pi = self
            .retrying("cancel_intent", || request.customize().request_strategy(strategy.clone()).send(&self.client))
            .await
            .map_err(refused)?;
        Ok(intent_state(&pi))
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Vnd,
        meta: Vec<(&'static str, String)>,
        idempotency_key: &str,
    ) -> Result<RefundState, PaymentError> {
        let strategy = key(idempotency_key)?;
        let request = CreateRefund::new().payment_intent(intent_id).amount(amount.get()).metadata(metadata(meta));
        let r = self
            .retrying("refund", || request.customize().request_strategy(strategy.clone()).send(&self.client))
            .await
            .map_err(refused)?;
        Ok(RefundState {
            id: r.id.to_string(),
            status: r.status.clone().unwrap_or_else(|| "pending".into()),
            amount: r.amount,
            failure_reason: r.failure_reason.clone(),
            metadata: r.metadata.clone().unwrap_or_default(),
        })
    }

    async fn balance_transactions(
        &self,
        created_gte: i64,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Page<BalanceTxn>, PaymentError> {
        let mut request = ListBalanceTransaction::new().created(created_from(created_gte)).limit(limit);
        if let Some(a) = starting_after {
            request = request.starting_after(a);
        }
        let page = self.retrying("list_balance_transactions", || request.send(&self.client)).await.map_err(refused)?;
        Ok(Page {
            has_more: page.has_more,
            items: page
                .data
                .iter()
                .map(|t| BalanceTxn {
                    id: t.id.to_string(),
                    type_: t.type_.as_str().to_owned(),
                    reporting_category: t.reporting_category.clone(),
                    amount: t.amount,
                    fee: t.fee,
                    net: t.net,
                    currency: t.currency.to_string(),
                    status: t.status.clone(),
                    source: t.source.as_ref().map(|s| s.id().to_string()),
                    created: t.created,
                    available_on: t.available_on,
                })
                .collect(),
        })
    }

    async fn payouts(
        &self,
        created_gte: i64,
        starting_after: Option<&str>,
        limit: i64,
    ) -> Result<Page<Payout>, PaymentError> {
        let mut request = ListPayout::new().created(created_from(created_gte)).limit(limit);
        if let Some(a) = starting_after {
            request = request.starting_after(a);
        }
        let page = self.retrying("list_payouts", || request.send(&self.client)).await.map_err(refused)?;
        Ok(Page {
            has_more: page.has_more,
            items: page
                .data
                .iter()
                .map(|p| Payout {
                    id: p.id.to_string(),
                    amount: p.amount,
                    currency: p.currency.to_string(),
                    status: p.status.clone(),
                    arrival_date: p.arrival_date,
                    balance_transaction: p.balance_transaction.as_ref().map(|b| b.id().to_string()),
                    created: p.created,
                })
                .collect(),
        })
    }
}
