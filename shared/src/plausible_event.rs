//! Plausible's Events API payload (`POST /api/event`, what Plausible's tracker
//! and its server-side libraries send), parsed into a typed [`PlausibleEvent`]
//! and turned into our [`Beacon`], so it runs through the very pipeline a
//! beacon on `POST /api/e` does. The rules follow Plausible's own ingestion:
//! long or short field names, `domain` as a comma-separated list, props as an
//! object or a JSON string, an invalid revenue ignored (the event kept). Our
//! own stored bounds (prop sizes, URL length) apply on top; the README's
//! "Plausible Events API and tracker" lists where the two differ.

use serde_json::{Map, Value};
use url::{Host, Url};

use crate::beacon::{
    self, Beacon, BeaconError, ClientId, Currency, EventKind, MAX_AMOUNT_MINOR, MAX_BODY_BYTES, MAX_ENGAGED_MS, Money, Props,
};
use crate::site::SiteId;

/// Plausible keeps the first 30 props of an event and drops the rest.
pub const MAX_PROPS: usize = 30;
/// Plausible refuses an event with a longer prop key or value.
pub const MAX_PROP_KEY_BYTES: usize = 300;
pub const MAX_PROP_VALUE_BYTES: usize = 2000;
/// Sites one event may name in `domain` (each is a lookup).
pub const MAX_DOMAINS: usize = 10;
/// Plausible ignores engagement times this large (an old tracker's bug).
const TOO_LARGE_ENGAGEMENT_MS: u64 = 30 * 24 * 3_600_000;

/// The event names Plausible's tracker gives its automatic events.
pub const PAGEVIEW: &str = "pageview";
pub const ENGAGEMENT: &str = "engagement";
pub const OUTBOUND_LINK: &str = "Outbound Link: Click";
pub const FILE_DOWNLOAD: &str = "File Download";
pub const FORM_SUBMISSION: &str = "Form: Submission";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlausibleEventError {
    #[error("body is {0} bytes; the limit is {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("`{0}` is required")]
    Missing(&'static str),
    #[error("`{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
    /// One of our own bounds (URL, event name, prop sizes), with its reason.
    #[error(transparent)]
    Beacon(#[from] BeaconError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PlausibleEventError {
    PlausibleEventError::Invalid { field, reason: reason.into() }
}

/// A site named in `domain`: by its domain (Plausible's way), or by our site
/// id (an unambiguous spelling, since a domain is unique only within one organisation).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SiteRef {
    Id(SiteId),
    /// Lower case, IDNA as punycode, without a leading `www.`.
    Domain(String),
}

/// What the event is, in our terms.
#[derive(Debug, Clone, PartialEq)]
pub enum PlausibleKind {
    Pageview,
    Engagement {
        engaged_ms: u32,
        scroll_depth: u8,
    },
    /// `Outbound Link: Click` with an http(s) `props.url`.
    OutboundLink {
        target: Url,
    },
    /// `File Download` with an http(s) `props.url`.
    FileDownload {
        target: Url,
    },
    FormSubmission,
    /// Any other name (and the two above without a usable `props.url`).
    Custom,
}

/// An Events API payload whose every field has been checked: it converts to
/// a beacon for each site it names without another error.
#[derive(Debug, Clone, PartialEq)]
pub struct PlausibleEvent {
    pub name: String,
    pub page: Url,
    /// At least one, at most [`MAX_DOMAINS`], no repeats.
    pub sites: Vec<SiteRef>,
    pub referrer: Option<Url>,
    /// Plausible's filtering applied, within our stored bounds.
    pub props: Props,
    /// Custom events only; `None` also when the payload's revenue was invalid.
    pub revenue: Option<Money>,
    /// `false` for `interactive: false` (see the README for how we count it).
    pub interactive: bool,
    pub hash_mode: bool,
    pub kind: PlausibleKind,
}

impl PlausibleEvent {
    /// Parse a request body: JSON whatever the Content-Type said.
    pub fn parse(body: &[u8]) -> Result<Self, PlausibleEventError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(PlausibleEventError::TooLarge(body.len()));
        }
        let raw: Value = serde_json::from_slice(body).map_err(|e| PlausibleEventError::Json(e.to_string()))?;
        let Value::Object(raw) = raw else {
            return Err(PlausibleEventError::Json("the body must be a JSON object".into()));
        };
        let name = event_name(pick(&raw, &["n", "name"]))?;
        let page = page_url(pick(&raw, &["u", "url"]))?;
        let sites = sites(pick(&raw, &["d", "domain"]), &page)?;
        let referrer = match pick(&raw, &["r", "referrer"]) {
            // Plausible stores whatever it is given; we keep only what parses as a URL.
            Some(Value::String(r)) if !r.is_empty() => beacon::any_url("referrer", r).ok(),
            _ => None,
        };
        let props = plausible_props(pick(&raw, &["m", "meta", "p", "props"]))?;
        let kind = kind(&name, &raw, &props)?;
        let revenue = match kind {
            PlausibleKind::Custom => pick(&raw, &["revenue", "$"]).and_then(revenue),
            _ => None,
        };
        let interactive = !matches!(pick(&raw, &["i", "interactive"]), Some(Value::Bool(false)));
        let hash_mode = matches!(pick(&raw, &["h", "hashMode"]), Some(h) if h.as_u64() == Some(1) || h.as_str() == Some("1") || h.as_bool() == Some(true));
        // Our stored bounds on what is kept, after Plausible's own filtering.
        let props = beacon::props(Some(props.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))?;
        Ok(Self { name, page, sites, referrer, props, revenue, interactive, hash_mode, kind })
    }

    /// The beacon for one of the sites this event names. `session` is random:
    /// Plausible's payload has no session id, and ours only links a page load's
    /// events (sessions are derived from the visitor, README "Definitions").
    pub fn to_beacon(&self, site: SiteId, session: [u8; 16]) -> Beacon {
        let kind = match &self.kind {
            PlausibleKind::Pageview => EventKind::Pageview { props: self.props.clone() },
            PlausibleKind::Engagement { engaged_ms, scroll_depth } => {
                EventKind::Engagement { engaged_ms: *engaged_ms, scroll_depth: *scroll_depth }
            }
            PlausibleKind::OutboundLink { target } => EventKind::Outbound { target: target.clone() },
            PlausibleKind::FileDownload { target } => EventKind::Download { target: target.clone() },
            PlausibleKind::FormSubmission => EventKind::Form { form: None, props: self.props.clone() },
            PlausibleKind::Custom => EventKind::Custom { name: self.name.clone(), props: self.props.clone(), revenue: self.revenue },
        };
        Beacon {
            site,
            page: self.page.clone(),
            referrer: self.referrer.clone(),
            title: None,
            session_id: ClientId::from_random(session),
            visitor_id: None,
            screen: None,
            kind,
        }
    }
}

/// Plausible reads `n || name`: the first of the spellings that is set.
fn pick<'a>(raw: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| raw.get(*n).filter(|v| !v.is_null()))
}

fn event_name(v: Option<&Value>) -> Result<String, PlausibleEventError> {
    match v {
        None => Err(PlausibleEventError::Missing("name")),
        Some(Value::String(s)) => Ok(beacon::event_name(s.clone())?),
        // Plausible takes integer names (404 tracking sends the status).
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(_) => Err(invalid("name", "must be a string")),
    }
}

fn page_url(v: Option<&Value>) -> Result<Url, PlausibleEventError> {
    match v {
        None => Err(PlausibleEventError::Missing("url")),
        Some(Value::String(s)) => Ok(beacon::http_url("url", s)?),
        Some(_) => Err(invalid("url", "must be a string")),
    }
}

fn sites(v: Option<&Value>, page: &Url) -> Result<Vec<SiteRef>, PlausibleEventError> {
    let raw = match v {
        None => page.host_str().unwrap_or_default(),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(invalid("domain", "must be a string (a domain, or several separated by commas)")),
    };
    let mut sites: Vec<SiteRef> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let site = match part.parse::<SiteId>() {
            Ok(id) => SiteRef::Id(id),
            Err(_) => SiteRef::Domain(normalised_domain(part)),
        };
        if !sites.contains(&site) {
            sites.push(site);
        }
    }
    match sites.len() {
        0 => Err(invalid("domain", "can't be blank")),
        n if n > MAX_DOMAINS => Err(invalid("domain", format!("names {n} sites; the limit is {MAX_DOMAINS}"))),
        _ => Ok(sites),
    }
}

/// As sites store their domain: lower case, IDNA as punycode; and, as
/// Plausible does, without `www.`.
fn normalised_domain(raw: &str) -> String {
    let host = match Host::parse(raw) {
        Ok(Host::Domain(d)) => d,
        _ => raw.to_ascii_lowercase(),
    };
    host.strip_prefix("www.").map(str::to_owned).unwrap_or(host)
}

/// Plausible's rules: an object or a string holding one (anything else is no
/// props); list, map, null and blank values are dropped, numbers and booleans
/// kept as text; the first 30 are kept; a key over 300 bytes or a value over
/// 2000 refuses the event.
fn plausible_props(v: Option<&Value>) -> Result<Props, PlausibleEventError> {
    let decoded;
    let map = match v {
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) => {
            decoded = serde_json::from_str::<Map<String, Value>>(s).unwrap_or_default();
            &decoded
        }
        _ => return Ok(Props::new()),
    };
    let props: Props = map
        .iter()
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null | Value::Array(_) | Value::Object(_) => return None,
            };
            (!k.trim_start().is_empty() && !v.trim_start().is_empty()).then(|| (k.clone(), v))
        })
        .take(MAX_PROPS)
        .collect();
    if props.iter().any(|(k, v)| k.len() > MAX_PROP_KEY_BYTES || v.len() > MAX_PROP_VALUE_BYTES) {
        return Err(invalid(
            "props",
            format!("keys should have at most {MAX_PROP_KEY_BYTES} bytes and values {MAX_PROP_VALUE_BYTES} bytes"),
        ));
    }
    Ok(props)
}

fn kind(name: &str, raw: &Map<String, Value>, props: &Props) -> Result<PlausibleKind, PlausibleEventError> {
    let link = || props.get("url").and_then(|u| beacon::http_url("url", u).ok());
    Ok(match name {
        PAGEVIEW => PlausibleKind::Pageview,
        ENGAGEMENT => engagement(raw.get("sd"), raw.get("e"))?,
        OUTBOUND_LINK => link().map_or(PlausibleKind::Custom, |target| PlausibleKind::OutboundLink { target }),
        FILE_DOWNLOAD => link().map_or(PlausibleKind::Custom, |target| PlausibleKind::FileDownload { target }),
        FORM_SUBMISSION => PlausibleKind::FormSubmission,
        _ => PlausibleKind::Custom,
    })
}

/// A whole number, or a string of one (Plausible takes both).
fn whole_number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `sd` (scroll depth %, above 100 read as 100) and `e` (engaged ms); at
/// least one must be valid, as Plausible requires.
fn engagement(sd: Option<&Value>, e: Option<&Value>) -> Result<PlausibleKind, PlausibleEventError> {
    let scroll = whole_number(sd).filter(|s| *s >= 0).map(|s| s.min(100) as u8);
    let engaged = whole_number(e).and_then(|e| u64::try_from(e).ok()).filter(|e| *e < TOO_LARGE_ENGAGEMENT_MS);
    if scroll.is_none() && engaged.is_none() {
        return Err(invalid("engagement", "events need a valid integer in at least one of `sd` and `e`"));
    }
    // Our SDK reports at most a day per page; so is a longer engaged time kept.
    let engaged_ms = engaged.unwrap_or(0).min(MAX_ENGAGED_MS) as u32;
    Ok(PlausibleKind::Engagement { engaged_ms, scroll_depth: scroll.unwrap_or(0) })
}

/// `{amount, currency}` (or a JSON string of it): an ISO 4217 code and an
/// amount in major units as a number or a decimal string. Anything else is
/// ignored, as Plausible ignores it.
fn revenue(v: &Value) -> Option<Money> {
    let decoded;
    let map = match v {
        Value::Object(m) => m,
        Value::String(s) => {
            decoded = serde_json::from_str::<Map<String, Value>>(s).ok()?;
            &decoded
        }
        _ => return None,
    };
    let currency = Currency::from_exact_code(map.get("currency")?.as_str()?)?;
    let amount = match map.get("amount")? {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let minor = major_to_minor(&amount, currency.exponent())?;
    (0..=MAX_AMOUNT_MINOR).contains(&minor).then_some(Money { minor, currency })
}

/// A decimal in major units to the currency's minor units, rounded half away
/// from zero (Plausible keeps the decimal; we store minor units).
fn major_to_minor(s: &str, exponent: u32) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !is_digits(whole) || !is_digits(frac) || whole.len() > 15 {
        return None;
    }
    let exponent = exponent as usize;
    let kept: String = frac.chars().chain(std::iter::repeat('0')).take(exponent).collect();
    let round_up = frac.as_bytes().get(exponent).is_some_and(|d| *d >= b'5');
    let minor = format!("{whole}{kept}").parse::<i64>().ok()? + i64::from(round_up);
    Some(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: &str = "0192f0c1-7a4e-7000-8000-000000000001";

    fn parse(body: &str) -> PlausibleEvent {
        PlausibleEvent::parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    fn err(body: &str) -> String {
        PlausibleEvent::parse(body.as_bytes()).unwrap_err().to_string()
    }

    fn site() -> SiteId {
        SITE.parse().unwrap()
    }

    /// The Events API documentation's example.
    #[test]
    fn the_documented_pageview() {
        let e = parse(r#"{"name":"pageview","url":"http://dummy.site","domain":"dummy.site"}"#);
        assert_eq!((e.name.as_str(), e.page.as_str(), e.kind.clone()), ("pageview", "http://dummy.site/", PlausibleKind::Pageview));
        assert_eq!(e.sites, vec![SiteRef::Domain("dummy.site".into())]);
        let b = e.to_beacon(site(), [7; 16]);
        assert_eq!((b.site, b.kind, b.visitor_id), (site(), EventKind::Pageview { props: Props::new() }, None));
        assert_eq!(b.session_id.as_str().len(), 32);
    }

    #[test]
    fn short_and_long_names_mean_the_same() {
        let short = parse(
            r#"{"n":"Signup","u":"https://www.example.com/a?utm_source=x","d":"example.com","r":"https://news.ycombinator.com/","p":{"plan":"pro"},"i":false,"h":1}"#,
        );
        let long = parse(
            r#"{"name":"Signup","url":"https://www.example.com/a?utm_source=x","domain":"example.com","referrer":"https://news.ycombinator.com/","props":{"plan":"pro"},"interactive":false,"hashMode":1}"#,
        );
        assert_eq!(short, long);
        assert_eq!(short.referrer.as_ref().and_then(Url::host_str), Some("news.ycombinator.com"));
        assert!(!short.interactive && short.hash_mode);
        assert_eq!(short.props.get("plan").map(String::as_str), Some("pro"));
        // The short name wins when both are set, as in Plausible (`n || name`).
        assert_eq!(parse(r#"{"n":"A","name":"B","u":"https://e.com/"}"#).name, "A");
    }

    #[test]
    fn domains_are_a_list_without_www_or_the_urls_host() {
        let e = parse(r#"{"n":"pageview","u":"https://www.Example.com/","d":" www.a.com, B.com ,a.com,"}"#);
        assert_eq!(e.sites, vec![SiteRef::Domain("a.com".into()), SiteRef::Domain("b.com".into())]);
        let e = parse(r#"{"n":"pageview","u":"https://www.Example.com/"}"#);
        assert_eq!(e.sites, vec![SiteRef::Domain("example.com".into())]);
        let e = parse(r#"{"n":"pageview","u":"https://bücher.de/","d":"bücher.de"}"#);
        assert_eq!(e.sites, vec![SiteRef::Domain("xn--bcher-kva.de".into())]);
        let e = parse(&format!(r#"{{"n":"pageview","u":"https://e.com/","d":"{SITE}"}}"#));
        assert_eq!(e.sites, vec![SiteRef::Id(site())]);
        assert!(err(r#"{"n":"pageview","u":"https://e.com/","d":" "}"#).contains("`domain` can't be blank"));
        assert!(err(r#"{"n":"pageview","u":"https://e.com/","d":7}"#).contains("`domain` must be a string"));
        let many: Vec<String> = (0..11).map(|i| format!("s{i}.com")).collect();
        assert!(err(&format!(r#"{{"n":"pageview","u":"https://e.com/","d":"{}"}}"#, many.join(","))).contains("limit is 10"));
    }

    #[test]
    fn props_as_object_or_json_string_filtered_like_plausible() {
        let object = parse(
            r#"{"n":"Signup","u":"https://e.com/","p":{"plan":"pro","seats":3,"trial":true,"blank":" ","none":null,"list":[1],"map":{"a":1}}}"#,
        );
        let string = parse(
            r#"{"n":"Signup","u":"https://e.com/","p":"{\"plan\":\"pro\",\"seats\":3,\"trial\":true,\"blank\":\" \",\"none\":null}"}"#,
        );
        let expected: Props = [("plan", "pro"), ("seats", "3"), ("trial", "true")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!((&object.props, &string.props), (&expected, &expected));
        // `m` and `meta` are older spellings; a string that is no JSON object is no props.
        assert_eq!(parse(r#"{"n":"x","u":"https://e.com/","meta":{"a":"b"}}"#).props.len(), 1);
        assert!(parse(r#"{"n":"x","u":"https://e.com/","p":"not json"}"#).props.is_empty());
        assert!(parse(r#"{"n":"x","u":"https://e.com/","p":[1,2]}"#).props.is_empty());
        // The first 30 are kept.
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i:02}":"v""#)).collect();
        assert_eq!(parse(&format!(r#"{{"n":"x","u":"https://e.com/","p":{{{}}}}}"#, many.join(","))).props.len(), 30);
        // Plausible's limits refuse the event; so do ours, which are smaller.
        let long_value = format!(r#"{{"n":"x","u":"https://e.com/","p":{{"k":"{}"}}}}"#, "v".repeat(2001));
        assert!(err(&long_value).contains("at most 300 bytes and values 2000 bytes"));
        let ours = format!(r#"{{"n":"x","u":"https://e.com/","p":{{"k":"{}"}}}}"#, "v".repeat(300));
        assert!(err(&ours).contains("values are at most 256 characters"));
    }

    #[test]
    fn revenue_is_kept_when_valid_and_ignored_otherwise() {
        let money = |body: &str| parse(body).revenue.map(|m| (m.minor, m.currency.code()));
        let base = |rev: &str| format!(r#"{{"n":"Purchase","u":"https://e.com/","$":{rev}}}"#);
        assert_eq!(money(&base(r#"{"amount":"15.99","currency":"USD"}"#)), Some((1599, "USD")));
        assert_eq!(money(&base(r#"{"amount":15.99,"currency":"USD"}"#)), Some((1599, "USD")));
        assert_eq!(money(&base(r#"{"amount":15,"currency":"EUR"}"#)), Some((1500, "EUR")));
        assert_eq!(money(&base(r#"{"amount":"1500","currency":"JPY"}"#)), Some((1500, "JPY")));
        assert_eq!(money(&base(r#"{"amount":"0.125","currency":"USD"}"#)), Some((13, "USD")));
        assert_eq!(money(&base(r#""{\"amount\":\"2.50\",\"currency\":\"GBP\"}""#)), Some((250, "GBP")));
        assert_eq!(money(r#"{"n":"Purchase","u":"https://e.com/","revenue":{"amount":"1","currency":"USD"}}"#), Some((100, "USD")));
        for bad in [
            r#"{"amount":"15.99","currency":"usd"}"#,
            r#"{"amount":"15.99","currency":"XYZ"}"#,
            r#"{"amount":"abc","currency":"USD"}"#,
            r#"{"amount":"-3","currency":"USD"}"#,
            r#"{"amount":1e30,"currency":"USD"}"#,
            r#"{"amount":"1"}"#,
            r#""not json""#,
            r#"[1]"#,
        ] {
            let e = parse(&base(bad));
            assert_eq!((e.revenue, e.name.as_str()), (None, "Purchase"), "{bad}");
        }
        // Revenue belongs to custom events only.
        assert_eq!(money(r#"{"n":"pageview","u":"https://e.com/","$":{"amount":"1","currency":"USD"}}"#), None);
    }

    #[test]
    fn automatic_events_map_onto_ours() {
        let kind = |body: &str| parse(body).to_beacon(site(), [1; 16]).kind;
        assert_eq!(
            kind(r#"{"n":"Outbound Link: Click","u":"https://e.com/","p":{"url":"https://other.org/x"}}"#),
            EventKind::Outbound { target: Url::parse("https://other.org/x").unwrap() }
        );
        assert_eq!(
            kind(r#"{"n":"File Download","u":"https://e.com/","p":{"url":"https://e.com/a.pdf"}}"#),
            EventKind::Download { target: Url::parse("https://e.com/a.pdf").unwrap() }
        );
        assert_eq!(kind(r#"{"n":"Form: Submission","u":"https://e.com/"}"#), EventKind::Form { form: None, props: Props::new() });
        // Plausible's pageviews may carry props (the tracker's `customProperties`).
        let author: Props = [("author".to_owned(), "ann".to_owned())].into();
        assert_eq!(kind(r#"{"n":"pageview","u":"https://e.com/","p":{"author":"ann"}}"#), EventKind::Pageview { props: author });
        // Without a usable link it stays a named custom event, as in Plausible.
        assert!(
            matches!(kind(r#"{"n":"File Download","u":"https://e.com/","p":{"url":"ftp://x/a.pdf"}}"#), EventKind::Custom { name, .. } if name == "File Download")
        );
        assert_eq!(kind(r#"{"n":404,"u":"https://e.com/"}"#).event_name(), "404");
    }

    #[test]
    fn engagement_needs_sd_or_e() {
        let kind = |body: &str| parse(body).kind;
        assert_eq!(
            kind(r#"{"n":"engagement","u":"https://e.com/","sd":80,"e":15000,"v":36}"#),
            PlausibleKind::Engagement { engaged_ms: 15000, scroll_depth: 80 }
        );
        assert_eq!(
            kind(r#"{"n":"engagement","u":"https://e.com/","sd":"120"}"#),
            PlausibleKind::Engagement { engaged_ms: 0, scroll_depth: 100 }
        );
        assert_eq!(
            kind(r#"{"n":"engagement","u":"https://e.com/","e":172800000}"#),
            PlausibleKind::Engagement { engaged_ms: MAX_ENGAGED_MS as u32, scroll_depth: 0 }
        );
        assert!(err(r#"{"n":"engagement","u":"https://e.com/"}"#).contains("at least one of `sd` and `e`"));
        assert!(err(r#"{"n":"engagement","u":"https://e.com/","e":2592000000}"#).contains("at least one"));
    }

    #[test]
    fn bad_payloads_have_reasons() {
        assert!(err("{nope").starts_with("invalid JSON"));
        assert!(err("[1]").contains("must be a JSON object"));
        assert!(err(r#"{"u":"https://e.com/"}"#).contains("`name` is required"));
        assert!(err(r#"{"n":"pageview"}"#).contains("`url` is required"));
        assert!(err(r#"{"n":"pageview","u":5}"#).contains("`url` must be a string"));
        assert!(err(r#"{"n":"pageview","u":"not a url"}"#).contains("`url` is not a URL"));
        assert!(err(r#"{"n":"pageview","u":"data:text/plain,hi"}"#).contains("http(s)"));
        assert!(err(r#"{"n":"","u":"https://e.com/"}"#).contains("`name` is empty"));
        assert!(err(&format!(r#"{{"n":"{}","u":"https://e.com/"}}"#, "x".repeat(121))).contains("longer than 120"));
        assert!(err(r#"{"n":true,"u":"https://e.com/"}"#).contains("`name` must be a string"));
        assert!(PlausibleEvent::parse(&vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err().to_string().contains("limit"));
    }

    #[test]
    fn a_referrer_that_is_no_url_is_dropped_not_refused() {
        assert_eq!(parse(r#"{"n":"pageview","u":"https://e.com/","r":"nonsense"}"#).referrer, None);
        assert_eq!(parse(r#"{"n":"pageview","u":"https://e.com/","r":null}"#).referrer, None);
    }
}
