//! Cost of the edge pipeline per event (parse → bots → enrich → hash →
//! anonymise), natively, with the GeoIP2 City test database loaded.
//! `cargo bench -p engagetrack-shared --bench pipeline`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use shared::geo::GeoDatabases;
use shared::user_agent::UserAgentParser;
use shared::{EventId, Pipeline, Salt, Visit};

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
];

fn bench(c: &mut Criterion) {
    let mut geo = GeoDatabases::new();
    geo.add(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/GeoIP2-City-Test.mmdb")).unwrap()).unwrap();
    let pipeline = Pipeline::new(geo);
    let salt = Salt::from_bytes([7; 32]);
    let body = br#"{"site":"0192f0c1-7a4e-7000-8000-000000000001","type":"pageview","url":"https://example.com/blog/post?utm_source=newsletter&utm_medium=email","referrer":"https://www.google.com/","title":"A post","sid":"r4nd0m-s3ss10n","w":1920,"h":1080}"#;
    let id = EventId::new(Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap(), [1; 10]);
    let mut n = 0usize;
    c.bench_function("pipeline/pageview (parse+bots+ua+source+geo+hash)", |b| {
        b.iter(|| {
            n += 1;
            let visit = Visit { ip: "81.2.69.142".parse().unwrap(), user_agent: UAS[n % UAS.len()] };
            black_box(pipeline.process(black_box(body), visit, &salt, id).unwrap())
        })
    });
    // Every UA new: the cost when the UA cache misses.
    c.bench_function("pipeline/pageview, UA cache miss", |b| {
        b.iter(|| {
            n += 1;
            let ua = format!("{} Build/{n}", UAS[n % UAS.len()]);
            let visit = Visit { ip: "81.2.69.142".parse().unwrap(), user_agent: &ua };
            black_box(pipeline.process(black_box(body), visit, &salt, id).unwrap())
        })
    });
    let parser = UserAgentParser::default();
    c.bench_function("user_agent/parse_uncached (woothee)", |b| {
        b.iter(|| {
            n += 1;
            black_box(parser.parse_uncached(black_box(UAS[n % UAS.len()])))
        })
    });
    let bots = shared::bots::BotFilter::new();
    c.bench_function("bots/check (human UA, full list scanned)", |b| b.iter(|| black_box(bots.check(black_box(UAS[0]), None))));
    c.bench_function("pipeline/new (compile lists)", |b| b.iter(|| black_box(Pipeline::default())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
