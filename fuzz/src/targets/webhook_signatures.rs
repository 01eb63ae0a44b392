//! The four providers' webhook signature schemes: a delivery signed for a body
//! verifies, and is refused with that body changed by one byte (or one byte
//! more or less) and under another secret; the input as each signature header
//! (hostile text) is refused with a reason, never accepted.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use engagetrack_server::billing::{WebhookError, lemonsqueezy, paddle, polar, stripe};

use super::signed_batch::one_byte_changes;
use crate::corpus::fuzz_target;

fuzz_target!("webhook_signatures", property);

const T: i64 = 1_764_410_400;
/// Polar's secret in the Standard Webhooks form: `whsec_` and base64.
const POLAR_SECRET: &[u8] = b"whsec_ZnV6emVyLXBvbGFyLXNlY3JldA==";

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(T, 0).expect("a valid time")
}

#[derive(Clone, Copy, Debug)]
enum Scheme {
    Stripe,
    Paddle,
    Lemonsqueezy,
    Polar,
}

const SCHEMES: [Scheme; 4] = [Scheme::Stripe, Scheme::Paddle, Scheme::Lemonsqueezy, Scheme::Polar];

impl Scheme {
    fn secret(self) -> &'static [u8] {
        match self {
            Scheme::Stripe => b"whsec_fuzzer-stripe-secret",
            Scheme::Paddle => b"pdl_ntfset_fuzzer-paddle-secret",
            Scheme::Lemonsqueezy => b"fuzzer-lemonsqueezy-secret",
            Scheme::Polar => POLAR_SECRET,
        }
    }

    /// The headers the provider would send with `body`.
    fn signed(self, body: &[u8]) -> HeaderMap {
        match self {
            Scheme::Stripe => headers(&[("stripe-signature", stripe::sign_header(self.secret(), T, body).as_bytes())]),
            Scheme::Paddle => headers(&[("paddle-signature", paddle::sign_header(self.secret(), T, body).as_bytes())]),
            Scheme::Lemonsqueezy => headers(&[("x-signature", lemonsqueezy::sign_header(self.secret(), body).as_bytes())]),
            Scheme::Polar => {
                let signature = polar::sign(self.secret(), "msg_fuzz", T, body).expect("the secret decodes");
                headers(&[
                    ("webhook-id", b"msg_fuzz"),
                    ("webhook-timestamp", T.to_string().as_bytes()),
                    ("webhook-signature", signature.as_bytes()),
                ])
            }
        }
    }

    /// Every header of the scheme, one at a time set to `value`.
    fn hostile(self, body: &[u8], value: &[u8]) -> Vec<HeaderMap> {
        let names: &[&str] = match self {
            Scheme::Stripe => &["stripe-signature"],
            Scheme::Paddle => &["paddle-signature"],
            Scheme::Lemonsqueezy => &["x-signature"],
            Scheme::Polar => &["webhook-id", "webhook-timestamp", "webhook-signature"],
        };
        names
            .iter()
            .map(|name| {
                let mut h = self.signed(body);
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    h.insert(HeaderName::from_static(name), v);
                }
                h
            })
            .collect()
    }

    fn verify(self, secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        match self {
            Scheme::Stripe => stripe::verify(secret, headers, body, now()),
            Scheme::Paddle => paddle::verify(secret, headers, body, now()),
            Scheme::Lemonsqueezy => lemonsqueezy::verify(secret, headers, body),
            Scheme::Polar => polar::verify(secret, headers, body, now()).map(drop),
        }
    }
}

fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
    pairs.iter().map(|(name, value)| (HeaderName::from_static(name), HeaderValue::from_bytes(value).expect("a header value"))).collect()
}

fn property(input: &[u8]) {
    for scheme in SCHEMES {
        let signed = scheme.signed(input);
        assert_eq!(scheme.verify(scheme.secret(), &signed, input), Ok(()), "{scheme:?}: the body it was signed for");
        for changed in one_byte_changes(input) {
            assert_eq!(scheme.verify(scheme.secret(), &signed, &changed), Err(WebhookError::BadSignature), "{scheme:?}: a changed body");
        }
        assert_eq!(scheme.verify(b"another-secret", &signed, input), Err(WebhookError::BadSignature), "{scheme:?}: another secret");
        // The input as a header, over a body it cannot have signed.
        let body = b"{\"id\":\"evt_fuzz\"}";
        for hostile in scheme.hostile(body, input) {
            if hostile == scheme.signed(body) {
                continue; // the input was the genuine header itself
            }
            match scheme.verify(scheme.secret(), &hostile, body) {
                Ok(()) => panic!("{scheme:?}: hostile header {:?} verified", String::from_utf8_lossy(input)),
                Err(e) => assert!(!e.to_string().trim().is_empty()),
            }
        }
    }
}
