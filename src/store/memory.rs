//! The in-memory store: everything in one process, gone when it exits. For tests, demos and single-process apps
//! that can afford to reconnect every portal after a restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{ConnectionFilter, ConnectionStore, EventStore, InsertRules, Inserted, LeaseStore, PendingStore};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, PendingAuthorization};
use crate::error::Result;
use crate::event::{Event, EventCursor, LoggedEvent};

/// Connections, pending authorizations, leases and the event log in memory, each rule held under one lock (an event
/// is appended under the lock of the write it reports).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<ConnectionId, Connection>,
    pending: HashMap<String, PendingAuthorization>,
    leases: HashMap<String, (String, SystemTime)>,
    /// Oldest first.
    events: Vec<LoggedEvent>,
    /// The last cursor given out.
    last_event: u64,
}

impl State {
    fn append(&mut self, events: &[Event]) {
        for event in events {
            self.last_event += 1;
            self.events.push(LoggedEvent::new(EventCursor::from_position(self.last_event), event.clone()));
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        Ok(self.state().connections.get(id).cloned())
    }

    async fn insert_with_events(&self, new: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        let mut state = self.state();
        let all = &mut state.connections;
        if let Some(same) = all.values().find(|c| c.tenant == new.tenant && c.portal_id == new.portal_id) {
            return Ok(Inserted::Existing(Box::new(same.clone())));
        }
        if !rules.allow_shared_portals
            && let Some(other) = all.values().find(|c| c.portal_id == new.portal_id)
        {
            return Ok(Inserted::PortalTaken { tenant: other.tenant.clone() });
        }
        let held = all.values().filter(|c| c.tenant == new.tenant).count();
        if rules.max_portals.is_some_and(|max| held >= max) {
            return Ok(Inserted::LimitReached { held });
        }
        let mut stored = new.clone();
        stored.version = 1;
        all.insert(stored.id.clone(), stored);
        state.append(events);
        Ok(Inserted::Created)
    }

    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        let mut state = self.state();
        match state.connections.get_mut(&next.id) {
            Some(current) if current.version.checked_add(1) == Some(next.version) => {
                *current = next.clone();
                state.append(events);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        let mut state = self.state();
        let deleted = state.connections.remove(id).is_some();
        if deleted {
            state.append(events);
        }
        Ok(deleted)
    }

    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        let mut found: Vec<Connection> =
            self.state().connections.values().filter(|c| filter.matches(c)).cloned().collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

#[async_trait]
impl PendingStore for MemoryStore {
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        let mut state = self.state();
        // Purge what expired long enough ago, so abandoned authorizations do not pile up.
        if let Some(horizon) = pending.created_at.checked_sub(super::PENDING_GRACE) {
            state.pending.retain(|_, p| p.expires_at > horizon);
        }
        // At most MAX_PENDING_PER_TENANT per tenant: the newest are kept.
        let mut held: Vec<(SystemTime, String)> = state
            .pending
            .values()
            .filter(|p| p.tenant == pending.tenant && p.state_hash != pending.state_hash)
            .map(|p| (p.created_at, p.state_hash.clone()))
            .collect();
        held.sort();
        let excess = (held.len() + 1).saturating_sub(super::MAX_PENDING_PER_TENANT);
        for (_, hash) in held.into_iter().take(excess) {
            state.pending.remove(&hash);
        }
        state.pending.insert(pending.state_hash.clone(), pending);
        Ok(())
    }

    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        Ok(self.state().pending.remove(state_hash))
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        let mut state = self.state();
        match state.leases.get(key) {
            Some((holder, until)) if holder != owner && *until > now && !super::lease_is_absurd(*until, now, ttl) => {
                Ok(false)
            }
            _ => {
                state.leases.insert(key.to_owned(), (owner.to_owned(), saturating_add(now, ttl)));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        let mut state = self.state();
        if state.leases.get(key).is_some_and(|(holder, _)| holder == owner) {
            state.leases.remove(key);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        self.state().append(events);
        Ok(())
    }

    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        let state = self.state();
        let first = state.events.partition_point(|e| e.cursor <= cursor);
        Ok(state.events[first..].iter().take(limit).cloned().collect())
    }

    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        let state = self.state();
        let mut found: Vec<LoggedEvent> = state
            .events
            .iter()
            .rev()
            .filter(|e| e.event.connection_id.as_ref() == Some(id))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        Ok(found)
    }

    async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
        let mut state = self.state();
        let before = state.events.len();
        state.events.retain(|e| e.event.occurred_at >= older_than);
        Ok((before - state.events.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::PkceVerifier;

    /// Finding 6: what expired more than PENDING_GRACE before the next put is purged (not a day later).
    #[tokio::test]
    async fn expired_pending_authorizations_are_purged_after_the_grace() {
        let store = MemoryStore::new();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        for (state, expires) in [("stale", 600), ("late", 600 + 3_000)] {
            store
                .put_pending(PendingAuthorization::new(state, "acme", PkceVerifier::new("v"), t(0), t(expires)))
                .await
                .unwrap();
        }
        let next = t(600) + super::super::PENDING_GRACE + Duration::from_secs(1);
        store.put_pending(PendingAuthorization::new("next", "acme", PkceVerifier::new("v"), next, next)).await.unwrap();
        assert!(store.take_pending(&PendingAuthorization::hash_state("stale")).await.unwrap().is_none());
        assert!(store.take_pending(&PendingAuthorization::hash_state("late")).await.unwrap().is_some());
    }
}
