//! Secrets Manager as the [`SecretSource`]: one secret (`ENGAGETRACK_SECRET_ID`)
//! whose string is the JSON object name -> hex that the local file holds.
//!
//! The code never creates the secret or adds a missing key: two cold starts
//! racing to create one would each pick different random keys, and the
//! functions' role may only read it. An operator creates it once (README
//! "Secrets"); a missing name fails the cold start with the names listed.
//! Rotation is `PutSecretValue` with a version that keeps the old keys and
//! adds the next id (`field-key-2`, `jwt-key-2`): the highest id is used for
//! new writes, the older ones still decrypt and verify.

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;

use super::describe;
use crate::secrets::{SecretSource, Secrets, SecretsError};

pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(sdk: &SdkConfig, secret_id: impl Into<String>) -> Self {
        Self { client: Client::new(sdk), secret_id: secret_id.into() }
    }
}

#[async_trait::async_trait]
impl SecretSource for SecretsManagerSource {
    async fn load(&self) -> Result<Secrets, SecretsError> {
        let origin = || format!("`{}` in Secrets Manager", self.secret_id);
        let answer = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| SecretsError::Unavailable { origin: origin(), reason: describe(&e) })?;
        let json = answer
            .secret_string()
            .ok_or_else(|| SecretsError::Invalid { origin: origin(), reason: "it holds binary data, not a JSON string".into() })?;
        let secrets = Secrets::from_hex_json(json, &origin())?;
        let names = secrets.missing_required();
        if !names.is_empty() {
            return Err(SecretsError::Missing { origin: origin(), names });
        }
        Ok(secrets)
    }
}
