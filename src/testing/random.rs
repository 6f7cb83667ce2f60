//! Random identifiers shaped like HubSpot's.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;

/// A version-4 UUID, lowercase, e.g. `6f18f21e-a743-4509-b7fd-1a5e632fffa1` (refresh tokens, correlation ids).
pub(crate) fn uuid() -> String {
    let mut b: [u8; 16] = rand::thread_rng().r#gen();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// An access token: `CN` and 160 base64url characters (HubSpot's are up to 300 characters).
pub(crate) fn access_token() -> String {
    format!("CN{}", base64url(120))
}

/// An authorization code, prefixed with the hublet like HubSpot's (`na1-...`, `eu1-...`).
pub(crate) fn code(hublet: &str) -> String {
    format!("{hublet}-{}", uuid())
}

/// `len` random bytes, base64url without padding.
pub(crate) fn base64url(len: usize) -> String {
    let mut bytes = vec![0_u8; len];
    rand::thread_rng().fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A random number of `digits` decimal digits (no leading zero).
pub(crate) fn digits(digits: u32) -> String {
    let low = 10_u64.saturating_pow(digits.saturating_sub(1));
    let high = 10_u64.saturating_pow(digits);
    rand::thread_rng().gen_range(low..high).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_look_like_uuids() {
        let u = uuid();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(u.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(uuid(), uuid());
    }

    #[test]
    fn access_tokens_fit_hubspots_limit() {
        let t = access_token();
        assert!(t.starts_with("CN") && t.len() <= 300, "{t}");
        assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn digits_have_the_length_asked() {
        for _ in 0..50 {
            assert_eq!(digits(9).len(), 9);
        }
    }
}
