//! Parsed credentials: an [`Email`] is a well-formed, lower-cased address; a
//! [`NewPassword`] passed the length and strength policy. Holding one proves
//! the check was made.

use std::fmt;

pub const PASSWORD_MIN_CHARS: usize = 10;
/// bcrypt reads at most 72 bytes; longer inputs would be silently cut.
pub const PASSWORD_MAX_BYTES: usize = 72;
/// zxcvbn's score (0–4) a new password must reach: 3 is "safely unguessable"
/// against an offline attack on a slow hash, and rejects dictionary words,
/// common and breached patterns (keyboard walks, dates, l33t, repeats).
pub const PASSWORD_MIN_SCORE: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("`email` is not a valid email address")]
    BadEmail,
    #[error("the password must be at least {PASSWORD_MIN_CHARS} characters")]
    PasswordTooShort,
    #[error("the password must be at most {PASSWORD_MAX_BYTES} bytes")]
    PasswordTooLong,
    #[error("the password is too easy to guess{0}")]
    PasswordTooWeak(String),
}

#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, CredentialError> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@').ok_or(CredentialError::BadEmail)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && email.len() <= 254
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
            && !local.contains('@');
        if ok { Ok(Self(email)) } else { Err(CredentialError::BadEmail) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Logs carry the domain only.
        write!(f, "Email(…@{})", self.0.rsplit('@').next().unwrap_or_default())
    }
}

/// A password chosen by a user that meets the policy. `Debug` hides it.
pub struct NewPassword(String);

impl NewPassword {
    /// `context` holds what the user typed elsewhere (email, name): a password
    /// built from them is weak.
    pub fn parse(raw: &str, email: &Email, name: Option<&str>) -> Result<Self, CredentialError> {
        if raw.chars().count() < PASSWORD_MIN_CHARS {
            return Err(CredentialError::PasswordTooShort);
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(CredentialError::PasswordTooLong);
        }
        // "ada.lovelace" is also typed as "adalovelace".
        let local_joined: String = email.local_part().chars().filter(|c| c.is_alphanumeric()).collect();
        let name_joined: String = name.unwrap_or_default().chars().filter(|c| c.is_alphanumeric()).collect();
        let mut context = vec![email.as_str(), email.local_part(), &local_joined, &name_joined, "engagetrack"];
        context.extend(name.into_iter().flat_map(|n| n.split_whitespace()));
        let estimate = zxcvbn::zxcvbn(raw, &context);
        if u8::from(estimate.score()) < PASSWORD_MIN_SCORE {
            let hint = estimate
                .feedback()
                .and_then(|f| f.warning().map(|w| format!(": {w}")))
                .unwrap_or_default();
            return Err(CredentialError::PasswordTooWeak(hint));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("  Ada.Lovelace@Example.COM ").unwrap()
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(email().as_str(), "ada.lovelace@example.com");
        assert!(!format!("{:?}", email()).contains("ada"));
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "ada@@example.com", "a da@example.com", "ada@.com", "<a>@example.com"] {
            assert_eq!(Email::parse(bad), Err(CredentialError::BadEmail), "{bad}");
        }
    }

    #[test]
    fn short_long_and_weak_passwords_are_rejected() {
        let e = email();
        assert_eq!(NewPassword::parse("short", &e, None).unwrap_err(), CredentialError::PasswordTooShort);
        assert_eq!(NewPassword::parse(&"x".repeat(73), &e, None).unwrap_err(), CredentialError::PasswordTooLong);
        for weak in ["password123", "qwertyuiop", "1234567890", "P@ssw0rd2024", "adalovelace1", "aaaaaaaaaaaa"] {
            assert!(
                matches!(NewPassword::parse(weak, &e, Some("Ada Lovelace")), Err(CredentialError::PasswordTooWeak(_))),
                "{weak} should be weak"
            );
        }
    }

    #[test]
    fn strong_passwords_pass_and_are_hidden_in_debug() {
        let p = NewPassword::parse("correct horse battery staple", &email(), None).unwrap();
        assert_eq!(p.expose(), "correct horse battery staple");
        assert_eq!(format!("{p:?}"), "NewPassword(…)");
    }
}
