//! API keys and roles.
//!
//! A key looks like `cl_<id>_<secret>` where `<id>` is 12 lowercase hex
//! characters (public, used to find the key) and `<secret>` is 43 characters
//! of URL-safe base64 (256 bits from the caller's random source). Only the
//! SHA-256 of the whole key is stored; [`ApiKeyHash::verify`] compares in
//! constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// What a key may do. Roles are ordered: each includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Evaluate flags (OFREP) and, later, send telemetry.
    Sdk,
    /// Read flags and change their state and cohort targeting.
    Developer,
    /// Everything a developer may do, plus create, import and update flags.
    Researcher,
    /// Everything, including API keys.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Sdk, Role::Developer, Role::Researcher, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Sdk => "sdk",
            Role::Developer => "developer",
            Role::Researcher => "researcher",
            Role::Admin => "admin",
        }
    }

    /// Whether a key with this role may do what `required` allows.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}': expected one of admin, researcher, developer, sdk")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sdk" => Ok(Role::Sdk),
            "developer" => Ok(Role::Developer),
            "researcher" => Ok(Role::Researcher),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

pub const KEY_PREFIX: &str = "cl_";
const ID_LEN: usize = 12;
const SECRET_LEN: usize = 43;

/// A freshly generated key: the plaintext is shown once and never stored.
#[derive(Clone)]
pub struct NewApiKey {
    pub id: String,
    pub plaintext: String,
    pub hash: ApiKeyHash,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewApiKey {
    /// Builds a key from 38 random bytes supplied by the caller (6 for the id,
    /// 32 for the secret).
    pub fn from_random(bytes: [u8; 38]) -> Self {
        let id = hex::encode(&bytes[..6]);
        let secret = base64url(&bytes[6..]);
        let plaintext = format!("{KEY_PREFIX}{id}_{secret}");
        let hash = ApiKeyHash::of(&plaintext);
        NewApiKey {
            id,
            plaintext,
            hash,
        }
    }
}

/// The public id inside a presented key, if the key is well formed.
pub fn key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok_id = id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
    let ok_secret = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok_id && ok_secret).then_some(id)
}

/// SHA-256 of a whole key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyHash([u8; 32]);

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({})", self.to_hex())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored key hash is not 64 hex characters")]
pub struct BadKeyHash;

impl ApiKeyHash {
    pub fn of(plaintext: &str) -> Self {
        ApiKeyHash(Sha256::digest(plaintext.as_bytes()).into())
    }

    pub fn from_hex(s: &str) -> Result<Self, BadKeyHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadKeyHash)?;
        Ok(ApiKeyHash(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time check that `presented` hashes to this value.
    pub fn verify(&self, presented: &str) -> bool {
        let other = Sha256::digest(presented.as_bytes());
        self.0.ct_eq(other.as_slice()).into()
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips() {
        let mut bytes = [0u8; 38];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let key = NewApiKey::from_random(bytes);
        assert!(key.plaintext.starts_with("cl_"));
        assert_eq!(key_id(&key.plaintext), Some(key.id.as_str()));
        assert!(key.hash.verify(&key.plaintext));
        assert!(!key.hash.verify(&format!("{}x", key.plaintext)));
        let again = ApiKeyHash::from_hex(&key.hash.to_hex()).unwrap();
        assert_eq!(again, key.hash);
    }

    #[test]
    fn malformed_keys_have_no_id() {
        for bad in [
            "",
            "cl_",
            "cl_abc_def",
            "xx_0123456789ab_",
            "cl_0123456789ab",
        ] {
            assert_eq!(key_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.allows(Role::Sdk));
        assert!(Role::Researcher.allows(Role::Developer));
        assert!(!Role::Developer.allows(Role::Researcher));
        assert!(!Role::Sdk.allows(Role::Developer));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
