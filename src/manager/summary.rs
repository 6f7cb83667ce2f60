//! What the manager reports: a connection without its tokens, a test result, a disconnect.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind};
use crate::connector::AccountType;
use crate::error::{Error, ErrorCode};
use crate::scope::Scope;

/// A connection as shown to people and scripts: never a token. The `hubconnect` tool prints this as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConnectionSummary {
    /// The connection id.
    pub id: ConnectionId,
    /// The tenant.
    pub tenant: String,
    /// The portal id.
    pub portal_id: u64,
    /// `connected`, `needs_reauth`, `backoff` or `disconnected`.
    pub status: ConnectionStatus,
    /// OAuth or private app.
    pub kind: CredentialKind,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// The installing user's email.
    pub installed_by: Option<String>,
    /// The account type.
    pub account_type: Option<AccountType>,
    /// When the access token expires (RFC 3339).
    #[serde(serialize_with = "crate::clock::rfc3339::option::serialize")]
    pub expires_at: Option<SystemTime>,
    /// The last error, if the connection is unhealthy.
    pub last_error: Option<ErrorSummary>,
}

/// An error's code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorSummary {
    /// The code.
    pub code: ErrorCode,
    /// The message.
    pub message: String,
}

impl From<&Connection> for ConnectionSummary {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.clone(),
            tenant: c.tenant.clone(),
            portal_id: c.portal_id,
            status: c.status,
            kind: c.kind,
            scopes: c.scopes.clone(),
            installed_by: c.installed_by.clone(),
            account_type: c.account_type.clone(),
            expires_at: c.expires_at,
            last_error: c.last_error.as_ref().map(|e| ErrorSummary { code: e.code, message: e.message.clone() }),
        }
    }
}

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
pub struct Disconnected {
    /// The connection.
    pub id: ConnectionId,
    /// Whether HubSpot revoked the refresh token.
    pub revoked: bool,
    /// Why the revoke failed, if it did.
    pub revoke_error: Option<Error>,
}
