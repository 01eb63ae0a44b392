//! Accounts: passwords (bcrypt), single-use mailed tokens for email
//! verification and password reset, and the personal organisation a new
//! account starts with.

use chrono::{DateTime, Duration, Utc};
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::auth::credentials::Email;
use crate::auth::opaque::{self, OpaqueToken};

pub const BCRYPT_COST: u32 = 12;
pub const VERIFY_EMAIL_TTL: Duration = Duration::hours(48);
pub const RESET_PASSWORD_TTL: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordHashError(#[from] bcrypt::BcryptError);

pub fn hash_password(password: &str) -> Result<String, PasswordHashError> {
    Ok(bcrypt::hash(password, BCRYPT_COST)?)
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// bcrypt is slow on purpose (~0.2 s); keep it off the async workers.
pub async fn hash_password_blocking(password: String) -> Result<String, PasswordHashError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .unwrap_or_else(|e| Err(PasswordHashError(bcrypt::BcryptError::Io(std::io::Error::other(e.to_string())))))
}

/// Checks `password` against `hash`; with no hash (unknown account, or an
/// OAuth-only account) a dummy check still runs, so timing tells nothing.
pub async fn verify_password_blocking(password: String, hash: Option<String>) -> bool {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash_password(&random_password()).unwrap_or_default());
    tokio::task::spawn_blocking(move || {
        let ok = verify_password(&password, hash.as_deref().unwrap_or(DUMMY.as_str()));
        ok && hash.is_some()
    })
    .await
    .unwrap_or(false)
}

/// A password for generated accounts: 20 characters, about 119 bits.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::VerifyEmail => "verify_email",
            TokenPurpose::ResetPassword => "reset_password",
        }
    }

    fn ttl(self) -> Duration {
        match self {
            TokenPurpose::VerifyEmail => VERIFY_EMAIL_TTL,
            TokenPurpose::ResetPassword => RESET_PASSWORD_TTL,
        }
    }
}

/// Makes a mailed token; earlier unused tokens of the same purpose die, so
/// only the newest link works.
pub async fn issue_email_token(db: &impl GenericClient, user: Uuid, purpose: TokenPurpose, now: DateTime<Utc>) -> Result<String, tokio_postgres::Error> {
    db.execute(
        "UPDATE email_tokens SET used_at = $3 WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        &[&user, &purpose.as_str(), &now],
    )
    .await?;
    let t = OpaqueToken::generate("");
    db.execute(
        "INSERT INTO email_tokens (token_hash, user_id, purpose, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&t.hash, &user, &purpose.as_str(), &(now + purpose.ttl()), &now],
    )
    .await?;
    Ok(t.token)
}

/// Uses a mailed token up: the user it was for, if it is valid, unexpired and unused.
pub async fn consume_email_token(db: &impl GenericClient, token: &str, purpose: TokenPurpose, now: DateTime<Utc>) -> Result<Option<Uuid>, tokio_postgres::Error> {
    Ok(db
        .query_opt(
            "UPDATE email_tokens SET used_at = $3
             WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3
             RETURNING user_id",
            &[&opaque::hash(token), &purpose.as_str(), &now],
        )
        .await?
        .map(|r| r.get(0)))
}

/// A slug from a name: lower-case ASCII letters, digits and dashes.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug: String = slug.chars().take(40).collect();
    if slug.is_empty() { "team".into() } else { slug }
}

/// A new account's own organisation, with the account as its owner.
pub async fn create_personal_organization(db: &impl GenericClient, user: Uuid, email: &Email, name: Option<&str>) -> Result<Uuid, tokio_postgres::Error> {
    let base = slugify(name.unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("team")));
    let suffix = &Uuid::new_v4().simple().to_string()[..6];
    let org = Uuid::new_v4();
    let display = format!("{}'s sites", name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| email.as_str().split('@').next().unwrap_or("My")));
    db.execute(
        "INSERT INTO organizations (id, name, slug) VALUES ($1, $2, $3)",
        &[&org, &display.chars().take(200).collect::<String>(), &format!("{base}-{suffix}")],
    )
    .await?;
    db.execute("INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'owner')", &[&org, &user]).await?;
    Ok(org)
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

    #[test]
    fn slugs_are_url_safe() {
        assert_eq!(slugify("Ada Lovelace's Team!"), "ada-lovelace-s-team");
        assert_eq!(slugify("  --  "), "team");
        assert_eq!(slugify("Ünïcode Ltd"), "n-code-ltd");
    }

    #[tokio::test]
    async fn unknown_accounts_cost_a_bcrypt_check_too() {
        assert!(!verify_password_blocking("x".into(), None).await);
        let h = hash_password("right password").unwrap();
        assert!(verify_password_blocking("right password".into(), Some(h)).await);
    }
}
