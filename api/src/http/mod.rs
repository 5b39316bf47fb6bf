//! Non-GraphQL-resolver HTTP: the router, the GraphQL transport (POST, GET,
//! GraphiQL, graphql-ws), health checks, metrics, the drop-in scripts and demo page,
//! the REST adapters, the recorder's endpoint, and the widgets' origin checks.

pub mod assets;
pub mod client_ip;
pub mod graphql;
pub mod health;
pub mod media;
pub mod metrics;
pub mod origin;
pub mod rate_limit;
pub mod recorder;
pub mod rest;
pub mod ws;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, Request, header},
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{Any, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids that cost no system call: a counter passed through a keyed
/// permutation of 64-bit numbers (a Feistel network whose round function is
/// SipHash with random keys drawn once per router), beside a 64-bit prefix
/// hashed under the same keys, written as a UUID. The permutation keeps
/// them unique within a process, the prefix across replicas, and the key
/// keeps the counter out of sight: ids do not tell a client how many
/// requests a replica served. They are labels for logs, not secrets.
/// (`MakeRequestUuid` drew 16 random bytes from the kernel per request: a
/// `getrandom` call, ~2 % of the server's CPU on `{ __typename }`.)
#[derive(Clone, Debug)]
struct RequestIds {
    prefix: u64,
    key: std::hash::RandomState,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::BuildHasher;
        let key = std::hash::RandomState::new();
        Self {
            // The key is random per process, so the prefix drawn from it is too.
            prefix: key.hash_one("request id prefix"),
            key,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `n` under the keyed permutation: four Feistel rounds on its halves.
    fn scramble(&self, n: u64) -> u64 {
        use std::hash::BuildHasher;
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in 0u32..4 {
            let f = self.key.hash_one((round, right)) as u32;
            (left, right) = (right, left ^ f);
        }
        (u64::from(left) << 32) | u64::from(right)
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::from_u64_pair(self.prefix, self.scramble(n))
            .hyphenated()
            .encode_lower(&mut buf);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// Which of the router's layers are on. The server runs with [`Layers::ALL`];
/// the `http_layers` bench turns them off one at a time to time what each costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    /// A panicking handler answers a JSON 500 instead of dropping the connection.
    pub catch_panic: bool,
    /// Request bodies over `body_limit` are refused.
    pub body_limit: bool,
    pub cors: bool,
    /// Requests over `request_timeout_secs` answer 408.
    pub timeout: bool,
    /// `x-request-id` set (a UUID) and echoed.
    pub request_id: bool,
    /// A tracing span per request.
    pub trace: bool,
}

impl Layers {
    pub const ALL: Self = Self {
        catch_panic: true,
        body_limit: true,
        cors: true,
        timeout: true,
        request_id: true,
        trace: true,
    };
    pub const NONE: Self = Self {
        catch_panic: false,
        body_limit: false,
        cors: false,
        timeout: false,
        request_id: false,
        trace: false,
    };
}

/// Every route, with limits, CORS, request ids and tracing.
pub fn router(st: AppState) -> Router {
    router_with(st, Layers::ALL)
}

/// Every route, with the layers `on` names.
pub fn router_with(st: AppState, on: Layers) -> Router {
    let body_limit = st.config.body_limit;
    let request_timeout = Duration::from_secs(st.config.request_timeout_secs.max(1));
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            HeaderName::from_static("x-api-key"),
        ])
        .max_age(Duration::from_secs(3600));
    let mut router = Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(assets::routes())
        .merge(rest::routes())
        .merge(recorder::routes())
        .with_state(st);
    // Innermost first.
    if on.catch_panic {
        router = router.layer(CatchPanicLayer::custom(panicked));
    }
    if on.body_limit {
        router = router
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(RequestBodyLimitLayer::new(body_limit));
    }
    if on.cors {
        router = router.layer(cors);
    }
    if on.timeout {
        router = router.layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ));
    }
    if on.request_id {
        router = router.layer(PropagateRequestIdLayer::new(REQUEST_ID));
    }
    if on.trace {
        router = router.layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let request_id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id)
        }));
    }
    if on.request_id {
        router = router.layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()));
    }
    router
}

/// A handler that panicked answers a JSON `INTERNAL` error (in both the
/// GraphQL and the REST error shapes) instead of dropping the connection; the
/// panic is logged, never sent.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = detail, "a request handler panicked");
    let message = "internal error";
    (
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({
            "errors": [{ "message": message, "extensions": { "code": "INTERNAL" } }],
            "error": { "code": "INTERNAL", "message": message },
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request, routing::get};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_json_internal() {
        async fn boom() -> &'static str {
            panic!("secret detail")
        }
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(panicked));
        let Ok(response) = app
            .oneshot(
                Request::get("/boom")
                    .body(Body::empty())
                    .unwrap_or_default(),
            )
            .await;
        assert_eq!(response.status(), 500);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(json["errors"][0]["extensions"]["code"], "INTERNAL");
        assert_eq!(json["error"]["code"], "INTERNAL");
        assert!(!String::from_utf8_lossy(&body).contains("secret detail"));
    }

    #[test]
    fn request_ids_are_a_permutation_that_hides_the_count() {
        let ids = RequestIds::new();
        let firsts: std::collections::HashSet<u64> =
            (0..100_000).map(|n| ids.scramble(n)).collect();
        assert_eq!(firsts.len(), 100_000, "no two counters give one id");
        // Consecutive requests do not get neighbouring ids.
        let near = (0..1_000)
            .filter(|&n| ids.scramble(n + 1).abs_diff(ids.scramble(n)) < 1 << 40)
            .count();
        assert!(near < 5, "{near} of 1,000 consecutive ids are neighbours");
        // Another router (another key) numbers differently.
        let other = RequestIds::new();
        assert_ne!(
            (0..8).map(|n| ids.scramble(n)).collect::<Vec<_>>(),
            (0..8).map(|n| other.scramble(n)).collect::<Vec<_>>()
        );
    }
}
