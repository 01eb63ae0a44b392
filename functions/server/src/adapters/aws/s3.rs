//! S3 as the [`BlobStore`] (exports under `exports/`, presigned GET links),
//! and the cold-start read of geo databases named `s3://bucket/key`.
//! Against a custom endpoint (`AWS_ENDPOINT_URL`, e.g. moto on loopback)
//! path-style addresses are used, since `bucket.127.0.0.1` resolves nowhere.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::describe;
use crate::blobs::{BlobError, BlobLink, BlobMeta, BlobStore, check_key};

fn unavailable(e: impl std::error::Error + 'static) -> BlobError {
    BlobError::Unavailable(describe(&e))
}

pub fn client(sdk: &SdkConfig) -> Client {
    let path_style = sdk.endpoint_url().is_some();
    Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(path_style).build())
}

pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(sdk: &SdkConfig, bucket: impl Into<String>) -> Self {
        Self { client: client(sdk), bucket: bucket.into() }
    }
}

/// The bytes of one object; for the geo databases at cold start.
pub async fn fetch(client: &Client, bucket: &str, key: &str) -> Result<Vec<u8>, BlobError> {
    let answer = client.get_object().bucket(bucket).key(key).send().await;
    let object = match answer {
        Ok(object) => object,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Err(BlobError::NotFound(format!("s3://{bucket}/{key}")));
        }
        Err(e) => return Err(unavailable(e)),
    };
    let bytes = object.body.collect().await.map_err(unavailable)?;
    Ok(bytes.into_bytes().to_vec())
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Vec<u8>, meta: &BlobMeta) -> Result<(), BlobError> {
        check_key(key)?;
        let disposition = meta.filename.as_ref().map(|name| format!("attachment; filename=\"{}\"", name.replace(['"', '\\'], "")));
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(&meta.content_type)
            .set_content_disposition(disposition)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, BlobError> {
        check_key(key)?;
        fetch(&self.client, &self.bucket, key).await
    }

    async fn link(&self, key: &str, expires_in: Duration) -> Result<Option<BlobLink>, BlobError> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(expires_in).map_err(unavailable)?;
        let now = chrono::Utc::now();
        let request = self.client.get_object().bucket(&self.bucket).key(key).presigned(config).await.map_err(unavailable)?;
        let expires_at = now + chrono::Duration::from_std(expires_in).unwrap_or_default();
        Ok(Some(BlobLink { url: request.uri().to_owned(), expires_at }))
    }
}
