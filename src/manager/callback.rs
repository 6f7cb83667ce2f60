//! The OAuth callback's parameters, read strictly, and same-origin return paths.

use std::fmt;

use crate::error::{Error, ErrorCode, Result};
use crate::secret::{AuthorizationCode, CsrfState};

/// The parameters HubSpot's redirect brings back: `code` and `state`, or `error` and `error_description`.
///
/// Parsing is strict: a repeated parameter, a missing state with a code, or an over-long value is refused with
/// [`ErrorCode::InvalidState`] before anything is looked up or exchanged.
pub struct Callback {
    pub(crate) code: Option<AuthorizationCode>,
    pub(crate) state: Option<CsrfState>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("code", &self.code)
            .field("state", &self.state)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

const MAX_VALUE: usize = 2048;

fn malformed(why: &str) -> Error {
    Error::new(ErrorCode::InvalidState, format!("the OAuth callback is malformed: {why}; nothing was exchanged"))
}

impl Callback {
    /// Reads a query string (with or without the leading `?`).
    pub fn from_query(query: &str) -> Result<Self> {
        let query = query.strip_prefix('?').unwrap_or(query);
        if query.len() > 16 * 1024 {
            return Err(malformed("the query string is too long"));
        }
        let mut cb = Callback { code: None, state: None, error: None, error_description: None };
        let mut seen: Vec<String> = Vec::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let key = key.into_owned();
            if !matches!(key.as_str(), "code" | "state" | "error" | "error_description") {
                continue; // HubSpot or a proxy may add parameters; they are ignored.
            }
            if seen.contains(&key) {
                return Err(malformed(&format!("the parameter `{key}` appears more than once")));
            }
            if value.len() > MAX_VALUE {
                return Err(malformed(&format!("the parameter `{key}` is too long")));
            }
            if value.chars().any(char::is_control) {
                return Err(malformed(&format!("the parameter `{key}` holds control characters")));
            }
            let value = value.into_owned();
            match key.as_str() {
                "code" if !value.is_empty() => cb.code = Some(AuthorizationCode::new(value)),
                "state" if !value.is_empty() => cb.state = Some(CsrfState::new(value)),
                "error" if !value.is_empty() => cb.error = Some(value),
                "error_description" => cb.error_description = Some(value.chars().take(300).collect()),
                _ => {}
            }
            seen.push(key);
        }
        if cb.code.is_none() && cb.error.is_none() {
            return Err(malformed("it has neither `code` nor `error`"));
        }
        if cb.code.is_some() && cb.state.is_none() {
            return Err(malformed("it has a `code` but no `state`"));
        }
        Ok(cb)
    }

    /// Reads the full callback URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url.trim()).map_err(|_| malformed("it is not a URL"))?;
        Self::from_query(parsed.query().unwrap_or(""))
    }

    /// Whether HubSpot redirected back with `error=`.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }

    /// HubSpot's `error`, if any (such as `access_denied`).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

/// Checks a return path: a same-origin relative path (`/settings/integrations?x=1`) and nothing that a browser
/// could read as another origin (`//host`, `/\host`, `https:`, encoded variants, control characters), nor a
/// `hubspot_connection` or `hubspot_error` parameter of its own (the callback adds the real one).
///
/// [`Connections::complete`](crate::Connections::complete) checks the stored return path again, so a pending
/// authorization written by someone else into a shared store cannot turn the callback into an open redirect.
pub fn validate_return_path(path: &str) -> Result<String> {
    let refuse = |why: &str| {
        Error::new(ErrorCode::InvalidConfig, format!("the return path is refused: {why}; use a path like /settings"))
    };
    if path.is_empty() || path.len() > 1024 {
        return Err(refuse("it is empty or too long"));
    }
    // Decode repeatedly so %2F%2F and %252F%252F are judged as what a browser may end up seeing.
    let mut decoded = path.to_owned();
    for _ in 0..3 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    for candidate in [path, decoded.as_str()] {
        if !candidate.starts_with('/') {
            return Err(refuse("it is not a path starting with /"));
        }
        let second = candidate[1..].chars().next();
        if matches!(second, Some('/' | '\\')) {
            return Err(refuse("it starts with // or /\\ (another host)"));
        }
        if candidate.chars().any(|c| c.is_control() || c == '\\' || c.is_whitespace()) {
            return Err(refuse("it holds backslashes, spaces or control characters"));
        }
        let lower = candidate.to_ascii_lowercase();
        if RESERVED_PARAMS.iter().any(|p| lower.contains(p)) {
            return Err(refuse("it carries a hubspot_connection or hubspot_error parameter of its own"));
        }
        let before_query = candidate.split(['?', '#']).next().unwrap_or("");
        if before_query.contains(':') && before_query.split('/').nth(1).is_some_and(|seg| seg.contains(':')) {
            return Err(refuse("it looks like a URL with a scheme"));
        }
    }
    Ok(path.to_owned())
}

/// The parameters the callback route adds to a return path; a return path may not bring its own.
const RESERVED_PARAMS: [&str; 2] = ["hubspot_connection", "hubspot_error"];

/// The stored return path, checked again: `None` (and a warning) when it is not one [`validate_return_path`] accepts.
pub(crate) fn recheck_return_path(path: Option<String>) -> Option<String> {
    let path = path?;
    match validate_return_path(&path) {
        Ok(path) => Some(path),
        Err(_) => {
            tracing::warn!("a pending authorization held a return path that is refused; it is not used");
            None
        }
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B").replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_good_callback() {
        let cb = Callback::from_query("?code=abc&state=xyz&extra=1").unwrap();
        assert_eq!(cb.code.unwrap().secret(), "abc");
        assert_eq!(cb.state.unwrap().secret(), "xyz");
        let cb =
            Callback::from_url("http://localhost:3000/cb?error=access_denied&error_description=no&state=s").unwrap();
        assert!(cb.is_error());
        assert_eq!(cb.error(), Some("access_denied"));
    }

    #[test]
    fn refuses_malformed_callbacks() {
        for q in [
            "",
            "code=a&code=b&state=s",
            "code=a&state=s&state=t",
            "code=a",
            "state=s",
            "code=&state=s",
            "code=a%00b&state=s",
            &format!("code={}&state=s", "a".repeat(5000)),
        ] {
            let err = Callback::from_query(q).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidState, "{q}");
        }
        assert_eq!(Callback::from_url("not a url").unwrap_err().code(), ErrorCode::InvalidState);
    }

    #[test]
    fn debug_hides_code_and_state() {
        let cb = Callback::from_query("code=CANARY1&state=CANARY2").unwrap();
        assert!(!format!("{cb:?}").contains("CANARY"));
    }

    #[test]
    fn a_stored_return_path_is_checked_again() {
        // Finding 5: whoever can write the store cannot turn the callback into an open redirect.
        assert_eq!(recheck_return_path(Some("//evil.example".into())), None);
        assert_eq!(recheck_return_path(Some("/ok?hubspot_connection=forged".into())), None);
        assert_eq!(recheck_return_path(Some("/settings".into())).as_deref(), Some("/settings"));
        assert_eq!(recheck_return_path(None), None);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// What a browser does with the Location header: resolve it against the page's URL.
        fn resolve(path: &str) -> Option<url::Url> {
            url::Url::parse("https://vendor.example/app/page").ok()?.join(path).ok()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Accepted ⇒ same origin, also after a browser resolves it, and also with the callback's parameter.
            #[test]
            fn accepted_means_same_origin(path in prop_oneof![
                ".{0,40}",
                r"[/\\%:a-z0-9.@?#&=]{0,24}",
                r"(/|//|/\\|%2[fF]|%5[cC]|https?:|javascript:|@|\.|[a-z]{1,5}|\?|#|%25|%09|\t| ){0,8}",
            ]) {
                if let Ok(accepted) = validate_return_path(&path) {
                    prop_assert_eq!(&accepted, &path);
                    for candidate in [accepted.clone(), format!("{accepted}?hubspot_connection=c_1")] {
                        let url = resolve(&candidate);
                        prop_assert!(url.is_some(), "{candidate:?} does not resolve");
                        let url = url.unwrap();
                        prop_assert_eq!(url.origin(), resolve("/").unwrap().origin(), "{:?} left the origin", candidate);
                    }
                    prop_assert!(!accepted.to_ascii_lowercase().contains("hubspot_connection"));
                }
            }

            /// Any callback query: read or refused with INVALID_STATE, never a panic; a code always has a state.
            #[test]
            fn callback_queries(query in prop_oneof![
                ".{0,80}",
                "((code|state|error|error_description|x)=[a-z0-9%&=]{0,8}&?){0,6}",
            ]) {
                match Callback::from_query(&query) {
                    Ok(cb) => {
                        prop_assert!(cb.code.is_some() || cb.error.is_some());
                        prop_assert!(cb.code.is_none() || cb.state.is_some());
                        let debug = format!("{cb:?}");
                        prop_assert!(!debug.contains("code: Some(\""));
                    }
                    Err(e) => prop_assert_eq!(e.code(), ErrorCode::InvalidState),
                }
            }
        }
    }

    #[test]
    fn return_paths() {
        for ok in ["/", "/settings", "/settings/integrations?tab=hubspot#top", "/a/b:c", "/x?next=https://y"] {
            assert_eq!(validate_return_path(ok).unwrap(), ok, "{ok}");
        }
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "javascript:alert(1)",
            "evil.com",
            "/%2Fevil.com",
            "/%5Cevil.com",
            "%2F%2Fevil.com",
            "/%252F%252Fevil.com",
            "/\tevil",
            "/ok\r\nLocation: https://evil.com",
            "",
            " /x",
            "/https:evil.com",
            "/settings?hubspot_connection=forged",
            "/settings?x=1&hubspot_error=ACCESS_DENIED",
            "/settings?%68ubspot_connection=forged",
            "/settings#HUBSPOT_CONNECTION=x",
        ] {
            assert!(validate_return_path(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
