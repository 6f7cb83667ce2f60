//! HubSpot's token response, read tolerantly, and the types `oauth2` needs to carry it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::clock::saturating_add;
use crate::connector::TokenSet;
use crate::error::{Error, ErrorCode, HubSpotError};
use crate::scope::Scope;
use crate::secret::{AccessToken, RefreshToken};

/// The lifetime assumed when HubSpot sends no `expires_in` (HubSpot documents 30 minutes).
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(1800);
/// The longest lifetime believed; a larger `expires_in` is clamped so the token is still refreshed daily.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// `token_type`, compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub(crate) enum HubSpotTokenType {
    #[default]
    Bearer,
    Other(String),
}

impl<'de> Deserialize<'de> for HubSpotTokenType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Option::<Value>::deserialize(deserializer)?;
        Ok(match value {
            None | Some(Value::Null) => HubSpotTokenType::Bearer,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("bearer") => HubSpotTokenType::Bearer,
            Some(Value::String(s)) => HubSpotTokenType::Other(s.chars().take(40).collect()),
            Some(other) => HubSpotTokenType::Other(kind_of(&other).to_owned()),
        })
    }
}

impl oauth2::TokenType for HubSpotTokenType {}

/// The token endpoint's success body. Only `access_token` is required to parse; the rest is checked afterwards
/// so every oddity gets a precise, secret-free error.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct TokenResponseBody {
    access_token: oauth2::AccessToken,
    #[serde(default)]
    token_type: HubSpotTokenType,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    refresh_token: Option<Value>,
    #[serde(default)]
    hub_id: Option<Value>,
    #[serde(default)]
    user_id: Option<Value>,
    #[serde(default)]
    scopes: Option<Value>,
    #[serde(default)]
    scope: Option<Value>,
    /// An RFC 6749 `error` beside a token: the answer is an error, whatever else it holds.
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    error_description: Option<Value>,
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default, rename = "correlationId")]
    correlation_id: Option<Value>,
}

impl oauth2::TokenResponse for TokenResponseBody {
    type TokenType = HubSpotTokenType;

    fn access_token(&self) -> &oauth2::AccessToken {
        &self.access_token
    }
    fn token_type(&self) -> &HubSpotTokenType {
        &self.token_type
    }
    fn expires_in(&self) -> Option<Duration> {
        parse_expires_in(self.expires_in.as_ref()).ok()
    }
    fn refresh_token(&self) -> Option<&oauth2::RefreshToken> {
        None
    }
    fn scopes(&self) -> Option<&Vec<oauth2::Scope>> {
        None
    }
}

fn garbage(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::HubspotUnavailable, msg).permanent()
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `expires_in` as a duration: a number or a numeric string; missing or null means HubSpot's documented
/// 30 minutes; zero means already expired; negative, fractional-garbage or non-numeric is refused; anything
/// longer than a day is clamped to a day.
pub(crate) fn parse_expires_in(value: Option<&Value>) -> Result<Duration, Error> {
    let secs: i128 = match value {
        None | Some(Value::Null) => return Ok(DEFAULT_LIFETIME),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i128::from(i),
            (_, Some(u), _) => i128::from(u),
            (_, _, Some(f)) if f.is_finite() => {
                if f < 0.0 {
                    -1
                } else if f > 1e12 {
                    i128::MAX
                } else {
                    f as i128
                }
            }
            _ => return Err(garbage("HubSpot's token response has an unreadable `expires_in`")),
        },
        Some(Value::String(s)) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| garbage("HubSpot's token response has an `expires_in` that is not a number"))?,
        Some(other) => {
            return Err(garbage(format!(
                "HubSpot's token response has `expires_in` as {}, not a number",
                kind_of(other)
            )));
        }
    };
    if secs < 0 {
        return Err(garbage("HubSpot's token response has a negative `expires_in`"));
    }
    let secs = u64::try_from(secs).unwrap_or(u64::MAX);
    Ok(Duration::from_secs(secs).min(MAX_LIFETIME))
}

fn id_field(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn scope_list(scopes: Option<&Value>, scope: Option<&Value>) -> Option<Vec<Scope>> {
    match (scopes, scope) {
        (Some(Value::Array(items)), _) => {
            Some(items.iter().filter_map(Value::as_str).map(Scope::new).filter(|s| !s.as_str().is_empty()).collect())
        }
        (Some(Value::String(s)), _) | (_, Some(Value::String(s))) => Some(Scope::parse_list(s)),
        _ => None,
    }
}

/// Whether `token` can be used as a token: visible ASCII only (no spaces, line breaks, control characters or
/// anything a header could be split on).
fn is_token_text(token: &str) -> bool {
    !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads a token endpoint's 2xx body: [`TokenResponseBody`], then [`TokenResponseBody::into_token_set`]. The
/// connector reads through `oauth2`; this is the same reading for tests and fuzzing.
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn read_token_answer(
    raw: &[u8],
    requested_at: SystemTime,
    presented: Option<&RefreshToken>,
) -> Result<TokenSet, Error> {
    let body: TokenResponseBody = serde_json::from_slice(raw)
        .map_err(|_| garbage("HubSpot's token response is not JSON or is missing `access_token`"))?;
    body.into_token_set(requested_at, presented)
}

impl TokenResponseBody {
    /// HubSpot's error, when the answer carries an `error` beside its token (it is then not a success).
    pub(crate) fn error_body(&self) -> Option<HubSpotError> {
        if self.error.as_ref().is_none_or(Value::is_null) {
            return None;
        }
        let raw = serde_json::to_vec(&serde_json::json!({
            "error": self.error, "error_description": self.error_description, "status": self.status,
            "message": self.message, "correlationId": self.correlation_id,
        }))
        .ok()?;
        Some(HubSpotError::from_json(Some(http::StatusCode::OK), &raw).unwrap_or_default())
    }

    /// Checks the body and turns it into a [`TokenSet`], expiring `expires_in` after `requested_at`.
    /// `presented` is the refresh token sent with a refresh, kept when HubSpot returns none.
    pub(crate) fn into_token_set(
        self,
        requested_at: SystemTime,
        presented: Option<&RefreshToken>,
    ) -> Result<TokenSet, Error> {
        if self.error.as_ref().is_some_and(|e| !e.is_null()) {
            return Err(garbage("HubSpot's token response holds both a token and an `error`; it is not used"));
        }
        if let HubSpotTokenType::Other(kind) = &self.token_type {
            return Err(garbage(format!("HubSpot issued a token of type {kind:?}; only bearer tokens can be used")));
        }
        let access = self.access_token.into_secret();
        if access.trim().is_empty() {
            return Err(garbage("HubSpot's token response has an empty `access_token`"));
        }
        if !is_token_text(&access) {
            return Err(garbage(
                "HubSpot's `access_token` holds characters no token holds (spaces, line breaks, control characters \
                 or non-ASCII); it is not stored",
            ));
        }
        let lifetime = parse_expires_in(self.expires_in.as_ref())?;
        let returned = match self.refresh_token {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) if !is_token_text(&s) => {
                return Err(garbage(
                    "HubSpot's `refresh_token` holds characters no token holds (spaces, line breaks, control \
                     characters or non-ASCII); it is not stored",
                ));
            }
            Some(Value::String(s)) => Some(RefreshToken::new(s)),
            Some(other) => {
                return Err(garbage(format!(
                    "HubSpot's token response has `refresh_token` as {}, not a string",
                    kind_of(&other)
                )));
            }
        };
        let rotated = match (&returned, presented) {
            (Some(new), Some(old)) => new.secret() != old.secret(),
            _ => false,
        };
        let refresh_token = returned.or_else(|| presented.cloned());
        let mut set = TokenSet::new(AccessToken::new(access), refresh_token, requested_at, lifetime);
        set.refresh_token_rotated = rotated;
        set.expires_at = saturating_add(requested_at, lifetime);
        set.portal_id = id_field(self.hub_id.as_ref());
        set.user_id = id_field(self.user_id.as_ref());
        set.scopes = scope_list(self.scopes.as_ref(), self.scope.as_ref());
        Ok(set)
    }
}

/// The error body `oauth2` parses from a 2xx answer that is not 200 (the transport turns every other status into
/// a typed error first). Any JSON is accepted; it is read as a [`HubSpotError`].
#[derive(Debug, Serialize)]
pub(crate) struct TokenErrorBody(pub(crate) HubSpotError);

impl<'de> Deserialize<'de> for TokenErrorBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let bytes = serde_json::to_vec(&value).map_err(serde::de::Error::custom)?;
        Ok(TokenErrorBody(HubSpotError::from_json(None, &bytes).unwrap_or_default()))
    }
}

impl fmt::Display for TokenErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.text().unwrap_or("HubSpot error"))
    }
}

impl oauth2::ErrorResponse for TokenErrorBody {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<TokenSet, String> {
        let body: TokenResponseBody = serde_json::from_value(v).map_err(|e| e.to_string())?;
        body.into_token_set(std::time::UNIX_EPOCH, None).map_err(|e| e.to_string())
    }

    fn lifetime(v: Value) -> Result<Duration, String> {
        let set = parse(json!({"access_token": "a", "token_type": "bearer", "expires_in": v}))?;
        Ok(set.expires_at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
    }

    #[test]
    fn expires_in_shapes() {
        assert_eq!(lifetime(json!(1800)), Ok(Duration::from_secs(1800)));
        assert_eq!(lifetime(json!("1800")), Ok(Duration::from_secs(1800)));
        assert_eq!(lifetime(json!(" 60 ")), Ok(Duration::from_secs(60)));
        assert_eq!(lifetime(json!(null)), Ok(DEFAULT_LIFETIME));
        assert_eq!(lifetime(json!(0)), Ok(Duration::ZERO));
        assert_eq!(lifetime(json!(18446744073709551615u64)), Ok(MAX_LIFETIME));
        assert_eq!(lifetime(json!(1e300)), Ok(MAX_LIFETIME));
        assert_eq!(lifetime(json!("99999999999999999999999999")), Ok(MAX_LIFETIME));
        assert!(lifetime(json!(-1)).unwrap_err().contains("negative"));
        assert!(lifetime(json!("-5")).unwrap_err().contains("negative"));
        assert!(lifetime(json!("soon")).unwrap_err().contains("not a number"));
        assert!(lifetime(json!(true)).unwrap_err().contains("boolean"));
        let missing = parse(json!({"access_token": "a"})).unwrap();
        assert_eq!(missing.expires_at, std::time::UNIX_EPOCH + DEFAULT_LIFETIME);
    }

    #[test]
    fn token_type_any_case_and_unknown() {
        for t in ["bearer", "Bearer", "BEARER", "bEaReR"] {
            assert!(parse(json!({"access_token": "a", "token_type": t})).is_ok(), "{t}");
        }
        let err = parse(json!({"access_token": "a", "token_type": "mac"})).unwrap_err();
        assert!(err.contains("\"mac\""), "{err}");
        assert!(parse(json!({"access_token": "a", "token_type": 5})).is_err());
    }

    #[test]
    fn missing_or_empty_access_token() {
        assert!(parse(json!({"token_type": "bearer"})).unwrap_err().contains("access_token"));
        assert!(parse(json!({"access_token": " "})).unwrap_err().contains("empty"));
    }

    #[test]
    fn unknown_fields_and_2026_extras() {
        let set = parse(json!({
            "access_token": "a", "token_type": "bearer", "expires_in": 1800, "refresh_token": "r",
            "hub_id": 62515, "user_id": "123", "scopes": ["oauth", "crm.objects.contacts.read"],
            "token_use": "access_token", "id_token": "x", "brand_new": {"nested": true}
        }))
        .unwrap();
        assert_eq!(set.portal_id, Some(62515));
        assert_eq!(set.user_id, Some(123));
        assert_eq!(set.scopes.unwrap().len(), 2);
        assert_eq!(set.refresh_token.unwrap().secret(), "r");
    }

    #[test]
    fn a_token_with_an_error_is_an_error() {
        // Finding 9: both `access_token` and `error`.
        let body = json!({"access_token": "a", "error": "invalid_grant", "error_description": "no"});
        assert!(parse(body.clone()).unwrap_err().contains("error"));
        let parsed: TokenResponseBody = serde_json::from_value(body).unwrap();
        assert_eq!(parsed.error_body().unwrap().error.as_deref(), Some("invalid_grant"));
        assert!(parse(json!({"access_token": "a", "error": null})).is_ok());
    }

    #[test]
    fn tokens_with_line_breaks_or_spaces_are_refused() {
        for bad in ["a\r\nX-Injected: 1", "a b", "a\u{0}", "tok\u{e9}n", "a\n"] {
            assert!(parse(json!({"access_token": bad})).is_err(), "{bad:?}");
            assert!(parse(json!({"access_token": "a", "refresh_token": bad})).is_err(), "{bad:?}");
        }
        assert!(parse(json!({"access_token": "CN-a_b.c~d+e/f=", "refresh_token": "6f18f21e-a743"})).is_ok());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use serde_json::json;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Any bytes: a token set or a typed error, never a panic; an accepted token is visible ASCII.
            #[test]
            fn any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Ok(set) = read_token_answer(&raw, std::time::UNIX_EPOCH, None) {
                    prop_assert!(is_token_text(set.access_token.secret()));
                }
            }

            /// Any JSON of the token shape: accepted exactly when the tokens are clean and there is no `error`.
            #[test]
            fn token_shapes(
                access in "[ -~\r\n\t]{0,40}",
                refresh in proptest::option::of("[ -~\r\n]{0,40}"),
                expires in proptest::option::of(any::<i64>()),
                error in proptest::option::of("[a-z_]{1,12}"),
            ) {
                let mut v = json!({"access_token": access, "token_type": "bearer"});
                if let Some(r) = &refresh { v["refresh_token"] = json!(r); }
                if let Some(e) = expires { v["expires_in"] = json!(e); }
                if let Some(e) = &error { v["error"] = json!(e); }
                let result = read_token_answer(&serde_json::to_vec(&v).unwrap(), std::time::UNIX_EPOCH, None);
                let clean = is_token_text(&access)
                    && refresh.as_deref().is_none_or(|r| r.trim().is_empty() || is_token_text(r))
                    && expires.is_none_or(|e| e >= 0)
                    && error.is_none();
                prop_assert_eq!(result.is_ok(), clean, "{:?}", result.err());
                if let Ok(set) = result {
                    prop_assert_eq!(set.access_token.secret(), access.as_str());
                    prop_assert!(set.expires_at <= std::time::UNIX_EPOCH + MAX_LIFETIME);
                }
            }
        }
    }

    #[test]
    fn refresh_without_refresh_token_keeps_the_presented_one() {
        let body: TokenResponseBody = serde_json::from_value(json!({"access_token": "a"})).unwrap();
        let old = RefreshToken::new("old");
        let set = body.into_token_set(std::time::UNIX_EPOCH, Some(&old)).unwrap();
        assert_eq!(set.refresh_token.unwrap().secret(), "old");
        assert!(!set.refresh_token_rotated);
        let body: TokenResponseBody =
            serde_json::from_value(json!({"access_token": "a", "refresh_token": "new"})).unwrap();
        let set = body.into_token_set(std::time::UNIX_EPOCH, Some(&old)).unwrap();
        assert_eq!(set.refresh_token.unwrap().secret(), "new");
        assert!(set.refresh_token_rotated);
    }
}
