//! The whole edge pipeline on a beacon body, as two visitors from different
//! IPs and browsers: the IP and the raw User-Agent never show in the event
//! (in any textual form), the IP changes nothing but the visitor hash and the
//! geo fields, every event passes the ingest's own check, and an event reads
//! back from its JSON as itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use shared::{AnonymisedEvent, Enrichment, Pipeline, Processed, Visit, VisitorHash};

use super::{HUMAN_AGENTS, PIPELINE, SALT, digest, dump, event_id};
use crate::corpus::{fuzz_target, leaks};

fuzz_target!("beacon", property);

fn property(body: &[u8]) {
    let d = digest(body);
    let (ip, other_ip) = (address(d[0], &d[1..17]), address(d[0].wrapping_add(1), &d[16..32]));
    let ua = HUMAN_AGENTS[usize::from(d[17]) % HUMAN_AGENTS.len()];
    let other_ua = HUMAN_AGENTS[(usize::from(d[17]) + 1) % HUMAN_AGENTS.len()];
    let pipeline: &Pipeline = &PIPELINE;
    let run = |ip, user_agent| pipeline.process(body, Visit { ip, user_agent }, &SALT, event_id());
    let (event, same_browser, stranger) = (run(ip, ua), run(other_ip, ua), run(other_ip, other_ua));
    match (event, same_browser, stranger) {
        (Err(e), Err(e2), Err(e3)) => {
            assert!(e == e2 && e == e3, "the IP or UA changed the parse error");
            assert!(!e.to_string().trim().is_empty(), "an error without a reason");
        }
        (Ok(Processed::Event(event)), Ok(Processed::Event(same_browser)), Ok(Processed::Event(stranger))) => {
            let (dumped, baseline) = (dump(&event), dump(&stranger));
            for form in textual_forms(ip) {
                assert!(!leaks(&form, &dumped, &baseline), "the IP {form} shows in the event: {}", shown(&dumped));
            }
            assert!(!leaks(ua, &dumped, &baseline), "the raw User-Agent shows in the event: {}", shown(&dumped));
            assert_eq!(without_ip_facts(&event), without_ip_facts(&same_browser), "the IP changed more than the hash and geo");
            if let Err(e) = event.validate() {
                panic!("the ingest would refuse what the edge made: {e}\n{}", shown(&dumped));
            }
            let json = serde_json::to_string(&event).expect("an event serialises");
            let back: AnonymisedEvent = serde_json::from_str(&json).expect("an event's JSON reads back");
            assert_eq!(back, *event, "JSON round trip");
        }
        (Ok(Processed::Bot(reason)), Ok(Processed::Bot(same)), _) => assert_eq!(reason, same, "the IP changed the bot verdict"),
        (a, b, c) => panic!("one body, different outcomes: {a:?} / {b:?} / {c:?}"),
    }
}

/// The start of a dump, enough to see the fault in a failure message.
fn shown(dump: &str) -> String {
    dump.chars().take(600).collect()
}

/// An IPv4, an IPv6 or an IPv4 reached over IPv6 (`::ffff:a.b.c.d`).
fn address(family: u8, bytes: &[u8]) -> IpAddr {
    let v4 = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    match family % 3 {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..16]).expect("16 bytes"))),
        _ => IpAddr::V6(v4.to_ipv6_mapped()),
    }
}

/// How an address can be written: as Rust prints it, IPv6 in full and padded,
/// and the IPv4 inside a mapped IPv6.
fn textual_forms(ip: IpAddr) -> Vec<String> {
    let mut forms = vec![ip.to_string()];
    if let IpAddr::V6(v6) = ip {
        let s = v6.segments();
        forms.push(s.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":"));
        forms.push(s.iter().map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(":"));
        if let Some(v4) = v6.to_ipv4_mapped() {
            forms.push(v4.to_string());
        }
    }
    forms
}

/// The event less what the IP may decide: the visitor hash and the place.
fn without_ip_facts(event: &AnonymisedEvent) -> AnonymisedEvent {
    let enrichment = Enrichment { country: None, region: None, city: None, ..event.enrichment.clone() };
    AnonymisedEvent { visitor: VisitorHash::from_i64(0), enrichment, ..event.clone() }
}
