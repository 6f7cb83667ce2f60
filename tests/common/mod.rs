//! What the multi-process tests share: a store opened by URL, and both sides of starting a worker (a copy of the
//! test binary running one ignored test, told by environment variables which store, fake and connection to use).
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;
use std::sync::Arc;

use hubspot_connect::store::TokenStore;
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{ConnectionId, HubSpotConnector};

/// Opens the store at `url` (`sqlite:…`, `postgres…`, `redis…`) under `prefix`.
pub(crate) async fn open_store(url: &str, prefix: &str) -> Arc<dyn TokenStore> {
    if url.starts_with("sqlite:") {
        return Arc::new(hubspot_connect::store::SqliteStore::open_with_prefix(url, prefix).await.unwrap());
    }
    #[cfg(feature = "postgres")]
    if url.starts_with("postgres") {
        return Arc::new(hubspot_connect::store::PostgresStore::connect_with_prefix(url, prefix).await.unwrap());
    }
    #[cfg(feature = "redis")]
    if url.starts_with("redis") {
        return Arc::new(hubspot_connect::store::RedisStore::connect_with_prefix(url, prefix).await.unwrap());
    }
    panic!("no store for {url}");
}

/// The command that runs the ignored test `name` of this binary as a worker on `store_url`/`prefix`, against
/// `fake`, for connection `id`.
pub(crate) fn worker_command(
    name: &str,
    store_url: &str,
    prefix: &str,
    fake: &FakeHubSpot,
    id: &ConnectionId,
) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--ignored", "--exact", name, "--nocapture", "--test-threads", "1"])
        .env("HC_WORKER_STORE", store_url)
        .env("HC_WORKER_PREFIX", prefix)
        .env("HC_WORKER_API", fake.uri())
        .env("HC_WORKER_CONNECTION", id.as_str())
        .env("HC_WORKER_CLIENT_ID", fake.client_id())
        .env("HC_WORKER_CLIENT_SECRET", fake.client_secret());
    command
}

/// What a worker was told: its store, a connector to the fake, the connection. `None` when this process is not a
/// worker (the ignored test was run by hand).
pub(crate) async fn worker_from_env(
    tune: impl FnOnce(
        hubspot_connect::hubspot::HubSpotConnectorBuilder,
    ) -> hubspot_connect::hubspot::HubSpotConnectorBuilder,
) -> Option<(Arc<dyn TokenStore>, HubSpotConnector, ConnectionId)> {
    let store_url = std::env::var("HC_WORKER_STORE").ok()?;
    let var = |name: &str| std::env::var(name).unwrap();
    let api = var("HC_WORKER_API");
    let builder = HubSpotConnector::builder(
        var("HC_WORKER_CLIENT_ID"),
        hubspot_connect::ClientSecret::new(var("HC_WORKER_CLIENT_SECRET")),
        "http://localhost:3000/oauth/callback",
    )
    .auth_base(&api)
    .api_base(&api);
    let connector = tune(builder).build().unwrap();
    let store = open_store(&store_url, &var("HC_WORKER_PREFIX")).await;
    Some((store, connector, ConnectionId::new(var("HC_WORKER_CONNECTION"))))
}
