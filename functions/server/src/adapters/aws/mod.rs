//! AWS adapters (Secrets Manager, DynamoDB, S3), chosen by configuration;
//! the local adapters stay the default.
//! One module per outside system. Each implements a port trait that lives in
//! the domain module using it; nothing outside `adapters/` names an SDK type.
//!
//! Region, credentials and endpoint come the standard SDK way (`AWS_REGION`,
//! the Lambda role's `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,
//! `AWS_ENDPOINT_URL`), so tests point every adapter at moto with one variable.

pub mod dynamodb;
pub mod s3;
pub mod secrets_manager;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// What the process environment does not say, or should say otherwise (tests
/// give moto's address and dummy credentials here instead of in the process
/// environment, which parallel tests share). No SDK type, so callers outside
/// `adapters/` can fill it.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Overrides `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Overrides `AWS_REGION`.
    pub region: Option<String>,
    /// (access key id, secret access key); overrides the default credential chain.
    pub static_credentials: Option<(String, String)>,
}

/// The one place every AWS client's configuration is loaded: the default
/// chain plus [`AwsSettings`], over an HTTPS client on rustls with ring (the
/// crypto the rest of the tree already uses; no aws-lc C build).
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some((id, secret)) = &settings.static_credentials {
        loader =
            loader.credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(id, secret, None, None, "engagetrack-settings"));
    }
    loader.load().await
}

/// The SDK's errors print only "service error" by themselves; this names the cause.
pub(crate) fn describe(e: &(impl std::error::Error + 'static)) -> String {
    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string()
}
