//! Personal survey links: a signed, expiring token naming the campaign, the
//! unit's pseudonym (never its raw id), the wave and the expiry.
//!
//! ```text
//! token   = "v1." base64url(payload) "." base64url(tag)       (no padding)
//! payload = expiry (i64, Unix seconds, big-endian)
//!           unit   (32 bytes: the pseudonym's 64 hex digits, decoded)
//!           len(campaign) (1 byte) campaign (UTF-8)
//!           len(wave)     (1 byte) wave     (UTF-8)
//! tag     = HMAC-SHA256(key, "v1." base64url(payload))
//! ```
//!
//! The key is not the study key itself but one derived from it
//! ([`TOKEN_KEY_LABEL`], `StudyKey::derive`), so every replica holding the
//! study key file verifies a link without shared state, and a token never
//! doubles as a pseudonym. [`verify`] checks the length bound, then the tag
//! (in constant time, before anything of the payload is read), then the
//! expiry; each failure has its own [`TokenError`], so the page can say
//! whether a link is broken, altered, or too old. Base64 is decoded
//! strictly (canonical trailing bits), so every altered character is
//! refused. Pure: the caller passes the time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The label the token key is derived from the study key with.
pub const TOKEN_KEY_LABEL: &str = "commonlab survey token v1";

/// What every token of this format starts with.
pub const TOKEN_PREFIX: &str = "v1.";

/// Longest campaign key or wave a token carries, in bytes.
pub const MAX_NAME_BYTES: usize = 100;

/// Longest token [`verify`] reads; longer input is refused unread.
pub const MAX_TOKEN_CHARS: usize = 512;

const TAG_BYTES: usize = 32;
const UNIT_BYTES: usize = 32;

/// What a personal link says: who (by pseudonym) may answer which campaign
/// and wave, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    campaign: String,
    unit: String,
    wave: String,
    expires_at: DateTime<Utc>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format (wrong prefix, not base64, too long, cut).
    #[error("this is not a survey link token")]
    Malformed,
    /// The signature does not match: altered, or signed with another key.
    #[error("this survey link has been altered")]
    Tampered,
    /// Genuine, but past its expiry.
    #[error("this survey link expired at {0}")]
    Expired(DateTime<Utc>),
    /// Claims that cannot be put in a token.
    #[error("invalid token claim {field}: {message}")]
    Claim {
        field: &'static str,
        message: &'static str,
    },
}

impl TokenClaims {
    /// Claims for `unit` (a pseudonym: 64 lowercase hex digits), checked:
    /// a non-empty campaign key and wave of at most [`MAX_NAME_BYTES`]
    /// each. The expiry is kept to the second (what the token carries).
    pub fn new(
        campaign: &str,
        unit: &str,
        wave: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<TokenClaims, TokenError> {
        let name = |field, s: &str| {
            if s.is_empty() || s.len() > MAX_NAME_BYTES {
                Err(TokenError::Claim {
                    field,
                    message: "must be 1 to 100 bytes",
                })
            } else {
                Ok(())
            }
        };
        name("campaign", campaign)?;
        name("wave", wave)?;
        if unit.len() != 64 || !unit.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(TokenError::Claim {
                field: "unit",
                message: "must be a pseudonym (64 lowercase hex digits)",
            });
        }
        let expires_at =
            DateTime::from_timestamp(expires_at.timestamp(), 0).ok_or(TokenError::Claim {
                field: "expires_at",
                message: "out of range",
            })?;
        Ok(TokenClaims {
            campaign: campaign.to_string(),
            unit: unit.to_string(),
            wave: wave.to_string(),
            expires_at,
        })
    }

    /// The campaign's key.
    pub fn campaign(&self) -> &str {
        &self.campaign
    }

    /// The unit's pseudonym (64 lowercase hex digits).
    pub fn unit(&self) -> &str {
        &self.unit
    }

    pub fn wave(&self) -> &str {
        &self.wave
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(8 + UNIT_BYTES + 2 + self.campaign.len() + self.wave.len());
        p.extend_from_slice(&self.expires_at.timestamp().to_be_bytes());
        p.extend_from_slice(&hex::decode(&self.unit).expect("checked in new"));
        for s in [&self.campaign, &self.wave] {
            p.push(u8::try_from(s.len()).expect("checked in new"));
            p.extend_from_slice(s.as_bytes());
        }
        p
    }

    fn from_payload(p: &[u8]) -> Option<TokenClaims> {
        let expiry = i64::from_be_bytes(p.get(..8)?.try_into().ok()?);
        let unit = hex::encode(p.get(8..8 + UNIT_BYTES)?);
        let mut rest = &p[8 + UNIT_BYTES..];
        let mut next = || {
            let (&n, tail) = rest.split_first()?;
            let s = std::str::from_utf8(tail.get(..usize::from(n))?).ok()?;
            rest = &tail[usize::from(n)..];
            Some(s)
        };
        let campaign = next()?;
        let wave = next()?;
        if !rest.is_empty() {
            return None;
        }
        TokenClaims::new(campaign, &unit, wave, DateTime::from_timestamp(expiry, 0)?).ok()
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The token for `claims`, signed with `key` (derive it from the study key
/// with [`TOKEN_KEY_LABEL`]). At most [`MAX_TOKEN_CHARS`] characters, all
/// URL-safe.
pub fn sign(key: &[u8], claims: &TokenClaims) -> String {
    let mut token = String::with_capacity(MAX_TOKEN_CHARS);
    token.push_str(TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(claims.payload(), &mut token);
    let mut m = mac(key);
    m.update(token.as_bytes());
    let tag = m.finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut token);
    token
}

/// The claims of `token` if it was signed with `key` and has not expired
/// at `now` (a token is valid up to, not at, its expiry).
pub fn verify(key: &[u8], token: &str, now: DateTime<Utc>) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_CHARS || !token.starts_with(TOKEN_PREFIX) {
        return Err(TokenError::Malformed);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    if signed.len() <= TOKEN_PREFIX.len() {
        return Err(TokenError::Malformed);
    }
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    if tag.len() != TAG_BYTES {
        return Err(TokenError::Malformed);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(&signed[TOKEN_PREFIX.len()..])
        .map_err(|_| TokenError::Malformed)?;
    let mut m = mac(key);
    m.update(signed.as_bytes());
    m.verify_slice(&tag).map_err(|_| TokenError::Tampered)?;
    let claims = TokenClaims::from_payload(&payload).ok_or(TokenError::Malformed)?;
    if now >= claims.expires_at {
        return Err(TokenError::Expired(claims.expires_at));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn claims() -> impl Strategy<Value = TokenClaims> {
        (
            "[a-z0-9][a-z0-9._-]{0,99}",
            "[0-9a-f]{64}",
            "\\PC{1,20}",
            0i64..4_000_000_000,
        )
            .prop_filter_map("names fit", |(c, u, w, e)| {
                TokenClaims::new(&c, &u, &w, at(e)).ok()
            })
    }

    proptest! {
        #[test]
        fn a_signed_token_verifies_to_its_claims(c in claims()) {
            let t = sign(KEY, &c);
            prop_assert!(t.len() <= MAX_TOKEN_CHARS);
            prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            prop_assert_eq!(verify(KEY, &t, at(c.expires_at().timestamp() - 1)), Ok(c));
        }

        #[test]
        fn any_single_byte_change_is_refused(c in claims(), pos in any::<prop::sample::Index>(), to in 0x21u8..0x7f) {
            let t = sign(KEY, &c);
            let mut bytes = t.clone().into_bytes();
            let i = pos.index(bytes.len());
            prop_assume!(bytes[i] != to);
            bytes[i] = to;
            let altered = String::from_utf8(bytes).unwrap();
            let now = at(c.expires_at().timestamp() - 1);
            let e = verify(KEY, &altered, now).unwrap_err();
            prop_assert!(matches!(e, TokenError::Malformed | TokenError::Tampered), "{:?}", e);
        }

        #[test]
        fn an_expired_token_is_refused(c in claims(), after in 0i64..1_000_000) {
            let t = sign(KEY, &c);
            let now = at(c.expires_at().timestamp() + after);
            prop_assert_eq!(verify(KEY, &t, now), Err(TokenError::Expired(c.expires_at())));
        }
    }

    #[test]
    fn another_key_is_tampering_and_junk_is_malformed() {
        let c = TokenClaims::new("c", &"ab".repeat(32), "baseline", at(2_000_000_000)).unwrap();
        let t = sign(KEY, &c);
        let now = at(1_000_000_000);
        assert_eq!(verify(b"another key", &t, now), Err(TokenError::Tampered));
        for junk in [
            "",
            "v1.",
            "v1..",
            "v2.AAAA.AAAA",
            "v1.AAAA",
            "x",
            &"v1.".repeat(200),
        ] {
            assert_eq!(verify(KEY, junk, now), Err(TokenError::Malformed), "{junk}");
        }
        // Cut short: the tag is the wrong length.
        assert_eq!(
            verify(KEY, &t[..t.len() - 4], now),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn claims_are_checked() {
        let unit = "ab".repeat(32);
        let when = at(1);
        assert!(TokenClaims::new("", &unit, "w", when).is_err());
        assert!(TokenClaims::new(&"c".repeat(101), &unit, "w", when).is_err());
        assert!(TokenClaims::new("c", &unit, "", when).is_err());
        assert!(TokenClaims::new("c", "user-42", "w", when).is_err());
        assert!(TokenClaims::new("c", &"AB".repeat(32), "w", when).is_err());
        let sub = DateTime::from_timestamp(5, 999_000_000).unwrap();
        assert_eq!(
            TokenClaims::new("c", &unit, "w", sub).unwrap().expires_at(),
            at(5)
        );
    }
}
