//! GraphQL over HTTP: POST (single or batched JSON), GET (queries only, never
//! mutations), GraphiQL for browsers, and the websocket upgrade on the same
//! path. Transport errors answer in the GraphQL error shape with a `code`.

use async_graphql::{
    BatchRequest,
    http::GraphiQLSource,
    parser::{parse_query, types::OperationType},
};
use async_graphql_axum::GraphQLResponse;
use axum::{
    Json,
    extract::{FromRequestParts, Request, State, ws::WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::json;

use super::origin::RequestOrigin;
use crate::{
    auth::{self, Caller},
    error::AppError,
    state::AppState,
};

/// A transport-level failure in the GraphQL error shape.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })),
    )
        .into_response()
}

/// The API key from `x-api-key` or `Authorization: Bearer`, if any.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

/// The client's IP for rate limiting (the TCP peer; proxies are not trusted).
pub fn client_key(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// 429 when the public caller at `key` is over its rate.
pub async fn limit_public(st: &AppState, key: &str) -> Result<(), Response> {
    if st.rate.allow(key).await {
        Ok(())
    } else {
        Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests; try again in a minute",
        ))
    }
}

/// Resolves the caller; a key that is present but wrong is an error, not a public call.
async fn caller(
    st: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<Caller, Response> {
    match api_key(headers) {
        None => {
            limit_public(st, &client_key(extensions)).await?;
            Ok(Caller::Public {
                session_token: None,
            })
        }
        Some(key) => match auth::resolve(&st.db, key).await {
            Ok(caller) => Ok(caller),
            Err(AppError::Unauthenticated(msg)) => {
                Err(error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", msg))
            }
            Err(err) => {
                tracing::error!(%err, "authentication failed");
                Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "INTERNAL",
                    "internal error",
                ))
            }
        },
    }
}

async fn execute(
    st: &AppState,
    caller: Caller,
    origin: RequestOrigin,
    batch: BatchRequest,
) -> Response {
    let batch = batch.data(caller).data(origin).data(st.clone());
    GraphQLResponse::from(st.schema.execute_batch(batch).await).into_response()
}

/// `POST /graphql`: one operation or a JSON array of at most `WAYFINDER_MAX_BATCH`.
pub async fn post(State(st): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, st.config.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BAD_REQUEST",
                "the request body is too large",
            );
        }
    };
    let headers = &parts.headers;
    let caller = match caller(&st, headers, &parts.extensions).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    // Decide single vs batch by the first byte: serde would also read a JSON
    // array as a (defaulted) single request.
    let is_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if is_batch {
        serde_json::from_slice::<Vec<async_graphql::Request>>(&body).map(BatchRequest::Batch)
    } else {
        serde_json::from_slice::<async_graphql::Request>(&body).map(BatchRequest::Single)
    };
    let batch = match parsed {
        Ok(b) => b,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("the body is not a GraphQL request: {err}"),
            );
        }
    };
    if let BatchRequest::Batch(items) = &batch
        && (items.is_empty() || items.len() > st.config.max_batch)
    {
        {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("a batch must hold 1 to {} operations", st.config.max_batch),
            );
        }
    }
    execute(&st, caller, RequestOrigin::from_headers(headers), batch).await
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql`: graphql-ws upgrade, GraphiQL for a browser, or a query in the URL.
pub async fn get(State(st): State<AppState>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    if is_websocket(&parts.headers) {
        if api_key(&parts.headers).is_none()
            && let Err(resp) = limit_public(&st, &client_key(&parts.extensions)).await
        {
            return resp;
        }
        return match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
            Ok(ws) => {
                let origin = RequestOrigin::from_headers(&parts.headers);
                super::ws::handler(State(st), ws, origin).await
            }
            Err(rejection) => rejection.into_response(),
        };
    }
    let query = parts.uri.query().unwrap_or("");
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if query.is_empty() || (wants_html && !query.contains("query=")) {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .title("Wayfinder GraphiQL")
                .finish(),
        )
        .into_response();
    }
    if query.len() > st.config.body_limit {
        return error(
            StatusCode::URI_TOO_LONG,
            "BAD_REQUEST",
            "the query string is too long",
        );
    }
    let request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("not a GraphQL request: {err}"),
            );
        }
    };
    // GET must never change anything (links and prefetches are GETs).
    if let Ok(doc) = parse_query(&request.query) {
        let is_mutation = doc.operations.iter().any(|(name, op)| {
            op.node.ty == OperationType::Mutation
                && (request.operation_name.is_none()
                    || name.map(|n| n.as_str()) == request.operation_name.as_deref())
        });
        if is_mutation {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "mutations are only accepted over POST",
            );
        }
    }
    let caller = match caller(&st, &parts.headers, &parts.extensions).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let origin = RequestOrigin::from_headers(&parts.headers);
    execute(&st, caller, origin, BatchRequest::Single(request)).await
}
