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
    body::Bytes,
    extract::{FromRequestParts, Request, State, ws::WebSocketUpgrade},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::json;

use crate::{
    auth::{Caller, authenticate},
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
fn api_key(headers: &HeaderMap) -> Option<&str> {
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

/// Resolves the caller; a key that is present but wrong is an error, not a public call.
async fn caller(st: &AppState, headers: &HeaderMap) -> Result<Caller, Response> {
    match api_key(headers) {
        None => Ok(Caller::Public {
            session_token: None,
        }),
        Some(key) => match authenticate(&st.db, key).await {
            Ok(scope) => Ok(Caller::Org(scope)),
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

async fn execute(st: &AppState, caller: Caller, batch: BatchRequest) -> Response {
    let batch = batch.data(caller).data(st.clone());
    GraphQLResponse::from(st.schema.execute_batch(batch).await).into_response()
}

/// `POST /graphql`: one operation or a JSON array of at most `WAYFINDER_MAX_BATCH`.
pub async fn post(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match caller(&st, &headers).await {
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
    execute(&st, caller, batch).await
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
        return match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
            Ok(ws) => super::ws::handler(State(st), ws).await,
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
    let caller = match caller(&st, &parts.headers).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    execute(&st, caller, BatchRequest::Single(request)).await
}
