//! `engagetrack-bench soak`: the soak under faults (the engine is
//! `engagetrack_tests::soak`, which the integration test runs too); prints
//! the report, or one JSON object with `--json`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use engagetrack_tests::soak::{self, FaultKind, SoakConfig};

#[derive(clap::Args)]
pub struct SoakArgs {
    /// The `engagetrack` binary to serve with; default: the one beside this bench.
    #[arg(long)]
    server: Option<PathBuf>,
    /// Beacons per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Faults in the order they come, spread evenly over the run.
    #[arg(long, value_delimiter = ',', value_parser = |s: &str| s.parse::<FaultKind>(), default_values_t = FaultKind::ALL)]
    faults: Vec<FaultKind>,
    /// Seconds PostgreSQL stays frozen in `pg-pause` (the server's pool gives up after 5).
    #[arg(long, default_value_t = 12)]
    pause: u64,
    /// The server's commit queue (`serve --ingest-queue`).
    #[arg(long, default_value_t = NonZeroUsize::new(2_000).unwrap_or(NonZeroUsize::MIN))]
    queue: NonZeroUsize,
    /// Beacons sent at once in `queue-fill`; default three times the queue.
    #[arg(long)]
    burst: Option<usize>,
    /// Seconds a beacon waits for its answer.
    #[arg(long, default_value_t = 30)]
    client_timeout: u64,
    #[arg(long)]
    json: bool,
    /// Keep the work directory (the cluster and the server's log).
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let server = match args.server {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("engagetrack"),
    };
    anyhow::ensure!(server.is_file(), "no server binary at {} (cargo build --release -p engagetrack, or pass --server)", server.display());
    let config = SoakConfig {
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        pause: Duration::from_secs(args.pause),
        queue: args.queue,
        burst: args.burst.unwrap_or(3 * args.queue.get()),
        client_timeout: Duration::from_secs(args.client_timeout),
        faults: args.faults,
        keep_dir: args.keep,
        ..SoakConfig::new(server)
    };
    let report = soak::run(&config).await.context("the soak")?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    let total = &report.total;
    anyhow::ensure!(
        total.lost == 0 && total.duplicates == 0 && report.unknown_rows == 0,
        "{} accepted beacons lost, {} stored twice, {} rows not sent by the soak",
        total.lost,
        total.duplicates,
        report.unknown_rows
    );
    Ok(())
}
