//! The parsers of outside input, for the fuzz targets in `fuzz/` (feature `fuzzing`; not part of the API).
//!
//! Each function reads its input as the crate does and panics only when a property the crate promises is broken
//! (the fuzzer then reports it as a crash). Nothing here is stable.
#![allow(missing_docs, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::{Duration, UNIX_EPOCH};

use crate::error::{HubSpotError, SCRUB_WINDOW, scrub};
use crate::manager::{Callback, validate_return_path};

/// The callback's query: read or refused with `INVALID_STATE`; a code always comes with a state.
pub fn callback_query(data: &[u8]) {
    let query = String::from_utf8_lossy(data);
    match Callback::from_query(&query) {
        Ok(cb) => {
            assert!(cb.code.is_some() || cb.error.is_some());
            assert!(cb.code.is_none() || cb.state.is_some());
        }
        Err(e) => assert_eq!(e.code(), crate::ErrorCode::InvalidState),
    }
}

/// The token endpoint's 2xx body: a token set whose tokens are visible ASCII, or an error.
pub fn token_answer(data: &[u8]) {
    if let Ok(set) = crate::hubspot::token::read_token_answer(data, UNIX_EPOCH, None) {
        assert!(set.access_token.secret().bytes().all(|b| b.is_ascii_graphic()));
        assert!(set.refresh_token.as_ref().is_none_or(|r| r.secret().bytes().all(|b| b.is_ascii_graphic())));
        assert!(set.expires_at <= UNIX_EPOCH + crate::hubspot::token::MAX_LIFETIME);
    }
}

/// HubSpot's error body, read as the transport reads it, with a secret planted: no 8-byte piece of it survives.
/// The first byte says how long the secret is (8 to 71 bytes of the input after it); the rest is the body.
pub fn error_body(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else { return };
    let len = 8 + usize::from(len % 64);
    if rest.len() < len {
        let _ = HubSpotError::from_json(Some(http::StatusCode::BAD_REQUEST), rest);
        return;
    }
    let (secret, body) = rest.split_at(len);
    // A secret is token text: visible ASCII without the marker's brackets.
    let secret: String =
        secret.iter().map(|&b| if b.is_ascii_alphanumeric() { b as char } else { '-' }).collect::<String>();
    let body = String::from_utf8_lossy(body).replace("SECRET", &secret);
    if let Some(e) = HubSpotError::from_json_scrubbed(Some(http::StatusCode::BAD_REQUEST), body.as_bytes(), &[&secret])
    {
        for text in e.texts() {
            for piece in secret.as_bytes().windows(SCRUB_WINDOW) {
                assert!(!text.as_bytes().windows(SCRUB_WINDOW).any(|w| w == piece), "a piece of the secret survived");
            }
        }
    }
}

/// The scrubber on its own: the first byte gives the secret's length, the rest is the text.
pub fn scrubber(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else { return };
    let len = 8 + usize::from(len % 64);
    if rest.len() < len {
        return;
    }
    let (secret, text) = rest.split_at(len);
    let secret: String = secret.iter().map(|&b| if b.is_ascii_alphanumeric() { b as char } else { '_' }).collect();
    let text = String::from_utf8_lossy(text).replace('\u{1}', &secret);
    let out = scrub(&text, &[&secret]);
    for piece in secret.as_bytes().windows(SCRUB_WINDOW) {
        assert!(!out.as_bytes().windows(SCRUB_WINDOW).any(|w| w == piece), "a piece of the secret survived");
    }
}

/// `Retry-After`: at most a day, or nothing.
pub fn retry_after(data: &[u8]) {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    if let Some(d) = crate::hubspot::http::parse_retry_after(data, now) {
        assert!(d <= crate::hubspot::http::MAX_RETRY_AFTER);
    }
}

/// The return-path validator: accepted ⇒ the same origin after a browser resolves it, with the callback's
/// parameter added too.
pub fn return_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Ok(accepted) = validate_return_path(path) else { return };
    let base = url::Url::parse("https://vendor.example/app/page").unwrap();
    for candidate in [accepted.clone(), format!("{accepted}?hubspot_connection=c_1")] {
        let resolved = base.join(&candidate).expect("an accepted return path resolves");
        assert_eq!(resolved.origin(), base.origin(), "{candidate:?} left the origin");
    }
}

/// The encryption envelope: arbitrary text never opens; a sealed value mutated by the input never opens as
/// anything but its own plaintext.
pub fn envelope(data: &[u8]) {
    crate::store::encrypted::fuzz_envelope(data);
}

/// The Redis store's records: arbitrary text is a typed error that never quotes the record.
#[cfg(feature = "redis")]
pub fn store_record(data: &[u8]) {
    crate::store::redis::fuzz_record(data);
}
