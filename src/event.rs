//! What happens to connections: [`Event`]s, written to the store's event log in the same atomic step as the change
//! they report, read back with a [`EventCursor`], and broadcast in process.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::connection::{Connection, ConnectionId};
use crate::error::{Error, ErrorCode};

/// What happened. Written as `connection.{name}` in an event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A portal was connected.
    Connected,
    /// A connection was authorized again (a reconnect, or the same tenant connecting the same portal again).
    Reconnected,
    /// Connecting failed after the pending authorization was taken (refused scopes, policy, HubSpot, the store).
    ConnectFailed,
    /// Tokens were refreshed.
    Refreshed,
    /// A refresh failed for a passing reason; the connection is in `backoff`.
    RefreshFailed,
    /// HubSpot refused the refresh token; the connection needs re-authorization.
    NeedsReauth,
    /// A connection in `backoff` or `needs_reauth` works again (refreshed, or reconnected).
    Recovered,
    /// The granted scopes changed (on a refresh or a reconnect).
    ScopesChanged,
    /// The app was uninstalled from the portal.
    Uninstalled,
    /// The connection was disconnected and purged.
    Disconnected,
}

impl EventKind {
    /// Every kind, in the order above.
    pub const ALL: [EventKind; 10] = [
        EventKind::Connected,
        EventKind::Reconnected,
        EventKind::ConnectFailed,
        EventKind::Refreshed,
        EventKind::RefreshFailed,
        EventKind::NeedsReauth,
        EventKind::Recovered,
        EventKind::ScopesChanged,
        EventKind::Uninstalled,
        EventKind::Disconnected,
    ];

    /// The event type: `connection.needs_reauth`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Connected => "connection.connected",
            EventKind::Reconnected => "connection.reconnected",
            EventKind::ConnectFailed => "connection.connect_failed",
            EventKind::Refreshed => "connection.refreshed",
            EventKind::RefreshFailed => "connection.refresh_failed",
            EventKind::NeedsReauth => "connection.needs_reauth",
            EventKind::Recovered => "connection.recovered",
            EventKind::ScopesChanged => "connection.scopes_changed",
            EventKind::Uninstalled => "connection.uninstalled",
            EventKind::Disconnected => "connection.disconnected",
        }
    }

    /// The kind of an event type (`connection.refreshed`, or just `refreshed`).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.strip_prefix("connection.").unwrap_or(name);
        Self::ALL.into_iter().find(|k| &k.as_str()["connection.".len()..] == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EventKind::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown event type {s:?}")))
    }
}

/// An event's id: `evt_` and 26 base32 characters (128 random bits). A webhook's `webhook-id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(crate::connection::random_id("evt_"))
    }

    /// An id from a string (read back from a store or a webhook).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in one store's event log: every event appended gets a greater one, in the order the store committed
/// them, and it survives restarts. Opaque to users (written as a decimal string); [`EventCursor::START`] is before
/// every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventCursor(u64);

impl EventCursor {
    /// Before the first event.
    pub const START: EventCursor = EventCursor(0);

    /// The cursor at `position` (a backend's sequence number, 1 for its first event).
    pub const fn from_position(position: u64) -> Self {
        Self(position)
    }

    /// The backend's sequence number.
    pub const fn position(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for EventCursor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        s.trim()
            .parse()
            .map(Self)
            .map_err(|_| Error::new(ErrorCode::InvalidConfig, "an event cursor is a number given by the event log"))
    }
}

impl Serialize for EventCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| serde::de::Error::custom("invalid event cursor"))
    }
}

/// One event. Carries ids, codes and messages, never a token. Its JSON (`Serialize`/`Deserialize`) is the event
/// object of the event log, the command line tool and webhooks:
///
/// ```json
/// {"id": "evt_…", "type": "connection.needs_reauth", "occurred_at": "2026-01-01T00:00:00.000Z", "tenant": "acme",
///  "connection_id": "hc_…", "portal_id": 12345, "installed_by": "admin@acme.example", "code": "RECONNECT_REQUIRED",
///  "message": "…", "correlation_id": "…", "metadata": {}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Its id (`evt_…`).
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When.
    #[serde(with = "crate::clock::rfc3339")]
    pub occurred_at: SystemTime,
    /// The tenant.
    pub tenant: String,
    /// The connection (`None` only for a new connection that failed to connect).
    pub connection_id: Option<ConnectionId>,
    /// The portal, when known.
    pub portal_id: Option<u64>,
    /// The installing user's email, when known.
    pub installed_by: Option<String>,
    /// The error's code, for failures.
    pub code: Option<ErrorCode>,
    /// The error's message, for failures.
    pub message: Option<String>,
    /// HubSpot's correlation id, when HubSpot answered with an error.
    pub correlation_id: Option<String>,
    /// Strings attached to the event (the connection's metadata, when connections carry some).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl Event {
    /// A new event (fresh id) about `connection` at `at`: its id, tenant, portal and installing user, and, for a
    /// failure kind, its last error's code and message.
    pub fn new(kind: EventKind, connection: &Connection, at: SystemTime) -> Self {
        let failure = matches!(kind, EventKind::RefreshFailed | EventKind::NeedsReauth | EventKind::ConnectFailed);
        let error = connection.last_error.as_ref().filter(|_| failure);
        Self {
            id: EventId::random(),
            kind,
            occurred_at: at,
            tenant: connection.tenant.clone(),
            connection_id: Some(connection.id.clone()),
            portal_id: Some(connection.portal_id),
            installed_by: connection.installed_by.clone(),
            code: error.map(|e| e.code),
            message: error.map(|e| e.message.clone()),
            correlation_id: None,
            metadata: BTreeMap::new(),
        }
    }

    /// A new event about `tenant` with no connection (yet): a `connect_failed` before anything was stored.
    pub fn for_tenant(kind: EventKind, tenant: impl Into<String>, at: SystemTime) -> Self {
        Self {
            id: EventId::random(),
            kind,
            occurred_at: at,
            tenant: tenant.into(),
            connection_id: None,
            portal_id: None,
            installed_by: None,
            code: None,
            message: None,
            correlation_id: None,
            metadata: BTreeMap::new(),
        }
    }

    /// With `error`'s code, message and HubSpot correlation id.
    pub fn with_error(mut self, error: &Error) -> Self {
        self.code = Some(error.code());
        self.message = Some(error.to_string());
        self.correlation_id = error.correlation_id().map(str::to_owned);
        self
    }
}

/// An event as the log holds it: its position, and the event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoggedEvent {
    /// Where it is in the store's log: pass it to `events_since` to read what came after.
    pub cursor: EventCursor,
    /// The event.
    pub event: Event,
}

impl LoggedEvent {
    /// An event at `cursor` (what a store's reads return).
    pub fn new(cursor: EventCursor, event: Event) -> Self {
        Self { cursor, event }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::connection::LastError;
    use crate::secret::{AccessToken, RefreshToken};

    fn connection() -> Connection {
        let at = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut c = Connection::new(
            "acme",
            12345,
            AccessToken::new("SECRET-at"),
            Some(RefreshToken::new("SECRET-rt")),
            None,
            at,
        );
        c.id = ConnectionId::new("hc_one");
        c.installed_by = Some("admin@acme.example".into());
        c
    }

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let mut c = connection();
        c.last_error = Some(LastError {
            code: ErrorCode::ReconnectRequired,
            message: "HubSpot refused the refresh token".into(),
            at: UNIX_EPOCH,
        });
        let mut e = Event::new(EventKind::NeedsReauth, &c, UNIX_EPOCH + Duration::from_millis(1_767_225_600_250));
        e.id = EventId::new("evt_x");
        e.correlation_id = Some("c-1".into());
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "evt_x", "type": "connection.needs_reauth", "occurred_at": "2026-01-01T00:00:00.250Z",
                "tenant": "acme", "connection_id": "hc_one", "portal_id": 12345,
                "installed_by": "admin@acme.example", "code": "RECONNECT_REQUIRED",
                "message": "HubSpot refused the refresh token", "correlation_id": "c-1", "metadata": {}
            })
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        let text = format!("{e:?} {}", serde_json::to_string(&e).unwrap());
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn a_tenant_event_has_nulls_and_success_kinds_no_error() {
        let e = Event::for_tenant(EventKind::ConnectFailed, "acme", UNIX_EPOCH)
            .with_error(&Error::new(ErrorCode::AuthScopeDenied, "refused"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["connection_id"], serde_json::Value::Null);
        assert_eq!(json["portal_id"], serde_json::Value::Null);
        assert_eq!(json["code"], "AUTH_SCOPE_DENIED");
        assert!(e.id.as_str().starts_with("evt_") && e.id.as_str().len() == 30);
        let mut c = connection();
        c.last_error = Some(LastError { code: ErrorCode::HubspotUnavailable, message: "m".into(), at: UNIX_EPOCH });
        assert_eq!(Event::new(EventKind::Refreshed, &c, UNIX_EPOCH).code, None);
    }

    #[test]
    fn kinds_and_cursors_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            assert_eq!(EventKind::parse(&kind.as_str()["connection.".len()..]), Some(kind));
        }
        assert_eq!(EventKind::parse("connection.nope"), None);
        let cursor = EventCursor::from_position(42);
        assert_eq!(cursor.to_string().parse::<EventCursor>().unwrap(), cursor);
        assert!(EventCursor::START < cursor);
        assert_eq!("x".parse::<EventCursor>().unwrap_err().code(), ErrorCode::InvalidConfig);
    }
}
