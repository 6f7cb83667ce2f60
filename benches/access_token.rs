//! `access_token` costs: a cached token against reading a token from an `Arc` (the floor), and a herd of 1,000
//! callers on an expiring token against one lone caller doing the same refresh (both against the fake HubSpot on
//! loopback, in the same run).
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
use hubspot_connect::store::MemoryStore;
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{AccessToken, BeginOptions, Callback, ConnectionId, Connections, ManualClock, Scopes};

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
