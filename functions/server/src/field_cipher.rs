//! AES-256-GCM for fields encrypted at rest (privacy invariant 5).
//!
//! Layout: `[version 1][key id][12-byte nonce][ciphertext + tag]`. The key id
//! lets keys rotate: new rows use the newest key, old rows stay readable.
//! Associated data binds a ciphertext to its row, so it cannot be moved.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::secrets::{FIELD_KEY_PREFIX, Secrets};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("no field encryption key (`{FIELD_KEY_PREFIX}N`) in the secret store")]
    NoKey,
    #[error("field key `{0}` must be 32 bytes")]
    BadKey(String),
    #[error("ciphertext is malformed or was made with an unknown key")]
    Malformed,
    #[error("ciphertext does not authenticate")]
    Forged,
    #[error("cannot get random bytes from the OS")]
    Random,
    #[error("field key `{FIELD_KEY_PREFIX}{0}` changed its bytes; rows sealed with it would no longer open, so the change is refused")]
    KeyChanged(u8),
}

/// (key id, key bytes, cipher), newest last.
type Keys = Vec<(u8, Vec<u8>, Aes256Gcm)>;

pub struct FieldCipher {
    /// Behind a lock so a rotation reaches a running process ([`Self::reload`]).
    keys: std::sync::RwLock<Keys>,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher").field("key_ids", &self.key_ids()).finish()
    }
}

fn parse_keys(secrets: &Secrets) -> Result<Keys, CipherError> {
    let mut keys = secrets
        .iter()
        .filter_map(|(name, bytes)| {
            let id = name.strip_prefix(FIELD_KEY_PREFIX)?.parse::<u8>().ok()?;
            Some((id, name, bytes))
        })
        .map(|(id, name, bytes)| {
            Aes256Gcm::new_from_slice(bytes).map(|c| (id, bytes.to_vec(), c)).map_err(|_| CipherError::BadKey(name.to_owned()))
        })
        .collect::<Result<Keys, _>>()?;
    if keys.is_empty() {
        return Err(CipherError::NoKey);
    }
    keys.sort_by_key(|(id, _, _)| *id);
    Ok(keys)
}

impl FieldCipher {
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, CipherError> {
        Ok(Self { keys: std::sync::RwLock::new(parse_keys(secrets)?) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key ids held, oldest first; the last one seals new values.
    pub fn key_ids(&self) -> Vec<u8> {
        self.read().iter().map(|k| k.0).collect()
    }

    /// Takes a new version of the secrets: a new highest id seals from now
    /// on. A key the new version no longer lists is kept (rows sealed with it
    /// must stay readable); a key whose bytes changed is refused.
    pub fn reload(&self, secrets: &Secrets) -> Result<(), CipherError> {
        let mut fresh = parse_keys(secrets)?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        for (id, bytes, cipher) in keys.iter() {
            match fresh.iter().find(|k| k.0 == *id) {
                Some(k) if k.1 != *bytes => return Err(CipherError::KeyChanged(*id)),
                Some(_) => {}
                None => {
                    tracing::warn!(key_id = id, "the secret store no longer lists a field key; keeping it to read old rows");
                    fresh.push((*id, bytes.clone(), cipher.clone()));
                }
            }
        }
        fresh.sort_by_key(|(id, _, _)| *id);
        *keys = fresh;
        Ok(())
    }

    pub fn encrypt(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>, CipherError> {
        let keys = self.read();
        let (key_id, _, cipher) = keys.last().ok_or(CipherError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| CipherError::Random)?;
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: associated })
            .map_err(|_| CipherError::Random)?;
        let mut out = Vec::with_capacity(2 + NONCE_LEN + sealed.len());
        out.extend_from_slice(&[VERSION, *key_id]);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, blob: &[u8], associated: &[u8]) -> Result<Vec<u8>, CipherError> {
        let [version, key_id, rest @ ..] = blob else { return Err(CipherError::Malformed) };
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(CipherError::Malformed);
        }
        let keys = self.read();
        let (_, _, cipher) = keys.iter().find(|(id, _, _)| id == key_id).ok_or(CipherError::Malformed)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: associated })
            .map_err(|_| CipherError::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(keys: &[(&str, [u8; 32])]) -> Secrets {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let map: std::collections::BTreeMap<_, _> = keys.iter().map(|(k, v)| (k.to_string(), hex::encode(v))).collect();
        std::fs::write(&path, serde_json::to_vec(&map).unwrap()).unwrap();
        std::fs::set_permissions(&path, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600)).unwrap();
        crate::secrets::load_or_create_local(&path).unwrap()
    }

    #[test]
    fn round_trip_and_tamper() {
        let c = FieldCipher::from_secrets(&secrets(&[("field-key-1", [1; 32])])).unwrap();
        let blob = c.encrypt(b"ann@example.com", b"row-1").unwrap();
        assert!(!blob.windows(15).any(|w| w == b"ann@example.com"));
        assert_eq!(c.decrypt(&blob, b"row-1").unwrap(), b"ann@example.com");
        assert_eq!(c.decrypt(&blob, b"row-2"), Err(CipherError::Forged));
        let mut flipped = blob.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(c.decrypt(&flipped, b"row-1"), Err(CipherError::Forged));
    }

    #[test]
    fn rotation_keeps_old_rows_readable() {
        let old = FieldCipher::from_secrets(&secrets(&[("field-key-1", [1; 32])])).unwrap();
        let blob = old.encrypt(b"x", b"").unwrap();
        let rotated = FieldCipher::from_secrets(&secrets(&[("field-key-1", [1; 32]), ("field-key-2", [2; 32])])).unwrap();
        assert_eq!(rotated.decrypt(&blob, b"").unwrap(), b"x");
        assert_eq!(rotated.encrypt(b"y", b"").unwrap()[1], 2);
    }
}
