//! The routes of HubSpot connections for axum (feature `axum`): "Connect HubSpot", the OAuth callback, and JSON
//! routes for a connections page, every one scoped to the signed-in tenant.
//!
//! The tenant comes from **your** extractor (your session, your auth; it may read your app's state), never from a
//! request parameter: implement [`Tenant`] on it. When it rejects (no session), its rejection is the answer and
//! nothing is done. Every route works through [`Connections::tenant`](crate::Connections::tenant), so another
//! tenant's connection id is `404 CONNECTION_NOT_FOUND`, answered exactly as for an id that does not exist.
//!
//! # Routes
//!
//! | route | answers |
//! |---|---|
//! | `GET {connect_path}?return_to=/settings&portal=123&eu=true` | `302` to HubSpot's authorize URL |
//! | `GET {callback_path}?code=…&state=…` | `303` to the return path with `hubspot_connection={id}`, or to the error path with `hubspot_error={CODE}` (and, for `AUTH_SCOPE_DENIED`, `hubspot_missing_scopes`: the scopes, space-separated) |
//! | `GET {api_path}/connections` | `200 {"connections": [connection, …]}`, the tenant's only, ordered by id |
//! | `GET {api_path}/connections/{id}` | `200` connection |
//! | `POST {api_path}/connections/{id}/test` | `200 {"id", "portal_id", "account_type", "scopes", "latency_ms"}` |
//! | `POST {api_path}/connections/{id}/reconnect?return_to=/settings` | `200 {"authorize_url", "expires_at"}`: send the browser there (a JSON answer, not a redirect, so a script can) |
//! | `DELETE {api_path}/connections/{id}` | `200 {"id", "revoked": true\|false}`: revoked at HubSpot (when it answers) and deleted |
//!
//! Defaults: `connect_path` `/hubspot/connect`, `callback_path` `/oauth/callback`, `api_path` `/hubspot`. A
//! connection is the CLI's connection object: `id`, `tenant`, `portal_id`, `status` (`connected`, `needs_reauth`,
//! `backoff`, `disconnected`), `scopes`, `installed_by`, `account_type`, `expires_at` (RFC 3339), `last_error`
//! (`{"code", "message", "advice"}` or null). Never a token. Times are RFC 3339 in UTC.
//!
//! Return paths are same-origin relative paths only ([`crate::connections::validate_return_path`]: `//host`,
//! `/\host`, schemes and their percent-encoded variants are refused). Every answer carries `Cache-Control: no-store`
//! and `Referrer-Policy: no-referrer`, so the code and state in the callback URL are neither cached nor leaked.
//! The `POST` and `DELETE` routes change state: put them behind your CSRF protection as you do your own.
//!
//! # Errors
//!
//! Every error of the connect route and the JSON routes is an [`ApiError`]: the JSON body
//! `{"error": {"code": "CONNECTION_NOT_FOUND", "message": "…", "advice": "…"}}` with this status:
//!
//! | status | codes |
//! |---|---|
//! | 400 Bad Request | `INVALID_CONFIG` (a return path or portal id that is not valid), `INVALID_STATE`, `TOKEN_EXPIRED` |
//! | 403 Forbidden | `AUTH_SCOPE_DENIED`, `ACCESS_DENIED`, `MISSING_SCOPES`, `READ_ONLY` |
//! | 404 Not Found | `CONNECTION_NOT_FOUND` (also another tenant's connection) |
//! | 409 Conflict | `PORTAL_LIMIT_REACHED`, `PORTAL_ALREADY_CONNECTED`, `RECONNECT_REQUIRED` |
//! | 422 Unprocessable Content | `PORTAL_MISMATCH`, `WRONG_ACCOUNT_TYPE` |
//! | 429 Too Many Requests | `RATE_LIMITED` (with `Retry-After` when HubSpot gave one) |
//! | 500 Internal Server Error | `INVALID_CLIENT` |
//! | 502 Bad Gateway | `REQUEST_REJECTED` |
//! | 503 Service Unavailable | `HUBSPOT_UNAVAILABLE`, `STORE_UNAVAILABLE` |
//!
//! The callback is a browser's redirect back from HubSpot, so it answers errors with a `303` to the error path
//! instead (see the table above).
//!
//! # With your app's state
//!
//! [`ConnectRoutes::routes`] gives a `Router<S>` for your state `S`, to [`merge`](axum::Router::merge) into your
//! own router; your extractor may read the state. ([`ConnectRoutes::router`] is the same for an app without state.)
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//!
//! use axum::extract::FromRequestParts;
//! use axum::http::{StatusCode, request::Parts};
//! use hubspot_connect::web::{ConnectRoutes, Tenant};
//! use hubspot_connect::store::MemoryStore;
//! use hubspot_connect::{Connections, HubSpotConnector, ClientSecret, Scopes};
//!
//! /// Your app's state.
//! #[derive(Clone)]
//! struct AppState {
//!     sessions: Arc<HashMap<String, String>>, // session cookie → tenant
//! }
//!
//! /// The signed-in customer, from your own session.
//! struct SignedIn(String);
//!
//! impl FromRequestParts<AppState> for SignedIn {
//!     type Rejection = StatusCode;
//!     async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, StatusCode> {
//!         let cookie = parts.headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
//!         let session = cookie.strip_prefix("session=").unwrap_or("");
//!         state.sessions.get(session).map(|t| SignedIn(t.clone())).ok_or(StatusCode::UNAUTHORIZED)
//!     }
//! }
//!
//! impl Tenant for SignedIn {
//!     fn tenant(&self) -> &str {
//!         &self.0
//!     }
//! }
//!
//! # fn main() -> hubspot_connect::Result<()> {
//! let hubspot = HubSpotConnector::builder("client-id", ClientSecret::new("secret"), "https://app.example.com/oauth/callback").build()?;
//! let connections = Connections::builder(hubspot, MemoryStore::new()).build();
//! let routes = ConnectRoutes::new(connections, Scopes::new().require("crm.objects.contacts.read"))
//!     .error_return("/settings/connections")?;
//! let state = AppState { sessions: Arc::new(HashMap::new()) };
//! let app: axum::Router = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "home" }))
//!     .merge(routes.routes::<SignedIn, AppState>())
//!     .with_state(state);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode};
use crate::manager::{BeginOptions, Callback, Connections, validate_return_path};
use crate::scope::{Scope, ScopeSet, Scopes};

mod error;
mod json;

pub use error::ApiError;

/// What your extractor must say: which tenant is signed in.
pub trait Tenant {
    /// The tenant's id.
    fn tenant(&self) -> &str;
}

/// The routes (see the [module docs](self)). Build the router with [`ConnectRoutes::routes`] (for your app's state)
/// or [`ConnectRoutes::router`] (for an app without state).
pub struct ConnectRoutes {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    connections: Connections,
    scopes: Scopes,
    connect_path: String,
    callback_path: String,
    api_path: String,
    default_return: String,
    error_return: String,
}

impl Clone for ConnectRoutes {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl fmt::Debug for ConnectRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRoutes")
            .field("connect_path", &self.inner.connect_path)
            .field("callback_path", &self.inner.callback_path)
            .field("api_path", &self.inner.api_path)
            .field("default_return", &self.inner.default_return)
            .field("error_return", &self.inner.error_return)
            .finish_non_exhaustive()
    }
}

impl ConnectRoutes {
    /// Routes at `/hubspot/connect`, `/oauth/callback` and `/hubspot/connections…`, sending users back to `/` by
    /// default.
    pub fn new(connections: Connections, scopes: impl ScopeSet) -> Self {
        let scopes = Scopes::new().require_all(scopes.required()).optionally_all(scopes.optional());
        Self {
            inner: Arc::new(Inner {
                connections,
                scopes,
                connect_path: "/hubspot/connect".into(),
                callback_path: "/oauth/callback".into(),
                api_path: "/hubspot".into(),
                default_return: "/".into(),
                error_return: "/".into(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        f(Arc::make_mut(&mut self.inner));
        self
    }

    /// The connect route's path.
    pub fn connect_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|i| i.connect_path = path)
    }

    /// The callback route's path (the path of your app's redirect URI).
    pub fn callback_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|i| i.callback_path = path)
    }

    /// Where the JSON routes live: `{path}/connections…` (default `/hubspot`; `""` puts them at `/connections…`).
    pub fn api_path(self, path: impl Into<String>) -> Self {
        let path = path.into().trim_end_matches('/').to_owned();
        self.edit(|i| i.api_path = path)
    }

    /// Where users go after connecting when the connect request named no return path.
    pub fn default_return(self, path: impl Into<String>) -> crate::Result<Self> {
        let path = validate_return_path(&path.into())?;
        Ok(self.edit(|i| i.default_return = path))
    }

    /// Where users go when connecting failed (with `hubspot_error={CODE}`).
    pub fn error_return(self, path: impl Into<String>) -> crate::Result<Self> {
        let path = validate_return_path(&path.into())?;
        Ok(self.edit(|i| i.error_return = path))
    }

    /// The router for an app without state: [`ConnectRoutes::routes`] with `S = ()`.
    ///
    /// ```
    /// # use axum::{extract::FromRequestParts, http::{StatusCode, request::Parts}};
    /// # use hubspot_connect::{web::{ConnectRoutes, Tenant}, store::MemoryStore, *};
    /// /// The tenant from a header your auth layer sets.
    /// struct SignedIn(String);
    ///
    /// impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    ///     type Rejection = StatusCode;
    ///     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
    ///         let tenant = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok());
    ///         tenant.map(|t| SignedIn(t.to_owned())).ok_or(StatusCode::UNAUTHORIZED)
    ///     }
    /// }
    ///
    /// impl Tenant for SignedIn {
    ///     fn tenant(&self) -> &str {
    ///         &self.0
    ///     }
    /// }
    ///
    /// # fn main() -> hubspot_connect::Result<()> {
    /// # let hubspot = HubSpotConnector::builder("id", ClientSecret::new("s"), "https://app.example.com/oauth/callback").build()?;
    /// # let connections = Connections::builder(hubspot, MemoryStore::new()).build();
    /// let app: axum::Router = ConnectRoutes::new(connections, Scopes::new().require("crm.objects.contacts.read"))
    ///     .router::<SignedIn>();
    /// # let _ = app;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When a path does not start with `/`, or two paths collide (axum's rules).
    pub fn router<T>(self) -> Router
    where
        T: FromRequestParts<()> + Tenant + Send + 'static,
    {
        self.routes::<T, ()>()
    }

    /// Every route, as a `Router<S>` to [`merge`](Router::merge) into your app's `Router<S>`. `T` is your extractor
    /// for the signed-in tenant (it may read your state `S`); when it rejects, its rejection is the answer and
    /// nothing is done. The routes keep their own data; they do not need anything in `S`.
    ///
    /// # Panics
    ///
    /// When a path does not start with `/`, or two paths collide (axum's rules).
    pub fn routes<T, S>(self) -> Router<S>
    where
        T: FromRequestParts<S> + Tenant + Send + 'static,
        S: Clone + Send + Sync + 'static,
    {
        let i = &self.inner;
        let connections = format!("{}/connections", i.api_path);
        let one = format!("{connections}/{{id}}");
        let (test, reconnect) = (format!("{one}/test"), format!("{one}/reconnect"));
        Router::new()
            .route(
                &i.connect_path,
                get(with(i, |i, t: T, q: Result<Query<ConnectQuery>, QueryRejection>| {
                    connect(i, t.tenant().to_owned(), q)
                })),
            )
            .route(&i.callback_path, get(with(i, |i, t: T, uri: Uri| callback(i, t.tenant().to_owned(), uri))))
            .route(&connections, get(with1(i, |i, t: T| json::list(i, t.tenant().to_owned()))))
            .route(
                &one,
                get(with(i, |i, t: T, p: IdPath| json::status(i, t.tenant().to_owned(), p)))
                    .delete(with(i, |i, t: T, p: IdPath| json::remove(i, t.tenant().to_owned(), p))),
            )
            .route(&test, post(with(i, |i, t: T, p: IdPath| json::test(i, t.tenant().to_owned(), p))))
            .route(
                &reconnect,
                post({
                    let i = Arc::clone(i);
                    move |t: T, p: IdPath, q: Result<Query<json::ReconnectQuery>, QueryRejection>| {
                        json::reconnect(i, t.tenant().to_owned(), p, q)
                    }
                }),
            )
    }
}

/// A connection id from the route's path.
type IdPath = Result<Path<String>, PathRejection>;

/// A handler of the tenant and one more extractor, with the routes' data.
fn with<T, A, F, Fut>(inner: &Arc<Inner>, f: F) -> impl FnOnce(T, A) -> Fut + Clone + Send + Sync + 'static
where
    F: FnOnce(Arc<Inner>, T, A) -> Fut + Clone + Send + Sync + 'static,
{
    let inner = Arc::clone(inner);
    move |t, a| f(inner, t, a)
}

/// A handler of the tenant alone, with the routes' data.
fn with1<T, F, Fut>(inner: &Arc<Inner>, f: F) -> impl FnOnce(T) -> Fut + Clone + Send + Sync + 'static
where
    F: FnOnce(Arc<Inner>, T) -> Fut + Clone + Send + Sync + 'static,
{
    let inner = Arc::clone(inner);
    move |t| f(inner, t)
}

#[derive(Debug, Deserialize)]
struct ConnectQuery {
    return_to: Option<String>,
    portal: Option<u64>,
    eu: Option<bool>,
}

/// A response that must not be cached or leak its URL through the referrer.
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A JSON answer (private).
fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => private(
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response(),
        ),
        Err(_) => private(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => private((status, [(header::LOCATION, value)]).into_response()),
        Err(_) => private(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

fn with_param(path: &str, key: &str, value: &str) -> String {
    let (before, fragment) = match path.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (path, None),
    };
    let sep = if before.contains('?') { '&' } else { '?' };
    let value: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    let mut out = format!("{before}{sep}{key}={value}");
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

async fn connect(i: Arc<Inner>, tenant: String, query: Result<Query<ConnectQuery>, QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(q)) if q.portal != Some(0) => q,
        _ => {
            let e = Error::new(ErrorCode::InvalidConfig, "the connect request's parameters are not valid");
            return ApiError::from(e).into_response();
        }
    };
    let return_to = query.return_to.unwrap_or_else(|| i.default_return.clone());
    let mut options = BeginOptions::default().return_to(return_to).eu(query.eu.unwrap_or(false));
    if let Some(portal) = query.portal {
        options = options.portal(portal);
    }
    match i.connections.tenant(tenant).begin(&i.scopes, options).await {
        Ok(begun) => redirect(StatusCode::FOUND, begun.authorize_url.as_str()),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn callback(i: Arc<Inner>, tenant: String, uri: Uri) -> Response {
    let result = match Callback::from_query(uri.query().unwrap_or("")) {
        Ok(cb) => i.connections.tenant(tenant).complete(&cb).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            let back = done.return_to.unwrap_or_else(|| i.default_return.clone());
            redirect(StatusCode::SEE_OTHER, &with_param(&back, "hubspot_connection", done.connection.id.as_str()))
        }
        Err(e) => {
            tracing::info!(code = e.code().as_str(), "HubSpot connection attempt failed");
            let mut to = with_param(&i.error_return, "hubspot_error", e.code().as_str());
            if e.code() == ErrorCode::AuthScopeDenied && !e.missing_scopes().is_empty() {
                let missing: Vec<&str> = e.missing_scopes().iter().map(Scope::as_str).collect();
                to = with_param(&to, "hubspot_missing_scopes", &missing.join(" "));
            }
            redirect(StatusCode::SEE_OTHER, &to)
        }
    }
}
