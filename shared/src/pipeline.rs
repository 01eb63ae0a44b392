//! Beacon → anonymised event, as a chain of small named steps:
//! parse → drop bots → enrich → hash → anonymise. The request's IP and
//! User-Agent enter here and only their salted hash and the coarse facts
//! derived from them (browser, OS, device, country, region, city) leave.

use std::net::IpAddr;

use serde::Serialize;
use url::Url;

use crate::beacon::{Beacon, BeaconError, EventKind};
use crate::bots::{BotFilter, BotReason, HostingRanges, Pace, RequestSignals};
use crate::event::{AnonymisedEvent, Enrichment, EventId, SensitiveFields, Utm};
use crate::geo::{GeoDatabases, Location};
use crate::sources::SourceTable;
use crate::user_agent::{ClientHints, UserAgentParser};
use crate::visitor::{Salt, SessionHash, VisitorHash};

/// What the request itself says about the visitor. Borrowed, never stored.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Processed {
    Event(Box<AnonymisedEvent>),
    Bot(BotReason),
}

/// Built once (per process, per worker isolate): it holds the compiled bot
/// patterns, the source table and the geo databases.
#[derive(Default)]
pub struct Pipeline {
    bots: BotFilter,
    /// Pageviews per visitor in the last seconds, in memory only.
    pace: Pace,
    /// Where a request's network is not given (local ingest, `enrich`).
    hosting: HostingRanges,
    agents: UserAgentParser,
    sources: SourceTable,
    geo: GeoDatabases,
}

/// Everything the pipeline concludes about one request, for `engagetrack
/// enrich`: the same code as the edge, so owners can see why a visit was
/// classified (or dropped) as it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Explanation {
    pub bot: bool,
    pub bot_reason: Option<String>,
    #[serde(flatten)]
    pub enrichment: Enrichment,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

impl Pipeline {
    pub fn new(geo: GeoDatabases) -> Self {
        Self { geo, ..Self::default() }
    }

    /// Another bot filter (`tools/ua-eval` compares lists with it).
    pub fn with_bot_filter(mut self, bots: BotFilter) -> Self {
        self.bots = bots;
        self
    }

    /// Hosting networks' IP ranges, for requests whose ASN the caller does not know.
    pub fn with_hosting_ranges(mut self, hosting: HostingRanges) -> Self {
        self.hosting = hosting;
        self
    }

    fn with_asn<'a>(&self, signals: &RequestSignals<'a>, ip: Option<IpAddr>) -> RequestSignals<'a> {
        RequestSignals { asn: signals.asn.or_else(|| ip.and_then(|ip| self.hosting.lookup(ip))), ..*signals }
    }

    /// The whole chain for one beacon. `salt` must be the salt of the UTC
    /// day of `id`'s timestamp.
    pub fn process(&self, body: &[u8], visit: Visit<'_>, salt: &Salt, id: EventId) -> Result<Processed, BeaconError> {
        let beacon = Beacon::parse(body)?;
        Ok(match self.bot(&beacon, visit) {
            Some(reason) => Processed::Bot(reason),
            None => Processed::Event(Box::new(self.anonymise(beacon, visit, salt, id))),
        })
    }

    /// The User-Agent and referrer alone (seeds, tests, callers that saw no
    /// request headers).
    pub fn bot(&self, beacon: &Beacon, visit: Visit<'_>) -> Option<BotReason> {
        self.bots.check(visit.user_agent, beacon.referrer.as_ref())
    }

    /// A beacon as received from a browser: its headers and network count
    /// too, and so does how fast this visitor's pageviews arrive (`now_ms`).
    pub fn screen(&self, beacon: &Beacon, visit: Visit<'_>, signals: &RequestSignals<'_>, now_ms: u64) -> Option<BotReason> {
        let signals = self.with_asn(signals, Some(visit.ip));
        // Pace counts only beside a hosting network (nothing drops without
        // one), so ordinary beacons skip its lock and map.
        let from_hosting = signals.asn.is_some_and(|asn| self.bots.hosting_network(asn).is_some());
        let counted = from_hosting && matches!(beacon.kind, EventKind::Pageview { .. });
        let pageviews = counted.then(|| self.pace.count(pace_key(beacon, visit), now_ms));
        self.bots.check_request(visit.user_agent, beacon.referrer.as_ref(), &signals, pageviews)
    }

    pub fn anonymise(&self, beacon: Beacon, visit: Visit<'_>, salt: &Salt, id: EventId) -> AnonymisedEvent {
        self.anonymise_with(beacon, visit, &RequestSignals::default(), salt, id)
    }

    /// [`Pipeline::anonymise`] with the request's Client Hints, which name the
    /// browser, OS and device better than the User-Agent.
    pub fn anonymise_with(
        &self,
        beacon: Beacon,
        visit: Visit<'_>,
        signals: &RequestSignals<'_>,
        salt: &Salt,
        id: EventId,
    ) -> AnonymisedEvent {
        let referrer = external_referrer(&beacon.page, beacon.referrer.as_ref());
        let utm = utm_parameters(&beacon.page);
        let (enrichment, _) = self.enrich(&beacon.page, referrer.as_ref(), &utm, visit.user_agent, signals, Some(visit.ip));
        let visitor = visitor_identity(&beacon, visit, salt);
        let session = SessionHash::new(beacon.site, beacon.session_id.as_str());
        let (referrer, referrer_host) = clean_referrer(referrer.as_ref());
        let mut event = AnonymisedEvent {
            id,
            site: beacon.site,
            event_type: beacon.kind.event_type(),
            name: beacon.kind.event_name().to_owned(),
            visitor,
            session,
            hostname: beacon.page.host_str().unwrap_or_default().to_ascii_lowercase(),
            pathname: beacon.page.path().to_owned(),
            referrer,
            referrer_host,
            utm,
            screen_width: beacon.screen.map(|s| s.width as i32),
            screen_height: beacon.screen.map(|s| s.height as i32),
            engaged_ms: None,
            scroll_depth: None,
            revenue: None,
            order_id: None,
            target: None,
            user_id: None,
            props: Default::default(),
            sensitive: SensitiveFields::default(),
            enrichment,
        };
        apply_kind(&mut event, beacon.kind);
        event
    }

    fn enrich(
        &self,
        page: &Url,
        referrer: Option<&Url>,
        utm: &Utm,
        user_agent: &str,
        signals: &RequestSignals<'_>,
        ip: Option<IpAddr>,
    ) -> (Enrichment, Location) {
        let hints = ClientHints { brands: signals.sec_ch_ua, mobile: signals.sec_ch_ua_mobile, platform: signals.sec_ch_ua_platform };
        let client = self.agents.parse_with_hints(user_agent, &hints);
        let attribution = self.sources.attribute(page, referrer, utm);
        let place = ip.and_then(|ip| self.geo.lookup(ip)).unwrap_or_default();
        let enrichment = Enrichment {
            browser: client.browser,
            browser_version: client.browser_version,
            os: client.os,
            os_version: client.os_version,
            device: client.device.map(|d| d.as_str().to_owned()),
            source: attribution.source,
            channel: Some(attribution.channel.as_str().to_owned()),
            country: place.country.clone(),
            region: place.region.clone(),
            city: place.city.clone(),
        };
        (enrichment, place)
    }

    /// The same steps as [`Pipeline::process`] for loose request facts.
    pub fn explain(&self, user_agent: &str, ip: Option<IpAddr>, url: Option<&str>, referrer: Option<&str>) -> Explanation {
        self.explain_request(user_agent, ip, url, referrer, &RequestSignals::default())
    }

    /// [`Pipeline::explain`] with the request's other headers and network
    /// (one request alone: the pace of a visitor's beacons is not judged here).
    pub fn explain_request(
        &self,
        user_agent: &str,
        ip: Option<IpAddr>,
        url: Option<&str>,
        referrer: Option<&str>,
        signals: &RequestSignals<'_>,
    ) -> Explanation {
        let page = url.and_then(|u| Url::parse(u).ok()).unwrap_or_else(|| Url::parse("http://unknown.invalid/").expect("valid"));
        let referrer = referrer.filter(|r| !r.is_empty()).and_then(|r| Url::parse(r).ok());
        let bot = self.bots.check_request(user_agent, referrer.as_ref(), &self.with_asn(signals, ip), None);
        let referrer = external_referrer(&page, referrer.as_ref());
        let utm = utm_parameters(&page);
        let (enrichment, place) = self.enrich(&page, referrer.as_ref(), &utm, user_agent, signals, ip);
        Explanation {
            bot: bot.is_some(),
            bot_reason: bot.map(|r| r.to_string()),
            enrichment,
            utm_source: utm.source,
            utm_medium: utm.medium,
            utm_campaign: utm.campaign,
            utm_term: utm.term,
            utm_content: utm.content,
            latitude: place.latitude,
            longitude: place.longitude,
        }
    }
}

/// Storage mode sends a random visitor id; memory mode gets the daily hash.
fn visitor_identity(beacon: &Beacon, visit: Visit<'_>, salt: &Salt) -> VisitorHash {
    match &beacon.visitor_id {
        Some(vid) => VisitorHash::from_visitor_id(beacon.site, vid.as_str()),
        None => VisitorHash::daily(salt, beacon.site, visit.ip, visit.user_agent),
    }
}

/// Who a beacon's pace is counted for: the storage-mode visitor id, else IP
/// and User-Agent. A keyed-nowhere in-memory hash: it never leaves the process.
fn pace_key(beacon: &Beacon, visit: Visit<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    beacon.site.hash(&mut h);
    match &beacon.visitor_id {
        Some(vid) => vid.as_str().hash(&mut h),
        None => (visit.ip, visit.user_agent).hash(&mut h),
    }
    h.finish()
}

/// A referrer on the page's own host is navigation, not a source.
fn external_referrer(page: &Url, referrer: Option<&Url>) -> Option<Url> {
    let referrer = referrer?;
    let host = |u: &Url| u.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    if host(referrer).is_some() && host(referrer) == host(page) {
        return None;
    }
    Some(referrer.clone())
}

/// Stored without query, fragment or credentials: they can carry search
/// terms, tokens or emails.
fn clean_referrer(referrer: Option<&Url>) -> (Option<String>, Option<String>) {
    let Some(referrer) = referrer else { return (None, None) };
    let host = referrer.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    let mut clean = referrer.clone();
    clean.set_query(None);
    clean.set_fragment(None);
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    (Some(clean.to_string()), host)
}

fn utm_parameters(page: &Url) -> Utm {
    let mut utm = Utm::default();
    for (key, value) in page.query_pairs() {
        let slot = match key.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_term" => &mut utm.term,
            "utm_content" => &mut utm.content,
            _ => continue,
        };
        let value: String = value.chars().take(crate::beacon::MAX_TEXT_LEN).collect();
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value);
        }
    }
    utm
}

fn apply_kind(event: &mut AnonymisedEvent, kind: EventKind) {
    match kind {
        EventKind::Pageview { props } => event.props = props,
        EventKind::Engagement { engaged_ms, scroll_depth } => {
            event.engaged_ms = Some(engaged_ms as i32);
            event.scroll_depth = Some(i16::from(scroll_depth));
        }
        EventKind::Click { props, .. } => event.props = props,
        EventKind::Form { form, props } => {
            event.target = form;
            event.props = props;
        }
        EventKind::Download { target } | EventKind::Outbound { target } => {
            event.target = Some(target.to_string());
        }
        EventKind::Mailto { address } => event.sensitive.mailto = Some(address),
        EventKind::Tel { number } => event.sensitive.tel = Some(number),
        EventKind::Purchase { money, order_id, props } => {
            event.revenue = Some(money);
            event.order_id = order_id;
            event.props = props;
        }
        EventKind::Custom { props, revenue, .. } => {
            event.props = props;
            event.revenue = revenue;
        }
        EventKind::Identify { user } => {
            event.user_id = Some(user.id);
            event.sensitive.email = user.email;
            event.sensitive.name = user.name;
            event.sensitive.avatar = user.avatar;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const SITE: &str = "0192f0c1-7a4e-7000-8000-000000000001";

    const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

    fn pipeline() -> Pipeline {
        let mut geo = GeoDatabases::new();
        geo.add(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/GeoIP2-City-Test.mmdb")).unwrap()).unwrap();
        Pipeline::new(geo)
    }

    fn run_as(body: &str, ip: &str, ua: &str) -> Processed {
        let visit = Visit { ip: ip.parse().unwrap(), user_agent: ua };
        let id = EventId::new(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(), [1; 10]);
        pipeline().process(body.as_bytes(), visit, &Salt::from_bytes([3; 32]), id).unwrap()
    }

    fn run(body: &str) -> AnonymisedEvent {
        match run_as(body, "81.2.69.142", UA) {
            Processed::Event(e) => *e,
            Processed::Bot(r) => panic!("dropped as a bot: {r}"),
        }
    }

    #[test]
    fn enriched_from_ua_referrer_and_ip() {
        let e = run(&format!(
            r#"{{"site":"{SITE}","type":"pageview","url":"https://example.com/a?utm_campaign=fall","referrer":"https://www.google.com/","sid":"abcdefgh"}}"#
        ));
        let en = e.enrichment;
        assert_eq!((en.browser.as_deref(), en.browser_version.as_deref()), (Some("Chrome"), Some("142")));
        assert_eq!((en.os.as_deref(), en.device.as_deref()), (Some("Windows"), Some("desktop")));
        assert_eq!((en.source.as_deref(), en.channel.as_deref()), (Some("Google"), Some("Organic Search")));
        assert_eq!((en.country.as_deref(), en.region.as_deref(), en.city.as_deref()), (Some("GB"), Some("England"), Some("London")));
    }

    #[test]
    fn bots_are_dropped_with_a_reason() {
        let body = format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://e.com/","sid":"abcdefgh"}}"#);
        let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert!(matches!(run_as(&body, "66.249.66.1", googlebot), Processed::Bot(BotReason::CrawlerList(_))));
        assert_eq!(run_as(&body, "66.249.66.1", ""), Processed::Bot(BotReason::EmptyUserAgent));
    }

    #[test]
    fn explain_matches_the_event_path() {
        let x = pipeline().explain(UA, Some("81.2.69.142".parse().unwrap()), Some("https://e.com/?utm_source=news&utm_medium=email"), None);
        assert!(!x.bot);
        assert_eq!((x.enrichment.channel.as_deref(), x.utm_source.as_deref(), x.enrichment.city.as_deref()), (Some("Email"), Some("news"), Some("London")));
        let bot = pipeline().explain("curl/8.5.0", None, None, None);
        assert!(bot.bot);
        assert!(bot.bot_reason.unwrap().contains("curl"));
    }

    #[test]
    fn pageview_is_anonymised() {
        let e = run(&format!(
            r#"{{"site":"{SITE}","type":"pageview","url":"https://Example.com/a?utm_source=news&utm_campaign=fall&email=x@y.z#top","referrer":"https://user:pw@www.google.com/search?q=secret","sid":"abcdefgh"}}"#
        ));
        assert_eq!(e.hostname, "example.com");
        assert_eq!(e.pathname, "/a");
        assert_eq!(e.referrer.as_deref(), Some("https://www.google.com/search"));
        assert_eq!(e.referrer_host.as_deref(), Some("google.com"));
        assert_eq!(e.utm.source.as_deref(), Some("news"));
        assert_eq!(e.utm.campaign.as_deref(), Some("fall"));
        let dump = format!("{e:?}") + &serde_json::to_string(&e).unwrap();
        for leaked in ["81.2.69.142", "Mozilla", "AppleWebKit", "secret", "x@y.z", "pw"] {
            assert!(!dump.contains(leaked), "{leaked} leaked into {dump}");
        }
    }

    #[test]
    fn self_referral_is_internal() {
        let e = run(&format!(
            r#"{{"site":"{SITE}","type":"pageview","url":"https://example.com/b","referrer":"https://www.example.com/a","sid":"abcdefgh"}}"#
        ));
        assert_eq!((e.referrer, e.referrer_host), (None, None));
    }

    #[test]
    fn storage_mode_uses_the_visitor_id() {
        let body = |vid: &str| {
            format!(r#"{{"site":"{SITE}","type":"pageview","url":"https://e.com/","sid":"abcdefgh","vid":"{vid}"}}"#)
        };
        let a = run(&body("vvvvvvvvvvvvvvvv"));
        let b = run(&body("vvvvvvvvvvvvvvvv"));
        let c = run(&body("wwwwwwwwwwwwwwww"));
        assert_eq!(a.visitor, b.visitor);
        assert_ne!(a.visitor, c.visitor);
    }

    #[test]
    fn identify_moves_personal_fields_to_sensitive() {
        let e = run(&format!(
            r#"{{"site":"{SITE}","type":"identify","url":"https://e.com/","sid":"abcdefgh","user":{{"id":"u-1","email":"ann@e.com"}}}}"#
        ));
        assert_eq!(e.user_id.as_deref(), Some("u-1"));
        assert_eq!(e.sensitive.entries().collect::<Vec<_>>(), vec![("email", "ann@e.com")]);
    }
}
