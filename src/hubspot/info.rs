//! Token metadata (2026-03 introspection and v1's metadata GETs) and account info, read tolerantly.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::connector::{AccountInfo, AccountType};
use crate::error::{Error, ErrorCode};
use crate::hubspot::token::scope_list;
use crate::scope::Scope;

/// Which kind of token a piece of metadata describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenKind {
    /// An access token.
    AccessToken,
    /// A refresh token.
    RefreshToken,
}

impl TokenKind {
    /// The `token_type_hint` value: `access_token` or `refresh_token`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::AccessToken => "access_token",
            TokenKind::RefreshToken => "refresh_token",
        }
    }
}

/// What HubSpot says about a live token: introspection (2026-03) or the v1 metadata endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// Which token this describes.
    pub kind: TokenKind,
    /// The portal id (`hub_id`).
    pub portal_id: u64,
    /// The portal's domain (`hub_domain`).
    pub hub_domain: Option<String>,
    /// The installing user's email (`user`).
    pub user: Option<String>,
    /// The installing user's id (`user_id`).
    pub user_id: Option<u64>,
    /// The app id (`app_id`; v1 refresh-token metadata has none).
    pub app_id: Option<u64>,
    /// The client id (`client_id`), when reported.
    pub client_id: Option<String>,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// Time left on an access token (`expires_in`).
    pub expires_in: Option<Duration>,
}

fn garbage(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::HubspotUnavailable, msg).permanent()
}

fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(garbage(format!("HubSpot's {what} is not a JSON object"))),
        Err(_) => Err(garbage(format!("HubSpot's {what} is not JSON"))),
    }
}

fn uint(map: &Map<String, Value>, key: &str) -> Option<u64> {
    match map.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.chars().take(320).collect()),
        _ => None,
    }
}

/// Reads token metadata. `Ok(None)` for `{"active": false}`.
pub(crate) fn parse_token_info(body: &[u8], kind: TokenKind) -> Result<Option<TokenInfo>, Error> {
    let map = object(body, "token metadata")?;
    if map.get("active").and_then(Value::as_bool) == Some(false) {
        return Ok(None);
    }
    let kind = match map.get("token_use").and_then(Value::as_str) {
        Some("access_token") => TokenKind::AccessToken,
        Some("refresh_token") => TokenKind::RefreshToken,
        _ => kind,
    };
    let portal_id = uint(&map, "hub_id").ok_or_else(|| garbage("HubSpot's token metadata has no `hub_id`"))?;
    Ok(Some(TokenInfo {
        kind,
        portal_id,
        hub_domain: text(&map, "hub_domain"),
        user: text(&map, "user"),
        user_id: uint(&map, "user_id"),
        app_id: uint(&map, "app_id"),
        client_id: text(&map, "client_id"),
        scopes: scope_list(map.get("scopes"), map.get("scope")).unwrap_or_default(),
        expires_in: uint(&map, "expires_in").map(Duration::from_secs),
    }))
}

/// Reads `GET /account-info/…/details`.
pub(crate) fn parse_account_info(body: &[u8]) -> Result<AccountInfo, Error> {
    let map = object(body, "account info")?;
    let portal_id = uint(&map, "portalId").ok_or_else(|| garbage("HubSpot's account info has no `portalId`"))?;
    let account_type =
        text(&map, "accountType").map_or(AccountType::Other("UNKNOWN".into()), |t| AccountType::parse(&t));
    let additional_currencies = match map.get("additionalCurrencies") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).take(64).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    Ok(AccountInfo {
        portal_id,
        account_type,
        portal_name: text(&map, "portalName"),
        data_hosting_location: text(&map, "dataHostingLocation"),
        ui_domain: text(&map, "uiDomain"),
        time_zone: text(&map, "timeZone"),
        company_currency: text(&map, "companyCurrency"),
        additional_currencies,
        utc_offset: text(&map, "utcOffset"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspection_shapes() {
        let active = br#"{"active":true,"token":"t","token_use":"access_token","hub_id":62515,"user_id":123,"app_id":456,
            "client_id":"c","scopes":["oauth","crm.objects.contacts.read"],"expires_in":1700,"user":"a@b.c","hub_domain":"d.hubspot.com",
            "signed_access_token":{"hubId":62515}}"#;
        let info = parse_token_info(active, TokenKind::RefreshToken).unwrap().unwrap();
        assert_eq!(info.kind, TokenKind::AccessToken);
        assert_eq!(info.portal_id, 62515);
        assert_eq!(info.user.as_deref(), Some("a@b.c"));
        assert_eq!(info.scopes.len(), 2);
        assert_eq!(info.expires_in, Some(Duration::from_secs(1700)));
        assert_eq!(parse_token_info(br#"{"active":false}"#, TokenKind::AccessToken).unwrap(), None);
        assert!(parse_token_info(br#"{"active":true}"#, TokenKind::AccessToken).is_err());
        assert!(parse_token_info(b"<html>", TokenKind::AccessToken).is_err());
        assert!(parse_token_info(b"[]", TokenKind::AccessToken).is_err());
    }

    #[test]
    fn v1_metadata_has_no_active_field() {
        let v1 = br#"{"token":"t","user":"test@hubspot.com","hub_domain":"demo.hubapi.com","scopes":["contacts","automation","oauth"],
            "hub_id":62515,"app_id":456,"expires_in":21588,"user_id":123,"token_type":"access"}"#;
        let info = parse_token_info(v1, TokenKind::AccessToken).unwrap().unwrap();
        assert_eq!(info.app_id, Some(456));
        assert_eq!(info.scopes.len(), 3);
    }

    #[test]
    fn account_info() {
        let body = br#"{"additionalCurrencies":["NZD","AUD","EUR"],"companyCurrency":"USD","createdAt":1648840584303,"dataHostingLocation":"eu1",
            "portalId":12345678,"portalName":"Acme Inc","timeZone":"US/Eastern","uiDomain":"app-eu1.hubspot.com",
            "utcOffset":"-04:00","utcOffsetMilliseconds":-14400000,"accountType":"APP_DEVELOPER"}"#;
        let a = parse_account_info(body).unwrap();
        assert_eq!(a.portal_id, 12345678);
        assert_eq!(a.account_type, AccountType::AppDeveloper);
        assert!(a.is_eu());
        assert_eq!(a.additional_currencies.len(), 3);
        assert!(parse_account_info(br#"{"accountType":"STANDARD"}"#).is_err());
        assert_eq!(
            parse_account_info(br#"{"portalId":"5"}"#).unwrap().account_type,
            AccountType::Other("UNKNOWN".into())
        );
    }
}
