//! The providers' payload parsers, run on a verified delivery's body: any
//! body becomes one `BillingEvent` of that provider or a `BadPayload` with a
//! reason, the same on every run.

use axum::http::{HeaderMap, HeaderValue};
use engagetrack_server::billing::{BillingEvent, Provider, WebhookError, lemonsqueezy, paddle, polar, stripe};

use crate::corpus::fuzz_target;

fuzz_target!("webhook_payloads", property);

fn property(body: &[u8]) {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-timestamp", HeaderValue::from_static("1764410400"));
    headers.insert("x-event-name", HeaderValue::from_static("subscription_updated"));
    let parsers: [(Provider, &dyn Fn() -> Result<BillingEvent, WebhookError>); 4] = [
        (Provider::Stripe, &|| stripe::parse(body)),
        (Provider::Paddle, &|| paddle::parse(body)),
        (Provider::Lemonsqueezy, &|| lemonsqueezy::parse(&headers, body)),
        (Provider::Polar, &|| polar::parse("msg_fuzz", &headers, body)),
    ];
    for (provider, parse) in parsers {
        let parsed = parse();
        assert_eq!(parsed, parse(), "{provider:?}: parsing is deterministic");
        match parsed {
            Ok(event) => {
                assert_eq!(event.provider, provider);
                assert!(!event.event_id.is_empty() && !event.event_type.is_empty(), "{event:?}");
            }
            Err(WebhookError::BadPayload { reason, .. }) => assert!(!reason.trim().is_empty(), "{provider:?}: no reason"),
            Err(other) => panic!("{provider:?}: a payload error that is not BadPayload: {other:?}"),
        }
    }
}
