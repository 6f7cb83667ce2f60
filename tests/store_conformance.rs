//! One conformance suite for every store backend: each case is written once, generic over the store, and run
//! against every backend by the `conformance!` macro. A new backend is one more line at the bottom:
//!
//! ```text
//! conformance!(mystore, async { Fresh::new(MyStore::connect(&url).await.unwrap()) });
//! ```
//!
//! A backend that needs cleaning up after a test passes it with [`Fresh::with_cleanup`]; one whose server is not
//! configured (`HUBCONNECT_TEST_POSTGRES_URL`, `HUBCONNECT_TEST_REDIS_URL` unset) gives [`Fresh::skipped`], and its
//! tests print `SKIPPED` and pass: `.ci/run` sets both variables, so CI always runs them. Cases that only make sense
//! for one backend (SQLite files shared by two stores, prefixes) live in their own module further down.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubspot_connect::store::{
    ConnectionFilter, EventCursor, InsertRules, Inserted, LoggedEvent, MemoryStore, TokenStore,
};
use hubspot_connect::{
    AccessToken, Connection, ConnectionId, ConnectionStatus, ErrorCode, Event, EventKind, RefreshToken, Scope,
    connections::{CredentialKind, LastError},
    connector::AccountType,
    secret::PkceVerifier,
    store::PendingAuthorization,
};

/// A fresh, empty store for one test, and what to do when the test is done.
struct Fresh {
    store: Option<Arc<dyn TokenStore>>,
    /// A second handle on the same data (another pool, another connection; the same object where there is no
    /// other), as a second process would have.
    twin: Option<Arc<dyn TokenStore>>,
    cleanup: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Fresh {
    /// A store that needs no cleaning up, and is its own twin.
    fn new(store: impl TokenStore) -> Self {
        let store: Arc<dyn TokenStore> = Arc::new(store);
        Self { twin: Some(Arc::clone(&store)), store: Some(store), cleanup: None }
    }

    /// No store: the backend's server is not configured. Says so loudly.
    #[allow(dead_code)]
    fn skipped(why: &str) -> Self {
        eprintln!("SKIPPED: {why}");
        Self { store: None, twin: None, cleanup: None }
    }

    /// With a second handle on the same data.
    #[allow(dead_code)]
    fn with_twin(mut self, twin: impl TokenStore) -> Self {
        self.twin = Some(Arc::new(twin));
        self
    }

    /// Both handles wrapped in an [`EncryptedStore`](hubspot_connect::store::EncryptedStore) with one key ring.
    #[allow(dead_code)]
    fn encrypted(mut self) -> Self {
        use hubspot_connect::store::{EncryptedStore, EncryptionKey, KeyRing};
        let keys = KeyRing::new(vec![EncryptionKey::generate("k1").unwrap()]).unwrap();
        let wrap = |s: Arc<dyn TokenStore>| Arc::new(EncryptedStore::new(s, keys.clone())) as Arc<dyn TokenStore>;
        self.store = self.store.map(wrap);
        self.twin = self.twin.map(wrap);
        self
    }

    /// Runs `cleanup` after a passing test. (After a failing one it is dropped unrun: make dropping it clean up too.)
    fn with_cleanup(mut self, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        self.cleanup = Some(Box::pin(cleanup));
        self
    }

    async fn finish(self) {
        drop(self.store);
        drop(self.twin);
        if let Some(cleanup) = self.cleanup {
            cleanup.await;
        }
    }
}

/// Instantiates every case of the suite for one backend, in a module named `$backend`. `$make` is an expression
/// whose value is a future of a [`Fresh`]; it is evaluated once per test.
macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            conformance!(@cases $make;
                insert_then_get_round_trips_every_field,
                get_of_an_unknown_id_is_none,
                compare_and_swap_wins_once,
                compare_and_swap_with_a_stale_version_loses,
                compare_and_swap_on_a_missing_id_loses,
                delete_then_delete_again,
                pending_is_taken_once_with_every_field,
                pending_concurrent_takers_one_wins,
                pending_expired_is_still_returned,
                pending_capped_per_tenant,
                lease_rules,
                lease_concurrent_owners_one_wins,
                lease_from_a_clock_far_ahead_is_taken_over,
                portal_concurrent_tenants_one_wins,
                portal_shared_when_allowed,
                portal_same_tenant_is_existing,
                portal_limit,
                portal_limit_under_concurrency,
                list_filters_and_order,
                events_are_appended_with_their_write,
                a_write_that_does_not_happen_appends_nothing,
                events_since_is_ordered_across_two_handles,
                a_reader_following_the_cursor_misses_nothing,
                history_is_per_connection,
                purge_removes_older_events_and_cursors_go_on,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fresh: Fresh = $make.await;
                let (Some(store), Some(twin)) = (fresh.store.clone(), fresh.twin.clone()) else { return };
                super::cases::$case(store, twin).await;
                fresh.finish().await;
            }
        )*
    };
}

conformance!(memory, async { Fresh::new(MemoryStore::new()) });
conformance!(encrypted_memory, async { Fresh::new(MemoryStore::new()).encrypted() });
#[cfg(feature = "sqlite")]
conformance!(sqlite, sqlite_only::temp_store());
#[cfg(feature = "sqlite")]
conformance!(sqlite_in_memory, async {
    Fresh::new(hubspot_connect::store::SqliteStore::open("sqlite::memory:").await.unwrap())
});

#[cfg(feature = "postgres")]
conformance!(postgres, server_only::postgres());
#[cfg(feature = "postgres")]
conformance!(encrypted_postgres, async { server_only::postgres().await.encrypted() });
#[cfg(feature = "redis")]
conformance!(redis, server_only::redis());
#[cfg(feature = "redis")]
conformance!(encrypted_redis, async { server_only::redis().await.encrypted() });

/// 2026-01-01T00:00:00Z plus `ms` milliseconds: times every backend stores exactly.
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + ms)
}

fn connection(id: &str, tenant: &str, portal: u64) -> Connection {
    let mut c = Connection::new(
        tenant,
        portal,
        AccessToken::new(format!("at-{id}")),
        Some(RefreshToken::new(format!("rt-{id}"))),
        Some(at(1_800_000)),
        at(0),
    );
    c.id = ConnectionId::new(id);
    c
}

fn rules(allow_shared_portals: bool, max_portals: Option<usize>) -> InsertRules {
    let mut rules = InsertRules::default();
    rules.allow_shared_portals = allow_shared_portals;
    rules.max_portals = max_portals;
    rules
}

fn ids(connections: &[Connection]) -> Vec<&str> {
    connections.iter().map(|c| c.id.as_str()).collect()
}

fn assert_same_pending(got: &PendingAuthorization, want: &PendingAuthorization) {
    assert_eq!(got.state_hash, want.state_hash);
    assert_eq!(got.tenant, want.tenant);
    assert_eq!(got.pkce_verifier.secret(), want.pkce_verifier.secret());
    assert_eq!(got.required_scopes, want.required_scopes);
    assert_eq!(got.optional_scopes, want.optional_scopes);
    assert_eq!(got.portal_id, want.portal_id);
    assert_eq!(got.return_to, want.return_to);
    assert_eq!(got.reconnect, want.reconnect);
    assert_eq!(got.created_at, want.created_at);
    assert_eq!(got.expires_at, want.expires_at);
}

/// A pending authorization with every optional field set (or none, when `full` is false).
fn pending(state: &str, full: bool) -> PendingAuthorization {
    let mut p =
        PendingAuthorization::new(state, "acme", PkceVerifier::new(format!("verifier-{state}")), at(0), at(600_000));
    if full {
        p.required_scopes = vec![Scope::OAUTH, Scope::new("crm.objects.contacts.read")];
        p.optional_scopes = vec![Scope::new("crm.objects.deals.read"), Scope::new("automation")];
        p.portal_id = Some(9_007_199_254_740_993);
        p.return_to = Some("/settings/integrations?tab=hubspot".into());
        p.reconnect = Some(ConnectionId::new("hc_reconnected"));
    }
    p
}

/// The cases, each generic over the store (as `Arc<dyn TokenStore>`, so tasks can share it).
mod cases {
    use super::*;

    type Store = Arc<dyn TokenStore>;

    pub(super) async fn insert_then_get_round_trips_every_field(store: Store, _twin: Store) {
        // Every optional field set, with values that catch lossy encodings.
        let mut full = connection("hc_full", "acme", 9_007_199_254_740_993);
        full.kind = CredentialKind::PrivateApp;
        full.status = ConnectionStatus::Backoff;
        full.access_token = AccessToken::new("CANARY-access \"quoted\" ünïcode");
        full.refresh_token = Some(RefreshToken::new("CANARY-refresh"));
        full.expires_at = Some(at(1_799_999));
        full.scopes = vec![Scope::new("crm.objects.deals.read"), Scope::OAUTH, Scope::new("automation")];
        full.installed_by = Some("Admin@Example.com".into());
        full.installed_by_user_id = Some(9_007_199_254_740_995);
        full.hub_domain = Some("acme.hubspot.com".into());
        full.account_type = Some(AccountType::Other("X".into()));
        full.last_error = Some(LastError {
            code: ErrorCode::HubspotUnavailable,
            message: "HubSpot answered 503 \"unavailable\"".into(),
            at: at(17),
        });
        full.retry_at = Some(at(60_001));
        full.failures = 3;
        full.created_at = at(1);
        full.updated_at = at(2);
        full.refreshed_at = at(3);
        full.version = 41; // the store writes 1 whatever the caller says

        // Every optional field empty.
        let mut bare = connection("hc_bare", "globex", 2);
        bare.refresh_token = None;
        bare.expires_at = None;

        let mut typed = Vec::new();
        for (n, account_type) in [
            AccountType::Standard,
            AccountType::DeveloperTest,
            AccountType::Sandbox,
            AccountType::AppDeveloper,
            AccountType::Other("SOMETHING_NEW".into()),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = connection(&format!("hc_type_{n}"), "initech", 100 + n as u64);
            c.account_type = Some(account_type);
            c.status =
                [ConnectionStatus::Connected, ConnectionStatus::NeedsReauth, ConnectionStatus::Disconnected][n % 3];
            typed.push(c);
        }

        for c in [&full, &bare].into_iter().chain(&typed) {
            assert_eq!(store.insert(c, InsertRules::default()).await.unwrap(), Inserted::Created, "{}", c.id);
        }
        for c in [&full, &bare].into_iter().chain(&typed) {
            let mut want = c.clone();
            want.version = 1;
            let got = store.get(&c.id).await.unwrap().unwrap();
            assert_eq!(got, want, "{}", c.id);
            // Equality of tokens is by value; check the text too.
            assert_eq!(got.access_token.secret(), c.access_token.secret());
            assert_eq!(got.refresh_token.as_ref().map(|t| t.secret()), c.refresh_token.as_ref().map(|t| t.secret()));
        }
    }

    pub(super) async fn get_of_an_unknown_id_is_none(store: Store, _twin: Store) {
        assert_eq!(store.get(&ConnectionId::new("hc_nobody")).await.unwrap(), None);
        store.insert(&connection("hc_a", "acme", 1), InsertRules::default()).await.unwrap();
        assert_eq!(store.get(&ConnectionId::new("hc_nobody")).await.unwrap(), None);
        assert_eq!(store.get(&ConnectionId::new("HC_A")).await.unwrap(), None, "ids are case-sensitive");
    }

    pub(super) async fn compare_and_swap_wins_once(store: Store, _twin: Store) {
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        let stored = store.get(&c.id).await.unwrap().unwrap();
        let mut next = stored.next_version(at(5_000));
        next.access_token = AccessToken::new("at-2");
        next.refresh_token = None;
        next.status = ConnectionStatus::NeedsReauth;
        next.scopes.push(Scope::new("files"));
        assert_eq!(next.version, 2);
        assert!(store.compare_and_swap(&next).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap().unwrap(), next);

        // The same write again is stale now.
        let mut again = next.clone();
        again.access_token = AccessToken::new("at-again");
        assert!(!store.compare_and_swap(&again).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap().unwrap(), next);

        // And the next one in line wins.
        let third = next.next_version(at(6_000));
        assert!(store.compare_and_swap(&third).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap().unwrap().version, 3);
    }

    pub(super) async fn compare_and_swap_with_a_stale_version_loses(store: Store, _twin: Store) {
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        let first = store.get(&c.id).await.unwrap().unwrap();
        let second = store.get(&c.id).await.unwrap().unwrap();

        let mut winner = first.next_version(at(1_000));
        winner.access_token = AccessToken::new("winner");
        assert!(store.compare_and_swap(&winner).await.unwrap());

        let mut loser = second.next_version(at(2_000));
        loser.access_token = AccessToken::new("loser");
        loser.failures = 9;
        assert!(!store.compare_and_swap(&loser).await.unwrap());
        let stored = store.get(&c.id).await.unwrap().unwrap();
        assert_eq!(stored, winner);
        assert_eq!(stored.access_token.secret(), "winner");

        // A version that skips ahead loses too, and so does one that goes back.
        let mut skip = winner.clone();
        skip.version = 4;
        assert!(!store.compare_and_swap(&skip).await.unwrap());
        let mut back = winner.clone();
        back.version = 1;
        assert!(!store.compare_and_swap(&back).await.unwrap());
        let mut zero = winner.clone();
        zero.version = 0;
        assert!(!store.compare_and_swap(&zero).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap().unwrap(), winner);
    }

    pub(super) async fn compare_and_swap_on_a_missing_id_loses(store: Store, _twin: Store) {
        let c = connection("hc_ghost", "acme", 1);
        let next = c.next_version(at(1_000));
        assert!(!store.compare_and_swap(&next).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap(), None, "a lost swap writes nothing");

        // Deleted under the writer's feet: lost as well.
        store.insert(&c, InsertRules::default()).await.unwrap();
        assert!(store.delete(&c.id).await.unwrap());
        assert!(!store.compare_and_swap(&next).await.unwrap());
        assert_eq!(store.get(&c.id).await.unwrap(), None);
    }

    pub(super) async fn delete_then_delete_again(store: Store, _twin: Store) {
        let a = connection("hc_a", "acme", 1);
        let b = connection("hc_b", "acme", 2);
        store.insert(&a, InsertRules::default()).await.unwrap();
        store.insert(&b, InsertRules::default()).await.unwrap();
        assert!(store.delete(&a.id).await.unwrap());
        assert_eq!(store.get(&a.id).await.unwrap(), None);
        assert!(!store.delete(&a.id).await.unwrap());
        assert!(!store.delete(&ConnectionId::new("hc_never")).await.unwrap());
        assert!(store.get(&b.id).await.unwrap().is_some(), "only the one deleted");
        // The portal is free again.
        let again = connection("hc_c", "globex", 1);
        assert_eq!(store.insert(&again, InsertRules::default()).await.unwrap(), Inserted::Created);
    }

    pub(super) async fn pending_is_taken_once_with_every_field(store: Store, _twin: Store) {
        for (state, full) in [("state-full", true), ("state-bare", false)] {
            let want = pending(state, full);
            store.put_pending(pending(state, full)).await.unwrap();
            let got = store.take_pending(&want.state_hash).await.unwrap().unwrap();
            assert_same_pending(&got, &want);
            assert!(store.take_pending(&want.state_hash).await.unwrap().is_none(), "{state}: taken once");
        }
        assert!(store.take_pending(&PendingAuthorization::hash_state("never")).await.unwrap().is_none());

        // Two pending side by side: taking one leaves the other.
        store.put_pending(pending("one", true)).await.unwrap();
        store.put_pending(pending("two", false)).await.unwrap();
        assert!(store.take_pending(&PendingAuthorization::hash_state("one")).await.unwrap().is_some());
        let two = store.take_pending(&PendingAuthorization::hash_state("two")).await.unwrap().unwrap();
        assert_same_pending(&two, &pending("two", false));

        // Put twice under one state: the later one wins.
        store.put_pending(pending("dup", false)).await.unwrap();
        let mut later = pending("dup", true);
        later.tenant = "globex".into();
        store.put_pending(later).await.unwrap();
        let got = store.take_pending(&PendingAuthorization::hash_state("dup")).await.unwrap().unwrap();
        assert_eq!(got.tenant, "globex");
    }

    pub(super) async fn pending_concurrent_takers_one_wins(store: Store, _twin: Store) {
        store.put_pending(pending("contested", true)).await.unwrap();
        let hash = PendingAuthorization::hash_state("contested");
        let takers: Vec<_> = (0..50)
            .map(|_| {
                let (store, hash) = (store.clone(), hash.clone());
                tokio::spawn(async move { store.take_pending(&hash).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for taker in takers {
            if let Some(p) = taker.await.unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 1, "exactly one taker gets it");
        assert_same_pending(&got[0], &pending("contested", true));
    }

    pub(super) async fn pending_expired_is_still_returned(store: Store, _twin: Store) {
        // Expired half an hour before the next put: still there, and returned (the caller reports it as expired).
        let mut old = pending("old", false);
        old.created_at = at(0);
        old.expires_at = at(600_000);
        store.put_pending(old).await.unwrap();
        let mut newer = pending("newer", false);
        newer.created_at = at(600_000 + 1_800_000);
        newer.expires_at = at(600_000 + 2_400_000);
        store.put_pending(newer).await.unwrap();
        let got = store.take_pending(&PendingAuthorization::hash_state("old")).await.unwrap().unwrap();
        assert_eq!(got.expires_at, at(600_000));
    }

    /// Finding 6: `begin` in a loop fills its own tenant's allowance (the newest are kept), not the store.
    pub(super) async fn pending_capped_per_tenant(store: Store, _twin: Store) {
        use hubspot_connect::store::MAX_PENDING_PER_TENANT;
        let mut calm = pending("calm", false);
        calm.tenant = "calm".into();
        store.put_pending(calm).await.unwrap();
        let total = MAX_PENDING_PER_TENANT + 5;
        for i in 0..total {
            let mut p = pending(&format!("busy-{i}"), false);
            p.tenant = "busy".into();
            p.created_at = at(1_000 * i as u64);
            p.expires_at = at(1_000 * i as u64 + 600_000);
            store.put_pending(p).await.unwrap();
        }
        for i in 0..total {
            let got = store.take_pending(&PendingAuthorization::hash_state(&format!("busy-{i}"))).await.unwrap();
            assert_eq!(got.is_some(), i >= total - MAX_PENDING_PER_TENANT, "busy-{i}");
        }
        assert!(store.take_pending(&PendingAuthorization::hash_state("calm")).await.unwrap().is_some());
    }

    pub(super) async fn lease_rules(store: Store, _twin: Store) {
        let ttl = Duration::from_secs(30);
        let t = |s: u64| at(s * 1_000);
        assert!(store.try_lease("k", "A", ttl, t(0)).await.unwrap(), "A takes a free lease");
        assert!(!store.try_lease("k", "B", ttl, t(10)).await.unwrap(), "B is refused while A holds it");
        assert!(store.try_lease("k", "A", ttl, t(20)).await.unwrap(), "A extends its own lease (to 50 s)");
        assert!(!store.try_lease("k", "B", ttl, t(40)).await.unwrap(), "the extension holds past the first expiry");
        assert!(!store.try_lease("k", "B", ttl, at(49_999)).await.unwrap(), "a millisecond before expiry: held");
        assert!(store.try_lease("k", "B", ttl, t(50)).await.unwrap(), "B takes it once A's lease expired");
        assert!(!store.release_lease("k", "A").await.unwrap(), "A's late release does nothing");
        assert!(!store.try_lease("k", "A", ttl, t(55)).await.unwrap(), "B still holds it");
        assert!(!store.try_lease("k", "C", ttl, t(79)).await.unwrap(), "B still holds it");

        // Keys are independent.
        assert!(store.try_lease("other", "A", ttl, t(55)).await.unwrap());

        // Release by the owner frees it at once.
        assert!(store.release_lease("k", "B").await.unwrap());
        assert!(!store.release_lease("k", "B").await.unwrap(), "released once");
        assert!(store.try_lease("k", "A", ttl, t(56)).await.unwrap(), "free again");
        assert!(!store.release_lease("nothing", "A").await.unwrap());
    }

    /// A lease whose expiry lies further ahead than twice the asked time to live was written by a clock that ran
    /// ahead (or is corrupt): no honest holder can have it, and honouring it would block every refresh until then.
    pub(super) async fn lease_from_a_clock_far_ahead_is_taken_over(store: Store, _twin: Store) {
        let ttl = Duration::from_secs(30);
        let t = |s: u64| at(s * 1_000);
        assert!(store.try_lease("k", "ahead", ttl, t(86_400)).await.unwrap(), "a clock a day ahead takes it");
        assert!(store.try_lease("k", "B", ttl, t(0)).await.unwrap(), "B's clock says that lease is absurd: taken");
        assert!(!store.try_lease("k", "C", ttl, t(1)).await.unwrap(), "B's honest lease holds");
        assert!(!store.release_lease("k", "ahead").await.unwrap(), "the old holder no longer has it");
        assert!(store.try_lease("j", "A", ttl, t(0)).await.unwrap());
        assert!(!store.try_lease("j", "B", ttl, at(1)).await.unwrap(), "just taken: held");
        assert!(!store.try_lease("j", "B", Duration::from_secs(20), t(0)).await.unwrap(), "a shorter ask: still held");
        assert!(store.release_lease("j", "A").await.unwrap());
    }

    pub(super) async fn lease_concurrent_owners_one_wins(store: Store, _twin: Store) {
        let owners: Vec<_> = (0..50)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let owner = format!("worker-{n}");
                    let won = store.try_lease("refresh:hc_a", &owner, Duration::from_secs(30), at(0)).await.unwrap();
                    (owner, won)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for owner in owners {
            let (owner, won) = owner.await.unwrap();
            if won {
                winners.push(owner);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one owner wins: {winners:?}");
        assert!(!store.try_lease("refresh:hc_a", "latecomer", Duration::from_secs(30), at(1)).await.unwrap());
        assert!(store.release_lease("refresh:hc_a", &winners[0]).await.unwrap());
    }

    pub(super) async fn portal_concurrent_tenants_one_wins(store: Store, _twin: Store) {
        let inserts: Vec<_> = (0..20)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let tenant = format!("tenant-{n}");
                    let c = connection(&format!("hc_{n:02}"), &tenant, 777);
                    (tenant, store.insert(&c, InsertRules::default()).await.unwrap())
                })
            })
            .collect();
        let mut results = Vec::new();
        for insert in inserts {
            results.push(insert.await.unwrap());
        }
        let winners: Vec<&String> =
            results.iter().filter(|(_, r)| *r == Inserted::Created).map(|(tenant, _)| tenant).collect();
        assert_eq!(winners.len(), 1, "exactly one tenant gets the portal: {results:?}");
        let winner = winners[0].clone();
        for (tenant, result) in &results {
            if *tenant != winner {
                assert_eq!(*result, Inserted::PortalTaken { tenant: winner.clone() }, "{tenant}");
            }
        }
        let held = store.list(&ConnectionFilter::all().portal(777)).await.unwrap();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].tenant, winner);
    }

    pub(super) async fn portal_shared_when_allowed(store: Store, _twin: Store) {
        let shared = rules(true, None);
        assert_eq!(store.insert(&connection("hc_a", "acme", 5), shared).await.unwrap(), Inserted::Created);
        assert_eq!(store.insert(&connection("hc_b", "globex", 5), shared).await.unwrap(), Inserted::Created);
        assert_eq!(store.list(&ConnectionFilter::all().portal(5)).await.unwrap().len(), 2);
        // Without the allowance the third tenant is told who holds it (one of them).
        match store.insert(&connection("hc_c", "initech", 5), InsertRules::default()).await.unwrap() {
            Inserted::PortalTaken { tenant } => assert!(tenant == "acme" || tenant == "globex", "{tenant}"),
            other => panic!("expected PortalTaken, got {other:?}"),
        }
        // Sharing does not let one tenant hold a portal twice.
        match store.insert(&connection("hc_d", "globex", 5), shared).await.unwrap() {
            Inserted::Existing(existing) => assert_eq!(existing.id.as_str(), "hc_b"),
            other => panic!("expected Existing, got {other:?}"),
        }
    }

    pub(super) async fn portal_same_tenant_is_existing(store: Store, _twin: Store) {
        let first = connection("hc_first", "acme", 5);
        assert_eq!(store.insert(&first, InsertRules::default()).await.unwrap(), Inserted::Created);
        let mut second = connection("hc_second", "acme", 5);
        second.access_token = AccessToken::new("newer");
        let mut want = first.clone();
        want.version = 1;
        for rules in [InsertRules::default(), rules(true, None), rules(false, Some(1)), rules(false, Some(0))] {
            assert_eq!(store.insert(&second, rules).await.unwrap(), Inserted::Existing(Box::new(want.clone())));
        }
        assert_eq!(store.get(&second.id).await.unwrap(), None, "nothing written");
        assert_eq!(store.get(&first.id).await.unwrap().unwrap().access_token.secret(), "at-hc_first");
        assert_eq!(store.list(&ConnectionFilter::all()).await.unwrap().len(), 1);
    }

    pub(super) async fn portal_limit(store: Store, _twin: Store) {
        let two = rules(false, Some(2));
        assert_eq!(store.insert(&connection("hc_1", "acme", 1), two).await.unwrap(), Inserted::Created);
        assert_eq!(store.insert(&connection("hc_2", "acme", 2), two).await.unwrap(), Inserted::Created);
        assert_eq!(
            store.insert(&connection("hc_3", "acme", 3), two).await.unwrap(),
            Inserted::LimitReached { held: 2 }
        );
        assert_eq!(store.get(&ConnectionId::new("hc_3")).await.unwrap(), None, "nothing written");
        // A portal the tenant holds does not count twice.
        assert!(matches!(store.insert(&connection("hc_4", "acme", 2), two).await.unwrap(), Inserted::Existing(_)));
        // The limit is per tenant.
        assert_eq!(store.insert(&connection("hc_5", "globex", 3), two).await.unwrap(), Inserted::Created);
        // A portal held by another tenant is PortalTaken before the limit is looked at.
        assert_eq!(
            store.insert(&connection("hc_6", "acme", 3), two).await.unwrap(),
            Inserted::PortalTaken { tenant: "globex".into() }
        );
        // A limit of zero refuses even the first.
        assert_eq!(
            store.insert(&connection("hc_7", "initech", 9), rules(false, Some(0))).await.unwrap(),
            Inserted::LimitReached { held: 0 }
        );
        // After a delete there is room again.
        assert!(store.delete(&ConnectionId::new("hc_1")).await.unwrap());
        assert_eq!(
            store.insert(&connection("hc_8", "acme", 3), rules(true, Some(2))).await.unwrap(),
            Inserted::Created
        );
    }

    pub(super) async fn portal_limit_under_concurrency(store: Store, _twin: Store) {
        let inserts: Vec<_> = (0..10u64)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert(&connection(&format!("hc_{n}"), "acme", 1_000 + n), rules(false, Some(3)))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for insert in inserts {
            match insert.await.unwrap() {
                Inserted::Created => created += 1,
                Inserted::LimitReached { held } => assert_eq!(held, 3),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(created, 3, "exactly max_portals inserts win");
        assert_eq!(store.list(&ConnectionFilter::all().tenant("acme")).await.unwrap().len(), 3);
    }

    pub(super) async fn list_filters_and_order(store: Store, _twin: Store) {
        let shared = rules(true, None);
        let mut rows = vec![
            connection("hc_d", "acme", 1),
            connection("hc_b", "acme", 2),
            connection("hc_a", "globex", 1),
            connection("hc_c", "globex", 3),
            connection("hc_e", "initech", 4),
            connection("hc_B", "acme", 5), // uppercase sorts first (byte order)
        ];
        rows[0].installed_by = Some("Ann@Example.com".into());
        rows[1].installed_by = Some("ann@example.com".into());
        rows[2].installed_by = Some("ANN@EXAMPLE.COM".into());
        rows[3].installed_by = Some("bob@example.com".into());
        rows[1].status = ConnectionStatus::NeedsReauth;
        rows[3].status = ConnectionStatus::NeedsReauth;
        rows[4].status = ConnectionStatus::Disconnected;
        for c in &rows {
            assert_eq!(store.insert(c, shared).await.unwrap(), Inserted::Created, "{}", c.id);
        }
        let list = |filter: ConnectionFilter| {
            let store = store.clone();
            async move { store.list(&filter).await.unwrap() }
        };

        let all = list(ConnectionFilter::all()).await;
        assert_eq!(ids(&all), ["hc_B", "hc_a", "hc_b", "hc_c", "hc_d", "hc_e"]);
        assert!(all.iter().all(|c| c.version == 1));
        let by_id = |id: &str| all.iter().find(|c| c.id.as_str() == id).unwrap().clone();
        assert_eq!(by_id("hc_b").installed_by.as_deref(), Some("ann@example.com"));

        assert_eq!(ids(&list(ConnectionFilter::all().tenant("acme")).await), ["hc_B", "hc_b", "hc_d"]);
        assert_eq!(ids(&list(ConnectionFilter::all().tenant("ACME")).await), Vec::<&str>::new(), "tenant is exact");
        assert_eq!(ids(&list(ConnectionFilter::all().portal(1)).await), ["hc_a", "hc_d"]);
        assert_eq!(ids(&list(ConnectionFilter::all().portal(99)).await), Vec::<&str>::new());
        assert_eq!(ids(&list(ConnectionFilter::all().status(ConnectionStatus::NeedsReauth)).await), ["hc_b", "hc_c"]);
        assert_eq!(
            ids(&list(ConnectionFilter::all().status(ConnectionStatus::Connected)).await),
            ["hc_B", "hc_a", "hc_d"]
        );
        assert_eq!(ids(&list(ConnectionFilter::all().status(ConnectionStatus::Backoff)).await), Vec::<&str>::new());
        assert_eq!(ids(&list(ConnectionFilter::all().installed_by("aNN@example.COM")).await), ["hc_a", "hc_b", "hc_d"]);
        assert_eq!(ids(&list(ConnectionFilter::all().installed_by("bob@example.com")).await), ["hc_c"]);
        assert_eq!(ids(&list(ConnectionFilter::all().installed_by("ann")).await), Vec::<&str>::new(), "whole email");
        assert_eq!(
            ids(&list(ConnectionFilter::all().tenant("acme").installed_by("ANN@example.com")).await),
            ["hc_b", "hc_d"]
        );
        assert_eq!(
            ids(&list(ConnectionFilter::all().tenant("globex").portal(3).status(ConnectionStatus::NeedsReauth)).await),
            ["hc_c"]
        );
        // What list returns is what get returns.
        for c in &all {
            assert_eq!(store.get(&c.id).await.unwrap().as_ref(), Some(c));
        }
    }

    /// An event about `c` at `ms`, with every field set.
    fn event(kind: EventKind, c: &Connection, ms: u64) -> Event {
        let mut e = Event::new(kind, c, at(ms));
        e.installed_by = Some("Admin@Example.com".into());
        e.code = Some(ErrorCode::HubspotUnavailable);
        e.message = Some("HubSpot answered 503 \"unavailable\" | ünïcode".into());
        e.correlation_id = Some("c0ffee-1".into());
        e.metadata.insert("plan".into(), "pro".into());
        e
    }

    fn events_of(logged: &[LoggedEvent]) -> Vec<Event> {
        logged.iter().map(|l| l.event.clone()).collect()
    }

    fn assert_increasing(logged: &[LoggedEvent]) {
        for pair in logged.windows(2) {
            assert!(pair[0].cursor < pair[1].cursor, "{:?} then {:?}", pair[0].cursor, pair[1].cursor);
        }
    }

    pub(super) async fn events_are_appended_with_their_write(store: Store, twin: Store) {
        assert!(store.events_since(EventCursor::START, 10).await.unwrap().is_empty());
        let c = connection("hc_a", "acme", 1);
        let connected = event(EventKind::Connected, &c, 1);
        assert_eq!(
            store.insert_with_events(&c, rules(false, None), std::slice::from_ref(&connected)).await.unwrap(),
            Inserted::Created
        );
        let mut next = store.get(&c.id).await.unwrap().unwrap().next_version(at(2));
        next.access_token = AccessToken::new("SECRET-next");
        let refreshed = event(EventKind::Refreshed, &next, 2);
        let recovered = event(EventKind::Recovered, &next, 2);
        assert!(store.compare_and_swap_with_events(&next, &[refreshed.clone(), recovered.clone()]).await.unwrap());
        let disconnected = event(EventKind::Disconnected, &next, 3);
        assert!(store.delete_with_events(&c.id, std::slice::from_ref(&disconnected)).await.unwrap());
        // A failed connect has no write to go with.
        let mut failed = Event::for_tenant(EventKind::ConnectFailed, "acme", at(4));
        failed.code = Some(ErrorCode::AuthScopeDenied);
        store.append_events(&[failed.clone()]).await.unwrap();

        let want = vec![connected, refreshed, recovered, disconnected, failed];
        for handle in [&store, &twin] {
            let logged = handle.events_since(EventCursor::START, 100).await.unwrap();
            assert_eq!(events_of(&logged), want, "every field round-trips, in order");
            assert_increasing(&logged);
            assert!(logged[0].cursor > EventCursor::START);
        }
        // Nothing secret went into the log.
        let text = format!("{:?}", store.events_since(EventCursor::START, 100).await.unwrap());
        assert!(!text.contains("SECRET") && !text.contains("at-hc_a") && !text.contains("rt-hc_a"), "{text}");
    }

    pub(super) async fn a_write_that_does_not_happen_appends_nothing(store: Store, _twin: Store) {
        let a = connection("hc_a", "acme", 1);
        store.insert(&a, rules(false, None)).await.unwrap();
        let e = |c: &Connection| vec![event(EventKind::Connected, c, 1)];
        // Refused inserts: the same portal again, another tenant's portal, over the limit.
        let again = connection("hc_again", "acme", 1);
        assert!(matches!(
            store.insert_with_events(&again, rules(false, None), &e(&again)).await.unwrap(),
            Inserted::Existing(_)
        ));
        let taken = connection("hc_taken", "globex", 1);
        assert!(matches!(
            store.insert_with_events(&taken, rules(false, None), &e(&taken)).await.unwrap(),
            Inserted::PortalTaken { .. }
        ));
        let over = connection("hc_over", "acme", 2);
        assert!(matches!(
            store.insert_with_events(&over, rules(false, Some(1)), &e(&over)).await.unwrap(),
            Inserted::LimitReached { .. }
        ));
        // A stale compare-and-swap, one on a missing id, a delete of a missing id.
        let current = store.get(&a.id).await.unwrap().unwrap();
        assert!(store.compare_and_swap(&current.next_version(at(1))).await.unwrap());
        let stale = current.next_version(at(2));
        assert!(!store.compare_and_swap_with_events(&stale, &e(&stale)).await.unwrap());
        let mut ghost = connection("hc_ghost", "acme", 3);
        ghost.version = 2;
        assert!(!store.compare_and_swap_with_events(&ghost, &e(&ghost)).await.unwrap());
        assert!(!store.delete_with_events(&ghost.id, &e(&ghost)).await.unwrap());
        assert!(store.events_since(EventCursor::START, 100).await.unwrap().is_empty(), "no event without its write");
        // An empty list appends nothing either.
        store.append_events(&[]).await.unwrap();
        assert!(store.events_since(EventCursor::START, 100).await.unwrap().is_empty());
    }

    pub(super) async fn events_since_is_ordered_across_two_handles(store: Store, twin: Store) {
        const WRITES: usize = 15;
        let mut tasks = Vec::new();
        for (n, handle) in [store.clone(), twin.clone()].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let c = connection(&format!("hc_{n}"), &format!("tenant{n}"), 10 + n as u64);
                handle.insert_with_events(&c, rules(false, None), &[event(EventKind::Connected, &c, 0)]).await.unwrap();
                let mut current = handle.get(&c.id).await.unwrap().unwrap();
                for i in 1..=WRITES as u64 {
                    let next = current.next_version(at(i));
                    let e = event(EventKind::Refreshed, &next, i);
                    assert!(handle.compare_and_swap_with_events(&next, &[e]).await.unwrap());
                    current = next;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // Read page by page from either handle: the same log, in one order, nothing twice.
        let all = store.events_since(EventCursor::START, 1000).await.unwrap();
        assert_eq!(all.len(), 2 * (WRITES + 1));
        assert_increasing(&all);
        let mut paged = Vec::new();
        let mut cursor = EventCursor::START;
        loop {
            let page = twin.events_since(cursor, 7).await.unwrap();
            assert!(page.len() <= 7);
            let Some(last) = page.last() else { break };
            cursor = last.cursor;
            paged.extend(page);
        }
        assert_eq!(paged, all);
        // Each connection's events in the order it wrote them.
        for n in 0..2 {
            let id = ConnectionId::new(format!("hc_{n}"));
            let times: Vec<SystemTime> = all
                .iter()
                .filter(|l| l.event.connection_id.as_ref() == Some(&id))
                .map(|l| l.event.occurred_at)
                .collect();
            assert_eq!(times, (0..=WRITES as u64).map(at).collect::<Vec<_>>());
        }
        // The cursor's text form reads back.
        let text = all[3].cursor.to_string();
        assert_eq!(store.events_since(text.parse().unwrap(), 1000).await.unwrap(), all[4..].to_vec());
        assert!(store.events_since(all.last().unwrap().cursor, 10).await.unwrap().is_empty());
    }

    /// Writers on two handles and a reader following the cursor at the same time: the reader ends with every event
    /// once. A log whose cursor order is not its commit order lets the reader step past an event that commits after
    /// a later-numbered one.
    pub(super) async fn a_reader_following_the_cursor_misses_nothing(store: Store, twin: Store) {
        const WRITERS: usize = 4;
        const WRITES: u64 = 20;
        let mut writers = tokio::task::JoinSet::new();
        for n in 0..WRITERS {
            let handle = if n % 2 == 0 { store.clone() } else { twin.clone() };
            writers.spawn(async move {
                let c = connection(&format!("hc_r{n}"), &format!("reader{n}"), 100 + n as u64);
                handle.insert_with_events(&c, rules(false, None), &[event(EventKind::Connected, &c, 0)]).await.unwrap();
                let mut current = handle.get(&c.id).await.unwrap().unwrap();
                for i in 1..=WRITES {
                    let next = current.next_version(at(i));
                    let e = event(EventKind::Refreshed, &next, i);
                    assert!(handle.compare_and_swap_with_events(&next, &[e]).await.unwrap());
                    current = next;
                    tokio::task::yield_now().await;
                }
            });
        }
        let total = WRITERS * (WRITES as usize + 1);
        let mut seen = Vec::new();
        let mut cursor = EventCursor::START;
        let mut writing = true;
        // Bounded: every pass either reads or waits for a writer; the writers end.
        while writing || seen.len() < total {
            let page = twin.events_since(cursor, 5).await.unwrap();
            if let Some(last) = page.last() {
                cursor = last.cursor;
                seen.extend(page);
            } else if writing {
                match writers.join_next().await {
                    Some(joined) => joined.unwrap(),
                    None => writing = false,
                }
            } else {
                break;
            }
        }
        let all = store.events_since(EventCursor::START, 10_000).await.unwrap();
        assert_eq!(all.len(), total);
        assert_eq!(seen, all, "the reader saw every event once, in the log's order");
    }

    pub(super) async fn history_is_per_connection(store: Store, twin: Store) {
        let a = connection("hc_a", "acme", 1);
        let b = connection("hc_b", "acme", 2);
        store.insert_with_events(&a, rules(false, None), &[event(EventKind::Connected, &a, 0)]).await.unwrap();
        twin.insert_with_events(&b, rules(false, None), &[event(EventKind::Connected, &b, 1)]).await.unwrap();
        let (mut ca, mut cb) = (store.get(&a.id).await.unwrap().unwrap(), store.get(&b.id).await.unwrap().unwrap());
        for i in 2..6 {
            let (na, nb) = (ca.next_version(at(i)), cb.next_version(at(i)));
            assert!(store.compare_and_swap_with_events(&na, &[event(EventKind::Refreshed, &na, i)]).await.unwrap());
            assert!(twin.compare_and_swap_with_events(&nb, &[event(EventKind::RefreshFailed, &nb, i)]).await.unwrap());
            (ca, cb) = (na, nb);
        }
        store.append_events(&[Event::for_tenant(EventKind::ConnectFailed, "acme", at(6))]).await.unwrap();
        assert!(store.delete_with_events(&a.id, &[event(EventKind::Disconnected, &ca, 7)]).await.unwrap());

        let history = twin.history(&a.id, 100).await.unwrap();
        let kinds: Vec<EventKind> = history.iter().map(|l| l.event.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Connected,
                EventKind::Refreshed,
                EventKind::Refreshed,
                EventKind::Refreshed,
                EventKind::Refreshed,
                EventKind::Disconnected
            ],
            "oldest first, only its own, kept after the disconnect"
        );
        assert_increasing(&history);
        let last_two = store.history(&a.id, 2).await.unwrap();
        assert_eq!(last_two, history[4..].to_vec(), "the newest, oldest first");
        assert_eq!(store.history(&b.id, 100).await.unwrap().len(), 5);
        assert!(store.history(&ConnectionId::new("hc_none"), 100).await.unwrap().is_empty());
        assert_eq!(store.events_since(EventCursor::START, 100).await.unwrap().len(), 12);
    }

    pub(super) async fn purge_removes_older_events_and_cursors_go_on(store: Store, twin: Store) {
        let c = connection("hc_a", "acme", 1);
        store.insert_with_events(&c, rules(false, None), &[event(EventKind::Connected, &c, 1_000)]).await.unwrap();
        let mut current = store.get(&c.id).await.unwrap().unwrap();
        for ms in [2_000, 3_000] {
            let next = current.next_version(at(ms));
            assert!(
                store.compare_and_swap_with_events(&next, &[event(EventKind::Refreshed, &next, ms)]).await.unwrap()
            );
            current = next;
        }
        let before = store.events_since(EventCursor::START, 100).await.unwrap();
        assert_eq!(twin.purge_events(at(2_000)).await.unwrap(), 1, "only what occurred before");
        let after = store.events_since(EventCursor::START, 100).await.unwrap();
        assert_eq!(after, before[1..].to_vec());
        assert_eq!(store.history(&c.id, 100).await.unwrap(), after, "gone from the history too");
        assert_eq!(store.purge_events(at(10_000)).await.unwrap(), 2);
        assert!(store.events_since(EventCursor::START, 100).await.unwrap().is_empty());
        assert!(store.history(&c.id, 100).await.unwrap().is_empty());
        assert_eq!(store.purge_events(at(10_000)).await.unwrap(), 0);
        // A cursor is never given out twice, even after everything was purged.
        store.append_events(&[Event::for_tenant(EventKind::ConnectFailed, "acme", at(11_000))]).await.unwrap();
        let fresh = store.events_since(EventCursor::START, 100).await.unwrap();
        assert_eq!(fresh.len(), 1);
        assert!(fresh[0].cursor > before.last().unwrap().cursor);
    }
}

/// What only the SQLite backend has: a file that several stores (processes) share, migrations, prefixes.
#[cfg(feature = "sqlite")]
mod sqlite_only {
    use std::path::{Path, PathBuf};

    use hubspot_connect::store::{ConnectionStore, EventStore, LeaseStore, PendingStore, SqliteStore};

    use super::*;

    /// A database file under the temp dir with a random name; deleted (with its `-wal` and `-shm`) when dropped.
    pub(super) struct TempFile(PathBuf);

    impl TempFile {
        pub(super) fn new() -> Self {
            let name = format!("hubconnect-test-{}.db", ConnectionId::random());
            Self(std::env::temp_dir().join(name))
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn url(&self) -> String {
            format!("sqlite://{}", self.0.display())
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut path = self.0.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// A fresh store on a new temp file, closed and deleted after the test.
    pub(super) async fn temp_store() -> Fresh {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let twin = SqliteStore::open(&file.url()).await.unwrap();
        let closers = (store.clone(), twin.clone());
        Fresh::new(store).with_twin(twin).with_cleanup(async move {
            closers.0.close().await;
            closers.1.close().await;
            drop(file);
        })
    }

    async fn schema_version(store: &SqliteStore) -> i64 {
        sqlx::query_scalar(&format!("SELECT version FROM \"{}_schema\" WHERE id = 1", store.prefix()))
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn every_url_form_opens_the_same_file_and_creates_it() {
        let file = TempFile::new();
        assert!(!file.path().exists());
        let plain = SqliteStore::open(file.path().to_str().unwrap()).await.unwrap();
        assert!(file.path().exists(), "created if missing");
        plain.insert(&connection("hc_a", "acme", 1), InsertRules::default()).await.unwrap();
        let short = format!("sqlite:{}", file.path().display());
        for url in [file.url(), short] {
            let store = SqliteStore::open(&url).await.unwrap();
            assert!(store.get(&ConnectionId::new("hc_a")).await.unwrap().is_some(), "{url}");
            store.close().await;
        }
        plain.close().await;
    }

    #[tokio::test]
    async fn pragmas_are_set() {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(mode, "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(synchronous, 2, "FULL");
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(timeout, 5_000);
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(fk, 1);
        drop(conn);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_file_are_like_two_workers() {
        let file = TempFile::new();
        let a = SqliteStore::open(&file.url()).await.unwrap();
        let b = SqliteStore::open(&file.url()).await.unwrap();

        // Each sees the other's writes.
        let c = connection("hc_a", "acme", 1);
        assert_eq!(a.insert(&c, InsertRules::default()).await.unwrap(), Inserted::Created);
        let via_b = b.get(&c.id).await.unwrap().unwrap();
        assert_eq!(via_b.version, 1);
        assert_eq!(
            b.insert(&connection("hc_b", "globex", 1), InsertRules::default()).await.unwrap(),
            Inserted::PortalTaken { tenant: "acme".into() }
        );

        // Compare-and-swap across them: one of two concurrent writers wins, repeatedly.
        for round in 0..10u32 {
            let current = a.get(&c.id).await.unwrap().unwrap();
            let mut from_a = current.next_version(at(1_000));
            from_a.failures = 1_000 + round;
            let mut from_b = current.next_version(at(1_000));
            from_b.failures = 2_000 + round;
            let (won_a, won_b) = tokio::join!(
                tokio::spawn({
                    let a = a.clone();
                    async move { a.compare_and_swap(&from_a).await.unwrap() }
                }),
                tokio::spawn({
                    let b = b.clone();
                    async move { b.compare_and_swap(&from_b).await.unwrap() }
                }),
            );
            let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
            assert!(won_a ^ won_b, "round {round}: exactly one wins ({won_a}, {won_b})");
            let stored = b.get(&c.id).await.unwrap().unwrap();
            assert_eq!(stored.failures, if won_a { 1_000 } else { 2_000 } + round);
            assert_eq!(stored.version, u64::from(round) + 2);
        }

        // Leases across them.
        let ttl = Duration::from_secs(30);
        assert!(a.try_lease("refresh:hc_a", "A", ttl, at(0)).await.unwrap());
        assert!(!b.try_lease("refresh:hc_a", "B", ttl, at(1_000)).await.unwrap());
        assert!(b.try_lease("refresh:hc_a", "B", ttl, at(30_000)).await.unwrap());
        assert!(!a.release_lease("refresh:hc_a", "A").await.unwrap());

        // Pending taken through the other store, once.
        a.put_pending(pending("shared", true)).await.unwrap();
        let hash = PendingAuthorization::hash_state("shared");
        let (ta, tb) = tokio::join!(a.take_pending(&hash), b.take_pending(&hash));
        assert_eq!(u8::from(ta.unwrap().is_some()) + u8::from(tb.unwrap().is_some()), 1);

        // Concurrent portal inserts from both stores: one tenant gets it.
        let (x, y) = (connection("hc_x", "x", 42), connection("hc_y", "y", 42));
        let (ra, rb) = tokio::join!(a.insert(&x, InsertRules::default()), b.insert(&y, InsertRules::default()));
        let created = [ra.unwrap(), rb.unwrap()].iter().filter(|r| **r == Inserted::Created).count();
        assert_eq!(created, 1);

        a.close().await;
        b.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_opens_of_a_new_file_all_succeed() {
        let file = TempFile::new();
        let url = file.url();
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { SqliteStore::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().unwrap());
        }
        for store in &stores {
            assert_eq!(schema_version(store).await, SqliteStore::SCHEMA_VERSION);
        }
        stores[0].insert(&connection("hc_a", "acme", 1), InsertRules::default()).await.unwrap();
        assert!(stores[5].get(&ConnectionId::new("hc_a")).await.unwrap().is_some());
        for store in stores {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn a_version_1_file_gains_the_event_log_and_keeps_its_data() {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        // Back to what version 1 of the schema was: no event log.
        sqlx::query(&format!("DROP TABLE \"{}_events\"", store.prefix())).execute(store.pool()).await.unwrap();
        sqlx::query(&format!("UPDATE \"{}_schema\" SET version = 1", store.prefix()))
            .execute(store.pool())
            .await
            .unwrap();
        store.close().await;

        let store = SqliteStore::open(&file.url()).await.unwrap();
        assert_eq!(schema_version(&store).await, SqliteStore::SCHEMA_VERSION);
        assert_eq!(store.get(&c.id).await.unwrap().unwrap().id, c.id);
        let next = store.get(&c.id).await.unwrap().unwrap().next_version(at(1));
        let e = Event::new(EventKind::Refreshed, &next, at(1));
        assert!(store.compare_and_swap_with_events(&next, std::slice::from_ref(&e)).await.unwrap());
        assert_eq!(store.history(&c.id, 10).await.unwrap().into_iter().map(|l| l.event).collect::<Vec<_>>(), [e]);
        store.close().await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        store.put_pending(pending("kept", true)).await.unwrap();
        assert!(store.try_lease("k", "A", Duration::from_secs(60), at(0)).await.unwrap());
        assert_eq!(schema_version(&store).await, SqliteStore::SCHEMA_VERSION);
        store.close().await;

        for _ in 0..2 {
            let store = SqliteStore::open(&file.url()).await.unwrap();
            assert_eq!(schema_version(&store).await, SqliteStore::SCHEMA_VERSION);
            let mut want = c.clone();
            want.version = 1;
            assert_eq!(store.get(&c.id).await.unwrap(), Some(want));
            assert!(!store.try_lease("k", "B", Duration::from_secs(60), at(1)).await.unwrap(), "lease survives");
            store.close().await;
        }
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let kept = store.take_pending(&PendingAuthorization::hash_state("kept")).await.unwrap().unwrap();
        assert_same_pending(&kept, &pending("kept", true));
        store.close().await;
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        sqlx::query("UPDATE hubconnect_schema SET version = 99").execute(store.pool()).await.unwrap();
        store.close().await;
        let err = SqliteStore::open(&file.url()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        assert!(err.message().contains("version 99"), "{err}");
    }

    #[tokio::test]
    async fn prefixes_keep_apps_apart_in_one_file() {
        let file = TempFile::new();
        let one = SqliteStore::open_with_prefix(&file.url(), "app_one").await.unwrap();
        let two = SqliteStore::open_with_prefix(&file.url(), "2nd_App").await.unwrap();
        let default = SqliteStore::open(&file.url()).await.unwrap();
        assert_eq!(one.prefix(), "app_one");
        assert_eq!(default.prefix(), SqliteStore::DEFAULT_PREFIX);

        let c = connection("hc_a", "acme", 1);
        assert_eq!(one.insert(&c, InsertRules::default()).await.unwrap(), Inserted::Created);
        assert_eq!(two.get(&c.id).await.unwrap(), None);
        assert_eq!(default.get(&c.id).await.unwrap(), None);
        // The same portal, another app: its own rule.
        assert_eq!(
            two.insert(&connection("hc_b", "globex", 1), InsertRules::default()).await.unwrap(),
            Inserted::Created
        );
        assert!(one.try_lease("k", "A", Duration::from_secs(30), at(0)).await.unwrap());
        assert!(two.try_lease("k", "B", Duration::from_secs(30), at(0)).await.unwrap());
        one.put_pending(pending("p", false)).await.unwrap();
        assert!(two.take_pending(&PendingAuthorization::hash_state("p")).await.unwrap().is_none());
        assert!(one.take_pending(&PendingAuthorization::hash_state("p")).await.unwrap().is_some());
        assert_eq!(ids(&one.list(&ConnectionFilter::all()).await.unwrap()), ["hc_a"]);
        assert_eq!(ids(&two.list(&ConnectionFilter::all()).await.unwrap()), ["hc_b"]);

        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(one.pool())
                .await
                .unwrap();
        for prefix in ["app_one", "2nd_App", "hubconnect"] {
            for table in ["connections", "leases", "pending", "schema"] {
                assert!(tables.contains(&format!("{prefix}_{table}")), "{prefix}_{table} in {tables:?}");
            }
        }
        for store in [one, two, default] {
            store.close().await;
        }
    }

    #[tokio::test]
    async fn an_invalid_prefix_is_invalid_config() {
        let file = TempFile::new();
        let long = "x".repeat(33);
        for prefix in ["", "a-b", "a b", "x\"; DROP TABLE t; --", "é", long.as_str()] {
            let err = SqliteStore::open_with_prefix(&file.url(), prefix).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig, "{prefix:?}");
        }
        assert!(!file.path().exists(), "nothing opened for an invalid prefix");
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        assert_eq!(SqliteStore::from_pool(pool.clone(), "no way").await.unwrap_err().code(), ErrorCode::InvalidConfig);
        let store = SqliteStore::from_pool(pool, &"x".repeat(32)).await.unwrap();
        assert!(store.list(&ConnectionFilter::all()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn garbage_in_a_row_is_store_unavailable_not_a_panic() {
        let file = TempFile::new();
        let store = SqliteStore::open(&file.url()).await.unwrap();
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        let corrupt = |sql: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query(sql).execute(store.pool()).await.unwrap();
            }
        };
        let expect_unavailable = |err: hubspot_connect::Error, column: &str| {
            assert_eq!(err.code(), ErrorCode::StoreUnavailable, "{err}");
            assert!(err.message().contains(column), "{err}");
            assert!(!format!("{err:?}").contains("at-hc_a"), "no token in {err:?}");
        };

        corrupt("UPDATE hubconnect_connections SET status = 'bogus'").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "status");
        expect_unavailable(store.list(&ConnectionFilter::all()).await.unwrap_err(), "status");
        // The insert rule reads the row too.
        expect_unavailable(store.insert(&c, InsertRules::default()).await.unwrap_err(), "status");
        corrupt("UPDATE hubconnect_connections SET status = 'connected', kind = 'carrier_pigeon'").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "kind");
        corrupt("UPDATE hubconnect_connections SET kind = 'oauth', scopes = '[not json'").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "scopes");
        corrupt("UPDATE hubconnect_connections SET scopes = '[]', last_error = '{\"code\":\"NOPE\"}'").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "last_error");
        corrupt("UPDATE hubconnect_connections SET last_error = NULL, created_at_ms = 'yesterday'").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "created_at_ms");
        corrupt("UPDATE hubconnect_connections SET created_at_ms = 0, failures = -1").await;
        expect_unavailable(store.get(&c.id).await.unwrap_err(), "failures");
        corrupt("UPDATE hubconnect_connections SET failures = 0").await;
        assert!(store.get(&c.id).await.unwrap().is_some(), "readable again once repaired");

        store.put_pending(pending("p", true)).await.unwrap();
        corrupt("UPDATE hubconnect_pending SET required_scopes = 'nope'").await;
        let err = store.take_pending(&PendingAuthorization::hash_state("p")).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        assert!(err.message().contains("required_scopes"), "{err}");
        store.close().await;
    }

    #[tokio::test]
    async fn put_pending_purges_what_expired_more_than_the_grace_earlier() {
        let fresh = temp_store().await;
        let store = fresh.store.clone().unwrap();
        let day = u64::try_from(hubspot_connect::store::PENDING_GRACE.as_millis()).unwrap();
        let mut ancient = pending("ancient", false);
        ancient.expires_at = at(1_000);
        store.put_pending(ancient).await.unwrap();
        let mut recent = pending("recent", false);
        recent.expires_at = at(2_000);
        store.put_pending(recent).await.unwrap();
        let mut now = pending("now", false);
        now.created_at = at(day + 1_500);
        now.expires_at = at(day + 601_500);
        store.put_pending(now).await.unwrap();
        assert!(store.take_pending(&PendingAuthorization::hash_state("ancient")).await.unwrap().is_none(), "purged");
        assert!(store.take_pending(&PendingAuthorization::hash_state("recent")).await.unwrap().is_some(), "kept");
        assert!(store.take_pending(&PendingAuthorization::hash_state("now")).await.unwrap().is_some());
        fresh.finish().await;
    }

    #[tokio::test]
    async fn in_memory_store_keeps_its_data_and_debug_shows_no_secret() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let other = SqliteStore::open("sqlite::memory:").await.unwrap();
        let c = connection("hc_a", "acme", 1);
        store.insert(&c, InsertRules::default()).await.unwrap();
        assert!(store.get(&c.id).await.unwrap().is_some());
        assert!(other.get(&c.id).await.unwrap().is_none(), "each in-memory store is its own database");
        let debug = format!("{store:?}");
        assert!(debug.contains("hubconnect"), "{debug}");
        assert!(!debug.contains("at-hc_a") && !debug.contains("rt-hc_a"), "{debug}");
    }
}

/// PostgreSQL and Redis: a fresh store per test under a random prefix (tables or keys removed afterwards), and what
/// only these backends have (prefixes shared by two instances, migrations racing, corrupt records, URLs).
#[cfg(any(feature = "postgres", feature = "redis"))]
#[allow(dead_code)]
mod server_only {
    use super::*;

    const POSTGRES_URL: &str = "HUBCONNECT_TEST_POSTGRES_URL";
    const REDIS_URL: &str = "HUBCONNECT_TEST_REDIS_URL";

    /// A prefix no other test (or earlier run) uses.
    pub(super) fn random_prefix() -> String {
        format!("t{}", ConnectionId::random().as_str().replace(|c: char| !c.is_ascii_alphanumeric(), ""))
            .chars()
            .take(24)
            .collect()
    }

    /// The server URL in `var`, or `None` after saying loudly that `what` was skipped.
    fn server_url(var: &str, what: &str) -> Option<String> {
        let url = std::env::var(var).ok().filter(|u| !u.trim().is_empty());
        if url.is_none() {
            eprintln!("SKIPPED: {var} is not set; {what} store test not run");
        }
        url
    }

    #[cfg(feature = "postgres")]
    pub(super) fn postgres_url() -> Option<String> {
        server_url(POSTGRES_URL, "PostgreSQL")
    }

    #[cfg(feature = "redis")]
    pub(super) fn redis_url() -> Option<String> {
        server_url(REDIS_URL, "Redis")
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn drop_tables(store: &hubspot_connect::store::PostgresStore) {
        for table in ["connections", "pending", "leases", "events", "schema"] {
            let sql = format!("DROP TABLE IF EXISTS \"{}_{table}\"", store.prefix());
            sqlx::query(&sql).execute(store.pool()).await.unwrap();
        }
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn postgres() -> Fresh {
        use hubspot_connect::store::PostgresStore;
        let Some(url) = postgres_url() else { return Fresh::skipped("PostgreSQL is not configured") };
        let prefix = random_prefix();
        let store = PostgresStore::connect_with_prefix(&url, &prefix).await.unwrap();
        let twin = PostgresStore::connect_with_prefix(&url, &prefix).await.unwrap();
        let cleaners = (store.clone(), twin.clone());
        Fresh::new(store).with_twin(twin).with_cleanup(async move {
            cleaners.1.close().await;
            drop_tables(&cleaners.0).await;
            cleaners.0.close().await;
        })
    }

    #[cfg(feature = "redis")]
    pub(super) async fn redis() -> Fresh {
        use hubspot_connect::store::RedisStore;
        let Some(url) = redis_url() else { return Fresh::skipped("Redis is not configured") };
        let prefix = random_prefix();
        let store = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
        let twin = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
        let cleaner = store.clone();
        Fresh::new(store).with_twin(twin).with_cleanup(async move {
            cleaner.clear().await.unwrap();
        })
    }

    #[cfg(feature = "postgres")]
    mod postgres {
        use hubspot_connect::store::{ConnectionStore, LeaseStore, PendingStore, PostgresStore};

        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_instances_share_one_prefix_and_not_another() {
            let Some(url) = postgres_url() else { return };
            let prefix = random_prefix();
            let (a, b) = tokio::join!(
                PostgresStore::connect_with_prefix(&url, &prefix),
                PostgresStore::connect_with_prefix(&url, &prefix)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            let other = PostgresStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();

            let c = connection("hc_a", "acme", 1);
            assert_eq!(a.insert(&c, InsertRules::default()).await.unwrap(), Inserted::Created);
            assert_eq!(b.get(&c.id).await.unwrap().unwrap().version, 1, "one prefix: one store");
            assert!(other.get(&c.id).await.unwrap().is_none(), "another prefix: another store");
            assert_eq!(
                b.insert(&connection("hc_b", "globex", 1), InsertRules::default()).await.unwrap(),
                Inserted::PortalTaken { tenant: "acme".into() }
            );
            let next = b.get(&c.id).await.unwrap().unwrap().next_version(at(5));
            assert!(b.compare_and_swap(&next).await.unwrap());
            assert!(!a.compare_and_swap(&next).await.unwrap(), "a stale writer in another instance loses");
            assert!(a.try_lease("k", "a", Duration::from_secs(30), at(0)).await.unwrap());
            assert!(!b.try_lease("k", "b", Duration::from_secs(30), at(1)).await.unwrap());

            // Connecting again finds the schema up to date.
            let again = PostgresStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let version: i64 = sqlx::query_scalar(&format!("SELECT version FROM \"{prefix}_schema\" WHERE id = 1"))
                .fetch_one(again.pool())
                .await
                .unwrap();
            assert_eq!(version, PostgresStore::SCHEMA_VERSION);
            drop_tables(&a).await;
            drop_tables(&other).await;
        }

        #[tokio::test]
        async fn corrupt_rows_are_errors_naming_the_column_not_the_value() {
            let Some(url) = postgres_url() else { return };
            let store = PostgresStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
            let c = connection("hc_a", "acme", 1);
            store.insert(&c, InsertRules::default()).await.unwrap();
            let table = format!("\"{}_connections\"", store.prefix());
            sqlx::query(&format!("UPDATE {table} SET status = 'CANARY-status'")).execute(store.pool()).await.unwrap();
            let err = store.get(&c.id).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            assert!(err.message().contains("status"), "{err}");
            sqlx::query(&format!("UPDATE {table} SET status = '{}', scopes = 'CANARY-not-json'", c.status.as_str()))
                .execute(store.pool())
                .await
                .unwrap();
            let err = store.list(&ConnectionFilter::all()).await.unwrap_err();
            assert!(err.message().contains("scopes"), "{err}");
            assert!(!format!("{err} {err:?}").contains("CANARY-not-json"));

            store.put_pending(pending("p", true)).await.unwrap();
            let pending_table = format!("\"{}_pending\"", store.prefix());
            sqlx::query(&format!("UPDATE {pending_table} SET required_scopes = 'CANARY-nope'"))
                .execute(store.pool())
                .await
                .unwrap();
            let err = store.take_pending(&PendingAuthorization::hash_state("p")).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            assert!(err.message().contains("required_scopes"), "{err}");
            assert!(!format!("{err} {err:?}").contains("CANARY"));
            drop_tables(&store).await;
        }

        #[tokio::test]
        async fn urls_and_prefixes_are_checked_and_never_echoed() {
            let Some(_) = postgres_url() else { return };
            let err =
                PostgresStore::connect("postgres://u:CANARY-pw@localhost/db?sslmode=sometimes").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig);
            assert!(!format!("{err} {err:?}").contains("CANARY"));
            let err = PostgresStore::connect_with_prefix("postgres://u@127.0.0.1/db", "bad-prefix").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig);
            // Nothing listens on port 1: unavailable, retryable, no password in the error.
            let err = PostgresStore::connect("postgres://u:CANARY-pw@127.0.0.1:1/db").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            assert!(!format!("{err} {err:?}").contains("CANARY"));
        }

        #[tokio::test]
        async fn debug_shows_no_url() {
            let Some(url) = postgres_url() else { return };
            let store = PostgresStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
            let shown = format!("{store:?}");
            assert!(shown.contains(store.prefix()), "{shown}");
            assert!(!shown.contains("postgres://"), "{shown}");
            drop_tables(&store).await;
        }
    }

    #[cfg(feature = "redis")]
    mod redis {
        use ::redis::AsyncCommands;
        use hubspot_connect::store::{ConnectionStore, LeaseStore, PendingStore, RedisStore};

        use super::*;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_instances_share_one_prefix_and_not_another() {
            let Some(url) = redis_url() else { return };
            let prefix = random_prefix();
            let a = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let b = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let other = RedisStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();

            let c = connection("hc_a", "acme", 1);
            assert_eq!(a.insert(&c, InsertRules::default()).await.unwrap(), Inserted::Created);
            assert_eq!(b.get(&c.id).await.unwrap().unwrap().version, 1);
            assert!(other.get(&c.id).await.unwrap().is_none());
            assert_eq!(
                b.insert(&connection("hc_b", "globex", 1), InsertRules::default()).await.unwrap(),
                Inserted::PortalTaken { tenant: "acme".into() }
            );
            let next = b.get(&c.id).await.unwrap().unwrap().next_version(at(5));
            assert!(b.compare_and_swap(&next).await.unwrap());
            assert!(!a.compare_and_swap(&next).await.unwrap());
            assert!(a.try_lease("k", "a", Duration::from_secs(30), at(0)).await.unwrap());
            assert!(!b.try_lease("k", "b", Duration::from_secs(30), at(1)).await.unwrap());
            assert!(b.try_lease("k", "b", Duration::from_secs(30), at(30_001)).await.unwrap(), "expired");

            // Deleting removes every index entry: the portal is free again, and clear() leaves no key behind.
            assert!(a.delete(&c.id).await.unwrap());
            assert_eq!(
                b.insert(&connection("hc_b", "globex", 1), InsertRules::default()).await.unwrap(),
                Inserted::Created
            );
            assert!(a.clear().await.unwrap() > 0);
            let mut conn = a.connection().clone();
            let left: Vec<String> = conn.keys(format!("{{{prefix}}}:*")).await.unwrap();
            assert!(left.is_empty(), "{left:?}");
            other.clear().await.unwrap();
        }

        #[tokio::test]
        async fn keys_expire_pending_after_a_grace_day_and_leases_after_a_minute() {
            let Some(url) = redis_url() else { return };
            let prefix = random_prefix();
            let store = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let mut conn = store.connection().clone();
            let p = pending("p", false);
            let life = p.expires_at.duration_since(p.created_at).unwrap();
            let key = format!("{{{prefix}}}:s:{}", p.state_hash);
            store.put_pending(p).await.unwrap();
            let ttl: i64 = conn.pttl(key).await.unwrap();
            let expected = (life + hubspot_connect::store::PENDING_GRACE).as_millis() as i64;
            assert!(ttl > expected - 60_000 && ttl <= expected, "{ttl} vs {expected}");
            store.try_lease("k", "a", Duration::from_secs(30), at(0)).await.unwrap();
            let ttl: i64 = conn.pttl(format!("{{{prefix}}}:l:k")).await.unwrap();
            assert!(ttl > 80_000 && ttl <= 90_000, "{ttl}");
            store.clear().await.unwrap();
        }

        #[tokio::test]
        async fn corrupt_records_are_errors_without_their_text() {
            let Some(url) = redis_url() else { return };
            let prefix = random_prefix();
            let store = RedisStore::connect_with_prefix(&url, &prefix).await.unwrap();
            let c = connection("hc_a", "acme", 1);
            store.insert(&c, InsertRules::default()).await.unwrap();
            let mut conn = store.connection().clone();
            let key = format!("{{{prefix}}}:c:hc_a");
            let () = conn.hset(&key, "d", r#"{"access_token":"CANARY-broken"#).await.unwrap();
            let err = store.get(&c.id).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            assert!(!format!("{err} {err:?}").contains("CANARY"));
            assert_eq!(store.list(&ConnectionFilter::all()).await.unwrap_err().code(), ErrorCode::StoreUnavailable);
            let () = conn.hset(&key, "v", "not-a-number").await.unwrap();
            assert_eq!(store.get(&c.id).await.unwrap_err().code(), ErrorCode::StoreUnavailable);
            // A key of the wrong type is an error too, not a panic.
            let () = conn.set(format!("{{{prefix}}}:s:x"), "garbage").await.unwrap();
            assert_eq!(store.take_pending("x").await.unwrap_err().code(), ErrorCode::StoreUnavailable);
            let () = conn.set(format!("{{{prefix}}}:l:k"), "garbage").await.unwrap();
            assert_eq!(
                store.try_lease("k", "a", Duration::from_secs(1), at(0)).await.unwrap_err().code(),
                ErrorCode::StoreUnavailable
            );
            store.clear().await.unwrap();
        }

        #[tokio::test]
        async fn urls_and_prefixes_are_checked_and_never_echoed() {
            let Some(_) = redis_url() else { return };
            let err = RedisStore::connect("nosuch://u:CANARY-pw@localhost").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig);
            assert!(!format!("{err} {err:?}").contains("CANARY"));
            let err = RedisStore::connect_with_prefix("redis://127.0.0.1:6379", "a:b").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig);
            let err = RedisStore::connect("redis://:CANARY-pw@127.0.0.1:1").await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            assert!(!format!("{err} {err:?}").contains("CANARY"));
            let store = RedisStore::connect_with_prefix("redis://127.0.0.1:6379", "dbg").await.unwrap();
            assert!(!format!("{store:?}").contains("redis://"));
        }
    }
}
