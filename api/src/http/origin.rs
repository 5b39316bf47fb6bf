//! Which web pages may use a chat widget.
//!
//! Every public operation that names a widget (`widgetConfig`, `startTurn` and
//! `sendMessage` with a `widgetId`, `submitContact`, and the REST adapters) is
//! refused with `FORBIDDEN` (REST: 403) unless the browser's `Origin` is one of
//! the widget's `allowedOrigins`.
//!
//! CORS can't do this on its own: it only stops a browser from *reading* an
//! answer (the request has already run), and a websocket has no CORS at all.
//! And the widget is not known when the request (or the websocket upgrade)
//! arrives, only once an operation names it. So the transport attaches the
//! request's `Origin` to every GraphQL request as [`RequestOrigin`] (for a
//! websocket: the upgrade request's), and the operations check it with
//! [`check`] once they have the widget.
//!
//! The rules:
//! - no `Origin` header is allowed: browsers always send one on the requests
//!   the scripts make (POST, websocket), so its absence means a server, curl or
//!   the SDK in Node, which could send any header it likes anyway;
//! - `*` in the list allows every origin;
//! - a caller with an API key of the widget's own org may use it from anywhere
//!   (a dashboard previewing its widget);
//! - origins compare ASCII-case-insensitively, without a trailing slash, and
//!   the opaque origin `null` (sandboxed iframes, `file://`) only matches `*`.

use async_graphql::Context;
use axum::http::{HeaderMap, header};
use entity::chat_widget;
use sea_orm::EntityTrait;
use uuid::Uuid;

use crate::{
    auth::Caller, error::AppError, graphql::ContextExt, service::chat_widget::allowed_origins,
};

/// The `Origin` header of the HTTP request (or websocket upgrade) that carried
/// a GraphQL operation; `None` when there was none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOrigin(pub Option<String>);

impl RequestOrigin {
    /// The origin of a request, from its headers. A header that is not text
    /// counts as present (and matches nothing but `*`).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self(
            headers
                .get(header::ORIGIN)
                .map(|v| v.to_str().unwrap_or("null").to_owned()),
        )
    }

    /// The origin attached to the GraphQL request being resolved (none when
    /// the transport attached nothing, as for schema-level tests).
    pub fn of(ctx: &Context<'_>) -> Self {
        ctx.data_opt::<Self>().cloned().unwrap_or_default()
    }
}

/// `origin` as stored lists hold them: trimmed, lowercased, no trailing slash.
fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a request from `origin` may use a widget that allows `allowed`.
pub fn allows(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = normalise(origin);
    allowed
        .iter()
        .any(|a| a == "*" || (origin != "null" && normalise(a) == origin))
}

/// Refuses a request from `origin` by `caller` on `widget`, unless the rules
/// in the module docs let it through.
pub fn enforce(
    widget: &chat_widget::Model,
    origin: &RequestOrigin,
    caller: &Caller,
) -> Result<(), AppError> {
    if let Caller::Org(scope) = caller
        && scope.org_id() == widget.org_id
    {
        return Ok(());
    }
    if allows(&allowed_origins(widget), origin.0.as_deref()) {
        return Ok(());
    }
    Err(AppError::Forbidden(format!(
        "this widget may not be used from {}: add that origin to the widget's allowedOrigins",
        origin.0.as_deref().unwrap_or("this page")
    )))
}

/// In a resolver: refuses the operation when the request's origin may not use `widget`.
pub fn check(ctx: &Context<'_>, widget: &chat_widget::Model) -> Result<(), AppError> {
    enforce(widget, &RequestOrigin::of(ctx), &ctx.caller())
}

/// [`check`] for an operation that only has the widget's id (`startTurn`,
/// `sendMessage`, `submitContact`): loads the widget when there is an origin to
/// check. An unknown id passes here; the operation itself answers `NOT_FOUND`.
pub async fn check_widget_id(ctx: &Context<'_>, widget_id: Option<Uuid>) -> Result<(), AppError> {
    let origin = RequestOrigin::of(ctx);
    let Some(widget_id) = widget_id.filter(|_| origin.0.is_some()) else {
        return Ok(());
    };
    let st = ctx
        .state()
        .map_err(|_| AppError::internal("schema built without state"))?;
    match chat_widget::Entity::find_by_id(widget_id)
        .one(&st.db)
        .await?
    {
        Some(widget) => enforce(&widget, &origin, &ctx.caller()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn no_origin_is_allowed() {
        assert!(allows(&[], None));
        assert!(allows(&list(&["https://a.example"]), None));
    }

    #[test]
    fn listed_origins_only() {
        let allowed = list(&["https://a.example", "http://127.0.0.1:8080"]);
        assert!(allows(&allowed, Some("https://a.example")));
        assert!(allows(&allowed, Some("HTTPS://A.EXAMPLE/")));
        assert!(allows(&allowed, Some("http://127.0.0.1:8080")));
        assert!(!allows(&allowed, Some("https://b.example")));
        assert!(!allows(&allowed, Some("http://a.example")));
        assert!(!allows(&allowed, Some("https://a.example:444")));
        assert!(!allows(&allowed, Some("null")));
        assert!(!allows(&[], Some("https://a.example")));
    }

    #[test]
    fn star_allows_any_origin_even_null() {
        let allowed = list(&["*"]);
        assert!(allows(&allowed, Some("https://anything.example")));
        assert!(allows(&allowed, Some("null")));
        // A stored "null" is not a wildcard.
        assert!(!allows(&list(&["null"]), Some("null")));
    }

    #[test]
    fn origin_header_is_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(RequestOrigin::from_headers(&headers), RequestOrigin(None));
        headers.insert(
            header::ORIGIN,
            axum::http::HeaderValue::from_static("https://a.example"),
        );
        assert_eq!(
            RequestOrigin::from_headers(&headers),
            RequestOrigin(Some("https://a.example".into()))
        );
    }
}
