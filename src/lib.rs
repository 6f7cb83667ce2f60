#![doc = include_str!("../docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
pub mod clock;
mod connection;
pub mod connector;
mod error;
mod event;
mod failpoint;
pub mod hubspot;
mod manager;
mod retry;
pub mod scope;
pub mod secret;
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

/// The manager's options, reports and events: what [`Connections`]' methods take and return beyond the everyday names
/// at the crate root.
pub mod connections {
    pub use crate::connection::{CredentialKind, LastError};
    pub use crate::event::{EventCursor, EventId, LoggedEvent};
    pub use crate::manager::{
        AuthorizeRedirect, ConnectOutcome, ConnectionsBuilder, DisconnectReport, PlanLimit, Policy, PortalLimit,
        SweepOptions, SweepReport, TestReport, validate_return_path,
    };
}

/// Calling HubSpot's API with a connection's token: [`HubSpotApi`] hands out a [`HubSpotClient`] per connection.
pub mod api {
    pub use crate::client::{ApiConfig, ApiRequest, ApiResponse, HubSpotApiBuilder, RateLimit};
}

pub use crate::client::{HubSpotApi, HubSpotClient};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::connection::{Connection, ConnectionId, ConnectionStatus};
pub use crate::connector::Connector;
pub use crate::error::{Error, ErrorCode, Result};
pub use crate::event::{Event, EventKind};
pub use crate::hubspot::HubSpotConnector;
pub use crate::manager::{BeginOptions, Callback, Connections, TenantConnections};
pub use crate::retry::Backoff;
pub use crate::scope::{Scope, Scopes};
pub use crate::secret::{AccessToken, ClientSecret, RefreshToken};
pub use crate::store::TokenStore;

/// The `http` crate, whose [`http::StatusCode`] appears in this crate's errors and answers.
pub use http;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
/// The `redis` crate, whose connection manager [`store::RedisStore::from_connection`] takes.
pub use redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
/// The `sqlx` crate, whose pools the SQL stores' `from_pool` take.
pub use sqlx;
/// The `url` crate, whose [`url::Url`] appears in this crate's signatures.
pub use url;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
