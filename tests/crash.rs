//! A worker killed with SIGKILL in the middle of a refresh, at each point of it, under HubSpot's strictest refresh
//! token rotation: afterwards the connection either works with the newest tokens, or says `needs_reauth` with
//! `RECONNECT_REQUIRED` on its next use. Never silently dead, never two refreshes racing, and while the dead
//! worker's lease runs out, other callers get the still-valid token at once.
//!
//! The worker is this test binary again (the ignored `crash_worker` test), stopped at the crate's failpoints
//! (feature `failpoints`). SQLite always; PostgreSQL and Redis when their URLs are set.
#![cfg(feature = "failpoints")]
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::io::BufRead as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::InsertRules;
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot, Rotation};
use hubspot_connect::{
    AccessToken, Clock, Connection, ConnectionId, ConnectionStatus, Connections, ErrorCode, ManualClock, RefreshToken,
    SystemClock, connections::Policy, hubspot::RetryPolicy,
};

/// The worker: refreshes one connection with `access_token` (its token is due), on the real clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the crash tests as a child process"]
async fn crash_worker() {
    let Some((store, connector, id)) = common::worker_from_env(|b| b.timeout(Duration::from_secs(120))).await else {
        return;
    };
    let manager = Connections::builder(connector, store).owner("doomed-worker").build();
    // The token is due but still valid: this caller must refresh, because it wins the lease.
    let token = manager.refresh(&id).await;
    eprintln!("WORKER DONE {:?}", token.map(|c| c.version));
}

/// Where the worker is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// Its token request reached HubSpot (which rotated the refresh token); the answer has not come back.
    RequestSent,
    /// HubSpot's answer is in; nothing is stored.
    Answered,
    /// The new connection version is built; the compare-and-swap has not run.
    BeforeStoreWrite,
    /// The new tokens are stored; the lease is not released.
    AfterStoreWrite,
}

impl Point {
    const ALL: [Point; 4] = [Point::RequestSent, Point::Answered, Point::BeforeStoreWrite, Point::AfterStoreWrite];

    fn failpoint(self) -> Option<&'static str> {
        match self {
            Point::RequestSent => None,
            Point::Answered => Some("refresh.answered"),
            Point::BeforeStoreWrite => Some("refresh.before_store_write"),
            Point::AfterStoreWrite => Some("refresh.after_store_write"),
        }
    }
}

async fn kill_mid_refresh(store_url: &str, point: Point) {
    let fake = FakeHubSpot::start().await;
    fake.set_rotation(Rotation::Strict);
    let prefix = format!("crash_{}", &ConnectionId::random().as_str()[3..15]);
    let store = common::open_store(store_url, &prefix).await;
    let issued = fake.issue(62515, &["oauth"]);
    let now = SystemClock.now();
    // A 30-minute token issued 28 minutes ago: due (5-minute margin), valid for two more minutes.
    let mut c = Connection::new(
        "acme",
        62515,
        AccessToken::new(issued.access_token.clone()),
        Some(RefreshToken::new(issued.refresh_token.clone())),
        Some(now + Duration::from_secs(120)),
        now,
    );
    c.refreshed_at = now - Duration::from_secs(1_680);
    store.insert(&c, InsertRules::default()).await.unwrap();
    if point == Point::RequestSent {
        fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_secs(60)), 1);
    }

    let mut child = common::worker_command("crash_worker", store_url, &prefix, &fake, &c.id)
        .env("HUBCONNECT_FAILPOINT", point.failpoint().unwrap_or("none"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait (bounded) for the worker to reach the point, then kill it there.
    let reached = tokio::task::spawn_blocking({
        let fake = fake.clone();
        move || {
            let mut seen = Vec::new();
            // At most two minutes: 2,400 looks, 50 ms apart.
            for _ in 0..2_400 {
                match point.failpoint() {
                    None if fake.token_requests() == 1 => return Ok(()),
                    Some(name) => match lines.recv_timeout(Duration::from_millis(50)) {
                        Ok(line) if line.contains(&format!("FAILPOINT {name}")) => return Ok(()),
                        Ok(line) => seen.push(line),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Err(seen),
                    },
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            Err(seen)
        }
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    if let Err(seen) = reached {
        panic!("the worker never reached {point:?}: {}", seen.join("\n"));
    }
    assert_eq!(fake.token_requests(), 1, "{point:?}: the worker's one refresh");

    // A surviving instance on a clock it can move.
    let clock = ManualClock::at(SystemClock.now());
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).retry(RetryPolicy::none()).build().unwrap();
    let survivor =
        Connections::builder(connector, Arc::clone(&store)).clock(Arc::new(clock.clone())).owner("survivor").build();
    let stored = survivor.status(&c.id).await.unwrap();
    let wrote = point == Point::AfterStoreWrite;
    assert_eq!(stored.version, if wrote { 2 } else { 1 }, "{point:?}");

    // While the dead worker's lease runs, callers get the still-valid token at once, without a refresh.
    let t0 = clock.now();
    let token = survivor.access_token(&c.id).await.unwrap();
    assert_eq!(token, stored.access_token, "{point:?}");
    assert_eq!(clock.now(), t0, "{point:?}: nobody waited for the dead worker");
    assert_eq!(fake.token_requests(), 1, "{point:?}: no second refresh while the lease runs");

    // The old token expires and the dead worker's lease with it.
    clock.advance(Duration::from_secs(121) + Policy::default().lease_ttl);
    let next = survivor.access_token(&c.id).await;
    if wrote {
        assert_eq!(next.unwrap(), stored.access_token, "the newest tokens work");
        assert_eq!(fake.token_requests(), 1);
        assert_eq!(survivor.status(&c.id).await.unwrap().status, ConnectionStatus::Connected);
    } else {
        // HubSpot rotated the refresh token for a worker that died before storing it: the stored one is dead.
        let err = next.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{point:?}: {err}");
        assert_eq!(fake.token_requests(), 2, "{point:?}: one refresh after the lease ran out, none racing");
        let after = survivor.status(&c.id).await.unwrap();
        assert_eq!(after.status, ConnectionStatus::NeedsReauth, "{point:?}");
        assert_eq!(after.last_error.map(|e| e.code), Some(ErrorCode::ReconnectRequired));
        // Not retried on its own, and clear on every use.
        clock.advance(Duration::from_secs(3_600));
        assert_eq!(survivor.access_token(&c.id).await.unwrap_err().code(), ErrorCode::ReconnectRequired);
        assert_eq!(fake.token_requests(), 2);
    }
}

async fn every_point(store_url: &str) {
    for point in Point::ALL {
        kill_mid_refresh(store_url, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_refresh_on_sqlite() {
    let path = std::env::temp_dir().join(format!("hc-crash-{}.db", ConnectionId::random()));
    every_point(&format!("sqlite://{}", path.display())).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_refresh_on_postgres() {
    match std::env::var("HUBCONNECT_TEST_POSTGRES_URL") {
        Ok(url) => every_point(&url).await,
        Err(_) => eprintln!("SKIPPED: HUBCONNECT_TEST_POSTGRES_URL is not set; PostgreSQL crash test not run"),
    }
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_refresh_on_redis() {
    match std::env::var("HUBCONNECT_TEST_REDIS_URL") {
        Ok(url) => every_point(&url).await,
        Err(_) => eprintln!("SKIPPED: HUBCONNECT_TEST_REDIS_URL is not set; Redis crash test not run"),
    }
}
