//! How much memory the manager keeps per connection: 100,000 connections' tokens cached by `access_token`, then
//! left idle until the cache evicts them. Prints the process's resident memory (Linux: `/proc/self/statm`) at each
//! step and the growth per connection.
//!
//! ```sh
//! cargo run --release --example memory            # 100,000 connections
//! cargo run --release --example memory -- 10000   # another count
//! # what the crate gives back, without glibc keeping freed memory for itself:
//! GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 cargo run --release --example memory
//! ```
//!
//! glibc's allocator raises its mmap threshold each time a large block is freed, so the growing cache's tables end up
//! on the heap, and freed memory stays in the process for reuse: without the setting above, resident memory does not
//! fall after eviction even though the cache has dropped its entries and shrunk its table.
//!
//! The connections live in a `MemoryStore` filled before the first figure, so the growth measured is the manager's
//! own state (its token cache), not the store's. Nothing leaves this machine: no token is refreshed.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::{ConnectionStore, InsertRules, MemoryStore};
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{AccessToken, Clock, Connection, Connections, ManualClock, RefreshToken};

/// Resident memory in bytes, where the platform tells it.
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn kib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| format!("{:.0} KiB", b as f64 / 1024.0))
}

fn per_connection(before: Option<u64>, after: Option<u64>, n: usize) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!("{:.3} KiB", (a as f64 - b as f64) / 1024.0 / n as f64),
        _ => "n/a".to_owned(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let store = Arc::new(MemoryStore::new());
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let c = Connection::new(
            format!("tenant-{i}"),
            1_000_000 + i as u64,
            AccessToken::new(format!("CN2zlYnm-a-typical-access-token-of-about-this-length-{i:08}")),
            Some(RefreshToken::new(format!("r-{i}"))),
            Some(clock.now() + Duration::from_secs(6 * 3600)),
            clock.now(),
        );
        ids.push(c.id.clone());
        store.insert(&c, InsertRules::default()).await?;
    }
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build()?;
    let manager = Connections::builder_shared(Arc::new(connector), store).clock(Arc::new(clock.clone())).build();

    let before = resident();
    for id in &ids {
        manager.access_token(id).await?;
    }
    let cached = resident();
    println!("{n} connections in the store; resident memory {}", kib(before));
    println!("all {n} tokens cached:           {} ({} per connection)", kib(cached), per_connection(before, cached, n));

    // Nobody asks for them for a while: the next new entry makes the cache drop the idle ones.
    clock.advance(Duration::from_secs(3_600));
    let fresh = Connection::new(
        "latecomer",
        42,
        AccessToken::new("CN2zlYnm-latecomer"),
        None,
        Some(clock.now() + Duration::from_secs(6 * 3600)),
        clock.now(),
    );
    manager.store().insert(&fresh, InsertRules::default()).await?;
    manager.access_token(&fresh.id).await?;
    let evicted = resident();
    println!(
        "after an hour idle and eviction: {} ({} per connection above the start)",
        kib(evicted),
        per_connection(before, evicted, n)
    );
    Ok(())
}
