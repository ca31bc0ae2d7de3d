//! Secrets at rest and in what tasks leave behind: sealing with the server's key, and redaction.
//!
//! A secret is stored sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): a random
//! 24-byte nonce per value, so nonces never repeat in practice, and the secret's name as associated
//! data, so a sealed value copied onto another name does not open. The stored form is
//! `nonce ‖ ciphertext ‖ tag`. The key (32 bytes) lives outside the database: a file in the home
//! (0600) or an environment variable, so a copy of the database alone reveals nothing.
//!
//! Pure: the caller brings the key and the nonce's randomness; no file, clock or OS call here.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What a redacted secret value is replaced with.
pub const REDACTED: &str = "***";

/// Bytes of a sealing key.
pub const KEY_BYTES: usize = 32;

/// Bytes of the nonce at the front of a sealed value.
pub const NONCE_BYTES: usize = 24;

/// A sealing key. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Why a key or a sealed value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key's text is not 64 hex digits.
    #[error("a secret key is 64 hex digits (32 bytes); this one is not")]
    BadKey,
    /// The value does not open with this key under this name: another key, or tampered with.
    #[error("secret {name:?} does not open with this server's key (a different key, or the stored value was altered)")]
    WrongKey {
        /// The secret's name.
        name: String,
    },
    /// The opened value is not UTF-8 text.
    #[error("secret {name:?} is not UTF-8 text")]
    NotText {
        /// The secret's name.
        name: String,
    },
}

impl SecretKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> SecretKey {
        SecretKey(bytes)
    }

    /// A key from 64 hex digits (surrounding whitespace ignored), as key files and
    /// `SANDFLOW_SECRET_KEY` hold it.
    pub fn from_hex(text: &str) -> Result<SecretKey, SecretError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        let bytes: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(SecretKey(bytes))
    }

    /// The key as 64 hex digits, for writing a new key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Seals `value` under `name` with a fresh random `nonce`.
    pub fn seal(&self, name: &str, value: &str, nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: name.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any length this store holds");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a value [`SecretKey::seal`] sealed under `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<String, SecretError> {
        let wrong = || SecretError::WrongKey { name: name.to_string() };
        if sealed.len() < NONCE_BYTES {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let value = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: name.as_bytes() })
            .map_err(|_| wrong())?;
        String::from_utf8(value).map_err(|_| SecretError::NotText { name: name.to_string() })
    }
}

/// Replaces every occurrence of some secret values with [`REDACTED`]: in a try's log, its output,
/// its error messages, before any of them is stored.
///
/// Longer values are replaced first, so a secret that contains another is hidden whole. Empty
/// values are ignored (they would match everywhere). Values are also matched in their JSON-escaped
/// form, so a secret with a quote or a newline printed inside a JSON string is found too.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// A redactor of these values.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut all: Vec<String> = Vec::new();
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            all.push(value.to_string());
            let escaped = serde_json::to_string(value).expect("a string serialises");
            let escaped = &escaped[1..escaped.len() - 1];
            if escaped != value {
                all.push(escaped.to_string());
            }
        }
        all.sort_by_key(|v| std::cmp::Reverse(v.len()));
        all.dedup();
        Redactor { values: all }
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }

    /// `value` with every string (and object key) in it redacted.
    pub fn json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.is_empty() {
            return value.clone();
        }
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (self.text(k), self.json(v))).collect()),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_name() {
        let key = SecretKey::from_bytes([7; 32]);
        let sealed = key.seal("warehouse", "hunter2", [1; 24]);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open("warehouse", &sealed).unwrap(), "hunter2");
        assert!(matches!(key.open("other", &sealed), Err(SecretError::WrongKey { .. })));
        let other = SecretKey::from_bytes([8; 32]);
        assert!(matches!(other.open("warehouse", &sealed), Err(SecretError::WrongKey { .. })));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open("warehouse", &tampered).is_err());
        assert!(key.open("warehouse", &sealed[..10]).is_err());
        assert_eq!(SecretKey::from_hex(&key.to_hex()).unwrap().open("warehouse", &sealed).unwrap(), "hunter2");
        assert_eq!(SecretKey::from_hex("abc").unwrap_err(), SecretError::BadKey);
        assert_eq!(format!("{key:?}"), "SecretKey(***)");
    }

    #[test]
    fn redaction_hides_every_form() {
        let r = Redactor::new(["pa\"ss", "pa", ""]);
        assert_eq!(r.text("x pa\"ss y pa z"), "x *** y *** z");
        let v = serde_json::json!({"k": ["pa\"ss"], "pa": 1, "n": 2});
        assert_eq!(r.json(&v), serde_json::json!({"k": ["***"], "***": 1, "n": 2}));
        // The escaped form, as it appears inside JSON text.
        assert_eq!(r.text(r#"{"a":"pa\"ss"}"#), r#"{"a":"***"}"#);
        assert!(Redactor::new([""]).is_empty());
    }
}
