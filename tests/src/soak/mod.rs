//! The soak under faults (issue 15): a steady load of beacons on
//! `POST /api/e` of `engagetrack serve` (a child process), on a private
//! PostgreSQL cluster, while faults come on a schedule: PostgreSQL
//! restarted without a checkpoint, frozen with SIGSTOP past the server's
//! database timeouts, the commit queue flooded, the server restarted with
//! SIGTERM and killed with SIGKILL. Each beacon is sent once, with a marker
//! in its path; afterwards the markers are counted in `events` and joined
//! with the answers: an accepted beacon not stored is lost, a marker stored
//! twice is a duplicate. `engagetrack-bench soak` prints the [`Report`];
//! `tests/tests/integration/soak.rs` runs a short one.

pub mod beacons;
pub mod processes;
pub mod report;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engagetrack_server::adapters::postgres as db;
use engagetrack_server::adapters::postgres::local_cluster::DB_NAME;
use nix::sys::signal::Signal;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use processes::{ProcessError, ServerProcess, SoakCluster};
pub use report::{Answer, FaultKind, FaultRecord, MemorySample, Report, Sent, Tally};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The built `engagetrack` binary.
    pub server_binary: PathBuf,
    /// Beacons per second, steady.
    pub rate: u32,
    pub duration: Duration,
    /// Requests open at once at most (each its own connection); the pacer
    /// waits when all are taken.
    pub max_in_flight: usize,
    /// How long a beacon waits for its answer (fetch with keepalive waits long).
    pub client_timeout: Duration,
    /// How long `pg-pause` keeps PostgreSQL frozen: longer than the server's
    /// pool timeouts (5 s to wait for or to make a connection).
    pub pause: Duration,
    /// How long `queue-fill` holds PostgreSQL while its burst arrives, so
    /// the queue cannot drain: shorter than the client timeout.
    pub fill_hold: Duration,
    /// Beacons in the `queue-fill` burst, sent at once.
    pub burst: usize,
    /// The server's commit queue (`--ingest-queue`).
    pub queue: NonZeroUsize,
    /// In this order, spread evenly over the run (at least [`CALM`] apart), with a quiet stretch at its end.
    pub faults: Vec<FaultKind>,
    pub memory_every: Duration,
    /// Keep the work directory (cluster, server log) and name it in the report.
    pub keep_dir: bool,
}

impl SoakConfig {
    /// Five minutes at 500 beacons/s with every fault once.
    pub fn new(server_binary: PathBuf) -> Self {
        let queue = NonZeroUsize::new(2_000).unwrap_or(NonZeroUsize::MIN);
        Self {
            server_binary,
            rate: 500,
            duration: Duration::from_secs(300),
            max_in_flight: 8_000,
            client_timeout: Duration::from_secs(30),
            pause: Duration::from_secs(12),
            fill_hold: Duration::from_secs(3),
            burst: 3 * queue.get(),
            queue,
            faults: FaultKind::ALL.to_vec(),
            memory_every: Duration::from_secs(2),
            keep_dir: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the soak's database: {0}")]
    Db(#[from] db::DbError),
    #[error("the soak's database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the work directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("a soak task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The beacons in flight and their answers.
struct Load {
    http: reqwest::Client,
    url: String,
    site: Uuid,
    started: Instant,
    next_marker: AtomicU64,
    sent: Mutex<Vec<Sent>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    permits: Arc<Semaphore>,
}

impl Load {
    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Sends the next marker's beacon once a request slot is free.
    async fn send_next(self: &Arc<Self>) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else { return };
        let marker = self.next_marker.fetch_add(1, Ordering::Relaxed);
        let load = self.clone();
        tokio::spawn(async move {
            let beacon = beacons::beacon(load.site, marker);
            let at_ms = load.started.elapsed().as_millis() as u64;
            let now = load.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            load.peak_in_flight.fetch_max(now, Ordering::Relaxed);
            let answer = match load
                .http
                .post(&load.url)
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .header(reqwest::header::USER_AGENT, beacon.user_agent)
                .body(beacon.body)
                .send()
                .await
            {
                Ok(r) => {
                    let status = r.status().as_u16();
                    // Read to the end so the connection can carry the next beacon.
                    let _ = r.bytes().await;
                    Answer::Status(status)
                }
                Err(e) if e.is_connect() => Answer::ConnectFailed,
                Err(e) if e.is_timeout() => Answer::TimedOut,
                Err(_) => Answer::Broken,
            };
            load.in_flight.fetch_sub(1, Ordering::Relaxed);
            load.sent.lock().unwrap_or_else(|p| p.into_inner()).push(Sent { marker, at_ms, answer });
            drop(permit);
        });
    }
}

/// Runs the soak and counts what it stored.
pub async fn run(config: &SoakConfig) -> Result<Report, SoakError> {
    let dir = tempfile::Builder::new().prefix("engagetrack-soak-").tempdir()?;
    // The cluster runs as `postgres` under root: it must reach its folders.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let data = dir.path().join("pg");
    let cluster = Arc::new(tokio::task::spawn_blocking(move || SoakCluster::start(&data)).await??);
    cluster.cluster.ensure_database().await.map_err(ProcessError::from)?;
    let database_url = cluster.cluster.connection_string(DB_NAME);
    let site = create_site(&database_url).await?;

    let env = vec![
        ("DATABASE_URL".to_owned(), database_url.clone()),
        ("ENGAGETRACK_SECRETS_FILE".to_owned(), dir.path().join("secrets.json").display().to_string()),
        ("ENGAGETRACK_INGEST_QUEUE".to_owned(), config.queue.to_string()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    let mut server = ServerProcess::new(config.server_binary.clone(), env, crate::free_port(), dir.path().join("server.log"));
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    server.start(&probe).await?;

    let load_before = load_average();
    let load = Arc::new(Load {
        http: reqwest::Client::builder().timeout(config.client_timeout).pool_max_idle_per_host(256).build()?,
        url: format!("{}/api/e", server.base_url()),
        site,
        started: Instant::now(),
        next_marker: AtomicU64::new(0),
        sent: Mutex::new(Vec::new()),
        in_flight: AtomicUsize::new(0),
        peak_in_flight: AtomicUsize::new(0),
        permits: Arc::new(Semaphore::new(config.max_in_flight)),
    });
    let (done, done_rx) = tokio::sync::watch::channel(false);
    let memory = tokio::spawn(sample_memory(server.pid_cell(), load.started, config.memory_every, done_rx));
    let pacer = tokio::spawn(pace(load.clone(), config.rate, config.duration));
    let faults = run_faults(config, &load, &cluster, &mut server).await;
    pacer.await?;
    // Every request is answered or given up on within the client timeout.
    let all = u32::try_from(config.max_in_flight).unwrap_or(u32::MAX);
    drop(load.permits.acquire_many(all).await);
    let seconds = load.seconds();
    let _ = done.send(true);
    let memory = memory.await?;
    // Stopped before counting: nothing is written behind the count.
    server.stop(Signal::SIGTERM).await?;
    let faults = faults?;
    let load_after = load_average();

    let (stored, unknown_rows) = count_markers(&database_url, site, load.next_marker.load(Ordering::Relaxed)).await?;
    let sent = std::mem::take(&mut *load.sent.lock().unwrap_or_else(|p| p.into_inner()));
    let total = Tally::of(&sent, &stored);
    let quiet_from = faults.last().map_or(0, |(_, _, ended_s, _)| (ended_s * 1000.0) as u64 + 1_000);
    let after_faults = Tally::of(sent.iter().filter(|s| s.at_ms >= quiet_from), &stored);
    let faults = faults
        .into_iter()
        .map(|(fault, started_s, ended_s, detail)| {
            let window = (started_s * 1000.0) as u64..=(ended_s * 1000.0) as u64 + 1_000;
            let answers = Tally::of(sent.iter().filter(|s| window.contains(&s.at_ms)), &stored);
            FaultRecord { fault, started_s, ended_s, detail, answers }
        })
        .collect();
    let accepted = |s: &&Sent| matches!(s.answer, Answer::Status(code) if (200..300).contains(&code));
    let mut lost_markers: Vec<u64> = sent.iter().filter(accepted).filter(|s| !stored.contains_key(&s.marker)).map(|s| s.marker).collect();
    let mut duplicate_markers: Vec<u64> = stored.iter().filter(|(_, rows)| **rows > 1).map(|(m, _)| *m).collect();
    lost_markers.sort_unstable();
    duplicate_markers.sort_unstable();
    lost_markers.truncate(20);
    duplicate_markers.truncate(20);
    drop(cluster);
    let work_dir = config.keep_dir.then(|| dir.keep());
    Ok(Report {
        work_dir,
        seconds,
        rate: config.rate,
        queue: config.queue.get(),
        client_timeout_s: config.client_timeout.as_secs_f64(),
        cores: std::thread::available_parallelism().map(NonZeroUsize::get).unwrap_or(1),
        load_before,
        load_after,
        total,
        unknown_rows,
        peak_in_flight: load.peak_in_flight.load(Ordering::Relaxed),
        faults,
        after_faults,
        lives: report::lives(&memory),
        memory,
        lost_markers,
        duplicate_markers,
    })
}

/// Beacon `n` goes out at `n / rate` seconds, for `duration`.
async fn pace(load: Arc<Load>, rate: u32, duration: Duration) {
    let total = u64::from(rate) * duration.as_secs();
    for n in 0..total {
        tokio::time::sleep_until(load.started + Duration::from_nanos(n * 1_000_000_000 / u64::from(rate.max(1)))).await;
        load.send_next().await;
    }
}

/// Between the end of one fault and the start of the next.
const CALM: Duration = Duration::from_secs(2);

/// The faults in order, each at its slot or when the one before it ends;
/// (fault, start, end, what was done) in seconds from the load's start.
async fn run_faults(
    config: &SoakConfig,
    load: &Arc<Load>,
    cluster: &Arc<SoakCluster>,
    server: &mut ServerProcess,
) -> Result<Vec<(FaultKind, f64, f64, String)>, SoakError> {
    let probe = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let slot = config.duration.as_secs_f64() / (config.faults.len() + 2) as f64;
    let mut out = Vec::new();
    let mut calm_from = load.started;
    for (i, fault) in config.faults.iter().enumerate() {
        // A fault starts at its slot, and never before the load has been calm a while after the last.
        tokio::time::sleep_until((load.started + Duration::from_secs_f64(slot * (i + 1) as f64)).max(calm_from)).await;
        let started = load.seconds();
        tracing::info!(fault = fault.name(), at_s = started, "fault");
        let detail = match fault {
            FaultKind::PgRestart => {
                let c = cluster.clone();
                tokio::task::spawn_blocking(move || c.cluster.restart_immediately()).await?.map_err(ProcessError::from)?;
                format!("immediate stop and start, up again after {:.1} s", load.seconds() - started)
            }
            FaultKind::PgPause => {
                let frozen = cluster.freeze()?;
                tokio::time::sleep(config.pause).await;
                let n = frozen.thaw()?;
                format!("{n} processes (postmaster and backends) frozen for {:.1} s", config.pause.as_secs_f64())
            }
            FaultKind::QueueFill => {
                let frozen = cluster.freeze()?;
                let burst = load.clone();
                let count = config.burst;
                let sending = tokio::spawn(async move {
                    for _ in 0..count {
                        burst.send_next().await;
                    }
                });
                tokio::time::sleep(config.fill_hold).await;
                let n = frozen.thaw()?;
                sending.await?;
                format!(
                    "{} beacons at once over the steady load, queue {}, PostgreSQL ({n} processes) held {:.1} s meanwhile",
                    config.burst,
                    config.queue,
                    config.fill_hold.as_secs_f64()
                )
            }
            FaultKind::ServerRestart | FaultKind::ServerKill => {
                let signal = if *fault == FaultKind::ServerKill { Signal::SIGKILL } else { Signal::SIGTERM };
                let exit = server.stop(signal).await?;
                let down = load.seconds();
                server.start(&probe).await?;
                format!("{signal}: {exit} after {:.1} s, serving again {:.1} s later", down - started, load.seconds() - down)
            }
        };
        out.push((*fault, started, load.seconds(), detail));
        calm_from = Instant::now() + CALM;
    }
    Ok(out)
}

async fn sample_memory(
    pid: Arc<std::sync::atomic::AtomicI32>,
    started: Instant,
    every: Duration,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Vec<MemorySample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = done.changed() => return samples,
        }
        let pid = pid.load(Ordering::Relaxed);
        if let Some(rss_kib) = (pid > 0).then(|| processes::rss_kib(pid)).flatten() {
            samples.push(MemorySample { at_s: started.elapsed().as_secs_f64(), pid, rss_kib });
        }
    }
}

/// An organisation and a site of the soak's own, before the server starts.
async fn create_site(database_url: &str) -> Result<Uuid, SoakError> {
    let pool = db::pool(database_url, 1)?;
    db::migrate(&pool).await?;
    let client = pool.get().await.map_err(db::DbError::from)?;
    let (org, site) = (Uuid::new_v4(), Uuid::new_v4());
    client.execute("INSERT INTO organizations (id, name, slug) VALUES ($1, 'Soak', 'soak')", &[&org]).await?;
    client.execute("INSERT INTO sites (id, organization_id, domain, name) VALUES ($1, $2, 'example.com', 'Soak')", &[&site, &org]).await?;
    // On the largest plan: the trial's 10,000 events would turn the load into 402s.
    client
        .execute(
            "UPDATE subscriptions SET plan_id = (SELECT id FROM plans ORDER BY monthly_events DESC LIMIT 1), status = 'active'
             WHERE organization_id = $1",
            &[&org],
        )
        .await?;
    Ok(site)
}

/// Rows per marker of the site; rows that are no marker sent (below `sent`) are counted apart.
async fn count_markers(database_url: &str, site: Uuid, sent: u64) -> Result<(HashMap<u64, u64>, u64), SoakError> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let rows = client.query("SELECT pathname, count(*) FROM events WHERE site_id = $1 GROUP BY pathname", &[&site]).await?;
    let (mut stored, mut unknown) = (HashMap::with_capacity(rows.len()), 0);
    for row in rows {
        let rows = row.get::<_, i64>(1).unsigned_abs();
        match beacons::marker_of(row.get(0)) {
            Some(marker) if marker < sent => drop(stored.insert(marker, rows)),
            _ => unknown += rows,
        }
    }
    drop(client);
    let _ = connection.await;
    Ok((stored, unknown))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}
