//! Polar signs with Standard Webhooks: headers `webhook-id`,
//! `webhook-timestamp` (unix seconds, within 5 minutes of now) and
//! `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256 of
//! "<id>.<timestamp>.<raw body>">`. The key: for a secret `whsec_<base64>`
//! the decoded bytes (the Standard Webhooks rule); for any other secret its
//! bytes as they are (what Polar's SDK does with the secret Polar shows).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::{self, bad};
use super::{BillingEvent, Change, Provider, RecordEvent, RecordKind, Status, SubscriptionState, WebhookError, signature};

const NAME: &str = "Polar";

pub fn key(secret: &[u8]) -> Result<Vec<u8>, WebhookError> {
    match secret.strip_prefix(b"whsec_") {
        Some(encoded) => STANDARD.decode(encoded).map_err(|_| WebhookError::BadSignature),
        None => Ok(secret.to_vec()),
    }
}

/// Checks the delivery; the `webhook-id` it carries is the event id.
pub fn verify(secret: &[u8], headers: &axum::http::HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<String, WebhookError> {
    let id = signature::header(headers, "webhook-id")?;
    let ts_text = signature::header(headers, "webhook-timestamp")?;
    let signatures = signature::header(headers, "webhook-signature")?;
    let ts: i64 = ts_text
        .trim()
        .parse()
        .map_err(|_| WebhookError::MalformedHeader { header: "webhook-timestamp", reason: "not a unix time".into() })?;
    signature::check_window(ts, now, super::SIGNATURE_TOLERANCE_SECS)?;
    let key = key(secret)?;
    let signed = [id.as_bytes(), b".", ts_text.trim().as_bytes(), b".", body];
    let mut any_v1 = false;
    for sig in signatures.split_whitespace() {
        let Some(("v1", encoded)) = sig.split_once(',') else { continue };
        any_v1 = true;
        if let Ok(tag) = STANDARD.decode(encoded)
            && signature::matches(&key, &signed, &tag)
        {
            return Ok(id.to_owned());
        }
    }
    if any_v1 {
        Err(WebhookError::BadSignature)
    } else {
        Err(WebhookError::MalformedHeader { header: "webhook-signature", reason: "no `v1,<base64>` signature".into() })
    }
}

/// The `webhook-signature` value for a delivery (tests, fakes).
pub fn sign(secret: &[u8], id: &str, ts: i64, body: &[u8]) -> Result<String, WebhookError> {
    let key = key(secret)?;
    let tag = signature::sign(&key, &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body]);
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

fn status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" | "unpaid" | "incomplete" => Status::PastDue,
        _ => Status::Cancelled, // canceled, incomplete_expired
    }
}

pub fn parse(event_id: &str, headers: &axum::http::HeaderMap, body: &[u8]) -> Result<BillingEvent, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(NAME, e.to_string()))?;
    let event_type = json::str_at(&v, "/type").ok_or_else(|| bad(NAME, "no `type`"))?.to_owned();
    // The payload's `timestamp`; else the signed header's.
    let occurred_at = json::rfc3339_at(&v, "/timestamp")
        .or_else(|| {
            let ts = headers.get("webhook-timestamp")?.to_str().ok()?.trim().parse().ok()?;
            DateTime::from_timestamp(ts, 0)
        })
        .ok_or_else(|| bad(NAME, "no `timestamp`"))?;
    let d = v.pointer("/data").ok_or_else(|| bad(NAME, "no `data`"))?;
    let missing = |what: &str| bad(NAME, format!("`{event_type}` without `data.{what}`"));
    let change = match event_type.as_str() {
        "subscription.created"
        | "subscription.updated"
        | "subscription.active"
        | "subscription.canceled"
        | "subscription.uncanceled"
        | "subscription.revoked" => Change::Subscription(SubscriptionState {
            organization_id: json::organization_at(d, "/metadata/organization_id"),
            external_subscription_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
            price_id: json::str_at(d, "/product_id").map(str::to_owned),
            status: status(json::str_at(d, "/status").ok_or_else(|| missing("status"))?),
            current_period_start: json::rfc3339_at(d, "/current_period_start"),
            current_period_end: json::rfc3339_at(d, "/current_period_end"),
            cancel_at_period_end: d.pointer("/cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false),
            customer_email: json::str_at(d, "/customer/email").map(str::to_owned),
        }),
        "order.paid" => match json::str_at(d, "/subscription_id") {
            None => Change::Unknown,
            Some(sub) => Change::Record(RecordEvent {
                kind: RecordKind::Invoice,
                external_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
                organization_id: json::organization_at(d, "/metadata/organization_id"),
                external_subscription_id: Some(sub.to_owned()),
                external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
                amount_minor: json::amount_at(d, "/total_amount").ok_or_else(|| missing("total_amount"))?,
                currency: json::currency_at(d, "/currency").ok_or_else(|| missing("currency"))?,
                period: None,
                customer_email: json::str_at(d, "/customer/email").map(str::to_owned),
            }),
        },
        "order.refunded" => Change::Record(RecordEvent {
            kind: RecordKind::Refund,
            external_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            organization_id: json::organization_at(d, "/metadata/organization_id"),
            external_subscription_id: json::str_at(d, "/subscription_id").map(str::to_owned),
            external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
            amount_minor: json::amount_at(d, "/refunded_amount").ok_or_else(|| missing("refunded_amount"))?,
            currency: json::currency_at(d, "/currency").ok_or_else(|| missing("currency"))?,
            period: None,
            customer_email: None,
        }),
        "customer.updated" => Change::Customer {
            external_customer_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            email: json::str_at(d, "/email").map(str::to_owned),
        },
        _ => Change::Unknown,
    };
    Ok(BillingEvent { provider: Provider::Polar, event_id: event_id.to_owned(), event_type, occurred_at, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vector of the Standard Webhooks libraries.
    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(), expected);
        let mut h = axum::http::HeaderMap::new();
        h.insert("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap());
        h.insert("webhook-timestamp", "1614265330".parse().unwrap());
        h.insert("webhook-signature", format!("v1,bm9wZQ== {expected}").parse().unwrap());
        let now = DateTime::from_timestamp(1614265330 + 299, 0).unwrap();
        assert_eq!(verify(secret, &h, body, now).unwrap(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(verify(secret, &h, br#"{"test": 2432232315}"#, now), Err(WebhookError::BadSignature));
        let late = DateTime::from_timestamp(1614265330 + 301, 0).unwrap();
        assert_eq!(verify(secret, &h, body, late), Err(WebhookError::Stale { skew: 301, window: 300 }));
    }
}
