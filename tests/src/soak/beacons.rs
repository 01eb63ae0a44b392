//! The soak's beacons: every type the SDK sends, from several browsers, each
//! with its marker in the URL path (`/soak/<n>`) so the table can be counted
//! per beacon afterwards.

use uuid::Uuid;

/// The path prefix of every soak beacon's page.
pub const MARKER_PREFIX: &str = "/soak/";

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
];

const REFERRERS: &[&str] =
    &["", "https://www.google.com/", "https://news.ycombinator.com/item?id=1", "https://t.co/x", "https://example.com/"];

/// One beacon: its JSON body and the User-Agent it is sent with.
pub struct SoakBeacon {
    pub marker: u64,
    pub body: String,
    pub user_agent: &'static str,
}

/// The marker's beacon: the type and its fields cycle with the marker, so
/// the load mixes pageviews, engagement, goals, revenue and encrypted fields.
pub fn beacon(site: Uuid, marker: u64) -> SoakBeacon {
    let visitor = marker / 4;
    let kind = match marker % 9 {
        0 | 4 => r#""type":"pageview""#.to_owned(),
        1 | 5 => format!(r#""type":"engagement","ms":{},"scroll":{}"#, 1_000 + marker % 90_000, marker % 101),
        2 => r#""type":"click","name":"Signup","props":{"plan":"pro","seats":3}"#.to_owned(),
        3 => format!(r#""type":"purchase","amount":"19.99","currency":"USD","order_id":"o-{marker}""#),
        6 => r#""type":"custom","name":"Upgrade","revenue":{"amount":500,"currency":"EUR"},"props":{"from":"free"}"#.to_owned(),
        7 => r#""type":"outbound","target":"https://partner.example.org/offer""#.to_owned(),
        _ => format!(r#""type":"identify","user":{{"id":"user-{visitor}","email":"user{visitor}@example.net","name":"Soak {visitor}"}}"#),
    };
    let referrer = REFERRERS[(visitor % REFERRERS.len() as u64) as usize];
    let body = format!(
        r#"{{"site":"{site}",{kind},"url":"https://example.com{MARKER_PREFIX}{marker}?utm_source=s{}&utm_medium=m","referrer":"{referrer}","title":"Soak","sid":"soak-{visitor:010}","w":{},"h":900}}"#,
        visitor % 5,
        [390, 820, 1440, 1920][(visitor % 4) as usize],
    );
    SoakBeacon { marker, body, user_agent: USER_AGENTS[(visitor % USER_AGENTS.len() as u64) as usize] }
}

/// The marker in a stored pathname, if it is one of ours.
pub fn marker_of(pathname: &str) -> Option<u64> {
    pathname.strip_prefix(MARKER_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_as_a_beacon_and_carries_its_marker() {
        let site = Uuid::new_v4();
        for marker in 0..18 {
            let b = beacon(site, marker);
            let parsed = shared::Beacon::parse(b.body.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", b.body));
            assert_eq!(marker_of(parsed.page.path()), Some(marker), "{}", b.body);
        }
        assert_eq!(marker_of("/soak/x"), None);
        assert_eq!(marker_of("/other/1"), None);
    }
}
