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

use std::net::IpAddr;

use super::{origin::RequestOrigin, rate_limit::Subject};
use crate::{
    auth::{Caller, authenticate},
    error::AppError,
    graphql::operation,
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

/// A request refused before it ran, in the GraphQL error shape with its
/// `code` (and `retryAfter`, with a `Retry-After` header, when rate limited).
pub(crate) fn refusal(err: AppError) -> Response {
    let status = match &err {
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        AppError::Internal(cause) => {
            tracing::error!(%cause, "request refused: internal error");
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let mut extensions = json!({ "code": err.code() });
    if let AppError::RateLimited { retry_after } = &err {
        extensions["retryAfter"] = json!(retry_after);
    }
    let message = match &err {
        AppError::Internal(_) => "internal error".to_string(),
        other => other.to_string(),
    };
    let mut response = (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": extensions }] })),
    )
        .into_response();
    if let AppError::RateLimited { retry_after } = &err {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(*retry_after));
    }
    response
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

/// The client's address for rate limits (see `http::client_ip`).
pub fn client_ip(st: &AppState, parts: &axum::http::request::Parts) -> IpAddr {
    super::client_ip::client_ip(
        &parts.headers,
        super::client_ip::peer(&parts.extensions),
        st.config.trusted_proxies,
    )
}

/// The budget a caller's operations are charged to: its IP when public, its
/// key when it has one (the operator's shell has neither).
pub fn budget(caller: &Caller, ip: IpAddr) -> Option<Subject> {
    if let Caller::Public { .. } = caller {
        Some(Subject::Ip(ip))
    } else if let Caller::Org(scope) = caller {
        scope.api_key_id().map(Subject::ApiKey)
    } else {
        None
    }
}

/// Resolves the caller; a key that is present but wrong is an error, not a
/// public call, and costs the client's address one unit (so guessing keys is
/// rate limited like everything else).
pub(crate) async fn caller(
    st: &AppState,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Caller, AppError> {
    match api_key(headers) {
        None => Ok(Caller::Public {
            session_token: None,
        }),
        Some(key) => match authenticate(&st.db, key).await {
            Ok(scope) => Ok(Caller::Org(scope)),
            Err(AppError::Unauthenticated(msg)) => {
                st.rate.check(Subject::Ip(ip), 1).await?;
                Err(AppError::Unauthenticated(msg))
            }
            Err(err) => Err(err),
        },
    }
}

/// Checks every operation of a request against what its caller may run, and
/// charges their root fields to the caller's budget.
async fn admit(
    st: &AppState,
    caller: &Caller,
    ip: IpAddr,
    requests: &mut [async_graphql::Request],
) -> Result<(), AppError> {
    let mut cost: u32 = 0;
    for request in requests.iter_mut() {
        let units = match operation::shape(request) {
            Some(shape) => {
                operation::admit(caller, &shape, st.config.public_max_root_fields)?;
                shape.cost()
            }
            None => 1,
        };
        cost = cost.saturating_add(units);
    }
    match budget(caller, ip) {
        Some(subject) => st.rate.check(subject, cost).await,
        None => Ok(()),
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
    let ip = client_ip(&st, &parts);
    let caller = match caller(&st, headers, ip).await {
        Ok(c) => c,
        Err(err) => return refusal(err),
    };
    // Decide single vs batch by the first byte: serde would also read a JSON
    // array as a (defaulted) single request.
    let is_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let parsed = if is_batch {
        serde_json::from_slice::<Vec<async_graphql::Request>>(&body).map(BatchRequest::Batch)
    } else {
        serde_json::from_slice::<async_graphql::Request>(&body).map(BatchRequest::Single)
    };
    let mut batch = match parsed {
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
    let admitted = match &mut batch {
        BatchRequest::Single(request) => {
            admit(&st, &caller, ip, std::slice::from_mut(request)).await
        }
        BatchRequest::Batch(requests) => admit(&st, &caller, ip, requests).await,
    };
    if let Err(err) = admitted {
        return refusal(err);
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
    let ip = client_ip(&st, &parts);
    if is_websocket(&parts.headers) {
        // Every upgrade costs its address, whatever headers it carries: the
        // socket decides who is calling only at `connection_init`.
        if let Err(err) = st.rate.check(Subject::Ip(ip), 1).await {
            return refusal(err);
        }
        return match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
            Ok(ws) => {
                let origin = RequestOrigin::from_headers(&parts.headers);
                super::ws::handler(State(st), ws, origin, ip).await
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
    let mut request = match async_graphql::http::parse_query_string(query) {
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
    let caller = match caller(&st, &parts.headers, ip).await {
        Ok(c) => c,
        Err(err) => return refusal(err),
    };
    if let Err(err) = admit(&st, &caller, ip, std::slice::from_mut(&mut request)).await {
        return refusal(err);
    }
    let origin = RequestOrigin::from_headers(&parts.headers);
    execute(&st, caller, origin, BatchRequest::Single(request)).await
}
