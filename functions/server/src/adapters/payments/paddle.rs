//! Paddle Billing: `POST /transactions` with the price and our `custom_data`
//! (Paddle opens it at the account's default payment link and answers its
//! `checkout.url`), and `POST /customers/{id}/portal-sessions`. JSON, in
//! Paddle's `{"data": …, "meta": …}` envelope.

use reqwest::Method;
use serde_json::{Value, json};

use super::{ApiBody, ApiRequest, checked_url, field};
use crate::billing::checkout::{CheckoutRequest, PaymentApiError, PortalRequest};

pub fn checkout(r: &CheckoutRequest) -> ApiRequest {
    let mut body = json!({
        "items": [{"price_id": r.price_id, "quantity": 1}],
        "custom_data": {"organization_id": r.organization_id.to_string()},
        "collection_mode": "automatic",
    });
    if let Some(customer) = &r.external_customer_id {
        body["customer_id"] = json!(customer);
    }
    ApiRequest { method: Method::POST, path: "/transactions".into(), body: ApiBody::Json(body, "application/json"), headers: Vec::new() }
}

pub fn checkout_answer(answer: &Value) -> Result<(String, String), String> {
    let id = field(answer, "/data/id")?;
    let url = field(answer, "/data/checkout/url").map_err(|_| {
        "Paddle made the transaction without a checkout URL: set a default payment link (Checkout › Checkout settings)".to_owned()
    })?;
    Ok((id, checked_url(url)?))
}

pub fn portal(r: &PortalRequest) -> Result<ApiRequest, PaymentApiError> {
    let customer = r
        .external_customer_id
        .as_deref()
        .ok_or_else(|| PaymentApiError::NotPossible("no Paddle customer yet: start a checkout first".into()))?;
    let body = json!({"subscription_ids": r.external_subscription_id.iter().collect::<Vec<_>>()});
    Ok(ApiRequest {
        method: Method::POST,
        path: format!("/customers/{}/portal-sessions", urlencoding(customer)),
        body: ApiBody::Json(body, "application/json"),
        headers: Vec::new(),
    })
}

pub fn portal_answer(answer: &Value) -> Result<String, String> {
    checked_url(field(answer, "/data/urls/general/overview")?)
}

/// Provider ids are `ctm_…` words; anything else is escaped, never spliced.
fn urlencoding(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn transaction_and_portal_shapes() {
        let org = Uuid::new_v4();
        let r = CheckoutRequest {
            customer_email: None,
            external_customer_id: Some("ctm_01abc".into()),
            ..super::super::checkout_request(org, "pri_01growth")
        };
        let ApiBody::Json(body, _) = checkout(&r).body else { panic!("json") };
        assert_eq!(body["items"][0]["price_id"], "pri_01growth");
        assert_eq!(body["custom_data"]["organization_id"], org.to_string());
        assert_eq!(body["customer_id"], "ctm_01abc");
        let answer = json!({"data": {"id": "txn_01", "status": "ready", "checkout": {"url": null}}, "meta": {"request_id": "r"}});
        assert!(checkout_answer(&answer).unwrap_err().contains("default payment link"));
        let p = portal(&PortalRequest {
            external_customer_id: Some("ctm/../x".into()),
            external_subscription_id: Some("sub_01".into()),
            return_url: String::new(),
        })
        .unwrap();
        assert_eq!(p.path, "/customers/ctm%2F..%2Fx/portal-sessions");
    }
}
