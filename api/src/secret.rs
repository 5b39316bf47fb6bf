//! The server secret and everything derived from it: signed tokens (session
//! tokens, contact challenges) and API and operator key hashing.
//!
//! One root secret, never used directly: each purpose gets its own key,
//! `HMAC-SHA256(root, purpose)`, so a token minted for one purpose can never
//! verify for another.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Shortest accepted `WAYFINDER_SECRET`.
pub const MIN_SECRET_LEN: usize = 32;

/// The root secret. `Debug` never prints it.
#[derive(Clone)]
pub struct ServerSecret {
    root: Vec<u8>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(…)")
    }
}

/// Why the secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("WAYFINDER_SECRET must be at least {MIN_SECRET_LEN} characters")]
    TooShort,
    #[error("secret file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no randomness available: {0}")]
    Random(String),
}

impl ServerSecret {
    /// Uses `configured` when set; otherwise reads, or creates, `data_dir/secret.key`.
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(s) = configured {
            if s.len() < MIN_SECRET_LEN {
                return Err(SecretError::TooShort);
            }
            return Ok(Self {
                root: s.as_bytes().to_vec(),
            });
        }
        let path = data_dir.join("secret.key");
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Ok(existing) = std::fs::read_to_string(&path) {
            let existing = existing.trim();
            if existing.len() >= MIN_SECRET_LEN {
                return Ok(Self {
                    root: existing.as_bytes().to_vec(),
                });
            }
        }
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let generated = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        write_private(&path, &generated).map_err(io)?;
        tracing::warn!(
            path = %path.display(),
            "generated a local secret; production deployments should set WAYFINDER_SECRET"
        );
        Ok(Self {
            root: generated.into_bytes(),
        })
    }

    /// A secret from raw bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self {
            root: bytes.to_vec(),
        }
    }

    fn mac(&self, purpose: &str) -> HmacSha256 {
        let mut derive = hmac_with(&self.root);
        derive.update(purpose.as_bytes());
        hmac_with(&derive.finalize().into_bytes())
    }

    /// `payload.tag`, both base64url: a token only this server can mint for `purpose`.
    pub fn sign(&self, purpose: &str, payload: &[u8]) -> String {
        let mut mac = self.mac(purpose);
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The payload of a token minted by [`Self::sign`] for the same purpose; `None` if forged or malformed.
    pub fn verify(&self, purpose: &str, token: &str) -> Option<Vec<u8>> {
        if token.len() > 4096 {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac(purpose);
        mac.update(&payload);
        mac.verify_slice(&tag).ok()?;
        Some(payload)
    }
}

fn hmac_with(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

impl ServerSecret {
    fn seal_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = self.mac(&format!("seal:{purpose}"));
        mac.update(b"key");
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes()[..32]);
        key
    }

    /// Encrypts `plaintext` for storage (ChaCha20-Poly1305, random nonce),
    /// bound to `aad` (e.g. the owning org's id) so it can't be moved to another row.
    pub fn seal(&self, purpose: &str, aad: &[u8], plaintext: &[u8]) -> Result<String, SecretError> {
        use chacha20poly1305::{
            ChaCha20Poly1305, KeyInit, Nonce,
            aead::{Aead, Payload},
        };
        let cipher = ChaCha20Poly1305::new_from_slice(&self.seal_key(purpose))
            .map_err(|_| SecretError::Random("bad key length".into()))?;
        let nonce_bytes = random_bytes::<12>()?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SecretError::Random("encryption failed".into()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("v1.{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts what [`Self::seal`] made with the same purpose and `aad`; `None` if tampered or foreign.
    pub fn open(&self, purpose: &str, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
        use chacha20poly1305::{
            ChaCha20Poly1305, KeyInit, Nonce,
            aead::{Aead, Payload},
        };
        let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix("v1.")?).ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, body) = raw.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        let cipher = ChaCha20Poly1305::new_from_slice(&self.seal_key(purpose)).ok()?;
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
            .ok()
    }
}

/// What an optional secret prints as in a hand-written `Debug`: whether it is
/// there, never what it is.
pub fn redacted<T>(value: &Option<T>) -> Option<&'static str> {
    value.as_ref().map(|_| "<redacted>")
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(buf)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// The prefix every API key starts with.
pub const API_KEY_PREFIX: &str = "wf_live_";
/// The prefix every operator key starts with: never confused with an org's key.
pub const OPERATOR_KEY_PREFIX: &str = "wf_op_";
/// Random characters after the prefix.
const KEY_RANDOM_LEN: usize = 40;
/// How many random characters of a key are kept, after its prefix, to show humans.
const KEY_SHOWN_RANDOM: usize = 6;

/// A freshly minted API or operator key: the full key is shown once and never stored.
pub struct NewApiKey {
    pub key: String,
    pub prefix: String,
    pub hash: String,
}

/// Mints `wf_live_` followed by 40 base62 characters (about 238 bits).
pub fn generate_api_key() -> Result<NewApiKey, SecretError> {
    generate_key(API_KEY_PREFIX)
}

/// Mints `wf_op_` followed by 40 base62 characters (about 238 bits).
pub fn generate_operator_key() -> Result<NewApiKey, SecretError> {
    generate_key(OPERATOR_KEY_PREFIX)
}

fn generate_key(prefix: &str) -> Result<NewApiKey, SecretError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let len = prefix.len() + KEY_RANDOM_LEN;
    let mut key = String::from(prefix);
    while key.len() < len {
        for b in random_bytes::<64>()? {
            // Rejection sampling keeps every character equally likely.
            if (b as usize) < 62 * 4 && key.len() < len {
                key.push(ALPHABET[(b as usize) % 62] as char);
            }
        }
    }
    Ok(NewApiKey {
        prefix: key[..prefix.len() + KEY_SHOWN_RANDOM].to_string(),
        hash: hash_api_key(&key),
        key,
    })
}

/// The prefix of every widget identity secret.
pub const IDENTITY_SECRET_PREFIX: &str = "wf_id_";

/// Mints a widget identity secret: `wf_id_` followed by 40 base62
/// characters (about 238 bits). Shown once; stored sealed.
pub fn generate_identity_secret() -> Result<String, SecretError> {
    Ok(generate_key(IDENTITY_SECRET_PREFIX)?.key)
}

/// `HMAC-SHA256(secret, user_id)` as lower-case hex: what the host app's
/// server computes and the page passes as `userHash`.
pub fn identity_hash(secret: &str, user_id: &str) -> String {
    let mut mac = hmac_with(secret.as_bytes());
    mac.update(user_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `a` equals `b`, in time that does not depend on where they differ:
/// both are MACed under one key and the tags compared with `verify_slice`.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let tag = |bytes: &[u8]| {
        let mut mac = hmac_with(b"wayfinder constant-time comparison");
        mac.update(bytes);
        mac
    };
    let expected = tag(b).finalize().into_bytes();
    tag(a).verify_slice(&expected).is_ok()
}

/// Whether `user_hash` (hex, either case) is `HMAC-SHA256(secret, user_id)`.
/// The comparison runs in constant time (`Mac::verify_slice`), so timing
/// tells nothing about how much of a forged hash was right.
pub fn verify_identity_hash(secret: &str, user_id: &str, user_hash: &str) -> bool {
    let Some(tag) = unhex(user_hash.trim()) else {
        return false;
    };
    let mut mac = hmac_with(secret.as_bytes());
    mac.update(user_id.as_bytes());
    mac.verify_slice(&tag).is_ok()
}

/// Bytes of a hex string; `None` when it is not hex of even length.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// SHA-256 of an API key. Keys carry ~238 random bits, so a fast hash is
/// enough: there is nothing to brute-force.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_purpose_and_secret() {
        let a = ServerSecret::from_bytes(b"0123456789abcdef0123456789abcdef");
        let b = ServerSecret::from_bytes(b"fedcba9876543210fedcba9876543210");
        let token = a.sign("session", b"hello");
        assert_eq!(a.verify("session", &token).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.verify("contact", &token), None);
        assert_eq!(b.verify("session", &token), None);
        let mut tampered = token.clone();
        tampered.replace_range(0..1, if token.starts_with('a') { "b" } else { "a" });
        assert_eq!(a.verify("session", &tampered), None);
    }

    #[test]
    fn sealed_values_open_only_with_the_same_secret_purpose_and_owner() {
        let a = ServerSecret::from_bytes(b"0123456789abcdef0123456789abcdef");
        let b = ServerSecret::from_bytes(b"fedcba9876543210fedcba9876543210");
        let sealed = a.seal("byok", b"org-1", b"sk-secret").unwrap();
        assert!(!sealed.contains("sk-secret"));
        assert_eq!(
            a.open("byok", b"org-1", &sealed).as_deref(),
            Some(&b"sk-secret"[..])
        );
        assert_eq!(a.open("byok", b"org-2", &sealed), None);
        assert_eq!(a.open("other", b"org-1", &sealed), None);
        assert_eq!(b.open("byok", b"org-1", &sealed), None);
        assert_ne!(a.seal("byok", b"org-1", b"sk-secret").unwrap(), sealed);
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let k = generate_api_key().unwrap();
        assert!(k.key.starts_with("wf_live_"));
        assert_eq!(k.key.len(), 48);
        assert!(k.key[8..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(k.key.starts_with(&k.prefix));
        assert_eq!(k.hash, hash_api_key(&k.key));
        assert_ne!(generate_api_key().unwrap().key, k.key);
    }

    #[test]
    fn identity_hashes_verify_only_for_their_secret_and_user() {
        let secret = generate_identity_secret().unwrap();
        assert!(secret.starts_with("wf_id_") && secret.len() == 46);
        let hash = identity_hash(&secret, "user-42");
        assert_eq!(hash.len(), 64);
        assert!(verify_identity_hash(&secret, "user-42", &hash));
        assert!(verify_identity_hash(
            &secret,
            "user-42",
            &hash.to_uppercase()
        ));
        assert!(!verify_identity_hash(&secret, "user-43", &hash));
        assert!(!verify_identity_hash("wf_id_other", "user-42", &hash));
        assert!(!verify_identity_hash(&secret, "user-42", &hash[..62]));
        assert!(!verify_identity_hash(&secret, "user-42", "zz"));
        assert!(!verify_identity_hash(&secret, "user-42", ""));
        // RFC 4231 test case 2.
        assert_eq!(
            identity_hash("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn operator_keys_have_their_own_prefix() {
        let k = generate_operator_key().unwrap();
        assert!(k.key.starts_with("wf_op_"));
        assert_eq!(k.key.len(), 6 + 40);
        assert!(k.key[6..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(k.prefix.len(), 12);
        assert!(k.key.starts_with(&k.prefix));
        assert_eq!(k.hash, hash_api_key(&k.key));
    }
}
