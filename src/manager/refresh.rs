//! `access_token` and `refresh`: a cache in front, single-flight in the process, a lease in the store across
//! processes, compare-and-swap writes, and what happens when HubSpot says no.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::sync::atomic::Ordering;

use rand::Rng;

use super::{Connections, EventKind, lock, not_found};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, LastError};
use crate::connector::Connector;
use crate::error::{Error, ErrorCode, Result};
use crate::secret::AccessToken;
use crate::store::TokenStore;

/// A token this process may hand out without asking the store, until `refresh_at`.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    token: AccessToken,
    /// `None`: never refreshed (a private app's token).
    refresh_at: Option<SystemTime>,
}

/// When to refresh a token that does not look due.
#[derive(Debug, Clone)]
pub(crate) enum Force {
    /// Only when due.
    No,
    /// Always, unless someone refreshed after the call started.
    Yes,
    /// When the stored token is still this one (HubSpot refused it).
    IfStillIs(AccessToken),
}

/// How many times a write of fresh tokens is tried before the tokens are kept in memory only.
const WRITE_ATTEMPTS: u32 = 3;

impl<C: Connector, S: TokenStore> Connections<C, S> {
    /// A valid access token for the connection: from this process's cache while fresh, otherwise refreshed —
    /// by exactly one caller per connection across every process sharing the store. The new tokens are stored
    /// before anyone gets them, and the refresh finishes even if the caller that started it is dropped.
    ///
    /// Errors: [`ErrorCode::ConnectionNotFound`]; [`ErrorCode::ReconnectRequired`] once HubSpot refused the refresh
    /// token (never retried on its own); while in `backoff` with an expired token, the error that put it there.
    /// A refresh that fails for a passing reason while the token is still valid returns the still-valid token.
    pub async fn access_token(&self, id: &ConnectionId) -> Result<AccessToken> {
        if self.inner.has_unsaved.load(Ordering::Acquire) {
            self.flush_unsaved().await;
        }
        if let Some(token) = self.cached(id, self.now()) {
            return Ok(token);
        }
        self.single_flight(id, Force::No).await
    }

    /// HubSpot refused `rejected` (a 401): refreshes if it is still the stored token, otherwise returns the newer
    /// stored one. However many callers report the same token, one refresh happens.
    pub async fn token_rejected(&self, id: &ConnectionId, rejected: &AccessToken) -> Result<AccessToken> {
        self.single_flight(id, Force::IfStillIs(rejected.clone())).await
    }

    /// Refreshes now (with `force`), or only if due. Returns the connection as stored afterwards.
    pub async fn refresh(&self, id: &ConnectionId, force: bool) -> Result<Connection> {
        self.single_flight(id, if force { Force::Yes } else { Force::No }).await?;
        self.status(id).await
    }

    fn cached(&self, id: &ConnectionId, now: SystemTime) -> Option<AccessToken> {
        let cache = self.inner.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = cache.get(id)?;
        match entry.refresh_at {
            Some(at) if now >= at => None,
            _ => Some(entry.token.clone()),
        }
    }

    /// Puts a connection's token in the cache, refreshing at `expires_at - margin - jitter`.
    pub(crate) fn remember(&self, c: &Connection) {
        let refresh_at = match (c.kind, c.expires_at) {
            (CredentialKind::PrivateApp, _) | (_, None) => None,
            (_, Some(expires_at)) => Some(self.refresh_point(expires_at)),
        };
        if c.status == ConnectionStatus::NeedsReauth || c.status == ConnectionStatus::Disconnected {
            self.forget(&c.id);
            return;
        }
        let mut cache = self.inner.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(c.id.clone(), Cached { token: c.access_token.clone(), refresh_at });
    }

    pub(crate) fn forget(&self, id: &ConnectionId) {
        self.inner.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    fn refresh_point(&self, expires_at: SystemTime) -> SystemTime {
        let policy = &self.inner.policy;
        let jitter = if policy.refresh_jitter.is_zero() {
            Duration::ZERO
        } else {
            policy.refresh_jitter.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
        };
        expires_at.checked_sub(policy.refresh_margin + jitter).unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Whether a stored connection's token must be refreshed now.
    fn due(&self, c: &Connection, now: SystemTime) -> bool {
        match (c.kind, c.expires_at) {
            (CredentialKind::PrivateApp, _) | (_, None) => false,
            (_, Some(expires_at)) => crate::clock::expired(expires_at, self.inner.policy.refresh_margin, now),
        }
    }

    async fn single_flight(&self, id: &ConnectionId, force: Force) -> Result<AccessToken> {
        let flight = {
            let mut flights = lock(&self.inner.flights);
            Arc::clone(flights.entry(id.clone()).or_default())
        };
        let guard = flight.lock_owned().await;
        let started = self.now();
        let cached = self.cached(id, started);
        match (&force, cached) {
            (Force::No, Some(token)) => return Ok(token),
            (Force::IfStillIs(rejected), Some(token)) if token != *rejected => return Ok(token),
            _ => {}
        }
        // The work runs in its own task, holding the flight lock: a caller that is dropped does not cancel it.
        let this = self.clone();
        let id = id.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            this.load_or_refresh(&id, force, started).await
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Error::new(ErrorCode::StoreUnavailable, "the refresh task failed").with_source(e)),
        }
    }

    async fn load_or_refresh(&self, id: &ConnectionId, force: Force, started: SystemTime) -> Result<AccessToken> {
        let c = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
        let now = self.now();
        if let Some(answer) = self.without_refresh(&c, &force, started, now) {
            return answer;
        }
        // Across processes: one lease holder refreshes; the others wait for its write.
        let key = format!("refresh:{}", id.as_str());
        let policy = &self.inner.policy;
        let mut waited = Duration::ZERO;
        loop {
            if self.inner.store.try_lease(&key, &self.inner.owner, policy.lease_ttl, self.now()).await? {
                break;
            }
            if waited > policy.lease_ttl.saturating_mul(3) {
                return Err(Error::new(
                    ErrorCode::StoreUnavailable,
                    "another worker kept the refresh lease for too long",
                ));
            }
            self.inner.clock.sleep(policy.lease_poll).await;
            waited += policy.lease_poll;
            let c = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
            if let Some(answer) = self.without_refresh(&c, &force, started, self.now()) {
                return answer;
            }
        }
        let result = async {
            // Lease won: re-read, another instance may have refreshed just now.
            let c = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
            if let Some(answer) = self.without_refresh(&c, &force, started, self.now()) {
                return answer;
            }
            self.refresh_now(c).await
        }
        .await;
        if let Err(e) = self.inner.store.release_lease(&key, &self.inner.owner).await {
            tracing::warn!(connection = %id, code = e.code().as_str(), "could not release a refresh lease; it expires");
        }
        result
    }

    /// The answer when no refresh is needed or allowed: `None` means refresh.
    fn without_refresh(
        &self,
        c: &Connection,
        force: &Force,
        started: SystemTime,
        now: SystemTime,
    ) -> Option<Result<AccessToken>> {
        match c.status {
            ConnectionStatus::NeedsReauth => return Some(Err(stored_error(c, ErrorCode::ReconnectRequired))),
            ConnectionStatus::Disconnected => return Some(Err(not_found(&c.id))),
            _ => {}
        }
        if c.kind == CredentialKind::PrivateApp {
            self.remember(c);
            return Some(Ok(c.access_token.clone()));
        }
        let fresh = !self.due(c, now)
            && match force {
                Force::No => true,
                // Someone refreshed after this call started: that is as good as a forced refresh. Strictly after: a
                // token from the very instant the call started (a coarse or manual clock) may predate the call.
                Force::Yes => c.refreshed_at > started,
                Force::IfStillIs(rejected) => c.access_token != *rejected,
            };
        if fresh {
            self.remember(c);
            return Some(Ok(c.access_token.clone()));
        }
        if c.status == ConnectionStatus::Backoff && c.retry_at.is_some_and(|t| now < t) {
            let still_valid = c.expires_at.is_some_and(|e| now < e);
            return Some(if still_valid && matches!(force, Force::No) {
                Ok(c.access_token.clone())
            } else {
                Err(stored_error(c, ErrorCode::HubspotUnavailable))
            });
        }
        None
    }

    async fn refresh_now(&self, c: Connection) -> Result<AccessToken> {
        let Some(refresh_token) = c.refresh_token.clone() else {
            return Err(Error::new(ErrorCode::ReconnectRequired, "the connection has no refresh token; reconnect it"));
        };
        match self.inner.connector.refresh(&refresh_token).await {
            Ok(set) => {
                let mut next = c.next_version(self.now());
                next.access_token = set.access_token;
                next.refresh_token = set.refresh_token.or(c.refresh_token.clone());
                next.expires_at = Some(set.expires_at);
                next.refreshed_at = set.requested_at;
                if let Some(scopes) = set.scopes {
                    next.scopes = scopes;
                }
                next.mark_healthy();
                let recovered = c.status != ConnectionStatus::Connected;
                self.store_refreshed(c, next, recovered).await
            }
            Err(e) if e.code() == ErrorCode::ReconnectRequired => {
                // Another worker may have refreshed (and rotated the token) after this one read it.
                let current = self.inner.store.get(&c.id).await?.ok_or_else(|| not_found(&c.id))?;
                if current.version != c.version && current.status == ConnectionStatus::Connected {
                    self.remember(&current);
                    return Ok(current.access_token);
                }
                self.mark_failed(current, &e, ConnectionStatus::NeedsReauth).await;
                Err(e)
            }
            Err(e) => {
                let current = self.inner.store.get(&c.id).await?.ok_or_else(|| not_found(&c.id))?;
                let still_valid = current.expires_at.is_some_and(|t| self.now() < t);
                let token = current.access_token.clone();
                self.mark_failed(current, &e, ConnectionStatus::Backoff).await;
                if still_valid { Ok(token) } else { Err(e) }
            }
        }
    }

    /// Writes refreshed tokens. A lost compare-and-swap means a newer writer: its record wins. A store that keeps
    /// failing: the tokens stay in this process's memory and the write is tried again on the next call.
    async fn store_refreshed(&self, read: Connection, mut next: Connection, recovered: bool) -> Result<AccessToken> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.inner.store.compare_and_swap(&next).await {
                Ok(true) => {
                    self.remember(&next);
                    self.emit(EventKind::Refreshed, &next);
                    if recovered {
                        self.emit(EventKind::Recovered, &next);
                    }
                    return Ok(next.access_token);
                }
                Ok(false) => {
                    let current = self.inner.store.get(&read.id).await?.ok_or_else(|| not_found(&read.id))?;
                    let ours_is_based_on_current = current.refresh_token == read.refresh_token
                        && current.access_token == read.access_token
                        && current.status != ConnectionStatus::NeedsReauth;
                    if !ours_is_based_on_current || attempt >= WRITE_ATTEMPTS {
                        // A newer writer stored other tokens: never overwrite them.
                        tracing::info!(connection = %read.id, "a newer write won; using the stored tokens");
                        return match self.without_refresh(&current, &Force::No, current.refreshed_at, self.now()) {
                            Some(answer) => answer,
                            None => Ok(current.access_token),
                        };
                    }
                    // Only health fields changed (a status, an error): put our tokens on top of that version.
                    let mut merged = current.next_version(self.now());
                    merged.take_tokens(&next);
                    next = merged;
                }
                Err(e) if attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(connection = %read.id, code = e.code().as_str(), attempt, "storing refreshed tokens failed; retrying");
                    self.inner.clock.sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::error!(
                        connection = %read.id,
                        code = e.code().as_str(),
                        "storing refreshed tokens failed; keeping them in memory and retrying on the next call"
                    );
                    self.remember(&next);
                    let token = next.access_token.clone();
                    lock(&self.inner.unsaved).insert(next.id.clone(), next);
                    self.inner.has_unsaved.store(true, Ordering::Release);
                    return Ok(token);
                }
            }
        }
    }

    /// Writes tokens that an earlier store failure left in memory only.
    pub(crate) async fn flush_unsaved(&self) {
        let held: Vec<Connection> = {
            let mut unsaved = lock(&self.inner.unsaved);
            self.inner.has_unsaved.store(false, Ordering::Release);
            unsaved.drain().map(|(_, c)| c).collect()
        };
        for next in held {
            match self.inner.store.compare_and_swap(&next).await {
                Ok(true) => tracing::info!(connection = %next.id, "stored tokens an earlier store failure held back"),
                Ok(false) => {
                    tracing::warn!(connection = %next.id, "tokens held back by a store failure were superseded")
                }
                Err(_) => {
                    lock(&self.inner.unsaved).insert(next.id.clone(), next);
                    self.inner.has_unsaved.store(true, Ordering::Release);
                }
            }
        }
    }

    async fn mark_failed(&self, current: Connection, error: &Error, status: ConnectionStatus) {
        let now = self.now();
        let mut next = current.next_version(now);
        next.status = status;
        next.failures = current.failures.saturating_add(1);
        next.last_error = Some(LastError { code: error.code(), message: error.to_string(), at: now });
        next.retry_at = match status {
            ConnectionStatus::Backoff => {
                let policy = &self.inner.policy;
                let exp = 1u32.checked_shl(next.failures.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
                let cooldown = policy.backoff_initial.saturating_mul(exp).min(policy.backoff_max);
                Some(saturating_add(now, error.retry_after().map_or(cooldown, |r| r.max(cooldown))))
            }
            _ => None,
        };
        match self.inner.store.compare_and_swap(&next).await {
            Ok(true) => {
                if status == ConnectionStatus::NeedsReauth {
                    self.forget(&next.id);
                    self.emit(EventKind::NeedsReauth, &next);
                } else {
                    self.emit(EventKind::RefreshFailed, &next);
                    // Callers in this process wait for the cooldown instead of asking again.
                    if let Some(retry_at) = next.retry_at {
                        let mut cache = self.inner.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if next.expires_at.is_some_and(|e| now < e) {
                            cache.insert(
                                next.id.clone(),
                                Cached {
                                    token: next.access_token.clone(),
                                    refresh_at: Some(retry_at.min(next.expires_at.unwrap_or(retry_at))),
                                },
                            );
                        } else {
                            cache.remove(&next.id);
                        }
                    }
                }
            }
            Ok(false) => tracing::info!(connection = %next.id, "the failure was not recorded: the connection changed"),
            Err(e) => {
                tracing::warn!(connection = %next.id, code = e.code().as_str(), "could not record a refresh failure")
            }
        }
    }
}

/// The error a stored status stands for, with the stored message.
fn stored_error(c: &Connection, fallback: ErrorCode) -> Error {
    match &c.last_error {
        Some(last) => {
            let code = if fallback == ErrorCode::ReconnectRequired { fallback } else { last.code };
            Error::new(code, last.message.clone())
        }
        None => Error::new(fallback, format!("connection {} is {}", c.id, c.status)),
    }
}
