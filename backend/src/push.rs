//! Web Push (RFC 8030) for the drivers' app: reminders before a session ends, sent to the
//! browsers that agreed to them.
//!
//! - The message is encrypted for the subscription (RFC 8291, `aes128gcm`) by the kept crate
//!   `web-push-native`.
//! - The sender is identified by VAPID (RFC 8292): an ES256 JWT for the push service's
//!   origin, signed with our P-256 key, and the public key in the `Authorization` header.
//! - The key comes from `IPARKING_VAPID_PRIVATE_KEY` (base64url, the 32-byte scalar), or for
//!   the embedded default is generated on first start in the data dir (`vapid-private-key`,
//!   mode 0600), so subscriptions stay valid across restarts. Every node of a deployment must
//!   share one key: PostgreSQL deployments set the variable.
//! - Subscriptions are stored per driver (`push_subscriptions`). A push service that answers
//!   404 or 410 has dropped the subscription: it is forgotten. When no subscription takes
//!   the message, the reminder goes by SMS (see `jobs::send_reminders_forever`).

use std::path::Path;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use p256::ecdsa::{SigningKey, signature::Signer as _};

/// The most characters of a subscription's endpoint URL we accept.
pub const MAX_ENDPOINT_LEN: usize = 1000;

/// How long a push service keeps an undelivered reminder (seconds): the reminder is useless
/// once the session has ended.
pub const REMINDER_TTL_SECS: u64 = 15 * 60;

/// The file the embedded default keeps its generated key in, under the data dir.
pub const KEY_FILE: &str = "vapid-private-key";

/// A subscription, as the browser gave it (`PushSubscription.toJSON()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Row id.
    pub id: i64,
    /// The push service's URL for this browser.
    pub endpoint: String,
    /// The browser's P-256 public key (base64url, uncompressed point).
    pub p256dh: String,
    /// The browser's auth secret (base64url, 16 bytes).
    pub auth: String,
    /// The language the driver chose when subscribing (`vi` or `en`).
    pub lang: String,
}

/// What a push service did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted (2xx).
    Accepted,
    /// The subscription is gone (404, 410): forget it.
    Gone,
    /// Not delivered now (network, 4xx/5xx other than the above), with the reason.
    Failed(String),
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The endpoint is not an https URL (or http on loopback when allowed), or too long.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// The keys are not a P-256 point and a 16-byte secret in base64url.
    #[error("keys: {0}")]
    Keys(String),
}

/// The sender: our VAPID key and an HTTP client.
pub struct WebPush {
    key: SigningKey,
    public_b64: String,
    subject: String,
    http: reqwest::Client,
    allow_http: bool,
    hosts: Vec<String>,
}

/// The browsers' push services a subscription may name (Chrome and Edge's FCM, Firefox's
/// autopush, Safari's, Windows'): the server posts only there, never to an address a client
/// makes up (`IPARKING_PUSH_HOSTS` adds more).
pub const PUSH_SERVICES: &[&str] =
    &["fcm.googleapis.com", "push.services.mozilla.com", "push.apple.com", "notify.windows.com"];

impl std::fmt::Debug for WebPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPush").field("public_key", &self.public_b64).finish_non_exhaustive()
    }
}

impl WebPush {
    /// From the private key (base64url of the 32-byte scalar) and the contact (`mailto:` or
    /// `https:`) the push services may use to reach the operator.
    pub fn from_private_key(private_b64: &str, subject: &str) -> Result<WebPush, String> {
        let bytes = B64.decode(private_b64.trim()).map_err(|_| "VAPID key: not base64url".to_owned())?;
        let key = SigningKey::from_slice(&bytes).map_err(|_| "VAPID key: not a P-256 private key".to_owned())?;
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err("VAPID subject: a mailto: or https: URL is needed".into());
        }
        crate::sms::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let public = key.verifying_key().to_encoded_point(false);
        Ok(WebPush {
            public_b64: B64.encode(public.as_bytes()),
            key,
            subject: subject.to_owned(),
            http,
            allow_http: false,
            hosts: PUSH_SERVICES.iter().map(|h| (*h).to_owned()).collect(),
        })
    }

    /// The embedded default's key: read from `dir/vapid-private-key`, or generated there on
    /// first start (mode 0600).
    pub fn load_or_generate(dir: &Path, subject: &str) -> Result<WebPush, String> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_private_key(&text, subject).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = generate_private_key();
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                write_private(&path, &key).map_err(|e| format!("{}: {e}", path.display()))?;
                tracing::info!(file = %path.display(), "generated the Web Push (VAPID) key");
                Self::from_private_key(&key, subject)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Also accepts endpoints on these hosts (and their subdomains): another push service.
    pub fn with_hosts(mut self, extra: &[String]) -> Self {
        self.hosts.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()));
        self
    }

    /// Accepts `http://` endpoints on loopback (tests and local push services only).
    pub fn allow_loopback_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Our public key (base64url, uncompressed point): the app's `applicationServerKey`.
    pub fn public_key(&self) -> &str {
        &self.public_b64
    }

    /// Checks a subscription the app sends before it is stored.
    pub fn check_subscription(&self, endpoint: &str, p256dh: &str, auth: &str) -> Result<(), SubscriptionError> {
        check_endpoint(endpoint, self.allow_http, &self.hosts)?;
        let ua = B64.decode(p256dh).map_err(|_| SubscriptionError::Keys("p256dh is not base64url".into()))?;
        p256::PublicKey::from_sec1_bytes(&ua)
            .map_err(|_| SubscriptionError::Keys("p256dh is not a P-256 public key".into()))?;
        let secret = B64.decode(auth).map_err(|_| SubscriptionError::Keys("auth is not base64url".into()))?;
        if secret.len() != 16 {
            return Err(SubscriptionError::Keys("auth must be 16 bytes".into()));
        }
        Ok(())
    }

    /// Encrypts `payload` for the subscription and posts it to its push service.
    pub async fn send(&self, sub: &Subscription, payload: &[u8], ttl_secs: u64) -> Delivery {
        let request = match self.request(sub, payload, ttl_secs) {
            Ok(r) => r,
            // A stored subscription we cannot use any more: forget it.
            Err(e) => {
                tracing::warn!(subscription.id = sub.id, error = %e, "push subscription unusable");
                return Delivery::Gone;
            }
        };
        let answer = self
            .http
            .post(&sub.endpoint)
            .header("TTL", ttl_secs.to_string())
            .header("Urgency", "high")
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", request.authorization)
            .body(request.body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Delivery::Accepted,
            Ok(r) if r.status() == 404 || r.status() == 410 => Delivery::Gone,
            Ok(r) => Delivery::Failed(format!("push service answered {}", r.status())),
            Err(e) => Delivery::Failed(format!("push service unreachable: {}", e.without_url())),
        }
    }

    fn request(&self, sub: &Subscription, payload: &[u8], ttl_secs: u64) -> Result<PushRequest, String> {
        check_endpoint(&sub.endpoint, self.allow_http, &self.hosts).map_err(|e| e.to_string())?;
        let ua = B64.decode(&sub.p256dh).map_err(|_| "p256dh is not base64url")?;
        let ua = p256::PublicKey::from_sec1_bytes(&ua).map_err(|_| "p256dh is not a P-256 key")?;
        let auth = B64.decode(&sub.auth).map_err(|_| "auth is not base64url")?;
        let auth: [u8; 16] = auth.try_into().map_err(|_| "auth must be 16 bytes")?;
        let auth = web_push_native::Auth::from(auth);
        let body = web_push_native::encrypt(payload.to_vec(), &ua, &auth).map_err(|e| format!("encrypting: {e}"))?;
        let audience = origin_of(&sub.endpoint).ok_or("endpoint without an origin")?;
        let jwt = self.vapid_jwt(&audience, ttl_secs.clamp(60, 12 * 3600));
        Ok(PushRequest { authorization: format!("vapid t={jwt}, k={}", self.public_b64), body })
    }

    /// The VAPID JWT (RFC 8292 §2): ES256 over `{aud, exp, sub}`, valid at most 24 hours.
    fn vapid_jwt(&self, audience: &str, valid_secs: u64) -> String {
        let exp = chrono::Utc::now().timestamp() + i64::try_from(valid_secs).unwrap_or(3600);
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = B64.encode(serde_json::json!({ "aud": audience, "exp": exp, "sub": self.subject }).to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
    }
}

struct PushRequest {
    authorization: String,
    body: Vec<u8>,
}

/// A new private key (base64url of the scalar).
pub fn generate_private_key() -> String {
    use rand::RngCore as _;
    loop {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        if let Ok(key) = SigningKey::from_slice(&bytes) {
            return B64.encode(key.to_bytes());
        }
    }
}

fn write_private(path: &Path, key: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.sync_all()
}

/// `scheme://host[:port]` of an URL.
fn origin_of(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    Some(format!("{scheme}://{authority}"))
}

fn check_endpoint(endpoint: &str, allow_http: bool, hosts: &[String]) -> Result<(), SubscriptionError> {
    let bad = |why: &str| Err(SubscriptionError::Endpoint(why.to_owned()));
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return bad("too long");
    }
    let Ok(uri) = endpoint.parse::<axum::http::Uri>() else { return bad("not a URL") };
    let Some(host) = uri.host() else { return bad("no host") };
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return bad("user info is not allowed");
    }
    let loopback = host == "127.0.0.1" || host == "localhost" || host == "[::1]";
    match uri.scheme_str() {
        Some("http" | "https") if allow_http && loopback => Ok(()),
        Some("https") => {
            let host = host.to_ascii_lowercase();
            if hosts.iter().any(|h| host == *h || host.ends_with(&format!(".{h}"))) {
                Ok(())
            } else {
                bad("not a known push service")
            }
        }
        _ => bad("an https URL is needed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_known_push_services_over_https() {
        let known: Vec<String> = PUSH_SERVICES.iter().map(|h| (*h).to_owned()).collect();
        let check = |e: &str, http: bool| check_endpoint(e, http, &known);
        assert!(check("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check("https://updates.push.services.mozilla.com/wpush/v2/abc", false).is_ok());
        assert!(check("https://web.push.apple.com/abc", false).is_ok());
        // Not a push service: the server would post wherever a client said (internal hosts).
        assert!(check("https://10.0.0.1/push", false).is_err());
        assert!(check("https://intranet.example/admin", false).is_err());
        assert!(check("https://fcm.googleapis.com.evil.example/x", false).is_err());
        assert!(check("http://127.0.0.1:9/push", false).is_err());
        assert!(check("http://127.0.0.1:9/push", true).is_ok());
        assert!(check("http://10.0.0.1/push", true).is_err());
        assert!(check("https://user:pw@fcm.googleapis.com/x", false).is_err());
        assert!(check("ftp://fcm.googleapis.com/x", false).is_err());
        assert!(check(&format!("https://fcm.googleapis.com/{}", "a".repeat(MAX_ENDPOINT_LEN)), false).is_err());
        let more = [known, vec!["push.example".to_owned()]].concat();
        assert!(check_endpoint("https://a.push.example/x", false, &more).is_ok());
        assert_eq!(origin_of("https://push.example:8443/a/b?c").as_deref(), Some("https://push.example:8443"));
    }

    #[test]
    fn a_generated_key_round_trips_and_signs_a_verifiable_jwt() {
        use p256::ecdsa::{VerifyingKey, signature::Verifier as _};
        let push = WebPush::from_private_key(&generate_private_key(), "mailto:ops@example.org").unwrap();
        let jwt = push.vapid_jwt("https://push.example", 600);
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let public = VerifyingKey::from_sec1_bytes(&B64.decode(push.public_key()).unwrap()).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&B64.decode(sig).unwrap()).unwrap();
        public.verify(input.as_bytes(), &sig).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&B64.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(
            (claims["aud"].as_str(), claims["sub"].as_str()),
            (Some("https://push.example"), Some("mailto:ops@example.org"))
        );
        assert!(WebPush::from_private_key("not a key", "mailto:a@b").is_err());
        assert!(WebPush::from_private_key(&generate_private_key(), "ops@example.org").is_err());
    }

    #[test]
    fn the_embedded_default_keeps_its_generated_key() {
        let dir = tempfile::tempdir().unwrap();
        let first = WebPush::load_or_generate(dir.path(), "mailto:a@b.c").unwrap();
        let again = WebPush::load_or_generate(dir.path(), "mailto:a@b.c").unwrap();
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
