//! LemonSqueezy: `POST /v1/checkouts` (JSON:API, the store and variant as
//! relationships, our id in `checkout_data.custom`, which its webhooks send
//! back as `meta.custom_data`), and the subscription's signed
//! `urls.customer_portal` from `GET /v1/subscriptions/{id}`.

use reqwest::Method;
use serde_json::{Value, json};

use super::{ApiBody, ApiRequest, checked_url, field};
use crate::billing::checkout::{CheckoutRequest, PaymentApiError, PortalRequest};

const JSON_API: &str = "application/vnd.api+json";

pub fn checkout(r: &CheckoutRequest, store_id: Option<&str>) -> Result<ApiRequest, PaymentApiError> {
    let store =
        store_id.ok_or_else(|| PaymentApiError::NotPossible("LemonSqueezy checkout needs ENGAGETRACK_LEMONSQUEEZY_STORE_ID".into()))?;
    let mut checkout_data = json!({"custom": {"organization_id": r.organization_id.to_string()}});
    if let Some(email) = &r.customer_email {
        checkout_data["email"] = json!(email);
    }
    let body = json!({"data": {
        "type": "checkouts",
        "attributes": {"checkout_data": checkout_data, "product_options": {"redirect_url": r.success_url}},
        "relationships": {
            "store": {"data": {"type": "stores", "id": store}},
            "variant": {"data": {"type": "variants", "id": r.price_id}},
        },
    }});
    Ok(ApiRequest {
        method: Method::POST,
        path: "/v1/checkouts".into(),
        body: ApiBody::Json(body, JSON_API),
        headers: vec![("Accept", JSON_API.into())],
    })
}

pub fn checkout_answer(answer: &Value) -> Result<(String, String), String> {
    Ok((field(answer, "/data/id")?, checked_url(field(answer, "/data/attributes/url")?)?))
}

pub fn portal(r: &PortalRequest) -> Result<ApiRequest, PaymentApiError> {
    let id = r
        .external_subscription_id
        .as_deref()
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| PaymentApiError::NotPossible("no LemonSqueezy subscription yet: start a checkout first".into()))?;
    Ok(ApiRequest {
        method: Method::GET,
        path: format!("/v1/subscriptions/{id}"),
        body: ApiBody::None,
        headers: vec![("Accept", JSON_API.into())],
    })
}

pub fn portal_answer(answer: &Value) -> Result<String, String> {
    checked_url(field(answer, "/data/attributes/urls/customer_portal")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn json_api_shapes() {
        let org = Uuid::new_v4();
        let r = super::super::checkout_request(org, "654321");
        assert!(checkout(&r, None).is_err(), "no store, no checkout");
        let ApiBody::Json(body, content_type) = checkout(&r, Some("12345")).unwrap().body else { panic!("json") };
        assert_eq!(content_type, JSON_API);
        assert_eq!(body["data"]["relationships"]["variant"]["data"]["id"], "654321");
        assert_eq!(body["data"]["relationships"]["store"]["data"]["id"], "12345");
        assert_eq!(body["data"]["attributes"]["checkout_data"]["custom"]["organization_id"], org.to_string());
        let no_id = PortalRequest { external_customer_id: None, external_subscription_id: Some("../x".into()), return_url: String::new() };
        assert!(portal(&no_id).is_err());
    }
}
