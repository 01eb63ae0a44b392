//! `Beacon::parse`: any body parses or gets a reason; what parses holds every
//! bound the README's "Beacon format" promises, and its URLs are stable
//! (parse → serialise → parse gives the same URL).

use shared::beacon::{
    Beacon, EventKind, MAX_AMOUNT_MINOR, MAX_ENGAGED_MS, MAX_NAME_LEN, MAX_PROP_KEY_LEN, MAX_PROP_VALUE_LEN, MAX_PROPS, MAX_SCREEN_PX,
    MAX_TEXT_LEN, MAX_TITLE_LEN, Props,
};
use url::Url;

use crate::corpus::fuzz_target;

fuzz_target!("beacon", property);

fn property(body: &[u8]) {
    let parsed = Beacon::parse(body);
    assert_eq!(parsed, Beacon::parse(body), "parsing is deterministic");
    match parsed {
        Err(e) => assert!(!e.to_string().trim().is_empty(), "an error without a reason: {e:?}"),
        Ok(beacon) => holds_its_bounds(&beacon),
    }
}

pub(crate) fn holds_its_bounds(b: &Beacon) {
    web_page(&b.page);
    if let Some(r) = &b.referrer {
        stable(r);
    }
    if let Some(t) = &b.title {
        text(t, MAX_TITLE_LEN);
    }
    client_id(b.session_id.as_str(), 8);
    if let Some(v) = &b.visitor_id {
        client_id(v.as_str(), 16);
    }
    if let Some(s) = b.screen {
        assert!((1..=MAX_SCREEN_PX).contains(&s.width) && (1..=MAX_SCREEN_PX).contains(&s.height), "{s:?}");
    }
    match &b.kind {
        EventKind::Pageview { props } => props_bounded(props),
        EventKind::Engagement { engaged_ms, scroll_depth } => {
            assert!(u64::from(*engaged_ms) <= MAX_ENGAGED_MS && *scroll_depth <= 100, "{:?}", b.kind);
        }
        EventKind::Click { name, props } => {
            name_text(name);
            props_bounded(props);
        }
        EventKind::Form { form, props } => {
            form.iter().for_each(|f| text(f, MAX_TEXT_LEN));
            props_bounded(props);
        }
        EventKind::Download { target } | EventKind::Outbound { target } => web_page(target),
        EventKind::Mailto { address: v } | EventKind::Tel { number: v } => sensitive_text(v.expose()),
        EventKind::Purchase { money, order_id, props } => {
            assert!((0..=MAX_AMOUNT_MINOR).contains(&money.minor), "{money:?}");
            order_id.iter().for_each(|o| text(o, MAX_TEXT_LEN));
            props_bounded(props);
        }
        EventKind::Custom { name, props, revenue } => {
            name_text(name);
            props_bounded(props);
            assert!(revenue.is_none_or(|m| (0..=MAX_AMOUNT_MINOR).contains(&m.minor)), "{revenue:?}");
        }
        EventKind::Identify { user } => {
            text(&user.id, MAX_TEXT_LEN);
            [&user.email, &user.name, &user.avatar].into_iter().flatten().for_each(|v| sensitive_text(v.expose()));
        }
    }
}

fn web_page(url: &Url) {
    assert!(matches!(url.scheme(), "http" | "https"), "{url}");
    assert!(url.host_str().is_some_and(|h| !h.is_empty()), "{url}");
    stable(url);
}

/// The URL as stored reads back as the same URL.
fn stable(url: &Url) {
    assert_eq!(Url::parse(url.as_str()).as_ref(), Ok(url), "{url} does not read back as itself");
}

fn text(s: &str, max: usize) {
    assert!(s.chars().count() <= max && !s.chars().any(char::is_control), "{s:?}");
}

fn name_text(s: &str) {
    text(s, MAX_NAME_LEN);
    assert!(!s.trim().is_empty(), "an empty name");
}

fn sensitive_text(s: &str) {
    text(s, MAX_TEXT_LEN);
    assert!(!s.trim().is_empty(), "an empty sensitive value");
}

fn client_id(id: &str, min: usize) {
    assert!((min..=64).contains(&id.len()), "{id:?}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id:?}");
}

fn props_bounded(props: &Props) {
    assert!(props.len() <= MAX_PROPS, "{} props", props.len());
    for (k, v) in props {
        assert!(!k.is_empty() && k.chars().count() <= MAX_PROP_KEY_LEN && v.chars().count() <= MAX_PROP_VALUE_LEN, "{k:?}: {v:?}");
    }
}
