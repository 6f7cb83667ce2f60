//! Store costs against the raw driver doing the same work, in the same run: reading one connection (`get`) against
//! the one query or command it stands for, and a compare-and-swap against the bare `UPDATE … WHERE version` (or one
//! bare `HSET` of the version and the record), and a compare-and-swap with a refresh's event appended against one
//! without. SQLite always runs (a temp file); PostgreSQL and Redis run when their features are built and
//! `HUBCONNECT_TEST_POSTGRES_URL` / `HUBCONNECT_TEST_REDIS_URL` are set.
//!
//! ```sh
//! HUBCONNECT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! HUBCONNECT_TEST_REDIS_URL=redis://127.0.0.1:6379 \
//! cargo bench --all-features --bench store
//! ```
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use hubspot_connect::store::{ConnectionStore, InsertRules};
use hubspot_connect::{AccessToken, Connection, ConnectionId, Event, EventKind, RefreshToken, Scope};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A connection with a typical record, to its own portal.
fn connection(id: &str, portal: u64) -> Connection {
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let mut c = Connection::new(
        "bench-tenant",
        portal,
        AccessToken::new("CN2zlYnm-a-typical-access-token-of-about-this-length-0123456789"),
        Some(RefreshToken::new("na1-a-typical-refresh-token-0123-4567-89ab")),
        Some(now + Duration::from_secs(1_800)),
        now,
    );
    c.id = ConnectionId::new(id);
    c.scopes = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write"].map(Scope::new).to_vec();
    c.installed_by = Some("ops@acme.example".into());
    c.hub_domain = Some("acme.hubspot.com".into());
    c
}

/// Benchmarks `get` and compare-and-swap of `store` against `raw_get` and `raw_update` (which receives the next
/// version number).
fn compare<S, G, GF, U, UF>(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    store: S,
    raw_get: G,
    raw_update: U,
) where
    S: ConnectionStore,
    G: Fn() -> GF,
    GF: std::future::Future<Output = ()>,
    U: Fn(u64) -> UF,
    UF: std::future::Future<Output = ()>,
{
    let base = connection("hc_bench", 1);
    assert_eq!(
        rt.block_on(store.insert(&base, InsertRules::default())).unwrap(),
        hubspot_connect::store::Inserted::Created
    );
    let mut group = c.benchmark_group(format!("store_{name}"));
    group.bench_function("get_raw_driver", |b| b.to_async(rt).iter(|| async { raw_get().await }));
    group.bench_function("get_store", |b| {
        b.to_async(rt).iter(|| async { black_box(store.get(black_box(&base.id)).await.unwrap().unwrap()) })
    });
    // The raw update and the store's compare-and-swap take turns on separate rows' versions.
    let raw_version = AtomicU64::new(1);
    group.bench_function("update_raw_driver", |b| {
        b.to_async(rt).iter(|| async { raw_update(raw_version.fetch_add(1, Ordering::Relaxed) + 1).await })
    });
    let mut current = rt.block_on(store.get(&base.id)).unwrap().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_700);
    group.bench_function("compare_and_swap_store", |b| {
        b.iter(|| {
            let next = current.next_version(now);
            assert!(rt.block_on(store.compare_and_swap(&next)).unwrap());
            current = next;
        })
    });
    // A refresh's write as the manager makes it: the same compare-and-swap with its `refreshed` event appended in
    // the same atomic step.
    group.bench_function("compare_and_swap_with_event_store", |b| {
        b.iter(|| {
            let next = current.next_version(now);
            let events = [Event::new(EventKind::Refreshed, &next, now)];
            assert!(rt.block_on(store.compare_and_swap_with_events(&next, &events)).unwrap());
            current = next;
        })
    });
    group.finish();
}

/// [`compare`] for an sqlx-backed store: the raw driver runs the same `SELECT` and `UPDATE … WHERE version` on the
/// store's own table through the store's own pool, with the backend's placeholders.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_compare {
    ($c:expr, $name:literal, $rt:expr, $store:expr, [$p1:literal, $p2:literal, $p3:literal]) => {{
        let pool = $store.pool().clone();
        let table = format!("\"{}_connections\"", $store.prefix());
        let select = format!("SELECT * FROM {table} WHERE id = {}", $p1);
        let update = format!(
            "UPDATE {table} SET version = {}, updated_at_ms = {} WHERE id = 'hc_raw' AND version = {}",
            $p1, $p2, $p3
        );
        $rt.block_on($store.insert(&connection("hc_raw", 2), InsertRules::default())).unwrap();
        compare(
            $c,
            $name,
            $rt,
            $store.clone(),
            || async {
                black_box(sqlx::query(&select).bind("hc_bench").fetch_one(&pool).await.unwrap());
            },
            |v| {
                let (update, pool) = (&update, &pool);
                async move {
                    let r = sqlx::query(update).bind(v as i64).bind(v as i64).bind(v as i64 - 1).execute(pool).await;
                    assert_eq!(r.unwrap().rows_affected(), 1);
                }
            },
        );
    }};
}

#[cfg(feature = "sqlite")]
fn sqlite(c: &mut Criterion) {
    use hubspot_connect::store::SqliteStore;
    let rt = runtime();
    let path = std::env::temp_dir().join(format!("hubconnect-bench-{}.db", ConnectionId::random()));
    let store = rt.block_on(SqliteStore::open(&format!("sqlite://{}", path.display()))).unwrap();
    sql_compare!(c, "sqlite", &rt, store, ["?1", "?2", "?3"]);
    rt.block_on(store.close());
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_: &mut Criterion) {}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    use hubspot_connect::store::PostgresStore;
    let Ok(url) = std::env::var("HUBCONNECT_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: HUBCONNECT_TEST_POSTGRES_URL is not set; PostgreSQL store benchmark not run");
        return;
    };
    let rt = runtime();
    let prefix = format!("bench{}", std::process::id());
    let store = rt.block_on(PostgresStore::connect_with_prefix(&url, &prefix)).unwrap();
    sql_compare!(c, "postgres", &rt, store, ["$1", "$2", "$3"]);
    let pool = store.pool().clone();
    rt.block_on(async {
        for t in ["connections", "pending", "leases", "events", "schema"] {
            sqlx::query(&format!("DROP TABLE \"{prefix}_{t}\"")).execute(&pool).await.unwrap();
        }
    });
}

#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use hubspot_connect::store::RedisStore;
    use redis::AsyncCommands;
    let Ok(url) = std::env::var("HUBCONNECT_TEST_REDIS_URL") else {
        eprintln!("SKIPPED: HUBCONNECT_TEST_REDIS_URL is not set; Redis store benchmark not run");
        return;
    };
    let rt = runtime();
    let prefix = format!("bench{}", std::process::id());
    let store = rt.block_on(RedisStore::connect_with_prefix(&url, &prefix)).unwrap();
    let conn = store.connection().clone();
    let key = format!("{{{prefix}}}:c:hc_bench");
    let raw_key = format!("{{{prefix}}}:c:hc_raw");
    rt.block_on(store.insert(&connection("hc_raw", 2), InsertRules::default())).unwrap();
    let record: String = rt.block_on(conn.clone().hget(&raw_key, "d")).unwrap();
    compare(
        c,
        "redis",
        &rt,
        store.clone(),
        || {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                let got: (Option<String>, Option<String>) = conn.hmget(&key, &["v", "d"]).await.unwrap();
                black_box(got);
            }
        },
        |v| {
            let mut conn = conn.clone();
            let (key, record) = (&raw_key, &record);
            async move {
                let () =
                    conn.hset_multiple(key, &[("v", v.to_string().as_str()), ("d", record.as_str())]).await.unwrap();
            }
        },
    );
    rt.block_on(store.clear()).unwrap();
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {}

criterion_group!(benches, sqlite, postgres, redis);
criterion_main!(benches);
