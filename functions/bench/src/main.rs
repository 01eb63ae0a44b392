//! `cargo run --release -p engagetrack-bench -- <copy|rollup|http|stats|soak>`
//!
//! Each run makes a scratch database on the PostgreSQL at `DATABASE_URL`
//! (else 127.0.0.1:5432), measures, prints one JSON line, and drops it;
//! `soak` runs its own PostgreSQL and server instead (see [`soak`]).

/// Many small allocations per beacon (parsing, enrichment, the queue):
/// mimalloc serves them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, Utc};
use clap::{Parser, Subcommand};
use engagetrack_server::rollup;

mod soak;
mod stats;
use engagetrack_tests::TestApp;
use shared::{AnonymisedEvent, EventId, Pipeline, Processed, Salt, SiteId, Visit};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rows per second through EventStore::write (binary COPY + ON CONFLICT).
    Copy {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
    /// Seconds to roll up one site's day of N events.
    Rollup {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// Seed N events over 30 days for one site (SQL generate_series), roll the
    /// days up, then time the dashboard's query set for the last 30 days.
    Stats {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Times of each funnel query (raw events, so far slower than the rollup-read set).
        #[arg(long, default_value_t = 10)]
        funnel_runs: usize,
        /// Seed, then time the funnels only (no rollups, no dashboard set).
        #[arg(long)]
        funnels_only: bool,
    },
    /// Serve the app and load `POST /api/e` from a second process (wrk);
    /// events per second counted as rows in PostgreSQL.
    Http {
        #[arg(long, default_value_t = 20)]
        seconds: u32,
        #[arg(long, default_value_t = 64)]
        connections: u32,
    },
    /// A steady load of beacons on `engagetrack serve` (a child process) and
    /// its own PostgreSQL while both are restarted, paused, flooded and
    /// killed; accepted, refused, unanswered, stored, lost and duplicated
    /// beacons, per fault, and the server's memory over time.
    Soak(soak::SoakArgs),
}

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.6 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
];

/// A day of synthetic events: `visitors` visitors, a few pageviews and
/// engagements each, spread over the day.
fn synthetic_day(site: SiteId, n: usize) -> Vec<AnonymisedEvent> {
    let pipeline = Pipeline::default();
    let salt = Salt::from_bytes([3; 32]);
    let day = Utc::now().date_naive() - Duration::days(1);
    let start = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    (0..n)
        .filter_map(|i| {
            let visitor = i / 4;
            let kind = if i % 2 == 0 { r#""type":"pageview""# } else { r#""type":"engagement","ms":12000,"scroll":60"# };
            let body = format!(
                r#"{{"site":"{site}",{kind},"url":"https://example.com/p{}?utm_source=s{}","referrer":"https://www.google.com/","sid":"sess{visitor:08}","w":1440,"h":900}}"#,
                i % 50,
                visitor % 7
            );
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from((visitor as u32).wrapping_mul(2_654_435_761)));
            let at = start + Duration::milliseconds(((visitor * 977) % 86_000_000 + (i % 4) * 20_000) as i64);
            let mut random = [0u8; 10];
            random[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let visit = Visit { ip, user_agent: UAS[visitor % UAS.len()] };
            match pipeline.process(body.as_bytes(), visit, &salt, EventId::new(at, random)).ok()? {
                Processed::Event(e) => Some(*e),
                Processed::Bot(_) => None,
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Soak(args) => return soak::run(args).await,
        other => other,
    };
    let app = TestApp::spawn().await;
    let site = app.create_site().await;
    match command {
        Command::Copy { events, batch } => {
            let all = synthetic_day(site, events);
            let started = Instant::now();
            let mut stored = 0;
            for chunk in all.chunks(batch) {
                stored += app.state.ingest.store().write(chunk).await?;
            }
            let secs = started.elapsed().as_secs_f64();
            println!("{}", serde_json::json!({"bench": "copy", "events": stored, "batch": batch, "seconds": secs, "rows_per_second": stored as f64 / secs}));
        }
        Command::Rollup { events } => {
            let all = synthetic_day(site, events);
            for chunk in all.chunks(5_000) {
                app.state.ingest.store().write(chunk).await?;
            }
            app.db.client().await.batch_execute("VACUUM ANALYZE events").await?;
            let day = Utc::now().date_naive() - Duration::days(1);
            let started = Instant::now();
            let rolled = rollup::rollup_day(&app.state.pool, site, day).await?;
            let secs = started.elapsed().as_secs_f64();
            println!("{}", serde_json::json!({"bench": "rollup", "events": all.len(), "rollup_rows": rolled.rows, "seconds": secs}));
        }
        Command::Stats { events, runs, funnel_runs, funnels_only } => stats::run(&app, site, events, runs, funnel_runs, funnels_only).await?,
        Command::Http { seconds, connections } => {
            let script = std::env::temp_dir().join(format!("engagetrack-wrk-{}.lua", std::process::id()));
            std::fs::write(
                &script,
                format!(
                    "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"text/plain\"\nwrk.headers[\"User-Agent\"] = \"{}\"\n\
                     wrk.body = '{{\"site\":\"{site}\",\"type\":\"pageview\",\"url\":\"https://example.com/a\",\"referrer\":\"https://www.google.com/\",\"sid\":\"wrk-session\",\"w\":1920,\"h\":1080}}'\n",
                    UAS[0]
                ),
            )?;
            let before = app.count_events(site).await;
            let out = tokio::process::Command::new("wrk")
                .args(["-t", "2", "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "-s"])
                .arg(&script)
                .arg(app.url("/api/e"))
                .output()
                .await
                .context("running wrk (apt-get install wrk)")?;
            let _ = std::fs::remove_file(&script);
            let report = String::from_utf8_lossy(&out.stdout).to_string();
            let stored = app.count_events(site).await - before;
            let non_2xx = report.lines().find(|l| l.contains("Non-2xx")).unwrap_or("Non-2xx or 3xx responses: 0").to_owned();
            eprintln!("{report}");
            println!(
                "{}",
                serde_json::json!({"bench": "http", "seconds": seconds, "connections": connections, "stored": stored,
                                   "events_per_second": stored as f64 / f64::from(seconds), "wrk_non_2xx": non_2xx})
            );
        }
        Command::Soak(_) => anyhow::bail!("the soak runs on its own PostgreSQL, not the scratch database"),
    }
    Ok(())
}
