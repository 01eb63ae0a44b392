//! PostgreSQL: the connection pool and the migration runner.

pub use deadpool_postgres::Pool;
use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::NoTls;

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
}

/// Accepts both URL (`postgres://…`) and key-value (`host=/run/x dbname=y`) forms.
pub fn pool(database_url: &str, max_size: usize) -> Result<Pool, DbError> {
    pool_from_config(database_url.parse().map_err(DbError::BadUrl)?, max_size)
}

pub fn pool_from_config(config: tokio_postgres::Config, max_size: usize) -> Result<Pool, DbError> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
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
