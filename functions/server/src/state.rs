//! What every handler shares, built once by a `main`.

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::adapters::{AdapterConfig, Ports, split_geo};
use crate::auth::jwt::AccessTokens;
use crate::auth::rate_limit::{PgSignInLimiter, SignInLimiter};
use crate::blobs::{BlobStore, LocalFolder};
use crate::cache::{CacheStore, InProcessStore};
use crate::field_cipher::FieldCipher;
use crate::mail::{MailTransport, Mailer, OutboxMailer};
use crate::ingest::Ingest;
use crate::salt::PgSaltStore;
use crate::secrets::{CachedSecrets, SECRETS_TTL, Secrets};
use shared::Pipeline;

#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Where the client address comes from (`ENGAGETRACK_CLIENT_IP`).
    pub client_ip: crate::client_ip::ClientIpMode,
    /// The Cloudflare KV namespaces the salts and the site list are published
    /// to; `None`: no edge, nothing is published.
    pub edge_kv: Option<crate::edge_publish::EdgeKvConfig>,
    /// MaxMind DB files (GeoIP2/GeoLite2 City or DB-IP city) for geolocation.
    pub geo_files: Vec<PathBuf>,
    /// Where users reach the dashboard; links in mail point here.
    pub public_url: String,
    /// Google / GitHub sign-in, where configured.
    pub oauth: Vec<crate::oauth::ProviderConfig>,
    /// The payment providers' API origins and the LemonSqueezy store.
    pub payments: crate::adapters::payments::PaymentApiConfig,
    /// The shared cache (`ENGAGETRACK_REDIS_URL`); none means a cache of this process.
    pub redis: Option<crate::adapters::redis::RedisSettings>,
    /// The local host's header-read and request timeouts (slowloris, trickled bodies).
    pub timeouts: crate::routes::host::Timeouts,
    /// Beacons (`POST /api/e`) one site may send this process per second, twice that in a
    /// burst (`ENGAGETRACK_SITE_BEACON_RATE`); none: no limit.
    pub site_beacon_rate: Option<std::num::NonZeroU32>,
    /// The SMTP server mail is sent through (`ENGAGETRACK_SMTP_URL`); none
    /// means mail stays in the outbox table.
    pub smtp: Option<crate::adapters::smtp::SmtpSettings>,
    /// Events the local group-commit queue holds at most (`ENGAGETRACK_INGEST_QUEUE`);
    /// `None`: [`crate::group_commit::QUEUE_CAPACITY`].
    pub ingest_queue: Option<std::num::NonZeroUsize>,
}

impl AppConfig {
    pub fn public_url(&self) -> &str {
        if self.public_url.is_empty() { "http://127.0.0.1:8080" } else { self.public_url.trim_end_matches('/') }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub ingest: Arc<Ingest>,
    pub config: Arc<AppConfig>,
    pub access_tokens: Arc<AccessTokens>,
    pub cipher: Arc<FieldCipher>,
    /// The key of identify() email lookups (`visitor-lookup-key`), shared with the ingest.
    pub visitor_lookup: Arc<crate::visitor_requests::LookupKey>,
    pub mailer: Arc<dyn Mailer>,
    /// Notified when a mail is queued, so a local mail worker sends at once.
    pub mail_queued: Arc<tokio::sync::Notify>,
    /// The edge's batch key, the sign-in address-hash key, the billing
    /// webhook secrets (a provider without one answers 404) and the
    /// `GET /metrics` token (none: 404); swapped by [`AppState::refresh_keys`].
    pub keys: Arc<crate::secrets::ServiceKeys>,
    /// The worker's KV (salts, site list); a no-op when no edge is configured.
    pub edge: Arc<dyn crate::edge_publish::EdgeKv>,
    /// Counts failed sign-ins (Postgres, or DynamoDB in the cloud).
    pub sign_in_limiter: Arc<dyn SignInLimiter>,
    /// Where exports handed out as links are written (a folder, or S3).
    pub blobs: Arc<dyn BlobStore>,
    /// The secret source re-read after its TTL, when keys may rotate under a
    /// running process; see [`AppState::refresh_keys`].
    pub secrets: Option<Arc<CachedSecrets>>,
    /// Hot stats answers and live-session checks (see [`crate::cache`]).
    pub cache: Arc<dyn CacheStore>,
    /// The payment providers' APIs (keys from [`AppState::keys`] per call).
    pub payments: Arc<crate::adapters::payments::PaymentApis>,
}


#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Db(#[from] crate::adapters::postgres::DbError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Cipher(#[from] crate::field_cipher::CipherError),
    #[error("{0} is not set")]
    MissingEnv(&'static str),
    #[error("cannot read the geo database {path}: {reason}")]
    Geo { path: PathBuf, reason: String },
    #[error("cannot read the hosting ranges {path} (ENGAGETRACK_HOSTING_RANGES): {reason}")]
    HostingRanges { path: PathBuf, reason: String },
    #[error(transparent)]
    Jwt(#[from] crate::auth::jwt::JwtError),
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    #[error("the secret store has no `{0}`")]
    MissingSecret(&'static str),
    #[error(transparent)]
    ClientIp(#[from] crate::client_ip::ClientIpModeError),
    #[error(transparent)]
    EdgeKvConfig(#[from] crate::edge_publish::EdgeKvConfigError),
    #[error(transparent)]
    CloudflareKv(#[from] crate::adapters::cloudflare_kv::CloudflareKvError),
    #[error(transparent)]
    BeaconRate(#[from] crate::beacon_rate::BeaconRateError),
    #[error("ENGAGETRACK_REDIS_URL: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("payment providers: {0}")]
    Payments(String),
    #[error(transparent)]
    Smtp(#[from] crate::adapters::smtp::SmtpConfigError),
    #[error("the secret `{0}` is not UTF-8 text")]
    SecretNotText(&'static str),
}

/// Redis when a URL is given, else a cache of this process.
pub fn cache_store(redis: Option<&crate::adapters::redis::RedisSettings>) -> Result<Arc<dyn CacheStore>, StateError> {
    Ok(match redis.filter(|r| !r.url.trim().is_empty()) {
        Some(settings) => Arc::new(crate::adapters::redis::RedisCache::connect_lazily(settings)?),
        None => Arc::new(InProcessStore::default()),
    })
}

/// Loads the geo databases named in the configuration into memory.
pub fn load_pipeline(geo_files: &[PathBuf]) -> Result<Pipeline, StateError> {
    load_pipeline_with(geo_files, Vec::new())
}

/// As [`load_pipeline`], plus databases already read (named for errors).
pub fn load_pipeline_with(geo_files: &[PathBuf], read: Vec<(String, Vec<u8>)>) -> Result<Pipeline, StateError> {
    let mut geo = shared::geo::GeoDatabases::new();
    for path in geo_files {
        let bytes = std::fs::read(path).map_err(|e| StateError::Geo { path: path.clone(), reason: e.to_string() })?;
        geo.add(bytes).map_err(|e| StateError::Geo { path: path.clone(), reason: e.to_string() })?;
    }
    for (name, bytes) in read {
        geo.add(bytes).map_err(|e| StateError::Geo { path: PathBuf::from(&name), reason: e.to_string() })?;
    }
    let pipeline = Pipeline::new(geo);
    // Optional: without it the local ingest has no hosting-network signal (the edge has `cf.asn`).
    let Some(path) = std::env::var_os(HOSTING_RANGES_ENV).map(PathBuf::from) else { return Ok(pipeline) };
    let text = std::fs::read_to_string(&path).map_err(|e| StateError::HostingRanges { path: path.clone(), reason: e.to_string() })?;
    let ranges =
        shared::bots::HostingRanges::parse(&text).map_err(|e| StateError::HostingRanges { path: path.clone(), reason: e.to_string() })?;
    tracing::info!(ranges = ranges.len(), "hosting network ranges loaded");
    Ok(pipeline.with_hosting_ranges(ranges))
}

/// A CSV of hosting networks' IP ranges (`scripts/vendor-data.sh hosting-ranges FILE` writes one).
pub const HOSTING_RANGES_ENV: &str = "ENGAGETRACK_HOSTING_RANGES";

impl AppState {
    /// The local adapters (PostgreSQL salts and counters, a temp folder for
    /// blobs), with secrets already read; what `./dev up` and tests run.
    pub fn new(pool: Pool, secrets: &Secrets, config: AppConfig) -> Result<Self, StateError> {
        let ports = Ports {
            salts: Arc::new(PgSaltStore::new(pool.clone())),
            sign_in_limiter: Arc::new(PgSignInLimiter::new(pool.clone())),
            blobs: Arc::new(LocalFolder::new(std::env::temp_dir().join("engagetrack-blobs"))),
            secrets: Arc::new(CachedSecrets::new(Arc::new(crate::secrets::Fixed(secrets.clone())), SECRETS_TTL)),
            geo_databases: Vec::new(),
        };
        Self::with_ports(pool, secrets, config, ports)
    }

    /// Reads the secrets through `ports.secrets`, then builds the state.
    pub async fn from_ports(pool: Pool, config: AppConfig, ports: Ports) -> Result<Self, StateError> {
        let secrets = ports.secrets.current().await?;
        Self::with_ports(pool, &secrets, config, ports)
    }

    pub fn with_ports(pool: Pool, secrets: &Secrets, config: AppConfig, ports: Ports) -> Result<Self, StateError> {
        let cipher = Arc::new(FieldCipher::from_secrets(secrets)?);
        let pipeline = Arc::new(load_pipeline_with(&config.geo_files, ports.geo_databases)?);
        let visitor_lookup = Arc::new(crate::visitor_requests::LookupKey::from_secrets(secrets));
        let ingest = Arc::new(Ingest::new(
            pool.clone(),
            pipeline,
            ports.salts,
            cipher.clone(),
            visitor_lookup.clone(),
            config.site_beacon_rate,
            config.ingest_queue,
        ));
        let secret = |name: &'static str| secrets.get(name).map(<[u8]>::to_vec).ok_or(StateError::MissingSecret(name));
        let edge: Arc<dyn crate::edge_publish::EdgeKv> = match &config.edge_kv {
            Some(kv) => {
                let token = secret(crate::edge_publish::CLOUDFLARE_API_TOKEN)?;
                Arc::new(crate::adapters::cloudflare_kv::CloudflareKv::new(kv, &token)?)
            }
            None => Arc::new(crate::edge_publish::LocalEdgeKv),
        };
        let cache = cache_store(config.redis.as_ref())?;
        let payments = Arc::new(
            crate::adapters::payments::PaymentApis::new(config.payments.clone()).map_err(|e| StateError::Payments(e.to_string()))?,
        );
        let mail_queued = Arc::new(tokio::sync::Notify::new());
        Ok(Self {
            cache,
            payments,
            ingest,
            config: Arc::new(config),
            access_tokens: Arc::new(AccessTokens::from_secrets(secrets)?),
            cipher,
            visitor_lookup,
            mailer: Arc::new(OutboxMailer::with_signal(pool.clone(), mail_queued.clone())),
            mail_queued,
            keys: Arc::new(crate::secrets::ServiceKeys::from_secrets(secrets)?),
            edge,
            sign_in_limiter: ports.sign_in_limiter,
            blobs: ports.blobs,
            secrets: Some(ports.secrets),
            pool,
        })
    }

    /// The SMTP transport with the current `smtp-password`; `None` when no
    /// SMTP server is configured (mail then stays in the outbox).
    pub fn mail_transport(&self) -> Result<Option<Arc<dyn MailTransport>>, StateError> {
        let Some(settings) = &self.config.smtp else {
            return Ok(None);
        };
        let keys = self.keys.current();
        let password = match &keys.smtp_password {
            Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| StateError::SecretNotText(crate::adapters::smtp::SMTP_PASSWORD))?),
            None => None,
        };
        Ok(Some(Arc::new(crate::adapters::smtp::SmtpTransport::new(settings, password)?)))
    }

    /// Re-reads the secrets (once their TTL has passed) and hands new field
    /// and JWT keys to the cipher and the token signer: after a rotation the
    /// new highest id is used for new writes, older ids still decrypt/verify.
    /// The [`crate::secrets::ServiceKeys`] are swapped whole.
    pub async fn refresh_keys(&self) -> Result<(), StateError> {
        let Some(source) = &self.secrets else {
            return Ok(());
        };
        let secrets = source.current().await?;
        self.cipher.reload(&secrets)?;
        self.access_tokens.reload(&secrets)?;
        self.keys.reload(&secrets)?;
        self.visitor_lookup.reload(&secrets);
        Ok(())
    }

    /// Runs [`Self::refresh_keys`] once per secrets TTL for as long as the
    /// process lives (in a Lambda, timers run while it is thawed).
    pub fn spawn_key_refresh(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        let ttl = self.secrets.as_ref().map_or(SECRETS_TTL, |s| s.ttl());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl).await;
                if let Err(e) = state.refresh_keys().await {
                    tracing::error!(error = %e, "refreshing keys from the secret store failed; the old keys stay in use");
                }
            }
        })
    }

    /// For the Lambdas: `DATABASE_URL`, the adapters of [`AdapterConfig::from_env`]
    /// (Secrets Manager, DynamoDB, S3 where their variables are set; the
    /// secrets file `ENGAGETRACK_SECRETS_FILE` otherwise). Nothing here touches
    /// the database: the pool connects on first use, and migrations are a
    /// deploy step (the scheduler's `migrate` job), so a cold start never runs them. They run behind
    /// API Gateway, so the client address is its `sourceIp` unless
    /// `ENGAGETRACK_CLIENT_IP` says otherwise.
    pub async fn from_lambda_env() -> Result<Self, StateError> {
        let url = std::env::var("DATABASE_URL").map_err(|_| StateError::MissingEnv("DATABASE_URL"))?;
        let pool = crate::adapters::postgres::lambda::pool(&url)?;
        let (geo_files, _) = split_geo(&std::env::var("ENGAGETRACK_GEO").unwrap_or_default());
        let public_url = std::env::var("ENGAGETRACK_PUBLIC_URL").unwrap_or_default();
        let oauth = crate::oauth::ProviderConfig::from_env();
        let client_ip = crate::client_ip::ClientIpMode::from_env_or(crate::client_ip::ClientIpMode::ApiGateway)?;
        let edge_kv = crate::edge_publish::EdgeKvConfig::from_env()?;
        let redis = crate::adapters::redis::RedisSettings::from_env();
        let payments = crate::adapters::payments::PaymentApiConfig::from_env();
        let site_beacon_rate = crate::beacon_rate::rate_from_env()?;
        let smtp = crate::adapters::smtp::SmtpSettings::from_env()?;
        let config =
            AppConfig { client_ip, edge_kv, geo_files, public_url, oauth, redis, payments, site_beacon_rate, smtp, ..AppConfig::default() };
        let ports = Ports::from_config(&pool, &AdapterConfig::from_env()).await?;
        let state = Self::from_ports(pool, config, ports).await?;
        state.spawn_key_refresh();
        Ok(state)
    }
}

