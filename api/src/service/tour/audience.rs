//! Who a flow or tooltip starts by itself for: audience rules and page URL
//! patterns, checked when content is saved and evaluated on the server when
//! a page asks what to start (`visitPage`), so neither the rules nor the
//! visitor's traits ever reach the page.
//!
//! A rules document is one rule, or an array of rules that must all hold:
//!
//! - `{"all": [rule, …]}`, `{"any": [rule, …]}`, `{"not": rule}`;
//! - `{"trait": "plan", "op": "eq", "value": "pro"}`: a trait the host app
//!   passed with a verified identity (chat-extracted traits never target:
//!   anyone can type anything). `op` is one of `eq`, `neq`, `in` (value an
//!   array), `contains` (a substring of a string trait), `startsWith`,
//!   `exists`, `missing`, `gt`, `gte`, `lt`, `lte` (numbers compare as
//!   numbers, strings as strings, so ISO dates order correctly);
//! - `{"identified": true}`: the visitor signed in (a verified `userId`);
//! - `{"page": "/billing/*"}`: the page URL matches the pattern.
//!
//! A URL pattern is a path (`/projects/:id/settings`, `/docs/*`, `*` for
//! every page) or an absolute URL (then the origin must match too). `:name` matches one path
//! segment, `*` any run of characters (slashes included); the query and the
//! fragment are ignored; a trailing slash is not significant.

use serde_json::{Map, Value};

use crate::error::AppError;

/// Most conditions (leaves and groups) in one rules document.
pub const MAX_RULES: usize = 50;
/// Deepest nesting of `all` / `any` / `not`.
pub const MAX_DEPTH: usize = 4;
/// Longest URL pattern.
pub const PATTERN_MAX: usize = 500;

/// What the rules are evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Visitor<'a> {
    /// The host app's traits (from a verified identity).
    pub traits: Option<&'a Map<String, Value>>,
    /// Whether the visitor is identified.
    pub identified: bool,
    /// The page they are on (absolute URL).
    pub page_url: &'a str,
}

/// A comparison of one trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    In,
    Contains,
    StartsWith,
    Exists,
    Missing,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "neq" => Self::Neq,
            "in" => Self::In,
            "contains" => Self::Contains,
            "startswith" | "starts_with" => Self::StartsWith,
            "exists" => Self::Exists,
            "missing" => Self::Missing,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            _ => return None,
        })
    }
}

/// A checked rules document.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    All(Vec<Rule>),
    Any(Vec<Rule>),
    Not(Box<Rule>),
    Trait {
        name: String,
        op: OpBox,
        value: Value,
    },
    Identified(bool),
    Page(String),
}

/// [`Op`], kept private behind a newtype so rules can only be built by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpBox(Op);

/// Checks a rules document: its shape, its size ([`MAX_RULES`],
/// [`MAX_DEPTH`]) and its patterns. `field` names the input in errors.
pub fn parse(field: &str, v: &Value) -> Result<Rule, AppError> {
    let mut count = 0;
    parse_at(field, v, 0, &mut count)
}

fn parse_at(field: &str, v: &Value, depth: usize, count: &mut usize) -> Result<Rule, AppError> {
    let bad = |msg: &str| AppError::bad_input(field, msg.to_string());
    *count += 1;
    if *count > MAX_RULES {
        return Err(bad(&format!("at most {MAX_RULES} rules")));
    }
    if depth > MAX_DEPTH {
        return Err(bad(&format!("rules nest at most {MAX_DEPTH} deep")));
    }
    let list = |items: &Value, count: &mut usize| -> Result<Vec<Rule>, AppError> {
        items
            .as_array()
            .ok_or_else(|| bad("`all` and `any` take an array of rules"))?
            .iter()
            .map(|r| parse_at(field, r, depth + 1, count))
            .collect()
    };
    if v.is_array() {
        return Ok(Rule::All(list(v, count)?));
    }
    let o = v.as_object().ok_or_else(|| bad("a rule is an object"))?;
    if let Some(items) = o.get("all") {
        return Ok(Rule::All(list(items, count)?));
    }
    if let Some(items) = o.get("any") {
        return Ok(Rule::Any(list(items, count)?));
    }
    if let Some(inner) = o.get("not") {
        return Ok(Rule::Not(Box::new(parse_at(
            field,
            inner,
            depth + 1,
            count,
        )?)));
    }
    if let Some(b) = o.get("identified") {
        return b
            .as_bool()
            .map(Rule::Identified)
            .ok_or_else(|| bad("`identified` is true or false"));
    }
    if let Some(p) = o.get("page") {
        let p = p.as_str().ok_or_else(|| bad("`page` is a URL pattern"))?;
        return Ok(Rule::Page(pattern(field, p)?));
    }
    if let Some(name) = o.get("trait") {
        let name = name
            .as_str()
            .filter(|n| !n.is_empty() && n.len() <= super::super::identity::TRAIT_KEY_MAX)
            .ok_or_else(|| bad("`trait` is a trait name"))?;
        let op = o
            .get("op")
            .and_then(Value::as_str)
            .map_or(Some(Op::Eq), Op::parse)
            .ok_or_else(|| {
                bad("`op` is one of eq, neq, in, contains, startsWith, exists, missing, gt, gte, lt, lte")
            })?;
        let value = o.get("value").cloned().unwrap_or(Value::Null);
        if op == Op::In && !value.is_array() {
            return Err(bad("`in` takes an array `value`"));
        }
        let scalar = value.is_string() || value.is_number() || value.is_boolean();
        if !(matches!(op, Op::Exists | Op::Missing | Op::In) || scalar) {
            return Err(bad("`value` is a string, number or boolean"));
        }
        return Ok(Rule::Trait {
            name: name.to_string(),
            op: OpBox(op),
            value,
        });
    }
    Err(bad(
        "a rule has one of `all`, `any`, `not`, `trait`, `identified`, `page`",
    ))
}

/// Checks a URL pattern (see the module docs); returns it trimmed.
pub fn pattern(field: &str, p: &str) -> Result<String, AppError> {
    let p = p.trim();
    let ok = !p.is_empty()
        && p.len() <= PATTERN_MAX
        && !p.chars().any(|c| c.is_whitespace() || c.is_control())
        && (p.starts_with(['/', '*']) || p.starts_with("http://") || p.starts_with("https://"));
    if !ok {
        return Err(AppError::bad_input(
            field,
            format!(
                "a URL pattern is a path (`/docs/*`, `/projects/:id`) or an absolute URL, at most {PATTERN_MAX} characters"
            ),
        ));
    }
    Ok(p.to_string())
}

/// Whether `rule` holds for `visitor`.
pub fn holds(rule: &Rule, visitor: &Visitor<'_>) -> bool {
    match rule {
        Rule::All(rs) => rs.iter().all(|r| holds(r, visitor)),
        Rule::Any(rs) => rs.iter().any(|r| holds(r, visitor)),
        Rule::Not(r) => !holds(r, visitor),
        Rule::Identified(b) => visitor.identified == *b,
        Rule::Page(p) => url_matches(p, visitor.page_url),
        Rule::Trait { name, op, value } => {
            let have = visitor
                .traits
                .and_then(|t| t.get(name))
                .filter(|v| !v.is_null());
            compare(op.0, have, value)
        }
    }
}

fn compare(op: Op, have: Option<&Value>, want: &Value) -> bool {
    use std::cmp::Ordering;
    let order = |a: &Value, b: &Value| -> Option<Ordering> {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        }
    };
    let eq = |a: &Value, b: &Value| match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => order(a, b).map_or(a == b, Ordering::is_eq),
    };
    match (op, have) {
        (Op::Exists, h) => h.is_some(),
        (Op::Missing, h) => h.is_none(),
        (_, None) => op == Op::Neq,
        (Op::Eq, Some(h)) => eq(h, want),
        (Op::Neq, Some(h)) => !eq(h, want),
        (Op::In, Some(h)) => want.as_array().is_some_and(|a| a.iter().any(|w| eq(h, w))),
        (Op::Contains, Some(h)) => match (h.as_str(), want.as_str()) {
            (Some(h), Some(w)) => h.to_lowercase().contains(&w.to_lowercase()),
            _ => false,
        },
        (Op::StartsWith, Some(h)) => match (h.as_str(), want.as_str()) {
            (Some(h), Some(w)) => h.to_lowercase().starts_with(&w.to_lowercase()),
            _ => false,
        },
        (Op::Gt, Some(h)) => order(h, want) == Some(Ordering::Greater),
        (Op::Gte, Some(h)) => matches!(order(h, want), Some(Ordering::Greater | Ordering::Equal)),
        (Op::Lt, Some(h)) => order(h, want) == Some(Ordering::Less),
        (Op::Lte, Some(h)) => matches!(order(h, want), Some(Ordering::Less | Ordering::Equal)),
    }
}

/// `(origin, path)` of an absolute URL or a path; query and fragment dropped,
/// the trailing slash of a longer path too.
fn split(url: &str) -> (Option<String>, &str) {
    let (origin, rest) = match url.split_once("://") {
        Some((scheme, r)) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            (
                Some(format!("{scheme}://{}", &r[..end]).to_ascii_lowercase()),
                &r[end..],
            )
        }
        None => (None, url),
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    (origin, if path.is_empty() { "/" } else { path })
}

/// Whether the page `url` matches `pattern` (see the module docs).
pub fn url_matches(pattern: &str, url: &str) -> bool {
    let (p_origin, p_path) = split(pattern);
    let (u_origin, u_path) = split(url);
    if let Some(o) = p_origin
        && u_origin.as_deref() != Some(o.as_str())
    {
        return false;
    }
    glob(p_path.as_bytes(), u_path.as_bytes())
}

/// `*` any run, `:name` one segment, everything else itself. Iterative with
/// one backtrack point per `*` (the classic wildcard match), so it is linear
/// in practice and never recursive.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
            continue;
        }
        if pi < p.len() && p[pi] == b':' && (pi == 0 || p[pi - 1] == b'/') {
            // A named segment: one or more characters up to the next slash.
            let p_end = p[pi..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(p.len(), |k| pi + k);
            let s_end = s[si..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(s.len(), |k| si + k);
            if s_end > si {
                pi = p_end;
                si = s_end;
                continue;
            }
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
            continue;
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn visitor<'a>(traits: &'a Map<String, Value>, page: &'a str) -> Visitor<'a> {
        Visitor {
            traits: Some(traits),
            identified: true,
            page_url: page,
        }
    }

    #[test]
    fn patterns_match_paths_segments_and_wildcards() {
        assert!(url_matches(
            "/billing",
            "https://app.example/billing?x=1#top"
        ));
        assert!(url_matches("/billing", "https://app.example/billing/"));
        assert!(!url_matches(
            "/billing",
            "https://app.example/billing/plans"
        ));
        assert!(url_matches(
            "/billing/*",
            "https://app.example/billing/plans/pro"
        ));
        assert!(url_matches(
            "/projects/:id/settings",
            "https://a.example/projects/42/settings"
        ));
        assert!(!url_matches(
            "/projects/:id/settings",
            "https://a.example/projects/settings"
        ));
        assert!(url_matches("*", "https://a.example/anything"));
        assert!(url_matches("/", "https://a.example"));
        assert!(url_matches(
            "https://a.example/docs/*",
            "https://A.example/docs/x"
        ));
        assert!(!url_matches(
            "https://a.example/docs/*",
            "https://b.example/docs/x"
        ));
        assert!(url_matches("/a*c", "/abbbc"));
        assert!(!url_matches("/a*c", "/abbbd"));
    }

    #[test]
    fn rules_are_checked_and_bounded() {
        assert!(parse("r", &json!({"trait": "plan", "op": "eq", "value": "pro"})).is_ok());
        assert!(parse("r", &json!([{"identified": true}, {"page": "/x/*"}])).is_ok());
        assert!(parse("r", &json!({"trait": "plan", "op": "like", "value": "p"})).is_err());
        assert!(parse("r", &json!({"trait": "plan", "op": "in", "value": "p"})).is_err());
        assert!(parse("r", &json!({"page": "no-slash"})).is_err());
        assert!(parse("r", &json!({"color": "red"})).is_err());
        let many: Vec<Value> = (0..60).map(|_| json!({"identified": true})).collect();
        assert!(parse("r", &Value::Array(many)).is_err());
        let deep = json!({"not": {"not": {"not": {"not": {"not": {"identified": true}}}}}});
        assert!(parse("r", &deep).is_err());
    }

    #[test]
    fn rules_evaluate_traits_identity_and_page() {
        let traits =
            json!({"plan": "Pro", "seats": 12, "signupDate": "2026-03-01", "role": "admin"});
        let traits = traits.as_object().cloned().unwrap_or_default();
        let v = visitor(&traits, "https://app.example/billing");
        let yes = |r: Value| parse("r", &r).map(|r| holds(&r, &v)).unwrap_or(false);
        assert!(yes(json!({"trait": "plan", "value": "pro"})));
        assert!(yes(json!({"trait": "seats", "op": "gte", "value": 10})));
        assert!(!yes(json!({"trait": "seats", "op": "lt", "value": 10})));
        assert!(yes(
            json!({"trait": "signupDate", "op": "gt", "value": "2026-01-01"})
        ));
        assert!(yes(
            json!({"trait": "role", "op": "in", "value": ["owner", "admin"]})
        ));
        assert!(yes(json!({"trait": "company", "op": "missing"})));
        assert!(yes(json!({"trait": "company", "op": "neq", "value": "x"})));
        assert!(!yes(json!({"trait": "company", "op": "eq", "value": "x"})));
        assert!(yes(
            json!({"all": [{"identified": true}, {"page": "/billing"}]})
        ));
        assert!(yes(
            json!({"any": [{"page": "/nope"}, {"trait": "plan", "op": "startsWith", "value": "p"}]})
        ));
        assert!(yes(json!({"not": {"page": "/settings/*"}})));
        let anon = Visitor {
            traits: None,
            identified: false,
            page_url: "https://app.example/",
        };
        let rule =
            parse("r", &json!({"trait": "plan", "value": "pro"})).unwrap_or(Rule::All(vec![]));
        assert!(!holds(&rule, &anon));
    }
}
