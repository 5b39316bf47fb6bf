//! Media types of GraphQL over HTTP, as the GraphQL-over-HTTP specification
//! (the GraphQL Foundation's draft) says.
//!
//! **Responses.** A client that accepts `application/graphql-response+json`
//! gets it: request errors then answer 400 with only `errors`. Everyone else
//! (`application/json`, `*/*`, no `Accept` at all: every client written
//! before the specification) gets `application/json`, where a well-formed
//! request's GraphQL errors answer 200. When both are acceptable the higher
//! q-value wins; at equal q the more specific range wins, and between two
//! ranges that name both types exactly the newer type wins (a wildcard alone
//! means a legacy client, so it gets `application/json`). A client that
//! accepts neither gets 406.
//!
//! **Requests.** A POST body is JSON: `application/json` (UTF-8, the only
//! charset the specification allows) or, from a browser page, `text/plain`:
//! the drop-in widget sends that because a cross-origin `fetch` with it needs
//! no CORS preflight. Browsers put an `Origin` on every POST, so `text/plain`
//! without one is a client that merely did not say what it sends (a fetch of
//! a string defaults to `text/plain`) and gets 415, as does any other type
//! and a missing `Content-Type`.

use axum::http::{HeaderMap, header};

/// The two response media types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseType {
    /// `application/graphql-response+json`: request errors are 400.
    GraphqlResponse,
    /// `application/json`: the legacy type, request errors are 200.
    Json,
}

impl ResponseType {
    /// The `Content-Type` header value.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// The response type for a request's `Accept`; `None` when it accepts neither (406).
pub fn negotiate(headers: &HeaderMap) -> Option<ResponseType> {
    let mut accept = String::new();
    for value in headers.get_all(header::ACCEPT) {
        // A header that is not text names nothing we could match.
        if let Ok(v) = value.to_str() {
            if !accept.is_empty() {
                accept.push(',');
            }
            accept.push_str(v);
        }
    }
    if accept.trim().is_empty() {
        return Some(ResponseType::Json);
    }
    let gql = preference(&accept, "application", "graphql-response+json");
    let json = preference(&accept, "application", "json");
    match (gql, json) {
        (None, None) => None,
        (Some(_), None) => Some(ResponseType::GraphqlResponse),
        (None, Some(_)) => Some(ResponseType::Json),
        (Some(g), Some(j)) => {
            if (g.q, g.specificity) > (j.q, j.specificity) {
                Some(ResponseType::GraphqlResponse)
            } else if (g.q, g.specificity) < (j.q, j.specificity) {
                Some(ResponseType::Json)
            } else if g.specificity == EXACT {
                Some(ResponseType::GraphqlResponse)
            } else {
                Some(ResponseType::Json)
            }
        }
    }
}

/// Specificity of a media range: `*/*`, `type/*`, `type/subtype`.
const EXACT: u8 = 2;

/// How much a client wants one media type: the q-value (in thousandths) and
/// specificity of the most specific range that matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Preference {
    q: u16,
    specificity: u8,
}

/// The client's preference for `ty/subtype` in `accept`, `None` when no range
/// matches it or the best match has q=0.
fn preference(accept: &str, ty: &str, subtype: &str) -> Option<Preference> {
    let mut best: Option<Preference> = None;
    for range in accept.split(',').take(64) {
        let mut parts = range.split(';');
        let Some((rt, rs)) = parts.next().and_then(|m| m.trim().split_once('/')) else {
            continue;
        };
        let (rt, rs) = (rt.trim(), rs.trim());
        let specificity = match (rt, rs) {
            ("*", "*") => 0,
            (t, "*") if t.eq_ignore_ascii_case(ty) => 1,
            (t, s) if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(subtype) => EXACT,
            _ => continue,
        };
        let mut q = 1000;
        for param in parts {
            if let Some((k, v)) = param.split_once('=')
                && k.trim().eq_ignore_ascii_case("q")
            {
                q = parse_q(v.trim()).unwrap_or(0);
            }
        }
        if best.is_none_or(|b| specificity > b.specificity) {
            best = Some(Preference { q, specificity });
        }
    }
    best.filter(|b| b.q > 0)
}

/// A q-value (`0` to `1`, at most three decimals) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let value: f32 = v.parse().ok()?;
    (0.0..=1.0)
        .contains(&value)
        .then(|| (value * 1000.0).round() as u16)
}

/// Whether a POST's `Content-Type` (and `Origin`, for `text/plain`) is one the body is read as JSON from.
pub fn is_json_request(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let known = essence.eq_ignore_ascii_case("application/json")
        || (essence.eq_ignore_ascii_case("text/plain") && headers.contains_key(header::ORIGIN));
    let utf8 = parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    known && utf8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
        h
    }

    fn accept(value: &str) -> Option<ResponseType> {
        negotiate(&with(header::ACCEPT, value))
    }

    #[test]
    fn negotiates_the_response_type() {
        use ResponseType::*;
        assert_eq!(negotiate(&HeaderMap::new()), Some(Json));
        assert_eq!(accept("application/json"), Some(Json));
        assert_eq!(accept("*/*"), Some(Json));
        assert_eq!(accept("application/*"), Some(Json));
        assert_eq!(
            accept("application/graphql-response+json"),
            Some(GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json, application/json"),
            Some(GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json;q=0.9, application/json"),
            Some(Json)
        );
        assert_eq!(
            accept("application/json;q=0.5, application/graphql-response+json"),
            Some(GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json, */*;q=0.8"),
            Some(GraphqlResponse)
        );
        assert_eq!(accept("*/*, application/json;q=0"), Some(GraphqlResponse));
        assert_eq!(accept("text/html"), None);
        assert_eq!(accept("application/xml, text/*"), None);
        assert_eq!(accept("application/json;q=0"), None);
    }

    #[test]
    fn reads_json_and_plain_text_bodies_only() {
        let ct = |v| is_json_request(&with(header::CONTENT_TYPE, v));
        assert!(ct("application/json"));
        assert!(ct("application/json; charset=utf-8"));
        assert!(ct("Application/JSON;charset=\"UTF-8\""));
        assert!(
            !ct("text/plain;charset=UTF-8"),
            "text/plain only from a page"
        );
        let mut page = with(header::CONTENT_TYPE, "text/plain;charset=UTF-8");
        page.insert(
            header::ORIGIN,
            header::HeaderValue::from_static("https://a.example"),
        );
        assert!(is_json_request(&page));
        assert!(!ct("application/json; charset=latin1"));
        assert!(!ct("application/x-www-form-urlencoded"));
        assert!(!ct("multipart/form-data; boundary=x"));
        assert!(!is_json_request(&HeaderMap::new()));
    }
}
