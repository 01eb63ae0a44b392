//! Signed batches: how the edge hands anonymised events to the ingest.
//!
//! The body is JSON `{"events": [...]}`; the signature is
//! HMAC-SHA256(key, "{timestamp}.{body}") in hex, sent with the timestamp
//! (unix seconds) in two headers. The ingest accepts a batch only within
//! [`MAX_SKEW_SECONDS`] of its timestamp, and a replay stores nothing new
//! because every event keeps its id.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::event::AnonymisedEvent;

pub const SIGNATURE_HEADER: &str = "x-engagetrack-signature";
pub const TIMESTAMP_HEADER: &str = "x-engagetrack-timestamp";
pub const MAX_SKEW_SECONDS: i64 = 300;
/// A batch is at most this many events (the edge flushes earlier).
pub const MAX_EVENTS: usize = 5_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub events: Vec<AnonymisedEvent>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchAuthError {
    #[error("the timestamp header is not unix seconds")]
    BadTimestamp,
    #[error("the batch is {0} s away from now; the window is ±{MAX_SKEW_SECONDS} s")]
    Stale(i64),
    #[error("the signature header is not hex")]
    BadSignature,
    #[error("the signature does not match")]
    Mismatch,
}

fn mac(key: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(key, timestamp, body).finalize().into_bytes())
}

/// Checks the window first (cheap), then the MAC in constant time.
pub fn verify(key: &[u8], timestamp: &str, signature: &str, body: &[u8], now: i64) -> Result<i64, BatchAuthError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| BatchAuthError::BadTimestamp)?;
    let skew = now - ts;
    if skew.abs() > MAX_SKEW_SECONDS {
        return Err(BatchAuthError::Stale(skew));
    }
    let sig = hex::decode(signature.trim()).map_err(|_| BatchAuthError::BadSignature)?;
    mac(key, ts, body).verify_slice(&sig).map_err(|_| BatchAuthError::Mismatch)?;
    Ok(ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let sig = sign(b"key", 1_700_000_000, b"{\"events\":[]}");
        assert_eq!(verify(b"key", "1700000000", &sig, b"{\"events\":[]}", 1_700_000_100), Ok(1_700_000_000));
    }

    #[test]
    fn tampering_staleness_and_garbage_fail() {
        let body = b"{\"events\":[]}";
        let sig = sign(b"key", 1_700_000_000, body);
        assert_eq!(verify(b"key", "1700000000", &sig, b"{\"events\":[1]}", 1_700_000_000), Err(BatchAuthError::Mismatch));
        assert_eq!(verify(b"other", "1700000000", &sig, body, 1_700_000_000), Err(BatchAuthError::Mismatch));
        assert_eq!(verify(b"key", "1700000001", &sig, body, 1_700_000_000), Err(BatchAuthError::Mismatch));
        assert_eq!(verify(b"key", "1700000000", &sig, body, 1_700_000_301), Err(BatchAuthError::Stale(301)));
        assert_eq!(verify(b"key", "soon", &sig, body, 1_700_000_000), Err(BatchAuthError::BadTimestamp));
        assert_eq!(verify(b"key", "1700000000", "zz", body, 1_700_000_000), Err(BatchAuthError::BadSignature));
    }
}
