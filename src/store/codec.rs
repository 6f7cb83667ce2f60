//! What the built-in backends share to write records as text and numbers: Unix milliseconds, `u64` as `i64`, the
//! credential kind and the last error.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::store_error;
use crate::connection::{CredentialKind, LastError};
use crate::error::{Error, ErrorCode, Result};

/// Unix milliseconds, rounded down (negative before 1970), saturating far out.
pub(super) fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let ms = before.as_millis() + u128::from(before.subsec_nanos() % 1_000_000 != 0);
            i64::try_from(ms).map(|ms| -ms).unwrap_or(i64::MIN)
        }
    }
}

/// The time `ms` Unix milliseconds stand for, `None` when out of `SystemTime`'s range.
pub(super) fn from_ms(ms: i64) -> Option<SystemTime> {
    let span = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { UNIX_EPOCH.checked_add(span) } else { UNIX_EPOCH.checked_sub(span) }
}

/// A `u64` as a signed 64-bit SQL integer, bit for bit (so every value round-trips and equality holds).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn to_i64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// The inverse of [`to_i64`].
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn from_i64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// The credential kind named by [`CredentialKind::as_str`].
pub(super) fn parse_kind(name: &str) -> Option<CredentialKind> {
    [CredentialKind::OAuth, CredentialKind::PrivateApp].into_iter().find(|k| k.as_str() == name)
}

/// [`LastError`] as stored: its time in Unix milliseconds like every other time here.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredLastError {
    pub(super) code: ErrorCode,
    pub(super) message: String,
    pub(super) at_ms: i64,
}

impl StoredLastError {
    pub(super) fn new(e: &LastError) -> Self {
        Self { code: e.code, message: e.message.clone(), at_ms: to_ms(e.at) }
    }

    /// Back to a [`LastError`]; `None` when the time is out of range.
    pub(super) fn into_last_error(self) -> Option<LastError> {
        Some(LastError { code: self.code, message: self.message, at: from_ms(self.at_ms)? })
    }
}

/// JSON text of `value`; a failure is a store error about `what`.
pub(super) fn encode_json(what: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| store_error(what, e))
}

/// `[A-Za-z0-9_]{1,32}`: safe to splice into a quoted SQL identifier or a Redis key (and short enough for
/// PostgreSQL's 63-byte identifiers with every suffix).
pub(super) fn validate_prefix(backend: &str, prefix: &str) -> Result<()> {
    if (1..=32).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::InvalidConfig,
        format!("invalid {backend} prefix {prefix:?}: use 1 to 32 ASCII letters, digits or underscores"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["a", "hubconnect", "App_2", "_", &"x".repeat(32)] {
            assert!(validate_prefix("test", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a-b", "a b", "a\"b", "a:b", "a{b", "é", &"x".repeat(33)] {
            assert_eq!(validate_prefix("test", bad).map_err(|e| e.code()), Err(ErrorCode::InvalidConfig), "{bad}");
        }
        // The longest prefix with the longest suffix fits PostgreSQL's 63-byte identifiers.
        assert!(format!("{}_connections_tenant", "x".repeat(32)).len() <= 63);
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_767_225_600_123, -1, -1_000_001, 253_402_300_799_000] {
            assert_eq!(from_ms(ms).map(to_ms), Some(ms));
        }
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_nanos(1_500_000)), -2);
        assert_eq!(to_ms(UNIX_EPOCH + Duration::from_nanos(1_999_999)), 1);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Times, `u64`s and the stored last error survive their encoding.
            #[test]
            fn round_trips(
                ms in -62_135_596_800_000i64..253_402_300_799_999,
                v in any::<u64>(),
                code in prop::sample::select(ErrorCode::ALL),
                message in ".{0,60}",
            ) {
                prop_assert_eq!(from_ms(ms).map(to_ms), Some(ms));
                prop_assert_eq!(from_i64(to_i64(v)), v);
                let e = LastError { code, message, at: from_ms(ms).unwrap() };
                let text = encode_json("test", &StoredLastError::new(&e)).unwrap();
                let back: StoredLastError = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back.into_last_error(), Some(e));
            }

            /// Arbitrary text is a serde error or a last error whose time is in range or `None`; never a panic.
            #[test]
            fn arbitrary_last_errors(text in prop_oneof![".{0,80}", r#"\{"code":"[A-Z_]{1,20}","message":".{0,10}","at_ms":-?[0-9]{1,20}\}"#]) {
                if let Ok(stored) = serde_json::from_str::<StoredLastError>(&text) {
                    let _ = stored.into_last_error();
                }
            }
        }
    }

    #[test]
    fn u64_round_trips() {
        for v in [0, 1, u64::from(u32::MAX), i64::MAX as u64, u64::MAX] {
            assert_eq!(from_i64(to_i64(v)), v);
        }
    }
}
