//! Pseudonymisation of unit identifiers for research data.
//!
//! Every identifier that goes into stored research data (exposures, survey
//! responses, metric events) is replaced by a [`UnitHash`]: the lowercase hex
//! HMAC-SHA256 of the raw identifier (its UTF-8 bytes) under the study's
//! secret [`StudyKey`]:
//!
//! ```text
//! unit_hash = hex(HMAC-SHA256(key = study_key_bytes, message = utf8(raw_id)))
//! ```
//!
//! The same raw identifier always gives the same hash under one key, so data
//! can be joined across tables and waves; without the key the mapping can
//! neither be recomputed nor inverted by trying candidate identifiers.
//! **Destroying the study key (every copy) makes the stored data
//! anonymous**: nothing links a hash back to a person any more. Keep the key
//! out of the database and out of backups of the data.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;

/// The smallest accepted key length in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// A study's secret pseudonymisation key (at least 32 bytes). Its `Debug`
/// output never shows the key; the bytes are overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct StudyKey(Vec<u8>);

/// Why a key could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a study key needs at least {MIN_KEY_BYTES} bytes, found {0}")]
    TooShort(usize),
    #[error("a study key must be hexadecimal: {0}")]
    NotHex(String),
}

impl StudyKey {
    /// From raw bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<StudyKey, KeyError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(StudyKey(bytes.to_vec()))
    }

    /// From hex (upper or lower case; at least 64 digits).
    pub fn from_hex(s: &str) -> Result<StudyKey, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|e| KeyError::NotHex(e.to_string()))?;
        StudyKey::from_bytes(&bytes)
    }

    /// From the contents of a key file: the key in hex, possibly split over
    /// several lines; whitespace and lines starting with `#` are ignored.
    pub fn from_key_file(contents: &str) -> Result<StudyKey, KeyError> {
        let digits: String = contents
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        StudyKey::from_hex(&digits)
    }

    /// A key file for this key (a comment line, then the key in hex).
    pub fn to_key_file(&self) -> String {
        format!(
            "# Commonlab study key {}. Destroying every copy anonymises the data.\n{}\n",
            self.fingerprint(),
            hex::encode(&self.0)
        )
    }

    /// A secret of 32 bytes for one purpose, derived from this key:
    /// `HMAC-SHA256(key = utf8(label), message = study_key_bytes)` (HKDF's
    /// extract step with the label as salt). Every replica holding the
    /// study key file derives the same one. The label is the HMAC key, not
    /// the message, so no unit's pseudonym (`HMAC(study_key, raw_id)`,
    /// which is stored) can equal a derived secret, whatever id is chosen;
    /// and a secret for one label (survey link tokens, form tokens) reveals
    /// neither the study key nor another label's secret.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(label.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(&self.0);
        mac.finalize().into_bytes().into()
    }

    /// A public identifier for the key, to check that the right key is
    /// loaded: the first 8 bytes (16 hex digits) of
    /// SHA-256("commonlab-study-key:" || key). Reveals nothing useful about it.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"commonlab-study-key:");
        h.update(&self.0);
        hex::encode(&h.finalize()[..8])
    }
}

impl fmt::Debug for StudyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StudyKey(<redacted>, fingerprint {})",
            self.fingerprint()
        )
    }
}

impl Drop for StudyKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// A pseudonymised unit identifier: 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UnitHash(String);

impl UnitHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UnitHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `hex(HMAC-SHA256(key, utf8(raw_id)))`.
pub fn pseudonymise(key: &StudyKey, raw_id: &str) -> UnitHash {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(raw_id.as_bytes());
    UnitHash(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_matches_an_independent_hmac() {
        // Key of 32 bytes 0x0b..; value checked against Python's hmac module:
        // hmac.new(bytes([0x0b]*32), b"user-42", hashlib.sha256).hexdigest()
        let key = StudyKey::from_bytes(&[0x0b; 32]).unwrap();
        let h = pseudonymise(&key, "user-42");
        assert_eq!(h.as_str().len(), 64);
        assert_eq!(h, pseudonymise(&key, "user-42"));
        assert_ne!(h, pseudonymise(&key, "user-43"));
        assert_eq!(h.as_str(), KNOWN);
    }

    #[test]
    fn derived_secrets_match_an_independent_hmac_and_differ_by_label() {
        // hmac.new(b"commonlab survey token v1", bytes([0x0b]*32),
        //          hashlib.sha256).hexdigest()
        let key = StudyKey::from_bytes(&[0x0b; 32]).unwrap();
        assert_eq!(
            hex::encode(key.derive("commonlab survey token v1")),
            "332cccaf30462b75351b7fb45cc313d2d4f75094e6019bb8ea626e71ea51b220"
        );
        assert_ne!(key.derive("a"), key.derive("b"));
        // Not the pseudonym of a unit whose id is the label.
        assert_ne!(
            pseudonymise(&key, "commonlab survey token v1").as_str(),
            hex::encode(key.derive("commonlab survey token v1"))
        );
    }

    const KNOWN: &str = include_str!("experiments/testdata/hmac_known.txt");

    #[test]
    fn key_constructors() {
        assert_eq!(StudyKey::from_bytes(&[1; 31]), Err(KeyError::TooShort(31)));
        let hex64 = "0b".repeat(32);
        let a = StudyKey::from_hex(&hex64).unwrap();
        let b = StudyKey::from_key_file(&format!(
            "# a comment\n{}\n  {}\n",
            &hex64[..32],
            &hex64[32..]
        ))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(StudyKey::from_key_file(&a.to_key_file()).unwrap(), a);
        assert!(matches!(StudyKey::from_hex("zz"), Err(KeyError::NotHex(_))));
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("0b0b"), "{dbg}");
        assert!(dbg.contains(&a.fingerprint()));
    }
}
