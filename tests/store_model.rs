//! Model-based tests of the stores: random sequences of insert, compare-and-swap, delete, get, list, put and take a
//! pending authorization, take and release a lease, run against a plain model written here and against every
//! backend; every answer must be the model's. And concurrent variants for the lease and the portal rule.
//!
//! SQLite and memory always; PostgreSQL and Redis when `HUBCONNECT_TEST_POSTGRES_URL` / `HUBCONNECT_TEST_REDIS_URL`
//! are set. `HUBCONNECT_MODEL_CASES` sets the number of sequences per backend (default 64).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubspot_connect::store::{ConnectionFilter, InsertRules, Inserted, MemoryStore, TokenStore, lease_is_absurd};
use hubspot_connect::{
    AccessToken, Connection, ConnectionId, ConnectionStatus, RefreshToken, secret::PkceVerifier,
    store::PendingAuthorization,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ---- the operations ----

#[derive(Debug, Clone)]
enum Op {
    Insert {
        tenant: u8,
        portal: u8,
        shared: bool,
        max: Option<u8>,
    },
    /// Compare-and-swap on the `nth` connection ever inserted, with a version `delta` above the model's current one
    /// (1 is the right one), a new token and a status.
    Swap {
        nth: u8,
        delta: u8,
        status: u8,
    },
    Delete {
        nth: u8,
    },
    Get {
        nth: u8,
    },
    List {
        tenant: Option<u8>,
        portal: Option<u8>,
        status: Option<u8>,
    },
    PutPending {
        state: u8,
        tenant: u8,
    },
    TakePending {
        state: u8,
    },
    Lease {
        key: u8,
        owner: u8,
        ttl_s: u8,
    },
    /// A lease written by a clock this far ahead.
    LeaseAhead {
        key: u8,
        owner: u8,
        ahead_s: u32,
    },
    Release {
        key: u8,
        owner: u8,
    },
    /// Time passes.
    Wait {
        ms: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3u8, 0..4u8, any::<bool>(), proptest::option::of(0..3u8))
            .prop_map(|(tenant, portal, shared, max)| Op::Insert { tenant, portal, shared, max }),
        3 => (0..8u8, 0..3u8, 0..4u8).prop_map(|(nth, delta, status)| Op::Swap { nth, delta, status }),
        1 => (0..8u8).prop_map(|nth| Op::Delete { nth }),
        1 => (0..8u8).prop_map(|nth| Op::Get { nth }),
        1 => (proptest::option::of(0..3u8), proptest::option::of(0..4u8), proptest::option::of(0..4u8))
            .prop_map(|(tenant, portal, status)| Op::List { tenant, portal, status }),
        1 => (0..3u8, 0..3u8).prop_map(|(state, tenant)| Op::PutPending { state, tenant }),
        1 => (0..3u8).prop_map(|state| Op::TakePending { state }),
        3 => (0..2u8, 0..3u8, 1..40u8).prop_map(|(key, owner, ttl_s)| Op::Lease { key, owner, ttl_s }),
        1 => (0..2u8, 0..3u8, 0..200_000u32).prop_map(|(key, owner, ahead_s)| Op::LeaseAhead { key, owner, ahead_s }),
        2 => (0..2u8, 0..3u8).prop_map(|(key, owner)| Op::Release { key, owner }),
        2 => (0..60_000u32).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// What an operation answered, comparable between the model and a store.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
enum Answer {
    Inserted(Inserted),
    Swapped(bool),
    Deleted(bool),
    Got(Option<Connection>),
    Listed(Vec<Connection>),
    Put,
    /// The state hash and tenant of what was taken.
    Taken(Option<(String, String)>),
    Leased(bool),
    Released(bool),
    Waited,
    /// The model's answer where the contract allows several: another tenant holds the portal, any of these.
    PortalTakenByOneOf(Vec<String>),
    /// The model's answer where the contract allows several: the owner releases its own expired lease, which a
    /// store may already have purged (`true` or `false`).
    ReleasedExpired,
}

/// Whether a store's answer is one the model allows.
fn agrees(model: &Answer, store: &Answer) -> bool {
    match (model, store) {
        (Answer::PortalTakenByOneOf(holders), Answer::Inserted(Inserted::PortalTaken { tenant })) => {
            holders.contains(tenant)
        }
        (Answer::ReleasedExpired, Answer::Released(_)) => true,
        _ => model == store,
    }
}

/// 2026-01-01T00:00:00Z plus `ms`: times every backend stores exactly.
fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_767_225_600_000 + ms)
}

const STATUSES: [ConnectionStatus; 4] = [
    ConnectionStatus::Connected,
    ConnectionStatus::Backoff,
    ConnectionStatus::NeedsReauth,
    ConnectionStatus::Disconnected,
];

/// The inputs an op sequence derives as it runs, the same for the model and the store: ids of inserted
/// connections, the clock, counters for fresh tokens.
struct Script {
    /// `case` keeps ids apart between sequences run on one server.
    case: String,
    inserted: Vec<ConnectionId>,
    /// The last version of each connection as the model knows it (what a writer would have read).
    known: HashMap<ConnectionId, Connection>,
    now_ms: u64,
    minted: u64,
}

impl Script {
    fn new(case: &str) -> Self {
        Script { case: case.to_owned(), inserted: Vec::new(), known: HashMap::new(), now_ms: 0, minted: 0 }
    }

    fn now(&self) -> SystemTime {
        at(self.now_ms)
    }

    fn mint(&mut self) -> String {
        self.minted += 1;
        format!("tok-{}-{}", self.case, self.minted)
    }

    fn nth(&self, nth: u8) -> ConnectionId {
        match self.inserted.get(usize::from(nth)) {
            Some(id) => id.clone(),
            None => ConnectionId::new(format!("hc_{}_never_{nth}", self.case)),
        }
    }

    fn new_connection(&mut self, tenant: u8, portal: u8) -> Connection {
        let now = self.now();
        let token = self.mint();
        let mut c = Connection::new(
            format!("tenant-{tenant}"),
            1_000 + u64::from(portal),
            AccessToken::new(format!("access-{token}")),
            Some(RefreshToken::new(format!("refresh-{token}"))),
            Some(now + Duration::from_secs(1_800)),
            now,
        );
        c.id = ConnectionId::new(format!("hc_{}_{:03}", self.case, self.inserted.len()));
        c
    }

    /// The next version a writer would propose for the `nth` connection.
    fn swap(&mut self, nth: u8, delta: u8, status: u8) -> Connection {
        let id = self.nth(nth);
        let base = match self.known.get(&id) {
            Some(c) => c.clone(),
            None => {
                let mut c = self.new_connection(0, 0);
                c.id = id;
                c.version = 1;
                c
            }
        };
        let mut next = base.next_version(self.now());
        next.version = base.version + u64::from(delta);
        next.access_token = AccessToken::new(format!("access-{}", self.mint()));
        next.status = STATUSES[usize::from(status) % STATUSES.len()];
        next
    }

    fn pending(&self, state: u8, tenant: u8) -> PendingAuthorization {
        let verifier = PkceVerifier::new("a-verifier-that-is-long-enough-for-rfc-7636-0123456789".to_owned());
        let state = format!("state-{}-{state}", self.case);
        PendingAuthorization::new(
            &state,
            format!("tenant-{tenant}"),
            verifier,
            self.now(),
            self.now() + Duration::from_secs(600),
        )
    }

    fn state_hash(&self, state: u8) -> String {
        PendingAuthorization::hash_state(&format!("state-{}-{state}", self.case))
    }

    fn lease_key(&self, key: u8) -> String {
        format!("refresh:{}:{key}", self.case)
    }

    fn filter(&self, tenant: Option<u8>, portal: Option<u8>, status: Option<u8>) -> ConnectionFilter {
        let mut f = ConnectionFilter::all();
        if let Some(t) = tenant {
            f = f.tenant(format!("tenant-{t}"));
        }
        if let Some(p) = portal {
            f = f.portal(1_000 + u64::from(p));
        }
        if let Some(s) = status {
            f = f.status(STATUSES[usize::from(s)]);
        }
        f
    }

    fn rules(shared: bool, max: Option<u8>) -> InsertRules {
        let mut rules = InsertRules::default();
        rules.allow_shared_portals = shared;
        rules.max_portals = max.map(usize::from);
        rules
    }
}

// ---- the model ----

#[derive(Default)]
struct Model {
    connections: BTreeMap<ConnectionId, Connection>,
    pending: HashMap<String, (String, String)>,
    leases: HashMap<String, (String, SystemTime)>,
}

impl Model {
    fn apply(&mut self, op: &Op, s: &mut Script) -> Answer {
        match *op {
            Op::Insert { tenant, portal, shared, max } => {
                let c = s.new_connection(tenant, portal);
                let answer = if let Some(same) =
                    self.connections.values().find(|x| x.tenant == c.tenant && x.portal_id == c.portal_id)
                {
                    Inserted::Existing(Box::new(same.clone()))
                } else if !shared && self.connections.values().any(|x| x.portal_id == c.portal_id) {
                    let holders =
                        self.connections.values().filter(|x| x.portal_id == c.portal_id).map(|x| x.tenant.clone());
                    return Answer::PortalTakenByOneOf(holders.collect());
                } else {
                    let held = self.connections.values().filter(|x| x.tenant == c.tenant).count();
                    if max.is_some_and(|m| held >= usize::from(m)) {
                        Inserted::LimitReached { held }
                    } else {
                        let mut stored = c.clone();
                        stored.version = 1;
                        self.connections.insert(stored.id.clone(), stored.clone());
                        s.known.insert(stored.id.clone(), stored);
                        s.inserted.push(c.id.clone());
                        Inserted::Created
                    }
                };
                Answer::Inserted(answer)
            }
            Op::Swap { nth, delta, status } => {
                let next = s.swap(nth, delta, status);
                let won = match self.connections.get_mut(&next.id) {
                    Some(current) if current.version + 1 == next.version => {
                        *current = next.clone();
                        s.known.insert(next.id.clone(), next);
                        true
                    }
                    _ => false,
                };
                Answer::Swapped(won)
            }
            Op::Delete { nth } => Answer::Deleted(self.connections.remove(&s.nth(nth)).is_some()),
            Op::Get { nth } => Answer::Got(self.connections.get(&s.nth(nth)).cloned()),
            Op::List { tenant, portal, status } => {
                let f = s.filter(tenant, portal, status);
                Answer::Listed(self.connections.values().filter(|c| f.matches(c)).cloned().collect())
            }
            Op::PutPending { state, tenant } => {
                let p = s.pending(state, tenant);
                self.pending.insert(p.state_hash.clone(), (p.state_hash.clone(), p.tenant.clone()));
                Answer::Put
            }
            Op::TakePending { state } => Answer::Taken(self.pending.remove(&s.state_hash(state))),
            Op::Lease { key, owner, ttl_s } => {
                let ttl = Duration::from_secs(u64::from(ttl_s));
                Answer::Leased(self.lease(&s.lease_key(key), &format!("owner-{owner}"), ttl, s.now()))
            }
            Op::LeaseAhead { key, owner, ahead_s } => {
                let now = s.now() + Duration::from_secs(u64::from(ahead_s));
                Answer::Leased(self.lease(&s.lease_key(key), &format!("owner-{owner}"), Duration::from_secs(30), now))
            }
            Op::Release { key, owner } => {
                let key = s.lease_key(key);
                let owner = format!("owner-{owner}");
                match self.leases.get(&key) {
                    Some((o, until)) if *o == owner => {
                        let expired = *until <= s.now();
                        self.leases.remove(&key);
                        if expired { Answer::ReleasedExpired } else { Answer::Released(true) }
                    }
                    _ => Answer::Released(false),
                }
            }
            Op::Wait { ms } => {
                s.now_ms += u64::from(ms);
                Answer::Waited
            }
        }
    }

    fn lease(&mut self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> bool {
        let held_by_other = self
            .leases
            .get(key)
            .is_some_and(|(o, until)| o != owner && *until > now && !lease_is_absurd(*until, now, ttl));
        if !held_by_other {
            self.leases.insert(key.to_owned(), (owner.to_owned(), now + ttl));
        }
        !held_by_other
    }
}

// ---- the store under test ----

async fn apply(store: &dyn TokenStore, op: &Op, s: &mut Script) -> Answer {
    match *op {
        Op::Insert { tenant, portal, shared, max } => {
            let c = s.new_connection(tenant, portal);
            let answer = store.insert(&c, Script::rules(shared, max)).await.unwrap();
            if answer == Inserted::Created {
                let mut stored = c.clone();
                stored.version = 1;
                s.known.insert(c.id.clone(), stored);
                s.inserted.push(c.id.clone());
            }
            Answer::Inserted(answer)
        }
        Op::Swap { nth, delta, status } => {
            let next = s.swap(nth, delta, status);
            let won = store.compare_and_swap(&next).await.unwrap();
            if won {
                s.known.insert(next.id.clone(), next);
            }
            Answer::Swapped(won)
        }
        Op::Delete { nth } => Answer::Deleted(store.delete(&s.nth(nth)).await.unwrap()),
        Op::Get { nth } => Answer::Got(store.get(&s.nth(nth)).await.unwrap()),
        Op::List { tenant, portal, status } => {
            Answer::Listed(store.list(&s.filter(tenant, portal, status)).await.unwrap())
        }
        Op::PutPending { state, tenant } => {
            store.put_pending(s.pending(state, tenant)).await.unwrap();
            Answer::Put
        }
        Op::TakePending { state } => Answer::Taken(
            store.take_pending(&s.state_hash(state)).await.unwrap().map(|p| (p.state_hash.clone(), p.tenant.clone())),
        ),
        Op::Lease { key, owner, ttl_s } => {
            let ttl = Duration::from_secs(u64::from(ttl_s));
            Answer::Leased(store.try_lease(&s.lease_key(key), &format!("owner-{owner}"), ttl, s.now()).await.unwrap())
        }
        Op::LeaseAhead { key, owner, ahead_s } => {
            let now = s.now() + Duration::from_secs(u64::from(ahead_s));
            let ttl = Duration::from_secs(30);
            Answer::Leased(store.try_lease(&s.lease_key(key), &format!("owner-{owner}"), ttl, now).await.unwrap())
        }
        Op::Release { key, owner } => {
            Answer::Released(store.release_lease(&s.lease_key(key), &format!("owner-{owner}")).await.unwrap())
        }
        Op::Wait { ms } => {
            s.now_ms += u64::from(ms);
            Answer::Waited
        }
    }
}

// ---- backends ----

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Encrypted,
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "redis")]
    Redis,
}

/// A fresh, empty store for one sequence, and how to dispose of it.
struct Fresh {
    store: Arc<dyn TokenStore>,
    #[allow(dead_code)]
    prefix: String,
}

impl Backend {
    /// `None` when the backend's server is not configured.
    fn url(self) -> Option<String> {
        match self {
            Backend::Memory | Backend::Encrypted | Backend::Sqlite => Some(String::new()),
            #[cfg(feature = "postgres")]
            Backend::Postgres => std::env::var("HUBCONNECT_TEST_POSTGRES_URL").ok(),
            #[cfg(feature = "redis")]
            Backend::Redis => std::env::var("HUBCONNECT_TEST_REDIS_URL").ok(),
        }
    }

    async fn open(self, case: &str) -> Fresh {
        let prefix = format!("model_{case}");
        let store: Arc<dyn TokenStore> = match self {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Encrypted => {
                use hubspot_connect::store::{EncryptedStore, EncryptionKey, KeyRing};
                let keys = KeyRing::new(vec![EncryptionKey::generate("k1").unwrap()]).unwrap();
                Arc::new(EncryptedStore::new(MemoryStore::new(), keys))
            }
            Backend::Sqlite => Arc::new(hubspot_connect::store::SqliteStore::open("sqlite::memory:").await.unwrap()),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Arc::new(
                hubspot_connect::store::PostgresStore::connect_with_prefix(&self.url().unwrap(), &prefix)
                    .await
                    .unwrap(),
            ),
            #[cfg(feature = "redis")]
            Backend::Redis => Arc::new(
                hubspot_connect::store::RedisStore::connect_with_prefix(&self.url().unwrap(), &prefix).await.unwrap(),
            ),
        };
        Fresh { store, prefix }
    }

    async fn dispose(self, fresh: Fresh) {
        match self {
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let pool = hubspot_connect::sqlx::PgPool::connect(&self.url().unwrap()).await.unwrap();
                for table in ["connections", "pending", "leases", "events", "schema"] {
                    let sql = format!(r#"DROP TABLE IF EXISTS "{}_{table}""#, fresh.prefix);
                    hubspot_connect::sqlx::query(&sql).execute(&pool).await.unwrap();
                }
            }
            #[cfg(feature = "redis")]
            Backend::Redis => {
                let store =
                    hubspot_connect::store::RedisStore::connect_with_prefix(&self.url().unwrap(), &fresh.prefix)
                        .await
                        .unwrap();
                store.clear().await.unwrap();
            }
            _ => drop(fresh),
        }
    }
}

fn cases() -> u32 {
    std::env::var("HUBCONNECT_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn sequences_agree_with_the_model(backend: Backend) {
    if backend.url().is_none() {
        eprintln!("SKIPPED: {backend:?} is not configured; its model-based test not run");
        return;
    }
    let rt = runtime();
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let counter = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&proptest::collection::vec(op(), 1..60), |ops| {
            let case = format!(
                "{}{}",
                &ConnectionId::random().as_str()[3..11],
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let (want, got) = rt.block_on(async {
                let mut model = Model::default();
                let mut script = Script::new(&case);
                let want: Vec<Answer> = ops.iter().map(|op| model.apply(op, &mut script)).collect();
                let fresh = backend.open(&case).await;
                let mut script = Script::new(&case);
                let mut got = Vec::with_capacity(ops.len());
                for op in &ops {
                    got.push(apply(fresh.store.as_ref(), op, &mut script).await);
                }
                backend.dispose(fresh).await;
                (want, got)
            });
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                if !agrees(w, g) {
                    return Err(TestCaseError::fail(format!(
                        "{backend:?}: op {i} {:?}: model {w:?}, store {g:?}",
                        ops[i]
                    )));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn memory_agrees_with_the_model() {
    sequences_agree_with_the_model(Backend::Memory);
}

#[test]
fn encrypted_memory_agrees_with_the_model() {
    sequences_agree_with_the_model(Backend::Encrypted);
}

#[test]
fn sqlite_agrees_with_the_model() {
    sequences_agree_with_the_model(Backend::Sqlite);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_agrees_with_the_model() {
    sequences_agree_with_the_model(Backend::Postgres);
}

#[cfg(feature = "redis")]
#[test]
fn redis_agrees_with_the_model() {
    sequences_agree_with_the_model(Backend::Redis);
}

// ---- concurrent variants ----

/// Concurrent lease attempts on one key at one instant, from owners drawn from a small set, over a prior lease:
/// the winners are exactly the attempts of one owner (the prior holder's, if its lease holds), as in some serial
/// order of the same attempts.
fn concurrent_leases_are_serializable(backend: Backend) {
    if backend.url().is_none() {
        eprintln!("SKIPPED: {backend:?} is not configured; its concurrent lease test not run");
        return;
    }
    let rt = runtime();
    let mut runner = TestRunner::new(Config { cases: cases() / 4 + 1, failure_persistence: None, ..Config::default() });
    let attempts = proptest::collection::vec(0..4u8, 2..24);
    let prior = proptest::option::of((0..4u8, 0..60u64));
    runner
        .run(&(attempts, prior), |(owners, prior)| {
            let case = ConnectionId::random().as_str()[3..13].to_owned();
            let winners = rt.block_on(async {
                let fresh = backend.open(&case).await;
                let key = format!("refresh:{case}");
                let ttl = Duration::from_secs(30);
                if let Some((owner, age)) = prior {
                    // Taken `age` seconds before now: still held when younger than the ttl.
                    assert!(
                        fresh
                            .store
                            .try_lease(&key, &format!("o{owner}"), ttl, at(100_000 - age * 1_000))
                            .await
                            .unwrap()
                    );
                }
                let tasks: Vec<_> = owners
                    .iter()
                    .map(|o| {
                        let store = Arc::clone(&fresh.store);
                        let (key, owner) = (key.clone(), format!("o{o}"));
                        tokio::spawn(async move {
                            (owner.clone(), store.try_lease(&key, &owner, ttl, at(100_000)).await.unwrap())
                        })
                    })
                    .collect();
                let mut winners = Vec::new();
                for t in tasks {
                    let (owner, won) = t.await.unwrap();
                    if won {
                        winners.push(owner);
                    }
                }
                backend.dispose(fresh).await;
                winners
            });
            let attempts_of = |owner: &str| owners.iter().filter(|o| format!("o{o}") == owner).count();
            match prior.filter(|(_, age)| *age < 30) {
                // A held lease stays with its holder: its attempts extend it, every other one is refused.
                Some((holder, _)) => {
                    let holder = format!("o{holder}");
                    prop_assert!(winners.iter().all(|w| *w == holder), "{:?} over {}'s lease", winners, holder);
                    prop_assert_eq!(winners.len(), attempts_of(&holder));
                }
                // A free (or expired) lease: one owner takes it, and its later attempts extend it.
                None => {
                    prop_assert!(!winners.is_empty(), "someone takes a free lease");
                    prop_assert!(winners.iter().all(|w| *w == winners[0]), "one owner: {:?}", winners);
                    prop_assert_eq!(winners.len(), attempts_of(&winners[0]), "every attempt of the winner succeeds");
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Tenants inserting connections to the same portals at once, with a portal limit: for each portal one tenant wins
/// (the others are told who), a tenant never passes its limit, and the store holds what the answers say.
fn concurrent_inserts_keep_the_portal_rule(backend: Backend) {
    if backend.url().is_none() {
        eprintln!("SKIPPED: {backend:?} is not configured; its concurrent portal test not run");
        return;
    }
    let rt = runtime();
    let mut runner = TestRunner::new(Config { cases: cases() / 4 + 1, failure_persistence: None, ..Config::default() });
    let inserts = proptest::collection::vec((0..4u8, 0..3u8), 2..24);
    runner
        .run(&(inserts, 1..3u8), |(inserts, max)| {
            let case = ConnectionId::random().as_str()[3..13].to_owned();
            let (answers, stored) = rt.block_on(async {
                let fresh = backend.open(&case).await;
                let mut script = Script::new(&case);
                let tasks: Vec<_> = inserts
                    .iter()
                    .map(|&(tenant, portal)| {
                        let mut c = script.new_connection(tenant, portal);
                        script.inserted.push(c.id.clone());
                        c.id = ConnectionId::new(format!("{}_{}", c.id.as_str(), script.inserted.len()));
                        let store = Arc::clone(&fresh.store);
                        tokio::spawn(async move {
                            let answer = store.insert(&c, Script::rules(false, Some(max))).await.unwrap();
                            (c.tenant.clone(), c.portal_id, answer)
                        })
                    })
                    .collect();
                let mut answers = Vec::new();
                for t in tasks {
                    answers.push(t.await.unwrap());
                }
                let stored = fresh.store.list(&ConnectionFilter::all()).await.unwrap();
                backend.dispose(fresh).await;
                (answers, stored)
            });
            let mut owner: HashMap<u64, &str> = HashMap::new();
            for c in &stored {
                prop_assert!(owner.insert(c.portal_id, &c.tenant).is_none(), "one tenant per portal: {:?}", stored);
            }
            let created = answers.iter().filter(|(_, _, a)| *a == Inserted::Created).count();
            prop_assert_eq!(created, stored.len(), "every Created is stored, nothing else");
            for (tenant, portal, answer) in &answers {
                let held = stored.iter().filter(|c| c.tenant == *tenant).count();
                prop_assert!(held <= usize::from(max), "{} holds {} > {}", tenant, held, max);
                match answer {
                    Inserted::Created | Inserted::Existing(_) => {
                        prop_assert_eq!(owner.get(portal), Some(&tenant.as_str()))
                    }
                    Inserted::PortalTaken { tenant: holder } => {
                        prop_assert_eq!(owner.get(portal), Some(&holder.as_str()));
                        prop_assert_ne!(holder, tenant);
                    }
                    Inserted::LimitReached { held } => prop_assert!(*held >= usize::from(max)),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            Ok(())
        })
        .unwrap();
}

macro_rules! concurrent {
    ($($name:ident: $backend:expr $(, cfg($feature:literal))?;)*) => {
        $(
            $(#[cfg(feature = $feature)])?
            #[test]
            fn $name() {
                concurrent_leases_are_serializable($backend);
                concurrent_inserts_keep_the_portal_rule($backend);
            }
        )*
    };
}

concurrent! {
    memory_concurrent: Backend::Memory;
    sqlite_concurrent: Backend::Sqlite;
    postgres_concurrent: Backend::Postgres, cfg("postgres");
    redis_concurrent: Backend::Redis, cfg("redis");
}
