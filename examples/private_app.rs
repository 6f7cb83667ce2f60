//! Connecting a private app: a customer creates a private app in their HubSpot portal and pastes its access token
//! into the vendor's settings page. `Connections::connect_private_app` identifies the portal through account info and
//! stores the token as a connection like any other; the API client then calls HubSpot with it. A private app's
//! token does not expire and is never refreshed; when the customer deletes the app, calls fail with
//! `RECONNECT_REQUIRED`.
//!
//! ```sh
//! cargo run --example private_app
//! ```
//!
//! The fake HubSpot stands in for the portal: `fake.issue` mints the token the customer would copy from HubSpot's
//! "Private apps" page. Nothing leaves this machine: the fake HubSpot listens on a loopback port.
#![allow(clippy::print_stdout)]

use hubspot_connect::store::MemoryStore;
use hubspot_connect::testing::{FakeHubSpot, FakePortal};
use hubspot_connect::{AccessToken, ConnectionStatus, Connections, ErrorCode, HubSpotApi};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeHubSpot::start().await;
    fake.add_portal(FakePortal::new(4_815_162).name("Acme Inc"));
    let connections = Connections::builder(fake.connector_builder().build()?, MemoryStore::new()).build();

    // 1. The customer creates a private app with the contacts scope and pastes its token into the vendor's form.
    let pasted = fake.issue(4_815_162, &["oauth", "crm.objects.contacts.read"]).access_token;
    let token = AccessToken::new(pasted);
    println!("1. pasted        {token:?}");

    // 2. The vendor connects it: account info says which portal the token belongs to.
    let c = connections.connect_private_app("acme", token).await?;
    println!(
        "2. connected     {} for tenant {}: portal {}, kind {:?}, expires {}",
        c.id,
        c.tenant,
        c.portal_id,
        c.kind,
        if c.expires_at.is_none() { "never" } else { "some day" }
    );

    // 3. The sync job calls HubSpot with it, exactly as with an OAuth connection.
    let api = HubSpotApi::builder(connections.clone()).api_base(fake.uri()).build()?;
    let hubspot = api.client(&c.id).await?;
    let contacts: Value = hubspot.get_json("crm/v3/objects/contacts?limit=10&properties=email").await?;
    let emails: Vec<&str> = contacts["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["properties"]["email"].as_str())
        .collect();
    println!("3. contacts      {}", emails.join(", "));

    // 4. What the app may not do is refused by HubSpot with the scope it lacks.
    let err = hubspot.get_json::<Value>("crm/v3/objects/deals").await.expect_err("no deals scope");
    let missing: Vec<&str> = err.missing_scopes().iter().map(|s| s.as_str()).collect();
    println!("4. deals         error[{}]: the private app lacks {}", err.code(), missing.join(" "));
    assert_eq!(err.code(), ErrorCode::MissingScopes);

    // 5. Nothing was ever refreshed: HubSpot's token endpoint saw no request.
    println!("5. refreshes     {} requests to the token endpoint", fake.token_requests());
    assert_eq!(fake.token_requests(), 0);

    // 6. The customer deletes the private app in HubSpot: its token stops working. There is nothing to refresh; the
    //    vendor tells the customer to paste a new token.
    fake.uninstall(4_815_162);
    let err = hubspot.get_json::<Value>("crm/v3/objects/contacts").await.expect_err("the app is deleted");
    println!("6. app deleted   error[{}]: {err}", err.code());
    assert_eq!(err.code(), ErrorCode::ReconnectRequired);
    let status = connections.status(&c.id).await?.status;
    println!("                  the connection is now {} (the page shows \"Reconnect required\")", status.as_str());
    assert_eq!(status, ConnectionStatus::NeedsReauth);

    // 7. The customer creates a new private app and pastes its token: the vendor replaces the connection.
    // (`disconnect` removes it; a private app's token is revoked by deleting the app in HubSpot, not through OAuth.)
    connections.disconnect(&c.id).await?;
    let pasted = fake.issue(4_815_162, &["oauth", "crm.objects.contacts.read"]).access_token;
    let c = connections.connect_private_app("acme", AccessToken::new(pasted)).await?;
    let hubspot = api.client(&c.id).await?;
    let contacts: Value = hubspot.get_json("crm/v3/objects/contacts?limit=10").await?;
    println!(
        "7. new token     old connection removed, {} connected, {} contacts read",
        c.id,
        contacts["results"].as_array().map_or(0, Vec::len)
    );
    Ok(())
}
