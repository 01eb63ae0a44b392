//! What every handler shares, built once by a `main`.

use std::path::PathBuf;
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::field_cipher::FieldCipher;
use crate::ingest::Ingest;
use crate::salt::PgSaltStore;
use crate::secrets::Secrets;

#[derive(Debug, Clone, Default)]
pub struct AppConfig {
    /// Take the client address from `CF-Connecting-IP` / `X-Forwarded-For`.
    pub trust_proxy: bool,
}

#[derive(Clone)]
pub struct AppState {
    pub pool: Pool,
    pub ingest: Arc<Ingest>,
    pub config: Arc<AppConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Cipher(#[from] crate::field_cipher::CipherError),
    #[error("{0} is not set")]
    MissingEnv(&'static str),
}

impl AppState {
    pub fn new(pool: Pool, secrets: &Secrets, config: AppConfig) -> Result<Self, StateError> {
        let cipher = Arc::new(FieldCipher::from_secrets(secrets)?);
        let salts = Arc::new(PgSaltStore::new(pool.clone()));
        let ingest = Arc::new(Ingest::new(pool.clone(), salts, cipher));
        Ok(Self { pool, ingest, config: Arc::new(config) })
    }

    /// For the Lambdas: `DATABASE_URL`, and secrets from the file named by
    /// `ENGAGETRACK_SECRETS_FILE`. They run behind API Gateway, a trusted proxy.
    pub fn from_lambda_env() -> Result<Self, StateError> {
        let url = std::env::var("DATABASE_URL").map_err(|_| StateError::MissingEnv("DATABASE_URL"))?;
        let pool = crate::db::pool(&url, 4)?;
        let secrets_file = std::env::var_os("ENGAGETRACK_SECRETS_FILE")
            .map(PathBuf::from)
            .ok_or(StateError::MissingEnv("ENGAGETRACK_SECRETS_FILE"))?;
        let secrets = crate::secrets::load_or_create_local(&secrets_file)?;
        Self::new(pool, &secrets, AppConfig { trust_proxy: true })
    }
}
