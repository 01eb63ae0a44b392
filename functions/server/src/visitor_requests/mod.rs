//! Visitor requests: a site owner, as controller, answers one visitor's
//! access and erasure requests: find (counts), export (the events, encrypted
//! fields decrypted) and erase (the events, and their part of the rollups).
//!
//! Which events are the visitor's ([`VisitorKey`]):
//! - `visitor_id` (storage mode, the SDK's random `vid` from the visitor's
//!   device): every event whose visitor hash is `VisitorHash::from_visitor_id(site, vid)`.
//! - `user_id` / `email` (identify()): the identify events that match, and
//!   every event of the sessions `(site_id, session_hash)` they belong to
//!   that shares an identify event's storage-mode visitor hash or lies on its
//!   UTC day or a day either side (see [`store`]; a session is one page load
//!   in memory mode, one tab in storage mode).
//!   Not widened to their visitor hash: a memory-mode daily hash is shared by
//!   everyone behind one NAT with the same browser, and a storage-mode hash
//!   names a device, which may be shared too; widening could export or erase
//!   other people. A visitor in storage mode who also wants the rest of their
//!   history asks with their `visitor_id` as well.
//! - Memory mode (the default) keeps nothing that identifies a person: no IP
//!   address, no cookie, a hash salted with a salt destroyed after its day.
//!   A request by IP address, or with no key, is answered 422 saying so.
//!
//! Rules live here, SQL in [`store`]; the route only checks roles and maps errors.

pub mod store;

use std::sync::RwLock;

use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use shared::{SiteId, VisitorHash};
use uuid::Uuid;

use crate::secrets::{Secrets, VISITOR_LOOKUP_KEY};

/// What memory mode can answer: nothing, and why. Every request that cannot
/// name a visitor says it, so a site owner can pass it on.
pub const MEMORY_MODE_REASON: &str = "visitors tracked in memory mode (the default) cannot be found: memory mode stores no IP address, \
     no cookie and no identifier, only a hash of the day salted with a salt destroyed after that day, so nothing \
     links stored events to a person. Name an identified visitor by `user_id` or `email` (from identify()), or a \
     storage-mode visitor by `visitor_id` (the id the tracking script keeps on their device)";

/// Longest user id the ingest stores (`shared::beacon::MAX_TEXT_LEN`).
const MAX_USER_ID: usize = shared::beacon::MAX_TEXT_LEN;
/// RFC 5321's longest address.
const MAX_EMAIL: usize = 320;

/// Bad keys, each with the reason the requester sees. Never holds the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("name the visitor by exactly one of `user_id`, `email` or `visitor_id`; none was given. {MEMORY_MODE_REASON}")]
    Missing,
    #[error("name the visitor by exactly one of `user_id`, `email` or `visitor_id`; got {0}")]
    Several(String),
    #[error("an IP address identifies no one here. {MEMORY_MODE_REASON}")]
    IpAddress,
    #[error("`user_id` must be 1 to {MAX_USER_ID} characters without control characters")]
    BadUserId,
    #[error("`email` must be an address (something@domain), at most {MAX_EMAIL} characters")]
    BadEmail,
    #[error("`visitor_id` must be the tracking script's visitor id: 16 to 64 characters of A-Z, a-z, 0-9, '-' or '_'")]
    BadVisitorId,
}

/// The request body: exactly one key. `ip_address` is listed only to be
/// refused with the memory-mode reason.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitorRequestBody {
    /// The `id` the site passed to identify().
    pub user_id: Option<String>,
    /// The `email` the site passed to identify(); matched trimmed and case-insensitively.
    pub email: Option<String>,
    /// Storage mode: the visitor id the tracking script keeps on the visitor's device.
    pub visitor_id: Option<String>,
    /// Never accepted: memory mode keeps no IP address (answers 422).
    pub ip_address: Option<String>,
}

/// An email as identify() emails are matched: trimmed, lower-cased.
pub struct NormalisedEmail(String);

impl NormalisedEmail {
    pub fn new(raw: &str) -> Self {
        Self(raw.trim().to_lowercase())
    }
}

/// Who the request is about, parsed once from the body. `Debug` shows the
/// kind only: the value is personal data and must not reach a log.
pub enum VisitorKey {
    UserId(String),
    Email(NormalisedEmail),
    /// The raw `vid`; hashed per site by [`VisitorKey::visitor_hash`].
    StorageVisitorId(String),
}

impl std::fmt::Debug for VisitorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisitorKey::{}(..)", self.kind().as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    UserId,
    Email,
    VisitorId,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::UserId => "user_id",
            KeyKind::Email => "email",
            KeyKind::VisitorId => "visitor_id",
        }
    }
}

impl VisitorKey {
    pub fn parse(body: VisitorRequestBody) -> Result<Self, KeyError> {
        if body.ip_address.is_some() {
            return Err(KeyError::IpAddress);
        }
        let given: Vec<&str> =
            [("user_id", body.user_id.is_some()), ("email", body.email.is_some()), ("visitor_id", body.visitor_id.is_some())]
                .into_iter()
                .filter_map(|(name, set)| set.then_some(name))
                .collect();
        if given.len() > 1 {
            return Err(KeyError::Several(given.join(" and ")));
        }
        match (body.user_id, body.email, body.visitor_id) {
            (Some(id), _, _) => {
                // Matched exactly as stored: the ingest keeps the id as sent.
                let ok = !id.is_empty() && id.chars().count() <= MAX_USER_ID && !id.chars().any(char::is_control);
                ok.then_some(Self::UserId(id)).ok_or(KeyError::BadUserId)
            }
            (_, Some(email), _) => {
                let email = NormalisedEmail::new(&email);
                let ok = email.0.len() <= MAX_EMAIL
                    && !email.0.chars().any(|c| c.is_control() || c.is_whitespace())
                    && email.0.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
                ok.then_some(Self::Email(email)).ok_or(KeyError::BadEmail)
            }
            (_, _, Some(vid)) => {
                // The beacon's rule for `vid` (shared::beacon::ClientId): anything else was never stored.
                let ok = (16..=64).contains(&vid.len()) && vid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                ok.then_some(Self::StorageVisitorId(vid)).ok_or(KeyError::BadVisitorId)
            }
            (None, None, None) => Err(KeyError::Missing),
        }
    }

    pub fn kind(&self) -> KeyKind {
        match self {
            VisitorKey::UserId(_) => KeyKind::UserId,
            VisitorKey::Email(_) => KeyKind::Email,
            VisitorKey::StorageVisitorId(_) => KeyKind::VisitorId,
        }
    }

    /// The stored visitor hash of a storage-mode id on this site.
    pub fn visitor_hash(site: SiteId, vid: &str) -> VisitorHash {
        VisitorHash::from_visitor_id(site, vid)
    }

    fn text(&self) -> &str {
        match self {
            VisitorKey::UserId(s) | VisitorKey::StorageVisitorId(s) => s,
            VisitorKey::Email(e) => &e.0,
        }
    }
}

/// The HMAC key behind `events.email_key` and the audit digests. Behind a
/// lock so a key added to the secret store reaches a running process.
#[derive(Default)]
pub struct LookupKey(RwLock<Option<Vec<u8>>>);

impl std::fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupKey").field("present", &self.read().is_some()).finish()
    }
}

impl LookupKey {
    pub fn from_secrets(secrets: &Secrets) -> Self {
        let key = secrets.get(VISITOR_LOOKUP_KEY).filter(|k| !k.is_empty()).map(<[u8]>::to_vec);
        if key.is_none() {
            tracing::warn!(secret = VISITOR_LOOKUP_KEY, "no visitor lookup key: identify() emails are stored without a lookup hash");
        }
        Self(RwLock::new(key))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Vec<u8>>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the key when it first appears. A changed key is refused (and
    /// logged): every hash made with the old one would stop matching.
    pub fn reload(&self, secrets: &Secrets) {
        let Some(fresh) = secrets.get(VISITOR_LOOKUP_KEY).filter(|k| !k.is_empty()) else { return };
        let mut key = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match key.as_deref() {
            None => *key = Some(fresh.to_vec()),
            Some(old) if old != fresh => {
                tracing::error!(
                    secret = VISITOR_LOOKUP_KEY,
                    "the visitor lookup key changed; keeping the old one, or stored emails could not be found"
                )
            }
            Some(_) => {}
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let key = self.read();
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_deref()?).ok()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// `events.email_key` of an identify() email: HMAC-SHA256 of it normalised.
    pub fn email_key(&self, email: &NormalisedEmail) -> Option<Vec<u8>> {
        self.mac(&[email.0.as_bytes()])
    }

    /// What the audit log records instead of the key: a keyed digest (kind,
    /// site and value), so two requests about one visitor can be told apart
    /// from others without the log holding who they were about.
    pub fn audit_digest(&self, site: SiteId, key: &VisitorKey) -> Option<String> {
        let digest = self.mac(&[b"audit\0", key.kind().as_str().as_bytes(), b"\0", site.as_uuid().as_bytes(), key.text().as_bytes()])?;
        Some(hex::encode(&digest[..16]))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VisitorRequestError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "email lookups are not configured: the secret store has no `{VISITOR_LOOKUP_KEY}` (README \"Visitor requests\"); use `user_id` or `visitor_id`"
    )]
    NoLookupKey,
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// The request's who and where, for the audit row.
#[derive(Debug, Clone, Copy)]
pub struct Requester {
    pub organization: Uuid,
    pub user: Uuid,
}

/// One admitted request: who asks, about which site, and whom.
#[derive(Debug)]
pub struct VisitorRequest {
    pub by: Requester,
    pub site: SiteId,
    /// The site's domain, the audit row's target.
    pub domain: String,
    pub key: VisitorKey,
}

/// What the matching events amount to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Found {
    pub key_kind: KeyKind,
    pub events: i64,
    /// Distinct sessions (the tracking script's session ids).
    pub sessions: i64,
    /// Distinct UTC days with events (the days rollups are kept by).
    pub days: i64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
}

/// The visitor's events, for them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Exported {
    pub site_id: Uuid,
    pub key_kind: KeyKind,
    pub exported_at: DateTime<Utc>,
    pub count: usize,
    /// Every stored column but the internal hashes; `details` holds the
    /// decrypted identify() email, name and avatar and mailto/tel targets.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

/// What an erase removed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    #[serde(flatten)]
    pub found: Found,
    /// UTC days whose rollups were rebuilt without the erased events.
    pub rerolled_days: Vec<NaiveDate>,
    /// Days whose rebuild failed here; they stay marked stale, and the hourly
    /// rollup job rebuilds them (stats read them from raw events until then).
    pub pending_days: Vec<NaiveDate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(user_id: Option<&str>, email: Option<&str>, visitor_id: Option<&str>) -> VisitorRequestBody {
        VisitorRequestBody {
            user_id: user_id.map(str::to_owned),
            email: email.map(str::to_owned),
            visitor_id: visitor_id.map(str::to_owned),
            ip_address: None,
        }
    }

    #[test]
    fn exactly_one_key() {
        assert_eq!(VisitorKey::parse(body(None, None, None)).err(), Some(KeyError::Missing));
        assert!(KeyError::Missing.to_string().contains("memory mode"));
        let two = VisitorKey::parse(body(Some("u1"), Some("a@b.c"), None)).err().unwrap();
        assert_eq!(two, KeyError::Several("user_id and email".into()));
        let ip = VisitorRequestBody { ip_address: Some("192.0.2.1".into()), ..VisitorRequestBody::default() };
        let err = VisitorKey::parse(ip).err().unwrap();
        assert!(err.to_string().contains("memory mode stores no IP address"), "{err}");
        assert_eq!(VisitorKey::parse(body(Some("u1"), None, None)).unwrap().kind(), KeyKind::UserId);
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased_and_checked() {
        let VisitorKey::Email(e) = VisitorKey::parse(body(None, Some("  Ann.Lee@Example.COM \n"), None)).unwrap() else { panic!() };
        assert_eq!(e.0, "ann.lee@example.com");
        for bad in ["", "ann", "@example.com", "ann@", "a b@example.com"] {
            assert_eq!(VisitorKey::parse(body(None, Some(bad), None)).err(), Some(KeyError::BadEmail), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(320));
        assert_eq!(VisitorKey::parse(body(None, Some(&long), None)).err(), Some(KeyError::BadEmail));
    }

    #[test]
    fn user_and_visitor_ids_follow_what_the_ingest_stores() {
        for bad in ["", "a\u{0}b", &"x".repeat(257)] {
            assert_eq!(VisitorKey::parse(body(Some(bad), None, None)).err(), Some(KeyError::BadUserId));
        }
        // Kept as sent: ids are case-sensitive.
        let VisitorKey::UserId(id) = VisitorKey::parse(body(Some(" U-42 "), None, None)).unwrap() else { panic!() };
        assert_eq!(id, " U-42 ");
        assert!(VisitorKey::parse(body(None, None, Some("abcdefghijklmnop"))).is_ok());
        for bad in ["short", "abcdefghijklmno!", &"v".repeat(65)] {
            assert_eq!(VisitorKey::parse(body(None, None, Some(bad))).err(), Some(KeyError::BadVisitorId));
        }
    }

    #[test]
    fn debug_never_shows_the_value() {
        let key = VisitorKey::parse(body(None, Some("secret@example.com"), None)).unwrap();
        assert_eq!(format!("{key:?}"), "VisitorKey::email(..)");
    }

    #[test]
    fn email_keys_are_keyed_and_normalised() {
        let secrets = |k: &str| Secrets::from_hex_json(&format!(r#"{{"{VISITOR_LOOKUP_KEY}":"{k}"}}"#), "test").unwrap();
        let a = LookupKey::from_secrets(&secrets("0101"));
        let b = LookupKey::from_secrets(&secrets("0202"));
        let email = |s: &str| NormalisedEmail::new(s);
        assert_eq!(a.email_key(&email("Ann@Example.com ")), a.email_key(&email("ann@example.com")));
        assert_ne!(a.email_key(&email("ann@example.com")), b.email_key(&email("ann@example.com")));
        assert_eq!(a.email_key(&email("ann@example.com")).unwrap().len(), 32);
        let none = LookupKey::from_secrets(&Secrets::default());
        assert_eq!(none.email_key(&email("ann@example.com")), None);
        // The key arrives later; a changed key is refused.
        none.reload(&secrets("0101"));
        assert_eq!(none.email_key(&email("ann@example.com")), a.email_key(&email("ann@example.com")));
        none.reload(&secrets("0303"));
        assert_eq!(none.email_key(&email("ann@example.com")), a.email_key(&email("ann@example.com")));
    }
}
