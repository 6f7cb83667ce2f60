//! [`Connections`]: the lifecycle of every tenant's HubSpot connections over a [`Connector`] and a [`TokenStore`].

mod admin;
mod cache;
mod callback;
mod connect;
mod options;
mod refresh;
mod tenant;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

pub use self::admin::{DisconnectReport, SweepReport, TestReport};
pub use self::callback::{Callback, validate_return_path};
pub use self::connect::{AuthorizeRedirect, ConnectOutcome};
pub use self::options::{BeginOptions, ConnectionsBuilder, PlanLimit, Policy, PortalLimit, SweepOptions};
pub use self::tenant::TenantConnections;
use crate::event::{Event, EventKind};

use crate::clock::Clock;
use crate::connection::{Connection, ConnectionId};
use crate::connector::Connector;
use crate::error::{Error, ErrorCode, Result};
use crate::event::{EventCursor, LoggedEvent};
use crate::scope::Scope;
use crate::store::TokenStore;

/// The connection manager: connect, keep connected, reconnect, disconnect.
///
/// Cheap to clone (an `Arc` inside); share one per process. Several processes may share one store: refreshes are
/// coordinated through the store's leases and compare-and-swap writes.
///
#[doc = include_str!("../../docs/lifecycle.md")]
pub struct Connections {
    inner: Arc<Shared>,
}

impl Clone for Connections {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("connector", &self.inner.connector)
            .field("store", &self.inner.store)
            .field("policy", &self.inner.policy)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Policy,
    pub(crate) owner: String,
    pub(crate) cache: cache::TokenCache,
    pub(crate) events: broadcast::Sender<Event>,
}

fn not_found(id: &ConnectionId) -> Error {
    Error::new(ErrorCode::ConnectionNotFound, format!("no connection {id}"))
}

impl Connections {
    /// Starts configuring a manager.
    pub fn builder(connector: impl Connector, store: impl TokenStore) -> ConnectionsBuilder {
        Self::builder_shared(Arc::new(connector), Arc::new(store))
    }

    /// Starts configuring a manager over a connector and a store already shared (`Arc`s), for instance a store
    /// chosen at run time.
    pub fn builder_shared(connector: Arc<dyn Connector>, store: Arc<dyn TokenStore>) -> ConnectionsBuilder {
        ConnectionsBuilder::new(connector, store)
    }

    /// The connector.
    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.inner.connector
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The clock the manager reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The policies in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Subscribes to this process's connection events, as they are written to the store's log (a slow subscriber
    /// misses the oldest, see tokio's `broadcast`; the log itself, [`Connections::events_since`], misses nothing).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// A new event about `c`, now.
    pub(crate) fn event(&self, kind: EventKind, c: &Connection) -> Event {
        Event::new(kind, c, self.now())
    }

    /// Logs events the store has written and sends them to subscribers.
    pub(crate) fn publish(&self, events: Vec<Event>) {
        for event in events {
            tracing::info!(
                event = event.kind.as_str(),
                connection = event.connection_id.as_ref().map(ConnectionId::as_str),
                portal_id = event.portal_id,
                code = event.code.map(|c| c.as_str()),
                correlation_id = event.correlation_id.as_deref(),
                "hubspot connection event"
            );
            let _ = self.inner.events.send(event);
        }
    }

    /// A connection's events, oldest first, as long as the event log keeps them ([`Policy::event_retention`]); a
    /// disconnected connection's history stays.
    pub async fn history(&self, id: &ConnectionId) -> Result<Vec<LoggedEvent>> {
        self.inner.store.history(id, usize::MAX).await
    }

    /// At most `limit` events of every connection after `cursor` ([`EventCursor::START`] for the oldest kept),
    /// oldest first. Continue from the last one's cursor to read on: nothing is skipped, across every process
    /// sharing the store.
    pub async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.inner.store.events_since(cursor, limit).await
    }

    /// Removes the events older than [`Policy::event_retention`] from the store's log (every
    /// [`sweep`](Connections::sweep) does it too); returns how many.
    pub async fn purge_events(&self) -> Result<u64> {
        let horizon = self.now().checked_sub(self.inner.policy.event_retention).unwrap_or(std::time::UNIX_EPOCH);
        self.inner.store.purge_events(horizon).await
    }
}

#[allow(dead_code)]
fn _assert_send(c: &Connections) -> impl Send + '_ {
    let _ = Scope::OAUTH;
    async move {
        let _ = c.access_token(&ConnectionId::new("x")).await;
    }
}
