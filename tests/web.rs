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

/// A query parameter of a path, decoded.
fn param(path: &str, key: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
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
        param(&loc, "hubspot_error").unwrap()
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

// ---- The JSON routes ----------------------------------------------------------------------------------------------

use axum::http::HeaderMap;
use hubspot_connect::testing::Endpoint;
use hubspot_connect::web::ApiError;
use hubspot_connect::{Error, ErrorCode};
use serde_json::{Value, json};

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

async fn send(router: &axum::Router, method: &str, uri: &str, tenant: Option<&str>) -> Answer {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = tenant {
        b = b.header("x-tenant", t);
    }
    answer(router.clone().oneshot(b.body(Body::empty()).unwrap()).await.unwrap()).await
}

async fn answer(r: axum::response::Response) -> Answer {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, json }
}

impl Answer {
    /// A typed JSON error with this status and code, not cached, with the code's advice.
    fn assert_error(&self, status: StatusCode, code: ErrorCode) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.headers["cache-control"], "no-store");
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.json["error"]["code"], code.as_str(), "{}", self.text);
        assert_eq!(self.json["error"]["advice"], code.advice(), "{}", self.text);
        assert!(self.json["error"]["message"].is_string(), "{}", self.text);
        assert!(self.headers.get("location").is_none());
    }
}

impl App {
    /// Connects a portal for `tenant` through the routes; the new connection's id.
    async fn connected(&self, tenant: &str, query: &str) -> String {
        let path = self.consent(tenant, query).await;
        let r = self.callback(&path, tenant).await;
        param(&location(&r), "hubspot_connection").unwrap()
    }

    /// Every request the fake has seen, by endpoint.
    fn requests(&self) -> Vec<usize> {
        Endpoint::ALL.iter().map(|e| self.fake.requests(*e)).collect()
    }

    async fn stored(&self) -> Vec<hubspot_connect::Connection> {
        self.store.list(&ConnectionFilter::all()).await.unwrap()
    }

    /// No body holds a token of any stored connection.
    async fn assert_no_token(&self, text: &str) {
        for c in self.stored().await {
            assert!(!text.contains(c.access_token.secret()), "{text}");
            if let Some(r) = &c.refresh_token {
                assert!(!text.contains(r.secret()), "{text}");
            }
        }
    }
}

/// acme and globex, each with one portal.
async fn two_tenants() -> (App, String, String) {
    let a = app().await;
    a.fake.add_portal(FakePortal::new(10));
    let acme = a.connected("acme", "").await;
    let globex = a.connected("globex", "?portal=10").await;
    (a, acme, globex)
}

#[tokio::test]
async fn list_answers_the_tenants_connections_only_and_no_token() {
    let (a, acme, _globex) = two_tenants().await;
    let r = send(&a.router, "GET", "/hubspot/connections", Some("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["content-type"], "application/json");
    let list = r.json["connections"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", r.text);
    let c = &list[0];
    assert_eq!(c["id"], acme.as_str());
    assert_eq!(c["tenant"], "acme");
    assert!(c["portal_id"].is_u64());
    assert_eq!(c["status"], "connected");
    assert_eq!(c["scopes"], json!(["crm.objects.contacts.read", "oauth"]));
    assert!(c["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["last_error"], Value::Null);
    assert!(!r.text.contains("globex"), "{}", r.text);
    a.assert_no_token(&r.text).await;
    let none = send(&a.router, "GET", "/hubspot/connections", Some("initech")).await;
    assert_eq!(none.json, json!({"connections": []}));
}

#[tokio::test]
async fn status_answers_the_tenants_connection() {
    let (a, acme, _) = two_tenants().await;
    let r = send(&a.router, "GET", &format!("/hubspot/connections/{acme}"), Some("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["id"], acme.as_str());
    assert_eq!(r.json["status"], "connected");
    a.assert_no_token(&r.text).await;
}

/// Another tenant's id, in every route: 404 `CONNECTION_NOT_FOUND`, exactly as for an id that does not exist, and
/// nothing done at HubSpot or in the store.
#[tokio::test]
async fn another_tenants_id_is_not_found_in_every_route() {
    let (a, _acme, globex) = two_tenants().await;
    let (requests, stored) = (a.requests(), a.stored().await);
    for (method, tail) in [("GET", ""), ("POST", "/test"), ("POST", "/reconnect"), ("DELETE", "")] {
        let theirs = send(&a.router, method, &format!("/hubspot/connections/{globex}{tail}"), Some("acme")).await;
        theirs.assert_error(StatusCode::NOT_FOUND, ErrorCode::ConnectionNotFound);
        let missing = send(&a.router, method, &format!("/hubspot/connections/hc_nope{tail}"), Some("acme")).await;
        missing.assert_error(StatusCode::NOT_FOUND, ErrorCode::ConnectionNotFound);
        let shape = |r: &Answer| r.text.replace(globex.as_str(), "ID").replace("hc_nope", "ID");
        assert_eq!(shape(&theirs), shape(&missing), "{method} {tail}: nothing tells the id exists");
        assert!(!theirs.text.contains("globex") && !theirs.text.contains("\"portal"), "{}", theirs.text);
    }
    // An id that cannot even be read is not found either.
    let r = send(&a.router, "GET", "/hubspot/connections/%FF", Some("acme")).await;
    r.assert_error(StatusCode::NOT_FOUND, ErrorCode::ConnectionNotFound);
    assert_eq!(a.requests(), requests, "nothing was asked of HubSpot");
    assert_eq!(a.stored().await, stored, "nothing was written");
}

#[tokio::test]
async fn test_reports_the_portal() {
    let (a, acme, _) = two_tenants().await;
    let r = send(&a.router, "POST", &format!("/hubspot/connections/{acme}/test"), Some("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.json["id"], acme.as_str());
    assert_eq!(r.json["portal_id"], a.stored().await.iter().find(|c| c.id.as_str() == acme).unwrap().portal_id);
    assert!(r.json["latency_ms"].is_u64(), "{}", r.text);
    assert!(r.json["scopes"].as_array().unwrap().contains(&json!("crm.objects.contacts.read")));
    a.assert_no_token(&r.text).await;
}

#[tokio::test]
async fn test_of_an_uninstalled_app_says_reconnect_required() {
    let (a, acme, _) = two_tenants().await;
    let portal = a.stored().await.iter().find(|c| c.id.as_str() == acme).unwrap().portal_id;
    a.fake.uninstall(portal);
    a.fake.expire_access_tokens();
    a.clock.advance(Duration::from_secs(3 * 3600));
    let r = send(&a.router, "POST", &format!("/hubspot/connections/{acme}/test"), Some("acme")).await;
    r.assert_error(StatusCode::CONFLICT, ErrorCode::ReconnectRequired);
    a.assert_no_token(&r.text).await;
    let listed = send(&a.router, "GET", "/hubspot/connections", Some("acme")).await;
    assert_eq!(listed.json["connections"][0]["status"], "needs_reauth");
    assert_eq!(listed.json["connections"][0]["last_error"]["code"], "RECONNECT_REQUIRED");
}

#[tokio::test]
async fn reconnect_answers_the_authorize_url_and_completes_on_the_same_connection() {
    let (a, acme, _) = two_tenants().await;
    let r =
        send(&a.router, "POST", &format!("/hubspot/connections/{acme}/reconnect?return_to=/settings"), Some("acme"))
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let url = r.json["authorize_url"].as_str().unwrap();
    assert!(url.starts_with(&a.fake.uri()), "{url}");
    assert!(r.json["expires_at"].as_str().unwrap().ends_with('Z'));
    let callback = a.fake.consent(url).await.unwrap();
    let back = a.callback(&format!("{}?{}", callback.path(), callback.query().unwrap()), "acme").await;
    assert_eq!(location(&back), format!("/settings?hubspot_connection={acme}"));
    assert_eq!(a.stored().await.len(), 2);
}

#[tokio::test]
async fn reconnect_refuses_a_hostile_return_path() {
    let (a, acme, _) = two_tenants().await;
    let r =
        send(&a.router, "POST", &format!("/hubspot/connections/{acme}/reconnect?return_to=//evil.com"), Some("acme"))
            .await;
    r.assert_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidConfig);
}

#[tokio::test]
async fn remove_revokes_and_deletes() {
    let (a, acme, globex) = two_tenants().await;
    let r = send(&a.router, "DELETE", &format!("/hubspot/connections/{acme}"), Some("acme")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, json!({"id": acme, "revoked": true}));
    assert_eq!(a.fake.requests(Endpoint::Revoke202603), 1);
    let left = a.stored().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id.as_str(), globex);
    let again = send(&a.router, "DELETE", &format!("/hubspot/connections/{acme}"), Some("acme")).await;
    again.assert_error(StatusCode::NOT_FOUND, ErrorCode::ConnectionNotFound);
}

/// Without a session, every route answers the extractor's own rejection, and nothing is done.
#[tokio::test]
async fn without_a_session_nothing_is_done() {
    let (a, acme, _) = two_tenants().await;
    let (requests, stored) = (a.requests(), a.stored().await);
    for (method, path) in [
        ("GET", "/hubspot/connect".to_owned()),
        ("GET", "/oauth/callback?code=x&state=y".to_owned()),
        ("GET", "/hubspot/connections".to_owned()),
        ("GET", format!("/hubspot/connections/{acme}")),
        ("POST", format!("/hubspot/connections/{acme}/test")),
        ("POST", format!("/hubspot/connections/{acme}/reconnect")),
        ("DELETE", format!("/hubspot/connections/{acme}")),
    ] {
        let r = send(&a.router, method, &path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(!r.text.contains(&acme), "{method} {path}: {}", r.text);
    }
    assert_eq!(a.requests(), requests);
    assert_eq!(a.stored().await, stored);
}

#[tokio::test]
async fn a_portal_id_that_is_not_valid_is_a_typed_error() {
    let a = app().await;
    for bad in ["abc", "-1", "0", "1.5", "99999999999999999999999"] {
        let r = send(&a.router, "GET", &format!("/hubspot/connect?portal={bad}"), Some("acme")).await;
        r.assert_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidConfig);
    }
    let r = send(&a.router, "GET", "/hubspot/connect?return_to=//evil.com", Some("acme")).await;
    r.assert_error(StatusCode::BAD_REQUEST, ErrorCode::InvalidConfig);
    assert_eq!(a.fake.requests(Endpoint::Authorize), 0);
}

#[tokio::test]
async fn the_scope_denied_redirect_names_the_missing_scopes() {
    let a = app().await;
    a.fake.refuse_scopes(&["crm.objects.contacts.read"]);
    let path = a.consent("acme", "").await;
    let loc = location(&a.callback(&path, "acme").await);
    assert_eq!(param(&loc, "hubspot_error").as_deref(), Some("AUTH_SCOPE_DENIED"), "{loc}");
    assert_eq!(param(&loc, "hubspot_missing_scopes").as_deref(), Some("crm.objects.contacts.read"), "{loc}");
    // Other codes carry the code alone.
    let loc = location(&a.callback("/oauth/callback?code=x&state=forged", "acme").await);
    assert_eq!(loc, "/settings/integrations?hubspot_error=INVALID_STATE");
}

/// The status for each code, one place (the table in the `web` docs).
#[tokio::test]
async fn each_code_has_its_status_and_a_json_body() {
    use axum::response::IntoResponse;
    let expected = [
        (ErrorCode::AuthScopeDenied, 403),
        (ErrorCode::PortalLimitReached, 409),
        (ErrorCode::TokenExpired, 400),
        (ErrorCode::PortalAlreadyConnected, 409),
        (ErrorCode::AccessDenied, 403),
        (ErrorCode::InvalidState, 400),
        (ErrorCode::ReconnectRequired, 409),
        (ErrorCode::PortalMismatch, 422),
        (ErrorCode::WrongAccountType, 422),
        (ErrorCode::MissingScopes, 403),
        (ErrorCode::RateLimited, 429),
        (ErrorCode::HubspotUnavailable, 503),
        (ErrorCode::InvalidClient, 500),
        (ErrorCode::ConnectionNotFound, 404),
        (ErrorCode::StoreUnavailable, 503),
        (ErrorCode::RequestRejected, 502),
        (ErrorCode::ReadOnly, 403),
        (ErrorCode::InvalidConfig, 400),
    ];
    assert_eq!(expected.len(), ErrorCode::ALL.len());
    for (code, status) in expected {
        assert_eq!(ApiError::status_of(code).as_u16(), status, "{code}");
        let r = answer(ApiError::from(Error::new(code, "what happened")).into_response()).await;
        r.assert_error(StatusCode::from_u16(status).unwrap(), code);
        assert_eq!(r.json.as_object().unwrap().len(), 1, "{}", r.text);
    }
    // Server-side details stay in the logs.
    let r =
        answer(ApiError::from(Error::new(ErrorCode::StoreUnavailable, "pg at 10.0.0.7 refused")).into_response()).await;
    assert!(!r.text.contains("10.0.0.7"), "{}", r.text);
}

// ---- A vendor's own app state ------------------------------------------------------------------------------------

/// The vendor's state: its sessions (cookie → tenant), and anything else it keeps.
#[derive(Clone)]
struct AppState {
    sessions: Arc<std::collections::HashMap<String, String>>,
}

/// The vendor's extractor, reading the vendor's state.
struct Session(String);

impl FromRequestParts<AppState> for Session {
    type Rejection = (StatusCode, [(axum::http::HeaderName, &'static str); 1], &'static str);
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = parts.headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
        let id = cookie.strip_prefix("session=").unwrap_or("");
        match state.sessions.get(id) {
            Some(tenant) => Ok(Session(tenant.clone())),
            None => Err((
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"code":"UNAUTHENTICATED","message":"sign in first","advice":"Sign in again."}}"#,
            )),
        }
    }
}

impl Tenant for Session {
    fn tenant(&self) -> &str {
        &self.0
    }
}

#[tokio::test]
async fn an_extractor_that_reads_the_vendors_state() {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
    let connections = Connections::builder(connector, MemoryStore::new()).clock(Arc::new(clock.clone())).build();
    let state = AppState { sessions: Arc::new([("s-1".to_owned(), "acme".to_owned())].into_iter().collect()) };
    let routes = ConnectRoutes::new(connections, Scopes::new().require("crm.objects.contacts.read"));
    let app: axum::Router = axum::Router::new()
        .route("/home", axum::routing::get(|| async { "home" }))
        .merge(routes.routes::<Session, AppState>())
        .with_state(state);
    let with = |method: &str, uri: &str, cookie: &str| {
        Request::builder().method(method).uri(uri).header("cookie", cookie).body(Body::empty()).unwrap()
    };
    let r = app.clone().oneshot(with("GET", "/hubspot/connect", "session=s-1")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let callback = fake.consent(&location(&r)).await.unwrap();
    let path = format!("{}?{}", callback.path(), callback.query().unwrap());
    let r = app.clone().oneshot(with("GET", &path, "session=s-1")).await.unwrap();
    let id = param(&location(&r), "hubspot_connection").unwrap();
    let r = answer(app.clone().oneshot(with("GET", "/hubspot/connections", "session=s-1")).await.unwrap()).await;
    assert_eq!(r.json["connections"][0]["id"], id.as_str());
    assert_eq!(r.json["connections"][0]["tenant"], "acme");
    // No session: the vendor's own typed rejection, nothing done.
    let r = answer(
        app.clone().oneshot(with("DELETE", &format!("/hubspot/connections/{id}"), "session=s-2")).await.unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"]["code"], "UNAUTHENTICATED");
    assert_eq!(fake.requests(Endpoint::Revoke202603), 0);
    let r =
        answer(app.clone().oneshot(with("GET", &format!("/hubspot/connections/{id}"), "session=s-1")).await.unwrap())
            .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = answer(app.oneshot(with("GET", "/home", "")).await.unwrap()).await;
    assert_eq!(r.text, "home");
}
