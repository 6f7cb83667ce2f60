//! The axum connect and callback routes, driven with `tower::ServiceExt::oneshot` against the fake HubSpot.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{Request, StatusCode, request::Parts};
use hubspot_connect::store::{ConnectionFilter, ConnectionStore, MemoryStore};
use hubspot_connect::testing::{Decline, FakeAccountType, FakeHubSpot, FakePortal};
use hubspot_connect::web::{ConnectRoutes, Tenant};
use hubspot_connect::{Connections, HubSpotConnector, ManualClock, Scopes};
use tower::ServiceExt;

struct SignedIn(String);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = StatusCode;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let t = parts.headers.get("x-tenant").and_then(|v| v.to_str().ok()).ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(SignedIn(t.to_owned()))
    }
}

impl Tenant for SignedIn {
    fn tenant(&self) -> &str {
        &self.0
    }
}

struct App {
    fake: FakeHubSpot,
    clock: ManualClock,
    router: axum::Router,
    store: Arc<MemoryStore>,
}

async fn app() -> App {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let store = Arc::new(MemoryStore::new());
    let connector: HubSpotConnector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
    let connections = Connections::builder(connector, Arc::clone(&store))
        .clock(Arc::new(clock.clone()))
        .max_portals_per_tenant(1)
        .build();
    let router = ConnectRoutes::new(connections, Scopes::new().require("crm.objects.contacts.read"))
        .error_return("/settings/integrations")
        .unwrap()
        .router::<SignedIn>();
    App { fake, clock, router, store }
}

fn get(uri: &str, tenant: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = tenant {
        b = b.header("x-tenant", t);
    }
    b.body(Body::empty()).unwrap()
}

fn location(r: &axum::response::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn assert_private(r: &axum::response::Response) {
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
}

impl App {
    /// Connect as `tenant`, consent at the fake, and return the callback's path and query.
    async fn consent(&self, tenant: &str, query: &str) -> String {
        let r = self.router.clone().oneshot(get(&format!("/hubspot/connect{query}"), Some(tenant))).await.unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{}", location(&r));
        assert_private(&r);
        let callback = self.fake.consent(&location(&r)).await.unwrap();
        format!("{}?{}", callback.path(), callback.query().unwrap_or(""))
    }

    async fn callback(&self, path: &str, tenant: &str) -> axum::response::Response {
        let r = self.router.clone().oneshot(get(path, Some(tenant))).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_private(&r);
        r
    }

    async fn error_of(&self, path: &str, tenant: &str) -> String {
        let r = self.callback(path, tenant).await;
        let loc = location(&r);
        assert!(loc.starts_with("/settings/integrations?hubspot_error="), "{loc}");
        loc.rsplit('=').next().unwrap().to_owned()
    }
}

#[tokio::test]
async fn connect_and_a_good_callback() {
    let a = app().await;
    let r = a
        .router
        .clone()
        .oneshot(get("/hubspot/connect?return_to=/settings%3Ftab%3Dhubspot", Some("acme")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let to = location(&r);
    assert!(to.starts_with(&format!("{}/oauth/authorize?", a.fake.uri())), "{to}");
    assert!(to.contains("scope=crm.objects.contacts.read%20oauth"), "{to}");
    let callback = a.fake.consent(&to).await.unwrap();
    let r = a.callback(&format!("{}?{}", callback.path(), callback.query().unwrap()), "acme").await;
    let back = location(&r);
    assert!(back.starts_with("/settings?tab=hubspot&hubspot_connection=hc_"), "{back}");
    let stored = a.store.list(&ConnectionFilter::all()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(back.ends_with(stored[0].id.as_str()));
}

#[tokio::test]
async fn the_tenant_comes_only_from_the_extractor() {
    let a = app().await;
    let r = a.router.clone().oneshot(get("/hubspot/connect?tenant=victim", None)).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let path = a.consent("acme", "?tenant=victim").await;
    a.callback(&path, "acme").await;
    assert_eq!(a.store.list(&ConnectionFilter::all()).await.unwrap()[0].tenant, "acme");
}

#[tokio::test]
async fn each_error_code_lands_on_the_error_page() {
    let a = app().await;
    // INVALID_STATE: forged, and another tenant's state.
    assert_eq!(a.error_of("/oauth/callback?code=x&state=forged", "acme").await, "INVALID_STATE");
    let path = a.consent("victim", "").await;
    assert_eq!(a.error_of(&path, "attacker").await, "INVALID_STATE");
    assert_eq!(a.error_of("/oauth/callback?code=a&code=b&state=s", "acme").await, "INVALID_STATE");
    assert_eq!(a.error_of("/oauth/callback", "acme").await, "INVALID_STATE");
    // TOKEN_EXPIRED.
    let path = a.consent("acme", "").await;
    a.clock.advance(Duration::from_secs(601));
    assert_eq!(a.error_of(&path, "acme").await, "TOKEN_EXPIRED");
    // ACCESS_DENIED.
    a.fake.decline(Decline::WithRedirect);
    let path = a.consent("acme", "").await;
    assert_eq!(a.error_of(&path, "acme").await, "ACCESS_DENIED");
    a.fake.decline(Decline::Consent);
    // AUTH_SCOPE_DENIED.
    a.fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let path = a.consent("acme", "").await;
    assert_eq!(a.error_of(&path, "acme").await, "AUTH_SCOPE_DENIED");
    a.fake.refuse_scopes(&[]);
    // WRONG_ACCOUNT_TYPE.
    a.fake.add_portal(FakePortal::new(9).account_type(FakeAccountType::AppDeveloper));
    let path = a.consent("acme", "?portal=9").await;
    assert_eq!(a.error_of(&path, "acme").await, "WRONG_ACCOUNT_TYPE");
    // Connected, then PORTAL_ALREADY_CONNECTED for another tenant and PORTAL_LIMIT_REACHED for a second portal.
    let path = a.consent("acme", "").await;
    assert!(location(&a.callback(&path, "acme").await).contains("hubspot_connection="));
    let path = a.consent("globex", "").await;
    assert_eq!(a.error_of(&path, "globex").await, "PORTAL_ALREADY_CONNECTED");
    a.fake.add_portal(FakePortal::new(10));
    let path = a.consent("acme", "?portal=10").await;
    assert_eq!(a.error_of(&path, "acme").await, "PORTAL_LIMIT_REACHED");
    assert_eq!(a.store.list(&ConnectionFilter::all()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn hostile_return_paths_are_refused() {
    let a = app().await;
    for hostile in [
        "//evil.com",
        "/\\evil.com",
        "https://evil.com",
        "http:evil.com",
        "javascript:alert(1)",
        "%2F%2Fevil.com",
        "/%2Fevil.com",
        "/%5Cevil.com",
        "/%252F%252Fevil.com",
        "evil.com",
        "/%0D%0ALocation:%20https://evil.com",
        "/%09/evil.com",
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(hostile.as_bytes()).collect();
        let r = a
            .router
            .clone()
            .oneshot(get(&format!("/hubspot/connect?return_to={encoded}"), Some("acme")))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{hostile} was accepted: {}", location(&r));
        assert!(r.headers().get("location").is_none());
    }
    assert_eq!(a.fake.requests(hubspot_connect::testing::Endpoint::Authorize), 0);
}

/// Finding 5: whoever can write the store (a shared Redis) cannot turn the callback into an open redirect, nor
/// smuggle a `hubspot_connection` parameter of its own; and such return paths are refused at connect time too.
#[tokio::test]
async fn a_return_path_forged_in_the_store_is_not_followed() {
    use hubspot_connect::store::PendingAuthorization;
    use hubspot_connect::store::PendingStore;
    let a = app().await;
    for forged in ["//evil.example/phish", "/settings?hubspot_connection=hc_forged", "https://evil.example"] {
        let path = a.consent("acme", "?return_to=/settings").await;
        let state = url::form_urlencoded::parse(path.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let hash = PendingAuthorization::hash_state(&state);
        let mut pending = a.store.take_pending(&hash).await.unwrap().unwrap();
        pending.return_to = Some(forged.to_owned());
        a.store.put_pending(pending).await.unwrap();
        let r = a.callback(&path, "acme").await;
        let back = location(&r);
        assert!(back.starts_with("/?hubspot_connection=hc_"), "{forged}: {back}");
        assert_eq!(back.matches("hubspot_connection").count(), 1, "{back}");
    }
    for refused in ["/settings?hubspot_connection=x", "/settings?hubspot_error=ACCESS_DENIED"] {
        let query: String = url::form_urlencoded::byte_serialize(refused.as_bytes()).collect();
        let r = a.router.clone().oneshot(get(&format!("/hubspot/connect?return_to={query}"), Some("acme"))).await;
        assert_eq!(r.unwrap().status(), StatusCode::BAD_REQUEST, "{refused}");
    }
}
