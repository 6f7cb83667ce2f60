//! Many workers, one store: processes sharing a store refresh an expiring connection exactly once, and a stale
//! writer (whose lease ran out while HubSpot was slow) loses its compare-and-swap instead of overwriting.
//!
//! The multi-process tests start copies of this test binary as workers (the ignored `worker` test, selected by
//! environment variables). SQLite always runs; PostgreSQL and Redis run when their features are built and
//! `HUBCONNECT_TEST_POSTGRES_URL` / `HUBCONNECT_TEST_REDIS_URL` are set, and say loudly when they are skipped.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::{ConnectionStore, InsertRules, MemoryStore};
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot, Rotation};
use hubspot_connect::{
    AccessToken, Clock, Connection, ConnectionId, Connections, ManualClock, RefreshToken, SystemClock,
    connections::Policy,
};

const PROCESSES: usize = 8;
const TASKS: usize = 100;

/// A worker process: `TASKS` concurrent `access_token` calls; prints each token's hash, one per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the multi-process tests as a child process"]
async fn worker() {
    let Some((store, connector, id)) = common::worker_from_env(|b| b).await else { return };
    let mut policy = Policy::default();
    policy.lease_poll = Duration::from_millis(20);
    let manager = Connections::builder(connector, store).policy(policy).build();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let m = manager.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move { m.access_token(&id).await }));
    }
    for t in tasks {
        let token = t.await.unwrap().unwrap();
        println!("TOKEN {}", hubspot_connect::store::PendingAuthorization::hash_state(token.secret()));
    }
}

/// A connection to portal 62515 whose 30-minute token was issued 29 minutes before `now`: inside the 5-minute
/// margin, so due.
fn issued_29_minutes_ago(issued: &hubspot_connect::testing::IssuedTokens, now: std::time::SystemTime) -> Connection {
    let mut c = Connection::new(
        "acme",
        62515,
        AccessToken::new(issued.access_token.clone()),
        Some(RefreshToken::new(issued.refresh_token.clone())),
        Some(now + Duration::from_secs(60)),
        now,
    );
    c.refreshed_at = now - Duration::from_secs(1_740);
    c
}

/// Seeds an expiring connection in `store_url`, runs `PROCESSES` workers against it, checks one refresh.
async fn many_processes_one_refresh(store_url: &str) {
    let fake = FakeHubSpot::start().await;
    fake.set_rotation(Rotation::Strict);
    let prefix = format!("xp_{}", &ConnectionId::random().as_str()[3..15]);
    let store = common::open_store(store_url, &prefix).await;
    let issued = fake.issue(62515, &["oauth"]);
    let now = SystemClock.now();
    let c = issued_29_minutes_ago(&issued, now);
    store.insert(&c, InsertRules::default()).await.unwrap();

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            common::worker_command("worker", store_url, &prefix, &fake, &c.id)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "worker failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        // The harness may print "test worker ... " on the same line as the first token.
        tokens.extend(stdout.lines().filter_map(|l| l.split_once("TOKEN ")).map(|(_, t)| t.trim().to_owned()));
    }
    assert_eq!(tokens.len(), PROCESSES * TASKS, "every task got a token");
    assert_eq!(fake.token_requests(), 1, "exactly one refresh reached HubSpot ({store_url})");
    assert_eq!(fake.stale_refresh_presentations(), 0);
    let stored = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    // Every task got a valid token: the new one, or, while another worker was refreshing, the old one (still valid
    // for a minute: callers holding a valid token do not wait).
    let hash = |t: &AccessToken| hubspot_connect::store::PendingAuthorization::hash_state(t.secret());
    let (new, old) = (hash(&stored.access_token), hash(&c.access_token));
    assert!(tokens.iter().all(|t| *t == new || *t == old), "every task got the new or the still-valid token");
    assert!(tokens.contains(&new), "the refreshing worker's tasks got the new token");
    store.delete(&c.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_one_sqlite_file_refresh_once() {
    let path = std::env::temp_dir().join(format!("hc-xp-{}.db", ConnectionId::random()));
    many_processes_one_refresh(&format!("sqlite://{}", path.display())).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_one_postgres_refresh_once() {
    match std::env::var("HUBCONNECT_TEST_POSTGRES_URL") {
        Ok(url) => many_processes_one_refresh(&url).await,
        Err(_) => eprintln!("SKIPPED: HUBCONNECT_TEST_POSTGRES_URL is not set; PostgreSQL cross-process test not run"),
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_on_one_redis_refresh_once() {
    match std::env::var("HUBCONNECT_TEST_REDIS_URL") {
        Ok(url) => many_processes_one_refresh(&url).await,
        Err(_) => eprintln!("SKIPPED: HUBCONNECT_TEST_REDIS_URL is not set; Redis cross-process test not run"),
    }
}

/// Two managers (two pools) over one SQLite file, a thousand callers between them: one refresh.
///
/// On the real clock: on a manual clock every lease poll's sleep moves time forward, so under a loaded machine the
/// holder's lease can run out in manual time while its refresh is still on the wire, which tests the clock, not the
/// store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_managers_over_one_sqlite_file() {
    let path = std::env::temp_dir().join(format!("hc-two-{}.db", ConnectionId::random()));
    let url = format!("sqlite://{}", path.display());
    let clock = SystemClock;
    let fake = FakeHubSpot::start().await;
    fake.set_rotation(Rotation::Strict);
    let managers: Vec<_> = futures_join(2, |_| async {
        let store = hubspot_connect::store::SqliteStore::open(&url).await.unwrap();
        let connector = fake.connector_builder().build().unwrap();
        let mut policy = Policy::default();
        policy.lease_poll = Duration::from_millis(1);
        Connections::builder(connector, store).policy(policy).build()
    })
    .await;
    let issued = fake.issue(62515, &["oauth"]);
    let c = issued_29_minutes_ago(&issued, clock.now());
    managers[0].store().insert(&c, InsertRules::default()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let m = managers[i % 2].clone();
        let id = c.id.clone();
        tasks.push(tokio::spawn(async move { m.access_token(&id).await }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    assert_eq!(fake.token_requests(), 1);
    assert_eq!(fake.stale_refresh_presentations(), 0);
    // The new token, or the old one (valid for another minute) to callers that came while the refresh was on.
    let stored = managers[0].store().get(&c.id).await.unwrap().unwrap();
    assert!(tokens.iter().all(|t| *t == stored.access_token || *t == c.access_token));
    assert!(tokens.contains(&stored.access_token));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

async fn futures_join<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(make(i).await);
    }
    out
}

/// A writer whose lease ran out while HubSpot was slow loses its compare-and-swap; the newer tokens stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_writer_loses_and_nothing_is_overwritten() {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    fake.set_rotation(Rotation::Rotate);
    let store = Arc::new(MemoryStore::new());
    let mut policy = Policy::default();
    policy.lease_ttl = Duration::from_secs(1);
    policy.refresh_jitter = Duration::ZERO;
    let make = |owner: &str| {
        let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
        Connections::builder(connector, Arc::clone(&store))
            .clock(Arc::new(clock.clone()))
            .policy(policy.clone())
            .owner(owner)
            .build()
    };
    let (slow, fast) = (make("slow-worker"), make("fast-worker"));
    let issued = fake.issue(62515, &["oauth"]);
    let c = issued_29_minutes_ago(&issued, clock.now());
    store.insert(&c, InsertRules::default()).await.unwrap();

    // The slow worker takes the lease; HubSpot takes 5 s to answer it (far longer than the fast worker needs).
    fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_secs(5)), 1);
    let slow_call = {
        let slow = slow.clone();
        let id = c.id.clone();
        tokio::spawn(async move { slow.access_token(&id).await })
    };
    for _ in 0..6_000 {
        if fake.token_requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.token_requests(), 1, "the slow worker's request is in flight");
    // Its lease runs out; the fast worker takes over and refreshes at once.
    clock.advance(Duration::from_secs(5));
    let fast_token = fast.access_token(&c.id).await.unwrap();
    assert_eq!(fake.token_requests(), 2);
    let after_fast = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(after_fast.access_token, fast_token);
    assert_eq!(after_fast.version, 2);

    // The slow answer arrives: its write loses, it re-reads, and serves what is stored.
    let slow_token = slow_call.await.unwrap().unwrap();
    let after_slow = store.get(&c.id).await.unwrap().unwrap();
    assert_eq!(after_slow, after_fast, "nothing was overwritten");
    assert_eq!(slow_token, fast_token, "the stale writer serves the stored token");
}
