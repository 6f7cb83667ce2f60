//! `access_token` costs, each against its floor in the same run:
//! - a cached token against reading a token from an `Arc` (`cached_token/access_token_cached` vs
//!   `cached_token/arc_read_baseline`);
//! - with 100,000 connections cached, against a plain `RwLock<HashMap<ConnectionId, AccessToken>>` lookup and clone
//!   (`cached_token/access_token_100k` vs `cached_token/hashmap_100k_baseline`);
//! - a herd of 1,000 callers on an expiring token against the ideal single flight, the same 1,000 spawned tasks
//!   awaiting one shared future that does the same refresh (`refresh/herd_of_1000` vs `refresh/ideal_single_flight`),
//!   and against one lone caller (`refresh/lone_caller`), against the fake HubSpot on loopback.
//!
//! ```sh
//! cargo bench --bench access_token
//! ```
// A benchmark measures wall time, so it reads the real clock (the crate itself never does).
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hubspot_connect::store::{ConnectionStore, InsertRules, MemoryStore};
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{
    AccessToken, BeginOptions, Callback, Clock, Connection, ConnectionId, Connections, ManualClock, RefreshToken,
    Scopes,
};

struct Bench {
    manager: Connections,
    clock: ManualClock,
    id: ConnectionId,
    _fake: FakeHubSpot,
}

async fn setup() -> Bench {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
    let manager = Connections::builder(connector, MemoryStore::new())
        .clock(Arc::new(clock.clone()))
        .refresh_margin(Duration::from_secs(300), Duration::ZERO)
        .build();
    let begun = manager.begin("bench", &Scopes::new(), BeginOptions::default()).await.unwrap();
    let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let done = manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    Bench { manager, clock, id: done.connection.id, _fake: fake }
}

/// A manager on the system clock (what production runs): the cache re-checks the store every 5 s of the run.
async fn setup_system_clock() -> (Connections, ConnectionId, FakeHubSpot) {
    let fake = FakeHubSpot::start().await;
    let manager = Connections::builder(fake.connector_builder().build().unwrap(), MemoryStore::new()).build();
    let begun = manager.begin("bench", &Scopes::new(), BeginOptions::default()).await.unwrap();
    let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let done = manager.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap();
    (manager, done.connection.id, fake)
}

fn cached(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let b = rt.block_on(setup());
    rt.block_on(b.manager.access_token(&b.id)).unwrap();
    let (system, system_id, _fake) = rt.block_on(setup_system_clock());
    let arc = Arc::new(AccessToken::new("CN2zlYnm-a-typical-access-token-of-about-this-length"));
    let mut group = c.benchmark_group("cached_token");
    group.bench_function("arc_read_baseline", |bench| bench.iter(|| black_box(AccessToken::clone(&arc))));
    group.bench_function("access_token_cached", |bench| {
        bench.iter(|| {
            let f = b.manager.access_token(black_box(&b.id));
            black_box(futures_lite_block_on(f).unwrap())
        })
    });
    // Every 5 s one call re-checks the store: awaited on the runtime, so this one uses `block_on`.
    group.bench_function("access_token_cached_system_clock", |bench| {
        bench.iter(|| black_box(rt.block_on(system.access_token(black_box(&system_id))).unwrap()))
    });
    group.bench_function("block_on_baseline", |bench| {
        bench.iter(|| black_box(rt.block_on(async { AccessToken::clone(&arc) })))
    });

    // 100,000 connections cached; the same ids looked up round-robin in both.
    const MANY: usize = 100_000;
    let now = b.clock.now();
    let mut ids = Vec::with_capacity(MANY);
    let mut plain = std::collections::HashMap::with_capacity(MANY);
    rt.block_on(async {
        for n in 0..MANY {
            let c = Connection::new(
                format!("tenant-{n}"),
                10_000_000 + n as u64,
                AccessToken::new(format!("CN2zlYnm-token-{n:08}-a-typical-access-token-of-about-this-length")),
                Some(RefreshToken::new("r")),
                Some(now + Duration::from_secs(1_800)),
                now,
            );
            b.manager.store().insert(&c, InsertRules::default()).await.unwrap();
            b.manager.access_token(&c.id).await.unwrap();
            plain.insert(c.id.clone(), c.access_token.clone());
            ids.push(c.id);
        }
    });
    let plain = std::sync::RwLock::new(plain);
    let mut next = 0usize;
    group.bench_function("hashmap_100k_baseline", |bench| {
        bench.iter(|| {
            next = (next + 7_919) % MANY;
            black_box(plain.read().unwrap().get(black_box(&ids[next])).cloned().unwrap())
        })
    });
    group.bench_function("access_token_100k", |bench| {
        bench.iter(|| {
            next = (next + 7_919) % MANY;
            black_box(futures_lite_block_on(b.manager.access_token(black_box(&ids[next]))).unwrap())
        })
    });
    group.finish();
}

/// Polls a future that completes without waiting (the cached path never awaits I/O).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn herd(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let b = rt.block_on(setup());
    let mut group = c.benchmark_group("refresh");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function("lone_caller", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                b.clock.advance(Duration::from_secs(1700));
                let start = Instant::now();
                rt.block_on(b.manager.access_token(&b.id)).unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("ideal_single_flight", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                b.clock.advance(Duration::from_secs(1700));
                let start = Instant::now();
                rt.block_on(async {
                    let once = Arc::new(tokio::sync::OnceCell::new());
                    let mut tasks = Vec::with_capacity(1000);
                    for _ in 0..1000 {
                        let (m, id, once) = (b.manager.clone(), b.id.clone(), Arc::clone(&once));
                        tasks.push(tokio::spawn(async move {
                            once.get_or_init(|| async { m.force_refresh(&id).await.unwrap().access_token })
                                .await
                                .clone()
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("herd_of_1000", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                b.clock.advance(Duration::from_secs(1700));
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = Vec::with_capacity(1000);
                    for _ in 0..1000 {
                        let m = b.manager.clone();
                        let id = b.id.clone();
                        tasks.push(tokio::spawn(async move { m.access_token(&id).await }));
                    }
                    for t in tasks {
                        t.await.unwrap().unwrap();
                    }
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, cached, herd);
criterion_main!(benches);
