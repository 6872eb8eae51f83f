//! The people's apps, served by the binary (docs/apps.md): the drivers' app at `/`.
//!
//! Their files are embedded at compile time (`backend/web/`). At start each app's files get
//! one content hash (the build), and are served under `/assets/{build}/…`: a year's cache,
//! immutable, so a new release is fetched at once and an unchanged one never again. Pages,
//! the service worker and the manifest are served fresh (`no-cache`) with an ETag, so a
//! revalidation costs a 304. Every file is kept gzip-compressed too, and sent so when the
//! browser accepts it. Every answer carries a strict Content-Security-Policy: no inline
//! script or style, no origin but our own and the map tiles' server.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};

use super::{AppState, error_for_status};

/// One embedded file: its path under the app's directory, and its bytes.
struct Embedded {
    path: &'static str,
    body: &'static [u8],
}

/// `embed!["key" => "file under backend/web/", …]`: the files, by the path they are served at.
macro_rules! embed {
    ($($key:literal => $file:literal),+ $(,)?) => {
        &[$(Embedded { path: $key, body: include_bytes!(concat!("../../web/", $file)) }),+]
    };
}

/// The drivers' app. `index.html`, `sw.js` and `manifest.webmanifest` are served at the root
/// of the app; every other file under `/assets/{build}/`. Leaflet is vendored from npm
/// (`web-vendor.json`), and loaded only when the map is opened.
const DRIVER: &[Embedded] = embed![
    "index.html" => "driver/index.html",
    "sw.js" => "driver/sw.js",
    "manifest.webmanifest" => "driver/manifest.webmanifest",
    "app.css" => "driver/app.css",
    "app.js" => "driver/app.js",
    "api.js" => "shared/api.js",
    "dom.js" => "shared/dom.js",
    "screen.js" => "shared/screen.js",
    "qr.js" => "shared/qr.js",
    "lang.js" => "shared/lang.js",
    "i18n.js" => "driver/i18n.js",
    "map.js" => "driver/map.js",
    "push.js" => "driver/push.js",
    "cards.js" => "driver/cards.js",
    "icon.svg" => "driver/icon.svg",
    "icon-192.png" => "driver/icon-192.png",
    "icon-512.png" => "driver/icon-512.png",
    "vendor/leaflet/leaflet.js" => "vendor/leaflet/leaflet.js",
    "vendor/leaflet/leaflet.css" => "vendor/leaflet/leaflet.css",
    "vendor/qrcode-generator/qrcode.mjs" => "vendor/qrcode-generator/qrcode.mjs",
];

/// The wardens' handheld app, served at `/warden/`; `slip.css` also styles a slip's public
/// page (`/r/{number}`). The QR code generator is vendored from npm (`web-vendor.json`).
const WARDEN: &[Embedded] = embed![
    "index.html" => "warden/index.html",
    "sw.js" => "warden/sw.js",
    "manifest.webmanifest" => "warden/manifest.webmanifest",
    "app.css" => "warden/app.css",
    "slip.css" => "warden/slip.css",
    "app.js" => "warden/app.js",
    "api.js" => "shared/api.js",
    "dom.js" => "shared/dom.js",
    "screen.js" => "shared/screen.js",
    "qr.js" => "shared/qr.js",
    "lang.js" => "shared/lang.js",
    "i18n.js" => "warden/i18n.js",
    "queue.js" => "warden/queue.js",
    "plate.js" => "warden/plate.js",
    "icon.svg" => "warden/icon.svg",
    "icon-192.png" => "warden/icon-192.png",
    "icon-512.png" => "warden/icon-512.png",
    "vendor/qrcode-generator/qrcode.mjs" => "vendor/qrcode-generator/qrcode.mjs",
];

/// The map tiles' default: OpenStreetMap's standard tiles (attribution shown on the map).
pub const DEFAULT_TILES: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

/// Where Stripe.js and its frames come from, and what they call: in the CSP only when the
/// app collects cards with Stripe (Stripe's documented policy for Stripe.js).
const STRIPE_SCRIPT: &str = "https://js.stripe.com https://*.js.stripe.com";
const STRIPE_FRAME: &str = "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com";
const STRIPE_CONNECT: &str = "https://api.stripe.com";

/// How the drivers' app takes cards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cards {
    /// No card payments on this server.
    Off,
    /// The demo's SANDBOX gateway: play cards, saved and charged at once.
    Sandbox,
    /// Stripe, with its publishable key: Stripe's Payment Element collects cards.
    Stripe(String),
    /// Stripe without a publishable key: saved cards pay, no new card can be collected.
    StripeSavedOnly,
}

/// What the apps are built with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The map tiles' URL template.
    pub tiles: String,
    /// Card payments.
    pub cards: Cards,
}

impl Config {
    /// The defaults: OpenStreetMap tiles, no cards.
    pub fn plain() -> Config {
        Config { tiles: DEFAULT_TILES.to_owned(), cards: Cards::Off }
    }

    /// From the app's settings and its payment gateway.
    pub fn of(app: &crate::App) -> Config {
        let cards = match app.payments.as_deref() {
            None => Cards::Off,
            Some(g) if g.is_sandbox() => Cards::Sandbox,
            Some(_) => match app.settings.stripe_publishable_key.as_deref() {
                Some(k) if is_publishable_key(k) => Cards::Stripe(k.to_owned()),
                _ => Cards::StripeSavedOnly,
            },
        };
        Config { tiles: app.settings.map_tiles.clone(), cards }
    }
}

/// `pk_test_…` or `pk_live_…`, letters, digits and `_`: safe in an HTML attribute.
pub fn is_publishable_key(key: &str) -> bool {
    (key.starts_with("pk_test_") || key.starts_with("pk_live_"))
        && key.len() <= 200
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A file ready to serve: its bytes, gzip-compressed bytes (when smaller), type and ETag.
struct Asset {
    mime: &'static str,
    etag: HeaderValue,
    raw: Bytes,
    gzip: Option<Bytes>,
}

impl Asset {
    fn new(path: &str, body: Vec<u8>) -> Asset {
        let digest = Sha256::digest(&body);
        let etag =
            HeaderValue::from_str(&format!("\"{}\"", &hex::encode(digest)[..20])).expect("hex is a header value");
        let gzip = gzip(&body).filter(|g| g.len() + 64 < body.len()).map(Bytes::from);
        Asset { mime: mime_of(path), etag, raw: Bytes::from(body), gzip }
    }
}

fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

fn mime_of(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// One app's files, ready to serve.
pub struct App {
    /// The content hash of all its files: the `{build}` of its asset URLs.
    build: String,
    /// `index.html`, `sw.js`, `manifest.webmanifest`, with `{{build}}`, `{{assets}}`,
    /// `{{tiles}}` and `{{icon}}` filled in.
    roots: HashMap<&'static str, Asset>,
    /// Everything else, by path.
    assets: HashMap<&'static str, Asset>,
    csp: HeaderValue,
}

impl App {
    fn new(files: &[Embedded], config: &Config) -> App {
        let tiles = config.tiles.as_str();
        let (cards, stripe_key) = match &config.cards {
            Cards::Off => ("", ""),
            Cards::Sandbox => ("sandbox", ""),
            Cards::Stripe(key) => ("stripe", key.as_str()),
            Cards::StripeSavedOnly => ("saved", ""),
        };
        let mut hasher = Sha256::new();
        for f in files {
            hasher.update(f.path.as_bytes());
            hasher.update((f.body.len() as u64).to_le_bytes());
            hasher.update(f.body);
        }
        let build = hex::encode(hasher.finalize())[..12].to_owned();
        let is_root = |p: &str| matches!(p, "index.html" | "sw.js" | "manifest.webmanifest");
        let asset_urls: Vec<String> =
            files.iter().filter(|f| !is_root(f.path)).map(|f| format!("/assets/{build}/{}", f.path)).collect();
        let asset_list = serde_json::to_string(&asset_urls).unwrap_or_else(|_| "[]".into());
        let mut roots = HashMap::new();
        let mut assets = HashMap::new();
        for f in files {
            if is_root(f.path) {
                let text = String::from_utf8_lossy(f.body)
                    .replace("{{build}}", &build)
                    .replace("{{assets}}", &asset_list)
                    .replace("{{tiles}}", tiles)
                    .replace("{{cards}}", cards)
                    .replace("{{stripe_key}}", stripe_key)
                    .replace("{{icon}}", &format!("\"/assets/{build}/icon-192.png\""));
                roots.insert(f.path, Asset::new(f.path, text.into_bytes()));
            } else {
                assets.insert(f.path, Asset::new(f.path, f.body.to_vec()));
            }
        }
        App { build, roots, assets, csp: csp(tiles, matches!(config.cards, Cards::Stripe(_))) }
    }

    /// The build hash of its asset URLs.
    pub fn build(&self) -> &str {
        &self.build
    }

    /// Its Content-Security-Policy.
    pub fn csp(&self) -> &HeaderValue {
        &self.csp
    }
}

/// The tiles' origin (`https://tile.openstreetmap.org`), or nothing for a URL that has none.
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host_end = rest.find('/').unwrap_or(rest.len());
    let host = &rest[..host_end];
    let ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| &url[..scheme.len() + 3 + host_end])
}

/// The apps' Content-Security-Policy: our own origin, the tiles' for images, and Stripe's
/// only when the app collects cards with Stripe.
fn csp(tiles: &str, stripe: bool) -> HeaderValue {
    let img = match origin_of(tiles) {
        Some(o) => format!("'self' data: {o}"),
        None => "'self' data:".to_owned(),
    };
    let (script, frame, connect) = if stripe {
        (format!("'self' {STRIPE_SCRIPT}"), STRIPE_FRAME.to_owned(), format!("'self' {STRIPE_CONNECT}"))
    } else {
        ("'self'".to_owned(), "'none'".to_owned(), "'self'".to_owned())
    };
    let policy = format!(
        "default-src 'none'; script-src {script}; style-src 'self'; img-src {img}; connect-src {connect}; \
         frame-src {frame}; manifest-src 'self'; worker-src 'self'; font-src 'self'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// The apps, built once at start.
pub struct Apps {
    driver: App,
    warden: App,
}

impl Apps {
    /// Builds every app.
    pub fn new(config: &Config) -> Apps {
        // The wardens' app never takes cards: Stripe stays out of its policy.
        let warden = Config { cards: Cards::Off, ..config.clone() };
        Apps { driver: App::new(DRIVER, config), warden: App::new(WARDEN, &warden) }
    }

    /// The drivers' app.
    pub fn driver(&self) -> &App {
        &self.driver
    }

    /// The wardens' app.
    pub fn warden(&self) -> &App {
        &self.warden
    }
}

/// Which app a root file belongs to.
#[derive(Debug, Clone, Copy)]
enum Which {
    Driver,
    Warden,
}

impl Apps {
    fn get(&self, which: Which) -> &App {
        match which {
            Which::Driver => &self.driver,
            Which::Warden => &self.warden,
        }
    }
}

/// The apps' routes: the drivers' app at `/`, the wardens' at `/warden/` (their service
/// workers' scopes), a slip's public page at `/r/{number}`, and every asset by build.
pub fn router(apps: Arc<Apps>) -> Router<AppState> {
    let root = |which: Which, name: &'static str| {
        let apps = apps.clone();
        move |headers: HeaderMap| {
            let apps = apps.clone();
            async move { serve_root(apps.get(which), name, &headers) }
        }
    };
    Router::new()
        .route("/", get(root(Which::Driver, "index.html")))
        .route("/sw.js", get(root(Which::Driver, "sw.js")))
        .route("/manifest.webmanifest", get(root(Which::Driver, "manifest.webmanifest")))
        .route("/warden", get(|| async { axum::response::Redirect::permanent("/warden/") }))
        .route("/warden/", get(root(Which::Warden, "index.html")))
        .route("/warden/sw.js", get(root(Which::Warden, "sw.js")))
        .route("/warden/manifest.webmanifest", get(root(Which::Warden, "manifest.webmanifest")))
        .route("/r/{number}", get(super::slip_page::slip_page))
        .route("/assets/{build}/{*path}", get(serve_asset))
        .layer(axum::Extension(apps))
}

async fn serve_asset(
    axum::Extension(apps): axum::Extension<Arc<Apps>>,
    Path((build, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let both = [&apps.driver, &apps.warden];
    if let Some(app) = both.iter().find(|a| a.build == build)
        && let Some(a) = app.assets.get(path.as_str())
    {
        return serve(a, app, &headers, "public, max-age=31536000, immutable");
    }
    // An old build's URL gets today's file, but not for a year: the next page load asks for
    // the new URL anyway.
    match both.iter().find_map(|app| app.assets.get(path.as_str()).map(|a| (app, a))) {
        Some((app, a)) => serve(a, app, &headers, "no-cache"),
        None => error_for_status(StatusCode::NOT_FOUND).into_response(),
    }
}

fn serve_root(app: &App, name: &str, headers: &HeaderMap) -> Response {
    match app.roots.get(name) {
        Some(a) => serve(a, app, headers, "no-cache"),
        None => error_for_status(StatusCode::NOT_FOUND).into_response(),
    }
}

fn serve(a: &Asset, app: &App, req: &HeaderMap, cache: &'static str) -> Response {
    let not_modified = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == a.etag));
    let takes_gzip = req
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| accepts(e, "gzip")));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match (&a.gzip, takes_gzip) {
            (Some(g), true) => {
                let mut r = g.clone().into_response();
                r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => a.raw.clone().into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.mime));
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::CONTENT_SECURITY_POLICY, app.csp.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("geolocation=(self), camera=(), microphone=()"),
    );
    response
}

/// Whether one `Accept-Encoding` item accepts `coding` (`gzip`, `gzip;q=0.5`; not `q=0`).
fn accepts(item: &str, coding: &str) -> bool {
    let mut parts = item.split(';').map(str::trim);
    if !parts.next().is_some_and(|c| c.eq_ignore_ascii_case(coding)) {
        return false;
    }
    !parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_origins() {
        assert_eq!(origin_of(DEFAULT_TILES), Some("https://tile.openstreetmap.org"));
        assert_eq!(origin_of("http://127.0.0.1:9000/t/{z}/{x}/{y}.png"), Some("http://127.0.0.1:9000"));
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://a b/"), None);
        assert_eq!(origin_of(""), None);
    }

    #[test]
    fn the_policy_has_no_inline_and_names_the_tiles() {
        let p = csp(DEFAULT_TILES, false);
        let p = p.to_str().unwrap();
        assert!(!p.contains("unsafe"), "{p}");
        assert!(p.contains("img-src 'self' data: https://tile.openstreetmap.org;"), "{p}");
        assert!(p.contains("script-src 'self';") && p.contains("frame-src 'none';"), "{p}");
        assert!(!p.contains("stripe"), "{p}");
        let with_stripe = csp(DEFAULT_TILES, true);
        let p = with_stripe.to_str().unwrap();
        assert!(p.contains("script-src 'self' https://js.stripe.com https://*.js.stripe.com;"), "{p}");
        assert!(p.contains("connect-src 'self' https://api.stripe.com;"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
        assert!(is_publishable_key("pk_test_51Abc"));
        assert!(!is_publishable_key("sk_test_51Abc") && !is_publishable_key("pk_test_\"><script>"));
    }

    #[test]
    fn gzip_is_accepted_unless_refused() {
        assert!(accepts("gzip", "gzip"));
        assert!(accepts(" GZIP ; q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("br", "gzip"));
    }

    #[test]
    fn roots_name_the_build_and_assets_do_not_change() {
        let apps = Apps::new(&Config::plain());
        let app = apps.driver();
        let index = String::from_utf8(app.roots["index.html"].raw.to_vec()).unwrap();
        assert!(index.contains(&format!("/assets/{}/app.js", app.build)), "{index}");
        assert!(!index.contains("{{"), "a placeholder left: {index}");
        let sw = String::from_utf8(app.roots["sw.js"].raw.to_vec()).unwrap();
        assert!(sw.contains(&format!("/assets/{}/app.css", app.build)), "{sw}");
        for f in DRIVER {
            if let Some(a) = app.assets.get(f.path) {
                assert_eq!(&a.raw[..], f.body, "{}", f.path);
            }
        }
    }
}
