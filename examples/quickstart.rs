//! The whole story against the built-in fake HubSpot, stored in an embedded SQLite file: a customer connects a
//! portal, a worker gets tokens, an operator forces a refresh and tests the connection, a second customer refuses a
//! permission, and the first one disconnects.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Nothing leaves this machine: the fake HubSpot listens on a loopback port. In production, build the connector
//! with `HubSpotConnector::builder(client_id, client_secret, redirect_uri)` and keep everything else.
#![allow(clippy::print_stdout)]

use hubspot_connect::store::{ConnectionFilter, SqliteStore};
use hubspot_connect::testing::{FakeHubSpot, FakePortal, FakeUser};
use hubspot_connect::{BeginOptions, Callback, Connections, EventKind, Scopes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The fake HubSpot, with two customer portals.
    let fake = FakeHubSpot::start().await;
    fake.add_portal(FakePortal::new(4_815_162).name("Acme Inc"));
    fake.add_portal(FakePortal::new(2_342).name("Globex"));
    fake.set_user(FakeUser::new(7, "ops@acme.example"));

    // The manager: HubSpot's protocol plus an embedded SQLite store.
    let path = std::env::temp_dir().join(format!("hubspot-connect-quickstart-{}.db", std::process::id()));
    let store = SqliteStore::open(&path.display().to_string()).await?;
    let hubconnect = Connections::builder(fake.connector_builder().build()?, store).build();
    let mut events = hubconnect.subscribe();
    println!("fake HubSpot on {}; connections stored in {}", fake.uri(), path.display());

    // 1. begin: the "Connect HubSpot" button.
    let scopes = Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read");
    let begun = hubconnect
        .begin("acme", &scopes, BeginOptions::default().portal(4_815_162).return_to("/settings/integrations"))
        .await?;
    let mut shown = begun.authorize_url.clone();
    shown.set_query(None);
    println!("1. begin         send the user to {shown}?… (valid for 10 minutes)");

    // 2. consent: the user approves in HubSpot, which redirects to the vendor's callback route.
    let callback_url = fake.consent(begun.authorize_url.as_str()).await?;
    println!(
        "2. consent       HubSpot redirected to {}{}?code=…&state=…",
        callback_url.origin().ascii_serialization(),
        callback_url.path()
    );

    // 3. complete: state checked once, code exchanged, portal and user identified, scopes checked, stored.
    let done = hubconnect.complete(&Callback::from_url(callback_url.as_str())?).await?;
    let c = &done.connection;
    println!(
        "3. complete      {} connected portal {} (installed by {}), back to {}",
        c.id,
        c.portal_id,
        c.installed_by.as_deref().unwrap_or("?"),
        done.return_to.as_deref().unwrap_or("/")
    );
    let granted: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
    println!("                  status {}, scopes {}", c.status.as_str(), granted.join(" "));

    // 4. token: what a sync worker asks for, as often as it likes; cached until shortly before expiry.
    let token = hubconnect.access_token(&c.id).await?;
    let again = hubconnect.access_token(&c.id).await?;
    println!("4. token         {token:?} (the same on the next call: {})", token == again);

    // 5. forced refresh: what an operator does from the command line.
    let refreshed = hubconnect.force_refresh(&c.id).await?;
    println!("5. refresh       new token stored, version {} → {}", c.version, refreshed.version);

    // 6. test: "Test connection" in the vendor's UI.
    let report = hubconnect.test(&c.id).await?;
    println!("6. test          {}", serde_json::to_string(&report)?);

    // 7. a refused scope: Globex's admin unticks a required permission.
    fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let begun = hubconnect.begin("globex", &scopes, BeginOptions::default().portal(2_342)).await?;
    let callback_url = fake.consent(begun.authorize_url.as_str()).await?;
    match hubconnect.complete(&Callback::from_url(callback_url.as_str())?).await {
        Ok(_) => println!("7. refused scope unexpectedly connected"),
        Err(e) => println!("7. refused scope error[{}]: {e}", e.code()),
    }

    // 8. disconnect: revoke at HubSpot, purge locally.
    let gone = hubconnect.disconnect(&c.id).await?;
    let left = hubconnect.list(&ConnectionFilter::all()).await?.len();
    println!("8. disconnect    revoked at HubSpot: {}; connections left: {left}", gone.revoked);

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(format!("{:?}", e.kind));
    }
    println!("events: {}", seen.join(", "));
    assert!(seen.contains(&format!("{:?}", EventKind::Disconnected)));
    drop(hubconnect);
    let _ = std::fs::remove_file(&path);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
