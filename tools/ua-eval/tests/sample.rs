//! Guards the classification figures on `sample.jsonl`: 538 lines drawn
//! (seed 16) from the permissively licensed corpora `fixtures.sh` converts
//! (myip.ms bots and browsers from the isbot crate, crawler-user-agents'
//! examples, uap-core's Spider, browser and OS cases, intoli's weighted
//! browsers) plus written Client Hints and behaviour cases. Thresholds are
//! the measured figures minus a small margin: a change that loses more fails.
//! `cargo test --manifest-path tools/ua-eval/Cargo.toml`

use shared::Pipeline;

#[test]
fn sample_stays_above_its_measured_figures() {
    let cases = ua_eval::read_corpus(include_str!("../sample.jsonl")).expect("the sample parses");
    let r = ua_eval::evaluate(&Pipeline::default(), &cases);
    let pct = |s: &ua_eval::Score| s.pct().expect("the sample scores this");
    // Measured 2026-12-04: 100.0% (182), 0.6% (236), 98.4% (64), 81.2% (64), 100.0% (84).
    assert!(pct(&r.bot_recall) >= 98.0, "bot recall {:.1}%: {:?}", pct(&r.bot_recall), r.misses.get("bot"));
    assert!(pct(&r.false_positive) <= 1.0, "false positives {:.1}%: {:?}", pct(&r.false_positive), r.misses.get("fp"));
    assert!(pct(&r.browser) >= 96.0, "browser {:.1}%: {:?}", pct(&r.browser), r.misses.get("browser"));
    assert!(pct(&r.os) >= 78.0, "OS {:.1}%: {:?}", pct(&r.os), r.misses.get("os"));
    assert!(pct(&r.device) >= 98.0, "device {:.1}%: {:?}", pct(&r.device), r.misses.get("device"));
}

#[test]
fn client_hints_and_behaviour_rows_are_all_right() {
    let text = include_str!("../sample.jsonl");
    let hinted: String = text.lines().filter(|l| l.contains("\"headers\"")).map(|l| format!("{l}\n")).collect();
    let cases = ua_eval::read_corpus(&hinted).expect("the sample parses");
    assert_eq!(cases.len(), 8);
    let r = ua_eval::evaluate(&Pipeline::default(), &cases);
    assert!(r.misses.is_empty(), "{:?}", r.misses);
}
