//! Polar: `POST /v1/checkouts/` (products, success URL, our metadata, which
//! Polar copies onto the subscription) and `POST /v1/customer-sessions/`,
//! whose answer carries the customer-portal URL.

use reqwest::Method;
use serde_json::{Value, json};

use super::{ApiBody, ApiRequest, checked_url, field};
use crate::billing::checkout::{CheckoutRequest, PaymentApiError, PortalRequest};

pub fn checkout(r: &CheckoutRequest) -> ApiRequest {
    let mut body = json!({
        "products": [r.price_id],
        "success_url": r.success_url,
        "return_url": r.cancel_url,
        "metadata": {"organization_id": r.organization_id.to_string()},
    });
    match (&r.external_customer_id, &r.customer_email) {
        (Some(customer), _) => body["customer_id"] = json!(customer),
        (None, Some(email)) => body["customer_email"] = json!(email),
        (None, None) => {}
    }
    ApiRequest { method: Method::POST, path: "/v1/checkouts/".into(), body: ApiBody::Json(body, "application/json"), headers: Vec::new() }
}

pub fn checkout_answer(answer: &Value) -> Result<(String, String), String> {
    Ok((field(answer, "/id")?, checked_url(field(answer, "/url")?)?))
}

pub fn portal(r: &PortalRequest) -> Result<ApiRequest, PaymentApiError> {
    let customer = r
        .external_customer_id
        .clone()
        .ok_or_else(|| PaymentApiError::NotPossible("no Polar customer yet: start a checkout first".into()))?;
    Ok(ApiRequest {
        method: Method::POST,
        path: "/v1/customer-sessions/".into(),
        body: ApiBody::Json(json!({"customer_id": customer}), "application/json"),
        headers: Vec::new(),
    })
}

pub fn portal_answer(answer: &Value) -> Result<String, String> {
    checked_url(field(answer, "/customer_portal_url")?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn checkout_and_session_shapes() {
        let org = Uuid::new_v4();
        let r = super::super::checkout_request(org, "0f6e7f4c-prod");
        let ApiBody::Json(body, _) = checkout(&r).body else { panic!("json") };
        assert_eq!(body["products"][0], "0f6e7f4c-prod");
        assert_eq!(body["metadata"]["organization_id"], org.to_string());
        assert_eq!(body["customer_email"], "ann@example.com");
        let answer =
            json!({"token": "polar_cst_x", "customer_portal_url": "https://polar.sh/acme/portal?customer_session_token=polar_cst_x"});
        assert!(portal_answer(&answer).unwrap().contains("customer_session_token"));
    }
}
