//! The secrets port. Locally: one JSON file of named random keys, created on
//! first use with mode 0600. In AWS: one Secrets Manager secret holding the
//! same JSON object (`adapters::aws::secrets_manager`), which is never created
//! or completed by the code: a missing name is an error that names it.
//! [`CachedSecrets`] re-reads the source after a TTL, so a new version (say
//! one that adds `field-key-2`) reaches running processes without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The AES-256-GCM key for fields encrypted at rest; `-1` is its key id.
/// Rotation adds `field-key-2`, and so on; the highest id encrypts.
pub const FIELD_KEY_PREFIX: &str = "field-key-";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read or write the secrets file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the secrets file {path} is not a JSON object of hex strings: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the secrets file {0} is readable by others; chmod 600 it")]
    TooOpen(PathBuf),
    #[error("cannot get random bytes from the OS: {0}")]
    Random(String),
    #[error("cannot read the secret {origin}: {reason}")]
    Unavailable { origin: String, reason: String },
    #[error("the secret {origin} is not a JSON object of hex strings: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("the secret {origin} lacks {}: add each as 32 random bytes in hex (e.g. `openssl rand -hex 32`)", names.join(", "))]
    Missing { origin: String, names: Vec<String> },
}

/// Named secret byte strings. `Debug` names the keys, never the bytes.
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, Vec<u8>>);

impl Secrets {
    /// Parses the JSON object name -> hex string that both the local file and
    /// the cloud secret hold; `origin` names the source in errors.
    pub fn from_hex_json(json: &str, origin: &str) -> Result<Self, SecretsError> {
        let invalid = |reason: String| SecretsError::Invalid { origin: origin.to_owned(), reason };
        let values: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        values
            .into_iter()
            .map(|(k, v)| hex::decode(v.trim()).map(|bytes| (k.clone(), bytes)).map_err(|e| invalid(format!("{k}: {e}"))))
            .collect::<Result<_, _>>()
            .map(Secrets)
    }

    /// The [`REQUIRED`] names this set lacks.
    pub fn missing_required(&self) -> Vec<String> {
        REQUIRED.iter().filter(|n| !self.0.contains_key(**n)).map(|n| (*n).to_owned()).collect()
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The HMAC key the edge signs its batches with (also a worker secret).
pub const EDGE_SIGNING_KEY: &str = "edge-signing-key";

/// During a rotation of the edge's key: the key it replaced, still accepted
/// until every worker signs with the new one (then the operator removes it).
pub const EDGE_SIGNING_KEY_PREVIOUS: &str = "edge-signing-key-previous";

/// The key the sign-in rate limiter hashes client addresses with (never stored raw).
pub const IP_HASH_KEY: &str = "ip-hash-key";

/// The bearer token of `GET /metrics` (its hex). Optional in a deployment:
/// without it the route answers 404; the local file always has one.
pub const METRICS_TOKEN: &str = "metrics-token";

/// The HMAC key of `events.email_key`, the keyed hash visitor requests find
/// an identify() email by. Never rotated: a new value leaves every earlier
/// hash unmatchable. Optional in a deployment (the key store is composed once
/// at stack creation); without it emails are stored unfindable and email
/// requests answer 422 (README "Visitor requests").
pub const VISITOR_LOOKUP_KEY: &str = "visitor-lookup-key";

/// The names every deployment needs, created when missing.
pub const REQUIRED: &[&str] = &["field-key-1", EDGE_SIGNING_KEY, "jwt-key-1", IP_HASH_KEY];

/// Created in the local file when missing, not required of a deployment
/// (without `mail-link-key` no report or alert is sent; without
/// `visitor-lookup-key` emails are stored without their lookup hash).
const CREATED_LOCALLY: &[&str] = &[METRICS_TOKEN, crate::reports::token::MAIL_LINK_KEY, VISITOR_LOOKUP_KEY];
/// Where secrets are read from: the local file, or a cloud secret store.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// Reads the current version, with every [`REQUIRED`] name present.
    async fn load(&self) -> Result<Secrets, SecretsError>;
}

/// The local adapter: [`load_or_create_local`] on one path.
pub struct LocalSecretsFile(pub PathBuf);

#[async_trait::async_trait]
impl SecretSource for LocalSecretsFile {
    async fn load(&self) -> Result<Secrets, SecretsError> {
        let path = self.0.clone();
        tokio::task::spawn_blocking(move || load_or_create_local(&path))
            .await
            .map_err(|e| SecretsError::Unavailable { origin: self.0.display().to_string(), reason: e.to_string() })?
    }
}

/// Secrets already read, never re-read (the local binary and tests).
pub struct Fixed(pub Secrets);

#[async_trait::async_trait]
impl SecretSource for Fixed {
    async fn load(&self) -> Result<Secrets, SecretsError> {
        Ok(self.0.clone())
    }
}

/// How long a read of the secret store is reused before it is read again:
/// the longest a rotation takes to reach a running process.
pub const SECRETS_TTL: Duration = Duration::from_secs(300);

/// A [`SecretSource`] read at most once per TTL. When a re-read fails the
/// last good copy keeps serving (logged): an outage of the secret store
/// must not stop sign-ins, and the keys it held are still valid.
pub struct CachedSecrets {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(Instant, Secrets)>>,
}

impl CachedSecrets {
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration) -> Self {
        Self { source, ttl, cached: tokio::sync::Mutex::new(None) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The secrets, read from the source when never read or older than the TTL.
    pub async fn current(&self) -> Result<Secrets, SecretsError> {
        let mut cached = self.cached.lock().await;
        match cached.as_ref() {
            Some((at, secrets)) if at.elapsed() < self.ttl => return Ok(secrets.clone()),
            _ => {}
        }
        match self.source.load().await {
            Ok(fresh) => {
                *cached = Some((Instant::now(), fresh.clone()));
                Ok(fresh)
            }
            Err(e) => match cached.as_mut() {
                Some((at, secrets)) => {
                    tracing::error!(error = %e, "re-reading the secrets failed; keeping the last good copy");
                    // Try again after another TTL, not on every request.
                    *at = Instant::now();
                    Ok(secrets.clone())
                }
                None => Err(e),
            },
        }
    }
}

/// The keys requests are checked and hashed with, other than the field and
/// JWT keys (which keep every id): the edge's batch key (and the one it
/// replaced), the sign-in address-hash key, the billing webhook secrets and
/// API keys, and the metrics token. [`ServiceKeys::reload`] swaps them all at once when a
/// new secret version arrives, so a rotation needs no restart.
pub struct ServiceKeys(std::sync::RwLock<Arc<KeySet>>);

/// One consistent version of [`ServiceKeys`].
pub struct KeySet {
    /// The current edge key first, then [`EDGE_SIGNING_KEY_PREVIOUS`] if set.
    edge_signing: Vec<Vec<u8>>,
    pub ip_hash: Vec<u8>,
    pub webhooks: crate::billing::ProviderSecrets,
    /// The payment providers' API keys (checkout and portal links).
    pub payment_api_keys: crate::billing::ProviderSecrets,
    pub metrics_token: Option<Vec<u8>>,
    /// `smtp-password`, for an SMTP URL that names a user.
    pub smtp_password: Option<Vec<u8>>,
    /// `mail-link-key`, which signs the unsubscribe links of reports and alerts.
    pub mail_link: Option<Vec<u8>>,
}

impl KeySet {
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, SecretsError> {
        let required = |name: &str| {
            secrets
                .get(name)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| SecretsError::Missing { origin: "the current secret version".into(), names: vec![name.to_owned()] })
        };
        let previous = secrets.get(EDGE_SIGNING_KEY_PREVIOUS).filter(|k| !k.is_empty()).map(<[u8]>::to_vec);
        Ok(Self {
            edge_signing: std::iter::once(required(EDGE_SIGNING_KEY)?).chain(previous).collect(),
            ip_hash: required(IP_HASH_KEY)?,
            webhooks: crate::billing::ProviderSecrets::webhooks(secrets),
            payment_api_keys: crate::billing::ProviderSecrets::api_keys(secrets),
            metrics_token: secrets.get(METRICS_TOKEN).filter(|t| !t.is_empty()).map(<[u8]>::to_vec),
            smtp_password: secrets.get(crate::adapters::smtp::SMTP_PASSWORD).filter(|p| !p.is_empty()).map(<[u8]>::to_vec),
            mail_link: secrets.get(crate::reports::token::MAIL_LINK_KEY).filter(|k| !k.is_empty()).map(<[u8]>::to_vec),
        })
    }

    /// The key the edge signs with now.
    pub fn edge_signing_key(&self) -> &[u8] {
        &self.edge_signing[0]
    }

    /// Checks a signed batch against the current key, then the previous one;
    /// a stale or malformed header fails at once, whatever the key.
    pub fn verify_batch(&self, timestamp: &str, signature: &str, body: &[u8], now: i64) -> Result<i64, shared::batch::BatchAuthError> {
        let mut answer = Err(shared::batch::BatchAuthError::Mismatch);
        for key in &self.edge_signing {
            answer = shared::batch::verify(key, timestamp, signature, body, now);
            if answer != Err(shared::batch::BatchAuthError::Mismatch) {
                break;
            }
        }
        answer
    }
}

impl ServiceKeys {
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, SecretsError> {
        Ok(Self(std::sync::RwLock::new(Arc::new(KeySet::from_secrets(secrets)?))))
    }

    /// The keys of this moment; hold the `Arc` for one request, not longer.
    pub fn current(&self) -> Arc<KeySet> {
        // A poisoned lock still holds a complete set: swaps never half-write.
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes a new secret version; a version lacking a required key is
    /// refused and the keys in use stay.
    pub fn reload(&self, secrets: &Secrets) -> Result<(), SecretsError> {
        let fresh = Arc::new(KeySet::from_secrets(secrets)?);
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// Loads the file, adds any missing required secret (32 random bytes) and
/// writes it back atomically with mode 0600.
pub fn load_or_create_local(path: &Path) -> Result<Secrets, SecretsError> {
    let io = |source| SecretsError::Io { path: path.to_owned(), source };
    let mut values: BTreeMap<String, String> = match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(SecretsError::TooOpen(path.to_owned()));
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| SecretsError::Corrupt { path: path.to_owned(), reason: e.to_string() })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(io(e)),
    };
    let mut changed = false;
    for name in REQUIRED.iter().chain(CREATED_LOCALLY) {
        if !values.contains_key(*name) {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| SecretsError::Random(e.to_string()))?;
            values.insert((*name).to_owned(), hex::encode(key));
            changed = true;
        }
    }
    if changed {
        write_private(path, &values).map_err(io)?;
    }
    let decoded = values
        .into_iter()
        .map(|(k, v)| {
            hex::decode(&v)
                .map(|bytes| (k.clone(), bytes))
                .map_err(|e| SecretsError::Corrupt { path: path.to_owned(), reason: format!("{k}: {e}") })
        })
        .collect::<Result<_, _>>()?;
    Ok(Secrets(decoded))
}

fn write_private(path: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(values).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_0600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.json");
        let first = load_or_create_local(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_create_local(&path).unwrap();
        assert_eq!(first.get("field-key-1").unwrap().len(), 32);
        assert_eq!(first.get("field-key-1"), second.get("field-key-1"));
        assert!(!format!("{first:?}").contains(&hex::encode(first.get("field-key-1").unwrap())));
    }

    fn secrets(pairs: &[(&str, &[u8])]) -> Secrets {
        Secrets(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect())
    }

    #[test]
    fn service_keys_accept_the_previous_edge_key_until_it_is_removed() {
        use shared::batch::{BatchAuthError, sign};
        let (now, body) = (1_700_000_000, b"{\"events\":[]}".as_slice());
        let old = sign(b"old", now, body);
        let new = sign(b"new", now, body);
        let keys = ServiceKeys::from_secrets(&secrets(&[(EDGE_SIGNING_KEY, b"old"), (IP_HASH_KEY, b"ip")])).unwrap();
        assert_eq!(keys.current().verify_batch(&now.to_string(), &old, body, now), Ok(now));
        assert_eq!(keys.current().verify_batch(&now.to_string(), &new, body, now), Err(BatchAuthError::Mismatch));

        // The rotation: the new key, the old one kept as previous.
        keys.reload(&secrets(&[(EDGE_SIGNING_KEY, b"new"), (EDGE_SIGNING_KEY_PREVIOUS, b"old"), (IP_HASH_KEY, b"ip")])).unwrap();
        let during = keys.current();
        assert_eq!(during.edge_signing_key(), b"new");
        assert_eq!(during.verify_batch(&now.to_string(), &new, body, now), Ok(now));
        assert_eq!(during.verify_batch(&now.to_string(), &old, body, now), Ok(now));
        // A stale batch is stale whichever key signed it.
        assert_eq!(during.verify_batch(&now.to_string(), &old, body, now + 301), Err(BatchAuthError::Stale(301)));

        // The previous key removed: only the new one signs.
        keys.reload(&secrets(&[(EDGE_SIGNING_KEY, b"new"), (IP_HASH_KEY, b"ip2"), (METRICS_TOKEN, b"m")])).unwrap();
        let after = keys.current();
        assert_eq!(after.verify_batch(&now.to_string(), &old, body, now), Err(BatchAuthError::Mismatch));
        assert_eq!(after.ip_hash, b"ip2");
        assert_eq!(after.metrics_token.as_deref(), Some(b"m".as_slice()));
        // The set handed out before stays whole for the request holding it.
        assert_eq!(during.ip_hash, b"ip");
    }

    #[test]
    fn a_version_without_the_edge_key_is_refused_and_the_keys_stay() {
        let keys = ServiceKeys::from_secrets(&secrets(&[(EDGE_SIGNING_KEY, b"k"), (IP_HASH_KEY, b"ip")])).unwrap();
        let err = keys.reload(&secrets(&[(IP_HASH_KEY, b"ip")])).err().expect("refused");
        assert!(err.to_string().contains(EDGE_SIGNING_KEY), "{err}");
        assert_eq!(keys.current().edge_signing_key(), b"k");
    }

    #[test]
    fn refuses_a_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        load_or_create_local(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load_or_create_local(&path), Err(SecretsError::TooOpen(_))));
    }
}
