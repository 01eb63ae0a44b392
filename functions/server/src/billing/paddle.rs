//! Paddle Billing: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>]`,
//! h1 = HMAC-SHA256(endpoint secret key, "<ts>:<raw body>"); several h1 while
//! a secret rotates; `ts` within 5 s of now (the SDKs' default variance). The key is the secret key
//! as Paddle shows it (`pdl_ntfset_...`), its bytes as they are.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::{self, bad};
use super::{BillingEvent, Change, Provider, RecordEvent, RecordKind, Status, SubscriptionState, WebhookError, signature};

const HEADER: &str = "paddle-signature";
const NAME: &str = "Paddle";

pub fn verify(secret: &[u8], headers: &axum::http::HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), WebhookError> {
    let value = signature::header(headers, HEADER)?;
    let malformed = |reason: &str| WebhookError::MalformedHeader { header: HEADER, reason: reason.into() };
    let mut ts = None;
    let mut candidates = Vec::new();
    for item in value.split(';') {
        let (key, val) = item.trim().split_once('=').ok_or_else(|| malformed("expected key=value pairs separated by `;`"))?;
        match key {
            "ts" => ts = Some(val.parse::<i64>().map_err(|_| malformed("`ts` is not a unix time"))?),
            "h1" => candidates.push(hex::decode(val).map_err(|_| malformed("an `h1` is not hex"))?),
            _ => {}
        }
    }
    let ts = ts.ok_or_else(|| malformed("no `ts=` timestamp"))?;
    if candidates.is_empty() {
        return Err(malformed("no `h1=` signature"));
    }
    signature::check_window(ts, now, super::PADDLE_TOLERANCE_SECS)?;
    let prefix = format!("{ts}:");
    if candidates.iter().any(|c| signature::matches(secret, &[prefix.as_bytes(), body], c)) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

pub fn sign_header(secret: &[u8], ts: i64, body: &[u8]) -> String {
    format!("ts={ts};h1={}", hex::encode(signature::sign(secret, &[format!("{ts}:").as_bytes(), body])))
}

fn status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        "past_due" => Status::PastDue,
        "paused" => Status::Paused,
        _ => Status::Cancelled,
    }
}

pub fn parse(body: &[u8]) -> Result<BillingEvent, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(NAME, e.to_string()))?;
    let event_id = json::str_at(&v, "/event_id").ok_or_else(|| bad(NAME, "no `event_id`"))?.to_owned();
    let event_type = json::str_at(&v, "/event_type").ok_or_else(|| bad(NAME, "no `event_type`"))?.to_owned();
    let occurred_at = json::rfc3339_at(&v, "/occurred_at").ok_or_else(|| bad(NAME, "no RFC 3339 `occurred_at`"))?;
    let d = v.pointer("/data").ok_or_else(|| bad(NAME, "no `data`"))?;
    let missing = |what: &str| bad(NAME, format!("`{event_type}` without `data.{what}`"));
    let change = match event_type.as_str() {
        "subscription.created"
        | "subscription.updated"
        | "subscription.activated"
        | "subscription.trialing"
        | "subscription.past_due"
        | "subscription.paused"
        | "subscription.resumed"
        | "subscription.canceled" => Change::Subscription(SubscriptionState {
            organization_id: json::organization_at(d, "/custom_data/organization_id"),
            external_subscription_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
            price_id: json::str_at(d, "/items/0/price/id").map(str::to_owned),
            status: status(json::str_at(d, "/status").ok_or_else(|| missing("status"))?),
            current_period_start: json::rfc3339_at(d, "/current_billing_period/starts_at"),
            current_period_end: json::rfc3339_at(d, "/current_billing_period/ends_at"),
            // A scheduled cancel is how Paddle says "at the end of the period".
            cancel_at_period_end: json::str_at(d, "/scheduled_change/action") == Some("cancel"),
            customer_email: None,
        }),
        "transaction.completed" | "transaction.paid" => match json::str_at(d, "/subscription_id") {
            // A one-off transaction pays for nothing we sell.
            None => Change::Unknown,
            Some(sub) => Change::Record(RecordEvent {
                kind: RecordKind::Payment,
                external_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
                organization_id: json::organization_at(d, "/custom_data/organization_id"),
                external_subscription_id: Some(sub.to_owned()),
                external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
                amount_minor: json::amount_at(d, "/details/totals/total").ok_or_else(|| missing("details.totals.total"))?,
                currency: json::currency_at(d, "/currency_code").ok_or_else(|| missing("currency_code"))?,
                period: json::rfc3339_at(d, "/billing_period/starts_at").zip(json::rfc3339_at(d, "/billing_period/ends_at")),
                customer_email: None,
            }),
        },
        "transaction.payment_failed" | "transaction.past_due" => match json::str_at(d, "/subscription_id") {
            Some(sub) => Change::PaymentFailed { external_subscription_id: sub.to_owned() },
            None => Change::Unknown,
        },
        "adjustment.created" | "adjustment.updated"
            if json::str_at(d, "/action") == Some("refund") && json::str_at(d, "/status") == Some("approved") =>
        {
            Change::Record(RecordEvent {
                kind: RecordKind::Refund,
                external_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
                organization_id: None,
                external_subscription_id: json::str_at(d, "/subscription_id").map(str::to_owned),
                external_customer_id: json::str_at(d, "/customer_id").map(str::to_owned),
                amount_minor: json::amount_at(d, "/totals/total").ok_or_else(|| missing("totals.total"))?,
                currency: json::currency_at(d, "/currency_code").ok_or_else(|| missing("currency_code"))?,
                period: None,
                customer_email: None,
            })
        }
        "customer.updated" => Change::Customer {
            external_customer_id: json::str_at(d, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            email: json::str_at(d, "/email").map(str::to_owned),
        },
        _ => Change::Unknown,
    };
    Ok(BillingEvent { provider: Provider::Paddle, event_id, event_type, occurred_at, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made and accepted by paddle-python-sdk 1.16 (`PaddleSignature`).
    #[test]
    fn paddle_sdk_vector() {
        let body = br#"{"event_id":"evt_01sdkvector","event_type":"subscription.created"}"#;
        let header = "ts=1700000000;h1=79c1ae9430531d4ed59c0cb9968c6094293223f02a2299af18caf9b6639f8f9c";
        let mut h = axum::http::HeaderMap::new();
        h.insert(HEADER, header.parse().unwrap());
        let at = |t| DateTime::from_timestamp(t, 0).unwrap();
        assert_eq!(verify(b"pdl_ntfset_sdkvector_key", &h, body, at(1700000005)), Ok(()));
        assert_eq!(verify(b"pdl_ntfset_sdkvector_key", &h, body, at(1700000006)), Err(WebhookError::Stale { skew: 6, window: 5 }));
        assert_eq!(sign_header(b"pdl_ntfset_sdkvector_key", 1700000000, body), header);
    }

    #[test]
    fn documented_header_shape() {
        // The shape of Paddle's documented example: `ts=1671552777;h1=eb4d0dc8...`.
        let mut h = axum::http::HeaderMap::new();
        let now = DateTime::from_timestamp(1671552777, 0).unwrap();
        let body = br#"{"event_id":"evt_01"}"#;
        h.insert(HEADER, sign_header(b"pdl_ntfset_x", 1671552777, body).parse().unwrap());
        assert!(h[HEADER].to_str().unwrap().starts_with("ts=1671552777;h1="));
        assert_eq!(verify(b"pdl_ntfset_x", &h, body, now), Ok(()));
        assert_eq!(verify(b"pdl_ntfset_y", &h, body, now), Err(WebhookError::BadSignature));
        h.insert(HEADER, "ts=1671552777".parse().unwrap());
        assert!(matches!(verify(b"pdl_ntfset_x", &h, body, now), Err(WebhookError::MalformedHeader { .. })));
    }
}
