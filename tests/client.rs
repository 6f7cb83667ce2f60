//! The authenticated HubSpot client against the fake HubSpot's API endpoints: one refresh per 401, none on 403,
//! the newer-token retry, `Retry-After` in both forms, the per-portal budget, no bearer across hosts, POST not
//! retried, read-only refusal.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::store::{MemoryStore, TokenStore};
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot};
use hubspot_connect::{
    BeginOptions, Callback, Clock, ConnectionId, Connections, ErrorCode, HubSpotApi, HubSpotClient, ManualClock,
    Scopes, api::ApiRequest,
};
use serde_json::{Value, json};

type Store = Arc<dyn TokenStore>;

struct World {
    fake: FakeHubSpot,
    clock: ManualClock,
    store: Store,
    api: HubSpotApi,
    id: ConnectionId,
}

fn manager(fake: &FakeHubSpot, clock: &ManualClock, store: &Store) -> Connections {
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
    Connections::builder(connector, Arc::clone(store)).clock(Arc::new(clock.clone())).build()
}

async fn world_with(scopes: Scopes) -> World {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let store: Store = Arc::new(MemoryStore::new());
    let connections = manager(&fake, &clock, &store);
    let begun = connections.begin("acme", &scopes, BeginOptions::default()).await.unwrap();
    let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let id = connections.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap().connection.id;
    let api = HubSpotApi::builder(connections).api_base(fake.uri()).build().unwrap();
    fake.reset_counts();
    World { fake, clock, store, api, id }
}

async fn world() -> World {
    world_with(Scopes::new().require("crm.objects.contacts.read").require("crm.objects.contacts.write")).await
}

impl World {
    async fn client(&self) -> HubSpotClient {
        self.api.client(&self.id).await.unwrap()
    }
}

#[tokio::test]
async fn reads_objects_with_the_connections_token() {
    let w = world().await;
    let c = w.client().await;
    let list: Value = c.get_json("crm/v3/objects/contacts?limit=2").await.unwrap();
    assert_eq!(list["results"].as_array().unwrap().len(), 2);
    let stored = w.store.get(&w.id).await.unwrap().unwrap();
    assert_eq!(w.fake.last_authorization(Endpoint::CrmList), Some(format!("Bearer {}", stored.access_token.secret())));
    assert!(!format!("{c:?}").contains(stored.access_token.secret()));
}

#[tokio::test]
async fn a_401_refreshes_once_and_retries() {
    let w = world().await;
    let c = w.client().await;
    w.fake.expire_access_tokens();
    let list: Value = c.get_json("crm/v3/objects/contacts").await.unwrap();
    assert!(list["results"].is_array());
    assert_eq!(w.fake.token_requests(), 1, "one refresh");
    assert_eq!(w.fake.requests(Endpoint::CrmList), 2, "one retry");

    // A second 401 is an error, after one refresh.
    w.fake.reset_counts();
    let body = json!({"status":"error","message":"Authentication credentials not found.","correlationId":"c-401","category":"INVALID_AUTHENTICATION"});
    let unauthorized =
        Failure::Status { status: 401, content_type: "application/json".into(), body: body.to_string().into_bytes() };
    w.fake.fail(Endpoint::CrmList, unauthorized, 2);
    let err = c.get_json::<Value>("crm/v3/objects/contacts").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
    assert_eq!(err.correlation_id(), Some("c-401"));
    assert_eq!(w.fake.token_requests(), 1, "at most one refresh per request");
    assert_eq!(w.fake.requests(Endpoint::CrmList), 2);
}

#[tokio::test]
async fn a_403_for_scopes_never_refreshes() {
    let w = world_with(Scopes::new().require("crm.objects.contacts.read")).await;
    let c = w.client().await;
    let err = c.get_json::<Value>("crm/v3/objects/deals").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::MissingScopes, "{err}");
    assert_eq!(err.missing_scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["crm.objects.deals.read"]);
    assert_eq!(err.hubspot().unwrap().category.as_deref(), Some("MISSING_SCOPES"));
    assert_eq!(w.fake.token_requests(), 0);
    assert_eq!(w.fake.requests(Endpoint::CrmList), 1);
}

#[tokio::test]
async fn a_refused_token_that_is_no_longer_stored_is_retried_with_the_newer_one() {
    let w = world().await;
    // Worker B's process has the old token cached.
    let b = HubSpotApi::builder(manager(&w.fake, &w.clock, &w.store)).api_base(w.fake.uri()).build().unwrap();
    let b_client = b.client(&w.id).await.unwrap();
    b_client.get_json::<Value>("crm/v3/objects/contacts").await.unwrap();
    // HubSpot stops accepting it; worker A refreshes.
    w.fake.expire_access_tokens();
    w.api.connections().force_refresh(&w.id).await.unwrap();
    assert_eq!(w.fake.token_requests(), 1);
    // B gets a 401, sees the newer stored token, and retries with it: no second refresh.
    let list: Value = b_client.get_json("crm/v3/objects/contacts").await.unwrap();
    assert!(list["results"].is_array());
    assert_eq!(w.fake.token_requests(), 1);
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date() {
    let w = world().await;
    let c = w.client().await;
    w.fake.fail(Endpoint::CrmGet, Failure::TooManyRequests { retry_after: Some(2) }, 1);
    let first_id = {
        let list: Value = c.get_json("crm/v3/objects/contacts").await.unwrap();
        list["results"][0]["id"].as_str().unwrap().to_owned()
    };
    let sleeps_before = w.clock.sleeps().len();
    c.get_json::<Value>(&format!("crm/v3/objects/contacts/{first_id}")).await.unwrap();
    assert_eq!(w.clock.sleeps()[sleeps_before..], [Duration::from_secs(2)]);

    // An HTTP date 7 seconds ahead, from a mock in front of the fake.
    let date = httpdate::fmt_http_date(w.clock.now() + Duration::from_secs(7));
    wiremock::Mock::given(wiremock::matchers::path(format!("/crm/v3/objects/contacts/{first_id}")))
        .respond_with(
            wiremock::ResponseTemplate::new(429)
                .insert_header("retry-after", date.as_str())
                .set_body_json(json!({"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"})),
        )
        .with_priority(1)
        .up_to_n_times(1)
        .mount(w.fake.server())
        .await;
    let sleeps_before = w.clock.sleeps().len();
    c.get_json::<Value>(&format!("crm/v3/objects/contacts/{first_id}")).await.unwrap();
    assert_eq!(w.clock.sleeps()[sleeps_before..], [Duration::from_secs(7)]);

    // Rate limited for good: RATE_LIMITED after the allowed retries.
    w.fake.fail(Endpoint::CrmGet, Failure::TooManyRequests { retry_after: Some(1) }, 10);
    let err = c.get_json::<Value>(&format!("crm/v3/objects/contacts/{first_id}")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    w.fake.reset_failures();
}

#[tokio::test]
async fn two_hundred_calls_hold_the_portal_budget() {
    let w = world().await;
    let portal = w.client().await.portal_id();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let c = w.client().await;
        tasks.push(tokio::spawn(async move { c.get_json::<Value>("crm/v3/objects/contacts?limit=1").await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(w.fake.requests(Endpoint::CrmList), 200);
    assert!(w.fake.max_requests_in_window(portal, Duration::from_secs(10)) <= 110);
    assert_eq!(w.fake.rate_limited_requests(), 0, "the burst waited instead of being refused");
}

#[tokio::test]
async fn search_has_its_own_budget() {
    let w = world().await;
    let c = w.client().await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.post_json::<Value>("crm/v3/objects/contacts/search", &json!({"filterGroups": [], "limit": 1})).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Never more than 5 searches in any second at the fake (fewer is possible: on the manual clock a waiting
    // search's sleep moves time for the searches still on the wire), none refused, and the burst waited.
    let most = w.fake.max_requests_in_window(c.portal_id(), Duration::from_secs(1));
    assert!((1..=5).contains(&most), "{most} searches in one second");
    assert_eq!(w.fake.requests(Endpoint::CrmSearch), 12);
    assert_eq!(w.fake.rate_limited_requests(), 0);
    assert!(!w.clock.sleeps().is_empty(), "the 12 searches waited for room");
}

#[tokio::test]
async fn no_bearer_on_a_cross_host_redirect() {
    let w = world().await;
    let other = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/landing"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .mount(&other)
        .await;
    w.fake.fail(Endpoint::CrmList, Failure::Redirect { status: 302, location: format!("{}/landing", other.uri()) }, 1);
    let c = w.client().await;
    c.get_json::<Value>("crm/v3/objects/contacts").await.unwrap();
    let received = other.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert!(received[0].headers.get("authorization").is_none(), "the token went to another host");

    // A same-host redirect keeps it.
    w.fake.fail(
        Endpoint::CrmList,
        Failure::Redirect { status: 307, location: "/crm/v3/objects/contacts?limit=1".into() },
        1,
    );
    c.get_json::<Value>("crm/v3/objects/contacts").await.unwrap();
    assert!(w.fake.last_authorization(Endpoint::CrmList).is_some());

    // An absolute URL on another host is refused before anything is sent.
    let err = c.send(ApiRequest::get("https://evil.example/steal")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidConfig);
}

#[tokio::test]
async fn post_is_not_retried_unless_marked_safe() {
    let w = world().await;
    let c = w.client().await;
    let portal = c.portal_id();
    let before = w.fake.objects(portal, "contacts");
    w.fake.fail(Endpoint::CrmCreate, Failure::ServerError, 1);
    let err = c
        .post_json::<Value>("crm/v3/objects/contacts", &json!({"properties": {"email": "a@b.example"}}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable);
    assert_eq!(w.fake.requests(Endpoint::CrmCreate), 1, "a POST is not retried");
    assert_eq!(w.fake.objects(portal, "contacts"), before);

    w.fake.fail(Endpoint::CrmCreate, Failure::ServerError, 1);
    let request = ApiRequest::post("crm/v3/objects/contacts").json(&json!({"properties": {}})).unwrap().retry_safe();
    c.send(request).await.unwrap();
    assert_eq!(w.fake.requests(Endpoint::CrmCreate), 3);
    assert_eq!(w.fake.objects(portal, "contacts"), before + 1);

    // GETs are retried with back-off.
    w.fake.fail(Endpoint::CrmList, Failure::ServerError, 2);
    let sleeps = w.clock.sleeps().len();
    c.get_json::<Value>("crm/v3/objects/contacts").await.unwrap();
    assert_eq!(w.clock.sleeps().len() - sleeps, 2);
}

#[tokio::test]
async fn read_only_refuses_writes_before_sending() {
    let w = world().await;
    let c = w.client().await.read_only();
    let err = c
        .send(ApiRequest::post("crm/v3/objects/contacts").json(&json!({"properties": {}})).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::ReadOnly);
    for method in [http::Method::PUT, http::Method::PATCH, http::Method::DELETE] {
        let err = c.send(ApiRequest::new(method, "crm/v3/objects/contacts/1")).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReadOnly);
    }
    assert_eq!(w.fake.requests(Endpoint::CrmCreate), 0);
    c.get_json::<Value>("crm/v3/objects/contacts").await.unwrap();
}

#[tokio::test]
async fn other_errors_keep_hubspots_body() {
    let w = world().await;
    let c = w.client().await;
    let err = c.get_json::<Value>("crm/v3/objects/contacts/999999").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RequestRejected, "{err}");
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    let body = err.hubspot().unwrap();
    assert_eq!(body.category.as_deref(), Some("OBJECT_NOT_FOUND"));
    assert!(body.correlation_id.is_some());
}

/// Finding 7: a 307/308 keeps the method and the body; to another host it is refused, not followed.
#[tokio::test]
async fn a_body_is_never_redirected_to_another_host() {
    let w = world().await;
    let other = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/landing"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .mount(&other)
        .await;
    let c = w.client().await;
    for status in [307, 308] {
        w.fake.fail(Endpoint::CrmCreate, Failure::Redirect { status, location: format!("{}/landing", other.uri()) }, 1);
        let err = c
            .post_json::<Value>("crm/v3/objects/contacts", &json!({"properties": {"email": "CANARY@customer.example"}}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{err}");
        assert!(err.message().contains("not a HubSpot API host"), "{err}");
    }
    assert_eq!(other.received_requests().await.unwrap().len(), 0, "the customer's data went to another host");
    // A same-host 307 keeps its body.
    w.fake.fail(Endpoint::CrmCreate, Failure::Redirect { status: 307, location: "/crm/v3/objects/contacts".into() }, 1);
    c.post_json::<Value>("crm/v3/objects/contacts", &json!({"properties": {}})).await.unwrap();
}

/// Finding 7: a listed HubSpot host on another port is not a HubSpot host.
#[tokio::test]
async fn the_host_allow_list_minds_the_port() {
    let w = world().await;
    let mut config = hubspot_connect::api::ApiConfig::default();
    config.api_hosts.push("localhost".into());
    let api = HubSpotApi::builder(w.api.connections().clone()).config(config).api_base(w.fake.uri()).build().unwrap();
    let c = api.client(&w.id).await.unwrap();
    let err = c.send(ApiRequest::get("https://localhost:1/crm/v3/objects/contacts")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidConfig, "{err}");
    assert!(err.message().contains("not a HubSpot API host"), "{err}");
}

/// Finding 8: API answers have their own cap, far above HubSpot's largest page, and its error says what happened.
#[tokio::test]
async fn big_api_answers_are_read_up_to_their_own_cap() {
    let w = world().await;
    let big = format!(r#"{{"results":["{}"]}}"#, "x".repeat(3 * 1024 * 1024));
    wiremock::Mock::given(wiremock::matchers::path("/crm/v3/objects/contacts/batch/read"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(big.into_bytes(), "application/json"))
        .mount(w.fake.server())
        .await;
    let c = w.client().await;
    let page: Value = c.post_json("crm/v3/objects/contacts/batch/read", &json!({"inputs": []})).await.unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 1);

    let small = HubSpotApi::builder(w.api.connections().clone())
        .api_base(w.fake.uri())
        .max_response_body(1024 * 1024)
        .build()
        .unwrap();
    let c = small.client(&w.id).await.unwrap();
    let err = c.post_json::<Value>("crm/v3/objects/contacts/batch/read", &json!({"inputs": []})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidConfig, "{err}");
    assert!(err.message().contains("larger than the 1 MiB") && err.message().contains("max_response_body"), "{err}");
    assert!(!err.is_retryable());
}
