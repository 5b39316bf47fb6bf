//! The drop-in scripts and the demo page: `GET /chat.js`, `GET /widget.js`,
//! `GET /tour.js` (the walkthrough runtime, which `chat.js` loads when a flow
//! is to be shown), `GET /recorder.js` (records a site's map in an org
//! member's browser; never loaded by `chat.js`), `GET /demo`.
//!
//! The scripts are the checked-in minified files of `api/assets/` (built from
//! `api/assets/src/` by `api/assets/build.mjs`), embedded in the binary, so
//! building the server never needs Node. Each is served with a content-hash
//! `ETag` (a `304` for a matching `If-None-Match`) and:
//! - at `?v=<its hash>` (what the demo page links to), `Cache-Control:
//!   immutable` for a year: a new build has a new hash, so a new URL;
//! - at the plain URL (what customers paste into their pages), five minutes,
//!   then a cheap revalidation: a deploy reaches every page within minutes.
//!
//! Responses are compressed (brotli or gzip, as the browser asks); the `ETag`
//! is weak (`W/"…"`) because it names the content, not one encoding of it.
//!
//! The demo page binds both scripts to the demo org's first published widget,
//! found in the database on each request through the demo org's stored id
//! (`service::demo::widget`), never by the org's name, which any org can take.

use std::sync::LazyLock;

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use sha2::{Digest, Sha256};
use tower_http::compression::CompressionLayer;
use uuid::Uuid;

use crate::{service, state::AppState};

/// For `?v=<hash>` URLs: the content never changes under that URL.
const CACHE_VERSIONED: &str = "public, max-age=31536000, immutable";
/// For plain URLs: short, so a new release reaches embedding pages quickly.
const CACHE_SHORT: &str = "public, max-age=300";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One embedded script and its validators.
pub struct Script {
    body: &'static [u8],
    /// First 16 hex digits of the body's SHA-256: the `?v=` of versioned URLs.
    version: String,
    etag: HeaderValue,
}

impl Script {
    fn new(body: &'static [u8]) -> Self {
        let digest = Sha256::digest(body);
        let version: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::from_str(&format!("W/\"{version}\""))
            .unwrap_or(HeaderValue::from_static("W/\"0\""));
        Self {
            body,
            version,
            etag,
        }
    }

    /// The content hash used in versioned URLs.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The minified script as served (without content encoding).
    pub fn body(&self) -> &'static [u8] {
        self.body
    }
}

/// `chat.js`: the bubble and chat panel.
pub static CHAT_JS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_bytes!("../../assets/chat.min.js")));
/// `widget.js`: the contact form.
pub static WIDGET_JS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_bytes!("../../assets/widget.min.js")));

/// `tour.js`: the walkthrough runtime (flows and tooltips on the page).
pub static TOUR_JS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_bytes!("../../assets/tour.min.js")));

/// `recorder.js`: records pages of a site's app map in an org member's browser (`startSiteRecording`).
pub static RECORDER_JS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_bytes!("../../assets/recorder.min.js")));

const DEMO_HTML: &str = include_str!("../../assets/demo.html");

/// The script and page routes, compressed.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat.js", get(chat_js))
        .route("/widget.js", get(widget_js))
        .route("/tour.js", get(tour_js))
        .route("/recorder.js", get(recorder_js))
        .route("/demo", get(demo))
        .layer(CompressionLayer::new())
}

async fn chat_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    serve(&CHAT_JS, &headers, query.as_deref())
}

async fn widget_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    serve(&WIDGET_JS, &headers, query.as_deref())
}

async fn tour_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    serve(&TOUR_JS, &headers, query.as_deref())
}

async fn recorder_js(headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    serve(&RECORDER_JS, &headers, query.as_deref())
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for it).
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag.to_str().unwrap_or_default());
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

fn serve(script: &Script, headers: &HeaderMap, query: Option<&str>) -> Response {
    let versioned = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.strip_prefix("v=") == Some(script.version.as_str()))
    });
    let cache = if versioned {
        CACHE_VERSIONED
    } else {
        CACHE_SHORT
    };
    let mut response = if not_modified(headers, &script.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, JAVASCRIPT)], script.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, script.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Pages that isolate themselves (COEP: require-corp) may still load it.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// The demo page for `widget_id`, linking the scripts by versioned URL.
pub fn demo_page(widget_id: Uuid) -> String {
    DEMO_HTML
        .replace("{{WIDGET_ID}}", &widget_id.to_string())
        .replace("{{CHAT_JS}}", &format!("chat.js?v={}", CHAT_JS.version()))
        .replace(
            "{{WIDGET_JS}}",
            &format!("widget.js?v={}", WIDGET_JS.version()),
        )
        .replace("{{TOUR_JS}}", &format!("tour.js?v={}", TOUR_JS.version()))
}

/// `GET /demo`: a fake product page with the chat bubble and the contact form.
async fn demo(State(st): State<AppState>) -> Response {
    let (status, body) = match service::demo::widget(&st.db).await {
        Ok(Some(id)) => (StatusCode::OK, demo_page(id)),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "<!doctype html><title>No demo</title><p>This server has no demo: it seeds one \
             (the org \"Wayfinder Demo\") only into an empty database, and not with \
             <code>--no-demo</code>."
                .to_owned(),
        ),
        Err(err) => {
            tracing::error!(%err, "demo page: database failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "<!doctype html><title>Demo unavailable</title><p>The demo is unavailable \
                 right now; try again in a moment."
                    .to_owned(),
            )
        }
    };
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly_and_in_lists() {
        let etag = HeaderValue::from_static("W/\"abc\"");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            h
        };
        assert!(not_modified(&with("W/\"abc\""), &etag));
        assert!(not_modified(&with("\"abc\""), &etag));
        assert!(not_modified(&with("\"x\", W/\"abc\""), &etag));
        assert!(not_modified(&with("*"), &etag));
        assert!(!not_modified(&with("\"abcd\""), &etag));
        assert!(!not_modified(&HeaderMap::new(), &etag));
    }

    #[test]
    fn versions_are_content_hashes() {
        assert_eq!(CHAT_JS.version().len(), 16);
        assert_ne!(CHAT_JS.version(), WIDGET_JS.version());
        assert_ne!(CHAT_JS.version(), TOUR_JS.version());
        let page = demo_page(Uuid::nil());
        assert!(page.contains(&format!("chat.js?v={}", CHAT_JS.version())));
        assert!(page.contains(&format!("tour.js?v={}", TOUR_JS.version())));
        assert!(!page.contains("{{"));
    }
}
