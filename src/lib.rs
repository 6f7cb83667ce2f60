#![doc = include_str!("../docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod clock;
mod connection;
mod connector;
mod error;
mod failpoint;
mod hubspot;
mod manager;
mod retry;
mod scope;
mod secret;
pub mod store;
mod sync;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;
mod window;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use client::{ApiConfig, ApiRequest, ApiResponse, HubSpotApi, HubSpotApiBuilder, HubSpotClient, RateLimit};
pub use clock::{Clock, ManualClock, SystemClock, expired};
pub use connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, LastError, PendingAuthorization};
pub use connector::{AccountInfo, AccountType, Authorization, AuthorizeRequest, Connector, Installation, TokenSet};
pub use error::{Error, ErrorCode, HubSpotError, HubSpotErrorDetail, Result};
pub use hubspot::{ApiVersion, HubSpotConnector, HubSpotConnectorBuilder, RetryPolicy, TokenInfo, TokenKind};
pub use manager::{
    BeginOptions, Begun, Callback, Completed, ConnectionSummary, Connections, ConnectionsBuilder, Disconnected,
    ErrorSummary, Event, EventKind, PlanLimit, Policy, PortalLimit, SweepOptions, SweepReport, TenantConnections,
    TestReport, validate_return_path,
};
pub use retry::Backoff;
pub use scope::{MissingScopes, Scope, ScopeSet, Scopes, presets};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret, CsrfState, PkceVerifier, RefreshToken};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
pub use secrecy;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub use sqlx;
pub use url;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
