//! Cross-domain ids. The SDK hands the visitor and session ids to an allowed
//! host in `_et_vid`/`_et_sid` URL parameters and the next page sends them as
//! the beacon's `vid`/`sid` (sdk/src/et.js); the Rust side is the beacon's
//! id check and the hashing. Properties: the beacon accepts exactly the ids
//! the SDK's own patterns accept, and neither raw id shows in the stored
//! event, though the page URL still carries them.

use std::sync::LazyLock;

use regex::Regex;
use shared::{Beacon, Processed, Visit};
use url::Url;

use super::{HUMAN_AGENTS, PIPELINE, SALT, SITE, dump, event_id};
use crate::corpus::{fuzz_target, leaks};

fuzz_target!("cross_domain_ids", property);

/// sdk/src/et.js: `VID = /^[\w-]{16,64}$/, SID = /^[\w-]{8,64}$/` (JavaScript's `\w` is ASCII).
static SDK_VID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?-u:[\w-]){16,64}$").expect("a pattern"));
static SDK_SID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(?-u:[\w-]){8,64}$").expect("a pattern"));

/// The ids another host would set in place of these: valid, and different.
const OTHER_VID: &str = "Zq9-Zq9-Zq9-Zq9-";
const OTHER_SID: &str = "Wy7_Wy7_";

/// The input is `vid \n sid`; without a newline it is both.
fn property(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let (vid, sid) = text.split_once('\n').unwrap_or((&text, &text));
    let accepted = Beacon::parse(&beacon(vid, sid));
    let sdk_accepts = SDK_VID.is_match(vid) && SDK_SID.is_match(sid);
    assert_eq!(accepted.is_ok(), sdk_accepts, "vid {vid:?}, sid {sid:?}: {accepted:?}");
    if !sdk_accepts {
        return;
    }
    let process = |vid: &str, sid: &str| {
        let visit = Visit { ip: "203.0.113.7".parse().expect("an IP"), user_agent: HUMAN_AGENTS[0] };
        match PIPELINE.process(&beacon(vid, sid), visit, &SALT, event_id()) {
            Ok(Processed::Event(event)) => dump(&event),
            other => panic!("a person's pageview was not stored: {other:?}"),
        }
    };
    let (dumped, baseline) = (process(vid, sid), process(OTHER_VID, OTHER_SID));
    assert!(!leaks(vid, &dumped, &baseline), "the raw visitor id {vid:?} is stored: {dumped}");
    assert!(!leaks(sid, &dumped, &baseline), "the raw session id {sid:?} is stored: {dumped}");
}

/// A pageview landing from a cross-domain link, as the SDK sends it.
fn beacon(vid: &str, sid: &str) -> Vec<u8> {
    let mut url = Url::parse("https://shop.example.com/landing").expect("a URL");
    url.query_pairs_mut().append_pair("_et_vid", vid).append_pair("_et_sid", sid);
    serde_json::json!({"site": SITE, "type": "pageview", "url": url.as_str(), "sid": sid, "vid": vid}).to_string().into_bytes()
}
