//! Accounts: the parts the foundation needs (creating a user with a bcrypt
//! password). Sign-up, login and tokens come with the Dashboard API issue.

pub const BCRYPT_COST: u32 = 12;

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordHashError(#[from] bcrypt::BcryptError);

pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    Ok(bcrypt::hash(password, BCRYPT_COST)?)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// A password for generated accounts: 20 characters, about 119 bits.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_and_uses_cost_12() {
        let pw = random_password();
        let hash = hash_password(&pw).unwrap();
        assert!(hash.starts_with("$2b$12$"));
        assert!(verify_password(&pw, &hash));
        assert!(!verify_password("wrong", &hash));
    }
}
