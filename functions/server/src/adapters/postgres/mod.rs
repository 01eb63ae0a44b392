//! PostgreSQL: the connection pool and the migration runner.

use std::path::PathBuf;
use std::sync::Arc;

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;

pub mod local_cluster;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a PostgreSQL connection string: {0}")]
    BadUrl(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("database unavailable: {0}")]
    Unavailable(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error("{var}={path}: {reason}")]
    CaFile { var: &'static str, path: PathBuf, reason: String },
    #[error("cannot set up TLS to PostgreSQL: {0}")]
    Tls(String),
}

/// How connections to PostgreSQL are secured, from the connection string's
/// `sslmode`. `require` (what RDS and RDS Proxy want) means TLS with the
/// server's certificate and host name verified against the public web roots
/// (RDS Proxy's certificates chain to Amazon's roots, which are among them)
/// plus, when set, the PEM bundle in `ENGAGETRACK_DB_CA_FILE` (Amazon's RDS CA
/// bundle, for a direct connection to an instance). That is stricter than
/// libpq's `require`, which encrypts without checking whom it talks to; a
/// certificate that does not verify is an error, never a plaintext fallback.
/// `disable` and the default `prefer` stay plaintext: the local socket and loopback.
#[derive(Debug, Clone, Default)]
pub struct DbTls {
    pub ca_file: Option<PathBuf>,
}

impl DbTls {
    pub const CA_FILE_VAR: &'static str = "ENGAGETRACK_DB_CA_FILE";

    pub fn from_env() -> Self {
        let ca_file = std::env::var_os(Self::CA_FILE_VAR).filter(|v| !v.is_empty()).map(PathBuf::from);
        Self { ca_file }
    }

    /// The pool's connection factory for `config`: TLS when its `sslmode` asks for it.
    pub fn manager(&self, config: tokio_postgres::Config, recycling_method: RecyclingMethod) -> Result<Manager, DbError> {
        let settings = ManagerConfig { recycling_method };
        Ok(match config.get_ssl_mode() {
            SslMode::Disable | SslMode::Prefer => Manager::from_config(config, NoTls, settings),
            _ => Manager::from_config(config, tokio_postgres_rustls::MakeRustlsConnect::new(self.client_config()?), settings),
        })
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, DbError> {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in rds_roots()? {
            roots.add(cert).map_err(|e| DbError::Tls(format!("the embedded RDS root: {e}")))?;
        }
        if let Some(path) = &self.ca_file {
            let bad = |reason: String| DbError::CaFile { var: Self::CA_FILE_VAR, path: path.clone(), reason };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
            let mut added = 0;
            for cert in certs {
                roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(bad("no PEM certificate in the file".into()));
            }
        }
        // The provider is named, not taken from a process default, so a second
        // rustls provider elsewhere in the tree cannot make this ambiguous.
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| DbError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

/// Amazon RDS's root CAs for eu-central-1 (the template's region), vendored
/// by `scripts/vendor-rds-ca.sh`: a function that connects straight to RDS
/// verifies it with nothing in its zip. RDS Proxy's certificates chain to the
/// public roots instead.
const RDS_ROOTS_PEM: &[u8] = include_bytes!("../../../certs/rds-ca-eu-central-1.pem");

fn rds_roots() -> Result<Vec<CertificateDer<'static>>, DbError> {
    CertificateDer::pem_slice_iter(RDS_ROOTS_PEM)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DbError::Tls(format!("the embedded RDS bundle: {e}")))
}

/// Accepts both URL (`postgres://…`) and key-value (`host=/run/x dbname=y`)
/// forms; TLS as [`DbTls`] says, its CA file from the environment.
pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    pool_from_config(database_url.parse().map_err(DbError::BadUrl)?, max_size)
}

pub fn pool_from_config(config: tokio_postgres::Config, max_size: usize) -> Result<Pool, DbError> {
    pool_with_tls(config, max_size, &DbTls::from_env())
}

pub fn pool_with_tls(config: tokio_postgres::Config, max_size: usize, tls: &DbTls) -> Result<Pool, DbError> {
    let manager = tls.manager(config, RecyclingMethod::Fast)?;
    Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(std::time::Duration::from_secs(5)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

/// Applies pending migrations; a no-op when all are applied. An advisory lock
/// keeps two processes (say `serve` and `seed-demo`) from racing.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    const LOCK: i64 = 0x656e_6761_6765; // "engage"
    let mut client = pool.get().await?;
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK]).await?;
    let report = embedded::migrations::runner().run_async(&mut **client).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await?;
    Ok(report?.applied_migrations().iter().map(ToString::to_string).collect())
}

/// The Lambdas' database settings. One instance serves one request at a
/// time, and thousands of instances may run, so each keeps at most two
/// connections (a handler's and the group-commit writer's), gives up quickly
/// when the database is away (the route answers 503), and checks a connection
/// before reuse, since a frozen instance's connection may have been closed by
/// RDS Proxy's idle timeout. No session state is set here: RDS Proxy pins a
/// client connection that runs a session-level `SET`.
pub mod lambda {
    use std::time::Duration;

    use deadpool_postgres::{Pool, RecyclingMethod, Runtime, Timeouts};

    use super::{DbError, DbTls};

    pub const POOL_SIZE: usize = 2;
    /// Waiting for a free connection, connecting, and checking one before reuse.
    pub const WAIT: Duration = Duration::from_secs(2);
    pub const CONNECT: Duration = Duration::from_secs(3);
    pub const CHECK: Duration = Duration::from_secs(2);

    pub fn pool(database_url: &str) -> Result<Pool, DbError> {
        pool_with_tls(database_url, &DbTls::from_env())
    }

    pub fn pool_with_tls(database_url: &str, tls: &DbTls) -> Result<Pool, DbError> {
        let mut config: tokio_postgres::Config = database_url.parse().map_err(DbError::BadUrl)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT);
        }
        let manager = tls.manager(config, RecyclingMethod::Verified)?;
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .timeouts(Timeouts { wait: Some(WAIT), create: Some(CONNECT), recycle: Some(CHECK) })
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Pool(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_rds_roots_are_the_regions_roots_and_are_trusted() {
        let certs = rds_roots().unwrap();
        assert_eq!(certs.len(), 3, "RSA2048, RSA4096 and ECC384 G1");
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).unwrap();
        }
        for anchor in &roots.roots {
            let subject: &[u8] = anchor.subject.as_ref();
            assert!(subject.windows(31).any(|w| w == b"Amazon RDS eu-central-1 Root CA"), "{subject:?}");
        }
        DbTls { ca_file: None }.client_config().expect("public roots plus the RDS roots make a client config");
    }
}
