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
    Error::new(ErrorCode::HubspotUnavailable, msg).with_retryable(false)
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

impl TokenResponseBody {
    /// Checks the body and turns it into a [`TokenSet`], expiring `expires_in` after `requested_at`.
    /// `presented` is the refresh token sent with a refresh, kept when HubSpot returns none.
    pub(crate) fn into_token_set(
        self,
        requested_at: SystemTime,
        presented: Option<&RefreshToken>,
    ) -> Result<TokenSet, Error> {
        if let HubSpotTokenType::Other(kind) = &self.token_type {
            return Err(garbage(format!("HubSpot issued a token of type {kind:?}; only bearer tokens can be used")));
        }
        let access = self.access_token.into_secret();
        if access.trim().is_empty() {
            return Err(garbage("HubSpot's token response has an empty `access_token`"));
        }
        let lifetime = parse_expires_in(self.expires_in.as_ref())?;
        let returned = match self.refresh_token {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
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
