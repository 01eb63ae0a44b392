//! The one-click unsubscribe token: which subscription a link stops, signed
//! with HMAC-SHA256 under the `mail-link-key` secret, so it works without a
//! session and cannot be made for someone else's subscription.
//!
//! Layout (then base64url without padding):
//! `[version 1][site id 16][user id 16][kind 1][HMAC-SHA256 of the 34 bytes before, 32]`.
//! It never expires: stopping mail must work from an old message too, and
//! the only thing it can do is that.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::Frequency;

/// The secret the tokens are signed with (32 random bytes, hex, in the key store).
pub const MAIL_LINK_KEY: &str = "mail-link-key";

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 16 + 1;
const TAG_LEN: usize = 32;

/// What a link stops: one report frequency, or the spike alerts, of one member for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Report(Frequency),
    SpikeAlert,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Report(Frequency::Weekly) => 1,
            Kind::Report(Frequency::Monthly) => 2,
            Kind::SpikeAlert => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Report(Frequency::Weekly),
            2 => Kind::Report(Frequency::Monthly),
            3 => Kind::SpikeAlert,
            _ => return None,
        })
    }

    /// How people read it: "the weekly report", "traffic-spike alerts".
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Report(Frequency::Weekly) => "the weekly report",
            Kind::Report(Frequency::Monthly) => "the monthly report",
            Kind::SpikeAlert => "traffic-spike alerts",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub site_id: Uuid,
    pub user_id: Uuid,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token of ours at all (cut short, not base64url, unknown version or kind): a 400.
    #[error("the unsubscribe token is malformed (cut short or altered in transit?); open the link from the mail again")]
    Garbled,
    /// Well formed, but not signed by us: a 403.
    #[error("the unsubscribe token's signature does not match; it was not issued by this server")]
    Forged,
    #[error("the secret store has no `{MAIL_LINK_KEY}`: add 32 random bytes in hex (e.g. `openssl rand -hex 32`)")]
    NoKey,
}

/// The signing key, read from the secret store.
#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// `None` (no such secret) is [`TokenError::NoKey`]; an empty value counts as none.
    pub fn new(bytes: Option<&[u8]>) -> Result<Self, TokenError> {
        bytes.filter(|b| !b.is_empty()).map(|b| Self(b.to_vec())).ok_or(TokenError::NoKey)
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error arm cannot happen.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(body);
        mac
    }

    pub fn sign(&self, s: &Subscription) -> String {
        let mut bytes = Vec::with_capacity(BODY_LEN + TAG_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(s.site_id.as_bytes());
        bytes.extend_from_slice(s.user_id.as_bytes());
        bytes.push(s.kind.byte());
        let tag = self.mac(&bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The subscription a token names, if this key signed it (compared in constant time).
    pub fn verify(&self, token: &str) -> Result<Subscription, TokenError> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError::Garbled)?;
        if bytes.len() != BODY_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(TokenError::Garbled);
        }
        let (body, tag) = bytes.split_at(BODY_LEN);
        let kind = Kind::from_byte(body[BODY_LEN - 1]).ok_or(TokenError::Garbled)?;
        self.mac(body).verify_slice(tag).map_err(|_| TokenError::Forged)?;
        let id = |range: std::ops::Range<usize>| Uuid::from_slice(&body[range]).map_err(|_| TokenError::Garbled);
        Ok(Subscription { site_id: id(1..17)?, user_id: id(17..33)?, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(kind: Kind) -> Subscription {
        Subscription { site_id: Uuid::from_u128(0x1234), user_id: Uuid::from_u128(0xabcd), kind }
    }

    #[test]
    fn a_signed_token_names_its_subscription() {
        let key = LinkKey::new(Some(b"k1")).expect("a key");
        for kind in [Kind::Report(Frequency::Weekly), Kind::Report(Frequency::Monthly), Kind::SpikeAlert] {
            let token = key.sign(&sub(kind));
            assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{token}");
            assert_eq!(key.verify(&token), Ok(sub(kind)));
        }
    }

    #[test]
    fn tampered_forged_and_garbled_tokens_are_refused() {
        let key = LinkKey::new(Some(b"k1")).expect("a key");
        let token = key.sign(&sub(Kind::Report(Frequency::Weekly)));
        // Another key's token: forged.
        let other = LinkKey::new(Some(b"k2")).expect("a key").sign(&sub(Kind::Report(Frequency::Weekly)));
        assert_eq!(key.verify(&other), Err(TokenError::Forged));
        // One bit of the user id flipped, or the kind changed from weekly to monthly: the signature no longer matches.
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        bytes[20] ^= 1;
        assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&bytes)), Err(TokenError::Forged));
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        bytes[33] = 2;
        assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&bytes)), Err(TokenError::Forged));
        // Cut short, not base64, unknown version or kind: garbled.
        for bad in [&token[..token.len() - 4], "not a token!", "", &format!("{token}AA")] {
            assert_eq!(key.verify(bad), Err(TokenError::Garbled), "{bad:?}");
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        bytes[0] = 9;
        assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&bytes)), Err(TokenError::Garbled));
        bytes[0] = VERSION;
        bytes[33] = 7;
        assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&bytes)), Err(TokenError::Garbled));
    }

    #[test]
    fn no_key_no_links() {
        assert_eq!(LinkKey::new(None).err(), Some(TokenError::NoKey));
        assert_eq!(LinkKey::new(Some(b"")).err(), Some(TokenError::NoKey));
        assert_eq!(format!("{:?}", LinkKey::new(Some(b"secret")).expect("a key")), "LinkKey(..)");
    }
}
