//! The HubSpot OAuth protocol, step by step, against the built-in fake HubSpot: authorize, consent, exchange the
//! code, identify the installation, refresh, revoke, and what HubSpot says afterwards.
//!
//! ```sh
//! cargo run --example protocol
//! ```
//!
//! Nothing leaves this machine: the fake HubSpot listens on a loopback port. Swap `fake.connector_builder()` for
//! `HubSpotConnector::builder(client_id, client_secret, redirect_uri)` to run the same steps against HubSpot.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Duration;

use hubspot_connect::testing::{FakeHubSpot, FakePortal};
use hubspot_connect::{
    Connector, Scopes, clock::expired, connector::AuthorizeRequest, scope::ScopeSet, secret::AuthorizationCode,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fake = FakeHubSpot::start().await;
    fake.add_portal(FakePortal::new(4_815_162).name("Acme Inc"));
    let hubspot = fake.connector_builder().build()?;
    println!("fake HubSpot listening on {} ({} endpoints)", fake.uri(), hubspot.version());

    // 1. Authorize: the URL a "Connect HubSpot" button sends the user to.
    let scopes = Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read");
    let auth = hubspot.authorize_url(&AuthorizeRequest::new(&scopes).portal(4_815_162))?;
    let mut shown = auth.url.clone();
    shown.set_query(None);
    println!("1. authorize     {shown}?client_id=…&scope={}&state=…&code_challenge=…", join(&scopes.required()));

    // 2. Consent: the user picks the portal and approves; HubSpot redirects back with a code and the state.
    let callback = fake.consent(auth.url.as_str()).await?;
    let params: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    let state_ok = params.get("state").map(String::as_str) == Some(auth.state.secret());
    println!(
        "2. consent       redirected to {}{} (state matches: {state_ok})",
        callback.origin().ascii_serialization(),
        callback.path()
    );
    if !state_ok {
        return Err("the state did not come back".into());
    }

    // 3. Exchange the code (with the PKCE verifier) for tokens.
    let code = AuthorizationCode::new(params.get("code").cloned().unwrap_or_default());
    let tokens = hubspot.exchange_code(code, auth.pkce_verifier).await?;
    let left = tokens.expires_at.duration_since(hubspot.clock().now()).unwrap_or_default();
    println!(
        "3. exchange      access token {:?} expires in {}s; refresh token {:?}",
        tokens.access_token,
        left.as_secs(),
        tokens.refresh_token
    );

    // 4. Identify: which portal, which user, which scopes, which kind of account.
    let who = hubspot.identify(&tokens.access_token).await?;
    let account = who.account.as_ref().ok_or("no account info")?;
    println!(
        "4. identify      portal {} ({}) installed by {} — {} account hosted in {}",
        who.portal_id,
        account.portal_name.as_deref().unwrap_or("?"),
        who.user.as_deref().unwrap_or("?"),
        account.account_type,
        account.data_hosting_location.as_deref().unwrap_or("?"),
    );
    match scopes.check(&who.scopes) {
        Ok(()) => println!("                  granted: {}", join(&who.scopes)),
        Err(missing) => println!("                  AUTH_SCOPE_DENIED: {missing}"),
    }

    // 5. Refresh ahead of expiry.
    let margin = Duration::from_secs(300);
    println!("5. refresh       due now? {}", expired(tokens.expires_at, margin, hubspot.clock().now()));
    let refresh_token = tokens.refresh_token.ok_or("HubSpot issued no refresh token")?;
    let fresh = hubspot.refresh(&refresh_token).await?;
    println!(
        "                  new access token {:?}, rotated refresh token: {}",
        fresh.access_token, fresh.refresh_token_rotated
    );

    // 6. Revoke on disconnect; HubSpot then refuses the refresh token.
    let revoked = hubspot.revoke(&refresh_token).await?;
    println!("6. revoke        revoked: {revoked}");
    match hubspot.refresh(&refresh_token).await {
        Ok(_) => println!("                  unexpected: the revoked token still refreshes"),
        Err(err) => println!("                  refresh afterwards: error[{}]: {err}", err.code()),
    }
    println!("HubSpot saw {} token requests", fake.token_requests());
    Ok(())
}

fn join(scopes: &[hubspot_connect::Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
