//! SMTP adapter of the mail transport port ([`crate::mail::MailTransport`]),
//! on `lettre` with rustls (ring) and the public roots, or the roots of
//! `ENGAGETRACK_SMTP_CA_FILE`.
//!
//! `ENGAGETRACK_SMTP_URL` says where and how:
//! - `smtp://[user@]host[:port]`: STARTTLS, required (port 587 by default);
//! - `smtps://[user@]host[:port]`: TLS from the first byte (port 465);
//! - `smtp://host:port?tls=none`: plaintext, for a relay on loopback or a
//!   private network only (no AUTH is sent over it).
//!
//! The user name is the URL's; the password is the secret store's
//! `smtp-password`, never the URL's. `ENGAGETRACK_MAIL_FROM` is the sender.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::mail::outbox::Claimed;
use crate::mail::{DeliveryError, MailTransport};

/// The secret-store name of the SMTP password.
pub const SMTP_PASSWORD: &str = "smtp-password";

/// One read or write on the connection; the whole send is bounded by the worker.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS after the greeting; a server without it is refused.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// `?tls=none`: plaintext, loopback and private relays only.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    /// The `From:` of every mail, e.g. `EngageTrack <no-reply@example.com>`.
    pub from: String,
    /// PEM roots to verify the server with instead of the public ones.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("ENGAGETRACK_SMTP_URL: {0}")]
    Url(String),
    #[error("ENGAGETRACK_MAIL_FROM must be set (a mailbox such as `EngageTrack <no-reply@example.com>`) when ENGAGETRACK_SMTP_URL is")]
    MissingFrom,
    #[error("ENGAGETRACK_MAIL_FROM is not a mailbox: {0}")]
    From(String),
    #[error("ENGAGETRACK_SMTP_CA_FILE {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

impl SmtpSettings {
    /// `None` when `ENGAGETRACK_SMTP_URL` is unset: mail stays in the outbox.
    pub fn from_env() -> Result<Option<Self>, SmtpConfigError> {
        let var = |name| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let Some(url) = var("ENGAGETRACK_SMTP_URL") else {
            return Ok(None);
        };
        let from = var("ENGAGETRACK_MAIL_FROM").ok_or(SmtpConfigError::MissingFrom)?;
        Self::parse(&url, &from, var("ENGAGETRACK_SMTP_CA_FILE").map(PathBuf::from)).map(Some)
    }

    pub fn parse(url: &str, from: &str, ca_file: Option<PathBuf>) -> Result<Self, SmtpConfigError> {
        let bad = |reason: &str| SmtpConfigError::Url(reason.to_owned());
        let parsed = url::Url::parse(url).map_err(|e| SmtpConfigError::Url(e.to_string()))?;
        let tls = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        if let Some((key, _)) = parsed.query_pairs().find(|(k, _)| k != "tls") {
            return Err(SmtpConfigError::Url(format!("unknown setting `{key}` (only `tls=none` is known)")));
        }
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::StartTls, 587),
            ("smtp", Some("none")) => (Security::None, 25),
            ("smtps", None) => (Security::Implicit, 465),
            ("smtp" | "smtps", Some(other)) => {
                return Err(SmtpConfigError::Url(format!("tls={other} is not known (only tls=none, on smtp://)")));
            }
            (scheme, _) => return Err(SmtpConfigError::Url(format!("the scheme is `{scheme}`; use smtp:// (STARTTLS) or smtps:// (TLS)"))),
        };
        let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?.trim_matches(['[', ']']).to_owned();
        if parsed.password().is_some() {
            return Err(bad("holds a password; put it in the secret store as `smtp-password` instead"));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(bad("has a path; it takes only user, host and port"));
        }
        let username = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(|u| {
                percent_encoding::percent_decode_str(u)
                    .decode_utf8()
                    .map(|u| u.into_owned())
                    .map_err(|_| bad("the user name is not valid percent-encoded UTF-8"))
            })
            .transpose()?;
        if username.is_some() && security == Security::None {
            return Err(bad("a user name with tls=none would send the password in plaintext; use smtp:// or smtps://"));
        }
        from.parse::<Mailbox>().map_err(|e| SmtpConfigError::From(e.to_string()))?;
        if let Some(path) = &ca_file {
            let pem = std::fs::read(path).map_err(|e| SmtpConfigError::CaFile { path: path.clone(), reason: e.to_string() })?;
            Certificate::from_pem(&pem).map_err(|e| SmtpConfigError::CaFile { path: path.clone(), reason: e.to_string() })?;
        }
        Ok(Self { host, port: parsed.port().unwrap_or(default_port), security, username, from: from.to_owned(), ca_file })
    }
}

/// The transport of one configuration and one password.
pub struct SmtpTransport {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl SmtpTransport {
    /// `password` is the secret store's `smtp-password` (needed when the URL names a user).
    pub fn new(settings: &SmtpSettings, password: Option<&str>) -> Result<Self, SmtpConfigError> {
        let from: Mailbox = settings.from.parse().map_err(|e: lettre::address::AddressError| SmtpConfigError::From(e.to_string()))?;
        let domain = from.email.domain().to_owned();
        let tls = || -> Result<TlsParameters, SmtpConfigError> {
            let mut builder = TlsParameters::builder(settings.host.clone());
            if let Some(path) = &settings.ca_file {
                let ca_error = |reason: String| SmtpConfigError::CaFile { path: path.clone(), reason };
                let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
                builder = builder.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?);
            }
            builder.build_rustls().map_err(|e| SmtpConfigError::Url(format!("TLS: {e}")))
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .timeout(Some(IO_TIMEOUT))
            .hello_name(ClientId::Domain(domain.clone()))
            .tls(match settings.security {
                Security::StartTls => Tls::Required(tls()?),
                Security::Implicit => Tls::Wrapper(tls()?),
                Security::None => Tls::None,
            });
        if let Some(user) = &settings.username {
            let password = password
                .ok_or_else(|| SmtpConfigError::Url(format!("names the user `{user}` but the secret store has no `{SMTP_PASSWORD}`")))?;
            builder = builder.credentials(Credentials::new(user.clone(), password.to_owned()));
        }
        Ok(Self { transport: builder.build(), from, domain })
    }

    fn message(&self, mail: &Claimed) -> Result<Message, DeliveryError> {
        let to: Mailbox = mail.to.parse().map_err(|e| DeliveryError::Permanent(format!("the recipient address is not valid: {e}")))?;
        let text = mail.text.clone().unwrap_or_default();
        let html = mail.html.clone().unwrap_or_else(|| crate::mail::Mail::transactional("", "", text.as_str()).html);
        let mut builder =
            Message::builder().from(self.from.clone()).to(to).subject(mail.subject.clone()).message_id(Some(mail.message_id.clone()));
        if let Some(url) = &mail.list_unsubscribe {
            builder = builder.header(ListUnsubscribe(format!("<{url}>"))).header(ListUnsubscribePost);
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::Permanent(format!("the message cannot be built: {e}")))
    }
}

#[async_trait::async_trait]
impl MailTransport for SmtpTransport {
    async fn deliver(&self, mail: &Claimed) -> Result<(), DeliveryError> {
        let message = self.message(mail)?;
        self.transport.send(message).await.map(drop).map_err(classify)
    }

    fn message_id_domain(&self) -> &str {
        &self.domain
    }
}

/// A 5xx ends the message's tries, except the credentials codes (530, 534,
/// 535, 538): those are the operator's to fix, and every message would fail
/// alike. Everything that is not an answer (refused, dropped, timed out,
/// TLS) is worth another try.
fn classify(e: lettre::transport::smtp::Error) -> DeliveryError {
    let reason = e.to_string();
    let code = e.status().map(|c| c.to_string());
    match code.as_deref() {
        Some("530" | "534" | "535" | "538") => DeliveryError::Temporary(reason),
        _ if e.is_permanent() => DeliveryError::Permanent(reason),
        _ => DeliveryError::Temporary(reason),
    }
}

#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// RFC 8058 one-click: the link takes a `POST` without a page in between.
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: &str = "EngageTrack <no-reply@example.com>";

    #[test]
    fn the_url_says_host_port_security_and_user() {
        let s = SmtpSettings::parse("smtp://mailer%40example.com@mail.example.com", FROM, None).expect("valid");
        assert_eq!(
            (s.host.as_str(), s.port, s.security, s.username.as_deref()),
            ("mail.example.com", 587, Security::StartTls, Some("mailer@example.com"))
        );
        let s = SmtpSettings::parse("smtps://u@mail.example.com:2465", FROM, None).expect("valid");
        assert_eq!((s.port, s.security), (2465, Security::Implicit));
        let s = SmtpSettings::parse("smtp://127.0.0.1:2525?tls=none", FROM, None).expect("valid");
        assert_eq!((s.host.as_str(), s.port, s.security, s.username), ("127.0.0.1", 2525, Security::None, None));
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let reason = |url: &str, from: &str| SmtpSettings::parse(url, from, None).expect_err(url).to_string();
        assert!(reason("smtp://u:secret@mail.example.com", FROM).contains("smtp-password"));
        assert!(reason("http://mail.example.com", FROM).contains("smtp://"));
        assert!(reason("smtp://mail.example.com?tls=maybe", FROM).contains("tls=maybe"));
        assert!(reason("smtp://mail.example.com?port=1", FROM).contains("port"));
        assert!(reason("smtp://u@127.0.0.1:25?tls=none", FROM).contains("plaintext"));
        assert!(reason("smtp://mail.example.com/inbox", FROM).contains("path"));
        assert!(reason("smtp://mail.example.com", "not a mailbox").contains("ENGAGETRACK_MAIL_FROM"));
        let missing = SmtpSettings::parse("smtp://mail.example.com", FROM, Some("/nonexistent/ca.pem".into())).expect_err("no file");
        assert!(missing.to_string().contains("ENGAGETRACK_SMTP_CA_FILE"), "{missing}");
    }

    #[test]
    fn a_user_without_a_password_is_refused() {
        let s = SmtpSettings::parse("smtp://u@mail.example.com", FROM, None).expect("valid");
        let Err(e) = SmtpTransport::new(&s, None) else { panic!("built without a password") };
        assert!(e.to_string().contains(SMTP_PASSWORD), "{e}");
        assert!(SmtpTransport::new(&s, Some("pw")).is_ok());
    }
}
