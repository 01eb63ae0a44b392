//! The anonymised event: what leaves the pipeline and is stored. It has no
//! field that could hold an IP address or a raw User-Agent.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::beacon::{Money, Props, Sensitive};
use crate::site::SiteId;
use crate::visitor::{SessionHash, VisitorHash};

/// A UUIDv7 given by the edge when it first sees an event. Retries reuse it,
/// storage ignores ids it already has, and the event's time is the id's time,
/// so one id can only ever mean one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Uuid", into = "Uuid")]
pub struct EventId(Uuid);

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl EventId {
    /// `random` supplies the 74 random bits; the caller owns the random source
    /// so this crate stays free of I/O.
    pub fn new(at: DateTime<Utc>, random: [u8; 10]) -> Self {
        let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The instant the edge received the event (millisecond precision).
    pub fn timestamp(&self) -> DateTime<Utc> {
        let b = self.0.as_bytes();
        let millis = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
        Utc.timestamp_millis_opt(millis as i64).single().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("event id {0} is not a UUIDv7")]
pub struct NotUuidV7(Uuid);

impl TryFrom<Uuid> for EventId {
    type Error = NotUuidV7;

    fn try_from(id: Uuid) -> Result<Self, Self::Error> {
        if id.get_version_num() == 7 { Ok(Self(id)) } else { Err(NotUuidV7(id)) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

/// The beacon's `type`, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Pageview,
    Engagement,
    Click,
    Form,
    Download,
    Outbound,
    Mailto,
    Tel,
    Purchase,
    Custom,
    Identify,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::Pageview,
        Self::Engagement,
        Self::Click,
        Self::Form,
        Self::Download,
        Self::Outbound,
        Self::Mailto,
        Self::Tel,
        Self::Purchase,
        Self::Custom,
        Self::Identify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pageview => "pageview",
            Self::Engagement => "engagement",
            Self::Click => "click",
            Self::Form => "form",
            Self::Download => "download",
            Self::Outbound => "outbound",
            Self::Mailto => "mailto",
            Self::Tel => "tel",
            Self::Purchase => "purchase",
            Self::Custom => "custom",
            Self::Identify => "identify",
        }
    }
}

/// Fields that are encrypted at rest (privacy invariant 5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensitiveFields {
    pub mailto: Option<Sensitive>,
    pub tel: Option<Sensitive>,
    pub email: Option<Sensitive>,
    pub name: Option<Sensitive>,
    pub avatar: Option<Sensitive>,
}

impl SensitiveFields {
    pub fn is_empty(&self) -> bool {
        self.entries().next().is_none()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("mailto", &self.mailto),
            ("tel", &self.tel),
            ("email", &self.email),
            ("name", &self.name),
            ("avatar", &self.avatar),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.expose())))
    }
}

/// What the edge derived from the request and the beacon: who (roughly)
/// and from where, never the IP or the User-Agent itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    /// `desktop`, `mobile` or `tablet`.
    pub device: Option<String>,
    /// The referrer's name (`Google`, `Hacker News`) or the UTM source.
    pub source: Option<String>,
    /// The marketing channel (`Organic Search`, `Paid Social`, `Direct`, …).
    pub channel: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnonymisedEvent {
    pub id: EventId,
    pub site: SiteId,
    pub event_type: EventType,
    /// The name the dashboard shows: the type, or the owner's own event name.
    pub name: String,
    pub visitor: VisitorHash,
    pub session: SessionHash,
    pub hostname: String,
    /// Path only: query strings and fragments can carry personal data.
    pub pathname: String,
    /// Scheme, host and path of an external referrer; none for direct or internal traffic.
    pub referrer: Option<String>,
    pub referrer_host: Option<String>,
    pub utm: Utm,
    pub screen_width: Option<i32>,
    pub screen_height: Option<i32>,
    pub engaged_ms: Option<i32>,
    pub scroll_depth: Option<i16>,
    pub revenue: Option<Money>,
    pub order_id: Option<String>,
    /// Download/outbound URL, or the form's name.
    pub target: Option<String>,
    pub user_id: Option<String>,
    pub props: Props,
    pub sensitive: SensitiveFields,
    pub enrichment: Enrichment,
}

impl AnonymisedEvent {
    pub fn timestamp(&self) -> DateTime<Utc> {
        self.id.timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_carries_its_time() {
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 12, 30, 5).unwrap();
        let id = EventId::new(at, [9; 10]);
        assert_eq!(id.timestamp(), at);
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert!(EventId::try_from(*id.as_uuid()).is_ok());
        assert!(EventId::try_from(Uuid::nil()).is_err());
    }
}

/// Why a stored-form event is not acceptable (the ingest checks batches from
/// the edge again: a version skew or a bug must not write nonsense).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("event {id}: {reason}")]
pub struct InvalidEvent {
    pub id: String,
    pub reason: String,
}

impl AnonymisedEvent {
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        use crate::beacon::{MAX_AMOUNT_MINOR, MAX_ENGAGED_MS, MAX_NAME_LEN, MAX_PROP_KEY_LEN, MAX_PROP_VALUE_LEN, MAX_PROPS, MAX_SCREEN_PX, MAX_TEXT_LEN, MAX_URL_LEN};
        let fail = |reason: String| Err(InvalidEvent { id: self.id.as_uuid().to_string(), reason });
        let long = |v: &Option<String>, max: usize| v.as_ref().is_some_and(|s| s.chars().count() > max);
        if self.hostname.is_empty() || self.hostname.len() > 253 || self.pathname.len() > MAX_URL_LEN || !self.pathname.starts_with('/') {
            return fail("hostname or pathname out of bounds".into());
        }
        if self.name.is_empty() || self.name.chars().count() > MAX_NAME_LEN {
            return fail("name out of bounds".into());
        }
        let texts = [&self.referrer, &self.target];
        if texts.iter().any(|t| long(t, MAX_URL_LEN)) {
            return fail("referrer or target too long".into());
        }
        let short = [
            &self.utm.source, &self.utm.medium, &self.utm.campaign, &self.utm.term, &self.utm.content, &self.order_id, &self.user_id,
            &self.referrer_host, &self.enrichment.browser, &self.enrichment.os, &self.enrichment.source, &self.enrichment.city,
            &self.enrichment.region, &self.enrichment.country, &self.enrichment.channel, &self.enrichment.device,
            &self.enrichment.browser_version, &self.enrichment.os_version,
        ];
        if short.iter().any(|t| long(t, MAX_TEXT_LEN)) {
            return fail("a text field is longer than 256 characters".into());
        }
        if self.props.len() > MAX_PROPS
            || self.props.iter().any(|(k, v)| k.is_empty() || k.chars().count() > MAX_PROP_KEY_LEN || v.chars().count() > MAX_PROP_VALUE_LEN)
        {
            return fail("props out of bounds".into());
        }
        let px = |v: Option<i32>| v.is_some_and(|v| v < 1 || v as u32 > MAX_SCREEN_PX);
        if px(self.screen_width) || px(self.screen_height) {
            return fail("screen size out of bounds".into());
        }
        if self.engaged_ms.is_some_and(|ms| ms < 0 || ms as u64 > MAX_ENGAGED_MS) || self.scroll_depth.is_some_and(|s| !(0..=100).contains(&s)) {
            return fail("engagement out of bounds".into());
        }
        if (self.event_type == EventType::Engagement) != self.engaged_ms.is_some() {
            return fail("engaged time belongs to engagement events only".into());
        }
        if self.revenue.is_some_and(|m| !(0..=MAX_AMOUNT_MINOR).contains(&m.minor)) {
            return fail("revenue out of bounds".into());
        }
        Ok(())
    }
}
