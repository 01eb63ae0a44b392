//! The four payment providers' checkout and portal APIs on one loopback
//! port (their real servers cannot be reached from tests), each under its
//! own prefix and speaking its documented wire format: the paths, the
//! `Authorization: Bearer` key, the body encoding, the answer envelope and
//! the error envelope.
//!
//! - `/stripe`: `POST /v1/checkout/sessions`, `POST /v1/billing_portal/sessions`
//!   (form-encoded; `Idempotency-Key` replays the first answer)
//! - `/paddle`: `POST /transactions`, `POST /customers/{id}/portal-sessions` (`{data, meta}`)
//! - `/lemonsqueezy`: `POST /v1/checkouts`, `GET /v1/subscriptions/{id}` (JSON:API)
//! - `/polar`: `POST /v1/checkouts/`, `POST /v1/customer-sessions/`
//!
//! Every request is recorded for the test to read; `fail_next` makes the
//! next answer a provider error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engagetrack_server::adapters::payments::PaymentApiConfig;
use serde_json::{Value, json};
use uuid::Uuid;

/// One request as the provider received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub provider: &'static str,
    pub method: String,
    pub path: String,
    pub bearer: Option<String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub idempotency_key: Option<String>,
    /// A form as an object of its fields; JSON as sent.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// The next answers of this provider are this status with its error envelope.
    fail_next: HashMap<&'static str, u16>,
    stripe_idempotent: HashMap<String, Value>,
    counter: u64,
}

#[derive(Clone)]
struct Fake {
    keys: Arc<HashMap<&'static str, String>>,
    base: String,
    inner: Arc<Mutex<Inner>>,
}

pub struct PaymentApiFake {
    pub addr: SocketAddr,
    /// The API key each provider accepts (by provider name).
    pub keys: HashMap<&'static str, String>,
    fake: Fake,
}

/// The LemonSqueezy store the fake knows.
pub const LEMONSQUEEZY_STORE: &str = "40123";

impl PaymentApiFake {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the payment fake");
        let addr = listener.local_addr().expect("addr");
        let keys: HashMap<&'static str, String> = [
            ("stripe", format!("sk_test_{}", Uuid::new_v4().simple())),
            ("paddle", format!("pdl_sdbx_apikey_{}", Uuid::new_v4().simple())),
            ("lemonsqueezy", format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}", Uuid::new_v4().simple())),
            ("polar", format!("polar_oat_{}", Uuid::new_v4().simple())),
        ]
        .into_iter()
        .collect();
        let fake = Fake { keys: Arc::new(keys.clone()), base: format!("http://{addr}"), inner: Arc::default() };
        let app = Router::new()
            .route("/stripe/v1/checkout/sessions", post(stripe_checkout))
            .route("/stripe/v1/billing_portal/sessions", post(stripe_portal))
            .route("/paddle/transactions", post(paddle_transaction))
            .route("/paddle/customers/{id}/portal-sessions", post(paddle_portal))
            .route("/lemonsqueezy/v1/checkouts", post(lemon_checkout))
            .route("/lemonsqueezy/v1/subscriptions/{id}", get(lemon_subscription))
            .route("/polar/v1/checkouts/", post(polar_checkout))
            .route("/polar/v1/customer-sessions/", post(polar_session))
            .route("/pay/{*rest}", get(|| async { "checkout page" }))
            .route("/portal/{*rest}", get(|| async { "portal page" }))
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, keys, fake }
    }

    /// Where the server's adapters should send each provider's calls.
    pub fn config(&self) -> PaymentApiConfig {
        let base = format!("http://{}", self.addr);
        PaymentApiConfig {
            stripe_url: format!("{base}/stripe"),
            paddle_url: format!("{base}/paddle"),
            lemonsqueezy_url: format!("{base}/lemonsqueezy"),
            polar_url: format!("{base}/polar"),
            lemonsqueezy_store_id: Some(LEMONSQUEEZY_STORE.into()),
        }
    }

    /// The secret-store entries that configure every provider's API key.
    pub fn secrets(&self) -> Vec<(String, String)> {
        engagetrack_server::billing::Provider::ALL.iter().map(|p| (p.api_key_name().to_owned(), self.keys[p.as_str()].clone())).collect()
    }

    pub fn received(&self, provider: &str) -> Vec<Received> {
        self.fake.inner.lock().expect("fake").received.iter().filter(|r| r.provider == provider).cloned().collect()
    }

    /// The next call to `provider` fails with `status` and its error envelope.
    pub fn fail_next(&self, provider: &'static str, status: u16) {
        self.fake.inner.lock().expect("fake").fail_next.insert(provider, status);
    }
}

impl Fake {
    fn next_id(&self) -> u64 {
        let mut inner = self.inner.lock().expect("fake");
        inner.counter += 1;
        inner.counter
    }

    /// Records the request, checks the key, and answers a planned failure.
    fn receive(&self, provider: &'static str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<Value, Response> {
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = text(header::CONTENT_TYPE);
        let parsed = if content_type.as_deref() == Some("application/x-www-form-urlencoded") {
            Value::Object(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), Value::from(v.into_owned()))).collect())
        } else {
            serde_json::from_slice(body).unwrap_or(Value::Null)
        };
        let bearer = text(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
        let received = Received {
            provider,
            method: method.to_string(),
            path: uri.path().to_owned(),
            bearer: bearer.clone(),
            content_type,
            accept: text(header::ACCEPT),
            idempotency_key: headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: parsed.clone(),
        };
        let failure = {
            let mut inner = self.inner.lock().expect("fake");
            inner.received.push(received);
            inner.fail_next.remove(provider)
        };
        if bearer.as_deref() != Some(self.keys[provider].as_str()) {
            return Err(provider_error(provider, 401, "Invalid API key provided"));
        }
        if let Some(status) = failure {
            return Err(provider_error(provider, status, "the fake was told to fail this request"));
        }
        Ok(parsed)
    }
}

/// Each provider's documented error envelope.
fn provider_error(provider: &str, status: u16, message: &str) -> Response {
    let body = match provider {
        "stripe" => {
            json!({"error": {"type": if status == 401 { "invalid_request_error" } else { "api_error" }, "message": message}})
        }
        "paddle" => {
            json!({"error": {"type": "request_error", "code": "bad_request", "detail": message,
                           "documentation_url": "https://developer.paddle.com/errors/shared/bad_request"}, "meta": {"request_id": Uuid::new_v4()}})
        }
        "lemonsqueezy" => {
            json!({"jsonapi": {"version": "1.0"}, "errors": [{"detail": message, "status": status.to_string(), "title": "Error"}]})
        }
        _ => json!({"error": "PolarRequestValidationError", "detail": message}),
    };
    (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), Json(body)).into_response()
}

fn field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str).filter(|v| !v.is_empty())
}

async fn stripe_checkout(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form = match fake.receive("stripe", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
        && let Some(earlier) = fake.inner.lock().expect("fake").stripe_idempotent.get(key)
    {
        return Json(earlier.clone()).into_response();
    }
    for required in ["mode", "line_items[0][price]", "success_url"] {
        if field(&form, required).is_none() {
            return provider_error("stripe", 400, &format!("Missing required param: {required}."));
        }
    }
    if field(&form, "mode") != Some("subscription") || !field(&form, "line_items[0][price]").unwrap_or_default().starts_with("price_") {
        return provider_error("stripe", 400, "No such price");
    }
    let id = format!("cs_test_{}", fake.next_id());
    let session = json!({"id": id, "object": "checkout.session", "mode": "subscription", "status": "open",
        "client_reference_id": form.get("client_reference_id"), "metadata": {"organization_id": form.get("metadata[organization_id]")},
        "url": format!("{}/pay/stripe/{id}", fake.base)});
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        fake.inner.lock().expect("fake").stripe_idempotent.insert(key.to_owned(), session.clone());
    }
    Json(session).into_response()
}

async fn stripe_portal(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form = match fake.receive("stripe", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(customer) = field(&form, "customer").filter(|c| c.starts_with("cus_")) else {
        return provider_error("stripe", 400, "Missing required param: customer.");
    };
    let id = format!("bps_{}", fake.next_id());
    Json(json!({"id": id, "object": "billing_portal.session", "customer": customer, "return_url": form.get("return_url"),
        "url": format!("{}/portal/stripe/{id}", fake.base)}))
    .into_response()
}

async fn paddle_transaction(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match fake.receive("paddle", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let price = body.pointer("/items/0/price_id").and_then(Value::as_str).unwrap_or_default();
    if !price.starts_with("pri_") {
        return provider_error("paddle", 400, "items[0].price_id: the price does not exist");
    }
    let id = format!("txn_01{:024}", fake.next_id());
    (
        StatusCode::CREATED,
        Json(json!({"data": {"id": id, "status": "ready", "custom_data": body.get("custom_data"),
        "items": body.get("items"), "checkout": {"url": format!("{}/pay/paddle?_ptxn={id}", fake.base)}},
        "meta": {"request_id": Uuid::new_v4()}})),
    )
        .into_response()
}

async fn paddle_portal(
    State(fake): State<Fake>,
    Path(customer): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match fake.receive("paddle", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !customer.starts_with("ctm_") {
        return provider_error("paddle", 404, "Customer not found");
    }
    let id = format!("cpls_01{:024}", fake.next_id());
    let subscriptions: Vec<Value> = body["subscription_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|s| json!({"id": s, "cancel_subscription": format!("{}/portal/paddle/{id}/cancel", fake.base)}))
        .collect();
    (
        StatusCode::CREATED,
        Json(json!({"data": {"id": id, "customer_id": customer,
        "urls": {"general": {"overview": format!("{}/portal/paddle/{id}", fake.base)}, "subscriptions": subscriptions}},
        "meta": {"request_id": Uuid::new_v4()}})),
    )
        .into_response()
}

const JSON_API: &str = "application/vnd.api+json";

async fn lemon_checkout(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match fake.receive("lemonsqueezy", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let typed = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()) == Some(JSON_API);
    if !typed(header::CONTENT_TYPE) || !typed(header::ACCEPT) {
        return provider_error("lemonsqueezy", 415, "send and accept application/vnd.api+json");
    }
    if body.pointer("/data/type").and_then(Value::as_str) != Some("checkouts") {
        return provider_error("lemonsqueezy", 422, "The data.type field must be checkouts.");
    }
    if body.pointer("/data/relationships/store/data/id").and_then(Value::as_str) != Some(LEMONSQUEEZY_STORE) {
        return provider_error("lemonsqueezy", 422, "The store relationship is invalid.");
    }
    let Some(variant) =
        body.pointer("/data/relationships/variant/data/id").and_then(Value::as_str).filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
    else {
        return provider_error("lemonsqueezy", 422, "The variant field is required.");
    };
    let id = Uuid::new_v4();
    (
        StatusCode::CREATED,
        Json(json!({"jsonapi": {"version": "1.0"}, "links": {"self": format!("{}/lemonsqueezy/v1/checkouts/{id}", fake.base)},
        "data": {"type": "checkouts", "id": id, "attributes": {"store_id": LEMONSQUEEZY_STORE.parse::<u64>().unwrap_or(0),
            "variant_id": variant.parse::<u64>().unwrap_or(0), "checkout_data": body.pointer("/data/attributes/checkout_data"),
            "url": format!("{}/pay/lemonsqueezy/{id}?signature={}", fake.base, Uuid::new_v4().simple())}}})),
    )
        .into_response()
}

async fn lemon_subscription(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = fake.receive("lemonsqueezy", &method, &uri, &headers, &body) {
        return r;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return provider_error("lemonsqueezy", 404, "Not found");
    }
    Json(json!({"jsonapi": {"version": "1.0"}, "data": {"type": "subscriptions", "id": id, "attributes": {"status": "active",
        "urls": {"update_payment_method": format!("{}/portal/lemonsqueezy/{id}/payment", fake.base),
                 "customer_portal": format!("{}/portal/lemonsqueezy/{id}?signature={}", fake.base, Uuid::new_v4().simple())}}}}))
    .into_response()
}

async fn polar_checkout(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match fake.receive("polar", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if body.get("products").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "products"], "msg": "Field required", "type": "missing"}]})),
        )
            .into_response();
    }
    let (id, secret) = (Uuid::new_v4(), format!("polar_c_{}", Uuid::new_v4().simple()));
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "status": "open", "client_secret": secret, "product_id": body["products"][0],
        "metadata": body.get("metadata"), "success_url": body.get("success_url"),
        "url": format!("{}/pay/polar/{secret}", fake.base)})),
    )
        .into_response()
}

async fn polar_session(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match fake.receive("polar", &method, &uri, &headers, &body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(customer) = field(&body, "customer_id") else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body", "customer_id"], "msg": "Field required", "type": "missing"}]})),
        )
            .into_response();
    };
    let token = format!("polar_cst_{}", Uuid::new_v4().simple());
    (
        StatusCode::CREATED,
        Json(json!({"id": Uuid::new_v4(), "token": token, "customer_id": customer,
        "customer_portal_url": format!("{}/portal/polar?customer_session_token={token}", fake.base)})),
    )
        .into_response()
}
