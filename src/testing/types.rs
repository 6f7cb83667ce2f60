//! The public value types of the fake HubSpot: the world (portals, users), the switches, the failures and the
//! inspection keys.

use std::fmt;
use std::time::Duration;

/// The type of a HubSpot account, as `GET /account-info/.../details` reports it in `accountType`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FakeAccountType {
    /// `STANDARD`: a customer's account (the default).
    #[default]
    Standard,
    /// `DEVELOPER_TEST`: a developer test account.
    DeveloperTest,
    /// `SANDBOX`: a sandbox account.
    Sandbox,
    /// `APP_DEVELOPER`: the app developer's own account, the wrong account to connect for data.
    AppDeveloper,
    /// Any other value, to see how the code under test copes with an account type HubSpot adds later.
    /// (The spec's enum does not list it, so such an answer no longer matches the spec.)
    Other(String),
}

impl FakeAccountType {
    /// The wire value, e.g. `"APP_DEVELOPER"`.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Standard => "STANDARD",
            Self::DeveloperTest => "DEVELOPER_TEST",
            Self::Sandbox => "SANDBOX",
            Self::AppDeveloper => "APP_DEVELOPER",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for FakeAccountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A HubSpot account ("portal") the fake knows. Build one with [`FakePortal::new`] and the setters, or change the
/// public fields directly, then hand it to [`FakeHubSpot::add_portal`](super::FakeHubSpot::add_portal).
///
/// ```
/// use hubspot_connect::testing::{FakeAccountType, FakePortal};
///
/// let portal = FakePortal::new(4242).name("Acme Inc").account_type(FakeAccountType::Sandbox).eu();
/// assert_eq!(portal.ui_domain, "app-eu1.hubspot.com");
/// assert_eq!(portal.hub_domain, "portal-4242.hubspot.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FakePortal {
    /// The portal (hub) id, `portalId` / `hub_id` on the wire.
    pub id: u64,
    /// `portalName` in account info. Default `"Portal {id}"`.
    pub name: String,
    /// `hub_domain` in token metadata. Default `"portal-{id}.hubspot.com"`.
    pub hub_domain: String,
    /// `accountType`. Default [`FakeAccountType::Standard`].
    pub account_type: FakeAccountType,
    /// `dataHostingLocation` (also the token metadata's `hublet`). Default `"na1"`.
    pub data_hosting_location: String,
    /// `uiDomain`. Default `"app.hubspot.com"`.
    pub ui_domain: String,
    /// `timeZone`. Default `"US/Eastern"`.
    pub time_zone: String,
    /// The offset from UTC in minutes, reported as `utcOffset` (`"-05:00"`) and `utcOffsetMilliseconds`.
    /// Default -300.
    pub utc_offset_minutes: i32,
    /// `companyCurrency`. Default `"USD"`.
    pub currency: String,
    /// `additionalCurrencies`. Default empty.
    pub additional_currencies: Vec<String>,
    /// `createdAt`, milliseconds since the Unix epoch. Default 2022-04-01.
    pub created_at_millis: i64,
}

impl FakePortal {
    /// A standard North-American portal with the given id.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            name: format!("Portal {id}"),
            hub_domain: format!("portal-{id}.hubspot.com"),
            account_type: FakeAccountType::Standard,
            data_hosting_location: "na1".to_owned(),
            ui_domain: "app.hubspot.com".to_owned(),
            time_zone: "US/Eastern".to_owned(),
            utc_offset_minutes: -300,
            currency: "USD".to_owned(),
            additional_currencies: Vec::new(),
            created_at_millis: 1_648_840_584_303,
        }
    }

    /// Sets the portal name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the account type.
    pub fn account_type(mut self, account_type: FakeAccountType) -> Self {
        self.account_type = account_type;
        self
    }

    /// Hosts the portal in the EU: `dataHostingLocation` `"eu1"`, `uiDomain` `"app-eu1.hubspot.com"`.
    pub fn eu(mut self) -> Self {
        self.data_hosting_location = "eu1".to_owned();
        self.ui_domain = "app-eu1.hubspot.com".to_owned();
        self
    }

    /// `utcOffset` as HubSpot writes it, e.g. `"-05:00"`.
    pub fn utc_offset(&self) -> String {
        let minutes = self.utc_offset_minutes;
        let sign = if minutes < 0 { '-' } else { '+' };
        let abs = minutes.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    }
}

/// The app as its HubSpot developer account registers it: its credentials, its redirect URLs and the scopes it
/// declares. Hand it to [`FakeHubSpotBuilder::app`](super::FakeHubSpotBuilder::app); the fake then checks every
/// authorize request against it, as HubSpot does (see the [module documentation](super#what-the-fake-checks)).
///
/// HubSpot sorts an app's scopes into Required (each must be in the authorize URL's `scope`), Conditionally
/// required (allowed in `scope` only) and Optional (allowed in `optional_scope` only); a scope in neither list
/// fails the install.
///
/// [`AppRegistration::default`] is what the fake's own helpers use: the client id and secret of
/// [`FakeHubSpot::client_id`](super::FakeHubSpot::client_id), the redirect URL
/// `http://localhost:3000/oauth/callback`, `oauth` required, and [`AppRegistration::COMMON_SCOPES`] both
/// conditionally required and optional, so that any of them may be asked for in either parameter. HubSpot's
/// settings would not allow a scope in two lists: register your app's real lists to test how it splits them.
/// `Debug` does not show the client secret. It serializes (`client_id`, `client_secret`, `redirect_uris`,
/// `required_scopes`, `optional_scopes`, `app_scopes`, `app_id`) so that a server running the fake can print it.
///
/// ```
/// use hubspot_connect::testing::AppRegistration;
///
/// let app = AppRegistration::new("my-client-id", "my-secret")
///     .redirect_uri("https://app.vendor.example/hubspot/callback")
///     .required_scopes(["crm.objects.contacts.read"])
///     .optional_scopes(["crm.objects.deals.read"]);
/// assert_eq!(app.required_scopes, ["oauth", "crm.objects.contacts.read"]);
/// assert!(app.declares("crm.objects.deals.read"));
/// assert!(!app.declares("made.up.scope"));
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct AppRegistration {
    /// The app id (`app_id` in token metadata).
    pub app_id: u64,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The registered redirect URLs; `redirect_uri` must be one of them, exactly.
    pub redirect_uris: Vec<String>,
    /// The scopes the app marks Required: each must be in `scope`. `oauth` is always among them.
    pub required_scopes: Vec<String>,
    /// The scopes the app marks Conditionally required: they may be in `scope`, never in `optional_scope`.
    pub conditionally_required_scopes: Vec<String>,
    /// The scopes the app marks Optional: they may be in `optional_scope`, never in `scope`.
    pub optional_scopes: Vec<String>,
    /// The app-level scopes a `grant_type=client_credentials` token may carry (the webhooks journal's).
    pub app_scopes: Vec<String>,
}

impl AppRegistration {
    /// Scopes HubSpot publishes that the default registration declares as optional, so that the crate's own
    /// examples and tests can ask for any of them.
    pub const COMMON_SCOPES: &'static [&'static str] = &[
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
        "crm.objects.deals.read",
        "crm.objects.deals.write",
        "crm.objects.line_items.read",
        "crm.objects.line_items.write",
        "crm.objects.products.read",
        "crm.objects.products.write",
        "crm.objects.quotes.read",
        "crm.objects.quotes.write",
        "crm.objects.custom.read",
        "crm.objects.custom.write",
        "crm.objects.leads.read",
        "crm.objects.leads.write",
        "crm.objects.invoices.read",
        "crm.objects.users.read",
        "crm.objects.owners.read",
        "crm.schemas.contacts.read",
        "crm.schemas.contacts.write",
        "crm.schemas.companies.read",
        "crm.schemas.companies.write",
        "crm.schemas.deals.read",
        "crm.schemas.deals.write",
        "crm.schemas.custom.read",
        "crm.lists.read",
        "crm.lists.write",
        "crm.import",
        "crm.export",
        "tickets",
        "e-commerce",
        "content",
        "forms",
        "files",
        "files.ui_hidden.read",
        "automation",
        "automation.sequences.read",
        "timeline",
        "hubdb",
        "cms.domains.read",
        "settings.users.read",
        "settings.users.write",
        "settings.currencies.read",
        "settings.currencies.write",
        "marketing.campaigns.read",
        "marketing.campaigns.write",
        "marketing.email.read",
        "conversations.read",
        "conversations.write",
    ];

    /// The webhooks journal's app-level scopes, which the default registration allows on client credentials.
    pub const JOURNAL_SCOPES: &'static [&'static str] = &[
        "developer.webhooks_journal.read",
        "developer.webhooks_journal.subscriptions.read",
        "developer.webhooks_journal.subscriptions.write",
        "developer.webhooks_journal.snapshots.read",
        "developer.webhooks_journal.snapshots.write",
    ];

    /// An app with these credentials, no redirect URL, `oauth` required and no other scope (app id 2915437).
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            app_id: 2_915_437,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: Vec::new(),
            required_scopes: vec!["oauth".to_owned()],
            conditionally_required_scopes: Vec::new(),
            optional_scopes: Vec::new(),
            app_scopes: Vec::new(),
        }
    }

    /// Registers one more redirect URL.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// Marks these scopes Required (besides `oauth`, which always is).
    pub fn required_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        push_new(&mut self.required_scopes, scopes);
        self
    }

    /// Marks these scopes Conditionally required.
    pub fn conditionally_required_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        push_new(&mut self.conditionally_required_scopes, scopes);
        self
    }

    /// Marks these scopes Optional.
    pub fn optional_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        push_new(&mut self.optional_scopes, scopes);
        self
    }

    /// Allows these app-level scopes on `grant_type=client_credentials`.
    pub fn app_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        push_new(&mut self.app_scopes, scopes);
        self
    }

    /// Sets the app id.
    pub fn app_id(mut self, app_id: u64) -> Self {
        self.app_id = app_id;
        self
    }

    /// Whether the app declares `scope`, as Required, Conditionally required or Optional (`oauth` always is).
    pub fn declares(&self, scope: &str) -> bool {
        self.may_be_in_scope(scope) || self.may_be_optional(scope)
    }

    /// Whether `scope` may appear in the authorize URL's `scope`: a Required or Conditionally required scope.
    pub fn may_be_in_scope(&self, scope: &str) -> bool {
        scope == "oauth" || self.required_scopes.iter().chain(&self.conditionally_required_scopes).any(|s| s == scope)
    }

    /// Whether `scope` may appear in the authorize URL's `optional_scope`: an Optional scope.
    pub fn may_be_optional(&self, scope: &str) -> bool {
        self.optional_scopes.iter().any(|s| s == scope)
    }
}

fn push_new<S: Into<String>>(list: &mut Vec<String>, scopes: impl IntoIterator<Item = S>) {
    for scope in scopes {
        let scope = scope.into();
        if !list.contains(&scope) {
            list.push(scope);
        }
    }
}

impl Default for AppRegistration {
    fn default() -> Self {
        Self::new("6a2f41a3-c54c-4b53-b1e9-8c7a2d0f5e16", "fake-secret-3b9e27d1-0c4a-4f6e-9d58-a1b2c3d4e5f6")
            .redirect_uri("http://localhost:3000/oauth/callback")
            .conditionally_required_scopes(Self::COMMON_SCOPES.iter().copied())
            .optional_scopes(Self::COMMON_SCOPES.iter().copied())
            .app_scopes(Self::JOURNAL_SCOPES.iter().copied())
    }
}

impl fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRegistration")
            .field("app_id", &self.app_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("required_scopes", &self.required_scopes)
            .field("conditionally_required_scopes", &self.conditionally_required_scopes)
            .field("optional_scopes", &self.optional_scopes)
            .field("app_scopes", &self.app_scopes)
            .finish()
    }
}

/// The HubSpot user who consents next (and whom [`FakeHubSpot::issue`](super::FakeHubSpot::issue) installs as).
/// The default is id 123, `admin@example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FakeUser {
    /// The user id, `user_id` on the wire.
    pub id: u64,
    /// The user's email, `user` on the wire.
    pub email: String,
}

impl FakeUser {
    /// A user with this id and email.
    pub fn new(id: u64, email: impl Into<String>) -> Self {
        Self { id, email: email.into() }
    }
}

impl Default for FakeUser {
    fn default() -> Self {
        Self { id: 123, email: "admin@example.com".to_owned() }
    }
}

/// What the user does on HubSpot's consent screen. Set with [`FakeHubSpot::decline`](super::FakeHubSpot::decline);
/// it stays until changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Decline {
    /// The user approves: `302` to `{redirect_uri}?code=...&state=...` (the default).
    #[default]
    Consent,
    /// The user declines and HubSpot redirects back:
    /// `302` to `{redirect_uri}?error=access_denied&error_description=...&state=...`.
    WithRedirect,
    /// The user declines and HubSpot shows a page: `200` HTML, no redirect. The pending authorization never comes back.
    WithoutRedirect,
}

/// Whether the token endpoint rotates refresh tokens on refresh (HubSpot does not document it; sources conflict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Rotation {
    /// The refresh answer repeats the refresh token presented (the default, what HubSpot usually does).
    #[default]
    Same,
    /// The refresh answer has no `refresh_token` field at all; the presented one stays valid.
    Omit,
    /// Every refresh answer carries a new refresh token; older ones stay valid (presenting one is counted in
    /// [`FakeHubSpot::stale_refresh_presentations`](super::FakeHubSpot::stale_refresh_presentations)).
    Rotate,
    /// Every refresh answer carries a new refresh token, and presenting a superseded one revokes the whole family:
    /// that request and every later one, even with the newest token, fail with `BAD_REFRESH_TOKEN`.
    Strict,
}

/// What a second install of the app by the same HubSpot user into the same portal hands back.
///
/// HubSpot's developer changelog on reauthorizing public apps says that reauthorizing an app already connected
/// to an account changes the scopes *on the refresh token*, which reads as the same refresh token coming back for
/// the same user, portal and app; HubSpot documents nothing more precise. The fake plays both, so a vendor can test
/// that refusing such an install (`PORTAL_ALREADY_CONNECTED`, `PORTAL_LIMIT_REACHED`, …) never revokes the token a
/// stored connection still uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Reinstall {
    /// Every install gets a refresh token of its own (the default).
    #[default]
    NewRefreshToken,
    /// An install by a user who already holds a live refresh token for the portal gets that same refresh token
    /// back (with the new grant's scopes) and a new access token; revoking it ends both installs.
    SameRefreshToken,
}

/// The body of token-endpoint errors (always HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ErrorStyle {
    /// The current format, RFC 6749 fields beside the legacy ones:
    /// `{"error","error_description","status","message","correlationId"}` (the default).
    #[default]
    Both,
    /// The older format: `{"status","message","correlationId"}`.
    LegacyOnly,
    /// RFC 6749 fields only: `{"error","error_description"}`.
    RfcOnly,
}

/// What `POST /oauth/2026-03/token/introspect` answers for an unknown, expired or revoked token (undocumented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DeadIntrospection {
    /// `200 {"active":false}`, as RFC 7662 says (the default).
    #[default]
    Inactive,
    /// `400` with a token-endpoint error body in the configured [`ErrorStyle`]: `invalid_grant` with
    /// `BAD_REFRESH_TOKEN` when `token_type_hint=refresh_token`, else `BAD_ACCESS_TOKEN`.
    BadRequest,
}

/// Which optional fields a successful token answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum TokenFields {
    /// As the specs describe (the default): `token_use` on both generations, and on 2026-03 also `hub_id`,
    /// `user_id` and `scopes`.
    #[default]
    Spec,
    /// Only what integrators have captured from the v1 endpoint, on both generations:
    /// `{"token_type","refresh_token","access_token","expires_in"}`.
    Minimal,
}

/// One of the fake's HTTP endpoints, for [`FakeHubSpot::fail`](super::FakeHubSpot::fail),
/// [`FakeHubSpot::requests`](super::FakeHubSpot::requests) and
/// [`FakeHubSpot::last_form`](super::FakeHubSpot::last_form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Endpoint {
    /// `GET /oauth/authorize` and `GET /oauth/{portalId}/authorize` (the consent page), and in interactive mode
    /// the page's form posted back to the same path.
    Authorize,
    /// `POST /oauth/v1/token`.
    TokenV1,
    /// `POST /oauth/2026-03/token`.
    Token202603,
    /// `POST /oauth/v3/token`.
    TokenV3,
    /// `POST /oauth/2026-03/token/introspect`.
    Introspect202603,
    /// `POST /oauth/v3/token/introspect`.
    IntrospectV3,
    /// `GET /oauth/v1/access-tokens/{token}`.
    AccessTokenInfoV1,
    /// `GET /oauth/v1/refresh-tokens/{token}`.
    RefreshTokenInfoV1,
    /// `DELETE /oauth/v1/refresh-tokens/{token}`.
    RevokeV1,
    /// `POST /oauth/2026-03/token/revoke`.
    Revoke202603,
    /// `POST /oauth/v3/token/revoke`.
    RevokeV3,
    /// `GET /account-info/v3/details`.
    AccountInfoV3,
    /// `GET /account-info/2026-03/details`.
    AccountInfo202603,
    /// `GET /crm/v3/objects/{objectType}`: a page of objects (`limit`, `after`).
    CrmList,
    /// `GET /crm/v3/objects/{objectType}/{objectId}`.
    CrmGet,
    /// `POST /crm/v3/objects/{objectType}/search`.
    CrmSearch,
    /// `POST /crm/v3/objects/{objectType}`: creates an object.
    CrmCreate,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 17] = [
        Endpoint::Authorize,
        Endpoint::TokenV1,
        Endpoint::Token202603,
        Endpoint::TokenV3,
        Endpoint::Introspect202603,
        Endpoint::IntrospectV3,
        Endpoint::AccessTokenInfoV1,
        Endpoint::RefreshTokenInfoV1,
        Endpoint::RevokeV1,
        Endpoint::Revoke202603,
        Endpoint::RevokeV3,
        Endpoint::AccountInfoV3,
        Endpoint::AccountInfo202603,
        Endpoint::CrmList,
        Endpoint::CrmGet,
        Endpoint::CrmSearch,
        Endpoint::CrmCreate,
    ];

    /// Whether this endpoint takes its fields in a form body only (2026-03 and v3: never in the query string).
    pub fn is_body_only(self) -> bool {
        matches!(
            self,
            Endpoint::Token202603
                | Endpoint::TokenV3
                | Endpoint::Introspect202603
                | Endpoint::IntrospectV3
                | Endpoint::Revoke202603
                | Endpoint::RevokeV3
        )
    }

    /// Whether this is one of the CRM objects endpoints (`/crm/v3/objects/...`).
    pub fn is_crm(self) -> bool {
        matches!(self, Endpoint::CrmList | Endpoint::CrmGet | Endpoint::CrmSearch | Endpoint::CrmCreate)
    }

    /// The HTTP method and path pattern, e.g. `"POST /oauth/2026-03/token"`.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Authorize => "GET /oauth/authorize, GET /oauth/{portalId}/authorize",
            Endpoint::TokenV1 => "POST /oauth/v1/token",
            Endpoint::Token202603 => "POST /oauth/2026-03/token",
            Endpoint::TokenV3 => "POST /oauth/v3/token",
            Endpoint::Introspect202603 => "POST /oauth/2026-03/token/introspect",
            Endpoint::IntrospectV3 => "POST /oauth/v3/token/introspect",
            Endpoint::AccessTokenInfoV1 => "GET /oauth/v1/access-tokens/{token}",
            Endpoint::RefreshTokenInfoV1 => "GET /oauth/v1/refresh-tokens/{token}",
            Endpoint::RevokeV1 => "DELETE /oauth/v1/refresh-tokens/{token}",
            Endpoint::Revoke202603 => "POST /oauth/2026-03/token/revoke",
            Endpoint::RevokeV3 => "POST /oauth/v3/token/revoke",
            Endpoint::AccountInfoV3 => "GET /account-info/v3/details",
            Endpoint::AccountInfo202603 => "GET /account-info/2026-03/details",
            Endpoint::CrmList => "GET /crm/v3/objects/{objectType}",
            Endpoint::CrmGet => "GET /crm/v3/objects/{objectType}/{objectId}",
            Endpoint::CrmSearch => "POST /crm/v3/objects/{objectType}/search",
            Endpoint::CrmCreate => "POST /crm/v3/objects/{objectType}",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.route())
    }
}

/// A bad answer to inject with [`FakeHubSpot::fail`](super::FakeHubSpot::fail).
///
/// Every failure except [`Failure::Slow`] replaces the normal answer, and the request then changes nothing in the
/// fake (a code is not used up, a refresh token does not rotate).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// `500` with HubSpot's generic JSON error body (`{"status":"error","message",...,"category"}`).
    ServerError,
    /// `502` `text/html` `<html>502 Bad Gateway</html>`, as a proxy in front of HubSpot sends.
    BadGatewayHtml,
    /// `429` with HubSpot's rate-limit body (`"errorType":"RATE_LIMIT"`, `"policyName":"TEN_SECONDLY_ROLLING"`,
    /// `"category":"RATE_LIMITS"`), and a `Retry-After` header (seconds) when `Some`.
    TooManyRequests {
        /// The `Retry-After` header value in seconds; `None` sends no header.
        retry_after: Option<u64>,
    },
    /// The normal answer, delayed by this long (real time: the delay does not follow the injected clock).
    /// The request takes effect at once, before the delay.
    Slow(Duration),
    /// Any raw answer: garbage, HTML with 200, a 200 carrying an error body, a huge body, an empty body...
    /// An empty `content_type` sends no `Content-Type` header.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Content-Type` header value.
        content_type: String,
        /// The body, sent as is.
        body: Vec<u8>,
    },
    /// A redirect (`3xx`) to somewhere else.
    Redirect {
        /// The HTTP status, e.g. 301, 302, 307.
        status: u16,
        /// The `Location` header value.
        location: String,
    },
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerError => f.write_str("ServerError"),
            Self::BadGatewayHtml => f.write_str("BadGatewayHtml"),
            Self::TooManyRequests { retry_after } => {
                f.debug_struct("TooManyRequests").field("retry_after", retry_after).finish()
            }
            Self::Slow(delay) => f.debug_tuple("Slow").field(delay).finish(),
            Self::Status { status, content_type, body } => {
                let shown: String = String::from_utf8_lossy(body).chars().take(64).collect();
                f.debug_struct("Status")
                    .field("status", status)
                    .field("content_type", content_type)
                    .field("body_len", &body.len())
                    .field("body_start", &shown)
                    .finish()
            }
            Self::Redirect { status, location } => {
                f.debug_struct("Redirect").field("status", status).field("location", location).finish()
            }
        }
    }
}

/// A token pair minted by [`FakeHubSpot::issue`](super::FakeHubSpot::issue). `Debug` does not show the tokens.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedTokens {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .finish()
    }
}

/// Why [`FakeHubSpot::consent`](super::FakeHubSpot::consent) got no redirect back to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeError {
    /// The authorize URL does not parse.
    InvalidUrl(String),
    /// The request to the authorize page failed (connection refused, ...).
    Request(String),
    /// The authorize page answered without a `302`: `200` when the user declined without a redirect
    /// ([`Decline::WithoutRedirect`]), `400` for a bad `client_id`, `redirect_uri` or `scope`, `404` for an unknown
    /// portal.
    NoRedirect {
        /// The HTTP status of the answer.
        status: u16,
        /// The page (at most 1,000 characters).
        body: String,
    },
    /// The `302` had no usable `Location` header.
    BadLocation(String),
}

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(e) => write!(f, "the authorize URL is not a URL: {e}"),
            Self::Request(e) => write!(f, "the request to the fake HubSpot's authorize page failed: {e}"),
            Self::NoRedirect { status, body } => {
                write!(f, "the fake HubSpot's authorize page answered {status} without a redirect: {body}")
            }
            Self::BadLocation(e) => write!(f, "the fake HubSpot's redirect has no usable Location: {e}"),
        }
    }
}

impl std::error::Error for FakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_are_written_like_hubspot() {
        let mut p = FakePortal::new(1);
        assert_eq!(p.utc_offset(), "-05:00");
        p.utc_offset_minutes = 330;
        assert_eq!(p.utc_offset(), "+05:30");
        p.utc_offset_minutes = 0;
        assert_eq!(p.utc_offset(), "+00:00");
    }

    #[test]
    fn issued_tokens_debug_hides_the_tokens() {
        let t = IssuedTokens { access_token: "CN-secret".into(), refresh_token: "r-secret".into() };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn failure_debug_is_short() {
        let f = Failure::Status { status: 200, content_type: "x".into(), body: vec![b'a'; 1 << 20] };
        assert!(format!("{f:?}").len() < 300);
    }
}
