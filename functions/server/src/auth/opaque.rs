//! Opaque bearer secrets (email links, refresh tokens, invitations, API keys,
//! share links): 32 random bytes shown once as base64url; only their SHA-256
//! is stored, so a database dump cannot be replayed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A freshly made secret and the hash to store for it.
pub struct OpaqueToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl OpaqueToken {
    /// `prefix` marks what the token is for (`etk_` for API keys), so a leaked
    /// one is recognisable by secret scanners.
    pub fn generate(prefix: &str) -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = hash(&token);
        Self { token, hash }
    }
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = OpaqueToken::generate("etk_");
        let b = OpaqueToken::generate("etk_");
        assert!(a.token.starts_with("etk_") && a.token.len() == 4 + 43);
        assert_ne!(a.token, b.token);
        assert_eq!(a.hash, hash(&a.token));
        assert_eq!(a.hash.len(), 32);
    }
}
