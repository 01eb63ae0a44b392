//! `PlausibleEvent::parse` (Plausible's Events API, `POST /api/event`): any body
//! parses or gets a reason, the same way twice; what parses names 1 to 10
//! sites, and for each the beacon it becomes holds every bound of "Beacon
//! format" and, through the pipeline, passes the ingest's own check.

use shared::plausible_event::{MAX_DOMAINS, PlausibleEvent};
use shared::{SiteId, Visit};

use super::beacon_parser::holds_its_bounds;
use super::{HUMAN_AGENTS, PIPELINE, SALT, SITE, digest, event_id};
use crate::corpus::fuzz_target;

fuzz_target!("plausible_event", property);

fn property(body: &[u8]) {
    let parsed = PlausibleEvent::parse(body);
    assert_eq!(parsed, PlausibleEvent::parse(body), "parsing is deterministic");
    let event = match parsed {
        Err(e) => return assert!(!e.to_string().trim().is_empty(), "an error without a reason: {e:?}"),
        Ok(event) => event,
    };
    assert!((1..=MAX_DOMAINS).contains(&event.sites.len()), "{:?}", event.sites);
    let site: SiteId = SITE.parse().expect("a site id");
    let d = digest(body);
    let beacon = event.to_beacon(site, d[..16].try_into().expect("16 bytes"));
    holds_its_bounds(&beacon);
    let visit = Visit { ip: "81.2.69.142".parse().expect("an address"), user_agent: HUMAN_AGENTS[usize::from(d[16]) % HUMAN_AGENTS.len()] };
    let stored = PIPELINE.anonymise(beacon, visit, &SALT, event_id());
    if let Err(e) = stored.validate() {
        panic!("the ingest would refuse what /api/event made: {e}\n{stored:?}");
    }
}
