//! Beacon → anonymised event, as a chain of small named steps. The request's
//! IP and User-Agent enter [`anonymise`] and only their salted hash leaves.

use std::net::IpAddr;

use url::Url;

use crate::beacon::{Beacon, EventKind};
use crate::event::{AnonymisedEvent, EventId, SensitiveFields, Utm};
use crate::visitor::{Salt, SessionHash, VisitorHash};

/// What the request itself says about the visitor. Borrowed, never stored.
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    pub ip: IpAddr,
    pub user_agent: &'a str,
}

/// `salt` must be the salt of the UTC day of `id`'s timestamp.
pub fn anonymise(beacon: Beacon, visit: Visit<'_>, salt: &Salt, id: EventId) -> AnonymisedEvent {
    let visitor = visitor_identity(&beacon, visit, salt);
    let session = SessionHash::new(beacon.site, beacon.session_id.as_str());
    let (referrer, referrer_host) = external_referrer(&beacon.page, beacon.referrer.as_ref());
    let utm = utm_parameters(&beacon.page);
    let hostname = beacon.page.host_str().unwrap_or_default().to_ascii_lowercase();
    let pathname = beacon.page.path().to_owned();
    let name = beacon.kind.event_name().to_owned();
    let event_type = beacon.kind.type_name();
    let mut event = AnonymisedEvent {
        id,
        site: beacon.site,
        event_type,
        name,
        visitor,
        session,
        hostname,
        pathname,
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
    };
    apply_kind(&mut event, beacon.kind);
    event
}

/// Storage mode sends a random visitor id; memory mode gets the daily hash.
fn visitor_identity(beacon: &Beacon, visit: Visit<'_>, salt: &Salt) -> VisitorHash {
    match &beacon.visitor_id {
        Some(vid) => VisitorHash::from_visitor_id(beacon.site, vid.as_str()),
        None => VisitorHash::daily(salt, beacon.site, visit.ip, visit.user_agent),
    }
}

/// A referrer on the page's own host is navigation, not a source.
/// The query string is dropped: it can carry search terms or tokens.
fn external_referrer(page: &Url, referrer: Option<&Url>) -> (Option<String>, Option<String>) {
    let Some(referrer) = referrer else { return (None, None) };
    let host = referrer.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    let page_host = page.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    if host.is_some() && host == page_host {
        return (None, None);
    }
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
        EventKind::Pageview => {}
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

    fn run(body: &str) -> AnonymisedEvent {
        let beacon = Beacon::parse(body.as_bytes()).unwrap();
        let visit = Visit { ip: "198.51.100.77".parse().unwrap(), user_agent: "Mozilla/5.0 Test" };
        let id = EventId::new(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap(), [1; 10]);
        anonymise(beacon, visit, &Salt::from_bytes([3; 32]), id)
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
        let dump = format!("{e:?}");
        for leaked in ["198.51.100.77", "Mozilla", "secret", "x@y.z", "pw"] {
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
