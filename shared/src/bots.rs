//! Which requests are not people. Checked before anything is enriched or
//! stored; the reason is kept so a site owner can see why a visit was dropped.
//!
//! Two kinds of evidence, combined as the README's "Bot rules" table says:
//! - the User-Agent on one of three independent, vendored lists (each reason
//!   names its list), an automation marker, or referrer spam: dropped;
//! - behaviour the request shows without anything being stored
//!   ([`RequestSignals`]): no `Accept-Language`, a hosting network's ASN,
//!   beacons faster than a person. One of them alone is common among people
//!   (server-side trackers, VPNs, iCloud Private Relay), so only a hosting
//!   network together with one of the others drops.

use std::collections::HashMap;
use std::sync::Mutex;

use regex::bytes::{Regex, RegexBuilder};
use url::Url;

/// The vendored lists, refreshed by `scripts/vendor-data.sh` (versions,
/// licences and checksums in `shared/data/SOURCES.tsv`).
const CRAWLER_USER_AGENTS: &str = include_str!("../data/crawler-user-agents.txt");
const ISBOT: &str = include_str!("../data/isbot.txt");
const CRAWLER_DETECT: &str = include_str!("../data/crawler-detect.txt");
const CRAWLER_DETECT_EXCLUSIONS: &str = include_str!("../data/crawler-detect-exclusions.txt");
const REFERRER_SPAM: &str = include_str!("../data/referrer-spam.txt");
/// Hosting and cloud networks (ASN, name): traffic from them is mostly
/// machines, but VPN exits live there too, so it is one signal, never a verdict.
const HOSTING_ASNS: &str = include_str!("../data/hosting-asns.tsv");

/// Browsers driven by automation announce themselves in these tokens.
const AUTOMATION_MARKERS: &[&str] =
    &["HeadlessChrome", "PhantomJS", "Puppeteer", "Playwright", "Selenium", "WebDriver", "Lighthouse", "Cypress", "jsdom", "SlimerJS"];

/// Text the lists' generic rules take for a bot but that real browsers,
/// phones and TVs send, found on two human lists (Matomo's browser fixtures
/// and the isbot crate's `browsers.txt`; README, "Bot rules"). A UA holding
/// one is not looked up in the lists (automation markers still count).
const HUMAN_TOKENS: &[&str] = &[
    "CE-HTML/1.0",   // smart TVs (isbot: `\w+/1\.0;`)
    "ce-html/1.0",   // HbbTV
    ".Catcher",      // Hisense TVs' OMI build (isbot: `catch`)
    "Cronet/",       // Chromium's network stack in apps (Crawler-Detect: `Cron`)
    "JavaPlatform/", // Sony Ericsson feature phones (isbot: `java(?!;)`)
    "Java/Jbed",
    "HotJava/",
    "Build/CUBOT", // CUBOT phones (isbot: `bots?`)
    "M bot ",      // Irbis "M bot" phones and tablets
    "M_bot_",
    "SogouMobileBrowser", // Sogou's browser (crawler-user-agents: `Sogou`)
    "SogouMSE",
    "HTTP PGDL", // MediaTek MAUI feature phones (isbot: `http`)
    "HTTPS)",
    "MAUI ()",
    "dv(iPh",        // UC Browser for iOS (isbot: `\(\w+,`)
    "Google Earth/", // (isbot: `google`)
    "Discovery II",  // phone models (isbot: `discovery`)
    "Discovery DG",
    "chromeframe",       // IE with Chrome Frame (isbot: `frame`)
    "Microsoft Office ", // Office apps (Crawler-Detect: `Microsoft Office`)
    "WAP Browser",       // feature phones (isbot: `browser/1\.0`, `http`)
    "WAP-Browser/",
    "REX/1.0;", // BREW phones (isbot: `\w+/1\.0;`)
    "webOS/1.0;",
    "Google TV", // Android TVs (isbot: `google`)
    "yandexstation",
];

/// A vendored list a UA was found on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotList {
    /// `crawler-user-agents` (monperrus), shown as "crawler list" as before.
    CrawlerUserAgents,
    Isbot,
    CrawlerDetect,
}

impl BotList {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrawlerUserAgents => "crawler list",
            Self::Isbot => "isbot",
            Self::CrawlerDetect => "crawler-detect",
        }
    }
}

/// What a request shows about itself beyond its User-Agent. Borrowed, never
/// stored. [`Default`] is "nothing known" (seeds, imports, tests): then no
/// behaviour rule applies.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSignals<'a> {
    /// The caller saw the request's own headers, so a missing
    /// `Accept-Language` means the client did not send one.
    pub headers_seen: bool,
    pub accept_language: Option<&'a str>,
    /// `Sec-CH-UA`: headless Chromium names itself here even when its UA does
    /// not. It and the two below also name the browser, OS and device better
    /// than the UA (`user_agent::ClientHints`).
    pub sec_ch_ua: Option<&'a str>,
    pub sec_ch_ua_mobile: Option<&'a str>,
    pub sec_ch_ua_platform: Option<&'a str>,
    /// The client's autonomous system (edge: Cloudflare's `cf.asn`; local
    /// ingest: looked up in memory in [`HostingRanges`]).
    pub asn: Option<u32>,
}

/// One piece of behaviour evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    NoAcceptLanguage,
    HostingNetwork(u32),
    /// Pageviews of one visitor within [`PACE_WINDOW_MS`].
    TooFast(u32),
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoAcceptLanguage => f.write_str("no Accept-Language"),
            Self::HostingNetwork(asn) => write!(f, "hosting network AS{asn}"),
            Self::TooFast(n) => write!(f, "{n} pageviews in {} s", PACE_WINDOW_MS / 1000),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotReason {
    EmptyUserAgent,
    /// Matched `crawler-user-agents`; holds the matched text.
    CrawlerList(String),
    /// Matched another vendored list; holds the matched text.
    Listed(BotList, String),
    Automation(&'static str),
    ReferrerSpam(String),
    /// Two or more behaviour signals together.
    Behaviour(Vec<Signal>),
}

impl std::fmt::Display for BotReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyUserAgent => f.write_str("empty user agent"),
            Self::CrawlerList(m) => write!(f, "crawler list: {m}"),
            Self::Listed(list, m) => write!(f, "{}: {m}", list.as_str()),
            Self::Automation(m) => write!(f, "automation: {m}"),
            Self::ReferrerSpam(d) => write!(f, "referrer spam: {d}"),
            Self::Behaviour(signals) => {
                f.write_str("behaviour: ")?;
                for (i, s) in signals.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" + ")?;
                    }
                    write!(f, "{s}")?;
                }
                Ok(())
            }
        }
    }
}

/// One vendored list compiled: its plain patterns as one alternation, and
/// the few with look-around (which `regex` lacks) as a pattern plus text
/// that must not come just before or after the match.
struct PatternList {
    list: BotList,
    plain: Regex,
    guarded: Vec<Guarded>,
    /// Crawler-Detect removes browser tokens before matching.
    strip: Option<Regex>,
}

struct Guarded {
    core: Regex,
    not_before: Vec<Vec<u8>>,
    not_after: Vec<Vec<u8>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bot pattern `{pattern}`: {reason}")]
pub struct PatternError {
    pattern: String,
    reason: String,
}

fn build(pattern: &str, case_insensitive: bool) -> Result<Regex, PatternError> {
    // JavaScript takes `-` after a class escape (`[\w-.]`) as itself; `regex` wants it escaped.
    let pattern = &pattern.replace(r"\w-", r"\w\-").replace(r"\d-", r"\d\-").replace(r"\s-", r"\s\-");
    // ASCII classes and boundaries, as in the JavaScript the lists are written for.
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .unicode(false)
        // Room for the lazy DFA of a thousand-pattern alternation: with the
        // default it gives up and falls back to a slower engine (~100× per UA).
        .dfa_size_limit(16 << 20)
        .build()
        .map_err(|e| PatternError { pattern: pattern.to_owned(), reason: e.to_string() })
}

/// `a|b` of plain text (JavaScript escapes removed).
fn literals(alternation: &str, case_insensitive: bool) -> Vec<Vec<u8>> {
    let alternation = alternation.strip_prefix("(?:").and_then(|a| a.strip_suffix(')')).unwrap_or(alternation);
    alternation
        .split('|')
        .map(|l| {
            let l = l.replace('\\', "");
            if case_insensitive { l.to_ascii_lowercase().into_bytes() } else { l.into_bytes() }
        })
        .collect()
}

/// Splits a leading `(?<!…)` and a trailing `(?!…)` off a pattern.
fn guarded(pattern: &str, case_insensitive: bool) -> Result<Guarded, PatternError> {
    let error = |reason: &str| PatternError { pattern: pattern.to_owned(), reason: reason.to_owned() };
    let mut core = pattern;
    let mut not_before = Vec::new();
    if let Some(rest) = core.strip_prefix("(?<!") {
        let end = rest.find(')').ok_or_else(|| error("unclosed look-behind"))?;
        not_before = literals(&rest[..end], case_insensitive);
        core = &rest[end + 1..];
    }
    let mut not_after = Vec::new();
    if let Some(start) = core.rfind("(?!")
        && core.ends_with(')')
    {
        not_after = literals(&core[start + 3..core.len() - 1], case_insensitive);
        core = &core[..start];
    }
    if core.contains("(?<") || core.contains("(?=") || core.contains("(?!") {
        return Err(error("look-around other than a leading (?<!…) or trailing (?!…)"));
    }
    Ok(Guarded { core: build(core, case_insensitive)?, not_before, not_after })
}

impl Guarded {
    fn find<'h>(&self, haystack: &'h [u8], folded: &[u8]) -> Option<regex::bytes::Match<'h>> {
        let ends_with_any = |before: &[u8]| self.not_before.iter().any(|t| before.ends_with(t));
        let starts_with_any = |after: &[u8]| self.not_after.iter().any(|t| after.starts_with(t));
        let mut at = 0;
        while let Some(m) = self.core.find_at(haystack, at) {
            if !ends_with_any(&folded[..m.start()]) && !starts_with_any(&folded[m.end()..]) {
                return Some(m);
            }
            at = m.start() + 1;
            if at > haystack.len() {
                break;
            }
        }
        None
    }
}

impl PatternList {
    fn new(list: BotList, patterns: &str, case_insensitive: bool, strip: Option<&str>) -> Result<Self, PatternError> {
        let (mut plain, mut guards) = (Vec::new(), Vec::new());
        for p in patterns.lines().filter(|l| !l.is_empty()) {
            if p.contains("(?<!") || p.contains("(?!") || p.contains("(?=") || p.contains("(?<=") {
                guards.push(guarded(p, case_insensitive)?);
            } else {
                plain.push(p);
            }
        }
        let strip = strip
            .map(|s| build(&s.lines().filter(|l| !l.is_empty()).map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|"), true))
            .transpose()?;
        let alternation = plain.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        let plain = build(&alternation, case_insensitive).map_err(|e| {
            // Name the pattern at fault rather than the whole alternation.
            plain.iter().find_map(|p| build(p, case_insensitive).err()).unwrap_or(e)
        })?;
        Ok(Self { list, plain, guarded: guards, strip })
    }

    /// The matched text, widened to whole characters.
    fn find(&self, ua: &str) -> Option<String> {
        let stripped;
        let text = match &self.strip {
            Some(strip) => {
                stripped = String::from_utf8_lossy(&strip.replace_all(ua.as_bytes(), &b""[..])).into_owned();
                stripped.as_str()
            }
            None => ua,
        };
        let bytes = text.as_bytes();
        let m = self.plain.find(bytes).or_else(|| {
            let folded = bytes.to_ascii_lowercase();
            self.guarded.iter().find_map(|g| g.find(bytes, &folded))
        })?;
        let (mut start, mut end) = (m.start(), m.end());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        Some(text[start..end].to_owned())
    }
}

pub struct BotFilter {
    lists: Vec<PatternList>,
    spam: Vec<String>,
    hosting: HashMap<u32, &'static str>,
}

impl BotFilter {
    /// The vendored lists are tested to compile; failing here is a build defect.
    pub fn new() -> Self {
        Self::try_new().expect("vendored bot patterns compile")
    }

    pub fn try_new() -> Result<Self, PatternError> {
        Self::with_lists(&[BotList::CrawlerUserAgents, BotList::Isbot, BotList::CrawlerDetect])
    }

    /// Only some of the lists: `tools/ua-eval` measures each source alone
    /// and leaves one out (`UA_EVAL_LISTS`), to show which corpus a list was tuned on.
    pub fn with_lists(which: &[BotList]) -> Result<Self, PatternError> {
        let mut lists = Vec::new();
        for list in which {
            lists.push(match list {
                // crawler-user-agents is matched case-sensitively, as its own tests do.
                BotList::CrawlerUserAgents => PatternList::new(*list, CRAWLER_USER_AGENTS, false, None)?,
                BotList::Isbot => PatternList::new(*list, ISBOT, true, None)?,
                BotList::CrawlerDetect => PatternList::new(*list, CRAWLER_DETECT, true, Some(CRAWLER_DETECT_EXCLUSIONS))?,
            });
        }
        let spam = REFERRER_SPAM
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Ok(Self { lists, spam, hosting: hosting_asns() })
    }

    /// The User-Agent and referrer alone.
    pub fn check(&self, user_agent: &str, referrer: Option<&Url>) -> Option<BotReason> {
        self.check_request(user_agent, referrer, &RequestSignals::default(), None)
    }

    /// Everything the request shows; `pageviews` is how many pageviews this
    /// visitor sent within [`PACE_WINDOW_MS`], this one included (from [`Pace`]).
    pub fn check_request(
        &self,
        user_agent: &str,
        referrer: Option<&Url>,
        signals: &RequestSignals<'_>,
        pageviews: Option<u32>,
    ) -> Option<BotReason> {
        let ua = user_agent.trim();
        if ua.is_empty() {
            return Some(BotReason::EmptyUserAgent);
        }
        if let Some(marker) = AUTOMATION_MARKERS.iter().find(|m| ua.contains(**m) || signals.sec_ch_ua.is_some_and(|h| h.contains(**m))) {
            return Some(BotReason::Automation(marker));
        }
        if let Some(reason) = self.listed(ua) {
            return Some(reason);
        }
        if let Some(host) = referrer.and_then(Url::host_str)
            && let Some(d) = self.spam.iter().find(|d| host == d.as_str() || host.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.')))
        {
            return Some(BotReason::ReferrerSpam(d.clone()));
        }
        let mut seen = Vec::new();
        if signals.headers_seen && signals.accept_language.is_none_or(|l| l.trim().is_empty()) {
            seen.push(Signal::NoAcceptLanguage);
        }
        if let Some(asn) = signals.asn.filter(|a| self.hosting.contains_key(a)) {
            seen.push(Signal::HostingNetwork(asn));
        }
        if let Some(n) = pageviews.filter(|n| *n > PACE_MAX_PAGEVIEWS) {
            seen.push(Signal::TooFast(n));
        }
        // A hosting network plus one more sign. Without one, no pair is enough:
        // server-side trackers relay many people, fast and without Accept-Language.
        (seen.len() >= 2 && seen.iter().any(|s| matches!(s, Signal::HostingNetwork(_)))).then_some(BotReason::Behaviour(seen))
    }

    fn listed(&self, ua: &str) -> Option<BotReason> {
        if HUMAN_TOKENS.iter().any(|t| ua.contains(t)) {
            return None;
        }
        self.lists.iter().find_map(|l| {
            l.find(ua).map(|m| match l.list {
                BotList::CrawlerUserAgents => BotReason::CrawlerList(m),
                list => BotReason::Listed(list, m),
            })
        })
    }

    /// The name of a hosting network, if `asn` is one.
    pub fn hosting_network(&self, asn: u32) -> Option<&'static str> {
        self.hosting.get(&asn).copied()
    }
}

fn hosting_asns() -> HashMap<u32, &'static str> {
    HOSTING_ASNS
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (asn, name) = l.split_once('\t')?;
            Some((asn.trim().parse().ok()?, name.trim()))
        })
        .collect()
}

impl Default for BotFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// IP ranges of the hosting networks, for the local ingest and `engagetrack
/// enrich` (the edge has Cloudflare's `cf.asn` instead). Held in memory; an
/// address is looked up, never stored. Read from `start,end,asn[,…]` lines
/// (`@ip-location-db/asn`'s CSV; `scripts/vendor-data.sh hosting-ranges`
/// writes one holding only the hosting networks).
#[derive(Debug, Default)]
pub struct HostingRanges {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("hosting ranges line {line}: {reason}")]
pub struct RangesError {
    line: usize,
    reason: String,
}

impl HostingRanges {
    /// Keeps the rows of the networks in `shared/data/hosting-asns.tsv`.
    pub fn parse(csv: &str) -> Result<Self, RangesError> {
        let hosting = hosting_asns();
        let mut ranges = Self::default();
        for (i, line) in csv.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
            let error = |reason: &str| RangesError { line: i + 1, reason: reason.to_owned() };
            let mut cols = line.splitn(4, ',');
            let (Some(start), Some(end), Some(asn)) = (cols.next(), cols.next(), cols.next()) else {
                return Err(error("expected start,end,asn"));
            };
            let asn: u32 = asn.trim().parse().map_err(|_| error("the ASN is not a number"))?;
            if !hosting.contains_key(&asn) {
                continue;
            }
            let ip = |s: &str| s.trim().parse::<std::net::IpAddr>().map_err(|_| error("not an IP address"));
            match (ip(start)?, ip(end)?) {
                (std::net::IpAddr::V4(a), std::net::IpAddr::V4(b)) => ranges.v4.push((a.into(), b.into(), asn)),
                (std::net::IpAddr::V6(a), std::net::IpAddr::V6(b)) => ranges.v6.push((a.into(), b.into(), asn)),
                _ => return Err(error("start and end are of different IP versions")),
            }
        }
        ranges.v4.sort_unstable();
        ranges.v6.sort_unstable();
        Ok(ranges)
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hosting network `ip` belongs to, if any.
    pub fn lookup(&self, ip: std::net::IpAddr) -> Option<u32> {
        fn find<T: Ord + Copy>(ranges: &[(T, T, u32)], ip: T) -> Option<u32> {
            let i = ranges.partition_point(|(start, _, _)| *start <= ip).checked_sub(1)?;
            let (_, end, asn) = ranges[i];
            (ip <= end).then_some(asn)
        }
        match ip {
            std::net::IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => find(&self.v4, u32::from(v4)),
                None => find(&self.v6, u128::from(v6)),
            },
        }
    }
}

/// More pageviews than this from one visitor within [`PACE_WINDOW_MS`] is
/// faster than a person reads (one signal: a person can open many tabs).
pub const PACE_MAX_PAGEVIEWS: u32 = 20;
pub const PACE_WINDOW_MS: u64 = 10_000;
/// Visitors tracked at once; past this the oldest windows are dropped.
const PACE_VISITORS: usize = 50_000;

/// Pageviews per visitor in the current window, in memory only (per process
/// or per worker isolate); keyed by a hash of the visitor, never stored.
#[derive(Default)]
pub struct Pace {
    windows: Mutex<HashMap<u64, (u64, u32)>>,
}

impl Pace {
    /// Counts one pageview of `visitor` at `now_ms`; returns the count in its window.
    pub fn count(&self, visitor: u64, now_ms: u64) -> u32 {
        let Ok(mut windows) = self.windows.lock() else { return 1 };
        if windows.len() >= PACE_VISITORS {
            windows.retain(|_, (start, _)| now_ms.saturating_sub(*start) < PACE_WINDOW_MS);
            if windows.len() >= PACE_VISITORS {
                windows.clear();
            }
        }
        let (start, n) = windows.entry(visitor).or_insert((now_ms, 0));
        if now_ms.saturating_sub(*start) >= PACE_WINDOW_MS {
            (*start, *n) = (now_ms, 0);
        }
        *n += 1;
        *n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

    #[test]
    fn people_pass() {
        let f = BotFilter::new();
        for ua in [
            CHROME,
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36",
        ] {
            assert_eq!(f.check(ua, None), None, "{ua}");
        }
    }

    #[test]
    fn bots_are_named() {
        let f = BotFilter::new();
        let cases = [
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "crawler list: Googlebot/"),
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "crawler list: bingbot"),
            ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "crawler list: AhrefsBot"),
            ("curl/8.5.0", "crawler list: curl"),
            ("python-requests/2.32.3", "crawler list: python-requests"),
            ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", "crawler list: GPTBot"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36", "automation: HeadlessChrome"),
            ("   ", "empty user agent"),
        ];
        for (ua, reason) in cases {
            assert_eq!(f.check(ua, None).map(|r| r.to_string()).as_deref(), Some(reason), "{ua}");
        }
    }

    #[test]
    fn other_lists_name_themselves() {
        let f = BotFilter::new();
        // Only isbot's generic rules know these.
        let r = f.check("Mozilla/5.0 (compatible; SomeNewCrawler/1.0; +https://example.com/info)", None).map(|r| r.to_string());
        assert!(r.as_deref().is_some_and(|r| r.starts_with("isbot: ") || r.starts_with("crawler-detect: ")), "{r:?}");
    }

    #[test]
    fn look_around_is_honoured() {
        let f = BotFilter::new();
        // isbot: `(?<! cu)bots?` — "CUBOT" phones are people.
        let cubot = "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.110 Mobile Safari/537.36";
        assert_eq!(f.check(cubot, None), None);
        // isbot: `(?<!lib)http` — libhttp is a browser library, other http clients are not.
        assert!(f.check("Some-Http-Client/1.2", None).is_some());
    }

    #[test]
    fn one_behaviour_signal_is_not_enough() {
        let f = BotFilter::new();
        let no_language = RequestSignals { headers_seen: true, ..Default::default() };
        assert_eq!(f.check_request(CHROME, None, &no_language, Some(1)), None, "a server-side tracker or curl test");
        let vpn = RequestSignals { headers_seen: true, accept_language: Some("en"), asn: Some(16509), ..Default::default() };
        assert_eq!(f.check_request(CHROME, None, &vpn, Some(1)), None, "a VPN on AWS");
        assert_eq!(f.check_request(CHROME, None, &RequestSignals::default(), Some(100)), None, "many tabs");
        let both = RequestSignals { headers_seen: true, asn: Some(16509), ..Default::default() };
        assert_eq!(
            f.check_request(CHROME, None, &both, Some(1)).map(|r| r.to_string()).as_deref(),
            Some("behaviour: no Accept-Language + hosting network AS16509")
        );
        assert_eq!(f.check_request(CHROME, None, &no_language, Some(21)), None, "a server-side tracker relaying many people");
        let fast = RequestSignals { headers_seen: true, accept_language: Some("en"), asn: Some(14061), ..Default::default() };
        assert_eq!(
            f.check_request(CHROME, None, &fast, Some(21)).map(|r| r.to_string()).as_deref(),
            Some("behaviour: hosting network AS14061 + 21 pageviews in 10 s")
        );
        // Private Relay exits through CDNs, which are not hosting networks here.
        let relay = RequestSignals { headers_seen: true, asn: Some(13335), ..Default::default() };
        assert_eq!(f.check_request(CHROME, None, &relay, Some(1)), None);
    }

    #[test]
    fn headless_client_hints_are_automation() {
        let f = BotFilter::new();
        let hints = RequestSignals { sec_ch_ua: Some(r#""Chromium";v="142", "HeadlessChrome";v="142""#), ..Default::default() };
        assert_eq!(f.check_request(CHROME, None, &hints, None), Some(BotReason::Automation("HeadlessChrome")));
    }

    #[test]
    fn hosting_ranges_keep_hosting_networks_only() {
        let csv = concat!(
            "1.0.0.0,1.0.0.255,13335,Cloudflare\n",
            "3.0.0.0,3.127.255.255,16509,Amazon\n",
            "2a01:4f8::,2a01:4f8:ffff:ffff:ffff:ffff:ffff:ffff,24940,Hetzner\n",
        );
        let r = HostingRanges::parse(csv).unwrap();
        assert_eq!(r.len(), 2, "the CDN is left out");
        assert_eq!(r.lookup("3.5.1.2".parse().unwrap()), Some(16509));
        assert_eq!(r.lookup("::ffff:3.5.1.2".parse().unwrap()), Some(16509));
        assert_eq!(r.lookup("3.128.0.0".parse().unwrap()), None);
        assert_eq!(r.lookup("1.0.0.1".parse().unwrap()), None);
        assert_eq!(r.lookup("2a01:4f8:c17::1".parse().unwrap()), Some(24940));
        assert!(HostingRanges::parse("nonsense").unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn pace_counts_per_window() {
        let pace = Pace::default();
        assert_eq!((pace.count(1, 0), pace.count(1, 5_000), pace.count(2, 5_000)), (1, 2, 1));
        assert_eq!(pace.count(1, 10_000), 1, "a new window");
    }

    #[test]
    fn referrer_spam_is_dropped_with_subdomains() {
        let f = BotFilter::new();
        let spam = Url::parse("https://xyz.semalt.com/page").unwrap();
        assert_eq!(f.check(CHROME, Some(&spam)), Some(BotReason::ReferrerSpam("semalt.com".into())));
        let fine = Url::parse("https://notsemalt.com/").unwrap();
        assert_eq!(f.check(CHROME, Some(&fine)), None);
    }
}
