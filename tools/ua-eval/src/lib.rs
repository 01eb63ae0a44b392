//! Scores the shared pipeline (the edge's own code) on a labelled corpus of
//! JSON lines: `{"ua", "expected": {"bot"?, "browser"?, "os"?, "device"?},
//! "headers"?, "weight"?}`. Headers are the request's own (lower-case names),
//! e.g. `accept-language`, `sec-ch-ua`, `sec-ch-ua-mobile`, `sec-ch-ua-platform`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Deserialize;
use shared::Pipeline;
use shared::bots::RequestSignals;

#[derive(Debug, Deserialize)]
pub struct Case {
    pub ua: String,
    #[serde(default)]
    pub expected: Expected,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    pub weight: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Expected {
    pub bot: Option<bool>,
    pub browser: Option<String>,
    pub os: Option<String>,
    pub device: Option<String>,
}

pub fn read_corpus(text: &str) -> Result<Vec<Case>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Share of cases right (weighted by `weight` when the corpus has one), and how many were scored.
#[derive(Debug, Default, Clone, Copy)]
pub struct Score {
    pub right: f64,
    pub total: f64,
    pub n: usize,
}

impl Score {
    fn add(&mut self, ok: bool, weight: f64) {
        self.n += 1;
        self.total += weight;
        if ok {
            self.right += weight;
        }
    }
    pub fn pct(&self) -> Option<f64> {
        (self.n > 0).then(|| 100.0 * self.right / self.total.max(f64::MIN_POSITIVE))
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub cases: usize,
    /// Bots flagged among expected bots.
    pub bot_recall: Score,
    /// People flagged among expected people (lower is better).
    pub false_positive: Score,
    pub browser: Score,
    pub os: Score,
    pub device: Score,
    /// Mean µs per UA: bot check + parse, first sight (uncached) and repeated (cached).
    pub us_uncached: f64,
    pub us_cached: f64,
    /// What went wrong, by kind ("bot", "fp", "browser", …): (expected, got, ua).
    pub misses: BTreeMap<&'static str, Vec<(String, String, String)>>,
}

fn header<'a>(case: &'a Case, name: &str) -> Option<&'a str> {
    case.headers.get(name).map(String::as_str)
}

pub fn evaluate(pipeline: &Pipeline, cases: &[Case]) -> Report {
    let mut r = Report { cases: cases.len(), ..Report::default() };
    let started = Instant::now();
    for case in cases {
        let signals = RequestSignals {
            // A corpus line without headers says nothing about the request's headers.
            headers_seen: !case.headers.is_empty(),
            accept_language: header(case, "accept-language"),
            sec_ch_ua: header(case, "sec-ch-ua"),
            sec_ch_ua_mobile: header(case, "sec-ch-ua-mobile"),
            sec_ch_ua_platform: header(case, "sec-ch-ua-platform"),
            asn: header(case, "x-asn").and_then(|a| a.parse().ok()),
        };
        let x = pipeline.explain_request(&case.ua, None, None, None, &signals);
        let w = case.weight.unwrap_or(1.0);
        let e = &case.expected;
        let mut miss = |kind: &'static str, want: &str, got: &str| {
            r.misses.entry(kind).or_default().push((want.to_owned(), got.to_owned(), case.ua.clone()));
        };
        match e.bot {
            Some(true) => {
                r.bot_recall.add(x.bot, w);
                if !x.bot {
                    miss("bot", "bot", "person");
                }
            }
            Some(false) => {
                r.false_positive.add(x.bot, w);
                if x.bot {
                    miss("fp", "person", x.bot_reason.as_deref().unwrap_or_default());
                }
            }
            None => {}
        }
        for (kind, want, got, score) in [
            ("browser", &e.browser, &x.enrichment.browser, &mut r.browser),
            ("os", &e.os, &x.enrichment.os, &mut r.os),
            ("device", &e.device, &x.enrichment.device, &mut r.device),
        ] {
            if let Some(want) = want {
                let got = got.as_deref().unwrap_or("Other");
                score.add(want == got, w);
                if want != got {
                    miss(kind, want, got);
                }
            }
        }
    }
    r.us_uncached = started.elapsed().as_secs_f64() * 1e6 / cases.len().max(1) as f64;
    let started = Instant::now();
    for case in cases {
        std::hint::black_box(pipeline.explain(std::hint::black_box(&case.ua), None, None, None));
    }
    r.us_cached = started.elapsed().as_secs_f64() * 1e6 / cases.len().max(1) as f64;
    r
}
