//! The payment providers' HTTP APIs behind [`PaymentApi`]: one module per
//! provider builds its documented request and reads its documented answer
//! (both pure, unit-tested); this module sends them. Keys come from the
//! secret store per call, so a rotated key is used from the next request.

pub mod lemonsqueezy;
pub mod paddle;
pub mod polar;
pub mod stripe;

use std::time::Duration;

use serde_json::Value;

use crate::billing::Provider;
use crate::billing::checkout::{CheckoutLink, CheckoutRequest, PaymentApi, PaymentApiError, PortalRequest};

/// A provider call that takes longer is abandoned (the user can retry).
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where each provider's API is (their production origins by default; the
/// sandboxes, or the tests' loopback fake, by the `ENGAGETRACK_*_API_URL`
/// variables), and the LemonSqueezy store checkouts are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentApiConfig {
    pub stripe_url: String,
    pub paddle_url: String,
    pub lemonsqueezy_url: String,
    pub polar_url: String,
    pub lemonsqueezy_store_id: Option<String>,
}

impl Default for PaymentApiConfig {
    fn default() -> Self {
        Self {
            stripe_url: "https://api.stripe.com".into(),
            paddle_url: "https://api.paddle.com".into(),
            lemonsqueezy_url: "https://api.lemonsqueezy.com".into(),
            polar_url: "https://api.polar.sh".into(),
            lemonsqueezy_store_id: None,
        }
    }
}

impl PaymentApiConfig {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().trim_end_matches('/').to_owned()).filter(|v| !v.is_empty());
        let d = Self::default();
        Self {
            stripe_url: var("ENGAGETRACK_STRIPE_API_URL").unwrap_or(d.stripe_url),
            paddle_url: var("ENGAGETRACK_PADDLE_API_URL").unwrap_or(d.paddle_url),
            lemonsqueezy_url: var("ENGAGETRACK_LEMONSQUEEZY_API_URL").unwrap_or(d.lemonsqueezy_url),
            polar_url: var("ENGAGETRACK_POLAR_API_URL").unwrap_or(d.polar_url),
            lemonsqueezy_store_id: var("ENGAGETRACK_LEMONSQUEEZY_STORE_ID"),
        }
    }

    fn base(&self, provider: Provider) -> &str {
        match provider {
            Provider::Stripe => &self.stripe_url,
            Provider::Paddle => &self.paddle_url,
            Provider::Lemonsqueezy => &self.lemonsqueezy_url,
            Provider::Polar => &self.polar_url,
        }
    }
}

/// One HTTP request of a provider call, before it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: reqwest::Method,
    /// Below the provider's base URL.
    pub path: String,
    pub body: ApiBody,
    /// Extra headers beyond `Authorization: Bearer <key>`.
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiBody {
    None,
    /// `application/x-www-form-urlencoded` (Stripe), in order.
    Form(Vec<(String, String)>),
    /// JSON, sent with the given content type.
    Json(Value, &'static str),
}

/// The adapters for every provider, sharing one HTTP client.
pub struct PaymentApis {
    http: reqwest::Client,
    config: PaymentApiConfig,
}

impl PaymentApis {
    pub fn new(config: PaymentApiConfig) -> Result<Self, PaymentApiError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PaymentApiError::NotPossible(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, config })
    }

    /// The adapter of `provider` with its API key (the secret's bytes: the key
    /// as the provider's dashboard shows it).
    pub fn client(&self, provider: Provider, api_key: &[u8]) -> Result<Box<dyn PaymentApi>, PaymentApiError> {
        let key = std::str::from_utf8(api_key)
            .map_err(|_| PaymentApiError::NotPossible(format!("the `{}` secret is not UTF-8 text", provider.api_key_name())))?
            .trim()
            .to_owned();
        Ok(Box::new(ProviderClient {
            provider,
            http: self.http.clone(),
            base: self.config.base(provider).trim_end_matches('/').to_owned(),
            key,
            config: self.config.clone(),
        }))
    }
}

struct ProviderClient {
    provider: Provider,
    http: reqwest::Client,
    base: String,
    key: String,
    config: PaymentApiConfig,
}

impl ProviderClient {
    async fn send(&self, request: ApiRequest) -> Result<Value, PaymentApiError> {
        let name = self.provider.as_str();
        let mut builder = self.http.request(request.method, format!("{}{}", self.base, request.path)).bearer_auth(&self.key);
        for (header, value) in request.headers {
            builder = builder.header(header, value);
        }
        builder = match request.body {
            ApiBody::None => builder,
            ApiBody::Form(fields) => builder.form(&fields),
            ApiBody::Json(body, content_type) => builder.header(reqwest::header::CONTENT_TYPE, content_type).body(body.to_string()),
        };
        let response = builder.send().await.map_err(|e| PaymentApiError::Unreachable { provider: name, reason: e.to_string() })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| PaymentApiError::Unreachable { provider: name, reason: e.to_string() })?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = error_message(self.provider, &body).unwrap_or_else(|| text.chars().take(300).collect());
            return Err(PaymentApiError::Refused { provider: name, status: status.as_u16(), message });
        }
        if body.is_null() {
            return Err(PaymentApiError::BadAnswer { provider: name, reason: "the body is not JSON".into() });
        }
        Ok(body)
    }
}

#[async_trait::async_trait]
impl PaymentApi for ProviderClient {
    fn provider(&self) -> Provider {
        self.provider
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutLink, PaymentApiError> {
        let api = match self.provider {
            Provider::Stripe => stripe::checkout(request),
            Provider::Paddle => paddle::checkout(request),
            Provider::Lemonsqueezy => lemonsqueezy::checkout(request, self.config.lemonsqueezy_store_id.as_deref())?,
            Provider::Polar => polar::checkout(request),
        };
        let answer = self.send(api).await?;
        let (external_id, url) = match self.provider {
            Provider::Stripe => stripe::checkout_answer(&answer),
            Provider::Paddle => paddle::checkout_answer(&answer),
            Provider::Lemonsqueezy => lemonsqueezy::checkout_answer(&answer),
            Provider::Polar => polar::checkout_answer(&answer),
        }
        .map_err(|reason| PaymentApiError::BadAnswer { provider: self.provider.as_str(), reason })?;
        Ok(CheckoutLink { provider: self.provider, external_id, url })
    }

    async fn portal(&self, request: &PortalRequest) -> Result<String, PaymentApiError> {
        let api = match self.provider {
            Provider::Stripe => stripe::portal(request),
            Provider::Paddle => paddle::portal(request),
            Provider::Lemonsqueezy => lemonsqueezy::portal(request),
            Provider::Polar => polar::portal(request),
        }?;
        let answer = self.send(api).await?;
        match self.provider {
            Provider::Stripe => stripe::portal_answer(&answer),
            Provider::Paddle => paddle::portal_answer(&answer),
            Provider::Lemonsqueezy => lemonsqueezy::portal_answer(&answer),
            Provider::Polar => polar::portal_answer(&answer),
        }
        .map_err(|reason| PaymentApiError::BadAnswer { provider: self.provider.as_str(), reason })
    }
}

/// The human part of each provider's documented error envelope.
fn error_message(provider: Provider, body: &Value) -> Option<String> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match provider {
        Provider::Stripe => text(body.pointer("/error/message")?),
        Provider::Paddle => text(body.pointer("/error/detail")?),
        Provider::Lemonsqueezy => text(body.pointer("/errors/0/detail")?),
        Provider::Polar => match body.get("detail")? {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => Some(
                items.iter().filter_map(|i| Some(format!("{}: {}", i.get("loc")?, i.get("msg")?.as_str()?))).collect::<Vec<_>>().join("; "),
            ),
            _ => None,
        },
    }
}

/// A string field of an answer, or why it is missing.
pub(crate) fn field(answer: &Value, pointer: &str) -> Result<String, String> {
    answer
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| format!("no `{pointer}` in the answer"))
}

/// A checkout URL must be https (or http on loopback, for the tests' fake).
pub(crate) fn checked_url(url: String) -> Result<String, String> {
    let parsed = url::Url::parse(&url).map_err(|e| format!("the URL `{url}` does not parse: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback) {
        Ok(url)
    } else {
        Err(format!("the URL `{url}` is not https"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_messages_come_from_each_envelope() {
        let stripe = json!({"error": {"type": "invalid_request_error", "message": "No such price: 'price_x'"}});
        assert_eq!(error_message(Provider::Stripe, &stripe).unwrap(), "No such price: 'price_x'");
        let paddle =
            json!({"error": {"type": "request_error", "code": "not_found", "detail": "Price not found"}, "meta": {"request_id": "r"}});
        assert_eq!(error_message(Provider::Paddle, &paddle).unwrap(), "Price not found");
        let lemon = json!({"jsonapi": {"version": "1.0"}, "errors": [{"detail": "The variant field is required.", "status": "422"}]});
        assert_eq!(error_message(Provider::Lemonsqueezy, &lemon).unwrap(), "The variant field is required.");
        let polar = json!({"detail": [{"loc": ["body", "products"], "msg": "Field required", "type": "missing"}]});
        assert_eq!(error_message(Provider::Polar, &polar).unwrap(), r#"["body","products"]: Field required"#);
    }

    #[test]
    fn only_https_urls_are_handed_out() {
        assert!(checked_url("https://checkout.stripe.com/c/pay/cs_1".into()).is_ok());
        assert!(checked_url("http://127.0.0.1:9/c".into()).is_ok());
        assert!(checked_url("http://evil.example/c".into()).is_err());
        assert!(checked_url("javascript:alert(1)".into()).is_err());
    }
}

/// The checkout every provider's unit test starts from: a new customer by email.
#[cfg(test)]
fn checkout_request(organization_id: uuid::Uuid, price_id: &str) -> CheckoutRequest {
    CheckoutRequest {
        organization_id,
        price_id: price_id.into(),
        customer_email: Some("ann@example.com".into()),
        external_customer_id: None,
        success_url: "https://app.example/billing".into(),
        cancel_url: "https://app.example/billing".into(),
        idempotency_key: uuid::Uuid::nil(),
    }
}
