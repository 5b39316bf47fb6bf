//! `/healthz`: the process is up. `/readyz`: its database (and Redis, when
//! configured) answer, so a load balancer may send traffic.

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

use crate::{pubsub::redis_ping, state::AppState};

/// Always 200 while the process serves HTTP.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// 200 when every dependency answers; 503 naming the one that doesn't.
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
                Ok(Ok(())) => "ok",
                Ok(Err(err)) => {
                    tracing::warn!(%err, "readiness: redis ping failed");
                    "unavailable"
                }
                Err(_) => "unavailable",
            }
        }
    };
    let ready = database == "ok" && redis != "unavailable";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({ "status": if ready { "ready" } else { "unavailable" }, "database": database, "redis": redis }),
        ),
    )
}
