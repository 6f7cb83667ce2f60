//! Where connections, pending authorizations and refresh leases live: the store traits and their backends.
//!
//! Four small traits, one per kind of record, and [`TokenStore`] for a type that has all four (implemented
//! automatically). Every rule that must hold across workers is the store's job, done atomically:
//!
//! - every connection write is a compare-and-swap on [`Connection::version`], so a stale writer never overwrites a
//!   newer token;
//! - a pending authorization is taken at most once;
//! - a lease has an owner and a time to live, and only its owner releases it;
//! - one portal belongs to one tenant, and a tenant's portal limit holds, checked in the same atomic step as the insert;
//! - an event is appended to the event log in the same atomic step as the change it reports.
//!
//! A lookup returns `Result<Option<_>>`: a miss is `Ok(None)`, an outage is an [`Error`] with
//! [`ErrorCode::StoreUnavailable`].
//!
#![doc = include_str!("../../docs/stores.md")]

pub(crate) mod encrypted;
mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod record;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use self::encrypted::{EncryptedStore, EncryptionKey, KeyRing, RotationReport};
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::sql::postgres::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use self::sql::sqlite::SqliteStore;

pub use crate::connection::PendingAuthorization;
use crate::connection::{Connection, ConnectionId, ConnectionStatus};
#[allow(unused_imports)]
use crate::error::ErrorCode;
use crate::error::{Error, Result};
use crate::event::Event;
pub use crate::event::{EventCursor, LoggedEvent};

/// Rules checked atomically when a connection is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct InsertRules {
    /// Let several tenants hold the same portal. Off by default: one portal belongs to one tenant.
    pub allow_shared_portals: bool,
    /// The most portals the tenant may hold (`None`: no limit). A portal the tenant already holds does not count
    /// twice.
    pub max_portals: Option<usize>,
}

/// The result of [`ConnectionStore::insert`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Inserted {
    /// Stored, with version 1.
    Created,
    /// The tenant already holds this portal: nothing was written; here is the stored connection.
    Existing(Box<Connection>),
    /// Another tenant holds the portal (and shared portals are not allowed): nothing was written.
    PortalTaken {
        /// The tenant holding it.
        tenant: String,
    },
    /// The tenant already holds `max_portals` portals: nothing was written.
    LimitReached {
        /// How many portals the tenant holds.
        held: usize,
    },
}

/// Which connections [`ConnectionStore::list`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this portal's.
    pub portal_id: Option<u64>,
    /// Only in this status.
    pub status: Option<ConnectionStatus>,
    /// Only those installed by this user (email, compared without regard to case).
    pub installed_by: Option<String>,
}

impl ConnectionFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only `tenant`'s connections.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Only connections to `portal_id`.
    pub fn portal(mut self, portal_id: u64) -> Self {
        self.portal_id = Some(portal_id);
        self
    }

    /// Only connections in `status`.
    pub fn status(mut self, status: ConnectionStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Only connections installed by `user` (email).
    pub fn installed_by(mut self, user: impl Into<String>) -> Self {
        self.installed_by = Some(user.into());
        self
    }

    /// Whether `c` matches (what a backend that filters in memory uses).
    pub fn matches(&self, c: &Connection) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == c.tenant)
            && self.portal_id.is_none_or(|p| p == c.portal_id)
            && self.status.is_none_or(|s| s == c.status)
            && self
                .installed_by
                .as_ref()
                .is_none_or(|u| c.installed_by.as_ref().is_some_and(|i| i.eq_ignore_ascii_case(u)))
    }
}

/// Connections, written only by compare-and-swap.
///
/// # Writing your own backend
/// A complete backend over a `Mutex<HashMap>`: every rule in one critical section, the events appended under the
/// same lock as the write they report. A database does the same with a transaction, a unique constraint,
/// `UPDATE … WHERE version = $n` and an `INSERT` into its event table.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::{Duration, SystemTime};
/// use async_trait::async_trait;
/// use hubspot_connect::store::{
///     ConnectionFilter, ConnectionStore, EventStore, Inserted, InsertRules, LeaseStore, LoggedEvent,
///     PendingAuthorization, PendingStore, TokenStore, lease_is_absurd,
/// };
/// use hubspot_connect::connections::EventCursor;
/// use hubspot_connect::{Connection, ConnectionId, Event, Result};
///
/// #[derive(Debug, Default)]
/// struct MyStore {
///     // The connections, the event log, and the last event position given out.
///     connections: Mutex<(HashMap<ConnectionId, Connection>, Vec<LoggedEvent>, u64)>,
///     pending: Mutex<HashMap<String, PendingAuthorization>>,
///     leases: Mutex<HashMap<String, (String, SystemTime)>>,
/// }
///
/// #[async_trait]
/// impl ConnectionStore for MyStore {
///     async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
///         Ok(self.connections.lock().unwrap().0.get(id).cloned())
///     }
///     async fn insert_with_events(&self, connection: &Connection, rules: InsertRules, events: &[Event])
///         -> Result<Inserted> {
///         let mut guard = self.connections.lock().unwrap();
///         let (all, log, last) = &mut *guard;
///         if let Some(same) = all.values().find(|c| c.tenant == connection.tenant && c.portal_id == connection.portal_id) {
///             return Ok(Inserted::Existing(Box::new(same.clone())));
///         }
///         if let Some(other) = all.values().find(|c| c.portal_id == connection.portal_id) {
///             if !rules.allow_shared_portals {
///                 return Ok(Inserted::PortalTaken { tenant: other.tenant.clone() });
///             }
///         }
///         let held = all.values().filter(|c| c.tenant == connection.tenant).count();
///         if rules.max_portals.is_some_and(|max| held >= max) {
///             return Ok(Inserted::LimitReached { held });
///         }
///         let mut stored = connection.clone();
///         stored.version = 1;
///         all.insert(stored.id.clone(), stored);
///         append(log, last, events);
///         Ok(Inserted::Created)
///     }
///     async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
///         let mut guard = self.connections.lock().unwrap();
///         let (all, log, last) = &mut *guard;
///         match all.get_mut(&next.id) {
///             Some(current) if current.version + 1 == next.version => {
///                 *current = next.clone();
///                 append(log, last, events);
///                 Ok(true)
///             }
///             _ => Ok(false),
///         }
///     }
///     async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
///         let mut guard = self.connections.lock().unwrap();
///         let (all, log, last) = &mut *guard;
///         let deleted = all.remove(id).is_some();
///         if deleted {
///             append(log, last, events);
///         }
///         Ok(deleted)
///     }
///     async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
///         let mut found: Vec<Connection> =
///             self.connections.lock().unwrap().0.values().filter(|c| filter.matches(c)).cloned().collect();
///         found.sort_by(|a, b| a.id.cmp(&b.id));
///         Ok(found)
///     }
/// }
///
/// #[async_trait]
/// impl PendingStore for MyStore {
///     async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
///         self.pending.lock().unwrap().insert(pending.state_hash.clone(), pending);
///         Ok(())
///     }
///     async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
///         Ok(self.pending.lock().unwrap().remove(state_hash))
///     }
/// }
///
/// #[async_trait]
/// impl LeaseStore for MyStore {
///     async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
///         let mut leases = self.leases.lock().unwrap();
///         match leases.get(key) {
///             Some((holder, until)) if holder != owner && *until > now && !lease_is_absurd(*until, now, ttl) => {
///                 Ok(false)
///             }
///             _ => {
///                 leases.insert(key.to_owned(), (owner.to_owned(), now + ttl));
///                 Ok(true)
///             }
///         }
///     }
///     async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
///         let mut leases = self.leases.lock().unwrap();
///         if leases.get(key).is_some_and(|(holder, _)| holder == owner) {
///             leases.remove(key);
///             return Ok(true);
///         }
///         Ok(false)
///     }
/// }
///
/// fn append(log: &mut Vec<LoggedEvent>, last: &mut u64, events: &[Event]) {
///     for event in events {
///         *last += 1; // never reused, even after a purge
///         log.push(LoggedEvent::new(EventCursor::from_position(*last), event.clone()));
///     }
/// }
///
/// #[async_trait]
/// impl EventStore for MyStore {
///     async fn append_events(&self, events: &[Event]) -> Result<()> {
///         let mut guard = self.connections.lock().unwrap();
///         let (_, log, last) = &mut *guard;
///         append(log, last, events);
///         Ok(())
///     }
///     async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
///         let log = &self.connections.lock().unwrap().1;
///         Ok(log.iter().filter(|e| e.cursor > cursor).take(limit).cloned().collect())
///     }
///     async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
///         let log = &self.connections.lock().unwrap().1;
///         let mine: Vec<LoggedEvent> =
///             log.iter().filter(|e| e.event.connection_id.as_ref() == Some(id)).cloned().collect();
///         Ok(mine[mine.len().saturating_sub(limit)..].to_vec())
///     }
///     async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
///         let log = &mut self.connections.lock().unwrap().1;
///         let before = log.len();
///         log.retain(|e| e.event.occurred_at >= older_than);
///         Ok((before - log.len()) as u64)
///     }
/// }
///
/// fn assert_token_store<T: TokenStore>() {}
/// assert_token_store::<MyStore>();
/// ```
#[async_trait]
pub trait ConnectionStore: fmt::Debug + Send + Sync + 'static {
    /// The connection with this id.
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>>;

    /// Stores a new connection with version 1, checking [`InsertRules`] and "one portal, one tenant" atomically,
    /// and appends `events` to the event log in the same atomic step: all of it when the answer is
    /// [`Inserted::Created`], nothing otherwise.
    async fn insert_with_events(&self, new: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted>;

    /// Replaces the stored connection with `next` if, and only if, the stored version is `next.version - 1`, and
    /// appends `events` in the same atomic step. `Ok(false)` when another writer got there first (or the connection
    /// is gone): nothing is written, no event appended; re-read, never overwrite.
    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool>;

    /// Deletes a connection and appends `events` in the same atomic step. `Ok(false)` when there was none (and no
    /// event is appended).
    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool>;

    /// The connections matching `filter`, ordered by id.
    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>>;

    /// [`ConnectionStore::insert_with_events`] with no event.
    async fn insert(&self, connection: &Connection, rules: InsertRules) -> Result<Inserted> {
        self.insert_with_events(connection, rules, &[]).await
    }

    /// [`ConnectionStore::compare_and_swap_with_events`] with no event.
    async fn compare_and_swap(&self, next: &Connection) -> Result<bool> {
        self.compare_and_swap_with_events(next, &[]).await
    }

    /// [`ConnectionStore::delete_with_events`] with no event.
    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        self.delete_with_events(id, &[]).await
    }
}

/// The event log: append-only, ordered per store by an [`EventCursor`] that survives restarts.
///
/// Events that report a change of a connection are appended by the write that makes the change
/// ([`ConnectionStore::insert_with_events`] and its siblings), so there is never one without the other;
/// [`EventStore::append_events`] is for events with no change to go with (a failed connect). Events hold no secret:
/// a wrapping store (such as [`EncryptedStore`]) passes them through.
#[async_trait]
pub trait EventStore: fmt::Debug + Send + Sync + 'static {
    /// Appends `events`, in order, atomically.
    async fn append_events(&self, events: &[Event]) -> Result<()>;

    /// At most `limit` events strictly after `cursor`, oldest first. Events are ordered as the store committed
    /// them, so a reader that continues from the last cursor it saw misses none, across every process.
    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>>;

    /// The newest `limit` events of a connection (it may be gone: its history stays), oldest first.
    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>>;

    /// Removes the events that occurred before `older_than`; returns how many.
    async fn purge_events(&self, older_than: SystemTime) -> Result<u64>;
}

/// The most pending authorizations a built-in store keeps for one tenant: storing another drops that tenant's
/// oldest. More open "Connect HubSpot" attempts than a person makes; a script calling `begin` in a loop fills its own
/// tenant's allowance, not the store.
pub const MAX_PENDING_PER_TENANT: usize = 20;

/// How long a built-in store keeps a pending authorization past its expiry (so a late callback is told "expired"
/// rather than "unknown state"); after that it is purged when the next one is stored (Redis expires it itself).
pub const PENDING_GRACE: Duration = Duration::from_secs(3600);

/// Pending authorizations: stored by `begin`, taken once by `complete`.
#[async_trait]
pub trait PendingStore: fmt::Debug + Send + Sync + 'static {
    /// Stores a pending authorization under its `state_hash`.
    ///
    /// A store must bound what it keeps: the built-in ones keep at most [`MAX_PENDING_PER_TENANT`] per tenant
    /// (dropping the tenant's oldest) and purge what expired more than [`PENDING_GRACE`] before `created_at`.
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()>;

    /// Removes and returns the pending authorization, atomically: of any number of concurrent takers, at most one
    /// gets it. Expired ones are returned too (the caller reports them as expired); a store may purge old ones.
    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>>;
}

/// Refresh leases: one owner at a time per key, for a limited time.
#[async_trait]
pub trait LeaseStore: fmt::Debug + Send + Sync + 'static {
    /// Takes (or, for its owner, extends) the lease on `key` until `now + ttl`. `Ok(false)` when another owner
    /// holds an unexpired lease. A lease expiring more than `2 × ttl` after `now` is taken over as if it had expired
    /// (see [`lease_is_absurd`]): it was written by a clock that ran ahead.
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool>;

    /// Releases the lease if `owner` holds it. `Ok(false)` when it did not (it expired and someone else took it).
    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool>;
}

/// Whether a lease held `until` is too far ahead of `now` to be honest: more than twice `ttl` ahead. No holder with
/// a sane clock can have written it; a clock that ran ahead (or a corrupt value) did, and honouring it would block
/// every refresh of the connection until then. Backends take such a lease over as if it had expired.
pub fn lease_is_absurd(until: SystemTime, now: SystemTime, ttl: Duration) -> bool {
    until.duration_since(now).is_ok_and(|ahead| ahead > ttl.saturating_mul(2))
}

/// A store with all four: what [`crate::Connections`] needs. Implemented for every such type.
pub trait TokenStore: ConnectionStore + PendingStore + LeaseStore + EventStore {}

impl<T: ConnectionStore + PendingStore + LeaseStore + EventStore> TokenStore for T {}

const _: Option<&dyn ConnectionStore> = None;
const _: Option<&dyn PendingStore> = None;
const _: Option<&dyn LeaseStore> = None;
const _: Option<&dyn EventStore> = None;

/// A [`ErrorCode::StoreUnavailable`] error for a backend failure. The source must not hold secrets.
pub fn store_error(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorCode::StoreUnavailable, format!("the token store failed while {what}")).with_source(source)
}

#[async_trait]
impl<T: ConnectionStore + ?Sized> ConnectionStore for std::sync::Arc<T> {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        (**self).get(id).await
    }
    async fn insert_with_events(&self, new: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        (**self).insert_with_events(new, rules, events).await
    }
    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        (**self).compare_and_swap_with_events(next, events).await
    }
    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        (**self).delete_with_events(id, events).await
    }
    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        (**self).list(filter).await
    }
}

#[async_trait]
impl<T: EventStore + ?Sized> EventStore for std::sync::Arc<T> {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        (**self).append_events(events).await
    }
    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        (**self).events_since(cursor, limit).await
    }
    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        (**self).history(id, limit).await
    }
    async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
        (**self).purge_events(older_than).await
    }
}

#[async_trait]
impl<T: PendingStore + ?Sized> PendingStore for std::sync::Arc<T> {
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        (**self).put_pending(pending).await
    }
    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        (**self).take_pending(state_hash).await
    }
}

#[async_trait]
impl<T: LeaseStore + ?Sized> LeaseStore for std::sync::Arc<T> {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        (**self).try_lease(key, owner, ttl, now).await
    }
    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        (**self).release_lease(key, owner).await
    }
}
