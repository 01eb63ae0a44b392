//! `engagetrack`: the whole product on one machine. This file only wires
//! configuration, adapters and the router; the logic is in the server library.

/// Many small allocations per beacon (parsing, enrichment, the queue):
/// mimalloc serves them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engagetrack_server::client_ip::ClientIpMode;
use engagetrack_server::edge_publish::EdgeKvConfig;
use engagetrack_server::jobs::{Job, MAIL_PER_RUN};
use engagetrack_server::mail;
use engagetrack_server::notices;
use engagetrack_server::adapters::postgres::local_cluster::{self, LocalCluster};
use engagetrack_server::seed::{self, SeedOptions};
use engagetrack_server::state::load_pipeline;
use engagetrack_server::adapters::postgres as db;
use engagetrack_server::adapters::smtp::SmtpSettings;
use engagetrack_server::{AppConfig, AppState, enrich, rollup, secrets, telemetry};

#[derive(Parser)]
#[command(version, about = "EngageTrack: privacy-first web analytics, run whole on one machine")]
struct Cli {
    /// PostgreSQL to use. When unset, a private cluster is made in --data-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Where the private PostgreSQL cluster lives (used without DATABASE_URL).
    #[arg(long, env = "ENGAGETRACK_DATA_DIR", global = true, default_value = ".engagetrack/pg")]
    data_dir: PathBuf,
    /// The local secret store: generated once, mode 0600.
    #[arg(long, env = "ENGAGETRACK_SECRETS_FILE", global = true, default_value = ".engagetrack/secrets.json")]
    secrets_file: PathBuf,
    /// A MaxMind DB for geolocation (GeoIP2/GeoLite2 City, or DB-IP city);
    /// repeat for DB-IP's separate IPv4 and IPv6 files.
    #[arg(long = "geo", env = "ENGAGETRACK_GEO", global = true, value_delimiter = ':')]
    geo_files: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route on one port, with the scheduled jobs on timers.
    Serve {
        #[arg(long, env = "ENGAGETRACK_ADDR", default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// Where the client address comes from: socket (the TCP peer), proxy (the
        /// rightmost X-Forwarded-For hop, appended by your trusted proxy),
        /// cloudflare (CF-Connecting-IP only) or api-gateway (requestContext sourceIp).
        #[arg(long, env = "ENGAGETRACK_CLIENT_IP", default_value = "socket")]
        client_ip: ClientIpMode,
        /// The same as --client-ip proxy.
        #[arg(long, conflicts_with = "client_ip")]
        trust_proxy: bool,
        /// The address users open the dashboard at (links in mail); defaults to http://<addr>.
        #[arg(long, env = "ENGAGETRACK_PUBLIC_URL")]
        public_url: Option<String>,
        /// Beacons waiting for their group commit at most; beyond it `POST /api/e` answers 503.
        #[arg(long, env = "ENGAGETRACK_INGEST_QUEUE", default_value_t = engagetrack_server::group_commit::QUEUE_CAPACITY)]
        ingest_queue: std::num::NonZeroUsize,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Create the demo account and site with a month of synthetic traffic.
    SeedDemo {
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 4_000)]
        visitors: u32,
        /// The dashboard address printed in the result.
        #[arg(long, default_value = "http://127.0.0.1:8080/")]
        url: String,
    },
    /// Make today's and tomorrow's salts; destroy salts whose day is over;
    /// publish them to the worker's SALTS KV when ENGAGETRACK_CF_ACCOUNT_ID is set.
    RotateSalt,
    /// Rewrite the worker's SITES KV from the database (repairs drift).
    SyncEdgeSites,
    /// Roll up today, yesterday and late days (or only --day YYYY-MM-DD) into daily summaries.
    Rollup {
        #[arg(long)]
        day: Option<chrono::NaiveDate>,
    },
    /// Delete raw events past retention, erase accounts deleted 30+ days ago, trim the audit log.
    Retention,
    /// Send due mail from the outbox through ENGAGETRACK_SMTP_URL once (at most
    /// 200 messages); prints what was sent, retried and failed.
    SendMail,
    /// Queue the weekly and monthly email reports that are due now (each once).
    SendReports,
    /// Queue traffic-spike alerts for members whose threshold is reached (at most one an hour each).
    SpikeAlerts,
    /// Classify JSON lines {"ua","ip","url","referrer"} from stdin as the edge would.
    Enrich,
    /// Import another tool's data into a site (see README "Imports"); prints
    /// progress on stderr and the finished import as JSON.
    Import {
        /// plausible | ga4 | ga4-bigquery | umami | umami-db
        source: String,
        /// The site's domain or id.
        #[arg(long)]
        site: String,
        /// The export file, or for umami-db the database URL.
        target: String,
        /// First day to keep (YYYY-MM-DD); default the file's own range. Needed for umami-db.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// Umami's website id (umami-db).
        #[arg(long)]
        website_id: Option<uuid::Uuid>,
    },
    /// Notices to account holders (a privacy policy change): shown in the
    /// dashboard until dismissed; material ones are also mailed.
    Notice {
        #[command(subcommand)]
        action: NoticeCommand,
    },
}

#[derive(Subcommand)]
enum NoticeCommand {
    /// Publish a notice to every account made before now; run it again with the
    /// same title and body to finish a mailing that stopped midway.
    Publish {
        /// One line, at most 200 characters; also the mail's subject.
        #[arg(long)]
        title: String,
        /// A file holding the notice's plain text.
        #[arg(long)]
        body_file: PathBuf,
        /// A material change: also mail it to every account holder (once each).
        #[arg(long)]
        material: bool,
        /// Where the full text is (the policy page), an absolute http(s) URL.
        #[arg(long)]
        link: Option<String>,
        /// The dashboard's address, named in the mail.
        #[arg(long, env = "ENGAGETRACK_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Every notice with how many holders it concerns, saw, dismissed and were mailed it.
    List,
    /// Stop showing a notice (and mailing it, where mail is not queued yet).
    Withdraw { id: i64 },
}

/// The database this run uses, and the private cluster if we started one.
struct Database {
    url: String,
    _cluster: Option<LocalCluster>,
}

async fn database(cli: &Cli) -> anyhow::Result<Database> {
    if let Some(url) = &cli.database_url {
        return Ok(Database { url: url.clone(), _cluster: None });
    }
    let data_dir = cli.data_dir.clone();
    let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&data_dir)).await??;
    cluster.ensure_database().await?;
    Ok(Database { url: cluster.connection_string(local_cluster::DB_NAME), _cluster: Some(cluster) })
}

async fn state(cli: &Cli, url: &str, config: AppConfig) -> anyhow::Result<AppState> {
    let pool = db::pool(url, 16)?;
    let applied = db::migrate(&pool).await.context("migrating the database")?;
    if !applied.is_empty() {
        tracing::info!(?applied, "applied migrations");
    }
    let secrets = secrets::load_or_create_local(&cli.secrets_file)?;
    Ok(AppState::new(pool, &secrets, config)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    match &cli.command {
        Command::Enrich => {
            let pipeline = load_pipeline(&cli.geo_files)?;
            enrich::run(std::io::stdin().lock(), std::io::BufWriter::new(std::io::stdout().lock()), &pipeline)?;
        }
        Command::Serve { addr, client_ip, trust_proxy, public_url, ingest_queue } => {
            let db = database(&cli).await?;
            let public_url = public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
            let oauth = engagetrack_server::oauth::ProviderConfig::from_env();
            let client_ip = if *trust_proxy { ClientIpMode::Proxy } else { *client_ip };
            let edge_kv = EdgeKvConfig::from_env()?;
            let redis = engagetrack_server::adapters::redis::RedisSettings::from_env();
            let payments = engagetrack_server::adapters::payments::PaymentApiConfig::from_env();
            let timeouts = engagetrack_server::routes::host::Timeouts::from_env()?;
            let site_beacon_rate = engagetrack_server::beacon_rate::rate_from_env()?;
            let smtp = SmtpSettings::from_env()?;
            let config = AppConfig {
                client_ip,
                edge_kv,
                geo_files: cli.geo_files.clone(),
                public_url,
                oauth,
                redis,
                payments,
                timeouts,
                site_beacon_rate,
                smtp,
                ingest_queue: Some(*ingest_queue),
            };
            let state = state(&cli, &db.url, config).await?;
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            tracing::info!("EngageTrack listening on http://{}", listener.local_addr()?);
            let timers = tokio::spawn(run_jobs_on_timers(state.clone()));
            let mail = tokio::spawn(send_mail_when_queued(state.clone()));
            engagetrack_server::serve(listener, state, shutdown_signal()).await?;
            timers.abort();
            mail.abort();
        }
        Command::Migrate => {
            let db = database(&cli).await?;
            let pool = db::pool(&db.url, 2)?;
            let applied = db::migrate(&pool).await?;
            println!("{}", serde_json::json!({ "applied": applied }));
        }
        Command::SeedDemo { days, visitors, url } => {
            let db = database(&cli).await?;
            let state = state(&cli, &db.url, AppConfig { geo_files: cli.geo_files.clone(), ..AppConfig::default() }).await?;
            let options = SeedOptions { days: *days, visitors: *visitors, ..SeedOptions::default() };
            let demo = seed::seed_demo(&state, chrono::Utc::now(), options).await?;
            eprintln!("demo: {} events sent, {} stored", demo.events_sent, demo.events_stored);
            println!(
                "{}",
                serde_json::json!({ "site_id": demo.site_id, "email": demo.email, "password": demo.password, "url": url })
            );
        }
        Command::RotateSalt => {
            let db = database(&cli).await?;
            let config = AppConfig { edge_kv: EdgeKvConfig::from_env()?, ..AppConfig::default() };
            let state = state(&cli, &db.url, config).await?;
            println!("{}", Job::RotateSalt.run(&state, chrono::Utc::now()).await?);
        }
        Command::SyncEdgeSites => {
            let db = database(&cli).await?;
            let config = AppConfig { edge_kv: EdgeKvConfig::from_env()?, ..AppConfig::default() };
            let state = state(&cli, &db.url, config).await?;
            println!("{}", Job::SyncEdgeSites.run(&state, chrono::Utc::now()).await?);
        }
        Command::Rollup { day } => {
            let db = database(&cli).await?;
            let state = state(&cli, &db.url, AppConfig::default()).await?;
            let started = std::time::Instant::now();
            let rolled = rollup::rollup_due(&state.pool, chrono::Utc::now(), *day).await?;
            eprintln!("rolled up {} site-days in {:.2?}", rolled.len(), started.elapsed());
            println!("{}", serde_json::json!({ "rolled_up": rolled }));
        }
        Command::SendMail => {
            let db = database(&cli).await?;
            let config = AppConfig { smtp: Some(SmtpSettings::from_env()?.context("ENGAGETRACK_SMTP_URL is not set")?), ..AppConfig::default() };
            let state = state(&cli, &db.url, config).await?;
            println!("{}", Job::SendMail.run(&state, chrono::Utc::now()).await?);
        }
        Command::Notice { action } => notice(&cli, action).await?,
        Command::Import { source, site, target, from, to, website_id } => {
            let db = database(&cli).await?;
            let state = state(&cli, &db.url, AppConfig::default()).await?;
            import(&state.pool, source, site, target, (*from, *to), *website_id).await?;
        }
        Command::Retention => {
            let db = database(&cli).await?;
            let state = state(&cli, &db.url, AppConfig::default()).await?;
            println!("{}", Job::Retention.run(&state, chrono::Utc::now()).await?);
        }
        Command::SendReports | Command::SpikeAlerts => {
            let db = database(&cli).await?;
            let public_url = std::env::var("ENGAGETRACK_PUBLIC_URL").unwrap_or_default();
            let state = state(&cli, &db.url, AppConfig { public_url, ..AppConfig::default() }).await?;
            let job = if matches!(cli.command, Command::SendReports) { Job::SendReports } else { Job::SpikeAlerts };
            println!("{}", job.run(&state, chrono::Utc::now()).await?);
        }
    }
    Ok(())
}

/// `engagetrack import …`: runs the import, polling its progress meanwhile.
async fn import(
    pool: &db::Pool,
    source: &str,
    site: &str,
    target: &str,
    range: (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>),
    website_id: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    use engagetrack_server::imports::{self, SourceKind, store};
    let source = SourceKind::parse(source)?;
    let range = match range {
        (Some(a), Some(b)) => Some((a, b)),
        (None, None) => None,
        _ => anyhow::bail!("give both --from and --to, or neither"),
    };
    let site_id = store::site_by_ref(pool, site).await?.with_context(|| format!("no site `{site}`"))?;
    let run = {
        let pool = pool.clone();
        let target = target.to_owned();
        tokio::spawn(async move {
            if source == SourceKind::UmamiDb {
                let website = website_id.context("umami-db needs --website-id")?;
                let (from, to) = range.context("umami-db needs --from and --to")?;
                let origin = "umami database".to_owned();
                let new = store::NewImport { site_id, source, origin, started_by: None, bytes_total: 0 };
                let read = imports::umami::read_database(&target, website, from, to);
                Ok::<_, anyhow::Error>(imports::run(&pool, new, range, read).await?)
            } else {
                let bytes = std::fs::read(&target).with_context(|| format!("cannot read {target}"))?;
                let name = std::path::Path::new(&target).file_name().map_or(target.clone(), |n| n.to_string_lossy().into_owned());
                let new = store::NewImport { site_id, source, origin: name.clone(), started_by: None, bytes_total: bytes.len() as i64 };
                Ok(imports::run_file(&pool, new, range, name, bytes).await?)
            }
        })
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let finished = loop {
        tick.tick().await;
        if run.is_finished() {
            break run.await??;
        }
        if let Some(i) = store::list(pool, site_id).await?.into_iter().find(|i| i.status == "running") {
            eprintln!("{}: {} of {} rows", i.origin, i.rows_done, i.rows_total);
        }
    };
    eprintln!("{}: done, {} rows for {}..{}", finished.origin, finished.rows_done, finished.range_start, finished.range_end);
    for w in &finished.warnings {
        eprintln!("warning: {w}");
    }
    println!("{}", serde_json::to_string(&finished)?);
    Ok(())
}

/// `engagetrack notice …`: the input is checked before any database is touched.
/// The schema must be migrated (`engagetrack migrate`, or a `serve` that ran).
async fn notice(cli: &Cli, action: &NoticeCommand) -> anyhow::Result<()> {
    enum Checked {
        Publish(notices::NewNotice, Option<String>),
        List,
        Withdraw(i64),
    }
    let checked = match action {
        NoticeCommand::Publish { title, body_file, material, link, public_url } => {
            let body = std::fs::read_to_string(body_file).with_context(|| format!("cannot read the body file {}", body_file.display()))?;
            Checked::Publish(notices::NewNotice::parse(title, &body, link.as_deref(), *material)?, public_url.clone())
        }
        NoticeCommand::List => Checked::List,
        NoticeCommand::Withdraw { id } => Checked::Withdraw(*id),
    };
    // Only the database and the outbox: no secrets, and no migrations, since
    // against RDS the schema is the deploy's step (the scheduler's `migrate`).
    let db = database(cli).await?;
    let pool = db::pool(&db.url, 4)?;
    let mailer = mail::OutboxMailer::new(pool.clone());
    let now = chrono::Utc::now();
    let out = match checked {
        Checked::Publish(new, public_url) => {
            serde_json::to_value(notices::publish(&pool, &mailer, &new, public_url.as_deref(), now).await?)?
        }
        Checked::List => serde_json::json!({ "notices": notices::list(&pool).await? }),
        Checked::Withdraw(id) => serde_json::json!({ "withdrawn": notices::withdraw(&pool, id, now).await? }),
    };
    println!("{out}");
    Ok(())
}

/// The EventBridge schedules' local stand-in, on a one-minute tick: spike
/// alerts every minute, salts, quotas, reports and unfinished notice mailings
/// every 5 minutes, rollups every hour, retention once a day (each also at start-up).
async fn run_jobs_on_timers(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    for n in 0u64.. {
        tick.tick().await;
        let due = [
            (Job::SpikeAlerts, 1),
            (Job::RotateSalt, 5),
            (Job::Quota, 5),
            (Job::SendReports, 5),
            (Job::NoticeMail, 5),
            (Job::Rollup, 60),
            (Job::SyncEdgeSites, 60),
            (Job::Retention, 1440),
        ];
        for (job, every) in due {
            if n % every == 0 {
                if let Err(e) = job.run(&state, chrono::Utc::now()).await {
                    tracing::error!(job = job.name(), error = %e, "job failed");
                }
            }
        }
    }
}

/// With SMTP configured: sends queued mail at once, and due retries within
/// [`MAIL_POLL`]. Without SMTP, mail stays in the outbox and this does nothing.
async fn send_mail_when_queued(state: AppState) {
    if state.config.smtp.is_none() {
        tracing::info!("no ENGAGETRACK_SMTP_URL: mail stays in the mail_outbox table");
        return;
    }
    loop {
        // Built per round: it takes the smtp-password of this moment.
        let drained = match state.mail_transport() {
            Ok(Some(transport)) => mail::worker::drain(&state.pool, &*transport, chrono::Utc::now(), MAIL_PER_RUN).await.map_err(anyhow::Error::from),
            Ok(None) => return,
            Err(e) => Err(e.into()),
        };
        match drained {
            Ok(d) if d == mail::worker::Drained::default() => {}
            Ok(d) => tracing::info!(sent = d.sent, retrying = d.retrying, failed = d.failed, "mail worker round"),
            Err(e) => tracing::error!(error = %e, "mail worker round failed"),
        }
        let _ = tokio::time::timeout(MAIL_POLL, state.mail_queued.notified()).await;
    }
}

/// How often the local mail worker looks for retries that fell due.
const MAIL_POLL: std::time::Duration = std::time::Duration::from_secs(15);

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async move {
        match term.as_mut() {
            Some(t) => drop(t.recv().await),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
