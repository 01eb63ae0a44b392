//! A loopback stand-in for the Cloudflare KV REST API (Cloudflare cannot run
//! locally), speaking its real paths under `/client/v4`, the
//! `Authorization: Bearer` check and the JSON envelope
//! `{success, errors, messages, result}`:
//!
//! - `PUT  /accounts/{a}/storage/kv/namespaces/{n}/values/{key}?expiration=&expiration_ttl=` (raw body)
//! - `GET  /accounts/{a}/storage/kv/namespaces/{n}/values/{key}` (the raw value, or a 404 envelope)
//! - `DELETE /accounts/{a}/storage/kv/namespaces/{n}/values/{key}`
//! - `PUT  /accounts/{a}/storage/kv/namespaces/{n}/bulk` (JSON array of `{key, value, expiration?, expiration_ttl?}`)
//! - `GET  /accounts/{a}/storage/kv/namespaces/{n}/keys?prefix=&limit=&cursor=` (with `result_info.cursor`)
//!
//! Like Cloudflare it refuses expirations less than 60 s ahead, an unknown
//! account or namespace, and a missing or wrong token (`10000 Authentication error`).
//! Expired values are gone on read. Tests can make the next requests fail
//! with a 5xx to exercise retries, and read back what was stored (to seed the
//! worker's own local KV with it).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// Cloudflare's minimum: an expiry at least 60 s ahead.
const MIN_TTL: i64 = 60;
const PAGE_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    pub value: String,
    /// Unix seconds.
    pub expiration: Option<i64>,
}

#[derive(Default)]
struct Inner {
    /// namespace id -> key -> value
    namespaces: HashMap<String, BTreeMap<String, StoredValue>>,
    /// Answer this many of the next requests with `fail_status`.
    fail_next: usize,
    fail_status: u16,
    /// "METHOD namespace key-or-op", in order.
    log: Vec<String>,
    /// Requests refused for a bad token.
    auth_failures: usize,
}

#[derive(Clone)]
struct Fake {
    account_id: String,
    token: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct FakeCloudflareKv {
    pub addr: SocketAddr,
    pub account_id: String,
    pub token: String,
    fake: Fake,
}

impl FakeCloudflareKv {
    /// Serves the given namespace ids (empty at first) on a free loopback port.
    pub async fn start(namespaces: &[&str]) -> Self {
        let mut inner = Inner::default();
        for ns in namespaces {
            inner.namespaces.insert((*ns).to_owned(), BTreeMap::new());
        }
        let fake = Fake {
            account_id: format!("acct{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            token: format!("cf-test-token-{}", uuid::Uuid::new_v4().simple()),
            inner: Arc::new(Mutex::new(inner)),
        };
        let values = "/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/values/{key}";
        let app = Router::new()
            .route(values, put(put_value).get(get_value).delete(delete_value))
            .route("/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/bulk", put(put_bulk))
            .route("/client/v4/accounts/{account}/storage/kv/namespaces/{namespace}/keys", get(list_keys))
            .fallback(|| async { envelope_error(StatusCode::NOT_FOUND, 7000, "No route for that URI") })
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, account_id: fake.account_id.clone(), token: fake.token.clone(), fake }
    }

    /// What `ENGAGETRACK_CLOUDFLARE_API_URL` is set to.
    pub fn api_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// The live (unexpired) values of a namespace.
    pub fn entries(&self, namespace: &str) -> BTreeMap<String, StoredValue> {
        let now = now_unix();
        let inner = self.fake.inner.lock().expect("lock");
        inner
            .namespaces
            .get(namespace)
            .map(|m| m.iter().filter(|(_, v)| v.expiration.is_none_or(|e| e > now)).map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Puts a value as if someone else had (drift for a sync job to repair).
    pub fn insert(&self, namespace: &str, key: &str, value: &str) {
        let mut inner = self.fake.inner.lock().expect("lock");
        let ns = inner.namespaces.entry(namespace.to_owned()).or_default();
        ns.insert(key.to_owned(), StoredValue { value: value.to_owned(), expiration: None });
    }

    /// The next `n` requests are answered `status` (e.g. 503) before anything is done.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut inner = self.fake.inner.lock().expect("lock");
        inner.fail_next = n;
        inner.fail_status = status;
    }

    pub fn log(&self) -> Vec<String> {
        self.fake.inner.lock().expect("lock").log.clone()
    }

    pub fn auth_failures(&self) -> usize {
        self.fake.inner.lock().expect("lock").auth_failures
    }

    /// The entries as a `wrangler kv bulk put` file (the same shape as the bulk API).
    pub fn bulk_file(&self, namespace: &str) -> Value {
        let pairs: Vec<Value> = self
            .entries(namespace)
            .into_iter()
            .map(|(key, v)| match v.expiration {
                Some(exp) => json!({"key": key, "value": v.value, "expiration": exp}),
                None => json!({"key": key, "value": v.value}),
            })
            .collect();
        Value::Array(pairs)
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

fn envelope_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})))
        .into_response()
}

fn envelope_ok(result: Value) -> Response {
    Json(json!({"success": true, "errors": [], "messages": [], "result": result})).into_response()
}

impl Fake {
    /// The checks every request goes through, in Cloudflare's order; `Err`
    /// is the answer to give.
    #[allow(clippy::result_large_err)] // a test fake: the error is the response itself
    fn admit(&self, headers: &HeaderMap, account: &str, namespace: &str, what: String) -> Result<(), Response> {
        let mut inner = self.inner.lock().expect("lock");
        inner.log.push(what);
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            let status = StatusCode::from_u16(inner.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Err(envelope_error(status, 10001, "service temporarily unavailable"));
        }
        let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(self.token.as_str()) {
            inner.auth_failures += 1;
            return Err(envelope_error(StatusCode::FORBIDDEN, 10000, "Authentication error"));
        }
        if account != self.account_id {
            return Err(envelope_error(StatusCode::FORBIDDEN, 10000, "Authentication error"));
        }
        if !inner.namespaces.contains_key(namespace) {
            return Err(envelope_error(StatusCode::NOT_FOUND, 10013, "namespace not found"));
        }
        Ok(())
    }

    fn store(&self, namespace: &str, key: String, value: StoredValue) {
        let mut inner = self.inner.lock().expect("lock");
        if let Some(ns) = inner.namespaces.get_mut(namespace) {
            ns.insert(key, value);
        }
    }
}

#[derive(Deserialize, Default)]
struct ExpiryQuery {
    expiration: Option<String>,
    expiration_ttl: Option<String>,
}

/// Cloudflare's rules for `expiration` (absolute, unix s) and `expiration_ttl` (s from now).
#[allow(clippy::result_large_err)] // a test fake: the error is the response itself
fn expiry(expiration: Option<&str>, ttl: Option<&str>) -> Result<Option<i64>, Response> {
    let now = now_unix();
    let bad = |m: String| envelope_error(StatusCode::BAD_REQUEST, 10033, &m);
    if let Some(raw) = expiration {
        let at: i64 = raw.parse().map_err(|_| {
            bad(format!(
                "Invalid expiration of {raw}. Please specify integer greater than the current number of seconds since the UNIX epoch."
            ))
        })?;
        if at < now + MIN_TTL {
            return Err(bad(format!("Invalid expiration of {at}. Expiration times must be at least 60 seconds in the future.")));
        }
        return Ok(Some(at));
    }
    if let Some(raw) = ttl {
        let ttl: i64 = raw.parse().map_err(|_| bad(format!("Invalid expiration_ttl of {raw}.")))?;
        if ttl < MIN_TTL {
            return Err(bad(format!("Invalid expiration_ttl of {ttl}. Expiration TTL must be at least 60 seconds.")));
        }
        return Ok(Some(now + ttl));
    }
    Ok(None)
}

async fn put_value(
    State(fake): State<Fake>,
    Path((account, namespace, key)): Path<(String, String, String)>,
    Query(q): Query<ExpiryQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fake.admit(&headers, &account, &namespace, format!("PUT {namespace} {key}")) {
        return r;
    }
    let expiration = match expiry(q.expiration.as_deref(), q.expiration_ttl.as_deref()) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Ok(value) = String::from_utf8(body.to_vec()) else {
        return envelope_error(StatusCode::BAD_REQUEST, 10021, "this fake stores UTF-8 values only");
    };
    fake.store(&namespace, key, StoredValue { value, expiration });
    envelope_ok(json!({}))
}

async fn get_value(
    State(fake): State<Fake>,
    Path((account, namespace, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.admit(&headers, &account, &namespace, format!("GET {namespace} {key}")) {
        return r;
    }
    let now = now_unix();
    let inner = fake.inner.lock().expect("lock");
    match inner.namespaces.get(&namespace).and_then(|ns| ns.get(&key)).filter(|v| v.expiration.is_none_or(|e| e > now)) {
        Some(v) => v.value.clone().into_response(),
        None => envelope_error(StatusCode::NOT_FOUND, 10009, "get: 'key not found'"),
    }
}

async fn delete_value(
    State(fake): State<Fake>,
    Path((account, namespace, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.admit(&headers, &account, &namespace, format!("DELETE {namespace} {key}")) {
        return r;
    }
    let mut inner = fake.inner.lock().expect("lock");
    if let Some(ns) = inner.namespaces.get_mut(&namespace) {
        ns.remove(&key);
    }
    envelope_ok(json!({}))
}

#[derive(Deserialize)]
struct BulkPair {
    key: String,
    value: String,
    expiration: Option<i64>,
    expiration_ttl: Option<i64>,
}

async fn put_bulk(
    State(fake): State<Fake>,
    Path((account, namespace)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fake.admit(&headers, &account, &namespace, format!("PUT {namespace} bulk")) {
        return r;
    }
    let pairs: Vec<BulkPair> = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return envelope_error(StatusCode::BAD_REQUEST, 10026, &format!("could not parse request body: {e}")),
    };
    if pairs.len() > 10_000 {
        return envelope_error(StatusCode::BAD_REQUEST, 10026, "too many key-value pairs: at most 10000");
    }
    let mut accepted = Vec::with_capacity(pairs.len());
    for p in pairs {
        let expiration = match expiry(p.expiration.map(|e| e.to_string()).as_deref(), p.expiration_ttl.map(|t| t.to_string()).as_deref()) {
            Ok(e) => e,
            Err(r) => return r,
        };
        accepted.push((p.key, StoredValue { value: p.value, expiration }));
    }
    let n = accepted.len();
    for (key, value) in accepted {
        fake.store(&namespace, key, value);
    }
    envelope_ok(json!({"successful_key_count": n, "unsuccessful_keys": []}))
}

#[derive(Deserialize)]
struct KeysQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list_keys(
    State(fake): State<Fake>,
    Path((account, namespace)): Path<(String, String)>,
    Query(q): Query<KeysQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = fake.admit(&headers, &account, &namespace, format!("GET {namespace} keys")) {
        return r;
    }
    let limit = q.limit.unwrap_or(PAGE_MAX);
    if !(10..=PAGE_MAX).contains(&limit) {
        return envelope_error(StatusCode::BAD_REQUEST, 10027, "limit must be between 10 and 1000");
    }
    let now = now_unix();
    let prefix = q.prefix.unwrap_or_default();
    // The cursor is opaque to clients; here it is the last key of the previous page.
    let after = q.cursor.unwrap_or_default();
    let inner = fake.inner.lock().expect("lock");
    let names: Vec<(String, Option<i64>)> = inner
        .namespaces
        .get(&namespace)
        .map(|ns| {
            ns.iter()
                .filter(|(k, v)| {
                    k.starts_with(&prefix) && (after.is_empty() || k.as_str() > after.as_str()) && v.expiration.is_none_or(|e| e > now)
                })
                .map(|(k, v)| (k.clone(), v.expiration))
                .take(limit + 1)
                .collect()
        })
        .unwrap_or_default();
    let more = names.len() > limit;
    let page: Vec<Value> = names
        .iter()
        .take(limit)
        .map(|(k, exp)| match exp {
            Some(e) => json!({"name": k, "expiration": e}),
            None => json!({"name": k}),
        })
        .collect();
    let cursor = if more { names[limit - 1].0.clone() } else { String::new() };
    Json(json!({
        "success": true, "errors": [], "messages": [], "result": page,
        "result_info": {"count": page.len(), "cursor": cursor}
    }))
    .into_response()
}
