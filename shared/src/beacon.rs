//! The beacon: what the tracking script sends to `POST /api/e`.
//!
//! [`Beacon::parse`] turns a request body into a typed [`Beacon`] or a
//! [`BeaconError`] whose message tells the sender what to fix. Nothing past
//! this point sees an unchecked field. The README's "Beacon format" section
//! is the contract with the SDK.

use std::collections::BTreeMap;
use std::fmt;

use iso_currency::Currency as IsoCurrency;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::event::EventType;
use crate::site::SiteId;

pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_TITLE_LEN: usize = 300;
pub const MAX_NAME_LEN: usize = 120;
pub const MAX_PROPS: usize = 30;
pub const MAX_PROP_KEY_LEN: usize = 64;
pub const MAX_PROP_VALUE_LEN: usize = 256;
pub const MAX_TEXT_LEN: usize = 256;
pub const MAX_SCREEN_PX: u32 = 100_000;
/// One day of engaged time on a single page is already implausible.
pub const MAX_ENGAGED_MS: u64 = 86_400_000;
/// 10^12 minor units: ten billion dollars in one purchase.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;


#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BeaconError {
    #[error("body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("`site` is not a site id: {0}")]
    BadSite(String),
    #[error("unknown event type `{0}`; expected one of {types}", types = EventType::ALL.map(EventType::as_str).join(", "))]
    UnknownType(String),
    #[error("`{field}` is required for a {kind} event")]
    Missing { field: &'static str, kind: &'static str },
    #[error("`{field}` does not apply to a {kind} event")]
    NotApplicable { field: &'static str, kind: &'static str },
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl BeaconError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

/// A beacon whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub site: SiteId,
    pub page: Url,
    pub referrer: Option<Url>,
    pub title: Option<String>,
    pub session_id: ClientId,
    /// Present only in storage mode.
    pub visitor_id: Option<ClientId>,
    pub screen: Option<Screen>,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
}

/// A random id made by the SDK (session or visitor): 8 to 64 URL-safe characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    fn parse(field: &'static str, raw: String, min: usize) -> Result<Self, BeaconError> {
        let ok_len = (min..=64).contains(&raw.len());
        let ok_chars = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok_len && ok_chars {
            Ok(Self(raw))
        } else {
            Err(BeaconError::invalid(
                field,
                format!("must be {min} to 64 characters of A-Z, a-z, 0-9, '-' or '_'"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An id made on the server for senders that have none (Plausible's
    /// Events API): 32 hex characters of the given random bytes.
    pub(crate) fn from_random(bytes: [u8; 16]) -> Self {
        Self(hex::encode(bytes))
    }
}

/// Values a site owner should not be able to read in the clear from a database
/// dump (mailto/tel captures, identify() details). The server encrypts them.
#[derive(Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sensitive(..)")
    }
}

/// Custom properties: at most [`MAX_PROPS`] string keys to string values
/// (numbers and booleans are kept as their JSON text).
pub type Props = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Money {
    /// In the currency's minor unit (cents for USD, yen for JPY).
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(IsoCurrency);

impl TryFrom<String> for Currency {
    type Error = String;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        IsoCurrency::from_code(&code).map(Self).ok_or_else(|| format!("`{code}` is not an ISO 4217 code"))
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.code().to_owned()
    }
}

impl Currency {
    /// The currency with exactly this ISO 4217 code (upper case, as Plausible takes it).
    pub(crate) fn from_exact_code(code: &str) -> Option<Self> {
        IsoCurrency::from_code(code).filter(|c| c.code() == code).map(Self)
    }

    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u32 {
        self.0.exponent().map_or(0, u32::from)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifiedUser {
    pub id: String,
    pub email: Option<Sensitive>,
    pub name: Option<Sensitive>,
    pub avatar: Option<Sensitive>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Props only from Plausible's Events API (its pageviews may carry them);
    /// a beacon's pageview has none.
    Pageview { props: Props },
    Engagement { engaged_ms: u32, scroll_depth: u8 },
    Click { name: String, props: Props },
    Form { form: Option<String>, props: Props },
    Download { target: Url },
    Outbound { target: Url },
    Mailto { address: Sensitive },
    Tel { number: Sensitive },
    Purchase { money: Money, order_id: Option<String>, props: Props },
    Custom { name: String, props: Props, revenue: Option<Money> },
    Identify { user: IdentifiedUser },
}

impl EventKind {
    pub fn event_type(&self) -> EventType {
        match self {
            Self::Pageview { .. } => EventType::Pageview,
            Self::Engagement { .. } => EventType::Engagement,
            Self::Click { .. } => EventType::Click,
            Self::Form { .. } => EventType::Form,
            Self::Download { .. } => EventType::Download,
            Self::Outbound { .. } => EventType::Outbound,
            Self::Mailto { .. } => EventType::Mailto,
            Self::Tel { .. } => EventType::Tel,
            Self::Purchase { .. } => EventType::Purchase,
            Self::Custom { .. } => EventType::Custom,
            Self::Identify { .. } => EventType::Identify,
        }
    }

    /// The `type` as spelled on the wire and in storage.
    pub fn type_name(&self) -> &'static str {
        self.event_type().as_str()
    }

    /// The event name shown in the dashboard: the type, or the owner's own
    /// name for tagged clicks and custom events.
    pub fn event_name(&self) -> &str {
        match self {
            Self::Click { name, .. } | Self::Custom { name, .. } => name,
            other => other.type_name(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBeacon {
    site: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    referrer: Option<String>,
    title: Option<String>,
    sid: Option<String>,
    vid: Option<String>,
    w: Option<u32>,
    h: Option<u32>,
    ms: Option<u64>,
    scroll: Option<u64>,
    name: Option<String>,
    props: Option<serde_json::Map<String, Value>>,
    target: Option<String>,
    amount: Option<Value>,
    currency: Option<String>,
    order_id: Option<String>,
    revenue: Option<RawMoney>,
    user: Option<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMoney {
    amount: Value,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: String,
    email: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
}

impl Beacon {
    /// Parse a request body (`text/plain` or `application/json`, same bytes).
    pub fn parse(body: &[u8]) -> Result<Self, BeaconError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BeaconError::TooLarge(body.len()));
        }
        let raw: RawBeacon =
            serde_json::from_slice(body).map_err(|e| BeaconError::Json(e.to_string()))?;
        raw.into_beacon()
    }
}

impl RawBeacon {
    fn into_beacon(mut self) -> Result<Beacon, BeaconError> {
        let kind_name = self.kind.take().ok_or(BeaconError::Missing { field: "type", kind: "any" })?;
        let kind_name = EventType::ALL
            .map(EventType::as_str)
            .into_iter()
            .find(|t| *t == kind_name)
            .ok_or(BeaconError::UnknownType(truncate(&kind_name, 40)))?;
        let required = |field, v: Option<String>| v.ok_or(BeaconError::Missing { field, kind: kind_name });

        let site = required("site", self.site.take())?;
        let site = site.parse().map_err(|_| BeaconError::BadSite(truncate(&site, 40)))?;
        let page = http_url("url", &required("url", self.url.take())?)?;
        let referrer = match self.referrer.take() {
            Some(r) if !r.is_empty() => Some(any_url("referrer", &r)?),
            _ => None,
        };
        let title = self.title.take().map(|t| bounded_text("title", t, MAX_TITLE_LEN)).transpose()?;
        let session_id = ClientId::parse("sid", required("sid", self.sid.take())?, 8)?;
        let visitor_id = self.vid.take().map(|v| ClientId::parse("vid", v, 16)).transpose()?;
        let screen = match (self.w.take(), self.h.take()) {
            (Some(width), Some(height)) => Some(screen(width, height)?),
            (None, None) => None,
            _ => return Err(BeaconError::invalid("w", "and `h` come together")),
        };
        let kind = self.take_kind(kind_name)?;
        self.reject_leftovers(kind_name)?;
        Ok(Beacon { site, page, referrer, title, session_id, visitor_id, screen, kind })
    }

    /// Takes the fields this event type uses; whatever is left is a mistake.
    fn take_kind(&mut self, kind: &'static str) -> Result<EventKind, BeaconError> {
        let missing = |field| BeaconError::Missing { field, kind };
        Ok(match kind {
            "pageview" => EventKind::Pageview { props: Props::new() },
            "engagement" => {
                let ms = self.ms.take().ok_or(missing("ms"))?;
                if ms > MAX_ENGAGED_MS {
                    return Err(BeaconError::invalid("ms", format!("must be at most {MAX_ENGAGED_MS}")));
                }
                let scroll = self.scroll.take().unwrap_or(0);
                if scroll > 100 {
                    return Err(BeaconError::invalid("scroll", "is a percentage from 0 to 100"));
                }
                EventKind::Engagement { engaged_ms: ms as u32, scroll_depth: scroll as u8 }
            }
            "click" => EventKind::Click {
                name: event_name(self.name.take().ok_or(missing("name"))?)?,
                props: props(self.props.take())?,
            },
            "form" => EventKind::Form {
                form: self.target.take().map(|t| bounded_text("target", t, MAX_TEXT_LEN)).transpose()?,
                props: props(self.props.take())?,
            },
            "download" => EventKind::Download {
                target: http_url("target", &self.target.take().ok_or(missing("target"))?)?,
            },
            "outbound" => EventKind::Outbound {
                target: http_url("target", &self.target.take().ok_or(missing("target"))?)?,
            },
            "mailto" => EventKind::Mailto {
                address: sensitive("target", self.target.take().ok_or(missing("target"))?)?,
            },
            "tel" => EventKind::Tel {
                number: sensitive("target", self.target.take().ok_or(missing("target"))?)?,
            },
            "purchase" => EventKind::Purchase {
                money: money(
                    self.amount.take().ok_or(missing("amount"))?,
                    &self.currency.take().ok_or(missing("currency"))?,
                )?,
                order_id: self
                    .order_id
                    .take()
                    .map(|o| bounded_text("order_id", o, MAX_TEXT_LEN))
                    .transpose()?,
                props: props(self.props.take())?,
            },
            "custom" => EventKind::Custom {
                name: event_name(self.name.take().ok_or(missing("name"))?)?,
                props: props(self.props.take())?,
                revenue: self.revenue.take().map(|r| money(r.amount, &r.currency)).transpose()?,
            },
            "identify" => {
                let user = self.user.take().ok_or(missing("user"))?;
                EventKind::Identify {
                    user: IdentifiedUser {
                        id: bounded_text("user.id", user.id, MAX_TEXT_LEN)?,
                        email: user.email.map(|v| sensitive("user.email", v)).transpose()?,
                        name: user.name.map(|v| sensitive("user.name", v)).transpose()?,
                        avatar: user.avatar.map(|v| sensitive("user.avatar", v)).transpose()?,
                    },
                }
            }
            _ => unreachable!("kind comes from EVENT_TYPES"),
        })
    }

    fn reject_leftovers(&self, kind: &'static str) -> Result<(), BeaconError> {
        let leftovers: [(&'static str, bool); 10] = [
            ("ms", self.ms.is_some()),
            ("scroll", self.scroll.is_some()),
            ("name", self.name.is_some()),
            ("props", self.props.is_some()),
            ("target", self.target.is_some()),
            ("amount", self.amount.is_some()),
            ("currency", self.currency.is_some()),
            ("order_id", self.order_id.is_some()),
            ("revenue", self.revenue.is_some()),
            ("user", self.user.is_some()),
        ];
        match leftovers.iter().find(|(_, present)| *present) {
            Some((field, _)) => Err(BeaconError::NotApplicable { field, kind }),
            None => Ok(()),
        }
    }
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn bounded_text(field: &'static str, s: String, max: usize) -> Result<String, BeaconError> {
    if s.chars().count() > max {
        return Err(BeaconError::invalid(field, format!("is longer than {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(BeaconError::invalid(field, "contains control characters"));
    }
    Ok(s)
}

fn sensitive(field: &'static str, s: String) -> Result<Sensitive, BeaconError> {
    let s = bounded_text(field, s, MAX_TEXT_LEN)?;
    if s.trim().is_empty() {
        return Err(BeaconError::invalid(field, "is empty"));
    }
    Ok(Sensitive(s))
}

pub(crate) fn event_name(s: String) -> Result<String, BeaconError> {
    let s = bounded_text("name", s, MAX_NAME_LEN)?;
    if s.trim().is_empty() {
        return Err(BeaconError::invalid("name", "is empty"));
    }
    Ok(s)
}

/// The bound holds for the URL as stored: percent-encoding can triple a
/// non-ASCII path, and the ingest refuses a batch with a longer one.
pub(crate) fn any_url(field: &'static str, s: &str) -> Result<Url, BeaconError> {
    if s.len() > MAX_URL_LEN {
        return Err(BeaconError::invalid(field, format!("is longer than {MAX_URL_LEN} bytes")));
    }
    let url = Url::parse(s).map_err(|e| BeaconError::invalid(field, format!("is not a URL: {e}")))?;
    if url.as_str().len() > MAX_URL_LEN {
        return Err(BeaconError::invalid(field, format!("is longer than {MAX_URL_LEN} bytes once percent-encoded")));
    }
    if url.host_str().is_some_and(|h| h.len() > MAX_HOST_LEN) {
        return Err(BeaconError::invalid(field, format!("has a host longer than {MAX_HOST_LEN} characters")));
    }
    Ok(url)
}

/// A DNS name is at most 253 characters; the ingest holds hostnames (the
/// page's, and the referrer's as its source) to that.
const MAX_HOST_LEN: usize = 253;

pub(crate) fn http_url(field: &'static str, s: &str) -> Result<Url, BeaconError> {
    let url = any_url(field, s)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(BeaconError::invalid(field, "must be an http(s) URL with a host"));
    }
    Ok(url)
}

fn screen(width: u32, height: u32) -> Result<Screen, BeaconError> {
    for (field, v) in [("w", width), ("h", height)] {
        if v == 0 || v > MAX_SCREEN_PX {
            return Err(BeaconError::invalid(field, format!("must be 1 to {MAX_SCREEN_PX} pixels")));
        }
    }
    Ok(Screen { width, height })
}

pub(crate) fn props(raw: Option<serde_json::Map<String, Value>>) -> Result<Props, BeaconError> {
    let Some(raw) = raw else { return Ok(Props::new()) };
    if raw.len() > MAX_PROPS {
        return Err(BeaconError::invalid("props", format!("has {} entries; the limit is {MAX_PROPS}", raw.len())));
    }
    raw.into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.chars().count() > MAX_PROP_KEY_LEN {
                return Err(BeaconError::invalid("props", format!("keys are 1 to {MAX_PROP_KEY_LEN} characters")));
            }
            let v = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return Err(BeaconError::invalid("props", format!("value of `{}` must be a string, number or boolean", truncate(&k, 40)))),
            };
            if v.chars().count() > MAX_PROP_VALUE_LEN {
                return Err(BeaconError::invalid("props", format!("values are at most {MAX_PROP_VALUE_LEN} characters")));
            }
            Ok((k, v))
        })
        .collect()
}

/// `amount` is an integer in minor units (`1999`) or a decimal string in
/// major units (`"19.99"`), never a float: floats cannot hold money exactly.
fn money(amount: Value, currency: &str) -> Result<Money, BeaconError> {
    let currency = IsoCurrency::from_code(&currency.to_ascii_uppercase())
        .filter(|_| currency.len() == 3)
        .map(Currency)
        .ok_or_else(|| BeaconError::invalid("currency", format!("`{}` is not an ISO 4217 code", truncate(currency, 8))))?;
    let minor = match amount {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| BeaconError::invalid("amount", "as a number must be an integer in minor units; send decimals as a string"))?,
        Value::String(s) => decimal_to_minor(&s, currency.exponent())?,
        _ => return Err(BeaconError::invalid("amount", "must be an integer or a decimal string")),
    };
    if !(0..=MAX_AMOUNT_MINOR).contains(&minor) {
        return Err(BeaconError::invalid("amount", format!("must be 0 to {MAX_AMOUNT_MINOR} minor units")));
    }
    Ok(Money { minor, currency })
}

fn decimal_to_minor(s: &str, exponent: u32) -> Result<i64, BeaconError> {
    let bad = || BeaconError::invalid("amount", format!("`{}` is not a decimal like \"19.99\"", truncate(s, 24)));
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 13 || !digits(whole) || !digits(frac) {
        return Err(bad());
    }
    if frac.len() > exponent as usize {
        return Err(BeaconError::invalid("amount", format!("has more than {exponent} decimals for this currency")));
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let mut frac_minor: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
    for _ in frac.len()..exponent as usize {
        frac_minor *= 10;
    }
    Ok(whole * 10_i64.pow(exponent) + frac_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "0192f0c1-7a4e-7000-8000-000000000001";

    fn body(extra: &str) -> String {
        format!(r#"{{"site":"{SITE}","url":"https://example.com/a?utm_source=x","sid":"abcdEFGH1234"{extra}}}"#)
    }

    fn err(extra: &str) -> String {
        Beacon::parse(body(extra).as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn walking_skeleton_pageview() {
        let b = Beacon::parse(
            format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://example.com/a","referrer":"https://www.google.com/","title":"A","sid":"r4nd0m-sess","w":1920,"h":1080}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(b.kind, EventKind::Pageview { props: Props::new() });
        assert_eq!(b.page.path(), "/a");
        assert_eq!(b.referrer.unwrap().host_str(), Some("www.google.com"));
        assert_eq!(b.screen, Some(Screen { width: 1920, height: 1080 }));
    }

    #[test]
    fn every_type_parses() {
        let cases = [
            r#","type":"pageview""#,
            r#","type":"engagement","ms":1500,"scroll":80"#,
            r#","type":"click","name":"Signup","props":{"plan":"pro","seats":3,"trial":true}"#,
            r#","type":"form","target":"contact""#,
            r#","type":"download","target":"https://example.com/a.pdf""#,
            r#","type":"outbound","target":"https://other.org/""#,
            r#","type":"mailto","target":"hi@example.com""#,
            r#","type":"tel","target":"+44 20 7946 0000""#,
            r#","type":"purchase","amount":"19.99","currency":"usd","order_id":"A-1""#,
            r#","type":"custom","name":"Upgrade","revenue":{"amount":500,"currency":"EUR"}"#,
            r#","type":"identify","user":{"id":"u1","email":"a@b.c","name":"Ann","avatar":"https://x/y.png"}"#,
        ];
        for (case, ty) in cases.iter().zip(EventType::ALL) {
            let b = Beacon::parse(body(case).as_bytes()).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(b.kind.event_type(), ty);
        }
    }

    #[test]
    fn money_is_exact() {
        let b = Beacon::parse(body(r#","type":"purchase","amount":"19.9","currency":"USD""#).as_bytes()).unwrap();
        let EventKind::Purchase { money, .. } = b.kind else { panic!() };
        assert_eq!((money.minor, money.currency.code()), (1990, "USD"));
        let b = Beacon::parse(body(r#","type":"purchase","amount":"1500","currency":"JPY""#).as_bytes()).unwrap();
        let EventKind::Purchase { money, .. } = b.kind else { panic!() };
        assert_eq!(money.minor, 1500);
        assert!(err(r#","type":"purchase","amount":"1.5","currency":"JPY""#).contains("decimals"));
        assert!(err(r#","type":"purchase","amount":19.99,"currency":"USD""#).contains("integer"));
        assert!(err(r#","type":"purchase","amount":"1","currency":"XYZ""#).contains("ISO 4217"));
        assert!(err(r#","type":"purchase","amount":-5,"currency":"USD""#).contains("minor units"));
    }

    #[test]
    fn bad_bodies_have_reasons() {
        assert!(Beacon::parse(b"{nope").unwrap_err().to_string().starts_with("invalid JSON"));
        assert!(Beacon::parse(&vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err().to_string().contains("limit"));
        assert!(err(r#","type":"pageviews""#).contains("unknown event type `pageviews`"));
        assert!(err("").contains("`type` is required"));
        assert!(err(r#","type":"pageview","w":"wide","h":1"#).contains("invalid type"));
        assert!(err(r#","type":"pageview","color":"red""#).contains("unknown field `color`"));
        assert!(err(r#","type":"pageview","ms":3"#).contains("`ms` does not apply to a pageview"));
        assert!(err(r#","type":"engagement""#).contains("`ms` is required"));
        assert!(err(r#","type":"engagement","ms":1,"scroll":101"#).contains("percentage"));
        assert!(err(r#","type":"download","target":"javascript:alert(1)""#).contains("http(s)"));
        assert!(err(r#","type":"pageview","w":0,"h":1"#).contains("pixels"));
        let many: Vec<String> = (0..31).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert!(err(&format!(r#","type":"custom","name":"x","props":{{{}}}"#, many.join(","))).contains("limit is 30"));
        assert!(err(r#","type":"custom","name":"x","props":{"a":{"b":1}}"#).contains("string, number or boolean"));
    }

    /// Found by the fuzzer (fuzz/, target anonymised_event): a 1.5 kB URL with
    /// a non-ASCII path passed the 2048-byte bound, but percent-encoded it
    /// was 4 kB and the ingest refused the whole batch holding it.
    #[test]
    fn urls_are_bounded_as_stored() {
        let long_path = format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://example.com/{}","sid":"abcdefgh"}}"#, "é".repeat(700));
        assert!(Beacon::parse(long_path.as_bytes()).unwrap_err().to_string().contains("once percent-encoded"));
        let long_referrer = body(&format!(r#","type":"pageview","referrer":"https://example.org/{}""#, "é".repeat(700)));
        assert!(Beacon::parse(long_referrer.as_bytes()).unwrap_err().to_string().contains("`referrer`"));
        let long_host = format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://{}.example.com/","sid":"abcdefgh"}}"#, "a.".repeat(130));
        assert!(Beacon::parse(long_host.as_bytes()).unwrap_err().to_string().contains("host longer than 253"));
        // Found by the fuzzer as well: a referrer's host became the event's
        // source, past the ingest's 256 characters.
        let long_referrer_host = body(&format!(r#","type":"pageview","referrer":"https://{}.example.org/""#, "k".repeat(260)));
        assert!(Beacon::parse(long_referrer_host.as_bytes()).unwrap_err().to_string().contains("`referrer` has a host longer than 253"));
        let fine = format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://example.com/{}","sid":"abcdefgh"}}"#, "é".repeat(300));
        assert!(Beacon::parse(fine.as_bytes()).is_ok());
    }

    #[test]
    fn missing_or_bad_site_and_sid() {
        let no_site = r#"{"type":"pageview","url":"https://e.com/","sid":"abcdefgh"}"#;
        assert_eq!(Beacon::parse(no_site.as_bytes()).unwrap_err(), BeaconError::Missing { field: "site", kind: "pageview" });
        let bad_site = r#"{"site":"nope","type":"pageview","url":"https://e.com/","sid":"abcdefgh"}"#;
        assert!(matches!(Beacon::parse(bad_site.as_bytes()).unwrap_err(), BeaconError::BadSite(_)));
        let bad_sid = format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://e.com/","sid":"a b"}}"#);
        assert!(Beacon::parse(bad_sid.as_bytes()).unwrap_err().to_string().contains("`sid`"));
    }

    #[test]
    fn sensitive_values_do_not_debug_print() {
        let b = Beacon::parse(body(r#","type":"mailto","target":"secret@example.com""#).as_bytes()).unwrap();
        assert!(!format!("{b:?}").contains("secret@example.com"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Arbitrary bytes never panic: they parse or get a reason.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Beacon::parse(&bytes);
        }

        /// Arbitrary values in every field of a well-formed object never panic.
        #[test]
        fn arbitrary_fields_never_panic(
            kind in "(pageview|engagement|click|form|download|outbound|mailto|tel|purchase|custom|identify|\\PC{0,12})",
            url in "\\PC{0,80}", sid in "\\PC{0,70}", name in "\\PC{0,130}", amount in "\\PC{0,20}",
            ms in any::<i64>(), w in any::<i64>(),
        ) {
            let body = serde_json::json!({
                "site": "0192f0c1-7a4e-7000-8000-000000000001", "type": kind, "url": url, "sid": sid,
                "name": name, "amount": amount, "currency": "USD", "ms": ms, "w": w, "h": w,
            });
            let _ = Beacon::parse(body.to_string().as_bytes());
        }
    }
}
