//! A minimal W3C WebDriver client over `reqwest`, for browser tests: it starts `chromedriver`
//! on a free loopback port and drives a headless Chromium through it.
//!
//! The binaries come from `IPARKING_TEST_CHROMEDRIVER` and `IPARKING_TEST_CHROMIUM` (which
//! `scripts/test` sets after installing the Debian packages `chromium` and `chromium-driver`),
//! else from `PATH`. Missing binaries are an error: a browser test **fails**, never skips.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// How long [`Browser::wait_for`] and friends wait by default.
pub const WAIT: Duration = Duration::from_secs(15);

/// The first of `names` found on `PATH` (or the path in `env`, when set and non-empty).
pub fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

/// A web element found on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(pub String);

/// One browser session on its own chromedriver. Call [`Browser::quit`] at the end; dropping
/// it also closes the browser (blocking) and stops chromedriver.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>`.
    base: String,
    /// `<base>/session/<id>`.
    session: String,
    driver: Child,
    closed: bool,
    /// Chromium's profile and chromedriver's log.
    pub dir: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("session", &self.session).finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (window 1280×1600).
    pub async fn launch() -> Result<Self> {
        let driver_bin = find_binary("IPARKING_TEST_CHROMEDRIVER", &["chromedriver"]).ok_or_else(|| {
            anyhow!(
                "chromedriver not found (set IPARKING_TEST_CHROMEDRIVER, or run ./scripts/test, which installs \
                 the Debian packages chromium and chromium-driver)"
            )
        })?;
        let chromium = find_binary("IPARKING_TEST_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"])
            .ok_or_else(|| {
                anyhow!(
                    "Chromium not found (set IPARKING_TEST_CHROMIUM, or run ./scripts/test, which installs the \
                     Debian packages chromium and chromium-driver)"
                )
            })?;
        let dir = tempfile::tempdir().context("temp dir")?;
        let port = free_port()?;
        let log = dir.path().join("chromedriver.log");
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", driver_bin.display()))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().context("HTTP client")?;
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Self { http, base: base.clone(), session: String::new(), driver, closed: true, dir };

        // Wait until chromedriver answers and is ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = b.driver.try_wait()? {
                bail!("chromedriver exited at start ({status}); log: {}", read_log(&log));
            }
            let ready = match b.http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready in 30 s; log: {}", read_log(&log));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let profile = b.dir.path().join("profile");
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": {"implicit": 0, "pageLoad": 30_000, "script": 10_000},
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-default-apps",
                            "--disable-extensions",
                            "--disable-sync",
                            "--disable-features=Translate,MediaRouter,OptimizationHints",
                            "--no-first-run",
                            "--no-default-browser-check",
                            "--password-store=basic",
                            "--use-mock-keychain",
                            "--hide-scrollbars",
                            "--window-size=1280,1600",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let resp = b.http.post(format!("{base}/session")).json(&caps).send().await.context("new session")?;
        let v: Value = resp.json().await.context("new session answer")?;
        if let Some(err) = error_of(&v) {
            bail!("chromedriver refused a session: {err}; log: {}", read_log(&log));
        }
        let id = v["value"]["sessionId"].as_str().ok_or_else(|| anyhow!("no session id in {v}"))?;
        b.session = format!("{base}/session/{id}");
        b.closed = false;
        Ok(b)
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.session);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let v: Value = resp.json().await.with_context(|| format!("{method} {path}: answer"))?;
        if let Some(err) = error_of(&v) {
            bail!("{method} {path}: {err}");
        }
        Ok(v["value"].clone())
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(|_| ())
    }

    /// Reloads the page (a real reload, even when only the fragment would differ).
    pub async fn refresh(&self) -> Result<()> {
        self.post("/refresh", json!({})).await.map(|_| ())
    }

    /// The current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self.get("/url").await?.as_str().unwrap_or_default().to_owned())
    }

    /// The page title.
    pub async fn title(&self) -> Result<String> {
        Ok(self.get("/title").await?.as_str().unwrap_or_default().to_owned())
    }

    /// The page's HTML.
    pub async fn source(&self) -> Result<String> {
        Ok(self.get("/source").await?.as_str().unwrap_or_default().to_owned())
    }

    /// Every element matching a CSS selector.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await?;
        Ok(v.as_array().map(|a| a.iter().filter_map(element_of).collect()).unwrap_or_default())
    }

    /// The first element matching a CSS selector (an error when there is none).
    pub async fn find(&self, css: &str) -> Result<Element> {
        self.find_all(css).await?.into_iter().next().ok_or_else(|| anyhow!("no element matches {css:?}"))
    }

    /// Waits up to [`WAIT`] for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Result<Element> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_all(css).await?.into_iter().next() {
                return Ok(e);
            }
            if Instant::now() > deadline {
                let url = self.url().await.unwrap_or_default();
                let text = self.body_text().await.unwrap_or_default();
                bail!("no element matches {css:?} after {WAIT:?} at {url}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to [`WAIT`] for the text of the first `css` element to contain `needle`.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> Result<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.find_all(css).await?.into_iter().next() {
                let text = self.text(&e).await.unwrap_or_default();
                if text.contains(needle) {
                    return Ok(text);
                }
            }
            if Instant::now() > deadline {
                let url = self.url().await.unwrap_or_default();
                let text = self.body_text().await.unwrap_or_default();
                bail!("{css:?} does not say {needle:?} after {WAIT:?} at {url}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css` inside `parent`.
    pub async fn find_in(&self, parent: &Element, css: &str) -> Result<Element> {
        let v = self
            .post(&format!("/element/{}/elements", parent.0), json!({"using": "css selector", "value": css}))
            .await?;
        v.as_array()
            .and_then(|a| a.iter().find_map(element_of))
            .ok_or_else(|| anyhow!("no element matches {css:?} inside {parent:?}"))
    }

    /// Clicks an element, scrolled to the middle of the viewport first (as a person scrolls
    /// to what they tap), so a fixed header or tab bar does not take the click.
    pub async fn click(&self, e: &Element) -> Result<()> {
        let key = ELEMENT_KEY.get().map_or("element-6066-11e4-a23c-7a4daa4ef6d7", String::as_str);
        let element = json!({ key: e.0 });
        self.execute("arguments[0].scrollIntoView({ block: 'center', inline: 'nearest' })", json!([element])).await?;
        self.post(&format!("/element/{}/click", e.0), json!({})).await.map(|_| ())
    }

    /// Types into an element.
    pub async fn type_into(&self, e: &Element, text: &str) -> Result<()> {
        self.post(&format!("/element/{}/value", e.0), json!({ "text": text })).await.map(|_| ())
    }

    /// Clears an input.
    pub async fn clear(&self, e: &Element) -> Result<()> {
        self.post(&format!("/element/{}/clear", e.0), json!({})).await.map(|_| ())
    }

    /// The rendered text of an element.
    pub async fn text(&self, e: &Element) -> Result<String> {
        Ok(self.get(&format!("/element/{}/text", e.0)).await?.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute or property of an element.
    pub async fn attribute(&self, e: &Element, name: &str) -> Result<Option<String>> {
        Ok(self.get(&format!("/element/{}/attribute/{name}", e.0)).await?.as_str().map(str::to_owned))
    }

    /// The rendered text of the whole page.
    pub async fn body_text(&self) -> Result<String> {
        let body = self.find("body").await?;
        self.text(&body).await
    }

    /// A cookie of the current page, as WebDriver reports it (`name`, `value`, `path`,
    /// `httpOnly`, `sameSite`, …), or `None`.
    pub async fn cookie(&self, name: &str) -> Result<Option<Value>> {
        let all = self.get("/cookie").await?;
        Ok(all.as_array().and_then(|a| a.iter().find(|c| c["name"] == name).cloned()))
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns
    /// its value. An async script resolves by returning a promise.
    pub async fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// The serious and critical accessibility violations axe-core (vendored for the tests,
    /// `tests/vendor/axe-core`) finds in the page as it is: `[{id, impact, help, nodes}]`.
    pub async fn axe_violations(&self) -> Result<Vec<Value>> {
        const AXE: &str = include_str!("../vendor/axe-core/axe.min.js");
        let script = format!(
            "{AXE}\n;return axe.run(document, {{ resultTypes: ['violations'] }}).then(r => r.violations \
             .filter(v => v.impact === 'serious' || v.impact === 'critical') \
             .map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }})));"
        );
        let v = self.execute(&script, json!([])).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Sets the window's outer size (a phone's viewport in the tests).
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height })).await.map(|_| ())
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`).
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.post("/goog/cdp/execute", json!({ "cmd": cmd, "params": params })).await
    }

    /// What 200% browser zoom does to a page on a `width`×`height` phone: a CSS viewport of
    /// half the size, each CSS pixel two device pixels (CDP's device metrics override).
    pub async fn zoom_200(&self, width: u32, height: u32) -> Result<()> {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width / 2, "height": height / 2, "deviceScaleFactor": 2, "mobile": true }),
        )
        .await
        .map(|_| ())
    }

    /// Reads the QR code drawn as SVG squares at `css` (the apps' `qr.js`) as a scanner would:
    /// its dark modules rasterised (8 pixels each), then located and decoded by `rqrr`.
    pub async fn read_qr(&self, css: &str) -> Result<String> {
        let modules = self
            .execute(
                "const svg = document.querySelector(arguments[0]); \
                 const size = svg.viewBox.baseVal.width; \
                 const dark = [...svg.querySelectorAll('rect')].filter(r => r.getAttribute('fill') !== '#fff') \
                   .map(r => [Number(r.getAttribute('x')), Number(r.getAttribute('y'))]); \
                 return { size, dark };",
                json!([css]),
            )
            .await?;
        let size = usize::try_from(modules["size"].as_u64().ok_or_else(|| anyhow!("no QR code at {css}"))?)?;
        let scale = 8;
        let mut grid = vec![255u8; size * size];
        for m in modules["dark"].as_array().into_iter().flatten() {
            let (x, y) = (m[0].as_u64().unwrap_or(0) as usize, m[1].as_u64().unwrap_or(0) as usize);
            if x < size && y < size {
                grid[y * size + x] = 0;
            }
        }
        let px = size * scale;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(px, px, |x, y| grid[(y / scale) * size + x / scale]);
        let grids = img.detect_grids();
        if grids.len() != 1 {
            bail!("{} QR codes found at {css}", grids.len());
        }
        Ok(grids[0].decode().map_err(|e| anyhow!("the QR code does not decode: {e:?}"))?.1)
    }

    /// A PNG screenshot of the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.get("/screenshot").await?;
        let b64 = v.as_str().ok_or_else(|| anyhow!("screenshot is not a string"))?;
        base64_decode(b64)
    }

    /// Ends the session (closes the browser) and stops chromedriver.
    pub async fn quit(mut self) -> Result<()> {
        let r = self.http.delete(&self.session).send().await;
        self.closed = true;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        r.map(|_| ()).context("delete session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.closed {
            // Blocking, best effort: close the browser so that no Chromium outlives the test.
            if let Some(path) = self.session.strip_prefix(&self.base) {
                let addr = self.base.trim_start_matches("http://").to_owned();
                if let Ok(mut s) = TcpStream::connect(&addr) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let req = format!(
                        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    if s.write_all(req.as_bytes()).is_ok() {
                        let mut sink = Vec::new();
                        let _ = s.read_to_end(&mut sink);
                    }
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn read_log(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let tail: Vec<&str> = s.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn error_of(v: &Value) -> Option<String> {
    let e = v["value"]["error"].as_str()?;
    Some(format!("{e}: {}", v["value"]["message"].as_str().unwrap_or("")))
}

/// The key of web element references, as chromedriver writes it (kept to send them back).
static ELEMENT_KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The id of a web element reference (`{"element-6066-…": id}`).
fn element_of(v: &Value) -> Option<Element> {
    let o = v.as_object()?;
    let (key, id) = o.iter().find(|(k, _)| k.starts_with("element-") || k.as_str() == "ELEMENT")?;
    let _ = ELEMENT_KEY.set(key.clone());
    id.as_str().map(|id| Element(id.to_owned()))
}

/// Standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' => continue,
            _ => bail!("not base64: {:?}", char::from(c)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or(0));
        }
    }
    Ok(out)
}

/// Panics unless axe-core finds no serious or critical violation on the page as it is.
pub async fn assert_accessible(b: &Browser, page: &str) {
    let found = b.axe_violations().await.expect("axe-core runs");
    assert!(found.is_empty(), "{page}: {}", serde_json::to_string_pretty(&found).unwrap_or_default());
}

/// Waits (up to 15 s) until `script`, returning a boolean, is true in the page; panics with
/// the page's text otherwise.
pub async fn wait_until(b: &Browser, script: &str, what: &str) {
    for _ in 0..150 {
        if b.execute(script, json!([])).await.ok().and_then(|v| v.as_bool()) == Some(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; page: {}", b.body_text().await.unwrap_or_default());
}

/// Chooses `value` in the `<select>` at `css`, as a tap would (its change event fires).
pub async fn set_select(b: &Browser, css: &str, value: &str) {
    b.execute(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
         s.dispatchEvent(new Event('change', { bubbles: true }));",
        json!([css, value]),
    )
    .await
    .expect("set a select");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aVBhcmtpbmc=").unwrap(), b"iParking");
        assert_eq!(base64_decode("iVBORw0KGgo").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a*b").is_err());
    }

    #[test]
    fn element_references_are_read() {
        let v = json!({"element-6066-11e4-a23c-4d6f-a1b2-c3d4e5f6a7b8": "abc"});
        assert_eq!(element_of(&v), Some(Element("abc".into())));
        assert_eq!(element_of(&json!({"x": 1})), None);
    }
}
