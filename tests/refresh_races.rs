//! What a refresh promises when workers race, fail, wait or disagree: each finding of the reliability review, with
//! the test that reproduced it. Every test here failed before its fix.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use hubspot_connect::store::{
    ConnectionFilter, ConnectionStore, EventCursor, EventStore, InsertRules, Inserted, LeaseStore, LoggedEvent,
    MemoryStore, PendingStore, TokenStore,
};
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot, Rotation};
use hubspot_connect::{
    AccessToken, Clock, Connection, ConnectionId, ConnectionStatus, Connections, Connector, Error, ErrorCode, Event,
    HubSpotConnector, ManualClock, RefreshToken, Result, SystemClock,
    connections::{Policy, SweepOptions},
    connector::{Authorization, AuthorizeRequest, Installation, TokenSet},
    hubspot::RetryPolicy,
    secret::{AuthorizationCode, PkceVerifier},
    store::PendingAuthorization,
};
use tokio::sync::Notify;

/// What a [`Scripted`] connector's next refresh does.
enum Step {
    /// Waits for the gate, then fails with the code.
    HoldThenFail(Arc<Notify>, ErrorCode),
    /// Fails at once with the code.
    Fail(ErrorCode),
}

/// A connector over the fake whose refreshes follow a script first, then reach the fake.
#[derive(Clone)]
struct Scripted {
    inner: HubSpotConnector,
    script: Arc<Mutex<VecDeque<Step>>>,
    refreshes: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

impl Scripted {
    fn new(inner: HubSpotConnector, steps: Vec<Step>) -> Self {
        Self { inner, script: Arc::new(Mutex::new(steps.into())), refreshes: Arc::default() }
    }
}

#[async_trait]
impl Connector for Scripted {
    fn authorize_url(&self, request: &AuthorizeRequest) -> Result<Authorization> {
        self.inner.authorize_url(request)
    }
    async fn exchange_code(&self, code: AuthorizationCode, verifier: PkceVerifier) -> Result<TokenSet> {
        self.inner.exchange_code(code, verifier).await
    }
    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenSet> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let step = self.script.lock().unwrap().pop_front();
        match step {
            Some(Step::HoldThenFail(gate, code)) => {
                gate.notified().await;
                Err(Error::new(code, "scripted failure"))
            }
            Some(Step::Fail(code)) => Err(Error::new(code, "scripted failure")),
            None => self.inner.refresh(refresh_token).await,
        }
    }
    async fn identify(&self, access_token: &AccessToken) -> Result<Installation> {
        self.inner.identify(access_token).await
    }
    async fn revoke(&self, refresh_token: &RefreshToken) -> Result<bool> {
        self.inner.revoke(refresh_token).await
    }
}

type Manager = Connections;

/// A manager, and how many refreshes its scripted connector was asked for.
#[derive(Clone)]
struct Worker {
    manager: Manager,
    refreshes: Arc<AtomicUsize>,
}

impl std::ops::Deref for Worker {
    type Target = Manager;
    fn deref(&self) -> &Manager {
        &self.manager
    }
}

/// A fake on a manual clock, and managers over one store.
struct World {
    fake: FakeHubSpot,
    clock: ManualClock,
    store: Arc<dyn TokenStore>,
    policy: Policy,
}

impl World {
    async fn new(store: Arc<dyn TokenStore>) -> Self {
        let clock = ManualClock::new();
        let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
        let mut policy = Policy::default();
        policy.refresh_jitter = Duration::ZERO;
        policy.lease_ttl = Duration::from_secs(60);
        World { fake, clock, store, policy }
    }

    fn manager(&self, owner: &str, steps: Vec<Step>) -> Worker {
        let connector = self
            .fake
            .connector_builder()
            .clock(Arc::new(self.clock.clone()))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let scripted = Scripted::new(connector, steps);
        let refreshes = Arc::clone(&scripted.refreshes);
        let manager = Connections::builder_shared(Arc::new(scripted), Arc::clone(&self.store))
            .clock(Arc::new(self.clock.clone()))
            .policy(self.policy.clone())
            .owner(owner)
            .build();
        Worker { manager, refreshes }
    }

    /// Stores a connection whose token expires in `expires_in` (tokens the fake really issued, for HubSpot's 30
    /// minutes: the token was refreshed `30 min − expires_in` ago).
    async fn seed(&self, expires_in: Duration) -> Connection {
        let issued = self.fake.issue(62515, &["oauth"]);
        let now = self.clock.now();
        let mut c = Connection::new(
            "acme",
            62515,
            AccessToken::new(issued.access_token.clone()),
            Some(RefreshToken::new(issued.refresh_token.clone())),
            Some(now + expires_in),
            now,
        );
        c.refreshed_at = now + expires_in - Duration::from_secs(1_800);
        assert_eq!(self.store.insert(&c, InsertRules::default()).await.unwrap(), Inserted::Created);
        self.store.get(&c.id).await.unwrap().unwrap()
    }

    async fn stored(&self, id: &ConnectionId) -> Connection {
        self.store.get(id).await.unwrap().unwrap()
    }
}

/// Waits until `f` holds: yields first, then sleeps a little between looks; gives up (failing, not hanging) after
/// about a minute, which only a stuck condition reaches.
async fn until(what: &str, f: impl Fn() -> bool) {
    for look in 0..13_000 {
        if f() {
            return;
        }
        if look < 1_000 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    panic!("never happened: {what}");
}

// ---- 2. A stale failure overwrites another worker's result ----

/// Starts `worker`'s `access_token` and returns once its (scripted) refresh is under way.
async fn refreshing(worker: &Worker, id: &ConnectionId) -> tokio::task::JoinHandle<Result<AccessToken>> {
    let call = tokio::spawn({
        let (worker, id) = (worker.clone(), id.clone());
        async move { worker.access_token(&id).await }
    });
    until("the worker is refreshing", || worker.refreshes.load(Ordering::SeqCst) == 1).await;
    call
}

#[tokio::test]
async fn a_stale_transient_failure_does_not_mark_a_refreshed_connection_backoff() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let gate = Arc::new(Notify::new());
    let slow = w.manager("slow", vec![Step::HoldThenFail(Arc::clone(&gate), ErrorCode::HubspotUnavailable)]);
    let fast = w.manager("fast", vec![]);
    let c = w.seed(Duration::from_secs(60)).await;

    let slow_call = refreshing(&slow, &c.id).await;
    // Its lease runs out; the fast worker refreshes and stores new tokens.
    w.clock.advance(Duration::from_secs(61));
    let fresh = fast.access_token(&c.id).await.unwrap();
    assert_eq!(w.fake.token_requests(), 1);
    let refreshed = w.stored(&c.id).await;
    assert_eq!((refreshed.status, refreshed.version), (ConnectionStatus::Connected, 2));

    // The slow worker's request fails late: it must not write `backoff` over the fast worker's result.
    gate.notify_one();
    let answer = slow_call.await.unwrap();
    let after = w.stored(&c.id).await;
    assert_eq!(after, refreshed, "the stale failure was not recorded");
    assert_eq!(answer.unwrap(), fresh, "the slow worker serves the stored, newer token");
}

#[tokio::test]
async fn a_stale_transient_failure_never_turns_needs_reauth_back_into_backoff() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let gate = Arc::new(Notify::new());
    let slow = w.manager("slow", vec![Step::HoldThenFail(Arc::clone(&gate), ErrorCode::HubspotUnavailable)]);
    let finder = w.manager("finder", vec![Step::Fail(ErrorCode::ReconnectRequired)]);
    let c = w.seed(Duration::from_secs(60)).await;

    let slow_call = refreshing(&slow, &c.id).await;
    w.clock.advance(Duration::from_secs(61));
    let dead = finder.access_token(&c.id).await.unwrap_err();
    assert_eq!(dead.code(), ErrorCode::ReconnectRequired);
    assert_eq!(w.stored(&c.id).await.status, ConnectionStatus::NeedsReauth);

    gate.notify_one();
    let answer = slow_call.await.unwrap().unwrap_err();
    assert_eq!(answer.code(), ErrorCode::ReconnectRequired, "{answer}");
    let after = w.stored(&c.id).await;
    assert_eq!(after.status, ConnectionStatus::NeedsReauth, "needs_reauth is never overwritten by backoff");
    assert_eq!(after.last_error.map(|e| e.code), Some(ErrorCode::ReconnectRequired));
    // And it is not retried on its own.
    w.clock.advance(Duration::from_secs(3_600));
    let again = slow.access_token(&c.id).await.unwrap_err();
    assert_eq!(again.code(), ErrorCode::ReconnectRequired);
    assert_eq!(slow.refreshes.load(Ordering::SeqCst), 1, "a dead token is never sent again");
    assert_eq!(w.fake.token_requests(), 0);
}

// ---- 3. Forced refreshes across instances refresh twice ----

/// Two instances on the real clock: the first one's request is in flight (HubSpot takes 2 s, far longer than the
/// second needs to read the store) when the second asks for a forced refresh of the same connection.
async fn two_instances_one_slow_refresh() -> (FakeHubSpot, [Connections; 2], Connection) {
    let fake = FakeHubSpot::start().await;
    fake.set_rotation(Rotation::Strict);
    let store = Arc::new(MemoryStore::new());
    let make = |owner: &str| {
        Connections::builder(fake.connector_builder().build().unwrap(), Arc::clone(&store)).owner(owner).build()
    };
    let managers = [make("a"), make("b")];
    let issued = fake.issue(62515, &["oauth"]);
    let now = SystemClock.now();
    let c = Connection::new(
        "acme",
        62515,
        AccessToken::new(issued.access_token.clone()),
        Some(RefreshToken::new(issued.refresh_token.clone())),
        Some(now + Duration::from_secs(1_800)),
        now - Duration::from_secs(2 * 86_400),
    );
    store.insert(&c, InsertRules::default()).await.unwrap();
    fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_secs(2)), 1);
    (fake, managers, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_refresh_during_another_instances_refresh_does_not_refresh_again() {
    let (fake, [a, b], c) = two_instances_one_slow_refresh().await;
    let first = tokio::spawn({
        let (a, id) = (a.clone(), c.id.clone());
        async move { a.force_refresh(&id).await }
    });
    until("the first refresh is on the wire", || fake.token_requests() == 1).await;
    let second = b.force_refresh(&c.id).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(fake.token_requests(), 1, "the second forced refresh saw the first one's tokens");
    assert_eq!(first.access_token, second.access_token);
    assert_eq!(fake.stale_refresh_presentations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeps_a_moment_apart_refresh_an_idle_connection_once() {
    let (fake, [a, b], c) = two_instances_one_slow_refresh().await;
    let first = tokio::spawn({
        let a = a.clone();
        async move { a.sweep(SweepOptions::default()).await }
    });
    until("the first sweep's refresh is on the wire", || fake.token_requests() == 1).await;
    let second = b.sweep(SweepOptions::default()).await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(fake.token_requests(), 1, "one refresh for one idle connection");
    assert_eq!((first.refreshed, first.failed), (1, 0));
    assert_eq!(second.failed, 0, "{second:?}");
    assert_eq!(a.status(&c.id).await.unwrap().version, 2);
}

// ---- 4. The lease wait ----

/// A lease another owner holds on the connection's refresh, as a crashed worker leaves it.
async fn ghost_lease(store: &dyn TokenStore, id: &ConnectionId, now: SystemTime, ttl: Duration) {
    assert!(store.try_lease(&format!("refresh:{}", id.as_str()), "ghost", ttl, now).await.unwrap());
}

#[tokio::test]
async fn a_zero_lease_poll_does_not_spin_forever() {
    let mut w = World::new(Arc::new(MemoryStore::new())).await;
    w.policy.lease_poll = Duration::ZERO;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(1)).await;
    w.clock.advance(Duration::from_secs(2)); // expired: a refresh is needed, so the caller must wait
    ghost_lease(w.store.as_ref(), &c.id, w.clock.now(), Duration::from_secs(60)).await;
    let token = tokio::time::timeout(Duration::from_secs(30), m.access_token(&c.id))
        .await
        .expect("the lease wait moves on with a poll of zero")
        .unwrap();
    assert_ne!(token, c.access_token, "the ghost's lease ran out and this caller refreshed");
    assert_eq!(w.fake.token_requests(), 1);
}

#[tokio::test]
async fn a_still_valid_token_is_served_while_another_worker_holds_the_lease() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(120)).await; // due (5-minute margin), valid for two more minutes
    ghost_lease(w.store.as_ref(), &c.id, w.clock.now(), Duration::from_secs(60)).await;
    let t0 = w.clock.now();
    for _ in 0..3 {
        assert_eq!(m.access_token(&c.id).await.unwrap(), c.access_token);
    }
    assert_eq!(w.clock.now(), t0, "nobody waited");
    assert_eq!(w.fake.token_requests(), 0);
}

/// A store whose leases are always held by someone else.
#[derive(Debug)]
struct StuckLeases(MemoryStore);

#[async_trait]
impl ConnectionStore for StuckLeases {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        self.0.get(id).await
    }
    async fn insert_with_events(&self, c: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        self.0.insert_with_events(c, rules, events).await
    }
    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        self.0.compare_and_swap_with_events(next, events).await
    }
    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        self.0.delete_with_events(id, events).await
    }
    async fn list(&self, f: &ConnectionFilter) -> Result<Vec<Connection>> {
        self.0.list(f).await
    }
}

#[async_trait]
impl EventStore for StuckLeases {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        self.0.append_events(events).await
    }
    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.0.events_since(cursor, limit).await
    }
    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.0.history(id, limit).await
    }
    async fn purge_events(&self, older_than: std::time::SystemTime) -> Result<u64> {
        self.0.purge_events(older_than).await
    }
}

#[async_trait]
impl PendingStore for StuckLeases {
    async fn put_pending(&self, p: PendingAuthorization) -> Result<()> {
        self.0.put_pending(p).await
    }
    async fn take_pending(&self, h: &str) -> Result<Option<PendingAuthorization>> {
        self.0.take_pending(h).await
    }
}

#[async_trait]
impl LeaseStore for StuckLeases {
    async fn try_lease(&self, _: &str, _: &str, _: Duration, _: SystemTime) -> Result<bool> {
        Ok(false)
    }
    async fn release_lease(&self, _: &str, _: &str) -> Result<bool> {
        Ok(false)
    }
}

#[tokio::test]
async fn callers_in_one_process_share_one_bounded_wait() {
    let w = World::new(Arc::new(StuckLeases(MemoryStore::new()))).await;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(1)).await;
    w.clock.advance(Duration::from_secs(2));
    let t0 = w.clock.monotonic();
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (m, id) = (m.clone(), c.id.clone());
            tokio::spawn(async move { m.access_token(&id).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap_err().code(), ErrorCode::StoreUnavailable);
    }
    let waited = w.clock.monotonic() - t0;
    assert!(waited <= w.policy.lease_ttl * 4, "callers queued behind each other waited {waited:?} in all");
}

#[tokio::test]
async fn a_lease_from_a_clock_far_ahead_does_not_block_refreshes() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(1)).await;
    w.clock.advance(Duration::from_secs(2));
    ghost_lease(w.store.as_ref(), &c.id, w.clock.now() + Duration::from_secs(86_400), Duration::from_secs(60)).await;
    let token = m.access_token(&c.id).await.unwrap();
    assert_ne!(token, c.access_token);
    assert_eq!(w.fake.token_requests(), 1);
}

// ---- 5. A disconnected customer's token is still served by other instances ----

#[tokio::test]
async fn a_connection_deleted_by_another_instance_stops_being_served() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let (a, b) = (w.manager("a", vec![]), w.manager("b", vec![]));
    let c = w.seed(Duration::from_secs(1_800)).await;
    assert_eq!(b.access_token(&c.id).await.unwrap(), c.access_token, "b caches the token");
    a.disconnect(&c.id).await.unwrap();
    w.clock.advance(b.policy().cache_revalidate + Duration::from_millis(1));
    let err = b.access_token(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ConnectionNotFound, "{err}");

    // `forget` drops a cached token at once.
    let d = w.seed(Duration::from_secs(1_800)).await;
    assert_eq!(b.access_token(&d.id).await.unwrap(), d.access_token);
    w.store.delete(&d.id).await.unwrap();
    b.forget(&d.id);
    assert_eq!(b.access_token(&d.id).await.unwrap_err().code(), ErrorCode::ConnectionNotFound);
}

#[tokio::test]
async fn a_token_refreshed_by_another_instance_replaces_the_cached_one() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let (a, b) = (w.manager("a", vec![]), w.manager("b", vec![]));
    let c = w.seed(Duration::from_secs(1_800)).await;
    assert_eq!(b.access_token(&c.id).await.unwrap(), c.access_token);
    let refreshed = a.force_refresh(&c.id).await.unwrap();
    w.clock.advance(b.policy().cache_revalidate + Duration::from_millis(1));
    assert_eq!(b.access_token(&c.id).await.unwrap(), refreshed.access_token);
}

// ---- 6. A refresh is retried after a client timeout ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_timed_out_is_not_sent_again() {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    fake.set_rotation(Rotation::Strict);
    let connector = fake
        .connector_builder()
        .clock(Arc::new(clock.clone()))
        .timeout(Duration::from_millis(300))
        .retry(RetryPolicy::default())
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let m = Connections::builder(connector, Arc::clone(&store)).clock(Arc::new(clock.clone())).build();
    let issued = fake.issue(62515, &["oauth"]);
    let c = Connection::new(
        "acme",
        62515,
        AccessToken::new(issued.access_token.clone()),
        Some(RefreshToken::new(issued.refresh_token.clone())),
        Some(clock.now() - Duration::from_secs(1)),
        clock.now() - Duration::from_secs(1_801),
    );
    store.insert(&c, InsertRules::default()).await.unwrap();
    // HubSpot takes the request (rotating the refresh token) but answers after the client gave up.
    fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_secs(3)), 1);
    let err = m.access_token(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{err}");
    assert!(err.is_timeout());
    assert_eq!(fake.token_requests(), 1, "a request that may have reached HubSpot is not sent again blindly");
    let stored = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ConnectionStatus::Backoff, "a passing failure, not a dead connection");
}

// ---- 7. Refresh jitter has no effect ----

#[tokio::test]
async fn jitter_spreads_refreshes_and_stays_put_for_a_token() {
    let mut w = World::new(Arc::new(MemoryStore::new())).await;
    w.policy.refresh_jitter = Duration::from_secs(60);
    let m = w.manager("me", vec![]);
    let mut ids = Vec::new();
    for portal in 0..40u64 {
        let issued = w.fake.issue(1_000 + portal, &["oauth"]);
        let now = w.clock.now();
        let c = Connection::new(
            format!("tenant-{portal}"),
            1_000 + portal,
            AccessToken::new(issued.access_token.clone()),
            Some(RefreshToken::new(issued.refresh_token.clone())),
            Some(now + Duration::from_secs(1_800)),
            now,
        );
        w.store.insert(&c, InsertRules::default()).await.unwrap();
        m.access_token(&c.id).await.unwrap();
        ids.push(c.id);
    }
    // Halfway into the jitter: about half of them are due, the same half however often they are asked.
    w.clock.advance(Duration::from_secs(1_800 - 300 - 30));
    for _ in 0..3 {
        for id in &ids {
            m.access_token(id).await.unwrap();
        }
    }
    let early = w.fake.token_requests();
    assert!((1..40).contains(&early), "{early} of 40 refreshed in the first half of the jitter");
    // At the margin, every one of them has been refreshed, each once.
    w.clock.advance(Duration::from_secs(30));
    for id in &ids {
        m.access_token(id).await.unwrap();
    }
    assert_eq!(w.fake.token_requests(), 40);
}

// ---- 9. A failed forced refresh is a failure ----

#[tokio::test]
async fn a_forced_refresh_that_fails_is_an_error_even_with_a_valid_token() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(1_800)).await;
    w.fake.fail(Endpoint::Token202603, Failure::BadGatewayHtml, 3);
    let err = m.force_refresh(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{err}");
    // Ordinary callers keep getting the still-valid token.
    assert_eq!(m.access_token(&c.id).await.unwrap(), c.access_token);
}

// ---- 10. Lifetimes shorter than the margin ----

#[tokio::test]
async fn a_token_living_less_than_the_margin_is_refreshed_at_half_its_life() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::from_secs(120)).await;
    let c = {
        // Issued just now, for two minutes.
        let mut short = c.next_version(w.clock.now());
        short.refreshed_at = w.clock.now();
        assert!(w.store.compare_and_swap(&short).await.unwrap());
        short
    };
    for _ in 0..50 {
        m.access_token(&c.id).await.unwrap();
        w.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(w.fake.token_requests(), 0, "not before half of its 120 s");
    w.clock.advance(Duration::from_secs(11));
    let fresh = m.access_token(&c.id).await.unwrap();
    assert_ne!(fresh, c.access_token);
    assert_eq!(w.fake.token_requests(), 1);
}

#[tokio::test]
async fn a_zero_lifetime_does_not_cause_a_refresh_storm() {
    let w = World::new(Arc::new(MemoryStore::new())).await;
    w.fake.set_access_token_ttl(Duration::ZERO);
    let m = w.manager("me", vec![]);
    let c = w.seed(Duration::ZERO).await;
    // The first call refreshes the expired token; HubSpot answers `expires_in: 0`.
    for _ in 0..100 {
        m.access_token(&c.id).await.unwrap();
    }
    assert_eq!(w.fake.token_requests(), 1, "one refresh, then the token is served for a moment");
    w.clock.advance(Duration::from_secs(2));
    for _ in 0..100 {
        m.access_token(&c.id).await.unwrap();
    }
    assert_eq!(w.fake.token_requests(), 2, "at most one refresh a second");
}
