//! Which requests are not people. Checked before anything is enriched or
//! stored; the reason is kept so a site owner can see why a visit was dropped.

use regex::Regex;
use url::Url;

/// Patterns from the `crawler-user-agents` npm package (MIT), one per line;
/// refreshed by `scripts/vendor-data.sh`.
const CRAWLER_PATTERNS: &str = include_str!("../data/crawler-user-agents.txt");
const REFERRER_SPAM: &str = include_str!("../data/referrer-spam.txt");

/// Browsers driven by automation announce themselves in these tokens.
const AUTOMATION_MARKERS: &[&str] =
    &["HeadlessChrome", "PhantomJS", "Puppeteer", "Playwright", "Selenium", "WebDriver", "Lighthouse", "Cypress", "jsdom", "SlimerJS"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotReason {
    EmptyUserAgent,
    /// Matched the crawler list; holds the matched text.
    CrawlerList(String),
    Automation(&'static str),
    ReferrerSpam(String),
}

impl std::fmt::Display for BotReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyUserAgent => f.write_str("empty user agent"),
            Self::CrawlerList(m) => write!(f, "crawler list: {m}"),
            Self::Automation(m) => write!(f, "automation: {m}"),
            Self::ReferrerSpam(d) => write!(f, "referrer spam: {d}"),
        }
    }
}

pub struct BotFilter {
    crawlers: Regex,
    spam: Vec<String>,
}

impl BotFilter {
    pub fn new() -> Self {
        let alternation = CRAWLER_PATTERNS
            .lines()
            .filter(|l| !l.is_empty())
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        // The vendored list is tested to compile; failing here is a build defect.
        let crawlers = Regex::new(&alternation).expect("crawler patterns compile");
        let spam = REFERRER_SPAM
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        Self { crawlers, spam }
    }

    pub fn check(&self, user_agent: &str, referrer: Option<&Url>) -> Option<BotReason> {
        let ua = user_agent.trim();
        if ua.is_empty() {
            return Some(BotReason::EmptyUserAgent);
        }
        if let Some(marker) = AUTOMATION_MARKERS.iter().find(|m| ua.contains(**m)) {
            return Some(BotReason::Automation(marker));
        }
        if let Some(m) = self.crawlers.find(ua) {
            return Some(BotReason::CrawlerList(m.as_str().to_owned()));
        }
        let host = referrer.and_then(Url::host_str)?;
        self.spam
            .iter()
            .find(|d| host == d.as_str() || host.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.')))
            .map(|d| BotReason::ReferrerSpam(d.clone()))
    }
}

impl Default for BotFilter {
    fn default() -> Self {
        Self::new()
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
    fn referrer_spam_is_dropped_with_subdomains() {
        let f = BotFilter::new();
        let spam = Url::parse("https://xyz.semalt.com/page").unwrap();
        assert_eq!(f.check(CHROME, Some(&spam)), Some(BotReason::ReferrerSpam("semalt.com".into())));
        let fine = Url::parse("https://notsemalt.com/").unwrap();
        assert_eq!(f.check(CHROME, Some(&fine)), None);
    }
}
