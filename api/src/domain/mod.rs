//! Typed, validated input at the boundary.
//!
//! Each `parse` takes the GraphQL field path it validates, so a failure names
//! the field (`input.ownerEmail: not an email address`). Everything past the
//! resolvers trusts these values.

mod enums;

pub use enums::*;

use crate::error::AppError;

/// Longest name of anything (bots, sites, flows…).
pub const NAME_MAX: usize = 200;
/// Longest short text (greeting, labels, messages shown in the widget).
pub const SHORT_TEXT_MAX: usize = 2_000;
/// Longest prompt or tooltip body.
pub const LONG_TEXT_MAX: usize = 20_000;
/// Longest KB article body (about 100 pages of text).
pub const ARTICLE_BODY_MAX: usize = 200_000;
/// Longest URL.
pub const URL_MAX: usize = 2_048;

/// A trimmed string of `min..=max` characters without control characters (newlines and tabs allowed).
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, AppError> {
    let v = value.trim();
    let len = v.chars().count();
    if len < min {
        return Err(if min == 1 {
            AppError::bad_input(field, "must not be empty")
        } else {
            AppError::bad_input(field, format!("must be at least {min} characters"))
        });
    }
    if len > max {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(AppError::bad_input(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// A non-empty name of at most [`NAME_MAX`] characters.
pub fn name(field: &str, value: &str) -> Result<String, AppError> {
    text(field, value, 1, NAME_MAX)
}

/// An email address: `local@domain.tld`, at most 254 characters, no spaces.
pub fn email(field: &str, value: &str) -> Result<String, AppError> {
    let v = value.trim();
    let bad = || AppError::bad_input(field, "not an email address");
    if v.len() > 254 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = v.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || domain.len() < 3
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
        || !domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
    {
        return Err(bad());
    }
    Ok(v.to_string())
}

/// Splits an absolute `http(s)` URL into (scheme, authority, rest).
fn split_url(v: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = v.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || port.len() > 5 {
                return None;
            }
            h
        }
        _ => authority,
    };
    if host.is_empty()
        || authority.contains('@')
        || !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':' | '_'))
    {
        return None;
    }
    Some((scheme, authority, tail))
}

/// An absolute `http://` or `https://` URL of at most [`URL_MAX`] characters.
pub fn http_url(field: &str, value: &str) -> Result<String, AppError> {
    let v = value.trim();
    if v.len() > URL_MAX {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {URL_MAX} characters"),
        ));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) || split_url(v).is_none() {
        return Err(AppError::bad_input(
            field,
            "must be an absolute http:// or https:// URL",
        ));
    }
    Ok(v.to_string())
}

/// A page reference in a flow or tooltip: an absolute URL or a path starting with `/`.
pub fn page_url(field: &str, value: &str) -> Result<String, AppError> {
    let v = value.trim();
    if v.starts_with('/') {
        if v.len() > URL_MAX || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AppError::bad_input(field, "not a valid path"));
        }
        return Ok(v.to_string());
    }
    http_url(field, v)
}

/// A web origin (`https://example.com[:port]`, no path), or `*` for any origin.
pub fn origin(field: &str, value: &str) -> Result<String, AppError> {
    let v = value.trim().trim_end_matches('/');
    if v == "*" {
        return Ok(v.to_string());
    }
    match split_url(v) {
        Some((_, _, "")) if v.len() <= 300 => Ok(v.to_ascii_lowercase()),
        _ => Err(AppError::bad_input(
            field,
            "must be an origin such as https://example.com (no path), or *",
        )),
    }
}

/// A CSS colour in hex: `#rgb` or `#rrggbb`.
pub fn colour(field: &str, value: &str) -> Result<String, AppError> {
    let v = value.trim();
    let ok = v.starts_with('#')
        && (v.len() == 4 || v.len() == 7)
        && v[1..].chars().all(|c| c.is_ascii_hexdigit());
    if !ok {
        return Err(AppError::bad_input(
            field,
            "must be a hex colour like #1f6feb",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

/// A CSS selector: non-empty, at most 500 characters, one line.
pub fn selector(field: &str, value: &str) -> Result<String, AppError> {
    let v = text(field, value, 1, 500)?;
    if v.contains('\n') {
        return Err(AppError::bad_input(field, "must be one line"));
    }
    Ok(v)
}

/// The page size of a list: 1..=100, default 20.
pub fn page_size(first: Option<i32>) -> Result<u64, AppError> {
    match first {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n as u64),
        Some(_) => Err(AppError::bad_input("first", "must be between 1 and 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(email("e", "ada@example.com").is_ok());
        for bad in ["", "ada", "ada@", "@x.io", "a b@x.io", "ada@x", "ada@x..io"] {
            assert!(email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_origins() {
        assert!(http_url("u", "https://example.com/a?b#c").is_ok());
        assert!(http_url("u", "http://127.0.0.1:8080/demo").is_ok());
        for bad in [
            "ftp://x.io",
            "https://",
            "example.com",
            "https://a b.io",
            "javascript:alert(1)",
        ] {
            assert!(http_url("u", bad).is_err(), "{bad}");
        }
        assert_eq!(
            origin("o", "https://Example.com/").unwrap(),
            "https://example.com"
        );
        assert!(origin("o", "https://example.com/path").is_err());
        assert!(origin("o", "*").is_ok());
    }

    #[test]
    fn colours_and_text() {
        assert_eq!(colour("c", "#1F6FEB").unwrap(), "#1f6feb");
        assert!(colour("c", "red").is_err());
        assert!(name("n", "  ").is_err());
        assert!(name("n", &"x".repeat(NAME_MAX + 1)).is_err());
        assert!(text("t", "a\u{0}b", 0, 10).is_err());
    }
}
