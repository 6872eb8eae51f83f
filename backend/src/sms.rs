//! Outgoing SMS: one-time codes and reminders. Behind [`SmsGateway`] so tests and the demo
//! never reach a carrier.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::domain::phone::Phone;

/// A message could not be sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SMS not sent: {0}")]
pub struct SmsError(pub String);

/// Sends text messages to phones.
#[async_trait]
pub trait SmsGateway: Send + Sync + 'static {
    /// Sends `text` to `to`.
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError>;
}

/// SANDBOX: prints messages on standard output instead of sending them, so a demo user can
/// read the code. Never used with real phones; standard output is not the log.
#[derive(Debug, Default)]
pub struct ConsoleSms;

#[async_trait]
impl SmsGateway for ConsoleSms {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        println!("[SANDBOX SMS → {}] {text}", to.masked());
        Ok(())
    }
}

/// Keeps messages in memory (tests read them).
#[derive(Debug, Default)]
pub struct OutboxSms {
    sent: Mutex<Vec<(String, String)>>,
}

impl OutboxSms {
    /// Every message sent so far: `(phone E.164, text)`.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last message sent to `phone` (E.164).
    pub fn last_to(&self, phone: &str) -> Option<String> {
        self.messages().into_iter().rev().find(|(p, _)| p == phone).map(|(_, t)| t)
    }
}

#[async_trait]
impl SmsGateway for OutboxSms {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push((to.as_str().to_owned(), text.to_owned()));
        Ok(())
    }
}
