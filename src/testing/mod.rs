//! A fake HubSpot for tests: the OAuth 2.0 protocol, account info and a small CRM API on a local [`wiremock`]
//! server.
//!
//! [`FakeHubSpot`] serves, on one loopback address, everything a HubSpot integration talks to while connecting a
//! portal: the authorize (consent) page, every token endpoint generation (`/oauth/v1/token`, `/oauth/v3/token`
//! and `/oauth/2026-03/token`), v3 and 2026-03 introspection and revocation, the v1 token metadata and revocation, and
//! account info (`/account-info/v3/details`, `/account-info/2026-03/details`); and, to exercise an API client, the
//! CRM objects endpoints (list, get, search, create) with HubSpot's rate limits. Answers have HubSpot's shapes,
//! checked against HubSpot's published OpenAPI specs, and every behaviour HubSpot leaves undocumented is a switch,
//! so your tests can play each answer.
//!
//! Point your HubSpot client at [`FakeHubSpot::uri`] for both the login host (`app.hubspot.com`) and the API host
//! (`api.hubapi.com`), use [`FakeHubSpot::client_id`] and [`FakeHubSpot::client_secret`], and play the user's
//! part with [`FakeHubSpot::consent`]. Time comes from the [`Clock`] you give
//! [`FakeHubSpot::start_with_clock`]: with a [`ManualClock`](crate::ManualClock), code and token expiry are exact
//! and instant.
//!
//! # Which helper fits which situation
//!
//! | situation | helper |
//! |---|---|
//! | the user approves the install | [`consent`](FakeHubSpot::consent) the authorize URL: you get the redirect with `code` and `state` |
//! | a person, or a headless browser, clicks through HubSpot's consent screen (choose an account, "Connect app" or "Cancel") | [`set_interactive`](FakeHubSpot::set_interactive), or [`FakeHubSpotBuilder::interactive`] |
//! | another program, in any language, drives the fake (`hubconnect fake`) | [`FakeHubSpotBuilder::listener`], [`control_api`](FakeHubSpotBuilder::control_api) and a [`Scenario`] in JSON |
//! | your app's own client id, redirect URLs, required and optional scopes | start with [`FakeHubSpot::builder`]`.app(`[`AppRegistration`]`)`; check refusals with [`codes_issued`](FakeHubSpot::codes_issued) |
//! | the user installs into a given account, or an EU / developer / sandbox account | [`add_portal`](FakeHubSpot::add_portal) a [`FakePortal`] (`.eu()`, `.account_type(..)`), preselect it with `/oauth/{portalId}/authorize` |
//! | another user installs | [`set_user`](FakeHubSpot::set_user) |
//! | the account's tier lacks a product: some scopes are not granted | [`refuse_scopes`](FakeHubSpot::refuse_scopes) |
//! | the user declines, with or without a redirect back | [`decline`](FakeHubSpot::decline) with [`Decline`] |
//! | skip the browser step: a connection that already exists | [`issue`](FakeHubSpot::issue) a token pair |
//! | the access token expired | [`expire_access_tokens`](FakeHubSpot::expire_access_tokens), or advance the [`ManualClock`](crate::ManualClock) past [`set_access_token_ttl`](FakeHubSpot::set_access_token_ttl) |
//! | the code expired before the callback ran | advance the clock past [`set_code_ttl`](FakeHubSpot::set_code_ttl) |
//! | refresh tokens rotate, or reuse of an old one revokes everything | [`set_rotation`](FakeHubSpot::set_rotation) with [`Rotation`]; check [`stale_refresh_presentations`](FakeHubSpot::stale_refresh_presentations) |
//! | the same user installs the app into the same portal again and gets the same refresh token | [`set_reinstall`](FakeHubSpot::set_reinstall) with [`Reinstall`] |
//! | the customer uninstalled the app | [`uninstall`](FakeHubSpot::uninstall) |
//! | the installing user left the company | [`remove_user`](FakeHubSpot::remove_user) |
//! | HubSpot's older or RFC-only error bodies | [`set_error_style`](FakeHubSpot::set_error_style) with [`ErrorStyle`] |
//! | introspecting a dead token: `{"active":false}` or a 400 | [`set_dead_token_introspection`](FakeHubSpot::set_dead_token_introspection) |
//! | revoke answers 200 or 204 | [`set_revoke_status`](FakeHubSpot::set_revoke_status) |
//! | a token answer without `token_use`, `hub_id`, `scopes` | [`set_token_fields`](FakeHubSpot::set_token_fields) with [`TokenFields::Minimal`] |
//! | 500, HTML 502, 429 with or without `Retry-After`, slow answers, garbage, redirects | [`fail`](FakeHubSpot::fail) an [`Endpoint`] with a [`Failure`], `times` in a row |
//! | did my code call HubSpot, how often, with which fields | [`requests`](FakeHubSpot::requests), [`token_requests`](FakeHubSpot::token_requests), [`grant_requests`](FakeHubSpot::grant_requests), [`last_form`](FakeHubSpot::last_form), [`reset_counts`](FakeHubSpot::reset_counts) |
//! | call the CRM API (`GET /crm/v3/objects/{type}`, `.../{id}`, `POST .../search`, `POST /crm/v3/objects/{type}`) | every portal starts with 3 contacts, 1 company, 1 deal; [`add_object`](FakeHubSpot::add_object), count them with [`objects`](FakeHubSpot::objects) |
//! | your portal's custom properties, deleted objects, associated objects | [`add_property`](FakeHubSpot::add_property), [`archive_object`](FakeHubSpot::archive_object), [`associate`](FakeHubSpot::associate) |
//! | an app-level token for the webhooks journal | `grant_type=client_credentials` on any token endpoint; its scopes are the registration's [`app_scopes`](AppRegistration::app_scopes) |
//! | which token did my client send, did it hold HubSpot's rate limits | [`last_authorization`](FakeHubSpot::last_authorization), [`max_requests_in_window`](FakeHubSpot::max_requests_in_window), [`rate_limited_requests`](FakeHubSpot::rate_limited_requests); tune with [`set_rate_limit`](FakeHubSpot::set_rate_limit), [`set_search_rate_limit`](FakeHubSpot::set_search_rate_limit) |
//! | something the fake does not play | mount your own [`wiremock::Mock`] on [`server`](FakeHubSpot::server) (use `with_priority(1)` to take precedence over the fake's own mocks) |
//!
//! # Example
//!
//! The whole protocol with plain `reqwest`: authorize, consent, exchange the code, call the API.
//!
//! ```rust
//! use hubspot_connect::testing::FakeHubSpot;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fake = FakeHubSpot::start().await;
//!
//! // The URL your "Connect HubSpot" button sends the user to.
//! let mut authorize = url::Url::parse(&format!("{}/oauth/authorize", fake.uri()))?;
//! authorize
//!     .query_pairs_mut()
//!     .append_pair("client_id", fake.client_id())
//!     .append_pair("redirect_uri", fake.redirect_uri())
//!     .append_pair("scope", "oauth crm.objects.contacts.read")
//!     .append_pair("state", "csrf-1234");
//!
//! // The user approves; HubSpot redirects back to your callback with a code and the state.
//! let callback = fake.consent(authorize.as_str()).await?;
//! let param = |name: &str| callback.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
//! assert_eq!(param("state").as_deref(), Some("csrf-1234"));
//! let code = param("code").ok_or("no code")?;
//!
//! // Your callback exchanges the code.
//! let form = serde_urlencoded::to_string([
//!     ("grant_type", "authorization_code"),
//!     ("code", code.as_str()),
//!     ("redirect_uri", fake.redirect_uri()),
//!     ("client_id", fake.client_id()),
//!     ("client_secret", fake.client_secret()),
//! ])?;
//! let http = reqwest::Client::new();
//! let answer = http
//!     .post(format!("{}/oauth/2026-03/token", fake.uri()))
//!     .header("content-type", "application/x-www-form-urlencoded")
//!     .body(form)
//!     .send()
//!     .await?;
//! assert_eq!(answer.status(), 200);
//! let tokens: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
//! assert_eq!(tokens["expires_in"], 1800);
//! assert_eq!(tokens["hub_id"], 62515);
//! let access_token = tokens["access_token"].as_str().ok_or("no access token")?;
//!
//! // ... and finds out which account it was.
//! let account = http
//!     .get(format!("{}/account-info/2026-03/details", fake.uri()))
//!     .bearer_auth(access_token)
//!     .send()
//!     .await?;
//! let account: serde_json::Value = serde_json::from_str(&account.text().await?)?;
//! assert_eq!(account["portalId"], 62515);
//! assert_eq!(account["accountType"], "STANDARD");
//! assert_eq!(fake.token_requests(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # What the fake checks
//!
//! - Authorize, against the [`AppRegistration`] (set with [`FakeHubSpot::builder`]): `client_id` must be the
//!   app's; `redirect_uri` must parse, be `https` (or `http` on `localhost`), not an IP address, and equal one of
//!   the registered redirect URLs; `scope` must be present and hold every Required scope (`oauth` always), else
//!   HubSpot's "Authorization failed because the provided scopes are insufficient"; `scope` may hold only
//!   Required and Conditionally required scopes and `optional_scope` only Optional ones, else HubSpot's
//!   "Authorization failed because there is a mismatch between the scopes in the install URL and the app's
//!   configured scopes" (both messages from HubSpot's knowledge base, followed by the fake's detail naming the
//!   scopes). Any refusal is an error page: a `400` HTML page, no redirect, no code
//!   ([`codes_issued`](FakeHubSpot::codes_issued) does not move). An unknown `/oauth/{portalId}/authorize` is a
//!   404 page. Scopes are space-separated (`%20` or `+`). `code_challenge` with `code_challenge_method=S256` (or
//!   `plain`) is remembered with the code. Where HubSpot's docs are silent the fake chooses: the status (`400`),
//!   the order of the checks (client, redirect, scopes), the wording for client and redirect problems, and the
//!   exact comparison of redirect URLs (as parsed URLs, query included).
//! - Token: form-encoded bodies only (a JSON body is `BAD_GRANT_TYPE`), client id and secret in the body
//!   (`invalid_client` / `BAD_CLIENT_ID`). A code is single-use: any exchange attempt that finds it unexpired uses
//!   it up, even one that then fails on the redirect URI or the PKCE verifier. The `redirect_uri` must repeat the
//!   authorize one (`MISMATCH_REDIRECT_URI_AUTH_CODE`), an expired code is `EXPIRED_AUTH_CODE`, an unknown, used or
//!   PKCE-failing code is `BAD_AUTH_CODE`, a dead refresh token is `BAD_REFRESH_TOKEN`. Every token error is a 400.
//! - `grant_type=client_credentials` (every generation): an app-level token (`token_use` `"client_credentials"`,
//!   `scopes`, no `refresh_token`, no `hub_id`) with the requested scopes, each of which must be one of the app's
//!   [`app_scopes`](AppRegistration::app_scopes) (else `400` `invalid_scope` / `BAD_SCOPE`); without `scope`,
//!   all of them. It is no portal's token: account info and the CRM answer it `401`, introspection calls it
//!   dead; revocation revokes it. HubSpot documents the grant for the webhooks journal only; the fake chooses
//!   the `BAD_SCOPE` code, the answer without `scope`, and the look-ups.
//! - 2026-03 and v3 take their fields in the form body only: a `client_id`, `client_secret`, `code`,
//!   `code_verifier`, `refresh_token` or `token` in the query string is a `400` `invalid_request` /
//!   `BAD_REQUEST` token error and changes nothing; an `access_token` (or `token`, `hapikey`) in the query string
//!   of 2026-03 account info is a `400` `VALIDATION_ERROR`. HubSpot documents the rule, not the answer: the fake
//!   chooses these.
//! - Bad input, on every endpoint: a body over 1 MiB is a `413` with HubSpot's generic error body; a form that
//!   does not parse, or JSON where a form belongs, is `BAD_GRANT_TYPE`; a CRM body labelled other than JSON is a
//!   `415`, JSON that does not parse a `400` `VALIDATION_ERROR`. None of them is ever a `500`. (Statuses and
//!   wording for these are the fake's: HubSpot does not document them.)
//! - A path no endpoint serves answers `404` with HubSpot's generic JSON error body (`"category":
//!   "OBJECT_NOT_FOUND"`, `"message": "Resource not found"`: the wording is the fake's).
//! - Account info needs a live access token carrying `oauth` (else `403` `MISSING_SCOPES` naming `oauth`).
//! - Revoking a refresh token (any generation) revokes it and every token rotated from it; access tokens
//!   already issued stay valid until they expire. Revoking an access token through 2026-03 revokes it.
//! - Access tokens issued earlier stay valid after a refresh, until they expire.
//! - CRM objects: a `Bearer` access token the fake issued, live (else `401` `INVALID_AUTHENTICATION` or
//!   `EXPIRED_AUTHENTICATION`); then the portal's rolling limits (110 per 10 s, searches 5 per second; else `429`
//!   `RATE_LIMIT`); then the scope `crm.objects.{type}.read` (`.write` to create; `tickets` for tickets), else `403`
//!   `MISSING_SCOPES` naming it in `requiredGranularScopes`. An unknown object is a `404` `OBJECT_NOT_FOUND`.
//!   Answers other than searches carry `X-HubSpot-RateLimit-Max`, `-Remaining` and `-Interval-Milliseconds`.
//! - CRM create: every property name must be one the object type has (a selection of HubSpot's own, plus those
//!   added with [`add_property`](FakeHubSpot::add_property) or [`add_object`](FakeHubSpot::add_object)), a
//!   contact's `email` must look like an address; either problem is a `400` `VALIDATION_ERROR` whose message is
//!   HubSpot's `Property values were not valid: [{..."error":"PROPERTY_DOESNT_EXIST"...}]` (`INVALID_EMAIL`),
//!   and nothing is created. A contact whose email (case-insensitive) a live contact already has is a `409`
//!   `CONFLICT`, `Contact already exists. Existing ID: {id}`.
//! - CRM search: at most 5 `filterGroups`, 6 filters in a group and 18 in all (the figures HubSpot's CRM search
//!   guide has long given; its changelog of 2024-08 announced 10 per group and 25 in all: the fake keeps the
//!   stricter figures, so a search it takes HubSpot takes too); every filter needs one of
//!   HubSpot's operators (`EQ`, `NEQ`, `LT`, `LTE`, `GT`, `GTE`, `BETWEEN`, `IN`, `NOT_IN`, `HAS_PROPERTY`,
//!   `NOT_HAS_PROPERTY`, `CONTAINS_TOKEN`, `NOT_CONTAINS_TOKEN`); `after` + `limit` may not reach past the
//!   10,000th result; one sort at most (`"name"` or `{"propertyName","direction"}`), honoured. Each refusal is a
//!   `400` `VALIDATION_ERROR`. Archived objects are never found. Where HubSpot's docs are silent the fake
//!   chooses: the messages' wording, that a second sort is refused rather than ignored, that objects without the
//!   sort property come last in either direction, and that numbers compare as numbers, text case-insensitively.
//! - CRM reads (list and get): `properties` (names the type lacks are left out, as HubSpot does), `archived`
//!   (`true` shows only archived objects, see [`archive_object`](FakeHubSpot::archive_object); anything but
//!   `true`/`false` is a `400`), `associations` (types with at least one association, see
//!   [`associate`](FakeHubSpot::associate), labelled `contact_to_company` and so on; an unknown type is a `400`),
//!   and on get `idProperty` (`hs_object_id`, or a contact's `email`; another property is a `400`, a value no
//!   object has a `404`).
//!
//! [`Clock`]: crate::Clock

// The layers, each importing only from those below it:
// - `types` (the public value types), `random` (identifiers shaped like HubSpot's), `request` (reading requests);
// - `state`: the fake's world and its rules, without HTTP (`state::crm`: the CRM's objects and rate windows);
// - `wire`: HubSpot's answers, bodies and error shapes;
// - the responders, `oauth` and `crm`, each turning a request into an answer;
// - `responder`: which request is which endpoint, failures injected, the mocks mounted;
// - this module: `FakeHubSpot`, the handle a test holds.
mod control;
mod crm;
mod oauth;
mod random;
mod request;
mod responder;
mod scenario;
mod state;
mod types;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use wiremock::MockServer;

use crate::clock::{Clock, SystemClock};
use crate::{ClientSecret, HubSpotConnector, hubspot::HubSpotConnectorBuilder};

pub use scenario::{Scenario, ScenarioError, ScenarioFailure};
pub use types::{
    AppRegistration, DeadIntrospection, Decline, Endpoint, ErrorStyle, Failure, FakeAccountType, FakeError, FakePortal,
    FakeUser, IssuedTokens, Reinstall, Rotation, TokenFields,
};

use state::{Grant, Shared};

/// A fake HubSpot on a local [`MockServer`]. Cloning is cheap and shares the same server and state; the server
/// stops when the last clone is dropped.
///
/// See the [module documentation](self) for what it serves and which helper fits which test.
#[derive(Clone)]
pub struct FakeHubSpot {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Some` until dropped.
    server: Option<MockServer>,
    shared: Arc<Shared>,
    /// The app registration, as the state holds it (it never changes after the start).
    app: AppRegistration,
}

impl Inner {
    fn server(&self) -> &MockServer {
        self.server.as_ref().expect("the server lives until the fake is dropped")
    }
}

impl Drop for Inner {
    /// wiremock's `MockServer` blocks on an async verification when dropped. Inside a tokio task whose cooperative
    /// budget is spent, the tokio locks it reads answer `Pending` and wake themselves at once, so that blocking
    /// poll loop spins forever. Dropped on a plain thread instead, outside any runtime, it cannot.
    fn drop(&mut self) {
        let Some(server) = self.server.take() else { return };
        let dropped = std::thread::Builder::new().name("fake-hubspot-drop".into()).spawn(move || drop(server));
        match dropped {
            Ok(handle) => {
                if let Err(panic) = handle.join() {
                    // A mock mounted with expectations that were not met: report it as wiremock would.
                    if !std::thread::panicking() {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start a thread to stop the fake HubSpot; it was stopped in place")
            }
        }
    }
}

impl fmt::Debug for FakeHubSpot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.shared.lock();
        f.debug_struct("FakeHubSpot")
            .field("uri", &self.inner.server().uri())
            .field("app", &self.inner.app)
            .field("portals", &state.portals.keys().collect::<Vec<_>>())
            .field("rotation", &state.rotation)
            .field("error_style", &state.error_style)
            .finish_non_exhaustive()
    }
}

/// Configures a [`FakeHubSpot`] before it starts: its clock and the [`AppRegistration`] it checks requests
/// against. From [`FakeHubSpot::builder`].
///
/// ```rust
/// use hubspot_connect::testing::{AppRegistration, FakeHubSpot};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = AppRegistration::new("client-1", "secret-1")
///     .redirect_uri("https://app.vendor.example/hubspot/callback")
///     .required_scopes(["crm.objects.contacts.read"]);
/// let fake = FakeHubSpot::builder().app(app).start().await;
/// assert_eq!(fake.client_id(), "client-1");
/// assert_eq!(fake.redirect_uri(), "https://app.vendor.example/hubspot/callback");
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until started"]
pub struct FakeHubSpotBuilder {
    clock: Option<Arc<dyn Clock>>,
    app: AppRegistration,
    listener: Option<Arc<std::net::TcpListener>>,
    interactive: bool,
    control_api: bool,
    record_requests: bool,
    scenario: Scenario,
}

impl FakeHubSpotBuilder {
    /// Computes every expiry (codes, access tokens) with `clock` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The app as registered in HubSpot (default: [`AppRegistration::default`]).
    pub fn app(mut self, app: AppRegistration) -> Self {
        self.app = app;
        self
    }

    /// Serves on this socket instead of a random loopback port (e.g. one bound to a fixed port, for a browser or
    /// another program). The fake's [`uri`](FakeHubSpot::uri) is `http://` and the socket's address.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Answers the authorize step with the clickable consent page instead of consenting at once (see
    /// [`FakeHubSpot::set_interactive`]). Default `false`.
    pub fn interactive(mut self, interactive: bool) -> Self {
        self.interactive = interactive;
        self
    }

    /// Serves the control API under `/__fake/` (not part of HubSpot), for programs that drive a fake they did
    /// not start: `POST /__fake/scenario` merges a [`Scenario`] (a malformed one is a `400` naming the field);
    /// `POST /__fake/uninstall` `{"portal_id": N}` revokes every refresh token of that portal (access tokens stay
    /// valid until they expire); `POST /__fake/reset` goes back to the start; `GET /__fake/requests` answers
    /// `{"counts": {"authorize", "token:authorization_code", "token:refresh_token", "token:client_credentials",
    /// "introspect", "revoke", "account_info", "crm"}}`. Default `false`: those paths are HubSpot's `404`.
    pub fn control_api(mut self, control_api: bool) -> Self {
        self.control_api = control_api;
        self
    }

    /// Whether the underlying [`MockServer`] keeps every request it receives (for
    /// [`MockServer::received_requests`]). Default `true`; a long-running server turns it off.
    pub fn record_requests(mut self, record: bool) -> Self {
        self.record_requests = record;
        self
    }

    /// A scenario applied at the start, and again on each reset of the control API.
    pub fn scenario(mut self, scenario: Scenario) -> Self {
        self.scenario = scenario;
        self
    }

    /// Starts the fake, on a loopback port unless a [`listener`](Self::listener) was given.
    ///
    /// # Panics
    /// When the given listener cannot be duplicated (the process is out of file descriptors).
    pub async fn start(self) -> FakeHubSpot {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let server = match (&self.listener, self.record_requests) {
            (None, true) => MockServer::start().await,
            (listener, record) => {
                let mut builder = MockServer::builder();
                if let Some(listener) = listener {
                    // A cloned builder shares the socket: each start serves a duplicate of it.
                    builder = builder.listener(listener.try_clone().expect("duplicate the fake's listening socket"));
                }
                if !record {
                    builder = builder.disable_request_recording();
                }
                builder.start().await
            }
        };
        let state = state::State::started(self.app.clone(), self.scenario, self.interactive);
        let shared = Arc::new(Shared::new(clock, state));
        responder::mount(&server, &shared, self.control_api).await;
        FakeHubSpot { inner: Arc::new(Inner { server: Some(server), shared, app: self.app }) }
    }
}

impl FakeHubSpot {
    /// A builder, to start a fake with another clock or app registration.
    pub fn builder() -> FakeHubSpotBuilder {
        FakeHubSpotBuilder {
            clock: None,
            app: AppRegistration::default(),
            listener: None,
            interactive: false,
            control_api: false,
            record_requests: true,
            scenario: Scenario::default(),
        }
    }

    /// Starts a fake HubSpot on the system clock, with the default [`AppRegistration`].
    pub async fn start() -> FakeHubSpot {
        Self::builder().start().await
    }

    /// Starts a fake HubSpot that computes every expiry (codes, access tokens) with `clock`.
    pub async fn start_with_clock(clock: Arc<dyn Clock>) -> FakeHubSpot {
        Self::builder().clock(clock).start().await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, state::State> {
        self.inner.shared.lock()
    }

    // ---- where and who ----

    /// The base URL, e.g. `http://127.0.0.1:PORT`, serving both the authorize page and the API.
    pub fn uri(&self) -> String {
        self.inner.server().uri()
    }

    /// The underlying server, to mount extra mocks or inspect received requests.
    pub fn server(&self) -> &MockServer {
        self.inner.server()
    }

    /// The app's client id (by default fixed, UUID-shaped).
    pub fn client_id(&self) -> &str {
        &self.inner.app.client_id
    }

    /// The app's client secret.
    pub fn client_secret(&self) -> &str {
        &self.inner.app.client_secret
    }

    /// The app's id (`app_id` in token metadata).
    pub fn app_id(&self) -> u64 {
        self.inner.app.app_id
    }

    /// The app registration the fake checks requests against.
    pub fn app(&self) -> &AppRegistration {
        &self.inner.app
    }

    /// The app's first registered redirect URL (by default `http://localhost:3000/oauth/callback`; empty when the
    /// registration has none). The authorize page accepts only registered ones; the code exchange must repeat the
    /// one used there.
    pub fn redirect_uri(&self) -> &str {
        self.inner.app.redirect_uris.first().map_or("", String::as_str)
    }

    /// A [`HubSpotConnector`] builder for this fake: its client id, secret and redirect URI, its address as login
    /// host (also for EU accounts) and API host, and its clock.
    pub fn connector_builder(&self) -> HubSpotConnectorBuilder {
        HubSpotConnector::builder(self.client_id(), ClientSecret::new(self.client_secret()), self.redirect_uri())
            .auth_base(self.uri())
            .eu_auth_base(self.uri())
            .api_base(self.uri())
            .clock(Arc::clone(&self.inner.shared.clock))
    }

    // ---- the world ----

    /// Adds a portal, or replaces the one with the same id. Portal 62515 (standard, North America) exists from the
    /// start and is the one instant consent chooses when the authorize URL names none (while it is a standard
    /// account; otherwise the first standard portal by id).
    pub fn add_portal(&self, portal: FakePortal) {
        self.state().portals.insert(portal.id, portal);
    }

    /// Every portal, by id.
    pub fn portals(&self) -> Vec<FakePortal> {
        self.state().portals.values().cloned().collect()
    }

    /// Merges a [`Scenario`]: its portals added or replaced, the switches it names set, its failures queued.
    pub fn apply(&self, scenario: &Scenario) {
        self.state().apply(scenario);
    }

    /// Sets the user who consents next (and whom [`issue`](Self::issue) installs as).
    pub fn set_user(&self, user: FakeUser) {
        self.state().user = user;
    }

    // ---- consent ----

    /// Refuses these scopes at every later consent: granted = (`scope` ∪ `optional_scope`) − refused.
    /// Replaces the previous list; an empty slice grants everything again.
    pub fn refuse_scopes(&self, scopes: &[&str]) {
        self.state().refused = scopes.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Whether the authorize step shows a consent page a person (or a headless browser) clicks through, as
    /// HubSpot's does, instead of consenting at once. The page (`200` HTML) has the heading "Choose an account"
    /// with one radio button per portal (`name="portal_id"`, labelled by the portal's name, its id and account
    /// type beside it), the requested scopes under "Required scopes" (`scope`) and "Optional scopes"
    /// (`optional_scope`), and the buttons "Connect app" and "Cancel". A portal preselected with
    /// `/oauth/{portalId}/authorize` skips the picker. The form posts back to the same path, where the request
    /// is checked again in full, and answers as instant consent would: `302` to the redirect URI with `code` and
    /// `state`, or with `error=access_denied` after "Cancel". A [`decline`](Self::decline) switch other than
    /// [`Decline::Consent`] still applies at once. [`consent`](Self::consent) does not click: it fails on the page.
    pub fn set_interactive(&self, interactive: bool) {
        self.state().interactive = interactive;
    }

    /// What the user does on the consent screen from now on.
    pub fn decline(&self, decline: Decline) {
        self.state().decline = decline;
    }

    /// Plays the user's browser: GETs `authorize_url` without following redirects and returns the `Location` of
    /// the `302`, i.e. your callback URL with `code` and `state` (or `error`, when declined with a redirect).
    ///
    /// A URL on `app.hubspot.com` or `app-eu1.hubspot.com` is sent to the fake instead.
    ///
    /// # Errors
    /// [`FakeError::NoRedirect`] when the page answers anything but a `302` (declined without redirect, a bad
    /// `client_id`, an unknown portal, the consent page in [interactive](Self::set_interactive) mode), [`FakeError::BadLocation`] when the `302` has no usable `Location`,
    /// [`FakeError::InvalidUrl`] and [`FakeError::Request`] when the URL cannot be fetched.
    pub async fn consent(&self, authorize_url: &str) -> Result<url::Url, FakeError> {
        let mut url = url::Url::parse(authorize_url).map_err(|e| FakeError::InvalidUrl(e.to_string()))?;
        if matches!(url.host_str(), Some("app.hubspot.com" | "app-eu1.hubspot.com")) {
            let base = url::Url::parse(&self.uri()).map_err(|e| FakeError::InvalidUrl(e.to_string()))?;
            let mut moved = base.join(url.path()).map_err(|e| FakeError::InvalidUrl(e.to_string()))?;
            moved.set_query(url.query());
            url = moved;
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FakeError::Request(e.to_string()))?;
        let answer = client.get(url.clone()).send().await.map_err(|e| FakeError::Request(e.to_string()))?;
        let status = answer.status().as_u16();
        if status != 302 {
            let body = answer.text().await.unwrap_or_default().chars().take(1000).collect();
            return Err(FakeError::NoRedirect { status, body });
        }
        let location = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .ok_or_else(|| FakeError::BadLocation("no Location header".to_owned()))?
            .to_str()
            .map_err(|e| FakeError::BadLocation(e.to_string()))?;
        url.join(location).map_err(|e| FakeError::BadLocation(e.to_string()))
    }

    // ---- tokens ----

    /// The lifetime of access tokens issued from now on (`expires_in`). Default 1800 seconds.
    pub fn set_access_token_ttl(&self, ttl: Duration) {
        self.state().access_ttl = ttl;
    }

    /// The lifetime of authorization codes issued from now on. Default 10 minutes.
    pub fn set_code_ttl(&self, ttl: Duration) {
        self.state().code_ttl = ttl;
    }

    /// Whether refreshing rotates the refresh token. Default [`Rotation::Same`].
    pub fn set_rotation(&self, rotation: Rotation) {
        self.state().rotation = rotation;
    }

    /// What a second install by the same user into the same portal returns. Default
    /// [`Reinstall::NewRefreshToken`].
    pub fn set_reinstall(&self, reinstall: Reinstall) {
        self.state().reinstall = reinstall;
    }

    /// Which optional fields successful token answers carry. Default [`TokenFields::Spec`].
    pub fn set_token_fields(&self, fields: TokenFields) {
        self.state().token_fields = fields;
    }

    /// Mints a token pair for `portal_id`, installed by the current user (see [`set_user`](Self::set_user)) with
    /// exactly these scopes, without the browser step. An unknown portal is added with [`FakePortal::new`].
    pub fn issue(&self, portal_id: u64, scopes: &[&str]) -> IssuedTokens {
        let now = self.inner.shared.clock.now();
        let mut state = self.state();
        let grant =
            Grant { portal_id, user: state.user.clone(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() };
        let minted = state.mint(grant, now);
        IssuedTokens { access_token: minted.access_token, refresh_token: minted.refresh_token.unwrap_or_default() }
    }

    /// Every access token issued so far is expired from now on (account info answers `401
    /// EXPIRED_AUTHENTICATION`, introspection calls them dead). Tokens issued later are not affected.
    pub fn expire_access_tokens(&self) {
        let now = self.inner.shared.clock.now();
        self.state().expire_access_tokens(now);
    }

    /// The app is uninstalled from the portal: its refresh tokens are refused (`400 BAD_REFRESH_TOKEN` /
    /// `invalid_grant`), its access tokens get `401`, its pending codes are void. Installing again works.
    pub fn uninstall(&self, portal_id: u64) {
        self.state().uninstall(portal_id);
    }

    /// The user is removed from HubSpot: the same as [`uninstall`](Self::uninstall), for every token and code that
    /// user installed.
    pub fn remove_user(&self, user_id: u64) {
        self.state().remove_user(user_id);
    }

    /// The body of token-endpoint errors. Default [`ErrorStyle::Both`].
    pub fn set_error_style(&self, style: ErrorStyle) {
        self.state().error_style = style;
    }

    /// What 2026-03 introspection answers for a dead token. Default [`DeadIntrospection::Inactive`].
    pub fn set_dead_token_introspection(&self, mode: DeadIntrospection) {
        self.state().dead_introspection = mode;
    }

    /// The status of a successful 2026-03 revoke. Default 200; HubSpot does not document it (204 is the other
    /// candidate).
    pub fn set_revoke_status(&self, status: u16) {
        self.state().revoke_status = status;
    }

    /// The next `times` requests to `endpoint` get `failure` instead of the normal answer. Calls queue up in order.
    pub fn fail(&self, endpoint: Endpoint, failure: Failure, times: usize) {
        self.state().queue_failure(endpoint, failure, times);
    }

    /// Drops every failure still queued by [`fail`](Self::fail).
    pub fn reset_failures(&self) {
        self.state().clear_failures();
    }

    // ---- the CRM API ----

    /// HubSpot's rolling limit per portal for the CRM endpoints: at most `max` requests in any `window`, beyond
    /// which the fake answers `429` (`"policyName":"TEN_SECONDLY_ROLLING"`) and counts it in
    /// [`rate_limited_requests`](Self::rate_limited_requests). `None` turns the limit off. Default: on, at
    /// HubSpot's figure for OAuth apps, 110 per 10 seconds.
    pub fn set_rate_limit(&self, limit: Option<(u32, Duration)>) {
        self.state().crm.rate_limit = limit;
    }

    /// HubSpot's CRM search limit per portal: at most `per_second` searches in any second (`429` with
    /// `"policyName":"SECONDLY"` beyond). `None` turns it off. Default: on, 5 per second.
    pub fn set_search_rate_limit(&self, per_second: Option<u32>) {
        self.state().crm.search_rate_limit = per_second;
    }

    /// How many objects of `object_type` (`contacts`, `companies`, `deals`, `tickets`, or `0-1` ...) the portal
    /// holds. Every portal starts with sample objects: 3 contacts, 1 company, 1 deal.
    pub fn objects(&self, portal_id: u64, object_type: &str) -> usize {
        self.state().crm.count(portal_id, object_type)
    }

    /// Adds an object to the portal, as if created in HubSpot's UI, and returns its id. `None` for an object
    /// type the fake does not know. Property names the type does not have are added to it (see
    /// [`add_property`](Self::add_property)); nothing is validated.
    pub fn add_object(&self, portal_id: u64, object_type: &str, properties: &[(&str, &str)]) -> Option<String> {
        let now = self.inner.shared.clock.now();
        let object_type = state::crm::canonical_type(object_type)?;
        let properties = properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Some(self.state().crm.insert(portal_id, object_type, properties, now).to_string())
    }

    /// Adds a property to `object_type` in every portal, as if created in HubSpot's settings, so that creating
    /// objects with it is accepted. Returns `false` for an object type the fake does not know.
    pub fn add_property(&self, object_type: &str, name: &str) -> bool {
        let Some(object_type) = state::crm::canonical_type(object_type) else { return false };
        self.state().crm.add_property(object_type, name);
        true
    }

    /// Archives an object (moves it to the recycle bin, as a delete in HubSpot does): reads find it only with
    /// `archived=true`, searches never. Returns whether there was such a live object.
    pub fn archive_object(&self, portal_id: u64, object_type: &str, id: &str) -> bool {
        let now = self.inner.shared.clock.now();
        let (Some(object_type), Ok(id)) = (state::crm::canonical_type(object_type), id.parse::<u64>()) else {
            return false;
        };
        self.state().crm.archive(portal_id, object_type, id, now)
    }

    /// Associates two objects of the portal, both ways (reads show it with `associations=...`). Returns whether
    /// both exist.
    pub fn associate(&self, portal_id: u64, from_type: &str, from_id: &str, to_type: &str, to_id: &str) -> bool {
        let from = state::crm::canonical_type(from_type).zip(from_id.parse::<u64>().ok());
        let to = state::crm::canonical_type(to_type).zip(to_id.parse::<u64>().ok());
        match (from, to) {
            (Some(from), Some(to)) => self.state().crm.associate(portal_id, from, to),
            _ => false,
        }
    }

    // ---- inspection ----

    /// How many requests `endpoint` received, including those answered with an injected failure.
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.state().requests(endpoint)
    }

    /// How many authorization codes the authorize page has issued since the start.
    pub fn codes_issued(&self) -> usize {
        self.state().codes_issued()
    }

    /// How many requests the token endpoints (v1, v3, 2026-03) received together.
    pub fn token_requests(&self) -> usize {
        let state = self.state();
        state.requests(Endpoint::TokenV1) + state.requests(Endpoint::Token202603) + state.requests(Endpoint::TokenV3)
    }

    /// How many requests the token endpoints (all generations) received with this `grant_type`
    /// (`authorization_code`, `refresh_token` or `client_credentials`), including those answered with a token
    /// error. Requests without a form body, refused before they are read (credentials in the query string, a huge
    /// body) or answered with an injected failure are not counted here (see [`requests`](Self::requests)).
    pub fn grant_requests(&self, grant_type: &str) -> usize {
        self.state().grant_requests(grant_type)
    }

    /// The last form body `endpoint` received (for `GET` and `DELETE`, the query pairs), in order.
    pub fn last_form(&self, endpoint: Endpoint) -> Option<Vec<(String, String)>> {
        self.state().last_form(endpoint)
    }

    /// The `Authorization` header of the last request to `endpoint`, if it had one.
    pub fn last_authorization(&self, endpoint: Endpoint) -> Option<String> {
        self.state().last_authorization(endpoint)
    }

    /// The largest number of CRM API requests for `portal_id` (those with a live token, injected failures
    /// included, the fake's own `429`s excluded) inside any window of this length, measured with the fake's
    /// clock at arrival. Windows are half-open: `[t, t + window)`. Counts since the last
    /// [`reset_counts`](Self::reset_counts).
    pub fn max_requests_in_window(&self, portal_id: u64, window: Duration) -> usize {
        self.state().crm.max_in_window(portal_id, window)
    }

    /// How many `429`s the fake's own rate limits gave (see [`set_rate_limit`](Self::set_rate_limit)) since the
    /// last [`reset_counts`](Self::reset_counts); injected failures are not counted.
    pub fn rate_limited_requests(&self) -> usize {
        self.state().crm.rate_limited()
    }

    /// How many times a superseded refresh token was presented (under [`Rotation::Rotate`] or
    /// [`Rotation::Strict`]).
    pub fn stale_refresh_presentations(&self) -> usize {
        self.state().stale_presentations()
    }

    /// Sets every request count, [`stale_refresh_presentations`](Self::stale_refresh_presentations),
    /// [`rate_limited_requests`](Self::rate_limited_requests) and the log behind
    /// [`max_requests_in_window`](Self::max_requests_in_window) back to 0 (the rate limits themselves keep
    /// counting).
    pub fn reset_counts(&self) {
        self.state().reset_counts();
    }
}
