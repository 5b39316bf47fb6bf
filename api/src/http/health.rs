//! `/healthz`: the process is up. `/readyz`: its database (and Redis, when
//! configured) answer, so a load balancer may send traffic.
//!
//! A replica whose Redis is down is **degraded**, not unready: `200` with
//! `"status": "degraded"`. It still serves every request and its own
//! subscribers (turns run, events are stored, rate limits fall back to
//! memory); only fan-out from other replicas pauses, and subscribers re-read
//! the store when Redis is back. Taking every replica out of rotation
//! because their shared Redis blinked would turn a degradation into an
//! outage. A database that does not answer is `503`.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::{pubsub::redis_ping, state::AppState};

/// Always 200 while the process serves HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 `ready` when every dependency answers, 200 `degraded` when only Redis
/// (or this replica's subscription to it) is down, 503 when the database is.
pub async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let database = match st.db.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(%err, "readiness: database ping failed");
            "unavailable"
        }
    };
    let redis = match &st.redis {
        None => "not configured",
        Some(conn) => {
            let mut conn = conn.clone();
            match tokio::time::timeout(std::time::Duration::from_secs(2), redis_ping(&mut conn))
                .await
            {
                Ok(Ok(())) if st.bus.connected() => "ok",
                Ok(Ok(())) => "unavailable",
                Ok(Err(err)) => {
                    tracing::warn!(%err, "readiness: redis ping failed");
                    "unavailable"
                }
                Err(_) => "unavailable",
            }
        }
    };
    let (code, status) = match (database, redis) {
        ("ok", "unavailable") => (StatusCode::OK, "degraded"),
        ("ok", _) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    (
        code,
        Json(json!({ "status": status, "database": database, "redis": redis })),
    )
}
