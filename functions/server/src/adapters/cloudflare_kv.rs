//! Cloudflare KV REST API adapter of the edge KV port ([`crate::edge_publish::EdgeKv`]):
//! the salts and the site list the worker reads.
//!
//! Paths under `{api_url}/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/`:
//! `PUT values/{key}?expiration=<unix s>` (the raw value as the body),
//! `DELETE values/{key}`, `PUT bulk` (a JSON array of `{key, value, expiration}`,
//! at most 10 000 a request) and `GET keys?prefix=&cursor=` (1000 a page).
//! Every answer is Cloudflare's envelope `{success, errors, messages, result}`;
//! `Authorization: Bearer <token>` on every request.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde::Deserialize;
use url::Url;

use crate::edge_publish::{EdgeKv, EdgeKvConfig, EdgeNamespace, EdgePublishError, KvEntry};

/// Cloudflare's limit on one bulk write.
const BULK_LIMIT: usize = 10_000;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CloudflareKvError {
    #[error("ENGAGETRACK_CLOUDFLARE_API_URL is not a URL: {0}")]
    BadUrl(String),
    #[error("the cloudflare-api-token secret is not UTF-8 text")]
    BadToken,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

pub struct CloudflareKv {
    http: Client,
    base: Url,
    account_id: String,
    salts_namespace: String,
    sites_namespace: String,
    token: String,
}

impl std::fmt::Debug for CloudflareKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the token
        f.debug_struct("CloudflareKv").field("base", &self.base.as_str()).field("account_id", &self.account_id).finish()
    }
}

/// Cloudflare's answer envelope.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<CfMessage>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct CfMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KeyName {
    name: String,
}

#[derive(serde::Serialize)]
struct BulkPair<'a> {
    key: &'a str,
    value: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<i64>,
}

impl CloudflareKv {
    pub fn new(config: &EdgeKvConfig, token: &[u8]) -> Result<Self, CloudflareKvError> {
        let mut base = Url::parse(config.api_url.trim_end_matches('/')).map_err(|e| CloudflareKvError::BadUrl(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(CloudflareKvError::BadUrl(config.api_url.clone()));
        }
        // so that pushing segments appends to `/client/v4`
        base.path_segments_mut().map_err(|_| CloudflareKvError::BadUrl(config.api_url.clone()))?.pop_if_empty();
        let token = std::str::from_utf8(token).map_err(|_| CloudflareKvError::BadToken)?.trim().to_owned();
        let http = Client::builder().timeout(TIMEOUT).build().map_err(|e| CloudflareKvError::Client(e.to_string()))?;
        Ok(Self {
            http,
            base,
            account_id: config.account_id.clone(),
            salts_namespace: config.salts_namespace.clone(),
            sites_namespace: config.sites_namespace.clone(),
            token,
        })
    }

    fn namespace_id(&self, namespace: EdgeNamespace) -> &str {
        match namespace {
            EdgeNamespace::Salts => &self.salts_namespace,
            EdgeNamespace::Sites => &self.sites_namespace,
        }
    }

    /// `{base}/accounts/{account}/storage/kv/namespaces/{namespace}/{tail...}`, each segment percent-encoded.
    fn url(&self, namespace: EdgeNamespace, tail: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(["accounts", &self.account_id, "storage", "kv", "namespaces", self.namespace_id(namespace)]);
            segments.extend(tail);
        }
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(Option<T>, Option<ResultInfo>), EdgePublishError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| EdgePublishError::Unavailable(format!("Cloudflare API unreachable: {}", without_url(&e))))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| EdgePublishError::Unavailable(without_url(&e)))?;
        let envelope: Result<Envelope<T>, _> = serde_json::from_slice(&body);
        match envelope {
            Ok(env) if status.is_success() && env.success => Ok((env.result, env.result_info)),
            Ok(env) => Err(failure(status, describe(&env.errors))),
            Err(e) => Err(failure(status, format!("not a Cloudflare API answer: {e}"))),
        }
    }
}

fn describe(errors: &[CfMessage]) -> String {
    if errors.is_empty() {
        return "no reason given".into();
    }
    errors.iter().map(|e| format!("{} {}", e.code, e.message)).collect::<Vec<_>>().join("; ")
}

fn failure(status: StatusCode, reason: String) -> EdgePublishError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT {
        EdgePublishError::Unavailable(format!("{status}: {reason}"))
    } else {
        EdgePublishError::Refused { status: status.as_u16(), reason }
    }
}

/// reqwest's errors name the URL, which holds the account id: keep logs to the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<kv api>");
    }
    text
}

#[async_trait::async_trait]
impl EdgeKv for CloudflareKv {
    fn is_configured(&self) -> bool {
        true
    }

    async fn put(&self, namespace: EdgeNamespace, entry: &KvEntry) -> Result<(), EdgePublishError> {
        let mut url = self.url(namespace, &["values", &entry.key]);
        if let Some(at) = entry.expires_at {
            url.query_pairs_mut().append_pair("expiration", &at.timestamp().to_string());
        }
        let request = self.http.request(Method::PUT, url).header(reqwest::header::CONTENT_TYPE, "text/plain").body(entry.value.clone());
        self.call::<serde_json::Value>(request).await.map(drop)
    }

    async fn put_many(&self, namespace: EdgeNamespace, entries: &[KvEntry]) -> Result<(), EdgePublishError> {
        for chunk in entries.chunks(BULK_LIMIT) {
            let pairs: Vec<BulkPair<'_>> =
                chunk.iter().map(|e| BulkPair { key: &e.key, value: &e.value, expiration: e.expires_at.map(|t| t.timestamp()) }).collect();
            let request = self.http.request(Method::PUT, self.url(namespace, &["bulk"])).json(&pairs);
            self.call::<serde_json::Value>(request).await?;
        }
        Ok(())
    }

    async fn delete(&self, namespace: EdgeNamespace, key: &str) -> Result<(), EdgePublishError> {
        let request = self.http.request(Method::DELETE, self.url(namespace, &["values", key]));
        self.call::<serde_json::Value>(request).await.map(drop)
    }

    async fn keys(&self, namespace: EdgeNamespace, prefix: &str) -> Result<Vec<String>, EdgePublishError> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = self.url(namespace, &["keys"]);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("prefix", prefix).append_pair("limit", "1000");
                if let Some(c) = &cursor {
                    q.append_pair("cursor", c);
                }
            }
            let (page, info) = self.call::<Vec<KeyName>>(self.http.request(Method::GET, url)).await?;
            names.extend(page.unwrap_or_default().into_iter().map(|k| k.name));
            match info.and_then(|i| i.cursor).filter(|c| !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(names),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(api_url: &str) -> CloudflareKv {
        let config = EdgeKvConfig {
            api_url: api_url.into(),
            account_id: "acc 1".into(),
            salts_namespace: "ns-salts".into(),
            sites_namespace: "ns-sites".into(),
        };
        CloudflareKv::new(&config, b" tok \n").unwrap()
    }

    #[test]
    fn paths_follow_the_kv_api_and_encode_keys() {
        let kv = kv("https://api.cloudflare.com/client/v4/");
        assert_eq!(kv.token, "tok");
        assert_eq!(
            kv.url(EdgeNamespace::Salts, &["values", "salt:2026-12-02"]).as_str(),
            "https://api.cloudflare.com/client/v4/accounts/acc%201/storage/kv/namespaces/ns-salts/values/salt:2026-12-02"
        );
        assert_eq!(
            kv.url(EdgeNamespace::Sites, &["values", "a/b?c"]).as_str(),
            "https://api.cloudflare.com/client/v4/accounts/acc%201/storage/kv/namespaces/ns-sites/values/a%2Fb%3Fc"
        );
        assert!(!format!("{kv:?}").contains("tok"));
    }

    #[test]
    fn statuses_split_into_retryable_and_refused() {
        assert!(failure(StatusCode::INTERNAL_SERVER_ERROR, String::new()).retryable());
        assert!(failure(StatusCode::TOO_MANY_REQUESTS, String::new()).retryable());
        assert!(!failure(StatusCode::FORBIDDEN, String::new()).retryable());
        assert!(!failure(StatusCode::BAD_REQUEST, String::new()).retryable());
        let errors = vec![CfMessage { code: 10000, message: "Authentication error".into() }];
        assert_eq!(describe(&errors), "10000 Authentication error");
    }
}
