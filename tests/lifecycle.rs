//! The connection lifecycle against the fake HubSpot: every error code `complete`, `reconnect` and
//! `access_token` can give, what the store holds afterwards, single-flight refresh, and events.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hubspot_connect::connections::EventCursor;
use hubspot_connect::store::{
    ConnectionFilter, ConnectionStore, EventStore, InsertRules, Inserted, LeaseStore, LoggedEvent, MemoryStore,
    PendingStore,
};
use hubspot_connect::testing::{Endpoint, Failure, FakeAccountType, FakeHubSpot, FakePortal, FakeUser, Rotation};
use hubspot_connect::{
    AccessToken, BeginOptions, Callback, Clock, Connection, ConnectionId, ConnectionStatus, Connections, Error,
    ErrorCode, Event, EventKind, ManualClock, Result, Scopes,
    connections::{ConnectOutcome, CredentialKind},
    connector::AccountType,
    hubspot::RetryPolicy,
    store::PendingAuthorization,
};

type Manager = Connections;

struct World {
    fake: FakeHubSpot,
    clock: ManualClock,
    store: Arc<dyn hubspot_connect::store::TokenStore>,
    manager: Manager,
}

fn scopes() -> Scopes {
    Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read")
}

async fn world_with(store: Arc<dyn hubspot_connect::store::TokenStore>, tune: impl FnOnce(&mut WorldOptions)) -> World {
    let mut options = WorldOptions::default();
    tune(&mut options);
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).retry(RetryPolicy::none()).build().unwrap();
    let mut builder = Connections::builder(connector, Arc::clone(&store))
        .clock(Arc::new(clock.clone()))
        .refresh_margin(Duration::from_secs(300), Duration::ZERO);
    if let Some(max) = options.max_portals {
        builder = builder.max_portals_per_tenant(max);
    }
    if options.plans {
        builder = builder.portal_limit(|tenant| if tenant == "free" { Some(1) } else { None });
    }
    if let Some(retention) = options.event_retention {
        builder = builder.event_retention(retention);
    }
    let manager = builder.build();
    World { fake, clock, store, manager }
}

#[derive(Default)]
struct WorldOptions {
    max_portals: Option<usize>,
    plans: bool,
    event_retention: Option<Duration>,
}

async fn world() -> World {
    world_with(Arc::new(MemoryStore::new()), |_| {}).await
}

impl World {
    async fn callback(&self, tenant: &str, options: BeginOptions) -> Callback {
        let begun = self.manager.begin(tenant, &scopes(), options).await.unwrap();
        let url = self.fake.consent(begun.authorize_url.as_str()).await.unwrap();
        Callback::from_url(url.as_str()).unwrap()
    }

    async fn connect(&self, tenant: &str, options: BeginOptions) -> Result<ConnectOutcome> {
        let cb = self.callback(tenant, options).await;
        self.manager.complete(&cb).await
    }

    async fn stored(&self) -> Vec<Connection> {
        self.store.list(&ConnectionFilter::all()).await.unwrap()
    }
}

#[tokio::test]
async fn connect_stores_who_installed_what() {
    let w = world().await;
    w.fake.add_portal(FakePortal::new(777).account_type(FakeAccountType::Sandbox));
    w.fake.set_user(FakeUser::new(55, "owner@acme.test"));
    let mut events = w.manager.subscribe();
    let done = w.connect("acme", BeginOptions::default().portal(777).return_to("/settings/hubspot")).await.unwrap();
    assert_eq!(done.return_to.as_deref(), Some("/settings/hubspot"));
    assert!(!done.reconnected);
    let c = &done.connection;
    assert_eq!((c.tenant.as_str(), c.portal_id, c.status), ("acme", 777, ConnectionStatus::Connected));
    assert_eq!(c.installed_by.as_deref(), Some("owner@acme.test"));
    assert_eq!(c.installed_by_user_id, Some(55));
    assert_eq!(c.account_type, Some(AccountType::Sandbox));
    assert!(c.scopes.iter().any(|s| s.as_str() == "crm.objects.deals.read"));
    assert_eq!(c.expires_at, Some(w.clock.now() + Duration::from_secs(1800)));
    assert_eq!(w.stored().await, vec![c.clone()]);
    let e = events.recv().await.unwrap();
    assert_eq!((e.kind, e.portal_id), (EventKind::Connected, Some(777)));
    let by_user = w.manager.connections_installed_by("OWNER@acme.test").await.unwrap();
    assert_eq!(by_user.len(), 1);
}

#[tokio::test]
async fn bad_state_is_invalid_state_and_nothing_is_exchanged() {
    let w = world().await;
    let cb = w.callback("acme", BeginOptions::default()).await;
    let forged = Callback::from_query("code=abc&state=forged-state").unwrap();
    assert_eq!(w.manager.complete(&forged).await.unwrap_err().code(), ErrorCode::InvalidState);
    assert_eq!(w.fake.token_requests(), 0);

    w.manager.complete(&cb).await.unwrap();
    let replay = w.manager.complete(&cb).await.unwrap_err();
    assert_eq!(replay.code(), ErrorCode::InvalidState, "{replay}");
    assert_eq!(w.fake.token_requests(), 1, "a replayed state makes no token request");

    // Another tenant's state: refused before any exchange.
    let cb = w.callback("victim", BeginOptions::default()).await;
    let err = w.manager.complete_for("attacker", &cb).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
    assert_eq!(w.fake.token_requests(), 1);
    assert_eq!(w.stored().await.len(), 1);

    for q in ["code=a&code=b&state=s", "code=a", "state=s", "code=a&state=s&state=t"] {
        assert_eq!(Callback::from_query(q).unwrap_err().code(), ErrorCode::InvalidState, "{q}");
    }
}

#[tokio::test]
async fn expired_authorization_and_denied_consent() {
    let w = world().await;
    let cb = w.callback("acme", BeginOptions::default()).await;
    w.clock.advance(Duration::from_secs(601));
    let err = w.manager.complete(&cb).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TokenExpired, "{err}");
    assert_eq!(w.fake.token_requests(), 0);

    w.fake.decline(hubspot_connect::testing::Decline::WithRedirect);
    let cb = w.callback("acme", BeginOptions::default()).await;
    let err = w.manager.complete(&cb).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AccessDenied, "{err}");
    assert!(err.message().contains("access_denied"));
    assert!(w.stored().await.is_empty());
    let without_state = Callback::from_query("error=access_denied&error_description=User%20declined").unwrap();
    assert_eq!(w.manager.complete(&without_state).await.unwrap_err().code(), ErrorCode::AccessDenied);
}

#[tokio::test]
async fn refused_scope_revokes_and_stores_nothing() {
    let w = world().await;
    w.fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let err = w.connect("acme", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthScopeDenied);
    assert_eq!(err.missing_scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["crm.objects.contacts.read"]);
    assert!(w.stored().await.is_empty());
    assert_eq!(w.fake.requests(Endpoint::Revoke202603), 1, "the token just issued is revoked");

    // An optional scope refused is fine.
    let w = world().await;
    w.fake.refuse_scopes(&["crm.objects.deals.read"]);
    w.connect("acme", BeginOptions::default()).await.unwrap();
}

#[tokio::test]
async fn developer_accounts_are_refused() {
    let w = world().await;
    w.fake.add_portal(FakePortal::new(999).account_type(FakeAccountType::AppDeveloper));
    let err = w.connect("acme", BeginOptions::default().portal(999)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::WrongAccountType, "{err}");
    assert!(w.stored().await.is_empty());
    assert_eq!(w.fake.requests(Endpoint::Revoke202603), 1);
}

#[tokio::test]
async fn portal_limits_fixed_and_by_plan() {
    let w = world_with(Arc::new(MemoryStore::new()), |o| o.max_portals = Some(2)).await;
    for id in [1, 2, 3] {
        w.fake.add_portal(FakePortal::new(id));
    }
    w.connect("acme", BeginOptions::default().portal(1)).await.unwrap();
    w.connect("acme", BeginOptions::default().portal(2)).await.unwrap();
    let err = w.connect("acme", BeginOptions::default().portal(3)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PortalLimitReached, "{err}");
    assert_eq!(w.stored().await.len(), 2);
    // Connecting a portal the tenant already holds does not count twice: it re-authorizes it.
    let again = w.connect("acme", BeginOptions::default().portal(2)).await.unwrap();
    assert!(again.reconnected);
    assert_eq!(w.stored().await.len(), 2);

    let w = world_with(Arc::new(MemoryStore::new()), |o| o.plans = true).await;
    for id in [1, 2, 3] {
        w.fake.add_portal(FakePortal::new(id));
    }
    w.connect("free", BeginOptions::default().portal(1)).await.unwrap();
    assert_eq!(
        w.connect("free", BeginOptions::default().portal(2)).await.unwrap_err().code(),
        ErrorCode::PortalLimitReached
    );
    w.connect("pro", BeginOptions::default().portal(2)).await.unwrap();
    w.connect("pro", BeginOptions::default().portal(3)).await.unwrap();
}

#[tokio::test]
async fn one_portal_one_tenant() {
    let w = world().await;
    w.connect("acme", BeginOptions::default()).await.unwrap();
    let err = w.connect("globex", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PortalAlreadyConnected, "{err}");
    let stored = w.stored().await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].tenant, "acme");
}

/// Finding 11: HubSpot may hand the same refresh token to the same user, portal and app on a second install.
/// Refusing that install (the portal belongs to another tenant, or the plan is full, or a scope was not granted)
/// must not revoke the token the owning tenant's connection still uses.
#[tokio::test]
async fn a_refused_second_install_never_revokes_the_owners_token() {
    use hubspot_connect::testing::Reinstall;
    let w = world().await;
    w.fake.set_reinstall(Reinstall::SameRefreshToken);
    let owner = w.connect("acme", BeginOptions::default()).await.unwrap().connection;

    // Same user, same portal, another tenant: refused as PORTAL_ALREADY_CONNECTED.
    let err = w.connect("globex", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PortalAlreadyConnected, "{err}");
    // Same user, same portal, a required scope not granted: refused as AUTH_SCOPE_DENIED.
    w.fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let err = w.connect("globex", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthScopeDenied, "{err}");
    w.fake.refuse_scopes(&[]);
    assert_eq!(w.fake.requests(Endpoint::Revoke202603), 0, "a token a stored connection holds is never revoked");

    // The owner's connection still refreshes.
    let refreshed = w.manager.force_refresh(&owner.id).await.unwrap();
    assert_eq!(refreshed.status, ConnectionStatus::Connected);

    // Without the shared token, a refused install's own token is still revoked.
    w.fake.set_reinstall(Reinstall::NewRefreshToken);
    let err = w.connect("globex", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PortalAlreadyConnected, "{err}");
    assert_eq!(w.fake.requests(Endpoint::Revoke202603), 1);
    w.manager.force_refresh(&owner.id).await.unwrap();
}

#[tokio::test]
async fn refused_refresh_needs_reauth_and_reconnect_recovers() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let mut events = w.manager.subscribe();
    w.fake.uninstall(62515);
    w.clock.advance(Duration::from_secs(1600));
    w.fake.reset_counts();
    let err = w.manager.access_token(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{err}");
    assert_eq!(w.fake.token_requests(), 1, "exactly one request");
    for _ in 0..5 {
        assert_eq!(w.manager.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
    }
    w.clock.advance(Duration::from_secs(3600));
    assert_eq!(w.manager.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
    assert_eq!(w.fake.token_requests(), 1, "never retried on its own");
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauth);
    assert_eq!(stored.last_error.as_ref().unwrap().code, ErrorCode::ReconnectRequired);
    let e = events.recv().await.unwrap();
    assert_eq!(e.kind, EventKind::NeedsReauth);
    assert_eq!(e.code, Some(ErrorCode::ReconnectRequired));

    // The customer reinstalls: reconnect keeps the id and recovers.
    w.fake.add_portal(FakePortal::new(62515));
    let begun = w.manager.reconnect(&c.id, &scopes(), BeginOptions::default()).await.unwrap();
    assert!(begun.authorize_url.path().contains("/oauth/62515/authorize"));
    let url = w.fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let done = w.manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    assert!(done.reconnected);
    assert_eq!(done.connection.id, c.id);
    assert_eq!(done.connection.status, ConnectionStatus::Connected);
    assert!(done.connection.last_error.is_none());
    assert!(w.manager.access_token(&c.id).await.is_ok());
    assert_eq!(events.recv().await.unwrap().kind, EventKind::Recovered);
}

#[tokio::test]
async fn reconnect_to_another_portal_is_a_mismatch() {
    let w = world().await;
    w.fake.add_portal(FakePortal::new(5));
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let begun = w.manager.reconnect(&c.id, &scopes(), BeginOptions::default()).await.unwrap();
    // The user picks another account in HubSpot's picker.
    let other = begun.authorize_url.as_str().replace("/oauth/62515/authorize", "/oauth/5/authorize");
    let url = w.fake.consent(&other).await.unwrap();
    let err = w.manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::PortalMismatch, "{err}");
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_eq!(stored, c, "the connection is untouched");
    assert_eq!(w.stored().await.len(), 1);
}

#[tokio::test]
async fn transient_failure_backs_off_without_requests_during_the_cooldown() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let mut events = w.manager.subscribe();
    w.clock.advance(Duration::from_secs(1600)); // inside the margin, still valid
    w.fake.reset_counts();
    w.fake.fail(Endpoint::Token202603, Failure::ServerError, 100);
    let token = w.manager.access_token(&c.id).await.unwrap();
    assert_eq!(token, c.access_token, "a still-valid token is served while the refresh failed");
    assert_eq!(w.fake.token_requests(), 1);
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_eq!(stored.status, ConnectionStatus::Backoff);
    assert_eq!(stored.last_error.as_ref().unwrap().code, ErrorCode::HubspotUnavailable);
    assert_eq!(events.recv().await.unwrap().kind, EventKind::RefreshFailed);
    for _ in 0..10 {
        w.manager.access_token(&c.id).await.unwrap();
    }
    assert_eq!(w.fake.token_requests(), 1, "no request during the cooldown");
    // Expired while still cooling down: an error, still no request.
    w.clock.advance(Duration::from_secs(29));
    w.clock.advance(Duration::from_secs(0));
    assert_eq!(w.fake.token_requests(), 1);
    // After the cooldown HubSpot is back: one request, recovered.
    w.fake.reset_failures();
    w.clock.advance(Duration::from_secs(2));
    let fresh = w.manager.access_token(&c.id).await.unwrap();
    assert_ne!(fresh, c.access_token);
    assert_eq!(w.fake.token_requests(), 2);
    assert_eq!(w.manager.status(&c.id).await.unwrap().status, ConnectionStatus::Connected);
    assert_eq!(events.recv().await.unwrap().kind, EventKind::Refreshed);
    assert_eq!(events.recv().await.unwrap().kind, EventKind::Recovered);
}

#[tokio::test]
async fn an_expired_token_in_backoff_is_an_error_without_a_request() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    w.clock.advance(Duration::from_secs(1801));
    w.fake.fail(Endpoint::Token202603, Failure::BadGatewayHtml, 100);
    w.fake.reset_counts();
    let err = w.manager.access_token(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable);
    let err = w.manager.access_token(&c.id).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{err}");
    assert_eq!(w.fake.token_requests(), 1);
}

#[tokio::test]
async fn a_thousand_callers_one_refresh() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    w.clock.advance(Duration::from_secs(1700));
    w.fake.reset_counts();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let m = w.manager.clone();
        let id = c.id.clone();
        tasks.push(tokio::spawn(async move { m.access_token(&id).await }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    assert_eq!(w.fake.token_requests(), 1, "exactly one token request");
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_ne!(stored.access_token, c.access_token);
    assert_eq!(stored.version, c.version + 1);
    // The refreshing caller got the new token, stored before handed out; callers that came while it was refreshing
    // got the old one, still valid for 100 s, instead of waiting.
    assert_eq!(tokens[0], stored.access_token, "stored before handed out");
    assert!(tokens.iter().all(|t| *t == stored.access_token || *t == c.access_token));
}

#[tokio::test]
async fn strict_rotation_never_sees_an_old_refresh_token() {
    let w = world().await;
    w.fake.set_rotation(Rotation::Strict);
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    for round in 0..5 {
        w.clock.advance(Duration::from_secs(1700));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let m = w.manager.clone();
            let id = c.id.clone();
            tasks.push(tokio::spawn(async move { m.access_token(&id).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
    assert_eq!(w.fake.stale_refresh_presentations(), 0);
    assert_eq!(w.fake.token_requests(), 1 + 5);
}

#[tokio::test]
async fn a_dropped_caller_does_not_lose_the_refresh() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    w.clock.advance(Duration::from_secs(1700));
    w.fake.reset_counts();
    w.fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_millis(300)), 1);
    let m = w.manager.clone();
    let id = c.id.clone();
    let caller = tokio::spawn(async move { m.access_token(&id).await });
    // Cancelled once its request is on the wire.
    for _ in 0..6_000 {
        if w.fake.token_requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    let mut stored = w.manager.status(&c.id).await.unwrap();
    for _ in 0..6_000 {
        if stored.access_token != c.access_token {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        stored = w.manager.status(&c.id).await.unwrap();
    }
    assert_ne!(stored.access_token, c.access_token, "the refresh finished and was stored");
    assert_eq!(w.manager.access_token(&c.id).await.unwrap(), stored.access_token);
    assert_eq!(w.fake.token_requests(), 1);
}

/// A store whose compare-and-swap fails a given number of times, to show refreshed tokens are not lost.
#[derive(Debug)]
struct Flaky {
    inner: MemoryStore,
    cas_failures: AtomicUsize,
}

#[async_trait]
impl ConnectionStore for Flaky {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        self.inner.get(id).await
    }
    async fn insert_with_events(&self, c: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        self.inner.insert_with_events(c, rules, events).await
    }
    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        if self.cas_failures.load(Ordering::SeqCst) > 0 {
            self.cas_failures.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::new(ErrorCode::StoreUnavailable, "disk full"));
        }
        self.inner.compare_and_swap_with_events(next, events).await
    }
    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        self.inner.delete_with_events(id, events).await
    }
    async fn list(&self, f: &ConnectionFilter) -> Result<Vec<Connection>> {
        self.inner.list(f).await
    }
}
#[async_trait]
impl EventStore for Flaky {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        self.inner.append_events(events).await
    }
    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.inner.events_since(cursor, limit).await
    }
    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.inner.history(id, limit).await
    }
    async fn purge_events(&self, older_than: std::time::SystemTime) -> Result<u64> {
        self.inner.purge_events(older_than).await
    }
}

#[async_trait]
impl PendingStore for Flaky {
    async fn put_pending(&self, p: PendingAuthorization) -> Result<()> {
        self.inner.put_pending(p).await
    }
    async fn take_pending(&self, h: &str) -> Result<Option<PendingAuthorization>> {
        self.inner.take_pending(h).await
    }
}
#[async_trait]
impl LeaseStore for Flaky {
    async fn try_lease(&self, k: &str, o: &str, ttl: Duration, now: std::time::SystemTime) -> Result<bool> {
        self.inner.try_lease(k, o, ttl, now).await
    }
    async fn release_lease(&self, k: &str, o: &str) -> Result<bool> {
        self.inner.release_lease(k, o).await
    }
}

#[tokio::test]
async fn a_store_failing_after_the_token_response_loses_nothing() {
    let flaky = Arc::new(Flaky { inner: MemoryStore::new(), cas_failures: AtomicUsize::new(0) });
    let w = world_with(flaky.clone(), |_| {}).await;
    w.fake.set_rotation(Rotation::Rotate);
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;

    // Two failures: the write is retried and lands.
    w.clock.advance(Duration::from_secs(1700));
    flaky.cas_failures.store(2, Ordering::SeqCst);
    let t1 = w.manager.access_token(&c.id).await.unwrap();
    assert_eq!(w.manager.status(&c.id).await.unwrap().access_token, t1);

    // The store stays down: the caller still gets the new token, kept in memory, and it is written later.
    w.clock.advance(Duration::from_secs(1700));
    flaky.cas_failures.store(3, Ordering::SeqCst);
    let t2 = w.manager.access_token(&c.id).await.unwrap();
    assert_ne!(t2, t1);
    assert_eq!(w.manager.status(&c.id).await.unwrap().access_token, t1, "not written yet");
    assert_eq!(w.manager.access_token(&c.id).await.unwrap(), t2);
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_eq!(stored.access_token, t2, "written on the next call once the store is back");
    assert_eq!(w.fake.stale_refresh_presentations(), 0);
}

#[tokio::test]
async fn disconnect_revokes_and_purges_even_when_revoke_fails() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let mut events = w.manager.subscribe();
    let d = w.manager.disconnect(&c.id).await.unwrap();
    assert!(d.revoked);
    assert!(w.stored().await.is_empty());
    assert_eq!(events.recv().await.unwrap().kind, EventKind::Disconnected);
    assert_eq!(w.manager.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ConnectionNotFound);
    assert_eq!(w.manager.disconnect(&c.id).await.unwrap_err().code(), ErrorCode::ConnectionNotFound);

    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    w.fake.fail(Endpoint::Revoke202603, Failure::ServerError, 10);
    let d = w.manager.disconnect(&c.id).await.unwrap();
    assert!(!d.revoked);
    assert_eq!(d.revoke_error.unwrap().code(), ErrorCode::HubspotUnavailable);
    assert!(w.stored().await.is_empty(), "purged locally anyway");
}

#[tokio::test]
async fn test_reports_portal_scopes_and_latency() {
    let w = world().await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let report = w.manager.test(&c.id).await.unwrap();
    assert_eq!(report.portal_id, 62515);
    assert_eq!(report.account_type, Some(AccountType::Standard));
    assert!(report.scopes.iter().any(|s| s.as_str() == "crm.objects.contacts.read"));
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("latency_ms").is_some());
    w.fake.uninstall(62515);
    assert_eq!(w.manager.test(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
}

#[tokio::test]
async fn sweep_refreshes_idle_connections_and_finds_dead_ones() {
    let w = world().await;
    for id in [10, 11, 12] {
        w.fake.add_portal(FakePortal::new(id));
    }
    let a = w.connect("a", BeginOptions::default().portal(10)).await.unwrap().connection;
    let b = w.connect("b", BeginOptions::default().portal(11)).await.unwrap().connection;
    w.clock.advance(Duration::from_secs(2 * 86_400));
    let fresh = w.connect("c", BeginOptions::default().portal(12)).await.unwrap().connection;
    w.fake.uninstall(11);
    w.fake.reset_counts();
    let report = w.manager.sweep(hubspot_connect::connections::SweepOptions::default()).await.unwrap();
    assert_eq!((report.checked, report.refreshed, report.needs_reauth, report.failed), (2, 1, 1, 0));
    assert_eq!(w.fake.token_requests(), 2);
    assert_eq!(w.manager.status(&b.id).await.unwrap().status, ConnectionStatus::NeedsReauth);
    assert!(w.manager.status(&a.id).await.unwrap().refreshed_at > a.refreshed_at);
    assert_eq!(w.manager.status(&fresh.id).await.unwrap().version, 1);
    let dead = w.manager.list(&ConnectionFilter::all().status(ConnectionStatus::NeedsReauth)).await.unwrap();
    assert_eq!(dead.len(), 1);
}

#[tokio::test]
async fn private_app_tokens_are_identified_and_never_refreshed() {
    let w = world().await;
    let issued = w.fake.issue(62515, &["oauth"]);
    let c = w.manager.connect_private_app("acme", AccessToken::new(issued.access_token.clone())).await.unwrap();
    assert_eq!(c.kind, CredentialKind::PrivateApp);
    assert_eq!(c.portal_id, 62515);
    assert_eq!(c.expires_at, None);
    w.clock.advance(Duration::from_secs(10_000));
    assert_eq!(w.manager.access_token(&c.id).await.unwrap().secret(), issued.access_token);
    assert_eq!(w.fake.token_requests(), 0);
}

#[tokio::test]
async fn a_private_app_token_hubspot_refuses_needs_reauth() {
    let w = world().await;
    let issued = w.fake.issue(62515, &["oauth"]);
    let token = AccessToken::new(issued.access_token.clone());
    let c = w.manager.connect_private_app("acme", token.clone()).await.unwrap();
    // A forced refresh of a private app has nothing to do and leaves it connected.
    assert_eq!(w.manager.force_refresh(&c.id).await.unwrap().status, ConnectionStatus::Connected);
    // A 401 on its token (what the API client reports): nothing can refresh it, so a person must connect a new one.
    let err = w.manager.token_rejected(&c.id, &token).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReconnectRequired);
    let stored = w.manager.status(&c.id).await.unwrap();
    assert_eq!(stored.status, ConnectionStatus::NeedsReauth);
    assert_eq!(stored.last_error.map(|e| e.code), Some(ErrorCode::ReconnectRequired));
    assert_eq!(w.manager.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
    let logged = w.manager.history(&c.id).await.unwrap();
    assert_eq!(logged.last().map(|l| l.event.kind), Some(EventKind::NeedsReauth));
    assert_eq!(w.fake.token_requests(), 0);
}

#[tokio::test]
async fn hostile_return_paths_are_refused_at_begin() {
    let w = world().await;
    for bad in ["//evil.com", "https://evil.com", "/\\evil.com", "/%2F%2Fevil.com"] {
        let err = w.manager.begin("acme", &scopes(), BeginOptions::default().return_to(bad)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidConfig, "{bad}");
    }
}

fn kinds(logged: &[LoggedEvent]) -> Vec<EventKind> {
    logged.iter().map(|l| l.event.kind).collect()
}

#[tokio::test]
async fn the_event_log_tells_a_connections_story_without_a_token() {
    let w = world().await;
    w.fake.set_user(FakeUser::new(55, "owner@acme.test"));
    let mut live = w.manager.subscribe();
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    let mut tokens = vec![c.access_token.secret().to_owned(), c.refresh_token.as_ref().unwrap().secret().to_owned()];

    // A passing failure, then the recovery.
    w.clock.advance(Duration::from_secs(1600));
    w.fake.fail(Endpoint::Token202603, Failure::ServerError, 100);
    w.manager.access_token(&c.id).await.unwrap();
    w.fake.reset_failures();
    w.clock.advance(Duration::from_secs(31));
    tokens.push(w.manager.access_token(&c.id).await.unwrap().secret().to_owned());

    // Uninstalled: needs re-authorization; the customer reconnects.
    w.clock.advance(Duration::from_secs(1600));
    w.fake.uninstall(62515);
    assert_eq!(w.manager.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
    w.fake.add_portal(FakePortal::new(62515));
    let begun = w.manager.reconnect(&c.id, &scopes(), BeginOptions::default()).await.unwrap();
    let url = w.fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let done = w.manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    tokens.push(done.connection.access_token.secret().to_owned());
    w.manager.disconnect(&c.id).await.unwrap();

    let history = w.manager.history(&c.id).await.unwrap();
    assert_eq!(
        kinds(&history),
        [
            EventKind::Connected,
            EventKind::RefreshFailed,
            EventKind::Refreshed,
            EventKind::Recovered,
            EventKind::NeedsReauth,
            EventKind::Recovered,
            EventKind::Reconnected,
            EventKind::Disconnected,
        ]
    );
    for l in &history {
        let e = &l.event;
        assert_eq!((e.tenant.as_str(), e.connection_id.as_ref(), e.portal_id), ("acme", Some(&c.id), Some(62515)));
        assert_eq!(e.installed_by.as_deref(), Some("owner@acme.test"));
        assert!(e.id.as_str().starts_with("evt_"));
    }
    let code = |n: usize| history[n].event.code;
    assert_eq!(code(0), None);
    assert_eq!(code(1), Some(ErrorCode::HubspotUnavailable));
    assert_eq!(code(4), Some(ErrorCode::ReconnectRequired));
    assert!(history[4].event.message.is_some());
    assert_eq!(code(2), None);
    assert_eq!(history[1].event.occurred_at, history[0].event.occurred_at + Duration::from_secs(1600));

    // The whole log holds the same, and this process's subscribers saw the same events in the same order.
    let log = w.manager.events_since(EventCursor::START, 100).await.unwrap();
    assert_eq!(log, history);
    for l in &log {
        assert_eq!(live.recv().await.unwrap(), l.event);
    }
    assert!(live.try_recv().is_err(), "nothing broadcast that was not written");
    let text = format!("{log:?} {}", serde_json::to_string(&log.iter().map(|l| &l.event).collect::<Vec<_>>()).unwrap());
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token in the event log");
    }
}

#[tokio::test]
async fn a_failed_connect_is_logged_once_the_tenant_is_known() {
    let w = world().await;
    // A forged state names no tenant: nothing to log.
    let forged = Callback::from_url("https://app.example/cb?code=c&state=forged").unwrap();
    assert_eq!(w.manager.complete(&forged).await.unwrap_err().code(), ErrorCode::InvalidState);
    assert!(w.manager.events_since(EventCursor::START, 10).await.unwrap().is_empty());

    w.fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let err = w.connect("acme", BeginOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthScopeDenied);
    let log = w.manager.events_since(EventCursor::START, 10).await.unwrap();
    assert_eq!(kinds(&log), [EventKind::ConnectFailed]);
    let e = &log[0].event;
    assert_eq!((e.tenant.as_str(), e.connection_id.as_ref(), e.portal_id), ("acme", None, Some(62515)));
    assert_eq!(e.code, Some(ErrorCode::AuthScopeDenied));
    let json = serde_json::to_value(e).unwrap();
    assert_eq!(json["type"], "connection.connect_failed");
    assert_eq!(json["connection_id"], serde_json::Value::Null);
    assert!(w.stored().await.is_empty(), "nothing else was written");
}

#[tokio::test]
async fn a_sweep_purges_events_older_than_the_retention() {
    let w = world_with(Arc::new(MemoryStore::new()), |o| o.event_retention = Some(Duration::from_secs(86_400))).await;
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    w.clock.advance(Duration::from_secs(2 * 86_400));
    w.manager.sweep(hubspot_connect::connections::SweepOptions::default()).await.unwrap();
    // The connect is two days old and gone; the sweep's refresh stays.
    assert_eq!(kinds(&w.manager.history(&c.id).await.unwrap()), [EventKind::Refreshed]);
    w.clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(w.manager.purge_events().await.unwrap(), 1);
    assert!(w.manager.history(&c.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_reconnect_that_changes_the_scopes_says_so() {
    let w = world().await;
    w.fake.refuse_scopes(&["crm.objects.deals.read"]);
    let c = w.connect("acme", BeginOptions::default()).await.unwrap().connection;
    assert!(!c.scopes.iter().any(|s| s.as_str() == "crm.objects.deals.read"));
    w.fake.refuse_scopes(&[]);
    let begun = w.manager.reconnect(&c.id, &scopes(), BeginOptions::default()).await.unwrap();
    let url = w.fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let done = w.manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    assert!(done.connection.scopes.iter().any(|s| s.as_str() == "crm.objects.deals.read"));
    assert_eq!(
        kinds(&w.manager.history(&c.id).await.unwrap()),
        [EventKind::Connected, EventKind::Reconnected, EventKind::ScopesChanged]
    );
    // The same scopes again: no change to report.
    let begun = w.manager.reconnect(&c.id, &scopes(), BeginOptions::default()).await.unwrap();
    let url = w.fake.consent(begun.authorize_url.as_str()).await.unwrap();
    w.manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    assert_eq!(w.manager.history(&c.id).await.unwrap().last().unwrap().event.kind, EventKind::Reconnected);
}
