//! The two routes every HubSpot integration has, for axum (feature `axum`): "Connect HubSpot" and the OAuth
//! callback.
//!
//! - `GET {connect_path}?return_to=/settings&portal=123`: the tenant comes from **your** extractor (your session,
//!   your auth), never from a query parameter; the route starts an authorization and answers `302` to HubSpot.
//! - `GET {callback_path}?code=…&state=…`: completes it for the signed-in tenant and answers `303` to the return
//!   path with `hubspot_connection={id}`, or to the error path with `hubspot_error={CODE}`.
//!
//! Return paths are same-origin relative paths only ([`crate::connections::validate_return_path`]: `//host`, `/\host`, schemes
//! and their percent-encoded variants are refused). Both routes answer with `Cache-Control: no-store` and
//! `Referrer-Policy: no-referrer`, so the code and state in the callback URL are neither cached nor leaked.
//!
//! ```
//! use axum::extract::FromRequestParts;
//! use axum::http::{StatusCode, request::Parts};
//! use hubspot_connect::web::{ConnectRoutes, Tenant};
//! use hubspot_connect::store::MemoryStore;
//! use hubspot_connect::{Connections, HubSpotConnector, ClientSecret, Scopes};
//!
//! /// The signed-in customer, from your own session (here: a header your auth layer sets).
//! struct SignedIn(String);
//!
//! impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
//!     type Rejection = StatusCode;
//!     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
//!         let tenant = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).ok_or(StatusCode::UNAUTHORIZED)?;
//!         Ok(SignedIn(tenant.to_owned()))
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
//! let app: axum::Router = ConnectRoutes::new(connections, Scopes::new().require("crm.objects.contacts.read"))
//!     .router::<SignedIn>();
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::{Error, ErrorCode};
use crate::manager::{BeginOptions, Callback, Connections, validate_return_path};
use crate::scope::{Scope, ScopeSet, Scopes};

/// What your extractor must say: which tenant is signed in.
pub trait Tenant {
    /// The tenant's id.
    fn tenant(&self) -> &str;
}

/// The connect and callback routes. Build the router with [`ConnectRoutes::router`].
pub struct ConnectRoutes {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    scopes: Scopes,
    connect_path: String,
    callback_path: String,
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
            .field("default_return", &self.inner.default_return)
            .field("error_return", &self.inner.error_return)
            .finish_non_exhaustive()
    }
}

impl ConnectRoutes {
    /// Routes at `/hubspot/connect` and `/oauth/callback`, sending users back to `/` by default.
    pub fn new(connections: Connections, scopes: impl ScopeSet) -> Self {
        let scopes = Scopes::new().require_all(scopes.required()).optionally_all(scopes.optional());
        Self {
            inner: Arc::new(Inner {
                connections,
                scopes,
                connect_path: "/hubspot/connect".into(),
                callback_path: "/oauth/callback".into(),
                default_return: "/".into(),
                error_return: "/".into(),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    connections: old.connections.clone(),
                    scopes: old.scopes.clone(),
                    connect_path: old.connect_path.clone(),
                    callback_path: old.callback_path.clone(),
                    default_return: old.default_return.clone(),
                    error_return: old.error_return.clone(),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
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

    /// The router. `T` is your extractor for the signed-in tenant; when it rejects, its rejection is the answer.
    pub fn router<T>(self) -> Router
    where
        T: FromRequestParts<Self> + Tenant + Send + 'static,
    {
        let connect_path = self.inner.connect_path.clone();
        let callback_path = self.inner.callback_path.clone();
        Router::new().route(&connect_path, get(connect::<T>)).route(&callback_path, get(callback::<T>)).with_state(self)
    }
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

fn error_page(status: StatusCode, err: &Error) -> Response {
    private((status, format!("error[{}]: {}\n", err.code().as_str(), err.message())).into_response())
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

async fn connect<T: Tenant>(
    State(routes): State<ConnectRoutes>,
    tenant: T,
    query: Result<Query<ConnectQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &Error::new(ErrorCode::InvalidConfig, "the connect request's parameters are malformed"),
        );
    };
    let i = &routes.inner;
    let return_to = query.return_to.unwrap_or_else(|| i.default_return.clone());
    let mut options = BeginOptions::default().return_to(return_to).eu(query.eu.unwrap_or(false));
    if let Some(portal) = query.portal {
        options = options.portal(portal);
    }
    match i.connections.begin(tenant.tenant(), &i.scopes, options).await {
        Ok(begun) => redirect(StatusCode::FOUND, begun.authorize_url.as_str()),
        Err(e) if e.code() == ErrorCode::InvalidConfig => error_page(StatusCode::BAD_REQUEST, &e),
        Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn callback<T: Tenant>(State(routes): State<ConnectRoutes>, tenant: T, uri: axum::http::Uri) -> Response {
    let i = &routes.inner;
    let result = match Callback::from_query(uri.query().unwrap_or("")) {
        Ok(cb) => i.connections.complete_for(tenant.tenant(), &cb).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(done) => {
            let back = done.return_to.unwrap_or_else(|| i.default_return.clone());
            redirect(StatusCode::SEE_OTHER, &with_param(&back, "hubspot_connection", done.connection.id.as_str()))
        }
        Err(e) => {
            tracing::info!(code = e.code().as_str(), "HubSpot connection attempt failed");
            redirect(StatusCode::SEE_OTHER, &with_param(&i.error_return, "hubspot_error", e.code().as_str()))
        }
    }
}

#[allow(dead_code)]
fn _scope_is_used(_: Scope) {}
