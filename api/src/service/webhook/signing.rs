//! Signing webhook deliveries: the per-webhook secret is derived, never
//! stored, and each request carries `HMAC-SHA256(secret, "<timestamp>.<body>")`
//! so a receiver can check both origin and freshness.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use entity::event;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::{error::AppError, secret::hex, state::State};

/// Purpose of the server-secret key that derives webhook secrets.
const SECRET_PURPOSE: &str = "webhook-secret";

/// The signing secret of webhook `id`: `hex(HMAC(server key for webhook secrets, id))`.
pub fn signing_secret(st: &State, id: Uuid) -> Result<String, AppError> {
    let token = st.secret.sign(SECRET_PURPOSE, id.as_bytes());
    let tag = token
        .rsplit_once('.')
        .and_then(|(_, tag)| URL_SAFE_NO_PAD.decode(tag).ok())
        .ok_or_else(|| AppError::internal("signed token without a tag"))?;
    Ok(hex(&tag))
}

/// `hex(HMAC-SHA256(secret, "<timestamp>.<body>"))`: the `v1=` value of `X-Wayfinder-Signature`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The JSON body POSTed for `ev`: `{id, kind, orgId, createdAt, payload}`.
pub fn event_body(ev: &event::Model) -> String {
    serde_json::json!({
        "id": ev.id,
        "kind": ev.kind,
        "orgId": ev.org_id,
        "createdAt": ev.created_at,
        "payload": ev.payload,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_timestamp_and_body() {
        let sig = signature("secret", 1_700_000_000, r#"{"a":1}"#);
        assert_eq!(sig.len(), 64);
        assert_ne!(sig, signature("secret", 1_700_000_001, r#"{"a":1}"#));
        assert_ne!(sig, signature("secret", 1_700_000_000, r#"{"a":2}"#));
        assert_ne!(sig, signature("other", 1_700_000_000, r#"{"a":1}"#));
    }
}
