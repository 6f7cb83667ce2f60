//! The [`Connector`] trait: one OAuth provider's wire protocol, stateless. [`crate::HubSpotConnector`] is the
//! built-in implementation.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::Result;
use crate::scope::{Scope, ScopeSet};
use crate::secret::{AccessToken, AuthorizationCode, CsrfState, PkceVerifier, RefreshToken};

/// One OAuth provider's protocol: authorize URL, code exchange, refresh, identifying an installation, revoking.
///
/// Stateless: it stores nothing. The connection manager keeps the state, the verifier and the tokens.
/// Four required methods (the flow cannot be shorter); [`Connector::revoke`] defaults to "not supported".
///
/// # Implementing a connector for another provider
/// ```
/// use async_trait::async_trait;
/// use hubspot_connect::connector::{Authorization, AuthorizeRequest, Installation, TokenSet};
/// use hubspot_connect::secret::{AuthorizationCode, PkceVerifier};
/// use hubspot_connect::{AccessToken, Connector, Error, ErrorCode, RefreshToken, Result};
///
/// #[derive(Debug)]
/// struct Acme;
///
/// #[async_trait]
/// impl Connector for Acme {
///     fn authorize_url(&self, request: &AuthorizeRequest) -> Result<Authorization> {
///         let state = hubspot_connect::secret::CsrfState::random();
///         let url = url::Url::parse_with_params(
///             "https://acme.example/authorize",
///             &[("state", state.secret())],
///         ).map_err(|e| Error::new(ErrorCode::InvalidConfig, e.to_string()))?;
///         Ok(Authorization::new(url, state, PkceVerifier::new("unused-verifier")))
///     }
///     async fn exchange_code(&self, _code: AuthorizationCode, _verifier: PkceVerifier) -> Result<TokenSet> {
///         Err(Error::new(ErrorCode::HubspotUnavailable, "acme is down"))
///     }
///     async fn refresh(&self, _refresh_token: &RefreshToken) -> Result<TokenSet> {
///         Err(Error::new(ErrorCode::ReconnectRequired, "acme refused the refresh token"))
///     }
///     async fn identify(&self, _access_token: &AccessToken) -> Result<Installation> {
///         Err(Error::new(ErrorCode::HubspotUnavailable, "acme is down"))
///     }
/// }
/// let _boxed: Box<dyn Connector> = Box::new(Acme);
/// ```
#[async_trait]
pub trait Connector: fmt::Debug + Send + Sync + 'static {
    /// Builds the URL to send the user to, with a fresh state and PKCE verifier.
    fn authorize_url(&self, request: &AuthorizeRequest) -> Result<Authorization>;

    /// Exchanges an authorization code (with its PKCE verifier) for tokens. Never retried: a code is single-use.
    async fn exchange_code(&self, code: AuthorizationCode, verifier: PkceVerifier) -> Result<TokenSet>;

    /// Exchanges a refresh token for a new access token. When the provider returns no refresh token, the returned
    /// set holds the one that was presented.
    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenSet>;

    /// Finds out which portal, which user and which scopes an access token belongs to, and the account's details.
    async fn identify(&self, access_token: &AccessToken) -> Result<Installation>;

    /// Identifies an app-level token (a HubSpot private app's, which has no OAuth metadata). The default calls
    /// [`Connector::identify`].
    async fn identify_app_token(&self, token: &AccessToken) -> Result<Installation> {
        self.identify(token).await
    }

    /// Revokes a refresh token at the provider. `Ok(true)` when revoked (or already unknown to the provider),
    /// `Ok(false)` when the provider has no revocation. The default has none.
    async fn revoke(&self, refresh_token: &RefreshToken) -> Result<bool> {
        let _ = refresh_token;
        Ok(false)
    }
}

const _: Option<&dyn Connector> = None;

/// What to ask for in an authorization: scopes, and optionally a preselected portal and the EU login host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorizeRequest {
    /// Scopes the integration requires (`scope`).
    pub required: Vec<Scope>,
    /// Scopes the integration would like (`optional_scope`).
    pub optional: Vec<Scope>,
    /// A portal to preselect in HubSpot's account picker (`/oauth/{portalId}/authorize`).
    pub portal_id: Option<u64>,
    /// Send the user to HubSpot's EU login host (`app-eu1.hubspot.com`).
    pub eu: bool,
}

impl AuthorizeRequest {
    /// A request for the scopes of `scopes`.
    pub fn new(scopes: &dyn ScopeSet) -> Self {
        Self { required: scopes.required(), optional: scopes.optional(), portal_id: None, eu: false }
    }

    /// Preselects a portal in HubSpot's account picker.
    pub fn portal(mut self, portal_id: u64) -> Self {
        self.portal_id = Some(portal_id);
        self
    }

    /// Sends the user to the EU login host.
    pub fn eu(mut self, eu: bool) -> Self {
        self.eu = eu;
        self
    }
}

/// An authorize URL with the state and PKCE verifier that belong to it. Keep both until the callback arrives.
#[non_exhaustive]
pub struct Authorization {
    /// The URL to redirect the user to. It carries the state: do not log it.
    pub url: Url,
    /// The `state` in the URL; the callback must bring it back.
    pub state: CsrfState,
    /// The PKCE verifier whose challenge is in the URL; sent with the code exchange.
    pub pkce_verifier: PkceVerifier,
}

impl Authorization {
    /// Puts an authorization together (for custom connectors).
    pub fn new(url: Url, state: CsrfState, pkce_verifier: PkceVerifier) -> Self {
        Self { url, state, pkce_verifier }
    }
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.url.clone();
        shown.set_query(Some("[redacted]"));
        f.debug_struct("Authorization")
            .field("url", &shown.as_str())
            .field("state", &self.state)
            .field("pkce_verifier", &self.pkce_verifier)
            .finish()
    }
}

/// Tokens from a code exchange or a refresh.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenSet {
    /// The access token.
    pub access_token: AccessToken,
    /// The refresh token: the new one if the provider rotated it, otherwise the one presented. `None` only when a
    /// code exchange returned none.
    pub refresh_token: Option<RefreshToken>,
    /// Whether the provider returned a refresh token different from the one presented.
    pub refresh_token_rotated: bool,
    /// When the access token expires: the request's send time plus `expires_in`.
    pub expires_at: SystemTime,
    /// When the token request was sent.
    pub requested_at: SystemTime,
    /// The portal, when the token response says (`hub_id`, 2026-03 responses).
    pub portal_id: Option<u64>,
    /// The user, when the token response says (`user_id`, 2026-03 responses).
    pub user_id: Option<u64>,
    /// The granted scopes, when the token response lists them.
    pub scopes: Option<Vec<Scope>>,
}

impl TokenSet {
    /// A token set (for custom connectors and tests).
    pub fn new(
        access_token: AccessToken,
        refresh_token: Option<RefreshToken>,
        requested_at: SystemTime,
        lifetime: Duration,
    ) -> Self {
        Self {
            access_token,
            refresh_token,
            refresh_token_rotated: false,
            expires_at: crate::clock::saturating_add(requested_at, lifetime),
            requested_at,
            portal_id: None,
            user_id: None,
            scopes: None,
        }
    }
}

/// Who installed what, where: the result of [`Connector::identify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Installation {
    /// The portal (HubSpot account) id: `hub_id`.
    pub portal_id: u64,
    /// The portal's domain, such as `acme.hubspot.com`.
    pub hub_domain: Option<String>,
    /// The installing user's email.
    pub user: Option<String>,
    /// The installing user's id.
    pub user_id: Option<u64>,
    /// The app's id.
    pub app_id: Option<u64>,
    /// The scopes granted to the app.
    pub scopes: Vec<Scope>,
    /// The account's details, from account info.
    pub account: Option<AccountInfo>,
}

impl Installation {
    /// An installation of `portal_id` with `scopes` (for custom connectors and tests).
    pub fn new(portal_id: u64, scopes: Vec<Scope>) -> Self {
        Self { portal_id, hub_domain: None, user: None, user_id: None, app_id: None, scopes, account: None }
    }

    /// The account type, when account info was read.
    pub fn account_type(&self) -> Option<&AccountType> {
        self.account.as_ref().map(|a| &a.account_type)
    }
}

/// An account's details, from `GET /account-info/v3/details`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccountInfo {
    /// The portal id.
    pub portal_id: u64,
    /// The kind of account.
    pub account_type: AccountType,
    /// The portal's name.
    pub portal_name: Option<String>,
    /// Where the data is hosted, such as `na1` or `eu1`.
    pub data_hosting_location: Option<String>,
    /// The UI's domain, such as `app-eu1.hubspot.com`.
    pub ui_domain: Option<String>,
    /// The account's time zone, such as `US/Eastern`.
    pub time_zone: Option<String>,
    /// The company currency, such as `USD`.
    pub company_currency: Option<String>,
    /// Other currencies in use.
    pub additional_currencies: Vec<String>,
    /// The UTC offset, such as `-04:00`.
    pub utc_offset: Option<String>,
}

impl AccountInfo {
    /// Whether the account's data lives in HubSpot's EU data center.
    pub fn is_eu(&self) -> bool {
        self.data_hosting_location.as_deref().is_some_and(|l| l.starts_with("eu"))
    }
}

/// HubSpot's account types. `AppDeveloper` is the wrong account to connect for data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AccountType {
    /// A customer account.
    #[serde(rename = "STANDARD")]
    Standard,
    /// A developer test account.
    #[serde(rename = "DEVELOPER_TEST")]
    DeveloperTest,
    /// A sandbox account.
    #[serde(rename = "SANDBOX")]
    Sandbox,
    /// An app developer account.
    #[serde(rename = "APP_DEVELOPER")]
    AppDeveloper,
    /// A type this crate does not know yet.
    #[serde(untagged)]
    Other(String),
}

impl AccountType {
    /// HubSpot's name for the type, such as `STANDARD`.
    pub fn as_str(&self) -> &str {
        match self {
            AccountType::Standard => "STANDARD",
            AccountType::DeveloperTest => "DEVELOPER_TEST",
            AccountType::Sandbox => "SANDBOX",
            AccountType::AppDeveloper => "APP_DEVELOPER",
            AccountType::Other(s) => s,
        }
    }

    /// The type for HubSpot's name.
    pub fn parse(name: &str) -> Self {
        match name {
            "STANDARD" => AccountType::Standard,
            "DEVELOPER_TEST" => AccountType::DeveloperTest,
            "SANDBOX" => AccountType::Sandbox,
            "APP_DEVELOPER" => AccountType::AppDeveloper,
            other => AccountType::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for AccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_type_round_trips() {
        for name in ["STANDARD", "DEVELOPER_TEST", "SANDBOX", "APP_DEVELOPER", "NEW_KIND"] {
            let t = AccountType::parse(name);
            assert_eq!(t.as_str(), name);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<AccountType>(&json).unwrap(), t);
        }
    }

    #[test]
    fn authorization_debug_hides_state() {
        let state = CsrfState::new("STATE-CANARY-123");
        let url = Url::parse("https://app.hubspot.com/oauth/authorize?state=STATE-CANARY-123").unwrap();
        let a = Authorization::new(url, state, PkceVerifier::new("VERIFIER-CANARY"));
        let shown = format!("{a:?}");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(shown.contains("app.hubspot.com/oauth/authorize"));
    }
}
