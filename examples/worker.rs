//! A sync job's workers sharing one store: 8 tasks page through the contacts of two customers' portals with the API
//! client, against the built-in fake HubSpot. The access tokens have just expired, so every task gets a 401 at
//! once, yet each portal's token is refreshed once; HubSpot answers one request with a 429, which the client
//! waits out; and the client's per-portal budget keeps the job under HubSpot's rate limit (scaled down here to 20
//! requests a second so that the budget has something to do).
//!
//! ```sh
//! cargo run --example worker                                 # SQLite, in a temporary file
//! HUBCONNECT_TEST_POSTGRES_URL=postgres://user@localhost/db \
//!     cargo run --features postgres --example worker          # PostgreSQL (DATABASE_URL works too)
//! ```
//!
//! The store is PostgreSQL when the crate is built with the `postgres` feature and `HUBCONNECT_TEST_POSTGRES_URL`
//! (or a `postgres://` `DATABASE_URL`) is set, in tables prefixed `example_worker`; otherwise SQLite in a temporary
//! file, removed at the end. In production, each worker process opens the same store and builds its own
//! `Connections` and `HubSpotApi`: the single refresh holds across processes too. Nothing leaves this machine: the
//! fake HubSpot listens on a loopback port.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::{ConnectionFilter, SqliteStore};
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot, FakePortal};
use hubspot_connect::{
    BeginOptions, Callback, Clock, Connections, HubSpotApi, HubSpotClient, Scopes, SystemClock, TokenStore,
};
use serde_json::Value;

/// The scaled-down rate limit, the same at the fake HubSpot and in the client's budget.
const LIMIT: u32 = 20;
const WINDOW: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The fake HubSpot: two customers' portals with 50 contacts each.
    let fake = FakeHubSpot::start().await;
    let portals = [(4_815_162, "acme", "Acme Inc"), (2_342, "globex", "Globex")];
    for (id, _, name) in portals {
        fake.add_portal(FakePortal::new(id).name(name));
        for n in fake.objects(id, "contacts")..50 {
            let email = format!("contact{n}@{}.example", name.to_lowercase().replace(' ', "-"));
            fake.add_object(id, "contacts", &[("email", email.as_str())]);
        }
    }
    fake.set_rate_limit(Some((LIMIT, WINDOW)));

    let (store, cleanup) = open_store().await?;
    let connections = Connections::builder(fake.connector_builder().build()?, Arc::clone(&store)).build();
    for old in connections.list(&ConnectionFilter::all()).await? {
        connections.disconnect(&old.id).await?; // left over from an interrupted run
    }

    // Both customers connect their portal (see the quickstart example for these steps).
    let scopes = Scopes::new().require("crm.objects.contacts.read");
    let mut ids = Vec::new();
    for (portal, tenant, name) in portals {
        let begun = connections.begin(tenant, &scopes, BeginOptions::default().portal(portal)).await?;
        let callback = fake.consent(begun.authorize_url.as_str()).await?;
        let done = connections.complete_for(tenant, &Callback::from_url(callback.as_str())?).await?;
        println!("{name} (portal {portal}) connected as {}", done.connection.id);
        ids.push(done.connection.id);
    }

    // The job: one `HubSpotApi` per process (it holds the per-portal budgets), a client per task.
    let api = HubSpotApi::builder(connections.clone()).api_base(fake.uri()).rate_limit(LIMIT, WINDOW).build()?;
    fake.expire_access_tokens(); // half an hour later: the stored access tokens no longer work
    fake.fail(Endpoint::CrmList, Failure::TooManyRequests { retry_after: Some(1) }, 1);
    fake.reset_counts();
    println!("\nthe access tokens have expired; 8 tasks start paging contacts, 4 per portal, 5 contacts a page");

    let clock = SystemClock; // the injected clock (the crate bans `Instant::now` outside it)
    let started = clock.monotonic();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let client = api.client(&ids[task % 2]).await?;
        tasks.spawn(async move { (task, sync_contacts(&client).await) });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined?);
    }
    results.sort_by_key(|(task, _)| *task);
    for (task, result) in results {
        let (portal, contacts) = result?;
        println!("task {task}: portal {portal:>7}, {contacts} contacts read");
    }
    println!("the job took {:.1} s", (clock.monotonic() - started).as_secs_f64());

    // What HubSpot saw.
    let refreshes = fake.grant_requests("refresh_token");
    println!("\nwhat HubSpot saw:");
    println!(
        "  token requests: {} ({refreshes} refreshes: one per portal, however many tasks got a 401)",
        fake.token_requests()
    );
    let pages = 2 * 4 * 10;
    let refused = fake.requests(Endpoint::CrmList).saturating_sub(pages + 1);
    println!(
        "  contact requests: {} = {pages} pages + {refused} refused with the expired token (before the refresh) + 1 \
         answered 429 Retry-After: 1 (that task waited a second and asked again)",
        fake.requests(Endpoint::CrmList)
    );
    for (portal, _, name) in portals {
        println!(
            "  {name}: at most {} requests in any second (HubSpot's limit here: {LIMIT})",
            fake.max_requests_in_window(portal, WINDOW)
        );
    }
    println!("  requests HubSpot refused for the rate limit: {}", fake.rate_limited_requests());
    assert_eq!(refreshes, 2, "one refresh per portal");
    assert_eq!(fake.rate_limited_requests(), 0, "the budget held HubSpot's limit");

    for id in &ids {
        connections.disconnect(id).await?;
    }
    drop((api, connections, store));
    cleanup();
    Ok(())
}

/// One task of the sync job: every page of the portal's contacts. Returns the portal and how many contacts it read.
async fn sync_contacts(client: &HubSpotClient) -> hubspot_connect::Result<(u64, usize)> {
    let mut after: Option<String> = None;
    let mut read = 0;
    loop {
        let mut path = "crm/v3/objects/contacts?limit=5&properties=email".to_owned();
        if let Some(after) = &after {
            path.push_str("&after=");
            path.push_str(after);
        }
        let page: Value = client.get_json(&path).await?;
        read += page["results"].as_array().map_or(0, Vec::len);
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok((client.portal_id(), read)),
        }
    }
}

type Cleanup = Box<dyn FnOnce()>;

/// PostgreSQL when built with `postgres` and a URL is set, else SQLite in a temporary file.
async fn open_store() -> Result<(Arc<dyn TokenStore>, Cleanup), Box<dyn std::error::Error>> {
    let url = std::env::var("HUBCONNECT_TEST_POSTGRES_URL")
        .ok()
        .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres")));
    #[cfg(feature = "postgres")]
    if let Some(url) = &url {
        let store = hubspot_connect::store::PostgresStore::connect_with_prefix(url, "example_worker").await?;
        println!("store: PostgreSQL, tables prefixed example_worker");
        return Ok((Arc::new(store), Box::new(|| ())));
    }
    if url.is_some() {
        println!("a PostgreSQL URL is set, but this build lacks the `postgres` feature: using SQLite");
    }
    let path = std::env::temp_dir().join(format!("hubspot-connect-worker-{}.db", std::process::id()));
    let store = SqliteStore::open(&path.display().to_string()).await?;
    println!("store: SQLite in {}", path.display());
    let cleanup = move || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    Ok((Arc::new(store), Box::new(cleanup)))
}
