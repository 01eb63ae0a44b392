//! LemonSqueezy: `X-Signature: <hex HMAC-SHA256(signing secret, raw body)>`.
//! The signature carries no timestamp, so there is no replay window to
//! check; a replayed delivery is still applied at most once (its event key
//! is already recorded) and never moves a subscription backwards (its time
//! is older). LemonSqueezy sends no event id either: the key is the event
//! name, the object and its `updated_at`, the same on every retry.

use serde_json::Value;

use super::json::{self, bad};
use super::{BillingEvent, Change, Provider, RecordEvent, RecordKind, Status, SubscriptionState, WebhookError, signature};

const HEADER: &str = "x-signature";
const NAME: &str = "LemonSqueezy";

pub fn verify(secret: &[u8], headers: &axum::http::HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
    let value = signature::header(headers, HEADER)?;
    let tag = hex::decode(value.trim()).map_err(|_| WebhookError::MalformedHeader { header: HEADER, reason: "not hex".into() })?;
    if signature::matches(secret, &[body], &tag) { Ok(()) } else { Err(WebhookError::BadSignature) }
}

pub fn sign_header(secret: &[u8], body: &[u8]) -> String {
    hex::encode(signature::sign(secret, &[body]))
}

fn status(s: &str) -> (Status, bool) {
    match s {
        "on_trial" => (Status::Trialing, false),
        "active" => (Status::Active, false),
        "past_due" | "unpaid" => (Status::PastDue, false),
        "paused" => (Status::Paused, false),
        // LemonSqueezy's `cancelled` runs until `ends_at`; `expired` is over.
        "cancelled" => (Status::Active, true),
        _ => (Status::Cancelled, false),
    }
}

pub fn parse(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<BillingEvent, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(NAME, e.to_string()))?;
    let event_type = json::str_at(&v, "/meta/event_name")
        .or_else(|| headers.get("x-event-name").and_then(|h| h.to_str().ok()))
        .ok_or_else(|| bad(NAME, "no `meta.event_name`"))?
        .to_owned();
    let a = v.pointer("/data/attributes").ok_or_else(|| bad(NAME, "no `data.attributes`"))?;
    let object_id = json::id_at(&v, "/data/id").ok_or_else(|| bad(NAME, "no `data.id`"))?;
    let occurred_at = json::rfc3339_at(a, "/updated_at")
        .or_else(|| json::rfc3339_at(a, "/created_at"))
        .ok_or_else(|| bad(NAME, "no `data.attributes.updated_at`"))?;
    let event_id = format!("{event_type}:{object_id}:{}", occurred_at.timestamp_micros());
    let organization_id = json::organization_at(&v, "/meta/custom_data/organization_id");
    let missing = |what: &str| bad(NAME, format!("`{event_type}` without `data.attributes.{what}`"));
    let change = match event_type.as_str() {
        "subscription_created"
        | "subscription_updated"
        | "subscription_cancelled"
        | "subscription_resumed"
        | "subscription_expired"
        | "subscription_paused"
        | "subscription_unpaused" => {
            let (status, cancel_at_period_end) = status(json::str_at(a, "/status").ok_or_else(|| missing("status"))?);
            Change::Subscription(SubscriptionState {
                organization_id,
                external_subscription_id: object_id,
                external_customer_id: json::id_at(a, "/customer_id"),
                price_id: json::id_at(a, "/variant_id"),
                status,
                current_period_start: None,
                current_period_end: json::rfc3339_at(a, "/renews_at").or_else(|| json::rfc3339_at(a, "/ends_at")),
                cancel_at_period_end,
                customer_email: json::str_at(a, "/user_email").map(str::to_owned),
            })
        }
        "subscription_payment_success" | "subscription_payment_recovered" => Change::Record(RecordEvent {
            kind: RecordKind::Invoice,
            external_id: object_id,
            organization_id,
            external_subscription_id: json::id_at(a, "/subscription_id"),
            external_customer_id: json::id_at(a, "/customer_id"),
            amount_minor: json::amount_at(a, "/total").ok_or_else(|| missing("total"))?,
            currency: json::currency_at(a, "/currency").ok_or_else(|| missing("currency"))?,
            period: None,
            customer_email: json::str_at(a, "/user_email").map(str::to_owned),
        }),
        "subscription_payment_failed" => match json::id_at(a, "/subscription_id") {
            Some(external_subscription_id) => Change::PaymentFailed { external_subscription_id },
            None => Change::Unknown,
        },
        "subscription_payment_refunded" | "order_refunded" => Change::Record(RecordEvent {
            kind: RecordKind::Refund,
            external_id: object_id,
            organization_id,
            external_subscription_id: json::id_at(a, "/subscription_id"),
            external_customer_id: json::id_at(a, "/customer_id"),
            amount_minor: json::amount_at(a, "/refunded_amount").ok_or_else(|| missing("refunded_amount"))?,
            currency: json::currency_at(a, "/currency").ok_or_else(|| missing("currency"))?,
            period: None,
            customer_email: json::str_at(a, "/user_email").map(str::to_owned),
        }),
        _ => Change::Unknown,
    };
    Ok(BillingEvent { provider: Provider::Lemonsqueezy, event_id, event_type, occurred_at, change })
}
