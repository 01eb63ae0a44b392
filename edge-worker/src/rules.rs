//! Everything the worker decides that does not need the Workers runtime:
//! pure functions, unit-tested natively.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use shared::beacon::MAX_BODY_BYTES;
use shared::{BeaconError, Salt, SiteId};

/// The tracker: the same file `functions/server/src/routes/edge.rs` embeds.
pub const TRACKER_JS: &str = include_str!("../../sdk/dist/et.js");

pub const TRACKER_CACHE_CONTROL: &str = "public, max-age=86400, stale-while-revalidate=604800";
pub const TRACKER_CONTENT_TYPE: &str = "application/javascript; charset=utf-8";

/// A strong validator: the first 96 bits of the script's SHA-256 (the local
/// server computes the same, so both hosts agree on the tag).
pub fn tracker_etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| etag_of(TRACKER_JS.as_bytes()))
}

pub fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode(&Sha256::digest(bytes)[..12]))
}

/// `If-None-Match` may list several tags, or `*`.
pub fn etag_matches(if_none_match: Option<&str>, etag: &str) -> bool {
    let Some(v) = if_none_match else { return false };
    v.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// A refusal: status and the reason that goes into `{"error": reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }

    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.reason }).to_string()
    }
}

/// `text/plain` (sendBeacon, no preflight) or `application/json`; a missing
/// header is accepted, as by the local server.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), Refusal> {
    let Some(ct) = content_type else { return Ok(()) };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "text/plain" || essence == "application/json" {
        Ok(())
    } else {
        Err(Refusal::new(415, "send the beacon as text/plain or application/json"))
    }
}

pub fn check_body_size(len: usize) -> Result<(), Refusal> {
    if len > MAX_BODY_BYTES {
        Err(Refusal::new(413, format!("body is larger than the {MAX_BODY_BYTES}-byte limit")))
    } else {
        Ok(())
    }
}

/// A beacon the pipeline refused: `400` with the pipeline's reason, as the
/// local server answers.
pub fn beacon_refusal(e: &BeaconError) -> Refusal {
    match e {
        BeaconError::TooLarge(_) => Refusal::new(413, format!("body is larger than the {MAX_BODY_BYTES}-byte limit")),
        e => Refusal::new(400, e.to_string()),
    }
}

/// Cloudflare names the client in `CF-Connecting-IP`; nothing else in front
/// of a Worker can be believed (`X-Forwarded-For` is whatever the visitor
/// sent, so it is never read).
pub fn client_ip(cf_connecting_ip: Option<&str>) -> Result<IpAddr, Refusal> {
    match cf_connecting_ip {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Refusal::new(400, "the CF-Connecting-IP header does not hold an IP address")),
        None => Err(Refusal::new(400, "the client address is unknown: no CF-Connecting-IP header")),
    }
}

/// The KV key of the salt of `at`'s UTC day: `salt:YYYY-MM-DD`.
pub fn salt_key(at: DateTime<Utc>) -> String {
    format!("salt:{}", at.format("%Y-%m-%d"))
}

/// A KV salt value: 64 hex characters (32 bytes).
pub fn parse_salt(value: &str) -> Result<Salt, String> {
    let bytes = hex::decode(value.trim()).map_err(|e| format!("the salt is not hex: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("the salt is {} bytes, not 32", b.len()))?;
    Ok(Salt::from_bytes(bytes))
}

/// The KV key of a site in `SITES`: `site:<uuid>` (written by the server's
/// `edge_publish` on site create/update/delete and by its sync job).
pub fn site_key(site: SiteId) -> String {
    format!("site:{site}")
}

/// Whether a beacon for `site` is taken, from its `SITES` value: absent is an
/// unknown (or deleted) site, `404`; `{"active":false}` is a paused site,
/// `403` (the local server answers both the same way). A value this worker
/// cannot read is let through: the ingest checks the site again, and a
/// publishing bug must not drop every beacon of a real site.
pub fn site_admission(site: SiteId, value: Option<&str>) -> Result<(), Refusal> {
    let Some(value) = value else {
        return Err(Refusal::new(404, format!("unknown site {site}: it is not in this edge's site list")));
    };
    let active = serde_json::from_str::<serde_json::Value>(value).ok().and_then(|v| v.get("active")?.as_bool());
    match active {
        Some(false) => Err(Refusal::new(403, format!("site {site} is not accepting events"))),
        _ => Ok(()),
    }
}

/// The signing key from the `EDGE_SIGNING_KEY` secret (hex).
pub fn parse_signing_key(value: &str) -> Result<Vec<u8>, String> {
    let key = hex::decode(value.trim()).map_err(|e| format!("EDGE_SIGNING_KEY is not hex: {e}"))?;
    if key.len() < 16 {
        return Err(format!("EDGE_SIGNING_KEY is {} bytes; use at least 16", key.len()));
    }
    Ok(key)
}

/// `${INGEST_URL}/ingest/batch`, with or without a trailing slash.
pub fn batch_url(ingest_url: &str) -> String {
    format!("{}/ingest/batch", ingest_url.trim_end_matches('/'))
}

/// Waits before each forwarding attempt inside `wait_until`: the first is
/// immediate, then 200 ms, 1 s, 3 s (about 4 s in all, well inside the
/// 30 s `wait_until` allows). After the last failure the batch goes to the queue.
pub const FORWARD_BACKOFF: [Duration; 4] =
    [Duration::ZERO, Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(3)];

/// How an ingest answer is treated: stored, worth retrying, or refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Retry,
    /// The ingest read the batch and will never take it (an unknown or
    /// inactive site, an event it finds invalid): dropped with a log line.
    Refused,
}

pub fn outcome(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Stored,
        // 401/403: a signing-key mismatch (rotation, misconfiguration) is
        // fixable, so the batch waits in the queue rather than being lost.
        401 | 403 | 408 | 425 | 429 => Outcome::Retry,
        400..=499 => Outcome::Refused,
        _ => Outcome::Retry,
    }
}

/// Delay before the queue delivers a message again, from the message's age:
/// wait as long as it has already waited (so the delay doubles each time),
/// at least 10 s and at most 15 min. The queue's `max_retries` then moves it
/// to the dead-letter queue.
pub fn queue_retry_delay(age_seconds: u64) -> u32 {
    age_seconds.clamp(10, 900) as u32
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn tracker_etag_is_strong_and_matches() {
        let etag = tracker_etag();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 26, "{etag}");
        assert!(etag_matches(Some(etag), etag));
        assert!(etag_matches(Some(&format!("\"x\", {etag}")), etag));
        assert!(etag_matches(Some("*"), etag));
        assert!(!etag_matches(Some("\"other\""), etag));
        assert!(!etag_matches(None, etag));
        assert!(TRACKER_JS.len() > 100);
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(None).is_ok());
        assert!(check_content_type(Some("text/plain;charset=UTF-8")).is_ok());
        assert!(check_content_type(Some("Application/JSON")).is_ok());
        let r = check_content_type(Some("application/x-www-form-urlencoded")).unwrap_err();
        assert_eq!(r.status, 415);
        assert!(r.body().contains("text/plain"));
    }

    #[test]
    fn body_size_limit() {
        assert!(check_body_size(MAX_BODY_BYTES).is_ok());
        assert_eq!(check_body_size(MAX_BODY_BYTES + 1).unwrap_err().status, 413);
    }

    #[test]
    fn client_ip_comes_from_cloudflare() {
        assert_eq!(client_ip(Some(" 203.0.113.9 ")).unwrap(), "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(Some("2001:db8::1")).unwrap(), "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(Some("nope")).unwrap_err().status, 400);
        assert_eq!(client_ip(None).unwrap_err().status, 400);
    }

    #[test]
    fn salt_key_is_the_utc_day() {
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 23, 59, 59).unwrap();
        assert_eq!(salt_key(at), "salt:2026-11-29");
        assert!(parse_salt(&"ab".repeat(32)).is_ok());
        assert!(parse_salt(&"ab".repeat(31)).unwrap_err().contains("31 bytes"));
        assert!(parse_salt("zz").unwrap_err().contains("not hex"));
    }

    #[test]
    fn sites_are_admitted_from_their_kv_value() {
        let site: SiteId = "0193f4c2-0000-7000-8000-000000000001".parse().unwrap();
        assert_eq!(site_key(site), "site:0193f4c2-0000-7000-8000-000000000001");
        assert!(site_admission(site, Some(r#"{"active":true}"#)).is_ok());
        let unknown = site_admission(site, None).unwrap_err();
        assert_eq!(unknown.status, 404);
        assert!(unknown.body().contains("unknown site 0193f4c2"), "{}", unknown.body());
        let paused = site_admission(site, Some(r#"{"active":false}"#)).unwrap_err();
        assert_eq!(paused.status, 403);
        assert!(site_admission(site, Some("garbage")).is_ok(), "an unreadable value is let through");
    }

    #[test]
    fn signing_key_and_url() {
        assert_eq!(parse_signing_key(&"01".repeat(32)).unwrap().len(), 32);
        assert!(parse_signing_key("0102").is_err());
        assert_eq!(batch_url("http://127.0.0.1:9/"), "http://127.0.0.1:9/ingest/batch");
        assert_eq!(batch_url("https://ingest.example"), "https://ingest.example/ingest/batch");
    }

    #[test]
    fn outcomes_and_backoff() {
        assert_eq!(outcome(202), Outcome::Stored);
        assert_eq!(outcome(503), Outcome::Retry);
        assert_eq!(outcome(429), Outcome::Retry);
        assert_eq!(outcome(401), Outcome::Retry);
        assert_eq!(outcome(404), Outcome::Refused);
        assert_eq!(outcome(400), Outcome::Refused);
        assert_eq!(queue_retry_delay(0), 10);
        assert_eq!(queue_retry_delay(40), 40);
        assert_eq!(queue_retry_delay(100_000), 900);
        let total: Duration = FORWARD_BACKOFF.iter().sum();
        assert!(total < Duration::from_secs(10));
    }
}
