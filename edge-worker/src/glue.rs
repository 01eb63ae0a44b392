//! The glue to the Workers runtime (`worker` crate), compiled for wasm32 only.
//!
//! Bindings (see `infra/wrangler.toml`):
//! - `SALTS` (KV): `salt:YYYY-MM-DD` → 64 hex characters, the UTC day's salt;
//! - `SITES` (KV, optional): `site:<uuid>` → `{"active":bool}`, the site list
//!   the server publishes. With the binding, a beacon for a site not in it is
//!   refused here (`404`, paused: `403`); without it (local runs, most tests)
//!   every site is let through and the ingest alone checks;
//! - `RETRY_QUEUE` (Queue producer, and this worker is its consumer): signed
//!   batches whose forwarding failed;
//! - `INGEST_URL` (var): the ingest origin, batches go to `${INGEST_URL}/ingest/batch`;
//! - `EDGE_SIGNING_KEY` (secret, hex): the HMAC-SHA256 key shared with the ingest.
//!
//! Nothing here logs an IP address, a User-Agent or a beacon body.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::{Either, select};
use shared::batch::{self, Batch, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use shared::geo::GeoDatabases;
use shared::bots::RequestSignals;
use shared::pipeline::{Pipeline, Processed};
use shared::{AnonymisedEvent, Beacon, EventId, Salt, SiteId, Visit};
use worker::{
    Context, Date, Delay, Env, Fetch, Headers, Message, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder,
    Request, RequestInit, Response, console_error, console_log, event, wasm_bindgen::JsValue,
};

use crate::rules::{self, Outcome, Refusal};

const SALTS: &str = "SALTS";
const SITES: &str = "SITES";
/// How long an isolate trusts what it read about a site (present or absent):
/// a new site is taken at the edge within about a minute (KV's own edge
/// cache adds up to 60 s more).
const SITE_CACHE_MS: u64 = 60_000;
/// Bounds the per-isolate site cache against floods of random site ids.
const SITE_CACHE_MAX: usize = 10_000;
const GEO: &str = "GEO";
/// Keys of the geo databases in `GEO`, tried in order (DB-IP ships IPv4 and IPv6 apart).
const GEO_KEYS: [&str; 2] = ["mmdb:0", "mmdb:1"];
const RETRY_QUEUE: &str = "RETRY_QUEUE";
const INGEST_URL: &str = "INGEST_URL";
const EDGE_SIGNING_KEY: &str = "EDGE_SIGNING_KEY";
/// One forwarding attempt may take this long before it counts as failed.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an isolate keeps a salt it read from KV (KV's own edge cache
/// keeps it at least 60 s too).
const SALT_CACHE_MS: u64 = 60_000;

thread_local! {
    /// Built once per isolate, on its first beacon: the bot list, UA parser,
    /// referrer tables and the geo databases from the `GEO` KV namespace are
    /// reused by every request the isolate serves.
    static PIPELINE: RefCell<Option<Rc<Pipeline>>> = const { RefCell::new(None) };
    /// The last salt read from KV: (key, salt, read at ms).
    static SALT_CACHE: RefCell<Option<(String, Salt, u64)>> = const { RefCell::new(None) };
    /// What `SITES` said about each site: (value, read at ms).
    static SITE_CACHE: RefCell<HashMap<SiteId, (Option<String>, u64)>> = RefCell::new(HashMap::new());
    /// Events accepted by this isolate and not yet handed to a flush.
    static PENDING: RefCell<Vec<AnonymisedEvent>> = const { RefCell::new(Vec::new()) };
    /// Whether a flush is waiting (in some request's `wait_until`) to take `PENDING`.
    static FLUSH_SCHEDULED: Cell<bool> = const { Cell::new(false) };
}

/// Events arriving this close together in one isolate go out as one batch.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The most events one batch carries (the ingest takes up to `batch::MAX_EVENTS`).
const MAX_BATCH_EVENTS: usize = 500;

/// The isolate's pipeline, built on first use.
async fn pipeline(env: &Env) -> Rc<Pipeline> {
    if let Some(p) = PIPELINE.with(|p| p.borrow().clone()) {
        return p;
    }
    let built = Rc::new(Pipeline::new(geo_databases(env).await));
    // Another request of this isolate may have finished first; keep one.
    PIPELINE.with(|slot| slot.borrow_mut().get_or_insert(built).clone())
}

/// MaxMind-format databases (GeoIP2/GeoLite2 or DB-IP, country or city) read
/// once per isolate from the optional `GEO` KV namespace (values up to 25 MiB:
/// country databases, or a trimmed city one). Without them, [`CfGeo`]
/// supplies what Cloudflare knows about the request.
async fn geo_databases(env: &Env) -> GeoDatabases {
    let mut geo = GeoDatabases::new();
    let Ok(kv) = env.kv(GEO) else { return geo };
    for key in GEO_KEYS {
        match kv.get(key).bytes().await {
            Ok(Some(bytes)) => {
                if let Err(e) = geo.add(bytes) {
                    console_error!("{GEO} {key} is not a MaxMind database: {e}");
                }
            }
            Ok(None) => break,
            Err(e) => {
                console_error!("{GEO} KV read of {key} failed: {e}");
                break;
            }
        }
    }
    geo
}

/// `request.cf`'s country, region and city: the fallback geolocation, used
/// for whatever the pipeline's own lookup left empty.
#[derive(Default)]
struct CfGeo {
    country: Option<String>,
    region: Option<String>,
    city: Option<String>,
}

impl CfGeo {
    fn of(req: &Request) -> Self {
        let Some(cf) = req.cf() else { return Self::default() };
        Self {
            // XX: unknown, T1: Tor
            country: cf.country().filter(|c| c.len() == 2 && c != "XX" && c != "T1"),
            region: cf.region().filter(|r| !r.is_empty()),
            city: cf.city().filter(|c| !c.is_empty()),
        }
    }

    fn fill(self, e: &mut shared::event::Enrichment) {
        if e.country.is_none() {
            e.country = self.country;
            if e.region.is_none() {
                e.region = self.region;
            }
            if e.city.is_none() {
                e.city = self.city;
            }
        }
    }
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let path = req.path();
    let answer = match (req.method(), path.as_str()) {
        (Method::Get | Method::Head, "/et.js") => tracker(&req),
        (Method::Post, "/api/e") => collect(req, &env, &ctx).await,
        (Method::Options, "/api/e") => preflight(),
        (_, "/et.js" | "/api/e") => Err(Refusal::new(405, "method not allowed").into()),
        _ => Err(Refusal::new(404, "not found").into()),
    };
    match answer {
        Ok(response) => Ok(response),
        Err(Failure::Refused(refusal)) => refusal_response(&refusal, path == "/api/e"),
        Err(Failure::Runtime(e)) => {
            console_error!("request failed: {e}");
            refusal_response(&Refusal::new(500, "internal error"), path == "/api/e")
        }
    }
}

/// The consumer of `RETRY_QUEUE`: each message is one signed-batch body
/// (JSON text) whose forwarding failed. It is forwarded again (signed anew:
/// the signature's timestamp must be fresh); on failure it goes back on the
/// queue with a growing delay, and after the queue's `max_retries` to its
/// dead-letter queue.
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let messages: Vec<Message<String>> = batch.messages()?;
    for message in messages {
        match forward_once(&env, message.body()).await {
            Ok(()) => message.ack(),
            Err(ForwardError { outcome: Outcome::Refused, reason }) => {
                console_error!("queued batch dropped: {reason}");
                message.ack();
            }
            Err(reason) => {
                let age_ms = Date::now().as_millis().saturating_sub(message.timestamp().as_millis());
                let delay = rules::queue_retry_delay(age_ms / 1000);
                console_error!("queued batch not forwarded ({reason}); retrying in {delay} s");
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
            }
        }
    }
    Ok(())
}

enum Failure {
    Refused(Refusal),
    Runtime(worker::Error),
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<worker::Error> for Failure {
    fn from(e: worker::Error) -> Self {
        Self::Runtime(e)
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn tracker(req: &Request) -> Result<Response, Failure> {
    let etag = rules::tracker_etag();
    let headers = Headers::new();
    headers.set("etag", etag)?;
    headers.set("cache-control", rules::TRACKER_CACHE_CONTROL)?;
    if rules::etag_matches(header(req, "if-none-match").as_deref(), etag) {
        return Ok(Response::empty()?.with_status(304).with_headers(headers));
    }
    headers.set("content-type", rules::TRACKER_CONTENT_TYPE)?;
    let body = if req.method() == Method::Head { Vec::new() } else { rules::TRACKER_JS.as_bytes().to_vec() };
    Ok(Response::from_bytes(body)?.with_headers(headers))
}

/// Any site may post beacons: `text/plain` needs no preflight, JSON does.
fn cors_headers() -> worker::Result<Headers> {
    let headers = Headers::new();
    headers.set("access-control-allow-origin", "*")?;
    headers.set("access-control-allow-methods", "POST, OPTIONS")?;
    headers.set("access-control-allow-headers", "content-type")?;
    headers.set("access-control-max-age", "86400")?;
    headers.set("vary", "origin")?;
    Ok(headers)
}

fn preflight() -> Result<Response, Failure> {
    Ok(Response::empty()?.with_status(204).with_headers(cors_headers()?))
}

fn refusal_response(refusal: &Refusal, cors: bool) -> worker::Result<Response> {
    let headers = if cors { cors_headers()? } else { Headers::new() };
    headers.set("content-type", "application/json")?;
    if refusal.status == 503 {
        headers.set("retry-after", "1")?;
    }
    Ok(Response::from_bytes(refusal.body().into_bytes())?.with_status(refusal.status).with_headers(headers))
}

fn accepted() -> Result<Response, Failure> {
    Ok(Response::empty()?.with_status(202).with_headers(cors_headers()?))
}

fn now() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(Date::now().as_millis() as i64).single().unwrap_or_default()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| worker::Error::RustError(format!("no random source: {e}")))?;
    Ok(bytes)
}

async fn collect(mut req: Request, env: &Env, ctx: &Context) -> Result<Response, Failure> {
    rules::check_content_type(header(&req, "content-type").as_deref())?;
    if let Some(len) = header(&req, "content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        rules::check_body_size(len)?;
    }
    let ip = rules::client_ip(header(&req, "cf-connecting-ip").as_deref())?;
    let user_agent = header(&req, "user-agent").unwrap_or_default();
    // Read for the bot rules and Client Hints; dropped with the User-Agent below.
    let accept_language = header(&req, "accept-language");
    let sec_ch_ua = header(&req, "sec-ch-ua");
    let sec_ch_ua_mobile = header(&req, "sec-ch-ua-mobile");
    let sec_ch_ua_platform = header(&req, "sec-ch-ua-platform");
    let asn = req.cf().and_then(|cf| cf.asn());
    let geo = CfGeo::of(&req);
    let body = req.bytes().await?;
    rules::check_body_size(body.len())?;

    let beacon = Beacon::parse(&body).map_err(|e| rules::beacon_refusal(&e))?;
    admit_site(env, beacon.site).await?;
    let at = now();
    let id = EventId::new(at, random_bytes::<10>()?);
    let salt = salt_of_day(env, at).await?;
    let pipeline = pipeline(env).await;
    let visit = Visit { ip, user_agent: &user_agent };
    let signals = RequestSignals {
        headers_seen: true,
        accept_language: accept_language.as_deref(),
        sec_ch_ua: sec_ch_ua.as_deref(),
        sec_ch_ua_mobile: sec_ch_ua_mobile.as_deref(),
        sec_ch_ua_platform: sec_ch_ua_platform.as_deref(),
        asn,
    };
    let processed = match pipeline.screen(&beacon, visit, &signals, Date::now().as_millis()) {
        Some(reason) => Processed::Bot(reason),
        None => Processed::Event(Box::new(pipeline.anonymise_with(beacon, visit, &signals, &salt, id))),
    };
    // The IP address, User-Agent and the other headers end here: only `processed` goes on.
    drop((user_agent, accept_language, sec_ch_ua, sec_ch_ua_mobile, sec_ch_ua_platform));
    match processed {
        Processed::Bot(_) => accepted(),
        Processed::Event(mut event) => {
            geo.fill(&mut event.enrichment);
            PENDING.with(|p| p.borrow_mut().push(*event));
            // The first event of a window schedules the flush in its own
            // request's wait_until; later ones only join the pending list.
            if !FLUSH_SCHEDULED.replace(true) {
                let env = env.clone();
                ctx.wait_until(async move { flush(&env).await });
            }
            accepted()
        }
    }
}

/// Waits [`BATCH_WINDOW`], then forwards everything pending as signed
/// batches. Only plain data crosses requests: each request's I/O stays in
/// the request that scheduled it.
async fn flush(env: &Env) {
    Delay::from(BATCH_WINDOW).await;
    FLUSH_SCHEDULED.set(false);
    let events = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let batch = Batch { events: events.by_ref().take(MAX_BATCH_EVENTS).collect() };
        match serde_json::to_string(&batch) {
            Ok(body) => forward_or_queue(env, body).await,
            Err(e) => console_error!("{} events lost: the batch does not serialise: {e}", batch.events.len()),
        }
    }
}

/// Refuses a beacon for a site the `SITES` list does not hold (or holds as
/// paused). No `SITES` binding: every site is let through.
async fn admit_site(env: &Env, site: SiteId) -> Result<(), Failure> {
    let Ok(kv) = env.kv(SITES) else { return Ok(()) };
    let now_ms = Date::now().as_millis();
    let cached = SITE_CACHE.with(|c| {
        c.borrow()
            .get(&site)
            .filter(|(_, read)| now_ms.saturating_sub(*read) < SITE_CACHE_MS)
            .map(|(value, _)| value.clone())
    });
    let value = match cached {
        Some(value) => value,
        None => {
            let value = kv.get(&rules::site_key(site)).cache_ttl(60).text().await.map_err(|e| {
                console_error!("{SITES} KV read failed: {e}");
                Refusal::new(503, "the site list is not available; retry later")
            })?;
            SITE_CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= SITE_CACHE_MAX {
                    c.clear();
                }
                c.insert(site, (value.clone(), now_ms));
            });
            value
        }
    };
    Ok(rules::site_admission(site, value.as_deref())?)
}

/// The salt of `at`'s UTC day from KV; `503` (retry later) when it is not
/// there, so a beacon is never hashed with the wrong day's salt.
async fn salt_of_day(env: &Env, at: DateTime<Utc>) -> Result<Salt, Failure> {
    let key = rules::salt_key(at);
    let now_ms = Date::now().as_millis();
    let cached = SALT_CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(k, _, read)| *k == key && now_ms.saturating_sub(*read) < SALT_CACHE_MS)
            .map(|(_, salt, _)| salt.clone())
    });
    if let Some(salt) = cached {
        return Ok(salt);
    }
    let unavailable = |why: String| {
        console_error!("{why}");
        Refusal::new(503, format!("the salt for {} is not available yet; retry later", &key[5..]))
    };
    let kv = env.kv(SALTS).map_err(|e| unavailable(format!("no {SALTS} KV binding: {e}")))?;
    let value = kv
        .get(&key)
        .cache_ttl(60)
        .text()
        .await
        .map_err(|e| unavailable(format!("{SALTS} KV read failed: {e}")))?
        .ok_or_else(|| unavailable(format!("{key} is missing from {SALTS}")))?;
    let salt = rules::parse_salt(&value).map_err(|e| unavailable(format!("{key}: {e}")))?;
    SALT_CACHE.with(|c| *c.borrow_mut() = Some((key, salt.clone(), now_ms)));
    Ok(salt)
}

/// Runs inside `wait_until`: forward with backoff, else put the batch on the
/// retry queue. A batch the ingest refuses for good is dropped with a log
/// line: retrying cannot change the answer.
async fn forward_or_queue(env: &Env, body: String) {
    let mut last = String::new();
    for wait in rules::FORWARD_BACKOFF {
        if !wait.is_zero() {
            Delay::from(wait).await;
        }
        match forward_once(env, &body).await {
            Ok(()) => return,
            Err(ForwardError { outcome: Outcome::Refused, reason }) => {
                console_error!("batch dropped: {reason}");
                return;
            }
            Err(ForwardError { reason, .. }) => last = reason,
        }
    }
    console_error!("batch not forwarded ({last}); sending it to {RETRY_QUEUE}");
    let queued = match env.queue(RETRY_QUEUE) {
        Ok(queue) => queue.send(body).await,
        Err(e) => Err(e),
    };
    if let Err(e) = queued {
        console_error!("batch lost: {RETRY_QUEUE} refused it too: {e}");
    }
}

struct ForwardError {
    outcome: Outcome,
    reason: String,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

fn retryable(reason: String) -> ForwardError {
    ForwardError { outcome: Outcome::Retry, reason }
}

/// One signed POST of a batch body to `${INGEST_URL}/ingest/batch`.
async fn forward_once(env: &Env, body: &str) -> Result<(), ForwardError> {
    let url = env.var(INGEST_URL).map_err(|e| retryable(format!("no {INGEST_URL} var: {e}")))?.to_string();
    let key = env
        .secret(EDGE_SIGNING_KEY)
        .map_err(|e| retryable(format!("no {EDGE_SIGNING_KEY} secret: {e}")))?
        .to_string();
    let key = rules::parse_signing_key(&key).map_err(retryable)?;
    let timestamp = (Date::now().as_millis() / 1000) as i64;
    let signature = batch::sign(&key, timestamp, body.as_bytes());

    let send = async {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set(TIMESTAMP_HEADER, &timestamp.to_string())?;
        headers.set(SIGNATURE_HEADER, &signature)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(JsValue::from_str(body)));
        let request = Request::new_with_init(&rules::batch_url(&url), &init)?;
        Fetch::Request(request).send().await
    };
    let response = match select(Box::pin(send), Delay::from(FORWARD_TIMEOUT)).await {
        Either::Left((result, _)) => result.map_err(|e| retryable(format!("fetch failed: {e}")))?,
        Either::Right(_) => return Err(retryable(format!("no answer within {FORWARD_TIMEOUT:?}"))),
    };
    let status = response.status_code();
    match rules::outcome(status) {
        Outcome::Stored => {
            console_log!("batch forwarded: {status}");
            Ok(())
        }
        outcome => Err(ForwardError { outcome, reason: format!("ingest answered {status}") }),
    }
}
