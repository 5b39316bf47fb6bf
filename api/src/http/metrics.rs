//! `/metrics`: Prometheus scrapes this replica's counters here (see
//! [`crate::metrics`]). The counters show model names and volumes (never ids
//! or secrets), which is still business an org's competitor should not read,
//! so the endpoint is closed by default: with `WAYFINDER_METRICS_TOKEN` set it
//! needs `Authorization: Bearer <token>` (compared in constant time), without
//! it only a loopback peer (a scraper on the same machine) gets an answer.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::state::AppState;

/// The metrics in the OpenMetrics text format, to a caller allowed to read them.
pub async fn metrics(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !allowed(st.config.metrics_token.as_deref(), peer, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need WAYFINDER_METRICS_TOKEN as a bearer token\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::metrics().render(),
    )
        .into_response()
}

/// Whether a request from `peer` with `headers` may read the metrics.
fn allowed(token: Option<&str>, peer: SocketAddr, headers: &HeaderMap) -> bool {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return peer.ip().is_loopback();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    crate::secret::constant_time_eq(given.as_bytes(), token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_unless_local_or_token() {
        let local = SocketAddr::from(([127, 0, 0, 1], 9));
        let remote = SocketAddr::from(([203, 0, 113, 9], 9));
        let none = HeaderMap::new();
        assert!(allowed(None, local, &none));
        assert!(!allowed(None, remote, &none));
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            "Bearer s3cret"
                .parse()
                .unwrap_or(header::HeaderValue::from_static("")),
        );
        assert!(allowed(Some("s3cret"), remote, &bearer));
        assert!(
            !allowed(Some("s3cret"), local, &none),
            "a token, once set, is needed from anywhere"
        );
        assert!(!allowed(Some("other"), remote, &bearer));
    }
}
