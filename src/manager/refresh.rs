//! `access_token` and `refresh`: a cache in front, single-flight in the process, a lease in the store across
//! processes, compare-and-swap writes, and what happens when HubSpot says no.
//!
//! The rules, each the answer to a way a token was lost or a caller waited for nothing:
//! - a cached token is served until its refresh point, and re-checked against the store at least every
//!   [`Policy::cache_revalidate`](super::Policy), so a connection deleted or refreshed elsewhere is noticed;
//! - a refresh is conditional on state, not on time: "the token I saw is still the stored one";
//! - a caller that holds a still-valid token never waits for another worker's refresh;
//! - waiting for a lease is bounded by the clock, from the moment the call started, however many callers queue;
//! - a failure is recorded only over the tokens it was about, and `needs_reauth` is never overwritten by `backoff`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::{Connections, Event, EventKind, not_found};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, LastError};
use crate::error::{Error, ErrorCode, Result};
use crate::secret::AccessToken;

/// When to refresh.
#[derive(Debug, Clone)]
pub(crate) enum Force {
    /// `access_token`: when due. A still-valid token answers when the refresh fails for a passing reason, or while
    /// another worker refreshes.
    No,
    /// `refresh(id)`: when due; a failure is the answer.
    IfDue,
    /// Unless the stored token is no longer this one (someone refreshed since it was seen); a failure is the
    /// answer. A forced refresh, a sweep.
    Unless(AccessToken),
    /// HubSpot refused this token (a 401): as `Unless`, and a token nothing can refresh (a private app's) is dead.
    Refused(AccessToken),
}

impl Force {
    /// Whether `token`, not due, answers this call: always, unless the call is about that very token.
    fn settled_by(&self, token: &AccessToken) -> bool {
        match self {
            Force::No | Force::IfDue => true,
            // Someone refreshed since the token was seen: that is as good as this refresh.
            Force::Unless(seen) | Force::Refused(seen) => token != seen,
        }
    }

    /// Whether HubSpot refused `token` itself.
    fn refused(&self, token: &AccessToken) -> bool {
        matches!(self, Force::Refused(refused) if refused == token)
    }

    /// Whether a still-valid token answers the caller when no refresh can be made now.
    fn serves_valid_token(&self) -> bool {
        matches!(self, Force::No)
    }
}

/// What became of a failure to record.
enum Recorded {
    /// Written (or the store failed: logged).
    Done,
    /// Another worker stored other tokens, or found the connection dead: its result stands.
    Superseded(Box<Connection>),
    /// The connection was deleted meanwhile.
    Gone,
}

/// How many times a write of fresh tokens is tried before the tokens are kept in memory only.
const WRITE_ATTEMPTS: u32 = 3;
/// The shortest pause between two looks at another worker's lease, whatever `lease_poll` says.
const MIN_LEASE_POLL: Duration = Duration::from_millis(10);
/// A token is not refreshed sooner than this after it was issued (unless HubSpot refuses it), however short the
/// lifetime HubSpot gave it: a lifetime of zero must not turn every call into a refresh.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

impl Connections {
    /// A valid access token for the connection: from this process's cache while fresh, otherwise refreshed —
    /// by exactly one caller per connection across every process sharing the store. The new tokens are stored
    /// before anyone gets them, and the refresh finishes even if the caller that started it is dropped.
    ///
    /// A cached token is re-checked against the store at least every [`Policy::cache_revalidate`](super::Policy)
    /// (default 5 s), so a connection disconnected or refreshed by another process stops being served.
    /// While another worker refreshes, or when a refresh fails for a passing reason, a caller whose token is still
    /// valid gets it at once instead of waiting.
    ///
    /// Errors: [`ErrorCode::ConnectionNotFound`]; [`ErrorCode::ReconnectRequired`] once HubSpot refused the refresh
    /// token (never retried on its own); while in `backoff` with an expired token, the error that put it there;
    /// [`ErrorCode::StoreUnavailable`] when the token is due, the store fails, and no valid token is at hand, or
    /// when another worker kept the refresh lease for three lease lifetimes.
    pub fn access_token<'a>(
        &'a self,
        id: &'a ConnectionId,
    ) -> impl std::future::Future<Output = Result<AccessToken>> + Send + 'a {
        // The hot path, before any future exists: one atomic load, one clock read, one map lookup. The rest is boxed
        // so the future a cached call returns stays a few words long.
        let cached = if self.inner.cache.has_unsaved() {
            None
        } else {
            self.inner.cache.fresh(id, self.inner.clock.monotonic())
        };
        async move {
            match cached {
                Some(token) => Ok(token),
                None => Box::pin(self.access_token_slow(id)).await,
            }
        }
    }

    async fn access_token_slow(&self, id: &ConnectionId) -> Result<AccessToken> {
        if self.inner.cache.has_unsaved() {
            self.flush_unsaved().await;
        }
        if let Some(token) = self.inner.cache.fresh(id, self.inner.clock.monotonic()) {
            return Ok(token);
        }
        self.single_flight(id, Force::No).await
    }

    /// HubSpot refused `rejected` (a 401): refreshes if it is still the stored token, otherwise returns the newer
    /// stored one. However many callers report the same token, one refresh happens.
    pub async fn token_rejected(&self, id: &ConnectionId, rejected: &AccessToken) -> Result<AccessToken> {
        self.single_flight(id, Force::Refused(rejected.clone())).await
    }

    /// Refreshes the connection's tokens if they are due. Returns the connection as stored afterwards.
    ///
    /// Unlike [`access_token`](Self::access_token), a refresh that fails is an error here even when the stored
    /// token is still valid: whoever asked for a refresh learns it did not happen.
    pub async fn refresh(&self, id: &ConnectionId) -> Result<Connection> {
        self.single_flight(id, Force::IfDue).await?;
        self.status(id).await
    }

    /// Refreshes the connection's tokens now, due or not — unless another worker refreshed them since this call
    /// read them (that refresh is as good as this one, and HubSpot sees one request). Returns the connection as
    /// stored afterwards; a refresh that fails is an error, as for [`refresh`](Self::refresh).
    pub async fn force_refresh(&self, id: &ConnectionId) -> Result<Connection> {
        let seen = self.status(id).await?.access_token;
        self.single_flight(id, Force::Unless(seen)).await?;
        self.status(id).await
    }

    /// Drops this process's cached token for the connection: the next call reads the store. Call it when another
    /// process tells you a connection changed (the cache also re-checks the store on its own, see
    /// [`Policy::cache_revalidate`](super::Policy)).
    pub fn forget(&self, id: &ConnectionId) {
        self.inner.cache.forget(id);
    }

    /// Caches a connection's token until its refresh point.
    pub(crate) fn remember(&self, c: &Connection) {
        let refresh_at = match c.kind {
            CredentialKind::PrivateApp => None,
            _ => c.expires_at.map(|_| self.refresh_point(c)),
        };
        self.remember_until(c, refresh_at);
    }

    fn remember_until(&self, c: &Connection, refresh_at: Option<SystemTime>) {
        if matches!(c.status, ConnectionStatus::NeedsReauth | ConnectionStatus::Disconnected) {
            self.forget(&c.id);
            return;
        }
        self.inner.cache.put(c, refresh_at, self.now(), self.inner.clock.monotonic());
    }

    /// When a token is refreshed: `expires_at − margin − jitter`, with one jitter per token (so every check of the
    /// same token agrees), but never before half of its lifetime (nor within a second of its issue), so a lifetime
    /// shorter than the margin does not make every call refresh.
    fn refresh_point(&self, c: &Connection) -> SystemTime {
        let Some(expires_at) = c.expires_at else { return saturating_add(SystemTime::UNIX_EPOCH, Duration::MAX) };
        let policy = &self.inner.policy;
        let jitter = policy.refresh_jitter.mul_f64(jitter_fraction(&c.access_token));
        let early =
            expires_at.checked_sub(policy.refresh_margin.saturating_add(jitter)).unwrap_or(SystemTime::UNIX_EPOCH);
        let lifetime = expires_at.duration_since(c.refreshed_at).unwrap_or_default();
        let floor = saturating_add(c.refreshed_at, (lifetime / 2).max(MIN_REFRESH_INTERVAL))
            // A `refreshed_at` from a clock far ahead must not postpone the refresh past expiry for long.
            .min(saturating_add(expires_at, MIN_REFRESH_INTERVAL));
        early.max(floor)
    }

    /// Whether a stored connection's token must be refreshed now.
    fn due(&self, c: &Connection, now: SystemTime) -> bool {
        match (c.kind, c.expires_at) {
            (CredentialKind::PrivateApp, _) | (_, None) => false,
            (_, Some(_)) => now >= self.refresh_point(c),
        }
    }

    pub(crate) async fn single_flight(&self, id: &ConnectionId, force: Force) -> Result<AccessToken> {
        // Every wait of this call, for this process's other callers and for another worker's lease, ends here.
        let deadline = self.inner.clock.monotonic().saturating_add(self.inner.policy.lease_ttl.saturating_mul(3));
        let flight = self.inner.cache.flight(id);
        let guard = match Arc::clone(&flight).try_lock_owned() {
            Ok(guard) => guard,
            Err(_) => {
                // Another caller of this process is at work on this connection: a still-valid token need not wait.
                if force.serves_valid_token()
                    && let Some(token) = self.inner.cache.valid(id, self.now())
                {
                    return Ok(token);
                }
                Arc::clone(&flight).lock_owned().await
            }
        };
        drop(flight);
        // The work runs in its own task, holding the flight lock: a caller that is dropped does not cancel it.
        let this = self.clone();
        let id = id.clone();
        let task = tokio::spawn(async move {
            let result = match this.load_or_refresh(&id, &force, deadline).await {
                Err(e) if e.code() == ErrorCode::StoreUnavailable && force.serves_valid_token() => {
                    match this.inner.cache.valid(&id, this.now()) {
                        Some(token) => {
                            tracing::warn!(connection = %id, "the token store failed; serving the cached, still valid token");
                            this.inner.cache.recheck_later(&id, this.inner.clock.monotonic());
                            Ok(token)
                        }
                        None => Err(e),
                    }
                }
                other => other,
            };
            drop(guard);
            this.inner.cache.end_flight(&id);
            result
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Error::new(ErrorCode::StoreUnavailable, "the refresh task failed").with_source(e)),
        }
    }

    async fn load_or_refresh(&self, id: &ConnectionId, force: &Force, deadline: Duration) -> Result<AccessToken> {
        // A caller ahead of this one in this process may have refreshed just now.
        if let Some(token) = self.inner.cache.fresh(id, self.inner.clock.monotonic())
            && force.settled_by(&token)
        {
            return Ok(token);
        }
        let mut c = self.load(id).await?;
        if let Some(answer) = self.without_refresh(&c, force, self.now()) {
            return answer;
        }
        // Across processes: one lease holder refreshes; the others wait for its write.
        let key = format!("refresh:{}", id.as_str());
        let policy = &self.inner.policy;
        loop {
            let now = self.now();
            if self.inner.store.try_lease(&key, &self.inner.owner, policy.lease_ttl, now).await? {
                break;
            }
            if force.serves_valid_token() && c.expires_at.is_some_and(|e| now < e) {
                return Ok(c.access_token);
            }
            if self.inner.clock.monotonic() >= deadline {
                return Err(Error::new(
                    ErrorCode::StoreUnavailable,
                    format!(
                        "another worker has held the refresh lease of connection {id} for over {} s; if it crashed, \
                         its lease runs out after {} s",
                        policy.lease_ttl.saturating_mul(3).as_secs(),
                        policy.lease_ttl.as_secs()
                    ),
                ));
            }
            self.inner.clock.sleep(policy.lease_poll.max(MIN_LEASE_POLL)).await;
            c = self.load(id).await?;
            if let Some(answer) = self.without_refresh(&c, force, self.now()) {
                return answer;
            }
        }
        let result = async {
            // Lease won: re-read, another instance may have refreshed just now.
            let c = self.load(id).await?;
            if let Some(answer) = self.without_refresh(&c, force, self.now()) {
                return answer;
            }
            self.refresh_now(c, force).await
        }
        .await;
        if let Err(e) = self.inner.store.release_lease(&key, &self.inner.owner).await {
            tracing::warn!(connection = %id, code = e.code().as_str(), "could not release a refresh lease; it expires");
        }
        result
    }

    /// The stored connection; a missing one is also dropped from the cache.
    async fn load(&self, id: &ConnectionId) -> Result<Connection> {
        match self.inner.store.get(id).await? {
            Some(c) => Ok(c),
            None => {
                self.forget(id);
                Err(not_found(id))
            }
        }
    }

    /// The answer when no refresh is needed or allowed: `None` means refresh.
    fn without_refresh(&self, c: &Connection, force: &Force, now: SystemTime) -> Option<Result<AccessToken>> {
        match c.status {
            ConnectionStatus::NeedsReauth => {
                self.forget(&c.id);
                return Some(Err(stored_error(c, ErrorCode::ReconnectRequired)));
            }
            ConnectionStatus::Disconnected => {
                self.forget(&c.id);
                return Some(Err(not_found(&c.id)));
            }
            _ => {}
        }
        if c.kind == CredentialKind::PrivateApp && !force.refused(&c.access_token) {
            self.remember(c);
            return Some(Ok(c.access_token.clone()));
        }
        if !self.due(c, now) && force.settled_by(&c.access_token) {
            self.remember(c);
            return Some(Ok(c.access_token.clone()));
        }
        if c.status == ConnectionStatus::Backoff
            && let Some(retry_at) = c.retry_at.filter(|t| now < *t)
        {
            let still_valid = c.expires_at.is_some_and(|e| now < e);
            return Some(if still_valid && force.serves_valid_token() {
                // Served from the cache until the cooldown ends (or the token expires).
                self.remember_until(c, Some(c.expires_at.map_or(retry_at, |e| e.min(retry_at))));
                Ok(c.access_token.clone())
            } else {
                Err(stored_error(c, ErrorCode::HubspotUnavailable))
            });
        }
        None
    }

    async fn refresh_now(&self, c: Connection, force: &Force) -> Result<AccessToken> {
        let Some(refresh_token) = c.refresh_token.clone() else {
            // Nothing can refresh it (a private app's token HubSpot refused): a person must connect it again.
            let error = Error::new(
                ErrorCode::ReconnectRequired,
                "HubSpot refused the token and the connection has no refresh token; connect it again",
            );
            return match self.record_failure(&c, &error, ConnectionStatus::NeedsReauth).await {
                Recorded::Superseded(current) if current.status != ConnectionStatus::NeedsReauth => {
                    Ok(current.access_token.clone())
                }
                _ => Err(error),
            };
        };
        let error = match self.inner.connector.refresh(&refresh_token).await {
            Ok(set) => {
                crate::failpoint::hit("refresh.answered");
                let mut next = c.next_version(self.now());
                next.access_token = set.access_token;
                next.refresh_token = set.refresh_token.or(c.refresh_token.clone());
                next.expires_at = Some(set.expires_at);
                next.refreshed_at = set.requested_at;
                if let Some(scopes) = set.scopes {
                    next.scopes = scopes;
                }
                next.mark_healthy();
                let mut events = vec![self.event(EventKind::Refreshed, &next)];
                if c.status != ConnectionStatus::Connected {
                    events.push(self.event(EventKind::Recovered, &next));
                }
                if super::connect::scopes_differ(&c.scopes, &next.scopes) {
                    events.push(self.event(EventKind::ScopesChanged, &next));
                }
                return self.store_refreshed(c, next, events).await;
            }
            Err(e) => e,
        };
        let dead = error.code() == ErrorCode::ReconnectRequired;
        let status = if dead { ConnectionStatus::NeedsReauth } else { ConnectionStatus::Backoff };
        let now = self.now();
        let serve_valid = !dead && force.serves_valid_token() && c.expires_at.is_some_and(|e| now < e);
        match self.record_failure(&c, &error, status).await {
            Recorded::Done => {
                if serve_valid {
                    Ok(c.access_token)
                } else {
                    Err(error)
                }
            }
            Recorded::Gone => Err(not_found(&c.id)),
            Recorded::Superseded(current) => {
                tracing::info!(connection = %c.id, "another worker's result stands over this refresh's failure");
                match self.without_refresh(&current, &Force::No, now) {
                    Some(answer) => answer,
                    None if serve_valid => Ok(c.access_token),
                    None => Err(error),
                }
            }
        }
    }

    /// Writes refreshed tokens. A lost compare-and-swap means a newer writer: its record wins. A store that keeps
    /// failing: the tokens stay in this process's memory and the write is tried again on the next call.
    async fn store_refreshed(&self, read: Connection, mut next: Connection, events: Vec<Event>) -> Result<AccessToken> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            crate::failpoint::hit("refresh.before_store_write");
            match self.inner.store.compare_and_swap_with_events(&next, &events).await {
                Ok(true) => {
                    crate::failpoint::hit("refresh.after_store_write");
                    self.remember(&next);
                    self.publish(events);
                    return Ok(next.access_token);
                }
                Ok(false) => {
                    let current = self.load(&read.id).await?;
                    if !only_health_changed(&read, &current) || attempt >= WRITE_ATTEMPTS {
                        // A newer writer stored other tokens: never overwrite them.
                        tracing::info!(connection = %read.id, "a newer write won; using the stored tokens");
                        return match self.without_refresh(&current, &Force::No, self.now()) {
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
                    self.inner.cache.hold_unsaved(next);
                    return Ok(token);
                }
            }
        }
    }

    /// Writes tokens that an earlier store failure left in memory only.
    pub(crate) async fn flush_unsaved(&self) {
        for next in self.inner.cache.take_unsaved() {
            // The refresh is logged when it is stored.
            let events = vec![self.event(EventKind::Refreshed, &next)];
            match self.inner.store.compare_and_swap_with_events(&next, &events).await {
                Ok(true) => {
                    tracing::info!(connection = %next.id, "stored tokens an earlier store failure held back");
                    self.publish(events);
                }
                Ok(false) => {
                    tracing::warn!(connection = %next.id, "tokens held back by a store failure were superseded")
                }
                Err(_) => self.inner.cache.hold_unsaved(next),
            }
        }
    }

    /// Records a failed refresh of the tokens in `read`: on that version, or on a later one that changed only
    /// health fields. Never over other tokens (another worker refreshed), and never over `needs_reauth`.
    async fn record_failure(&self, read: &Connection, error: &Error, status: ConnectionStatus) -> Recorded {
        let mut base = read.clone();
        for _ in 0..WRITE_ATTEMPTS {
            let now = self.now();
            let next = failed(&base, error, status, now, &self.inner.policy);
            let kind =
                if status == ConnectionStatus::NeedsReauth { EventKind::NeedsReauth } else { EventKind::RefreshFailed };
            let events = vec![self.event(kind, &next).with_error(error)];
            match self.inner.store.compare_and_swap_with_events(&next, &events).await {
                Ok(true) => {
                    self.publish(events);
                    if status == ConnectionStatus::NeedsReauth {
                        self.forget(&next.id);
                    } else {
                        // Callers in this process wait for the cooldown instead of asking again.
                        match (next.retry_at, next.expires_at) {
                            (Some(retry_at), Some(expires_at)) if now < expires_at => {
                                self.remember_until(&next, Some(retry_at.min(expires_at)))
                            }
                            _ => self.forget(&next.id),
                        }
                    }
                    return Recorded::Done;
                }
                Ok(false) => {
                    let current = match self.inner.store.get(&read.id).await {
                        Ok(Some(current)) => current,
                        Ok(None) => {
                            self.forget(&read.id);
                            return Recorded::Gone;
                        }
                        Err(e) => {
                            tracing::warn!(connection = %read.id, code = e.code().as_str(), "could not record a refresh failure");
                            return Recorded::Done;
                        }
                    };
                    if !only_health_changed(read, &current) {
                        return Recorded::Superseded(Box::new(current));
                    }
                    base = current;
                }
                Err(e) => {
                    tracing::warn!(connection = %read.id, code = e.code().as_str(), "could not record a refresh failure");
                    return Recorded::Done;
                }
            }
        }
        tracing::info!(connection = %read.id, "the failure was not recorded: the connection kept changing");
        Recorded::Done
    }
}

/// Whether `current` differs from `read` only in health fields (a status, an error, a cooldown) that a writer
/// working from `read` may write over: the same tokens, and not found dead meanwhile.
fn only_health_changed(read: &Connection, current: &Connection) -> bool {
    current.access_token == read.access_token
        && current.refresh_token == read.refresh_token
        && current.status != ConnectionStatus::NeedsReauth
}

/// The next version of `base` after a failed refresh.
fn failed(
    base: &Connection,
    error: &Error,
    status: ConnectionStatus,
    now: SystemTime,
    policy: &super::Policy,
) -> Connection {
    let mut next = base.next_version(now);
    next.status = status;
    next.failures = base.failures.saturating_add(1);
    next.last_error = Some(LastError { code: error.code(), message: error.to_string(), at: now });
    next.retry_at = match status {
        ConnectionStatus::Backoff => {
            let cooldown = policy.backoff.delay(next.failures.saturating_sub(1), &mut rand::thread_rng());
            Some(saturating_add(now, error.retry_after().map_or(cooldown, |r| r.max(cooldown))))
        }
        _ => None,
    };
    next
}

/// A number in `[0, 1]` fixed by the token: every process and every check agree on a token's jitter.
fn jitter_fraction(token: &AccessToken) -> f64 {
    let digest = Sha256::digest(token.secret().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) as f64 / u64::MAX as f64
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::connection::Connection;
    use crate::store::{ConnectionStore, InsertRules, MemoryStore};
    use crate::{ClientSecret, HubSpotConnector, RefreshToken};

    async fn manager(clock: &ManualClock) -> Connections {
        let connector = HubSpotConnector::builder("id", ClientSecret::new("secret"), "http://localhost/cb")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Connections::builder(connector, Arc::new(MemoryStore::new())).clock(Arc::new(clock.clone())).build()
    }

    async fn seed(m: &Connections, n: u64) -> ConnectionId {
        let now = m.now();
        let c = Connection::new(
            format!("t{n}"),
            n,
            AccessToken::new(format!("access-{n}")),
            Some(RefreshToken::new(format!("refresh-{n}"))),
            Some(now + Duration::from_secs(1_800)),
            now,
        );
        let inserted = m.store().insert(&c, InsertRules::default()).await;
        assert!(inserted.is_ok());
        c.id
    }

    #[tokio::test]
    async fn per_connection_state_does_not_grow_with_every_connection_ever_touched() {
        let clock = ManualClock::new();
        let m = manager(&clock).await;
        let mut first = Vec::new();
        for n in 0..2_000 {
            let id = seed(&m, n).await;
            assert!(m.access_token(&id).await.is_ok());
            first.push(id);
        }
        assert_eq!(m.inner.cache.sizes().1, 0, "no flight outlives its call");
        // Ten idle minutes later, new connections are used: the idle entries make room.
        clock.advance(Duration::from_secs(601));
        for n in 2_000..2_100 {
            let id = seed(&m, n).await;
            assert!(m.access_token(&id).await.is_ok());
        }
        let cached = m.inner.cache.sizes().0;
        assert!(cached < 2_000, "{cached} cache entries kept");
        // An evicted connection is simply read again.
        assert!(m.access_token(&first[0]).await.is_ok());
    }
}
