//! Billing: plans, one subscription per organisation, billing records and
//! billing details.
//!
//! Each provider module (`stripe`, `paddle`, `lemonsqueezy`, `polar`) checks a
//! delivery's signature exactly as that provider documents it and turns the
//! verified body into one [`BillingEvent`]; [`state`] is the subscription state
//! machine, written once over `BillingEvent`; [`store`] holds the SQL.

pub mod checkout;
pub mod details;
pub mod lemonsqueezy;
pub mod limits;
pub mod paddle;
pub mod polar;
pub mod quota;
pub mod signature;
pub mod state;
pub mod store;
pub mod stripe;
pub mod vat;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::secrets::Secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Stripe,
    Paddle,
    Lemonsqueezy,
    Polar,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::Stripe, Provider::Paddle, Provider::Lemonsqueezy, Provider::Polar];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Paddle => "paddle",
            Provider::Lemonsqueezy => "lemonsqueezy",
            Provider::Polar => "polar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The secret-store name of this provider's API key (checkout, portal).
    pub fn api_key_name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe-api-key",
            Provider::Paddle => "paddle-api-key",
            Provider::Lemonsqueezy => "lemonsqueezy-api-key",
            Provider::Polar => "polar-access-token",
        }
    }

    /// The secret-store name of this provider's webhook signing secret.
    pub fn webhook_secret_name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe-webhook-secret",
            Provider::Paddle => "paddle-webhook-secret",
            Provider::Lemonsqueezy => "lemonsqueezy-webhook-secret",
            Provider::Polar => "polar-webhook-secret",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Trialing,
    Active,
    PastDue,
    Paused,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Trialing => "trialing",
            Status::Active => "active",
            Status::PastDue => "past_due",
            Status::Paused => "paused",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Status::Trialing, Status::Active, Status::PastDue, Status::Paused, Status::Cancelled].into_iter().find(|x| x.as_str() == s)
    }
}

/// One provider event, in our words. Providers differ in names and shapes;
/// after their module, nothing does.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingEvent {
    pub provider: Provider,
    /// The provider's id of the event (or, where it gives none, a key made
    /// of what identifies it: LemonSqueezy).
    pub event_id: String,
    /// The provider's own name of the event type, as recorded.
    pub event_type: String,
    /// When the provider says the change happened; orders events.
    pub occurred_at: DateTime<Utc>,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A subscription was created or changed (renewed, paused, cancelled...):
    /// its state as the provider now sees it.
    Subscription(SubscriptionState),
    /// A payment for a subscription failed: it is past due.
    PaymentFailed { external_subscription_id: String },
    /// Money moved: an invoice or payment (which also renews or recovers the
    /// subscription it pays for) or a refund.
    Record(RecordEvent),
    /// The customer's details changed at the provider.
    Customer { external_customer_id: String, email: Option<String> },
    /// A type we do not act on; recorded, answered 200.
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    /// From the metadata our checkout put on it; later events may lack it.
    pub organization_id: Option<Uuid>,
    pub external_subscription_id: String,
    pub external_customer_id: Option<String>,
    /// The provider's price (variant, product) id: which plan.
    pub price_id: Option<String>,
    pub status: Status,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub customer_email: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Invoice,
    Payment,
    Refund,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Invoice => "invoice",
            RecordKind::Payment => "payment",
            RecordKind::Refund => "refund",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordEvent {
    pub kind: RecordKind,
    pub external_id: String,
    pub organization_id: Option<Uuid>,
    pub external_subscription_id: Option<String>,
    pub external_customer_id: Option<String>,
    pub amount_minor: i64,
    /// ISO 4217, upper case.
    pub currency: String,
    /// The period an invoice or payment pays for: a renewal moves the subscription to it.
    pub period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub customer_email: Option<String>,
}

/// Why a delivery is refused before anything is applied (each a 4xx).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("the `{0}` header is missing")]
    MissingHeader(&'static str),
    #[error("the `{header}` header is malformed: {reason}")]
    MalformedHeader { header: &'static str, reason: String },
    #[error("the signature timestamp is {skew} s away from now, outside the {window} s window")]
    Stale { skew: i64, window: i64 },
    #[error("no signature matches the body")]
    BadSignature,
    #[error("the body is not a {provider} event: {reason}")]
    BadPayload { provider: &'static str, reason: String },
}

/// How far a signature timestamp may be from now, both ways: Stripe's
/// documented default tolerance, and Standard Webhooks' 5 minutes (Polar).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Paddle's: its SDKs' default `maximum_variance` (Paddle sends each retry
/// with a fresh `ts`, so a short window refuses no genuine delivery).
pub const PADDLE_TOLERANCE_SECS: i64 = 5;

/// One secret per provider found in the secret store (webhook signing
/// secrets, API keys); a provider without one is not configured for that use.
#[derive(Clone, Default)]
pub struct ProviderSecrets {
    secrets: Vec<(Provider, Vec<u8>)>,
}

impl std::fmt::Debug for ProviderSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.secrets.iter().map(|(p, _)| p.as_str())).finish()
    }
}

impl ProviderSecrets {
    /// The webhook signing secrets (`<provider>-webhook-secret`).
    pub fn webhooks(secrets: &Secrets) -> Self {
        Self::named(secrets, Provider::webhook_secret_name)
    }

    /// The API keys checkout and portal links are made with.
    pub fn api_keys(secrets: &Secrets) -> Self {
        Self::named(secrets, Provider::api_key_name)
    }

    fn named(secrets: &Secrets, name: fn(Provider) -> &'static str) -> Self {
        let secrets =
            Provider::ALL.into_iter().filter_map(|p| secrets.get(name(p)).filter(|s| !s.is_empty()).map(|s| (p, s.to_vec()))).collect();
        Self { secrets }
    }

    pub fn get(&self, provider: Provider) -> Option<&[u8]> {
        self.secrets.iter().find(|(p, _)| *p == provider).map(|(_, s)| s.as_slice())
    }

    pub fn providers(&self) -> Vec<Provider> {
        self.secrets.iter().map(|(p, _)| *p).collect()
    }
}

/// Checks a delivery with its provider's scheme and parses it. `secret` is
/// the signing secret as the provider's dashboard shows it (its UTF-8 bytes).
pub fn verify_and_parse(
    provider: Provider,
    secret: &[u8],
    headers: &axum::http::HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<BillingEvent, WebhookError> {
    match provider {
        Provider::Stripe => {
            stripe::verify(secret, headers, body, now)?;
            stripe::parse(body)
        }
        Provider::Paddle => {
            paddle::verify(secret, headers, body, now)?;
            paddle::parse(body)
        }
        Provider::Lemonsqueezy => {
            lemonsqueezy::verify(secret, headers, body)?;
            lemonsqueezy::parse(headers, body)
        }
        Provider::Polar => {
            let id = polar::verify(secret, headers, body, now)?;
            polar::parse(&id, headers, body)
        }
    }
}

/// Helpers the provider parsers share.
pub(crate) mod json {
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::Value;

    use super::WebhookError;

    pub fn bad(provider: &'static str, reason: impl Into<String>) -> WebhookError {
        WebhookError::BadPayload { provider, reason: reason.into() }
    }

    pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
        v.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// A string or a number (LemonSqueezy sends ids as numbers), as text.
    pub fn id_at(v: &Value, pointer: &str) -> Option<String> {
        match v.pointer(pointer)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    pub fn unix_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
        v.pointer(pointer).and_then(Value::as_i64).and_then(|t| Utc.timestamp_opt(t, 0).single())
    }

    pub fn rfc3339_at(v: &Value, pointer: &str) -> Option<DateTime<Utc>> {
        str_at(v, pointer).and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
    }

    /// An integer amount in minor units, sent as a number or a decimal string (Paddle).
    pub fn amount_at(v: &Value, pointer: &str) -> Option<i64> {
        match v.pointer(pointer)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn organization_at(v: &Value, pointer: &str) -> Option<uuid::Uuid> {
        str_at(v, pointer).and_then(|s| uuid::Uuid::parse_str(s).ok())
    }

    pub fn currency_at(v: &Value, pointer: &str) -> Option<String> {
        str_at(v, pointer).map(str::to_ascii_uppercase).filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
    }
}
