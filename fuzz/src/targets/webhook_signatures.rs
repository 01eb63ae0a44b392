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

    /// Every header of the scheme, one at a time set to `value` (when it can
    /// be a header value at all), by name.
    fn hostile(self, body: &[u8], value: &[u8]) -> Vec<(&'static str, HeaderMap)> {
        let names: &[&'static str] = match self {
            Scheme::Stripe => &["stripe-signature"],
            Scheme::Paddle => &["paddle-signature"],
            Scheme::Lemonsqueezy => &["x-signature"],
            Scheme::Polar => &["webhook-id", "webhook-timestamp", "webhook-signature"],
        };
        let Ok(value) = HeaderValue::from_bytes(value) else { return Vec::new() };
        names
            .iter()
            .map(|&name| {
                let mut h = self.signed(body);
                h.insert(HeaderName::from_static(name), value.clone());
                (name, h)
            })
            .collect()
    }

    /// The signature itself (hex, or Polar's base64), as `signed` sends it.
    fn tag(self, body: &[u8]) -> String {
        let header = |name: &str| self.signed(body)[name].to_str().expect("ASCII").to_owned();
        match self {
            Scheme::Stripe => header("stripe-signature").split_once("v1=").expect("a v1").1.to_owned(),
            Scheme::Paddle => header("paddle-signature").split_once("h1=").expect("an h1").1.to_owned(),
            Scheme::Lemonsqueezy => header("x-signature"),
            Scheme::Polar => header("webhook-signature").split_once(',').expect("v1,").1.to_owned(),
        }
    }

    /// Whether a header set to `value` may verify: only when it still carries
    /// the genuine signature (the fuzzer can learn it from the comparison, as
    /// it did for Polar with tabs before `v1,`), or for Polar the genuine id,
    /// or the genuine timestamp with spaces around it (which Polar trims).
    fn may_verify(self, name: &str, value: &str, body: &[u8]) -> bool {
        match name {
            "webhook-id" => value == "msg_fuzz",
            "webhook-timestamp" => value.trim() == T.to_string(),
            // hex decoding takes either case
            _ => value.to_ascii_lowercase().contains(&self.tag(body).to_ascii_lowercase()),
        }
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
        let text = String::from_utf8_lossy(input);
        for (name, hostile) in scheme.hostile(body, input) {
            match scheme.verify(scheme.secret(), &hostile, body) {
                Ok(()) => assert!(scheme.may_verify(name, &text, body), "{scheme:?}: hostile {name} {text:?} verified"),
                Err(e) => assert!(!e.to_string().trim().is_empty()),
            }
        }
    }
}
