//! Sign-in with Google and GitHub: the authorization-code flow with PKCE and
//! a CSRF state (the `oauth2` crate does the protocol), then the provider's
//! user endpoint for a verified email. Endpoints are the providers' real
//! ones; a base-URL override points them at a local fake in tests.

use std::fmt;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse, TokenUrl,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Google,
    GitHub,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::GitHub => "github",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "google" => Some(Provider::Google),
            "github" => Some(Provider::GitHub),
            _ => None,
        }
    }

    fn env_name(self) -> &'static str {
        match self {
            Provider::Google => "GOOGLE",
            Provider::GitHub => "GITHUB",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Provider::Google => "Google",
            Provider::GitHub => "GitHub",
        }
    }
}

#[derive(Clone)]
pub struct ProviderConfig {
    pub provider: Provider,
    pub client_id: String,
    pub client_secret: String,
    auth_url: String,
    token_url: String,
    user_url: String,
    /// GitHub only: the list of the user's addresses with their verified flag.
    emails_url: Option<String>,
}

impl fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderConfig").field("provider", &self.provider).field("client_id", &self.client_id).field("auth_url", &self.auth_url).finish_non_exhaustive()
    }
}

/// Replaces the origin (scheme, host, port) of `url`, keeping its path.
fn rebase(url: &str, base: Option<&str>) -> String {
    match base {
        None => url.to_owned(),
        Some(base) => {
            let path_start = url.find("://").map(|i| i + 3).and_then(|i| url[i..].find('/').map(|j| i + j)).unwrap_or(url.len());
            format!("{}{}", base.trim_end_matches('/'), &url[path_start..])
        }
    }
}

impl ProviderConfig {
    /// `base` replaces the providers' origins (a local fake provider in tests).
    pub fn new(provider: Provider, client_id: String, client_secret: String, base: Option<&str>) -> Self {
        let (auth, token, user, emails) = match provider {
            Provider::Google => (
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
                "https://openidconnect.googleapis.com/v1/userinfo",
                None,
            ),
            Provider::GitHub => (
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com/user",
                Some("https://api.github.com/user/emails"),
            ),
        };
        Self {
            provider,
            client_id,
            client_secret,
            auth_url: rebase(auth, base),
            token_url: rebase(token, base),
            user_url: rebase(user, base),
            emails_url: emails.map(|e| rebase(e, base)),
        }
    }

    /// From `ENGAGETRACK_{GOOGLE,GITHUB}_CLIENT_ID` / `_CLIENT_SECRET` (and
    /// `_BASE_URL` to point at another origin); a provider without an id is off.
    pub fn from_env() -> Vec<Self> {
        [Provider::Google, Provider::GitHub]
            .into_iter()
            .filter_map(|p| {
                let var = |suffix: &str| std::env::var(format!("ENGAGETRACK_{}_{suffix}", p.env_name())).ok().filter(|v| !v.is_empty());
                Some(Self::new(p, var("CLIENT_ID")?, var("CLIENT_SECRET").unwrap_or_default(), var("BASE_URL").as_deref()))
            })
            .collect()
    }

    fn scopes(&self) -> &'static [&'static str] {
        match self.provider {
            Provider::Google => &["openid", "email", "profile"],
            Provider::GitHub => &["read:user", "user:email"],
        }
    }

    fn client(&self, redirect: &str) -> Result<BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>, OAuthError> {
        let bad = |what: &str| OAuthError::Config(format!("{} {what} is not a valid URL", self.provider.display()));
        Ok(BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_auth_uri(AuthUrl::new(self.auth_url.clone()).map_err(|_| bad("authorization URL"))?)
            .set_token_uri(TokenUrl::new(self.token_url.clone()).map_err(|_| bad("token URL"))?)
            .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|_| bad("redirect URL"))?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Config(String),
    #[error("the provider refused the sign-in: {0}")]
    Exchange(String),
    #[error("the provider's user information could not be read: {0}")]
    UserInfo(String),
    #[error("your {0} account has no verified email address; verify one there first")]
    NoVerifiedEmail(&'static str),
}

/// Where to send the browser, and what to keep until it comes back.
pub struct Authorization {
    pub url: String,
    pub state: String,
    pub pkce_verifier: String,
}

pub fn authorize(config: &ProviderConfig, redirect: &str) -> Result<Authorization, OAuthError> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = config.client(redirect)?;
    let mut request = client.authorize_url(CsrfToken::new_random).set_pkce_challenge(challenge);
    for scope in config.scopes() {
        request = request.add_scope(Scope::new((*scope).to_owned()));
    }
    let (url, state) = request.url();
    Ok(Authorization { url: url.to_string(), state: state.secret().clone(), pkce_verifier: verifier.secret().clone() })
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderIdentity {
    pub subject: String,
    pub verified_email: String,
    pub name: Option<String>,
    pub access_token: String,
}

fn http() -> Result<reqwest::Client, OAuthError> {
    // No redirects: the token endpoint must answer itself (SSRF hygiene).
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("EngageTrack")
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| OAuthError::Config(e.to_string()))
}

pub async fn complete(config: &ProviderConfig, redirect: &str, code: String, pkce_verifier: String) -> Result<ProviderIdentity, OAuthError> {
    let http = http()?;
    let token = config
        .client(redirect)?
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
        .request_async(&http)
        .await
        .map_err(|e| OAuthError::Exchange(e.to_string()))?;
    let access_token = token.access_token().secret().clone();
    let get = |url: String| {
        let (http, token) = (&http, &access_token);
        async move {
            let response = http
                .get(&url)
                .bearer_auth(token)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| OAuthError::UserInfo(e.to_string()))?;
            if !response.status().is_success() {
                return Err(OAuthError::UserInfo(format!("{url} answered {}", response.status())));
            }
            response.json::<serde_json::Value>().await.map_err(|e| OAuthError::UserInfo(e.to_string()))
        }
    };
    let user = get(config.user_url.clone()).await?;
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    match config.provider {
        Provider::Google => {
            let subject = text(&user, "sub").ok_or_else(|| OAuthError::UserInfo("no `sub`".into()))?;
            let verified = user.get("email_verified").and_then(|v| v.as_bool()).unwrap_or(false);
            let email = text(&user, "email").filter(|_| verified).ok_or(OAuthError::NoVerifiedEmail("Google"))?;
            Ok(ProviderIdentity { subject, verified_email: email, name: text(&user, "name"), access_token })
        }
        Provider::GitHub => {
            let subject = user.get("id").and_then(|v| v.as_i64()).map(|id| id.to_string()).ok_or_else(|| OAuthError::UserInfo("no `id`".into()))?;
            let emails_url = config.emails_url.clone().ok_or_else(|| OAuthError::Config("GitHub emails URL missing".into()))?;
            let emails = get(emails_url).await?;
            let verified: Vec<&serde_json::Value> =
                emails.as_array().map(|a| a.iter().filter(|e| e.get("verified").and_then(|v| v.as_bool()) == Some(true)).collect()).unwrap_or_default();
            let primary = verified.iter().find(|e| e.get("primary").and_then(|v| v.as_bool()) == Some(true)).or(verified.first());
            let email = primary.and_then(|e| text(e, "email")).ok_or(OAuthError::NoVerifiedEmail("GitHub"))?;
            Ok(ProviderIdentity { subject, verified_email: email, name: text(&user, "name").or_else(|| text(&user, "login")), access_token })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_replaces_only_the_origin() {
        assert_eq!(rebase("https://github.com/login/oauth/authorize", Some("http://127.0.0.1:9/")), "http://127.0.0.1:9/login/oauth/authorize");
        assert_eq!(rebase("https://oauth2.googleapis.com/token", None), "https://oauth2.googleapis.com/token");
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_scopes() {
        let cfg = ProviderConfig::new(Provider::Google, "client-1".into(), "s".into(), None);
        let a = authorize(&cfg, "http://127.0.0.1:8080/api/auth/oauth/google/callback").unwrap();
        let url = url::Url::parse(&a.url).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(url.host_str(), Some("accounts.google.com"));
        assert_eq!(q["client_id"], "client-1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["state"], a.state);
        assert!(q["scope"].contains("email"));
        assert!(a.pkce_verifier.len() >= 43);
        assert!(!format!("{cfg:?}").contains("\"s\""));
    }
}
