//! One module per outside system. Each implements a port trait that lives in
//! the domain module using it; nothing outside `adapters/` names an SDK type.

pub mod aws;
pub mod cloudflare_kv;
pub mod payments;
pub mod postgres;
pub mod redis;
pub mod smtp;

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::auth::rate_limit::{PgSignInLimiter, SignInLimiter};
use crate::blobs::{BlobStore, LocalFolder};
use crate::salt::{PgSaltStore, SaltStore};
use crate::secrets::{CachedSecrets, LocalSecretsFile, SECRETS_TTL, SecretSource};
use crate::state::StateError;
use aws::AwsSettings;

/// The adapters behind the ports, chosen once by [`Ports::from_config`].
pub struct Ports {
    pub salts: Arc<dyn SaltStore>,
    pub sign_in_limiter: Arc<dyn SignInLimiter>,
    pub blobs: Arc<dyn BlobStore>,
    pub secrets: Arc<CachedSecrets>,
    /// Geo databases already read (from the bucket), beside `AppConfig::geo_files`.
    pub geo_databases: Vec<(String, Vec<u8>)>,
}

/// Which adapters to use; every field unset means the local ones, as
/// `./dev up` runs. Read from the environment by [`AdapterConfig::from_env`].
#[derive(Debug, Clone, Default)]
pub struct AdapterConfig {
    /// `ENGAGETRACK_SECRET_ID`: the Secrets Manager secret; else `secrets_file`.
    pub secret_id: Option<String>,
    /// `ENGAGETRACK_SECRETS_FILE`: the local secrets file.
    pub secrets_file: Option<PathBuf>,
    /// `ENGAGETRACK_SALTS_TABLE`: DynamoDB salts; else PostgreSQL.
    pub salts_table: Option<String>,
    /// `ENGAGETRACK_RATE_LIMITS_TABLE`: DynamoDB sign-in counters; else PostgreSQL.
    pub rate_limits_table: Option<String>,
    /// `ENGAGETRACK_BUCKET`: S3 for exports; else `blob_dir`.
    pub bucket: Option<String>,
    /// The local blob folder (default: `engagetrack-blobs` in the temp dir).
    pub blob_dir: Option<PathBuf>,
    /// `s3://bucket/key` entries of `ENGAGETRACK_GEO`, read at cold start.
    pub geo_objects: Vec<String>,
    /// How long a read of the secret store is reused (default [`SECRETS_TTL`]).
    pub secrets_ttl: Option<std::time::Duration>,
    /// Endpoint, region and credentials beyond the SDK's own environment.
    pub aws: AwsSettings,
}

fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Splits `ENGAGETRACK_GEO` on `:` like a PATH, keeping `s3://bucket/key`
/// entries whole: (local files, S3 URLs).
pub fn split_geo(raw: &str) -> (Vec<PathBuf>, Vec<String>) {
    let (mut files, mut objects) = (Vec::new(), Vec::new());
    let mut parts = raw.split(':').peekable();
    while let Some(part) = parts.next() {
        if part == "s3" && parts.peek().is_some_and(|p| p.starts_with("//")) {
            objects.push(format!("s3:{}", parts.next().unwrap_or_default()));
        } else if !part.is_empty() {
            files.push(PathBuf::from(part));
        }
    }
    (files, objects)
}

impl AdapterConfig {
    /// The configuration contract's variables (see README "Deploying").
    pub fn from_env() -> Self {
        let (_, geo_objects) = split_geo(&std::env::var("ENGAGETRACK_GEO").unwrap_or_default());
        Self {
            secret_id: env_opt("ENGAGETRACK_SECRET_ID"),
            secrets_file: env_opt("ENGAGETRACK_SECRETS_FILE").map(PathBuf::from),
            salts_table: env_opt("ENGAGETRACK_SALTS_TABLE"),
            rate_limits_table: env_opt("ENGAGETRACK_RATE_LIMITS_TABLE"),
            bucket: env_opt("ENGAGETRACK_BUCKET"),
            blob_dir: None,
            geo_objects,
            secrets_ttl: None,
            aws: AwsSettings::default(),
        }
    }

    fn uses_aws(&self) -> bool {
        self.secret_id.is_some() || self.salts_table.is_some() || self.rate_limits_table.is_some() || self.bucket.is_some() || !self.geo_objects.is_empty()
    }
}

impl Ports {
    /// The one place adapters are chosen: each AWS one where its variable
    /// is set, the local one otherwise.
    pub async fn from_config(pool: &Pool, adapters: &AdapterConfig) -> Result<Self, StateError> {
        let sdk = if adapters.uses_aws() { Some(aws::sdk_config(&adapters.aws).await) } else { None };
        let ttl = adapters.secrets_ttl.unwrap_or(SECRETS_TTL);
        let source: Arc<dyn SecretSource> = match (&adapters.secret_id, &sdk, &adapters.secrets_file) {
            (Some(id), Some(sdk), _) => Arc::new(aws::secrets_manager::SecretsManagerSource::new(sdk, id)),
            (None, _, Some(file)) => Arc::new(LocalSecretsFile(file.clone())),
            _ => {
                return Err(StateError::MissingEnv("ENGAGETRACK_SECRET_ID or ENGAGETRACK_SECRETS_FILE"));
            }
        };
        let salts: Arc<dyn SaltStore> = match (&adapters.salts_table, &sdk) {
            (Some(table), Some(sdk)) => Arc::new(aws::dynamodb::DynamoSaltStore::new(sdk, table)),
            _ => Arc::new(PgSaltStore::new(pool.clone())),
        };
        let sign_in_limiter: Arc<dyn SignInLimiter> = match (&adapters.rate_limits_table, &sdk) {
            (Some(table), Some(sdk)) => Arc::new(aws::dynamodb::DynamoSignInLimiter::new(sdk, table)),
            _ => Arc::new(PgSignInLimiter::new(pool.clone())),
        };
        let blobs: Arc<dyn BlobStore> = match (&adapters.bucket, &sdk) {
            (Some(bucket), Some(sdk)) => Arc::new(aws::s3::S3BlobStore::new(sdk, bucket)),
            _ => Arc::new(LocalFolder::new(adapters.blob_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("engagetrack-blobs")))),
        };
        let mut geo_databases = Vec::new();
        if let (Some(sdk), false) = (&sdk, adapters.geo_objects.is_empty()) {
            let client = aws::s3::client(sdk);
            for url in &adapters.geo_objects {
                let geo_error = |reason: String| StateError::Geo { path: PathBuf::from(url), reason };
                let (bucket, key) = url
                    .strip_prefix("s3://")
                    .and_then(|rest| rest.split_once('/'))
                    .filter(|(b, k)| !b.is_empty() && !k.is_empty())
                    .ok_or_else(|| geo_error("not of the form s3://bucket/key".into()))?;
                let bytes = aws::s3::fetch(&client, bucket, key).await.map_err(|e| geo_error(e.to_string()))?;
                geo_databases.push((url.clone(), bytes));
            }
        }
        Ok(Self { salts, sign_in_limiter, blobs, secrets: Arc::new(CachedSecrets::new(source, ttl)), geo_databases })
    }
}
