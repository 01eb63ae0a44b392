//! Short-lived access tokens: HS256 JWTs signed with `jwt-key-N` from the
//! secrets port (the highest N signs; `kid` names the key so old tokens still
//! verify during a rotation). The algorithm is pinned: a token whose header
//! says anything but HS256 is rejected before its signature is looked at.

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use uuid::Uuid;

use crate::secrets::Secrets;

pub const ACCESS_TOKEN_TTL: Duration = Duration::minutes(15);
pub const JWT_KEY_PREFIX: &str = "jwt-key-";
const ISSUER: &str = "engagetrack";
const AUDIENCE: &str = "engagetrack-api";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("no JWT signing key (`{JWT_KEY_PREFIX}N`) in the secret store")]
    NoKey,
    #[error("the access token is invalid or expired")]
    Invalid,
    #[error("cannot sign the access token")]
    Sign,
    #[error("JWT key `{JWT_KEY_PREFIX}{0}` changed its bytes; tokens signed with it would stop verifying, so the change is refused")]
    KeyChanged(String),
}

/// (key id, key bytes), newest last.
type Keys = Vec<(String, Vec<u8>)>;

fn parse_keys(secrets: &Secrets) -> Result<Keys, JwtError> {
    let mut keys: Vec<(u32, String, Vec<u8>)> = secrets
        .iter()
        .filter_map(|(name, bytes)| {
            let id = name.strip_prefix(JWT_KEY_PREFIX)?;
            Some((id.parse().ok()?, id.to_owned(), bytes.to_vec()))
        })
        .collect();
    if keys.is_empty() {
        return Err(JwtError::NoKey);
    }
    keys.sort_by_key(|k| k.0);
    Ok(keys.into_iter().map(|(_, id, k)| (id, k)).collect())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The refresh-token family (the sign-in session) this token belongs to;
    /// revoking the family ends the access token too.
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

pub struct AccessTokens {
    /// Behind a lock so a rotation reaches a running process ([`Self::reload`]).
    keys: std::sync::RwLock<Keys>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("key_ids", &self.key_ids()).finish()
    }
}

impl AccessTokens {
    pub fn from_secrets(secrets: &Secrets) -> Result<Self, JwtError> {
        Ok(Self { keys: std::sync::RwLock::new(parse_keys(secrets)?) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The key ids held, oldest first; the last one signs.
    pub fn key_ids(&self) -> Vec<String> {
        self.read().iter().map(|k| k.0.clone()).collect()
    }

    /// Takes a new version of the secrets: a new highest id signs from now
    /// on; keys it no longer lists still verify (kept); changed bytes are refused.
    pub fn reload(&self, secrets: &Secrets) -> Result<(), JwtError> {
        let fresh = parse_keys(secrets)?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut merged = fresh.clone();
        for (id, bytes) in keys.iter() {
            match fresh.iter().find(|k| k.0 == *id) {
                Some(k) if k.1 != *bytes => return Err(JwtError::KeyChanged(id.clone())),
                Some(_) => {}
                None => merged.insert(0, (id.clone(), bytes.clone())),
            }
        }
        merged.sort_by_key(|(id, _)| id.parse::<u32>().unwrap_or(0));
        *keys = merged;
        Ok(())
    }

    pub fn issue(&self, user: Uuid, family: Uuid, now: DateTime<Utc>) -> Result<String, JwtError> {
        let keys = self.read();
        let (kid, key) = keys.last().ok_or(JwtError::NoKey)?;
        let claims = Claims {
            sub: user,
            sid: family,
            iat: now.timestamp(),
            exp: (now + ACCESS_TOKEN_TTL).timestamp(),
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).map_err(|_| JwtError::Sign)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Invalid)?;
        if header.alg != Algorithm::HS256 {
            return Err(JwtError::Invalid);
        }
        let kid = header.kid.ok_or(JwtError::Invalid)?;
        let keys = self.read();
        let (_, key) = keys.iter().find(|(id, _)| *id == kid).ok_or(JwtError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // A token not valid yet is not valid: `nbf` is checked when present, and
        // one issued in the future (beyond the leeway) was not issued by us.
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
            .map(|data| data.claims)
            .map_err(|_| JwtError::Invalid)?;
        if claims.iat > Utc::now().timestamp() + i64::try_from(validation.leeway).unwrap_or(0) {
            return Err(JwtError::Invalid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn tokens(names: &[&str]) -> AccessTokens {
        let json: serde_json::Value = names.iter().map(|n| (n.to_string(), hex::encode([7u8; 32]).into())).collect::<serde_json::Map<_, _>>().into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, json.to_string()).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        AccessTokens::from_secrets(&crate::secrets::load_or_create_local(&path).unwrap()).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_carry_user_and_session() {
        let t = tokens(&["jwt-key-1"]);
        let (user, family) = (Uuid::new_v4(), Uuid::new_v4());
        let claims = t.verify(&t.issue(user, family, Utc::now()).unwrap()).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, family));
        assert_eq!(claims.exp - claims.iat, 15 * 60);
    }

    #[test]
    fn expired_tampered_and_unsigned_tokens_are_rejected() {
        let t = tokens(&["jwt-key-1"]);
        let old = t.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now() - Duration::minutes(16)).unwrap();
        assert_eq!(t.verify(&old), Err(JwtError::Invalid));
        let good = t.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now()).unwrap();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        // alg=none with the same claims
        parts[0] = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"1"}"#);
        assert_eq!(t.verify(&format!("{}.{}.", parts[0], parts[1])), Err(JwtError::Invalid));
        // another user's id in a token signed for someone else
        let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = Uuid::new_v4().to_string().into();
        let forged = format!("{}.{}.{}", good.split('.').next().unwrap(), URL_SAFE_NO_PAD.encode(claims.to_string()), good.split('.').nth(2).unwrap());
        assert_eq!(t.verify(&forged), Err(JwtError::Invalid));
        assert_eq!(t.verify("not a token"), Err(JwtError::Invalid));
    }

    #[test]
    fn the_newest_key_signs_and_older_keys_still_verify() {
        let old = tokens(&["jwt-key-1"]);
        let token = old.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now()).unwrap();
        let rotated = tokens(&["jwt-key-1", "jwt-key-2"]);
        assert!(rotated.verify(&token).is_ok());
        let new = rotated.issue(Uuid::new_v4(), Uuid::new_v4(), Utc::now()).unwrap();
        assert_eq!(jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(), Some("2"));
    }
}
