//! Stripe: `POST /v1/checkout/sessions` (mode `subscription`) and
//! `POST /v1/billing_portal/sessions`, form-encoded with bracketed keys as
//! Stripe's API takes them; answers are the session objects.

use reqwest::Method;
use serde_json::Value;

use super::{ApiBody, ApiRequest, checked_url, field};
use crate::billing::checkout::{CheckoutRequest, PaymentApiError, PortalRequest};

pub fn checkout(r: &CheckoutRequest) -> ApiRequest {
    let org = r.organization_id.to_string();
    let mut form = vec![
        ("mode".to_owned(), "subscription".to_owned()),
        ("line_items[0][price]".to_owned(), r.price_id.clone()),
        ("line_items[0][quantity]".to_owned(), "1".to_owned()),
        ("success_url".to_owned(), r.success_url.clone()),
        ("cancel_url".to_owned(), r.cancel_url.clone()),
        ("client_reference_id".to_owned(), org.clone()),
        ("metadata[organization_id]".to_owned(), org.clone()),
        // Copied onto the subscription, so its events name the organisation.
        ("subscription_data[metadata][organization_id]".to_owned(), org),
    ];
    match (&r.external_customer_id, &r.customer_email) {
        (Some(customer), _) => form.push(("customer".to_owned(), customer.clone())),
        (None, Some(email)) => form.push(("customer_email".to_owned(), email.clone())),
        (None, None) => {}
    }
    ApiRequest {
        method: Method::POST,
        path: "/v1/checkout/sessions".into(),
        body: ApiBody::Form(form),
        headers: vec![("Idempotency-Key", r.idempotency_key.to_string())],
    }
}

pub fn checkout_answer(answer: &Value) -> Result<(String, String), String> {
    Ok((field(answer, "/id")?, checked_url(field(answer, "/url")?)?))
}

pub fn portal(r: &PortalRequest) -> Result<ApiRequest, PaymentApiError> {
    let customer = r
        .external_customer_id
        .clone()
        .ok_or_else(|| PaymentApiError::NotPossible("no Stripe customer yet: start a checkout first".into()))?;
    Ok(ApiRequest {
        method: Method::POST,
        path: "/v1/billing_portal/sessions".into(),
        body: ApiBody::Form(vec![("customer".into(), customer), ("return_url".into(), r.return_url.clone())]),
        headers: Vec::new(),
    })
}

pub fn portal_answer(answer: &Value) -> Result<String, String> {
    checked_url(field(answer, "/url")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn the_checkout_carries_the_organisation_on_session_and_subscription() {
        let org = Uuid::new_v4();
        let r = CheckoutRequest { success_url: "https://app.example/billing?checkout=done".into(), ..super::super::checkout_request(org, "price_growth") };
        let request = checkout(&r);
        let ApiBody::Form(form) = &request.body else { panic!("a form") };
        let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("mode"), Some("subscription"));
        assert_eq!(get("line_items[0][price]"), Some("price_growth"));
        assert_eq!(get("subscription_data[metadata][organization_id]"), Some(org.to_string().as_str()));
        assert_eq!(get("customer_email"), Some("ann@example.com"));
        assert_eq!(get("customer"), None);
        assert_eq!(request.headers, vec![("Idempotency-Key", Uuid::nil().to_string())]);
        let answer =
            serde_json::json!({"id": "cs_test_1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/cs_test_1"});
        assert_eq!(checkout_answer(&answer).unwrap().0, "cs_test_1");
        assert!(portal(&PortalRequest { external_customer_id: None, external_subscription_id: None, return_url: "x".into() }).is_err());
    }
}
