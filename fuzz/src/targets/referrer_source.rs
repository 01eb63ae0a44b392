//! The referrer and source classifiers: for any page URL, referrer and
//! campaign text the attribution is total and deterministic, the source table
//! ignores ASCII case and a trailing dot, a known referrer is named by the
//! table, no referrer and no campaign is Direct, a referrer on the page's
//! own host is not a source, and referrer spam names a domain the referrer is
//! on.

use std::sync::LazyLock;

use shared::bots::{BotFilter, BotReason};
use shared::event::Utm;
use shared::sources::{Channel, SourceTable};
use url::Url;

use super::{HUMAN_AGENTS, PIPELINE};
use crate::corpus::fuzz_target;

fuzz_target!("referrer_source", property);

static SOURCES: LazyLock<SourceTable> = LazyLock::new(SourceTable::new);
static BOTS: LazyLock<BotFilter> = LazyLock::new(BotFilter::new);

/// The input is `page URL \n referrer \n utm_source \n utm_medium`; missing
/// lines are empty.
fn property(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.split('\n');
    let mut line = || lines.next().unwrap_or_default();
    let (page_text, referrer_text, source, medium) = (line(), line(), line(), line());
    let page = Url::parse(page_text).unwrap_or_else(|_| Url::parse("https://example.com/").expect("a URL"));
    let referrer = Url::parse(referrer_text).ok();
    let utm = Utm {
        source: Some(source.to_owned()).filter(|s| !s.is_empty()),
        medium: Some(medium.to_owned()).filter(|s| !s.is_empty()),
        ..Utm::default()
    };

    let attribution = SOURCES.attribute(&page, referrer.as_ref(), &utm);
    assert_eq!(attribution, SOURCES.attribute(&page, referrer.as_ref(), &utm), "attribution is deterministic");
    if referrer.is_none() && utm == Utm::default() && !has_click_id(&page) {
        assert_eq!(attribution.channel, Channel::Direct, "{attribution:?}");
    }
    if let Some(host) = referrer.as_ref().and_then(Url::host_str) {
        let known = SOURCES.lookup(host);
        assert_eq!(known, SOURCES.lookup(&host.to_ascii_uppercase()), "case changed the source of {host}");
        assert_eq!(known, SOURCES.lookup(&format!("{host}.")), "a trailing dot changed the source of {host}");
        if let Some((name, _)) = known {
            assert_eq!(attribution.source.as_deref(), Some(name), "a known referrer is named by the table");
        }
        if let Some(BotReason::ReferrerSpam(domain)) = BOTS.check(HUMAN_AGENTS[0], referrer.as_ref()) {
            assert!(host == domain || host.ends_with(&format!(".{domain}")), "{host} is not on {domain}");
        }
    }

    let explained = PIPELINE.explain(HUMAN_AGENTS[0], None, Some(page_text), Some(referrer_text));
    assert_eq!(explained, PIPELINE.explain(HUMAN_AGENTS[0], None, Some(page_text), Some(referrer_text)), "explain is deterministic");
    let own_host = page.host_str().map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    let referrer_host = referrer.as_ref().and_then(Url::host_str).map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    if own_host.is_some() && own_host == referrer_host && page_text.parse::<Url>().is_ok() && !explained.bot {
        let plain = PIPELINE.explain(HUMAN_AGENTS[0], None, Some(page_text), None);
        assert_eq!(explained.enrichment, plain.enrichment, "a referrer on the page's own host counted as a source");
    }
}

fn has_click_id(page: &Url) -> bool {
    page.query_pairs()
        .any(|(k, _)| ["gclid", "gbraid", "wbraid", "msclkid", "dclid", "utm_source", "utm_medium", "utm_campaign"].contains(&k.as_ref()))
}
