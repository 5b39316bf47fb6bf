//! Rendering pages in headless Chromium before mapping them
//! (`WAYFINDER_CHROMIUM`), so single-page apps, whose elements only exist
//! once their scripts ran, map too.
//!
//! One Chromium per crawl, started by [`Renderer::launch`] and killed when
//! the renderer is dropped (its profile is a fresh directory, removed then).
//! Crawls running at once are capped deployment-wide
//! (`WAYFINDER_MAP_MAX_CRAWLS`), so Chromiums are too; inside a crawl at
//! most [`TABS`] pages render at once. It is driven over the DevTools
//! protocol (flat sessions on the browser websocket): open a tab, navigate,
//! wait for the load event, wait until the DOM stops changing (or the
//! render timeout), read `document.documentElement.outerHTML` (refused in
//! the page when larger than the page byte limit, so it is never shipped),
//! close the tab. The crawler then parses that DOM like static HTML.
//!
//! Every request Chromium makes goes through a [`GuardProxy`] this renderer
//! runs, with `--proxy-bypass-list=<-loopback>` (Chromium otherwise sends
//! loopback directly), `--host-resolver-rules` mapping every name to
//! nothing (Chromium resolves no name itself, so nothing can leak past the
//! proxy by DNS), QUIC off, and WebRTC restricted to proxied connections (it
//! would otherwise send UDP straight to any address). A staging app's
//! credentials are given to the site's origin only: the cookie is set for
//! the base URL, and the header is added to same-origin requests by
//! intercepting them (`Fetch.requestPaused`), never to other hosts.
//!
//! DevTools runs over a pipe ([`super::devtools`]), not a port: no other
//! process can drive this browser, and it exits with the pipe, so a server
//! that dies leaves no Chromium behind.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::Ordering,
    time::Duration,
};

use reqwest::Url;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{crawler::Credentials, devtools::Cdp, proxy::GuardProxy};
use crate::outbound::Policy;

/// Pages one renderer renders at once.
pub const TABS: usize = 2;
/// Longest wait for Chromium to start and answer on its DevTools pipe.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest a page's DOM is given to stop changing after the load event.
const SETTLE_MAX: Duration = Duration::from_secs(3);
/// How often the DOM is looked at while it settles.
const SETTLE_STEP: Duration = Duration::from_millis(150);
/// Events queued per tab before further ones are dropped.
const EVENT_QUEUE: usize = 256;

/// What rendering a page gave.
#[derive(Debug)]
pub struct Rendered {
    /// Where the tab ended up (after redirects and script navigation).
    pub url: String,
    /// The serialised DOM.
    pub html: String,
}

/// A headless Chromium for one crawl. Dropping it kills the browser.
pub struct Renderer {
    cdp: Cdp,
    proxy: GuardProxy,
    /// Held for its drop: the process dies with the renderer.
    _browser: Browser,
    tabs: tokio::sync::Semaphore,
    timeout: Duration,
    max_bytes: usize,
    origin: String,
    header: Option<(String, String)>,
}

/// The Chromium process and its profile directory: killed and removed when dropped.
struct Browser {
    child: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Whether this process runs as root (Chromium's sandbox cannot run then).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The settings of one renderer.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// The Chromium binary.
    pub chromium: String,
    /// Per page: load, settle and read.
    pub timeout: Duration,
    /// Largest DOM read, in bytes (the crawl's page limit).
    pub max_page_bytes: usize,
    /// Bytes Chromium may move through the proxy in all (the crawl's byte budget).
    pub max_total_bytes: usize,
}

impl Renderer {
    /// Starts Chromium behind a fresh [`GuardProxy`] applying `policy`, with
    /// `credentials` for `base`'s origin only.
    pub async fn launch(
        options: &RenderOptions,
        policy: Policy,
        base: &Url,
        credentials: &Credentials,
    ) -> Result<Self, String> {
        let proxy = GuardProxy::start(policy, options.max_total_bytes)
            .await
            .map_err(|e| format!("could not start the rendering proxy: {e}"))?;
        let profile =
            std::env::temp_dir().join(format!("wayfinder-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile)
            .map_err(|e| format!("could not create a profile: {e}"))?;
        // Chromium speaks DevTools on fds 3 and 4 (`--remote-debugging-pipe`):
        // the shell hands it our stdin and stdout pipes as those, then execs it.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(&options.chromium);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-breakpad",
            "--disable-client-side-phishing-detection",
            "--disable-domain-reliability",
            "--safebrowsing-disable-auto-update",
            "--no-pings",
            "--password-store=basic",
            "--disable-quic",
            "--disable-features=MediaRouter,DialMediaRouteProvider,OptimizationHints,Translate,SafeBrowsing,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--mute-audio",
            "--blink-settings=imagesEnabled=false",
            "--renderer-process-limit=2",
            "--js-flags=--max-old-space-size=256",
            "--window-size=1280,800",
            "--remote-debugging-pipe",
            "--proxy-bypass-list=<-loopback>",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--proxy-server=http://{}", proxy.addr()))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if running_as_root() {
            // Chromium refuses to start as root with its sandbox; run the server as another user to keep it.
            cmd.arg("--no-sandbox");
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                return Err(format!("could not start {}: {e}", options.chromium));
            }
        };
        let mut browser = Browser { child, profile };
        let (Some(to), Some(from)) = (browser.child.stdin.take(), browser.child.stdout.take())
        else {
            return Err("Chromium's DevTools pipes are missing".into());
        };
        let cdp = Cdp::over_pipes(to, from, options.max_page_bytes * 2 + (1 << 20));
        // Chromium is up once it answers.
        tokio::time::timeout(
            START_TIMEOUT,
            cdp.call(None, "Browser.getVersion", json!({})),
        )
        .await
        .map_err(|_| "Chromium did not start in time".to_string())?
        .map_err(|e| format!("Chromium did not start: {e}"))?;
        let renderer = Self {
            cdp,
            proxy,
            _browser: browser,
            tabs: tokio::sync::Semaphore::new(TABS),
            timeout: options.timeout,
            max_bytes: options.max_page_bytes,
            origin: base.origin().ascii_serialization(),
            header: credentials.header.clone(),
        };
        if let Some(cookie) = &credentials.cookie {
            let cookies: Vec<Value> = cookie
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .map(|(n, v)| json!({ "name": n.trim(), "value": v.trim(), "url": base.as_str() }))
                .collect();
            renderer
                .cdp
                .call(None, "Storage.setCookies", json!({ "cookies": cookies }))
                .await?;
        }
        Ok(renderer)
    }

    /// Bytes Chromium moved through the proxy so far.
    pub fn bytes(&self) -> usize {
        self.proxy.counters().bytes.load(Ordering::Relaxed)
    }

    /// Connections the guard refused so far.
    pub fn refused(&self) -> usize {
        self.proxy.counters().refused.load(Ordering::Relaxed)
    }

    /// Renders `url` in a new tab and returns its DOM.
    pub async fn render(&self, url: &Url) -> Result<Rendered, String> {
        let _tab = self
            .tabs
            .acquire()
            .await
            .map_err(|_| "renderer closed".to_string())?;
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let result =
            tokio::time::timeout(self.timeout + SETTLE_MAX, self.render_in(&target_id, url))
                .await
                .unwrap_or_else(|_| Err("rendering timed out".into()));
        let _ = self
            .cdp
            .call(None, "Target.closeTarget", json!({ "targetId": target_id }))
            .await;
        result
    }

    async fn render_in(&self, target_id: &str, url: &Url) -> Result<Rendered, String> {
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut events = self.cdp.listen(&session, EVENT_QUEUE);
        let result = self.drive(&session, &mut events, url).await;
        self.cdp.forget(&session);
        result
    }

    async fn drive(
        &self,
        session: &str,
        events: &mut mpsc::Receiver<(String, Value)>,
        url: &Url,
    ) -> Result<Rendered, String> {
        let s = Some(session);
        self.cdp.call(s, "Page.enable", json!({})).await?;
        if self.header.is_some() {
            self.cdp
                .call(
                    s,
                    "Fetch.enable",
                    json!({ "patterns": [{ "urlPattern": format!("{}/*", self.origin) }] }),
                )
                .await?;
        }
        let nav = self
            .cdp
            .call(s, "Page.navigate", json!({ "url": url.as_str() }))
            .await?;
        if let Some(err) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("navigation failed: {err}"));
        }
        // Until the load event: answer intercepted same-origin requests.
        let loaded = tokio::time::timeout(self.timeout, async {
            while let Some((method, params)) = events.recv().await {
                match method.as_str() {
                    "Page.loadEventFired" => return true,
                    "Fetch.requestPaused" => self.continue_request(session, &params).await,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !loaded {
            tracing::debug!(url = %url, "rendering: no load event in time; reading the DOM as it is");
        }
        // Until the DOM stops changing (still answering intercepted requests).
        let settle = async {
            let mut last = -1i64;
            let mut stable = 0;
            loop {
                let count = self
                    .eval(session, "document.getElementsByTagName('*').length")
                    .await
                    .ok()
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0);
                if count == last {
                    stable += 1;
                    if stable >= 2 {
                        return;
                    }
                } else {
                    stable = 0;
                    last = count;
                }
                let pause = tokio::time::sleep(SETTLE_STEP);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        () = &mut pause => break,
                        Some((method, params)) = events.recv() => {
                            if method == "Fetch.requestPaused" {
                                self.continue_request(session, &params).await;
                            }
                        }
                    }
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_MAX, settle).await;
        let read = format!(
            "(() => {{ const h = document.documentElement ? document.documentElement.outerHTML : ''; \
             return JSON.stringify({{ u: location.href, t: document.contentType, h: h.length > {} ? null : h }}); }})()",
            self.max_bytes
        );
        let value = self.eval(session, &read).await?;
        let v: Value = serde_json::from_str(value.as_str().unwrap_or("{}"))
            .map_err(|_| "the page's DOM could not be read".to_string())?;
        if !v["t"].as_str().unwrap_or("").contains("html") {
            return Err("not an HTML page".into());
        }
        let html = v["h"]
            .as_str()
            .ok_or_else(|| format!("the rendered page is larger than {} bytes", self.max_bytes))?;
        Ok(Rendered {
            url: v["u"].as_str().unwrap_or(url.as_str()).to_string(),
            html: html.to_string(),
        })
    }

    async fn eval(&self, session: &str, expression: &str) -> Result<Value, String> {
        let r = self
            .cdp
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await?;
        if r.get("exceptionDetails").is_some() {
            return Err("the page threw while being read".into());
        }
        Ok(r["result"]["value"].clone())
    }

    /// Lets an intercepted (same-origin) request go on, with the staging header added.
    async fn continue_request(&self, session: &str, params: &Value) {
        let Some(id) = params["requestId"].as_str() else {
            return;
        };
        let same_origin = params["request"]["url"]
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .is_some_and(|u| u.origin().ascii_serialization() == self.origin);
        let mut headers: Vec<Value> = params["request"]["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| json!({ "name": k, "value": v.as_str().unwrap_or("") }))
                    .collect()
            })
            .unwrap_or_default();
        let mut body = json!({ "requestId": id });
        if same_origin && let Some((name, value)) = &self.header {
            headers.retain(|h| !h["name"].as_str().unwrap_or("").eq_ignore_ascii_case(name));
            headers.push(json!({ "name": name, "value": value }));
            body["headers"] = json!(headers);
        }
        let _ = self
            .cdp
            .call(Some(session), "Fetch.continueRequest", body)
            .await;
    }

    /// Asks Chromium to close (the drop kills it anyway).
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.cdp.call(None, "Browser.close", json!({})),
        )
        .await;
    }
}
