//! The drop-in scripts and the demo page: size budgets, content types,
//! caching (content-hash `ETag`, `304`, versioned URLs), compression; and the
//! JavaScript suite (`tests/browser/run.mjs`: headless Chromium on the demo
//! page and hostile pages, the SDK's tests, every client example) against a
//! server with the demo seeded.
//!
//! The JavaScript suite needs Node, `npm ci` in tests/browser and Debian's
//! Chromium. Without them it is skipped, unless `WAYFINDER_BROWSER_TESTS=1`
//! (set by `.ci/run`, which installs them): then missing tools fail the test.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header};
use uuid::Uuid;
use wayfinder::startup::App;

use crate::helpers::*;

/// Minified `chat.js` must be under this many bytes ("under 6 KB", read strictly).
const CHAT_BUDGET: usize = 6000;
/// Minified `widget.js` must be under this many bytes.
const WIDGET_BUDGET: usize = 4000;
/// Minified `tour.js` must be under this many bytes.
const TOUR_BUDGET: usize = 6000;
/// Minified `recorder.js` (loaded only while recording a site's map) must be under this many bytes.
const RECORDER_BUDGET: usize = 8000;
/// Longest the JavaScript suite may run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// A server whose database was seeded with the demo, and what the demo printed.
struct DemoServer {
    address: String,
    api_key: String,
    widget_id: Uuid,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    // Dropped after the server was told to stop.
    _db: TestDatabase,
}

impl Drop for DemoServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A server on SQLite with the demo seeded and a short contact-form fill time.
async fn spawn_demo() -> DemoServer {
    let db = TestDatabase::create(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.demo = true;
    config.contact_min_fill_ms = 500;
    // The JavaScript suite makes many public calls from one address.
    config.public_rate_limit = 0;
    config.widget_rate_limit = 0;
    let mut app = App::build(config).await.expect("app builds");
    let demo = app.demo.take().expect("an empty database gets the demo");
    let address = format!("http://{}", app.addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    DemoServer {
        address,
        api_key: demo.api_key,
        widget_id: demo.widget_id,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        _db: db,
    }
}

impl DemoServer {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.client.get(format!("{}{path}", self.address));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

impl DemoServer {
    /// `widgetConfig` of the demo widget, asked by a page of `origin`.
    async fn widget_config_from(&self, origin: &str) -> serde_json::Value {
        self.client
            .post(format!("{}/graphql", self.address))
            .header("origin", origin)
            .json(&serde_json::json!({
                "query": "query($w: UUID!) { widgetConfig(widgetId: $w) { personaName } }",
                "variables": { "w": self.widget_id },
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn header_str(resp: &reqwest::Response, name: header::HeaderName) -> String {
    resp.headers()
        .get(&name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_within_budget_and_served_as_javascript() {
    let app = spawn_demo().await;
    for (path, budget) in [
        ("/chat.js", CHAT_BUDGET),
        ("/widget.js", WIDGET_BUDGET),
        ("/tour.js", TOUR_BUDGET),
        ("/recorder.js", RECORDER_BUDGET),
    ] {
        let plain = app.get(path, &[]).await;
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(
            header_str(&plain, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header_str(&plain, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let size = plain.bytes().await.unwrap().len();
        assert!(
            size < budget,
            "{path} is {size} bytes minified: over its {budget}-byte budget"
        );

        let mut compressed = vec![];
        for encoding in ["gzip", "br"] {
            let resp = app.get(path, &[("accept-encoding", encoding)]).await;
            assert_eq!(
                header_str(&resp, header::CONTENT_ENCODING),
                encoding,
                "{path}"
            );
            assert!(header_str(&resp, header::VARY).contains("accept-encoding"));
            let n = resp.bytes().await.unwrap().len();
            assert!(n < size * 2 / 3, "{path} {encoding}: {n} of {size} bytes");
            compressed.push(format!("{encoding} {n}"));
        }
        println!("{path}: {size} bytes minified, {}", compressed.join(", "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_have_content_hash_etags_and_versioned_urls() {
    let app = spawn_demo().await;
    let first = app.get("/chat.js", &[]).await;
    let etag = header_str(&first, header::ETAG);
    assert!(etag.starts_with("W/\"") && etag.len() == 4 + 16, "{etag}");
    assert_eq!(
        header_str(&first, header::CACHE_CONTROL),
        "public, max-age=300"
    );
    let version = &etag[3..19];

    // Revalidation: 304 without a body, same validators.
    let again = app.get("/chat.js", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header_str(&again, header::ETAG), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let listed = format!("\"nope\", {etag}");
    assert_eq!(
        app.get("/chat.js", &[("if-none-match", &listed)])
            .await
            .status(),
        StatusCode::NOT_MODIFIED
    );
    let other = app
        .get("/chat.js", &[("if-none-match", "W/\"0000\"")])
        .await;
    assert_eq!(other.status(), StatusCode::OK);

    // The versioned URL is cached for good; a stale version only briefly.
    let versioned = app.get(&format!("/chat.js?v={version}"), &[]).await;
    assert_eq!(
        header_str(&versioned, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let stale = app.get("/chat.js?v=0123456789abcdef", &[]).await;
    assert_eq!(
        header_str(&stale, header::CACHE_CONTROL),
        "public, max-age=300"
    );

    // Each script has its own hash.
    let widget = app.get("/widget.js", &[]).await;
    assert_eq!(widget.status(), StatusCode::OK);
    let widget_etag = header_str(&widget, header::ETAG);
    assert!(!widget_etag.is_empty(), "widget.js has an ETag");
    assert_ne!(widget_etag, etag);
    let tour = app.get("/tour.js", &[]).await;
    assert_eq!(tour.status(), StatusCode::OK);
    let tour_etag = header_str(&tour, header::ETAG);
    assert!(
        tour_etag.starts_with("W/\"") && tour_etag != etag,
        "{tour_etag}"
    );
    let version = &tour_etag[3..19];
    let versioned = app.get(&format!("/tour.js?v={version}"), &[]).await;
    assert_eq!(
        header_str(&versioned, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    let again = app.get("/tour.js", &[("if-none-match", &tour_etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_binds_both_scripts_to_the_demo_widget() {
    let app = spawn_demo().await;
    let resp = app.get("/demo", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(header_str(&resp, header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header_str(&resp, header::CACHE_CONTROL), "no-cache");
    let html = resp.text().await.unwrap();
    let chat_etag = header_str(&app.get("/chat.js", &[]).await, header::ETAG);
    assert!(html.contains(&format!("data-widget-id=\"{}\"", app.widget_id)));
    assert!(html.contains(&format!("data-widget=\"{}\"", app.widget_id)));
    assert!(html.contains(&format!("src=\"chat.js?v={}\"", &chat_etag[3..19])));
    assert!(html.contains("src=\"widget.js?v="));
    assert!(html.contains("src=\"tour.js?v="));

    // The demo widget answers pages of the server's own origin, and no other.
    let own = app.widget_config_from(&app.address).await;
    assert_eq!(
        own["data"]["widgetConfig"]["personaName"], "Wayfinder Guide",
        "{own}"
    );
    let foreign = app.widget_config_from("https://elsewhere.example").await;
    assert_eq!(error_code(&foreign), Some("FORBIDDEN"), "{foreign}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_is_404_without_the_demo() {
    let app = spawn_app(Backend::Sqlite).await;
    let resp = app
        .client
        .get(format!("{}/demo", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("no demo"));
}

/// The repository root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Why the JavaScript suite can't run here, if it can't; and whether the browser part can.
fn suite_missing(root: &Path) -> (Vec<String>, bool) {
    let mut missing = vec![];
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node {
        missing.push("node (Node.js 20+) on PATH".to_owned());
    }
    let modules = root.join("tests/browser/node_modules");
    for package in ["playwright-core", "ws", "terser"] {
        if !modules.join(package).is_dir() {
            missing.push(format!(
                "tests/browser/node_modules/{package} (npm ci in tests/browser)"
            ));
        }
    }
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let has_browser = Path::new(&chromium).exists();
    (missing, has_browser)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_suite_passes_against_the_demo() {
    let required = std::env::var("WAYFINDER_BROWSER_TESTS").is_ok_and(|v| v == "1");
    let root = repo_root();
    let (missing, has_browser) = suite_missing(&root);
    if !missing.is_empty() || (required && !has_browser) {
        let mut all = missing;
        if !has_browser {
            all.push("Debian's chromium (apt-get install chromium)".to_owned());
        }
        assert!(
            !required,
            "WAYFINDER_BROWSER_TESTS=1 but the JavaScript suite can't run; missing: {}",
            all.join(", ")
        );
        eprintln!(
            "skipping the JavaScript suite (set WAYFINDER_BROWSER_TESTS=1 to require it); missing: {}",
            all.join(", ")
        );
        return;
    }

    let app = spawn_demo().await;
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/browser/run.mjs"))
        .arg(&app.address)
        .current_dir(&root)
        .env("WAYFINDER_API_KEY", &app.api_key)
        .env("WAYFINDER_WIDGET_ID", app.widget_id.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !has_browser {
        eprintln!("no chromium: running the JavaScript suite without the browser tests");
        command.arg("--no-browser");
    }
    // The server runs on this test's runtime: wait for node on a blocking thread.
    let output = tokio::task::spawn_blocking(move || {
        let child = command.spawn().expect("node starts");
        let id = child.id();
        let deadline = Instant::now() + SUITE_TIMEOUT;
        let waiter = std::thread::spawn(move || child.wait_with_output());
        while !waiter.is_finished() {
            if Instant::now() > deadline {
                // Ends the one process this test started (node), by its id.
                let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        waiter.join().expect("waiter thread")
    })
    .await
    .unwrap()
    .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "tests/browser/run.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
