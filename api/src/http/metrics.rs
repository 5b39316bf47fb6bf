//! `/metrics`: Prometheus scrapes this replica's counters here (see
//! [`crate::metrics`]). Unauthenticated, like `/readyz`: keep it off the
//! public internet at the reverse proxy (it shows model names and volumes,
//! never ids or secrets).

use axum::{http::header, response::IntoResponse};

/// The metrics in the OpenMetrics text format.
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::metrics().render(),
    )
}
