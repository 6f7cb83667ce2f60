//! The scenarios of a vendor's test suite against the fake HubSpot, shared by `examples/vendor_tests/main.rs` (which
//! runs them one by one) and `tests/vendor_tests.rs` (the same ones as `#[tokio::test]`s).
//!
//! `VendorApp` stands for the vendor's own integration code (its "Connect HubSpot" route, its callback route, its
//! sync job), built over `hubspot-connect`. Each scenario starts its own fake HubSpot on a manual clock, plays one
//! situation with the fake's switches, and asserts what the vendor's users would see: the connection, the error
//! code, the requests HubSpot received.

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::{ConnectionFilter, MemoryStore};
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot, FakePortal, FakeUser};
use hubspot_connect::url::Url;
use hubspot_connect::{
    BeginOptions, Callback, Connection, ConnectionId, ConnectionStatus, Connections, ErrorCode, HubSpotApi,
    ManualClock, Scopes,
};
use serde_json::Value;

/// What a scenario returns: an error fails it, like a failed assertion.
pub(crate) type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The customer's portal: the one the fake's consent picks when the authorize URL names none.
const PORTAL: u64 = 62_515;

/// The vendor's integration, as its web app and workers use it.
struct VendorApp {
    connections: Connections,
    api: HubSpotApi,
}

impl VendorApp {
    /// The scopes the vendor's app asks for.
    fn scopes() -> Scopes {
        Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read")
    }

    /// In production: `HubSpotConnector::builder(client_id, secret, redirect_uri)`, a lasting store, the system clock.
    fn new(fake: &FakeHubSpot, clock: &ManualClock) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build()?;
        let connections = Connections::builder(connector, MemoryStore::new()).clock(Arc::new(clock.clone())).build();
        let api = HubSpotApi::builder(connections.clone()).api_base(fake.uri()).build()?;
        Ok(Self { connections, api })
    }

    /// The "Connect HubSpot" button: where to send the signed-in tenant.
    async fn connect_button(&self, tenant: &str) -> hubspot_connect::Result<Url> {
        let begun = self.connections.begin(tenant, &Self::scopes(), BeginOptions::default()).await?;
        Ok(begun.authorize_url)
    }

    /// The OAuth callback route.
    async fn callback(&self, tenant: &str, url: &Url) -> hubspot_connect::Result<Connection> {
        Ok(self.connections.complete_for(tenant, &Callback::from_url(url.as_str())?).await?.connection)
    }

    /// The sync job: how many contacts the portal has (first page).
    async fn sync_contacts(&self, id: &ConnectionId) -> hubspot_connect::Result<usize> {
        let page: Value = self.api.client(id).await?.get_json("crm/v3/objects/contacts?limit=100").await?;
        Ok(page["results"].as_array().map_or(0, Vec::len))
    }
}

/// A fake HubSpot with the customer's portal and user, and the vendor's app pointed at it.
async fn world() -> (FakeHubSpot, ManualClock, VendorApp) {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    fake.add_portal(FakePortal::new(PORTAL).name("Acme Inc"));
    fake.add_portal(FakePortal::new(2_342).name("Globex")); // another customer's portal, to be sure it is not picked
    fake.set_user(FakeUser::new(7, "ops@acme.example"));
    let app = VendorApp::new(&fake, &clock).expect("the vendor's app builds against the fake");
    (fake, clock, app)
}

/// A connected portal, through the same routes a user clicks through.
async fn connected(
    fake: &FakeHubSpot,
    app: &VendorApp,
) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
    let authorize = app.connect_button("acme").await?;
    let callback = fake.consent(authorize.as_str()).await?;
    Ok(app.callback("acme", &callback).await?)
}

/// The user approves: the portal is connected with the scopes granted, and the sync job reads its contacts.
pub(crate) async fn consent_connects_the_portal() -> TestResult {
    let (fake, _clock, app) = world().await;
    let c = connected(&fake, &app).await?;
    assert_eq!(c.portal_id, PORTAL);
    assert_eq!(c.status, ConnectionStatus::Connected);
    assert_eq!(c.installed_by.as_deref(), Some("ops@acme.example"));
    let granted: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
    assert!(granted.contains(&"crm.objects.contacts.read"), "granted {granted:?}");
    assert_eq!(fake.codes_issued(), 1);
    assert_eq!(fake.grant_requests("authorization_code"), 1);
    assert_eq!(app.sync_contacts(&c.id).await?, 3, "every fake portal starts with 3 contacts");
    Ok(())
}

/// The user unticks a required scope: `AUTH_SCOPE_DENIED` naming it, and nothing is stored.
pub(crate) async fn a_refused_scope_is_auth_scope_denied() -> TestResult {
    let (fake, _clock, app) = world().await;
    fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let err = connected(&fake, &app).await.expect_err("a connection without a required scope");
    let err = err.downcast::<hubspot_connect::Error>()?;
    assert_eq!(err.code(), ErrorCode::AuthScopeDenied, "{err}");
    let missing: Vec<&str> = err.missing_scopes().iter().map(|s| s.as_str()).collect();
    assert_eq!(missing, ["crm.objects.contacts.read"]);
    assert!(app.connections.list(&ConnectionFilter::all()).await?.is_empty());
    Ok(())
}

/// The customer uninstalls the app: the next refresh is refused, the sync job gets `RECONNECT_REQUIRED`, and the
/// connection needs re-authorization.
pub(crate) async fn an_uninstall_is_reconnect_required() -> TestResult {
    let (fake, clock, app) = world().await;
    let c = connected(&fake, &app).await?;
    fake.uninstall(PORTAL);
    clock.advance(Duration::from_secs(31 * 60)); // the access token expired: time to refresh
    let err = app.sync_contacts(&c.id).await.expect_err("a sync after the uninstall");
    assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{err}");
    assert_eq!(app.connections.status(&c.id).await?.status, ConnectionStatus::NeedsReauth);
    assert_eq!(fake.grant_requests("refresh_token"), 1, "one refresh, not retried");
    Ok(())
}

/// HubSpot keeps answering 429: the client waits as told a few times, then `RATE_LIMITED` with HubSpot's delay.
pub(crate) async fn a_rate_limit_is_rate_limited() -> TestResult {
    let (fake, _clock, app) = world().await;
    let c = connected(&fake, &app).await?;
    fake.fail(Endpoint::CrmList, Failure::TooManyRequests { retry_after: Some(2) }, 10);
    let err = app.sync_contacts(&c.id).await.expect_err("a sync while rate limited");
    assert_eq!(err.code(), ErrorCode::RateLimited, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(fake.requests(Endpoint::CrmList), 4, "the first request and 3 retries");
    fake.reset_failures();
    assert_eq!(app.sync_contacts(&c.id).await?, 3, "works again once HubSpot lets it");
    Ok(())
}
