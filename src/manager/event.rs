//! What happens to connections, as a stream a vendor can subscribe to.

use std::time::SystemTime;

use serde::Serialize;

use crate::connection::{Connection, ConnectionId, LastError};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A portal was connected (or connected again by the same tenant).
    Connected,
    /// Tokens were refreshed.
    Refreshed,
    /// A refresh failed for a passing reason; the connection is in `backoff`.
    RefreshFailed,
    /// HubSpot refused the refresh token; the connection needs re-authorization.
    NeedsReauth,
    /// A connection in `backoff` or `needs_reauth` works again (refreshed, or reconnected).
    Recovered,
    /// The connection was disconnected and purged.
    Disconnected,
}

/// One event. Carries ids and codes, never a token.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The connection.
    pub connection_id: ConnectionId,
    /// Its tenant.
    pub tenant: String,
    /// Its portal.
    pub portal_id: u64,
    /// When.
    #[serde(with = "crate::clock::rfc3339")]
    pub at: SystemTime,
    /// Why, for failures.
    pub error: Option<LastError>,
}

impl Event {
    pub(crate) fn new(kind: EventKind, c: &Connection, at: SystemTime) -> Self {
        Self {
            kind,
            connection_id: c.id.clone(),
            tenant: c.tenant.clone(),
            portal_id: c.portal_id,
            at,
            error: c.last_error.clone(),
        }
    }
}
