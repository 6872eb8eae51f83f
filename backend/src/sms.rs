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

/// The mobile carrier of a Vietnamese number, by its prefix (after +84).
pub fn carrier_of(phone: &Phone) -> &'static str {
    let national = &phone.as_str()[3..];
    match &national[..2] {
        "32" | "33" | "34" | "35" | "36" | "37" | "38" | "39" | "86" | "96" | "97" | "98" => "viettel",
        "70" | "76" | "77" | "78" | "79" | "89" | "90" | "93" => "mobifone",
        "81" | "82" | "83" | "84" | "85" | "88" | "91" | "94" => "vinaphone",
        "52" | "56" | "58" | "92" => "vietnamobile",
        "59" | "99" => "gmobile",
        _ => "other",
    }
}

/// One HTTP gateway: messages are POSTed as `{"to": "+84…", "text": "…"}` with a bearer token.
#[derive(Clone)]
pub struct HttpEndpoint {
    /// The URL.
    pub url: String,
    /// The bearer token (a secret: never logged).
    pub token: String,
}

impl std::fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpEndpoint").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Production SMS: each carrier's HTTP gateway, chosen by the number's prefix, with a
/// `default` gateway for the others.
#[derive(Debug)]
pub struct HttpSms {
    http: reqwest::Client,
    routes: Vec<(String, HttpEndpoint)>,
}

pub use iparking_mobile_api::install_tls_provider;

impl HttpSms {
    /// Parses `carrier=url|token,…` (`default=` for every other number).
    pub fn from_config(config: &str) -> Result<HttpSms, String> {
        let mut routes = Vec::new();
        for part in config.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (carrier, rest) =
                part.split_once('=').ok_or_else(|| format!("`{part}`: expected carrier=url|token"))?;
            let (url, token) = rest.split_once('|').ok_or_else(|| format!("gateway {carrier}: expected url|token"))?;
            if !(url.starts_with("https://") || url.starts_with("http://")) || token.is_empty() {
                return Err(format!("gateway {carrier}: an http(s) URL and a token are needed"));
            }
            routes.push((carrier.trim().to_owned(), HttpEndpoint { url: url.to_owned(), token: token.to_owned() }));
        }
        if routes.is_empty() {
            return Err("no SMS gateway configured".into());
        }
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpSms { http, routes })
    }

    fn endpoint_for(&self, to: &Phone) -> Option<&HttpEndpoint> {
        let carrier = carrier_of(to);
        self.routes
            .iter()
            .find(|(c, _)| c == carrier)
            .or_else(|| self.routes.iter().find(|(c, _)| c == "default"))
            .map(|(_, e)| e)
    }
}

/// POSTs JSON to an endpoint; one retry on a transport error or a 5xx.
pub async fn post_json(http: &reqwest::Client, to: &HttpEndpoint, body: &serde_json::Value) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        match http.post(&to.url).bearer_auth(&to.token).json(body).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().is_server_error() => last = format!("HTTP {}", r.status()),
            Ok(r) => return Err(format!("HTTP {}", r.status())),
            Err(e) => last = format!("transport: {}", e.without_url()),
        }
    }
    Err(last)
}

#[async_trait]
impl SmsGateway for HttpSms {
    async fn send(&self, to: &Phone, text: &str) -> Result<(), SmsError> {
        let endpoint =
            self.endpoint_for(to).ok_or_else(|| SmsError(format!("no gateway for carrier {}", carrier_of(to))))?;
        post_json(&self.http, endpoint, &serde_json::json!({ "to": to.as_str(), "text": text })).await.map_err(SmsError)
    }
}

/// Push notifications to the driver app, through the operator's push service: reminders
/// of app sessions go here when configured (`{"driver_id", "session_id", "text"}`).
#[derive(Debug, Clone)]
pub struct PushWebhook {
    http: reqwest::Client,
    endpoint: HttpEndpoint,
}

impl PushWebhook {
    /// Parses `url|token`.
    pub fn from_config(config: &str) -> Result<PushWebhook, String> {
        let (url, token) = config.split_once('|').ok_or("push webhook: expected url|token")?;
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(PushWebhook { http, endpoint: HttpEndpoint { url: url.to_owned(), token: token.to_owned() } })
    }

    /// Sends one notification.
    pub async fn notify(&self, driver_id: i64, session_id: i64, text: &str) -> Result<(), SmsError> {
        let body = serde_json::json!({ "driver_id": driver_id, "session_id": session_id, "text": text });
        post_json(&self.http, &self.endpoint, &body).await.map_err(SmsError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriers_by_prefix() {
        let c = |n: &str| carrier_of(&Phone::parse(n).unwrap());
        assert_eq!(c("0987654321"), "viettel");
        assert_eq!(c("0352345678"), "viettel");
        assert_eq!(c("0901234567"), "mobifone");
        assert_eq!(c("0912345678"), "vinaphone");
        assert_eq!(c("0921234567"), "vietnamobile");
    }

    #[test]
    fn gateway_config() {
        let g = HttpSms::from_config("viettel=https://a.example/send|t1, default=http://127.0.0.1:9/x|t2").unwrap();
        let to = |n: &str| g.endpoint_for(&Phone::parse(n).unwrap()).unwrap().url.clone();
        assert_eq!(to("0987654321"), "https://a.example/send");
        assert_eq!(to("0912345678"), "http://127.0.0.1:9/x");
        assert!(HttpSms::from_config("").is_err());
        assert!(HttpSms::from_config("viettel=ftp://x|t").is_err());
        assert!(HttpSms::from_config("viettel=https://x").is_err());
        assert!(!format!("{g:?}").contains("t1"), "tokens stay out of Debug");
    }
}
