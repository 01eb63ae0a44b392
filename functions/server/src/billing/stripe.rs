//! Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`,
//! v1 = HMAC-SHA256(endpoint secret, "<t>.<raw body>"); any v1 may match
//! (Stripe sends several while a secret rolls); v0 and other schemes are
//! ignored; `t` must be within 300 s of now (Stripe's default tolerance).
//! The key is the endpoint secret as shown (`whsec_...`), its bytes as they are.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::{self, bad};
use super::{BillingEvent, Change, Provider, RecordEvent, RecordKind, Status, SubscriptionState, WebhookError, signature};

const HEADER: &str = "stripe-signature";
const NAME: &str = "Stripe";

pub fn verify(secret: &[u8], headers: &axum::http::HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<(), WebhookError> {
    let value = signature::header(headers, HEADER)?;
    let malformed = |reason: &str| WebhookError::MalformedHeader { header: HEADER, reason: reason.into() };
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in value.split(',') {
        let (key, val) = item.trim().split_once('=').ok_or_else(|| malformed("expected key=value pairs"))?;
        match key {
            "t" => timestamp = Some(val.parse::<i64>().map_err(|_| malformed("`t` is not a unix time"))?),
            "v1" => candidates.push(hex::decode(val).map_err(|_| malformed("a `v1` is not hex"))?),
            _ => {}
        }
    }
    let t = timestamp.ok_or_else(|| malformed("no `t=` timestamp"))?;
    if candidates.is_empty() {
        return Err(malformed("no `v1=` signature"));
    }
    signature::check_window(t, now, super::SIGNATURE_TOLERANCE_SECS)?;
    let signed_prefix = format!("{t}.");
    if candidates.iter().any(|c| signature::matches(secret, &[signed_prefix.as_bytes(), body], c)) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The header Stripe would send for `body` at `t` (tests, fakes).
pub fn sign_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(signature::sign(secret, &[format!("{t}.").as_bytes(), body])))
}

fn status(s: &str) -> Status {
    match s {
        "trialing" => Status::Trialing,
        "active" => Status::Active,
        // `unpaid`: retries exhausted but not cancelled; `incomplete`: first payment pending.
        "past_due" | "unpaid" | "incomplete" => Status::PastDue,
        "paused" => Status::Paused,
        _ => Status::Cancelled, // canceled, incomplete_expired
    }
}

/// The subscription an invoice belongs to: `subscription` (API versions up
/// to 2025-02) or `parent.subscription_details.subscription` (later ones).
fn invoice_subscription(o: &Value) -> Option<String> {
    json::str_at(o, "/subscription").or_else(|| json::str_at(o, "/parent/subscription_details/subscription")).map(str::to_owned)
}

pub fn parse(body: &[u8]) -> Result<BillingEvent, WebhookError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(NAME, e.to_string()))?;
    let event_id = json::str_at(&v, "/id").ok_or_else(|| bad(NAME, "no `id`"))?.to_owned();
    let event_type = json::str_at(&v, "/type").ok_or_else(|| bad(NAME, "no `type`"))?.to_owned();
    let occurred_at = json::unix_at(&v, "/created").ok_or_else(|| bad(NAME, "no `created` time"))?;
    let o = v.pointer("/data/object").ok_or_else(|| bad(NAME, "no `data.object`"))?;
    let missing = |what: &str| bad(NAME, format!("`{event_type}` without `data.object.{what}`"));
    let change = match event_type.as_str() {
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted"
        | "customer.subscription.paused"
        | "customer.subscription.resumed"
        | "customer.subscription.trial_will_end" => {
            let id = json::str_at(o, "/id").ok_or_else(|| missing("id"))?.to_owned();
            let raw_status = json::str_at(o, "/status").ok_or_else(|| missing("status"))?;
            // The period moved from the subscription to its items in 2025 API versions.
            let period =
                |field: &str| json::unix_at(o, &format!("/{field}")).or_else(|| json::unix_at(o, &format!("/items/data/0/{field}")));
            Change::Subscription(SubscriptionState {
                organization_id: json::organization_at(o, "/metadata/organization_id"),
                external_subscription_id: id,
                external_customer_id: json::str_at(o, "/customer").map(str::to_owned),
                price_id: json::str_at(o, "/items/data/0/price/id").map(str::to_owned),
                status: status(raw_status),
                current_period_start: period("current_period_start"),
                current_period_end: period("current_period_end"),
                cancel_at_period_end: o.pointer("/cancel_at_period_end").and_then(Value::as_bool).unwrap_or(false),
                customer_email: None,
            })
        }
        "invoice.paid" | "invoice.payment_succeeded" => Change::Record(RecordEvent {
            kind: RecordKind::Invoice,
            external_id: json::str_at(o, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            organization_id: json::organization_at(o, "/subscription_details/metadata/organization_id")
                .or_else(|| json::organization_at(o, "/parent/subscription_details/metadata/organization_id")),
            external_subscription_id: invoice_subscription(o),
            external_customer_id: json::str_at(o, "/customer").map(str::to_owned),
            amount_minor: json::amount_at(o, "/amount_paid").ok_or_else(|| missing("amount_paid"))?,
            currency: json::currency_at(o, "/currency").ok_or_else(|| missing("currency"))?,
            period: json::unix_at(o, "/lines/data/0/period/start").zip(json::unix_at(o, "/lines/data/0/period/end")),
            customer_email: json::str_at(o, "/customer_email").map(str::to_owned),
        }),
        "invoice.payment_failed" => match invoice_subscription(o) {
            Some(external_subscription_id) => Change::PaymentFailed { external_subscription_id },
            None => Change::Unknown,
        },
        "charge.refunded" => Change::Record(RecordEvent {
            kind: RecordKind::Refund,
            external_id: json::str_at(o, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            organization_id: json::organization_at(o, "/metadata/organization_id"),
            external_subscription_id: None,
            external_customer_id: json::str_at(o, "/customer").map(str::to_owned),
            amount_minor: json::amount_at(o, "/amount_refunded").ok_or_else(|| missing("amount_refunded"))?,
            currency: json::currency_at(o, "/currency").ok_or_else(|| missing("currency"))?,
            period: None,
            customer_email: json::str_at(o, "/billing_details/email").map(str::to_owned),
        }),
        "customer.updated" => Change::Customer {
            external_customer_id: json::str_at(o, "/id").ok_or_else(|| missing("id"))?.to_owned(),
            email: json::str_at(o, "/email").map(str::to_owned),
        },
        _ => Change::Unknown,
    };
    Ok(BillingEvent { provider: Provider::Stripe, event_id, event_type, occurred_at, change })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, value.parse().unwrap());
        h
    }

    /// Made with stripe-python 16.1 (`WebhookSignature._compute_signature`,
    /// and accepted by its `verify_header` with tolerance 300).
    #[test]
    fn stripe_sdk_vector() {
        let body = br#"{"id":"evt_sdk_vector","type":"invoice.paid"}"#;
        let header = "t=1700000000,v1=0fa74fe1c67e5b034dfc49a899a280047bc45659c562d953c7dcb69a6e604013";
        let now = DateTime::from_timestamp(1700000010, 0).unwrap();
        assert_eq!(verify(b"whsec_sdkvector0123456789", &headers(header), body, now), Ok(()));
        assert_eq!(sign_header(b"whsec_sdkvector0123456789", 1700000000, body), header);
    }

    #[test]
    fn documented_header_shape_with_v0_and_a_rolled_secret() {
        // Stripe's documented example header: t, v1 and a legacy v0.
        let documented = "t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39";
        let now = DateTime::from_timestamp(1492774577, 0).unwrap();
        // Parses, and (not our secret) fails on the signature, not the shape.
        assert_eq!(verify(b"whsec_other", &headers(documented), b"{}", now), Err(WebhookError::BadSignature));
        // Two v1s while a secret rolls: the second one matches.
        let body = br#"{"id":"evt_1"}"#;
        let good = sign_header(b"whsec_new", 1492774577, body);
        let v1 = good.split("v1=").nth(1).unwrap();
        let both = format!("t=1492774577,v1={},v1={v1},v0=00", "ab".repeat(32));
        assert_eq!(verify(b"whsec_new", &headers(&both), body, now), Ok(()));
        assert_eq!(verify(b"whsec_new", &headers(&both), br#"{"id":"evt_2"}"#, now), Err(WebhookError::BadSignature));
        assert!(matches!(verify(b"whsec_new", &headers("t=1492774577"), body, now), Err(WebhookError::MalformedHeader { .. })));
        assert_eq!(
            verify(b"whsec_new", &headers(&good), body, now + chrono::Duration::seconds(301)),
            Err(WebhookError::Stale { skew: 301, window: 300 })
        );
    }
}
