//! The User-Agent classifiers: the browser/OS/device parser and the bot
//! filter are total (any text gets an answer) and deterministic; the cache
//! answers as the parser does; versions are major numbers; a bot verdict
//! names what it matched, and that is in the User-Agent; every field fits
//! the ingest's bound on a text field.

use std::sync::LazyLock;

use shared::beacon::MAX_TEXT_LEN;
use shared::bots::{BotFilter, BotList, BotReason};
use shared::user_agent::UserAgentParser;

use crate::corpus::fuzz_target;

fuzz_target!("user_agent", property);

static AGENTS: LazyLock<UserAgentParser> = LazyLock::new(UserAgentParser::default);
static BOTS: LazyLock<BotFilter> = LazyLock::new(BotFilter::new);

fn property(input: &[u8]) {
    let ua = String::from_utf8_lossy(input);
    let client = AGENTS.parse(&ua);
    assert_eq!(client, AGENTS.parse_uncached(&ua), "the cache and the parser differ");
    assert_eq!(client, AGENTS.parse(&ua), "a cached answer changed");
    for version in [&client.browser_version, &client.os_version].into_iter().flatten() {
        assert!(!version.is_empty() && !version.contains('_'), "version {version:?}");
    }
    if let Some(v) = &client.browser_version {
        assert!(v.bytes().all(|b| b.is_ascii_digit()), "a browser version is its major number: {v:?}");
    }
    for name in [&client.browser, &client.os].into_iter().flatten() {
        assert!(!name.trim().is_empty(), "an empty name in {client:?}");
    }
    for text in [&client.browser, &client.browser_version, &client.os, &client.os_version].into_iter().flatten() {
        assert!(text.chars().count() <= MAX_TEXT_LEN, "the ingest refuses a field this long: {text:?}");
    }
    let verdict = BOTS.check(&ua, None);
    assert_eq!(verdict, BOTS.check(&ua, None), "the bot filter is deterministic");
    match &verdict {
        None => assert!(!ua.trim().is_empty(), "an empty User-Agent passed"),
        Some(BotReason::EmptyUserAgent) => assert!(ua.trim().is_empty()),
        Some(BotReason::Automation(marker)) => assert!(ua.contains(marker)),
        Some(BotReason::CrawlerList(matched)) => assert!(ua.contains(matched.as_str())),
        Some(BotReason::Listed(BotList::Isbot, matched)) => assert!(ua.contains(matched.as_str())),
        // Crawler-Detect matches the UA with browser tokens taken out.
        Some(BotReason::Listed(BotList::CrawlerDetect | BotList::CrawlerUserAgents, _)) => {}
        Some(BotReason::ReferrerSpam(_)) => panic!("referrer spam without a referrer"),
        Some(BotReason::Behaviour(_)) => panic!("behaviour without request signals"),
    }
    if let Some(reason) = verdict {
        assert!(!reason.to_string().trim().is_empty());
    }
}
