//! GraphQL over HTTP: POST (single or batched JSON), GET (queries only, never
//! mutations), GraphiQL for browsers, and the websocket upgrade on the same
//! path, following the GraphQL-over-HTTP specification: the response type is
//! negotiated (`http::media`); under `application/graphql-response+json` a
//! request error (a body or parameters that are not a GraphQL request, a
//! document that does not parse or validate, variables that do not coerce)
//! is 400 with only `errors`, under `application/json` it is 200 once the
//! body is a well-formed request; an execution error is always 200 with
//! `data`. Transport errors answer in the GraphQL error shape with a `code`.

use async_graphql::{
    BatchRequest, BatchResponse, http::GraphiQLSource, parser::types::OperationType,
};
use axum::{
    extract::{FromRequestParts, Request, State, ws::WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::{Map, Value as Json, json};

use std::net::IpAddr;

use super::{
    media::{self, ResponseType},
    origin::RequestOrigin,
    rate_limit::Subject,
};
use crate::{
    auth::{self, Caller},
    error::AppError,
    graphql::operation,
    state::AppState,
};

/// `body` as a response of media type `ty`.
fn respond(status: StatusCode, ty: ResponseType, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|err| {
        tracing::error!(%err, "a GraphQL response could not be serialised");
        r#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#.to_owned()
    });
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(ty.content_type()),
    );
    response
}

/// A transport-level failure in the GraphQL error shape.
fn error(status: StatusCode, ty: ResponseType, code: &str, message: &str) -> Response {
    respond(
        status,
        ty,
        &json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }),
    )
}

/// A request refused before it ran, in the GraphQL error shape with its
/// `code` (and `retryAfter`, with a `Retry-After` header, when rate limited).
pub(crate) fn refusal(err: AppError, ty: ResponseType) -> Response {
    let status = match &err {
        AppError::RateLimited { .. } | AppError::TooManySockets { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
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
    let mut response = respond(
        status,
        ty,
        &json!({ "errors": [{ "message": message, "extensions": extensions }] }),
    );
    if let AppError::RateLimited { retry_after } = &err {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
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
    match caller {
        Caller::Public { .. } => Some(Subject::Ip(ip)),
        Caller::Org(_) | Caller::Operator(_) => caller.key_id().map(Subject::ApiKey),
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
        Some(key) => match auth::resolve(&st.db, Some(&st.keys), key).await {
            Ok(caller) => Ok(caller),
            Err(AppError::Unauthenticated(msg)) => {
                st.rate.check(Subject::Ip(ip), 1).await?;
                Err(AppError::Unauthenticated(msg))
            }
            Err(err) => Err(err),
        },
    }
}

/// Checks every operation of a request against what its caller may run, and
/// charges their root fields to the caller's budget. A refused request still
/// costs one unit (it was parsed), so refusals cannot be sent for free.
async fn admit(
    st: &AppState,
    caller: &Caller,
    ip: IpAddr,
    requests: &mut [async_graphql::Request],
) -> Result<(), AppError> {
    let mut cost: u32 = 0;
    let mut refused = None;
    for request in requests.iter_mut() {
        let units = match operation::shape(request) {
            Some(shape) => {
                if refused.is_none() {
                    refused =
                        operation::admit(caller, &shape, st.config.public_max_root_fields).err();
                }
                shape.cost()
            }
            None => 1,
        };
        cost = cost.saturating_add(units);
    }
    let cost = if refused.is_some() { 1 } else { cost };
    if let Some(subject) = budget(caller, ip) {
        st.rate.check(subject, cost).await?;
    }
    refused.map_or(Ok(()), Err)
}

/// The metrics label of an operation kind.
pub(crate) fn kind_name(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

async fn execute(
    st: &AppState,
    caller: Caller,
    origin: RequestOrigin,
    mut batch: BatchRequest,
    ty: ResponseType,
) -> Response {
    let kind = match &mut batch {
        BatchRequest::Single(request) => {
            operation::shape(request).map_or("invalid", |s| kind_name(s.kind))
        }
        BatchRequest::Batch(_) => "batch",
    };
    let labels = crate::metrics::OperationLabels {
        kind,
        transport: "http",
    };
    let started = std::time::Instant::now();
    let response = execute_batch(st, caller, origin, batch, ty).await;
    let m = crate::metrics::metrics();
    m.operations.get_or_create(&labels).inc();
    m.operation_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn execute_batch(
    st: &AppState,
    caller: Caller,
    origin: RequestOrigin,
    batch: BatchRequest,
    ty: ResponseType,
) -> Response {
    let batch = batch.data(caller).data(origin).data(st.clone());
    match st.schema.execute_batch(batch).await {
        BatchResponse::Single(response) => {
            let request_error = super::ws::is_request_error(&response);
            let status = if request_error && ty == ResponseType::GraphqlResponse {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            respond(status, ty, &GraphqlResult::of(&response))
        }
        BatchResponse::Batch(responses) => {
            let items: Vec<GraphqlResult<'_>> = responses.iter().map(GraphqlResult::of).collect();
            respond(StatusCode::OK, ty, &items)
        }
    }
}

/// One GraphQL result as sent: fields in the order the query asked for them;
/// a request error has no `data` entry at all (it never reached execution),
/// as the GraphQL specification says.
#[derive(serde::Serialize)]
struct GraphqlResult<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [async_graphql::ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, async_graphql::Value>,
}

impl<'a> GraphqlResult<'a> {
    fn of(response: &'a async_graphql::Response) -> Self {
        let request_error = super::ws::is_request_error(response);
        Self {
            data: (!request_error).then_some(&response.data),
            errors: &response.errors,
            extensions: &response.extensions,
        }
    }
}

/// Checks that `value` has the shape of a GraphQL-over-HTTP request (a map
/// with a string `query`, and an optional string `operationName`, map
/// `variables` and map `extensions`) and reads it.
fn request_of(value: Json) -> Result<async_graphql::Request, String> {
    let Json::Object(map) = value else {
        return Err("a GraphQL request is a JSON object".into());
    };
    match map.get("query") {
        Some(Json::String(_)) => {}
        None | Some(Json::Null) => return Err("the request has no 'query'".into()),
        Some(_) => return Err("'query' must be a string".into()),
    }
    let optional = |key: &str, ok: fn(&Json) -> bool, what: &str| match map.get(key) {
        None | Some(Json::Null) => Ok(()),
        Some(v) if ok(v) => Ok(()),
        Some(_) => Err(format!("'{key}' must be {what} or null")),
    };
    optional("operationName", Json::is_string, "a string")?;
    optional("variables", Json::is_object, "an object")?;
    optional("extensions", Json::is_object, "an object")?;
    let mut map: Map<String, Json> = map;
    // async-graphql reads a null map as absent only when the key is gone.
    for key in ["variables", "extensions", "operationName"] {
        if map.get(key) == Some(&Json::Null) {
            map.remove(key);
        }
    }
    serde_json::from_value(Json::Object(map)).map_err(|err| format!("not a GraphQL request: {err}"))
}

/// `POST /graphql`: one operation or a JSON array of at most `WAYFINDER_MAX_BATCH`.
pub async fn post(State(st): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = &parts.headers;
    let Some(ty) = media::negotiate(headers) else {
        return not_acceptable();
    };
    if !media::is_json_request(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ty,
            "BAD_REQUEST",
            "send the request as application/json (UTF-8)",
        );
    }
    let body = match axum::body::to_bytes(body, st.config.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                ty,
                "BAD_REQUEST",
                "the request body is too large",
            );
        }
    };
    let ip = client_ip(&st, &parts);
    let parsed = parse_body(&body, st.config.max_batch);
    let mut batch = match parsed {
        Ok(batch) => batch,
        Err(message) => return malformed(&st, ip, ty, &message).await,
    };
    let caller = match caller(&st, headers, ip).await {
        Ok(c) => c,
        Err(err) => return refusal(err, ty),
    };
    let admitted = match &mut batch {
        BatchRequest::Single(request) => {
            admit(&st, &caller, ip, std::slice::from_mut(request)).await
        }
        BatchRequest::Batch(requests) => admit(&st, &caller, ip, requests).await,
    };
    if let Err(err) = admitted {
        return refusal(err, ty);
    }
    execute(&st, caller, RequestOrigin::from_headers(headers), batch, ty).await
}

/// The requests of a POST body: one, or a batch of 1 to `max_batch`.
fn parse_body(body: &[u8], max_batch: usize) -> Result<BatchRequest, String> {
    let parsed: Json =
        serde_json::from_slice(body).map_err(|err| format!("the body is not JSON: {err}"))?;
    match parsed {
        Json::Array(items) => {
            if items.is_empty() || items.len() > max_batch {
                return Err(format!("a batch must hold 1 to {max_batch} operations"));
            }
            let requests = items
                .into_iter()
                .map(request_of)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(BatchRequest::Batch(requests))
        }
        single => request_of(single).map(BatchRequest::Single),
    }
}

/// 400 for a request that is not a GraphQL request. It still costs the
/// client's address a unit, so malformed floods are rate limited too.
async fn malformed(st: &AppState, ip: IpAddr, ty: ResponseType, message: &str) -> Response {
    if let Err(err) = st.rate.check(Subject::Ip(ip), 1).await {
        return refusal(err, ty);
    }
    error(StatusCode::BAD_REQUEST, ty, "BAD_REQUEST", message)
}

/// 406: the client accepts neither response type (answered as JSON anyway).
fn not_acceptable() -> Response {
    error(
        StatusCode::NOT_ACCEPTABLE,
        ResponseType::Json,
        "BAD_REQUEST",
        "accept application/graphql-response+json or application/json",
    )
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
            return refusal(err, ResponseType::Json);
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
    let Some(ty) = media::negotiate(&parts.headers) else {
        return not_acceptable();
    };
    if query.len() > st.config.body_limit {
        return error(
            StatusCode::URI_TOO_LONG,
            ty,
            "BAD_REQUEST",
            "the query string is too long",
        );
    }
    let mut request = match async_graphql::http::parse_query_string(query) {
        Ok(r) => r,
        Err(err) => {
            return malformed(&st, ip, ty, &format!("not a GraphQL request: {err}")).await;
        }
    };
    // GET must never change anything (links and prefetches are GETs).
    if operation::shape(&mut request).is_some_and(|s| s.kind == OperationType::Mutation) {
        if let Err(err) = st.rate.check(Subject::Ip(ip), 1).await {
            return refusal(err, ty);
        }
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            ty,
            "BAD_REQUEST",
            "mutations are only accepted over POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let caller = match caller(&st, &parts.headers, ip).await {
        Ok(c) => c,
        Err(err) => return refusal(err, ty),
    };
    if let Err(err) = admit(&st, &caller, ip, std::slice::from_mut(&mut request)).await {
        return refusal(err, ty);
    }
    let origin = RequestOrigin::from_headers(&parts.headers);
    execute(&st, caller, origin, BatchRequest::Single(request), ty).await
}
