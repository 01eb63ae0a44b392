//! Visitor and session identities. Both are one-way and compact (64 bits):
//! enough to count distinct visitors per site and day without a collision
//! worth worrying about, and nothing to link back to a person.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::site::SiteId;

/// 32 random bytes, made by the salt rotation for one UTC day and destroyed
/// within 48 hours. `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt([u8; 32]);

impl Salt {
    pub const LEN: usize = 32;

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<&[u8]> for Salt {
    type Error = SaltLengthError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| SaltLengthError(bytes.len()))
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a salt is 32 bytes, got {0}")]
pub struct SaltLengthError(usize);

/// The stored identity of a visitor: 64 bits of a SHA-256, whose lowest bit
/// says the mode: 0 for memory mode's daily hash, 1 for storage mode's. A
/// storage-mode hash is stable and names one device; the bit lets the
/// database index only those (visitor requests look them up) and lets a
/// reader tell them from daily hashes, which people behind one NAT share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct VisitorHash(i64);

impl VisitorHash {
    /// Memory mode: SHA-256(salt of the event's UTC day ‖ site ‖ IP ‖ UA).
    /// A new salt each day means no hash links two days.
    pub fn daily(salt: &Salt, site: SiteId, ip: IpAddr, user_agent: &str) -> Self {
        let mut h = Sha256::new();
        h.update(salt.as_bytes());
        h.update(site.as_uuid().as_bytes());
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                h.update([4]);
                h.update(v4.octets());
            }
            IpAddr::V6(v6) => {
                h.update([6]);
                h.update(v6.octets());
            }
        }
        h.update(user_agent.as_bytes());
        Self(first_64_bits(h) & !STORAGE_MODE_BIT)
    }

    /// Storage mode: the SDK keeps a random visitor id on the device; we hash
    /// it with the site so the stored value is compact and site-specific.
    pub fn from_visitor_id(site: SiteId, visitor_id: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"vid");
        h.update(site.as_uuid().as_bytes());
        h.update(visitor_id.as_bytes());
        Self(first_64_bits(h) | STORAGE_MODE_BIT)
    }

    /// Made by [`VisitorHash::from_visitor_id`]: stable across days.
    pub const fn is_storage_mode(self) -> bool {
        self.0 & STORAGE_MODE_BIT != 0
    }

    pub const fn from_i64(v: i64) -> Self {
        Self(v)
    }

    pub const fn as_i64(self) -> i64 {
        self.0
    }
}

/// The stored identity of a session: the SDK's random session id, compacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SessionHash(i64);

impl SessionHash {
    pub fn new(site: SiteId, session_id: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"sid");
        h.update(site.as_uuid().as_bytes());
        h.update(session_id.as_bytes());
        Self(first_64_bits(h))
    }

    pub const fn as_i64(self) -> i64 {
        self.0
    }
}

/// An IPv4 address reached over IPv6 (`::ffff:a.b.c.d`) is the same visitor.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The lowest bit of a [`VisitorHash`]: set in storage mode only. SQL that
/// wants storage-mode hashes says `visitor_hash & 1 = 1` (V11's index).
pub const STORAGE_MODE_BIT: i64 = 1;

fn first_64_bits(h: Sha256) -> i64 {
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(n: u128) -> SiteId {
        SiteId::from_uuid(uuid::Uuid::from_u128(n))
    }

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0";

    #[test]
    fn same_inputs_same_hash() {
        let salt = Salt::from_bytes([7; 32]);
        let ip = "203.0.113.9".parse().unwrap();
        assert_eq!(
            VisitorHash::daily(&salt, site(1), ip, UA),
            VisitorHash::daily(&salt, site(1), ip, UA)
        );
    }

    #[test]
    fn matches_sha256_of_the_documented_inputs() {
        let salt = Salt::from_bytes([1; 32]);
        let ip: IpAddr = "198.51.100.4".parse().unwrap();
        let mut input = vec![1u8; 32];
        input.extend_from_slice(site(9).as_uuid().as_bytes());
        input.push(4);
        input.extend_from_slice(&[198, 51, 100, 4]);
        input.extend_from_slice(UA.as_bytes());
        let digest = Sha256::digest(&input);
        let expected = i64::from_be_bytes(digest[..8].try_into().unwrap()) & !1;
        assert_eq!(VisitorHash::daily(&salt, site(9), ip, UA).as_i64(), expected);
    }

    #[test]
    fn the_lowest_bit_tells_storage_mode_from_memory_mode() {
        let salt = Salt::from_bytes([3; 32]);
        for n in 0..64u8 {
            let ip = IpAddr::from([198, 51, 100, n]);
            assert!(!VisitorHash::daily(&salt, site(1), ip, UA).is_storage_mode());
            let vid = format!("visitor-id-{n:05}");
            let stored = VisitorHash::from_visitor_id(site(1), &vid);
            assert!(stored.is_storage_mode());
            assert_eq!(stored.as_i64() & STORAGE_MODE_BIT, 1);
        }
    }

    #[test]
    fn each_input_changes_the_hash() {
        let salt = Salt::from_bytes([7; 32]);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let base = VisitorHash::daily(&salt, site(1), ip, UA);
        assert_ne!(base, VisitorHash::daily(&Salt::from_bytes([8; 32]), site(1), ip, UA));
        assert_ne!(base, VisitorHash::daily(&salt, site(2), ip, UA));
        assert_ne!(base, VisitorHash::daily(&salt, site(1), "203.0.113.10".parse().unwrap(), UA));
        assert_ne!(base, VisitorHash::daily(&salt, site(1), ip, "curl/8"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_same_visitor() {
        let salt = Salt::from_bytes([7; 32]);
        assert_eq!(
            VisitorHash::daily(&salt, site(1), "203.0.113.9".parse().unwrap(), UA),
            VisitorHash::daily(&salt, site(1), "::ffff:203.0.113.9".parse().unwrap(), UA)
        );
    }

    #[test]
    fn salt_debug_hides_bytes() {
        assert_eq!(format!("{:?}", Salt::from_bytes([0xab; 32])), "Salt(..)");
    }

    #[test]
    fn storage_mode_hash_is_per_site() {
        assert_ne!(
            VisitorHash::from_visitor_id(site(1), "abcdefabcdefabcd"),
            VisitorHash::from_visitor_id(site(2), "abcdefabcdefabcd")
        );
    }
}
