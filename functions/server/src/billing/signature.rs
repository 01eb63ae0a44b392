//! HMAC-SHA256 checks the providers' schemes share. Comparison is the hmac
//! crate's `verify_slice` (constant time), never `==` on bytes.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// Whether `tag` is HMAC-SHA256(key, parts concatenated).
pub fn matches(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else { return false };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(tag).is_ok()
}

/// HMAC-SHA256(key, parts concatenated): for signing in tests and fakes.
pub fn sign(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// The header's value as text, or the reason it cannot be.
pub fn header<'a>(headers: &'a axum::http::HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    let value = headers.get(name).ok_or(WebhookError::MissingHeader(name))?;
    value.to_str().map_err(|_| WebhookError::MalformedHeader { header: name, reason: "not ASCII".into() })
}

/// Refuses a signature timestamp outside the replay window.
pub fn check_window(unix_seconds: i64, now: DateTime<Utc>, window: i64) -> Result<(), WebhookError> {
    let skew = now.timestamp().saturating_sub(unix_seconds);
    if skew.abs() > window { Err(WebhookError::Stale { skew, window }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231, test case 2: the primitive every scheme here builds on.
    #[test]
    fn rfc_4231_vector() {
        let tag = hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap();
        assert!(matches(b"Jefe", &[b"what do ya want ", b"for nothing?"], &tag));
        assert_eq!(sign(b"Jefe", &[b"what do ya want for nothing?"]), tag);
        assert!(!matches(b"Jeff", &[b"what do ya want for nothing?"], &tag));
        assert!(!matches(b"Jefe", &[b"what do ya want for nothing?"], &tag[..31]));
    }

    #[test]
    fn window_both_ways() {
        let now = Utc::now();
        assert!(check_window(now.timestamp() - 299, now, 300).is_ok());
        assert!(check_window(now.timestamp() + 299, now, 300).is_ok());
        assert_eq!(check_window(now.timestamp() - 301, now, 300), Err(WebhookError::Stale { skew: 301, window: 300 }));
        assert!(check_window(now.timestamp() + 301, now, 300).is_err());
    }
}
