//! One module per target; its name is the target's name.

mod anonymised_event;
mod beacon_parser;
mod cross_domain_ids;
mod plausible_event;
mod referrer_source;
mod signed_batch;
mod stats_query;
mod user_agent;
mod webhook_payloads;
mod webhook_signatures;

use std::sync::LazyLock;

use shared::geo::GeoDatabases;
use shared::{EventId, Pipeline, Salt};

/// The edge's pipeline with MaxMind's test city database, built once.
pub static PIPELINE: LazyLock<Pipeline> = LazyLock::new(|| {
    let mut geo = GeoDatabases::new();
    let mmdb = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/GeoIP2-City-Test.mmdb");
    geo.add(std::fs::read(mmdb).expect("the test mmdb")).expect("the test mmdb opens");
    Pipeline::new(geo)
});

pub const SITE: &str = "0192f0c1-7a4e-7000-8000-000000000001";
pub const SALT: Salt = Salt::from_bytes([3; 32]);

pub fn event_id() -> EventId {
    EventId::new(chrono::DateTime::from_timestamp(1_764_410_400, 0).expect("a valid time"), [1; 10])
}

/// People's browsers (no bots), so the pipeline keeps their events.
pub const HUMAN_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/28.0 Chrome/130.0.0.0 Mobile Safari/537.36",
];

/// Everything an event would show a reader: its Debug text and its JSON
/// (which, unlike Debug, spells out the sensitive fields).
pub fn dump(event: &shared::AnonymisedEvent) -> String {
    format!("{event:?}\n{}", serde_json::to_string(event).expect("an event serialises"))
}

/// 32 bytes that depend on the whole input: the properties draw their side
/// choices (an IP, a byte to change) from it, so the input stays the body.
pub fn digest(input: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(input).into()
}
