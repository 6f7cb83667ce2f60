//! What the manager reports: a test result, a disconnect.

use std::time::Duration;

use serde::Serialize;

use crate::connection::ConnectionId;
use crate::connector::AccountType;
use crate::error::Error;
use crate::scope::Scope;

/// The result of [`crate::Connections::test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TestReport {
    /// The connection.
    pub id: ConnectionId,
    /// The portal HubSpot reports.
    pub portal_id: u64,
    /// The account type HubSpot reports.
    pub account_type: Option<AccountType>,
    /// The scopes HubSpot reports.
    pub scopes: Vec<Scope>,
    /// How long the check took.
    #[serde(rename = "latency_ms", serialize_with = "millis")]
    pub latency: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The result of [`crate::Connections::disconnect`]: the connection is purged locally either way.
#[derive(Debug)]
#[non_exhaustive]
pub struct DisconnectReport {
    /// The connection.
    pub id: ConnectionId,
    /// Whether HubSpot revoked the refresh token.
    pub revoked: bool,
    /// Why the revoke failed, if it did.
    pub revoke_error: Option<Error>,
}
