//! The fake HubSpot's switches, driven with plain reqwest: codes, PKCE, redirect URIs, rotation, uninstall, user
//! removal, error styles, injected failures, consent, portals and the request counters.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hubspot_connect::ManualClock;
use hubspot_connect::testing::{
    AppRegistration, DeadIntrospection, Decline, Endpoint, ErrorStyle, Failure, FakeError, FakeHubSpot, FakePortal,
    FakeUser, Rotation, TokenFields,
};
use serde_json::{Value, json};
use sha2::Digest as _;

const VERIFIER: &str = "a-verifier-that-is-long-enough-for-rfc-7636-0123456789";

struct World {
    fake: FakeHubSpot,
    clock: ManualClock,
    http: reqwest::Client,
}

/// What the test client sends to the authorize page.
struct Authorize {
    portal: Option<u64>,
    scope: &'static str,
    optional: Option<&'static str>,
    pkce: bool,
    redirect_uri: Option<String>,
}

impl Default for Authorize {
    fn default() -> Self {
        Authorize {
            portal: None,
            scope: "oauth crm.objects.contacts.read",
            optional: None,
            pkce: true,
            redirect_uri: None,
        }
    }
}

async fn world() -> World {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    World { fake, clock, http }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.uri())
    }

    fn authorize_url(&self, a: &Authorize) -> url::Url {
        let path = a.portal.map_or("/oauth/authorize".to_owned(), |id| format!("/oauth/{id}/authorize"));
        let mut url = url::Url::parse(&self.url(&path)).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", self.fake.client_id())
                .append_pair("redirect_uri", a.redirect_uri.as_deref().unwrap_or(self.fake.redirect_uri()))
                .append_pair("scope", a.scope)
                .append_pair("state", "state-42");
            if let Some(optional) = a.optional {
                q.append_pair("optional_scope", optional);
            }
            if a.pkce {
                let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER));
                q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
            }
        }
        url
    }

    async fn code_with(&self, a: &Authorize) -> String {
        let callback = self.fake.consent(self.authorize_url(a).as_str()).await.unwrap();
        assert_eq!(param(&callback, "state").as_deref(), Some("state-42"));
        param(&callback, "code").unwrap()
    }

    async fn code(&self) -> String {
        self.code_with(&Authorize::default()).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let answer = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let body = answer.bytes().await.unwrap();
        (status, if body.is_empty() { Value::Null } else { parse(&body) })
    }

    async fn exchange_at(&self, path: &str, code: &str, verifier: Option<&str>, redirect: &str) -> (u16, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("client_id", self.fake.client_id()),
            ("client_secret", self.fake.client_secret()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.post(path, &form).await
    }

    async fn exchange(&self, code: &str) -> (u16, Value) {
        self.exchange_at("/oauth/2026-03/token", code, Some(VERIFIER), self.fake.redirect_uri()).await
    }

    /// A full connection: code and exchange. Returns (access, refresh).
    async fn connect(&self) -> (String, String) {
        let code = self.code().await;
        let (status, body) = self.exchange(&code).await;
        assert_eq!(status, 200, "{body}");
        (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
    }

    async fn refresh_at(&self, path: &str, token: &str) -> (u16, Value) {
        self.post(
            path,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", self.fake.client_id()),
                ("client_secret", self.fake.client_secret()),
            ],
        )
        .await
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.refresh_at("/oauth/2026-03/token", token).await
    }

    async fn account(&self, access: &str) -> (u16, Value) {
        let answer = self.http.get(self.url("/account-info/2026-03/details")).bearer_auth(access).send().await.unwrap();
        let status = answer.status().as_u16();
        (status, parse(&answer.bytes().await.unwrap()))
    }

    async fn introspect(&self, token: &str, hint: &str) -> (u16, Value) {
        self.post(
            "/oauth/2026-03/token/introspect",
            &[
                ("client_id", self.fake.client_id()),
                ("client_secret", self.fake.client_secret()),
                ("token", token),
                ("token_type_hint", hint),
            ],
        )
        .await
    }

    async fn revoke(&self, token: &str, hint: &str) -> (u16, Value) {
        self.post(
            "/oauth/2026-03/token/revoke",
            &[
                ("client_id", self.fake.client_id()),
                ("client_secret", self.fake.client_secret()),
                ("token", token),
                ("token_type_hint", hint),
            ],
        )
        .await
    }

    async fn raw_get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }
}

#[track_caller]
fn assert_token_error(answer: &(u16, Value), error: &str, status: &str) {
    assert_eq!(answer.0, 400, "{}", answer.1);
    assert_eq!(answer.1["error"], error, "{}", answer.1);
    assert_eq!(answer.1["status"], status, "{}", answer.1);
}

// ---- codes ----

#[tokio::test]
async fn codes_are_single_use() {
    let w = world().await;
    let code = w.code().await;
    assert!(code.starts_with("na1-"), "{code}");
    assert_eq!(w.exchange(&code).await.0, 200);
    assert_token_error(&w.exchange(&code).await, "invalid_grant", "BAD_AUTH_CODE");
    assert_token_error(&w.exchange("na1-never-issued").await, "invalid_grant", "BAD_AUTH_CODE");
}

#[tokio::test]
async fn codes_expire_on_the_injected_clock() {
    let w = world().await;
    let code = w.code().await;
    w.clock.advance(Duration::from_secs(599));
    assert_eq!(w.exchange(&code).await.0, 200, "valid for 10 minutes");

    w.fake.set_code_ttl(Duration::from_secs(30));
    let code = w.code().await;
    w.clock.advance(Duration::from_secs(30));
    let answer = w.exchange(&code).await;
    assert_token_error(&answer, "invalid_grant", "EXPIRED_AUTH_CODE");
}

#[tokio::test]
async fn pkce_is_checked_when_a_challenge_was_sent() {
    let w = world().await;
    let path = "/oauth/v1/token";
    let code = w.code().await;
    let answer = w.exchange_at(path, &code, Some("not-the-verifier"), w.fake.redirect_uri()).await;
    assert_token_error(&answer, "invalid_grant", "BAD_AUTH_CODE");
    assert!(answer.1["message"].as_str().unwrap().contains("code_verifier"), "{}", answer.1);
    let code = w.code().await;
    let answer = w.exchange_at(path, &code, None, w.fake.redirect_uri()).await;
    assert_token_error(&answer, "invalid_grant", "BAD_AUTH_CODE");
    assert!(answer.1["message"].as_str().unwrap().contains("code_verifier"));

    let code = w.code_with(&Authorize { pkce: false, ..Authorize::default() }).await;
    assert_eq!(w.exchange_at(path, &code, None, w.fake.redirect_uri()).await.0, 200, "no challenge, no verifier");
}

#[tokio::test]
async fn the_exchange_must_repeat_the_redirect_uri() {
    let w = world().await;
    let code = w.code().await;
    let answer = w.exchange_at("/oauth/2026-03/token", &code, Some(VERIFIER), "http://localhost:3000/other").await;
    assert_token_error(&answer, "invalid_grant", "MISMATCH_REDIRECT_URI_AUTH_CODE");

    // Any registered redirect URI is accepted at authorize, as long as the exchange repeats it.
    let mine = "https://app.vendor.example/hubspot/callback?tenant=7".to_owned();
    let app = AppRegistration::default().redirect_uri(mine.clone());
    let w = World { fake: FakeHubSpot::builder().app(app).clock(Arc::new(w.clock.clone())).start().await, ..w };
    let a = Authorize { redirect_uri: Some(mine.clone()), ..Authorize::default() };
    let callback = w.fake.consent(w.authorize_url(&a).as_str()).await.unwrap();
    assert!(callback.as_str().starts_with("https://app.vendor.example/hubspot/callback?tenant=7&code="), "{callback}");
    let code = param(&callback, "code").unwrap();
    assert_eq!(w.exchange_at("/oauth/v1/token", &code, Some(VERIFIER), &mine).await.0, 200);
}

#[tokio::test]
async fn client_credentials_content_type_and_grant_type_are_checked() {
    let w = world().await;
    let (_, refresh) = w.connect().await;
    let id = w.fake.client_id().to_owned();
    let answer = w
        .post(
            "/oauth/v1/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "someone-else"),
                ("client_secret", w.fake.client_secret()),
            ],
        )
        .await;
    assert_token_error(&answer, "invalid_client", "BAD_CLIENT_ID");
    let answer = w
        .post(
            "/oauth/2026-03/token",
            &[("grant_type", "refresh_token"), ("client_id", &id), ("client_secret", "wrong")],
        )
        .await;
    assert_token_error(&answer, "invalid_client", "BAD_CLIENT_ID");
    let answer = w
        .post(
            "/oauth/2026-03/token",
            &[("grant_type", "password"), ("client_id", &id), ("client_secret", w.fake.client_secret())],
        )
        .await;
    assert_token_error(&answer, "unsupported_grant_type", "BAD_GRANT_TYPE");

    let json_body = json!({"grant_type": "refresh_token", "refresh_token": refresh, "client_id": id,
                           "client_secret": w.fake.client_secret()});
    let answer = w
        .http
        .post(w.url("/oauth/2026-03/token"))
        .header("content-type", "application/json")
        .body(json_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(parse(&answer.bytes().await.unwrap())["status"], "BAD_GRANT_TYPE", "a JSON body fails");
    assert_eq!(w.refresh(&refresh).await.0, 200, "the refresh token survived all that");
}

// ---- rotation ----

#[tokio::test]
async fn rotation_same_repeats_the_refresh_token() {
    let w = world().await;
    let (access, refresh) = w.connect().await;
    for path in ["/oauth/v1/token", "/oauth/2026-03/token"] {
        let (status, body) = w.refresh_at(path, &refresh).await;
        assert_eq!(status, 200);
        assert_eq!(body["refresh_token"], refresh.as_str());
        assert_ne!(body["access_token"], access.as_str());
    }
    assert_eq!(w.account(&access).await.0, 200, "the older access token still works");
}

#[tokio::test]
async fn rotation_omit_leaves_the_field_out() {
    let w = world().await;
    w.fake.set_rotation(Rotation::Omit);
    let (_, refresh) = w.connect().await;
    let (status, body) = w.refresh(&refresh).await;
    assert_eq!(status, 200);
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(w.refresh(&refresh).await.0, 200, "the presented one stays valid");
}

#[tokio::test]
async fn rotation_rotate_issues_new_tokens_and_keeps_old_ones() {
    let w = world().await;
    w.fake.set_rotation(Rotation::Rotate);
    let (_, r0) = w.connect().await;
    let r1 = w.refresh(&r0).await.1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    let r2 = w.refresh(&r1).await.1["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(w.fake.stale_refresh_presentations(), 0);
    let (status, body) = w.refresh(&r0).await;
    assert_eq!(status, 200, "an old one still works under Rotate");
    assert_ne!(body["refresh_token"], r2.as_str());
    assert_eq!(w.fake.stale_refresh_presentations(), 1);
    assert_eq!(w.introspect(&r1, "refresh_token").await.1["active"], true);
}

#[tokio::test]
async fn rotation_strict_revokes_the_family_on_reuse() {
    let w = world().await;
    w.fake.set_rotation(Rotation::Strict);
    let (_, r0) = w.connect().await;
    let (_, other) = w.connect().await;
    let r1 = w.refresh(&r0).await.1["refresh_token"].as_str().unwrap().to_owned();
    let r2 = w.refresh(&r1).await.1["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(w.introspect(&r1, "refresh_token").await.1, json!({"active": false}), "superseded");
    assert_eq!(w.introspect(&r2, "refresh_token").await.1["active"], true);

    assert_token_error(&w.refresh(&r1).await, "invalid_grant", "BAD_REFRESH_TOKEN");
    assert_eq!(w.fake.stale_refresh_presentations(), 1);
    let answer = w.refresh(&r2).await;
    assert_token_error(&answer, "invalid_grant", "BAD_REFRESH_TOKEN");
    assert_eq!(answer.1["message"], "refresh token is invalid, expired or revoked");
    assert_eq!(w.refresh(&other).await.0, 200, "another connection's family is untouched");
}

// ---- uninstall, user removal, revocation ----

#[tokio::test]
async fn uninstall_kills_the_portals_tokens_only() {
    let w = world().await;
    w.fake.add_portal(FakePortal::new(777));
    let (access, refresh) = w.connect().await;
    let code = w.code_with(&Authorize { portal: Some(777), ..Authorize::default() }).await;
    let other = w.exchange(&code).await.1;
    let pending = w.code().await;

    w.fake.uninstall(62515);
    for path in ["/oauth/v1/token", "/oauth/2026-03/token"] {
        assert_token_error(&w.refresh_at(path, &refresh).await, "invalid_grant", "BAD_REFRESH_TOKEN");
    }
    let (status, body) = w.account(&access).await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    assert_token_error(&w.exchange(&pending).await, "invalid_grant", "BAD_AUTH_CODE");
    assert_eq!(w.refresh(other["refresh_token"].as_str().unwrap()).await.0, 200, "portal 777 is untouched");
    assert_eq!(w.account(other["access_token"].as_str().unwrap()).await.0, 200);

    let (access, refresh) = w.connect().await;
    assert_eq!(w.refresh(&refresh).await.0, 200, "installing again works");
    assert_eq!(w.account(&access).await.1["portalId"], 62515);
}

#[tokio::test]
async fn remove_user_kills_what_that_user_installed() {
    let w = world().await;
    let (access, refresh) = w.connect().await;
    w.fake.set_user(FakeUser { id: 55, email: "owner@acme.test".into() });
    let (_, other) = w.connect().await;
    assert_eq!(w.introspect(&other, "refresh_token").await.1["user"], "owner@acme.test");

    w.fake.remove_user(123);
    assert_token_error(&w.refresh(&refresh).await, "invalid_grant", "BAD_REFRESH_TOKEN");
    assert_eq!(w.account(&access).await.0, 401);
    let (status, body) = w.refresh(&other).await;
    assert_eq!(status, 200);
    assert_eq!(body["user_id"], 55);
}

#[tokio::test]
async fn revocation_on_both_generations() {
    let w = world().await;
    let (access, refresh) = w.connect().await;
    let path = format!("/oauth/v1/refresh-tokens/{refresh}");
    assert_eq!(w.http.delete(w.url(&path)).send().await.unwrap().status(), 204);
    let again = w.http.delete(w.url(&path)).send().await.unwrap();
    assert_eq!(again.status(), 404);
    assert_eq!(parse(&again.bytes().await.unwrap())["category"], "OBJECT_NOT_FOUND");
    assert_token_error(&w.refresh(&refresh).await, "invalid_grant", "BAD_REFRESH_TOKEN");
    assert_eq!(w.account(&access).await.0, 200, "access tokens live on until they expire");

    for status in [200, 204] {
        w.fake.set_revoke_status(status);
        let (access, refresh) = w.connect().await;
        assert_eq!(w.revoke(&refresh, "refresh_token").await, (status, Value::Null));
        assert_eq!(w.refresh(&refresh).await.0, 400);
        assert_eq!(w.revoke("never-issued", "refresh_token").await.0, status, "RFC 7009: unknown is fine too");
        assert_eq!(w.account(&access).await.0, 200);
        assert_eq!(w.revoke(&access, "access_token").await.0, status);
        assert_eq!(w.account(&access).await.0, 401, "a revoked access token is dead");
    }
    let answer = w
        .post(
            "/oauth/2026-03/token/revoke",
            &[("client_id", w.fake.client_id()), ("client_secret", "x"), ("token", "t")],
        )
        .await;
    assert_token_error(&answer, "invalid_client", "BAD_CLIENT_ID");
    assert_eq!(w.fake.requests(Endpoint::Revoke202603), 7);
    assert_eq!(w.fake.requests(Endpoint::RevokeV1), 2);
}

// ---- access tokens, introspection ----

#[tokio::test]
async fn access_tokens_expire_by_ttl_clock_and_on_demand() {
    let w = world().await;
    w.fake.set_access_token_ttl(Duration::from_secs(60));
    let (access, refresh) = w.connect().await;
    assert_eq!(w.introspect(&access, "access_token").await.1["expires_in"], 60);
    w.clock.advance(Duration::from_secs(59));
    assert_eq!(w.account(&access).await.0, 200);
    w.clock.advance(Duration::from_secs(3));
    let (status, body) = w.account(&access).await;
    assert_eq!(status, 401);
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(body["message"], "The OAuth token used to make this call expired 2 second(s) ago.");

    let (status, fresh) = w.refresh(&refresh).await;
    assert_eq!((status, fresh["expires_in"].clone()), (200, json!(60)));
    let fresh = fresh["access_token"].as_str().unwrap().to_owned();
    w.fake.expire_access_tokens();
    let (status, body) = w.account(&fresh).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "The OAuth token used to make this call expired 0 second(s) ago.");
    assert_eq!(w.introspect(&fresh, "access_token").await.1, json!({"active": false}));
    let v1 = w.raw_get(&format!("/oauth/v1/access-tokens/{fresh}")).await;
    assert_eq!(v1.status(), 404);
    let (_, newest) = w.refresh(&refresh).await;
    assert_eq!(w.account(newest["access_token"].as_str().unwrap()).await.0, 200, "later tokens are not affected");
}

#[tokio::test]
async fn dead_token_introspection_both_ways() {
    let w = world().await;
    assert_eq!(w.introspect("unknown", "access_token").await, (200, json!({"active": false})));
    assert_eq!(w.introspect("unknown", "refresh_token").await, (200, json!({"active": false})));
    w.fake.set_dead_token_introspection(DeadIntrospection::BadRequest);
    assert_token_error(&w.introspect("unknown", "refresh_token").await, "invalid_grant", "BAD_REFRESH_TOKEN");
    assert_token_error(&w.introspect("unknown", "access_token").await, "invalid_grant", "BAD_ACCESS_TOKEN");
    w.fake.set_error_style(ErrorStyle::LegacyOnly);
    let (status, body) = w.introspect("unknown", "refresh_token").await;
    assert_eq!((status, body["status"].clone()), (400, json!("BAD_REFRESH_TOKEN")));
    let (status, body) =
        w.post("/oauth/2026-03/token/introspect", &[("client_id", w.fake.client_id()), ("token", "unknown")]).await;
    assert_eq!((status, body["status"].clone()), (400, json!("BAD_CLIENT_ID")), "client credentials are checked");
}

#[tokio::test]
async fn issue_mints_tokens_without_the_browser() {
    let w = world().await;
    w.fake.set_user(FakeUser::new(9, "nine@example.com"));
    let issued = w.fake.issue(31337, &["oauth", "crm.objects.deals.read"]);
    let shown = format!("{issued:?}");
    assert!(!shown.contains(&issued.access_token) && !shown.contains(&issued.refresh_token), "{shown}");
    let (status, info) = w.account(&issued.access_token).await;
    assert_eq!(status, 200);
    assert_eq!(info["portalId"], 31337, "an unknown portal is added");
    let (_, access) = w.introspect(&issued.access_token, "access_token").await;
    assert_eq!(access["scopes"], json!(["oauth", "crm.objects.deals.read"]));
    assert_eq!(access["user_id"], 9);
    assert_eq!(w.refresh(&issued.refresh_token).await.0, 200);
    assert_eq!(w.fake.requests(Endpoint::Authorize), 0);
}

// ---- error styles and token fields ----

#[tokio::test]
async fn each_error_style() {
    let w = world().await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let answer = w.refresh("unknown").await;
    assert_eq!(keys(&answer.1), ["correlationId", "error", "error_description", "message", "status"]);
    assert_eq!(answer.1["error_description"], answer.1["message"]);
    w.fake.set_error_style(ErrorStyle::LegacyOnly);
    let answer = w.refresh("unknown").await;
    assert_eq!(answer.0, 400);
    assert_eq!(keys(&answer.1), ["correlationId", "message", "status"]);
    assert_eq!(answer.1["status"], "BAD_REFRESH_TOKEN");
    w.fake.set_error_style(ErrorStyle::RfcOnly);
    let answer = w.refresh_at("/oauth/v1/token", "unknown").await;
    assert_eq!(answer.0, 400);
    assert_eq!(
        answer.1,
        json!({"error": "invalid_grant", "error_description": "refresh token is invalid, expired or revoked"})
    );
}

#[tokio::test]
async fn token_fields_minimal() {
    let w = world().await;
    w.fake.set_token_fields(TokenFields::Minimal);
    let code = w.code().await;
    let (_, body) = w.exchange(&code).await;
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "refresh_token", "token_type"]);
}

// ---- injected failures ----

#[tokio::test]
async fn server_error_and_bad_gateway() {
    let w = world().await;
    w.fake.fail(Endpoint::Token202603, Failure::ServerError, 1);
    w.fake.fail(Endpoint::Token202603, Failure::BadGatewayHtml, 2);
    let code = w.code().await;
    let send = || w.exchange_at("/oauth/2026-03/token", &code, Some(VERIFIER), w.fake.redirect_uri());

    let first = w.http.post(w.url("/oauth/2026-03/token")).send().await.unwrap();
    assert_eq!(first.status(), 500);
    let body = parse(&first.bytes().await.unwrap());
    assert_eq!(body["status"], "error");
    assert!(body["category"].is_string() && body["correlationId"].is_string() && body["message"].is_string());
    for _ in 0..2 {
        let answer = w.http.post(w.url("/oauth/2026-03/token")).send().await.unwrap();
        assert_eq!(answer.status(), 502);
        assert_eq!(answer.headers()["content-type"], "text/html");
        assert_eq!(answer.text().await.unwrap(), "<html>502 Bad Gateway</html>");
    }
    assert_eq!(send().await.0, 200, "the queue is used up, and the failures did not use the code up");
    assert_eq!(w.fake.requests(Endpoint::Token202603), 4);
}

#[tokio::test]
async fn too_many_requests_with_and_without_retry_after() {
    let w = world().await;
    w.fake.fail(Endpoint::AccountInfoV3, Failure::TooManyRequests { retry_after: Some(3) }, 1);
    w.fake.fail(Endpoint::AccountInfoV3, Failure::TooManyRequests { retry_after: None }, 1);
    let answer = w.raw_get("/account-info/v3/details").await;
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.headers()["retry-after"], "3");
    let body = parse(&answer.bytes().await.unwrap());
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["category"], "RATE_LIMITS");
    assert_eq!(body["message"], "You have reached your ten_secondly_rolling limit.");
    let answer = w.raw_get("/account-info/v3/details").await;
    assert_eq!(answer.status(), 429);
    assert!(answer.headers().get("retry-after").is_none());
    assert_eq!(w.raw_get("/account-info/v3/details").await.status(), 401, "back to normal: no token");
}

#[tokio::test]
async fn slow_answers_arrive_late_but_take_effect_at_once() {
    let w = world().await;
    let code = w.code().await;
    w.fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_millis(1500)), 1);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let form = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", w.fake.redirect_uri()),
        ("client_id", w.fake.client_id()),
        ("client_secret", w.fake.client_secret()),
        ("code_verifier", VERIFIER),
    ])
    .unwrap();
    let err = impatient
        .post(w.url("/oauth/2026-03/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_token_error(&w.exchange(&code).await, "invalid_grant", "BAD_AUTH_CODE");
    assert_eq!(w.fake.requests(Endpoint::Token202603), 2);

    w.fake.fail(Endpoint::AccountInfo202603, Failure::Slow(Duration::from_millis(300)), 1);
    let (access, _) = w.connect().await;
    let (status, body) = w.account(&access).await;
    assert_eq!((status, body["portalId"].clone()), (200, json!(62515)), "a patient client gets the normal answer");
}

#[tokio::test]
async fn raw_answers_and_redirects() {
    let w = world().await;
    let raw = |status: u16, content_type: &str, body: &[u8]| Failure::Status {
        status,
        content_type: content_type.into(),
        body: body.to_vec(),
    };
    w.fake.fail(Endpoint::TokenV1, raw(200, "text/html", b"<html>login</html>"), 1);
    w.fake.fail(Endpoint::TokenV1, raw(200, "", b""), 1);
    w.fake.fail(Endpoint::TokenV1, raw(200, "application/json", &vec![b' '; 2 * 1024 * 1024]), 1);
    w.fake.fail(
        Endpoint::TokenV1,
        Failure::Redirect { status: 307, location: "https://login.example/elsewhere".into() },
        1,
    );

    let answer = w.http.post(w.url("/oauth/v1/token")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.headers()["content-type"].to_str().unwrap()), (200, "text/html"));
    assert_eq!(answer.text().await.unwrap(), "<html>login</html>");
    let answer = w.http.post(w.url("/oauth/v1/token")).send().await.unwrap();
    assert!(answer.headers().get("content-type").is_none());
    assert!(answer.bytes().await.unwrap().is_empty());
    let answer = w.http.post(w.url("/oauth/v1/token")).send().await.unwrap();
    assert_eq!(answer.bytes().await.unwrap().len(), 2 * 1024 * 1024);
    let answer = w.http.post(w.url("/oauth/v1/token")).send().await.unwrap();
    assert_eq!(answer.status(), 307);
    assert_eq!(answer.headers()["location"], "https://login.example/elsewhere");
    assert_eq!(w.http.post(w.url("/oauth/v1/token")).send().await.unwrap().status(), 400, "normal again");

    w.fake.fail(Endpoint::TokenV1, Failure::ServerError, 5);
    w.fake.reset_failures();
    assert_eq!(w.http.post(w.url("/oauth/v1/token")).send().await.unwrap().status(), 400, "failures dropped");
}

// ---- consent ----

#[tokio::test]
async fn decline_modes() {
    let w = world().await;
    let url = w.authorize_url(&Authorize::default());
    w.fake.decline(Decline::WithRedirect);
    let callback = w.fake.consent(url.as_str()).await.unwrap();
    assert!(callback.as_str().starts_with(w.fake.redirect_uri()));
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    assert!(param(&callback, "error_description").is_some());
    assert_eq!(param(&callback, "state").as_deref(), Some("state-42"));
    assert_eq!(param(&callback, "code"), None);

    w.fake.decline(Decline::WithoutRedirect);
    match w.fake.consent(url.as_str()).await {
        Err(FakeError::NoRedirect { status: 200, body }) => assert!(body.contains("<html"), "{body}"),
        other => panic!("{other:?}"),
    }
    w.fake.decline(Decline::Consent);
    assert!(param(&w.fake.consent(url.as_str()).await.unwrap(), "code").is_some());
    assert_eq!(w.fake.token_requests(), 0);
    assert_eq!(w.fake.requests(Endpoint::Authorize), 3);
}

#[tokio::test]
async fn refused_scopes_are_not_granted() {
    let w = world().await;
    w.fake.refuse_scopes(&["crm.objects.deals.read", "crm.objects.contacts.read"]);
    let a = Authorize { optional: Some("crm.objects.deals.read files"), ..Authorize::default() };
    let code = w.code_with(&a).await;
    let (_, body) = w.exchange(&code).await;
    assert_eq!(body["scopes"], json!(["oauth", "files"]));
    let (_, info) = w.introspect(body["access_token"].as_str().unwrap(), "access_token").await;
    assert_eq!(info["scopes"], json!(["oauth", "files"]));
    w.fake.refuse_scopes(&[]);
    let code = w.code_with(&a).await;
    let (_, body) = w.exchange(&code).await;
    assert_eq!(body["scopes"], json!(["oauth", "crm.objects.contacts.read", "crm.objects.deals.read", "files"]));
}

#[tokio::test]
async fn the_authorize_url_chooses_the_portal() {
    let w = world().await;
    w.fake.add_portal(FakePortal::new(777).eu());
    let code = w.code_with(&Authorize { portal: Some(777), ..Authorize::default() }).await;
    assert!(code.starts_with("eu1-"), "{code}");
    assert_eq!(w.exchange(&code).await.1["hub_id"], 777);
    let code = w.code().await;
    assert_eq!(w.exchange(&code).await.1["hub_id"], 62515, "no portal in the path: the default one");

    let unknown = w.authorize_url(&Authorize { portal: Some(404_404), ..Authorize::default() });
    assert!(matches!(w.fake.consent(unknown.as_str()).await, Err(FakeError::NoRedirect { status: 404, .. })));
    let garbage = unknown.as_str().replace("/404404/", "/acme/");
    assert!(matches!(w.fake.consent(&garbage).await, Err(FakeError::NoRedirect { status: 404, .. })));
}

#[tokio::test]
async fn the_authorize_page_checks_its_parameters() {
    let w = world().await;
    let good = w.authorize_url(&Authorize::default());
    let without = |name: &str| {
        let mut url = good.clone();
        let pairs: Vec<(String, String)> = good.query_pairs().into_owned().filter(|(k, _)| k != name).collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url
    };
    for name in ["client_id", "redirect_uri", "scope"] {
        let err = w.fake.consent(without(name).as_str()).await.unwrap_err();
        assert!(matches!(err, FakeError::NoRedirect { status: 400, .. }), "{name}: {err}");
    }
    let wrong_client = good.as_str().replace(w.fake.client_id(), "00000000-0000-4000-8000-000000000000");
    assert!(matches!(w.fake.consent(&wrong_client).await, Err(FakeError::NoRedirect { status: 400, .. })));
    assert!(matches!(w.fake.consent("not a url").await, Err(FakeError::InvalidUrl(_))));
    let err = w.fake.consent("http://127.0.0.1:1/oauth/authorize").await.unwrap_err();
    assert!(matches!(err, FakeError::Request(_)), "{err}");
    assert!(!err.to_string().is_empty());

    // Scopes separated by %20 or by +.
    for sep in ["%20", "+"] {
        let url = format!(
            "{}/oauth/authorize?client_id={}&redirect_uri={}&scope=oauth{sep}crm.lists.read&optional_scope=files{sep}forms",
            w.fake.uri(),
            w.fake.client_id(),
            url::form_urlencoded::byte_serialize(w.fake.redirect_uri().as_bytes()).collect::<String>()
        );
        let code = param(&w.fake.consent(&url).await.unwrap(), "code").unwrap();
        let (status, body) = w.exchange_at("/oauth/2026-03/token", &code, None, w.fake.redirect_uri()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scopes"], json!(["oauth", "crm.lists.read", "files", "forms"]), "{sep}");
    }
}

/// Every refusal of the authorize step: HubSpot's error page, a 400 with HTML, no redirect, no code.
#[tokio::test]
async fn the_authorize_step_checks_the_app_registration() {
    let clock = ManualClock::new();
    let app = AppRegistration::new("client-7", "secret-7")
        .redirect_uri("https://app.vendor.example/hubspot/callback")
        .redirect_uri("http://localhost:8080/cb")
        .required_scopes(["crm.objects.contacts.read"])
        .conditionally_required_scopes(["crm.objects.companies.read"])
        .optional_scopes(["crm.objects.deals.read"]);
    let fake = FakeHubSpot::builder().app(app).clock(Arc::new(clock.clone())).start().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = |pairs: &[(&str, &str)]| {
        let mut url = url::Url::parse(&format!("{}/oauth/authorize", fake.uri())).unwrap();
        url.query_pairs_mut().extend_pairs(pairs);
        url
    };
    let good: Vec<(&'static str, &'static str)> = vec![
        ("client_id", "client-7"),
        ("redirect_uri", "https://app.vendor.example/hubspot/callback"),
        ("scope", "oauth crm.objects.contacts.read"),
        ("optional_scope", "crm.objects.deals.read"),
        ("state", "s-1"),
    ];
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut pairs: Vec<(&'static str, &'static str)> = good.iter().copied().filter(|(k, _)| *k != name).collect();
        if let Some(v) = value {
            pairs.push((name, v));
        }
        pairs
    };
    type Pairs = Vec<(&'static str, &'static str)>;
    let refusals: Vec<(&str, Pairs, &str)> = vec![
        ("no client_id", with("client_id", None), "client_id"),
        ("an unknown client_id", with("client_id", Some("someone-else")), "client_id"),
        ("no redirect_uri", with("redirect_uri", None), "redirect_uri"),
        ("an unregistered redirect_uri", with("redirect_uri", Some("https://evil.example/cb")), "registered"),
        (
            "a registered one with another path",
            with("redirect_uri", Some("https://app.vendor.example/other")),
            "registered",
        ),
        ("a malformed redirect_uri", with("redirect_uri", Some("not a url")), "redirect_uri"),
        ("an IP address", with("redirect_uri", Some("http://127.0.0.1:8080/cb")), "IP address"),
        ("plain http off localhost", with("redirect_uri", Some("http://app.vendor.example/hubspot/callback")), "https"),
        ("no scope", with("scope", None), "scope"),
        ("an undeclared scope", with("scope", Some("oauth crm.objects.contacts.read made.up")), "made.up"),
        ("an undeclared optional scope", with("optional_scope", Some("crm.objects.line_items.read")), "mismatch"),
        (
            "an optional scope in scope",
            with("scope", Some("oauth crm.objects.contacts.read crm.objects.deals.read")),
            "mismatch between the scopes",
        ),
        (
            "a conditionally required scope in optional_scope",
            with("optional_scope", Some("crm.objects.companies.read")),
            "mismatch between the scopes",
        ),
        ("a required scope missing", with("scope", Some("oauth")), "provided scopes are insufficient"),
        (
            "a required scope only optional",
            vec![
                ("client_id", "client-7"),
                ("redirect_uri", "https://app.vendor.example/hubspot/callback"),
                ("scope", "oauth"),
                ("optional_scope", "crm.objects.contacts.read crm.objects.deals.read"),
            ],
            "missing: crm.objects.contacts.read",
        ),
        ("no oauth", with("scope", Some("crm.objects.contacts.read")), "oauth"),
    ];
    for (what, pairs, says) in refusals {
        let answer = http.get(url(&pairs)).send().await.unwrap();
        assert_eq!(answer.status(), 400, "{what}");
        assert!(answer.headers().get("location").is_none(), "{what}: nothing is redirected");
        let content_type = answer.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/html"), "{what}: {content_type}");
        let page = answer.text().await.unwrap();
        assert!(page.contains(says), "{what}: {page}");
        assert!(!page.contains("code="), "{what}: {page}");
        let err = fake.consent(url(&pairs).as_str()).await.unwrap_err();
        assert!(matches!(err, FakeError::NoRedirect { status: 400, .. }), "{what}: {err}");
        assert_eq!(fake.codes_issued(), 0, "{what}: no code issued");
    }
    // The same request, well formed, gets a code; so does the other registered URL, and a conditionally required
    // scope in `scope` (or left out).
    let callback = fake.consent(url(&good).as_str()).await.unwrap();
    assert!(callback.as_str().starts_with("https://app.vendor.example/hubspot/callback?code="), "{callback}");
    let local = with("redirect_uri", Some("http://localhost:8080/cb"));
    assert!(fake.consent(url(&local).as_str()).await.is_ok());
    let conditional = with("scope", Some("oauth crm.objects.contacts.read crm.objects.companies.read"));
    assert!(fake.consent(url(&conditional).as_str()).await.is_ok());
    assert!(fake.consent(url(&with("optional_scope", None)).as_str()).await.is_ok());
    assert_eq!(fake.codes_issued(), 4);
}

#[tokio::test]
async fn the_app_registration_is_shown_and_serialized_without_leaking_in_debug() {
    let fake = FakeHubSpot::start().await;
    let app = fake.app().clone();
    assert_eq!(app.client_id, fake.client_id());
    assert_eq!(app.redirect_uris, [fake.redirect_uri()]);
    assert_eq!(app.required_scopes, ["oauth"]);
    assert!(app.declares("crm.objects.contacts.read") && !app.declares("made.up"));
    assert!(!format!("{app:?}").contains(fake.client_secret()));
    assert!(!format!("{fake:?}").contains(fake.client_secret()));
    let printed = serde_json::to_value(&app).unwrap();
    assert_eq!(printed["client_secret"], fake.client_secret());
    assert_eq!(printed["redirect_uris"], json!([fake.redirect_uri()]));
}

#[tokio::test]
async fn consent_sends_hubspots_own_login_host_to_the_fake() {
    let w = world().await;
    let url = w.authorize_url(&Authorize::default());
    let real = url.as_str().replace(&w.fake.uri(), "https://app.hubspot.com");
    let callback = w.fake.consent(&real).await.unwrap();
    assert!(param(&callback, "code").is_some());
    let eu = url.as_str().replace(&w.fake.uri(), "https://app-eu1.hubspot.com");
    assert!(w.fake.consent(&eu).await.is_ok());
}

// ---- inspection ----

#[tokio::test]
async fn requests_and_forms_are_recorded() {
    let w = world().await;
    assert_eq!(w.fake.last_form(Endpoint::TokenV1), None);
    let code = w.code().await;
    let authorize = w.fake.last_form(Endpoint::Authorize).unwrap();
    assert!(authorize.contains(&("state".into(), "state-42".into())));
    let (_, t) = w.exchange_at("/oauth/v1/token", &code, Some(VERIFIER), w.fake.redirect_uri()).await;
    let form = w.fake.last_form(Endpoint::TokenV1).unwrap();
    assert_eq!(form[0], ("grant_type".to_owned(), "authorization_code".to_owned()));
    assert!(form.contains(&("code_verifier".into(), VERIFIER.into())));
    let refresh = t["refresh_token"].as_str().unwrap();
    w.fake.fail(Endpoint::Token202603, Failure::ServerError, 1);
    w.refresh(refresh).await;
    w.refresh(refresh).await;
    assert_eq!(w.fake.requests(Endpoint::TokenV1), 1);
    assert_eq!(w.fake.requests(Endpoint::Token202603), 2, "the failed one counts too");
    assert_eq!(w.fake.token_requests(), 3);
    assert_eq!(w.fake.requests(Endpoint::Authorize), 1);
    assert_eq!(w.fake.requests(Endpoint::Introspect202603), 0);

    let _ = w.raw_get(&format!("/oauth/v1/refresh-tokens/{refresh}?probe=1")).await;
    assert_eq!(w.fake.requests(Endpoint::RefreshTokenInfoV1), 1);
    assert_eq!(w.fake.last_form(Endpoint::RefreshTokenInfoV1).unwrap(), [("probe".to_owned(), "1".to_owned())]);

    w.fake.reset_counts();
    assert_eq!(w.fake.token_requests(), 0);
    assert_eq!(w.fake.requests(Endpoint::Authorize), 0);
    assert!(w.fake.last_form(Endpoint::TokenV1).is_some(), "forms are kept");
}

#[tokio::test]
async fn clones_share_one_server_and_extra_mocks_can_be_mounted() {
    let w = world().await;
    let clone = w.fake.clone();
    clone.set_rotation(Rotation::Omit);
    let (_, refresh) = w.connect().await;
    assert!(w.refresh(&refresh).await.1.get("refresh_token").is_none());
    assert_eq!(clone.token_requests(), 2);
    assert_eq!(clone.uri(), w.fake.uri());
    let shown = format!("{:?}", w.fake);
    assert!(shown.contains("FakeHubSpot") && !shown.contains(w.fake.client_secret()), "{shown}");

    // A route the fake does not play (it plays `/crm/v3/objects/...` itself).
    wiremock::Mock::given(wiremock::matchers::path("/crm/v3/owners"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .mount(w.fake.server())
        .await;
    assert_eq!(w.raw_get("/crm/v3/owners").await.status(), 200);
}

#[tokio::test]
async fn the_connector_builder_targets_the_fake() {
    let w = world().await;
    let connector = w.fake.connector_builder().build().unwrap();
    assert_eq!(connector.client_id(), w.fake.client_id());
    assert_eq!(connector.redirect_uri().as_str(), w.fake.redirect_uri());
    assert!(connector.api_base().as_str().starts_with(&w.fake.uri()));
}

/// Dropping the fake from a task whose cooperative budget is spent must not spin: wiremock's `Drop` blocks on an
/// async verification, whose tokio locks answer `Pending` to a task without budget. Run on a thread of its own so a
/// regression fails the test instead of hanging the suite.
#[test]
fn dropping_the_fake_from_a_task_without_budget_returns() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let fake = FakeHubSpot::start().await;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            for _ in 0..1_000 {
                tx.send(()).unwrap();
            }
            let mut fake = Some(fake);
            std::future::poll_fn(|cx| {
                // Receive ready messages until tokio says the budget is spent, then drop the fake in that same poll.
                while tokio::task::coop::has_budget_remaining() {
                    let _ = rx.poll_recv(cx);
                }
                drop(fake.take());
                std::task::Poll::Ready(())
            })
            .await;
        });
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(30)).is_ok(),
        "dropping FakeHubSpot from a task with no cooperative budget left never returned"
    );
}

// ---- endpoint generations, grants, bad input ----

#[tokio::test]
async fn the_v3_generation_serves_token_introspect_and_revoke() {
    let w = world().await;
    let code = w.code().await;
    let (status, tokens) = w.exchange_at("/oauth/v3/token", &code, Some(VERIFIER), w.fake.redirect_uri()).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["hub_id"], 62515);
    assert_eq!(tokens["token_use"], "access_token");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(w.refresh_at("/oauth/v3/token", refresh).await.0, 200);
    assert_eq!(w.fake.requests(Endpoint::TokenV3), 2);
    assert_eq!(w.fake.token_requests(), 2);

    let (id, secret) = (w.fake.client_id(), w.fake.client_secret());
    let form = [("client_id", id), ("client_secret", secret), ("token", access)];
    let (status, info) = w.post("/oauth/v3/token/introspect", &form).await;
    assert_eq!((status, info["active"].clone(), info["hub_id"].clone()), (200, json!(true), json!(62515)));
    assert_eq!(w.fake.requests(Endpoint::IntrospectV3), 1);
    let form = [("client_id", id), ("client_secret", secret), ("token", refresh), ("token_type_hint", "refresh_token")];
    assert_eq!(w.post("/oauth/v3/token/revoke", &form).await.0, 200);
    assert_eq!(w.fake.requests(Endpoint::RevokeV3), 1);
    assert_token_error(&w.refresh_at("/oauth/v3/token", refresh).await, "invalid_grant", "BAD_REFRESH_TOKEN");
}

#[tokio::test]
async fn client_credentials_give_an_app_level_token_without_refresh_token() {
    let w = world().await;
    for path in ["/oauth/v1/token", "/oauth/v3/token", "/oauth/2026-03/token"] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", w.fake.client_id()),
            ("client_secret", w.fake.client_secret()),
            ("scope", "developer.webhooks_journal.read developer.webhooks_journal.subscriptions.read"),
        ];
        let (status, body) = w.post(path, &form).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.get("refresh_token").is_none(), "{path}: {body}");
        assert!(body.get("hub_id").is_none(), "{path}: {body}");
        assert_eq!(body["token_use"], "client_credentials");
        assert_eq!(body["expires_in"], 1800);
        assert_eq!(
            body["scopes"],
            json!(["developer.webhooks_journal.read", "developer.webhooks_journal.subscriptions.read"])
        );
        // Not a portal's token.
        assert_eq!(w.account(body["access_token"].as_str().unwrap()).await.0, 401);

        let mut bad = form;
        bad[3] = ("scope", "crm.objects.contacts.read");
        assert_token_error(&w.post(path, &bad).await, "invalid_scope", "BAD_SCOPE");
        let mut wrong = form;
        wrong[2] = ("client_secret", "nope");
        assert_token_error(&w.post(path, &wrong).await, "invalid_client", "BAD_CLIENT_ID");
    }
    let (status, all) = w
        .post(
            "/oauth/2026-03/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", w.fake.client_id()),
                ("client_secret", w.fake.client_secret()),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(all["scopes"].as_array().unwrap().len(), AppRegistration::JOURNAL_SCOPES.len(), "{all}");
}

#[tokio::test]
async fn account_info_requires_the_oauth_scope() {
    let w = world().await;
    let without = w.fake.issue(62515, &["crm.objects.contacts.read"]);
    let (status, body) = w.account(&without.access_token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["category"], "MISSING_SCOPES");
    assert_eq!(body["errors"][0]["context"]["requiredGranularScopes"], json!(["oauth"]));
    let with = w.fake.issue(62515, &["oauth"]);
    assert_eq!(w.account(&with.access_token).await.0, 200);
}

#[tokio::test]
async fn unrouted_paths_and_bad_input_get_hubspots_error_shapes() {
    let w = world().await;
    for (method, path) in [("GET", "/nope"), ("POST", "/oauth/v2/token"), ("DELETE", "/crm/v3/objects"), ("PUT", "/")] {
        let answer = w.http.request(method.parse().unwrap(), w.url(path)).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{method} {path}");
        assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let body = parse(&answer.bytes().await.unwrap());
        assert_eq!((body["status"].as_str(), body["category"].as_str()), (Some("error"), Some("OBJECT_NOT_FOUND")));
        assert!(body["correlationId"].is_string(), "{body}");
    }

    // Credentials in the query string of 2026-03 and v3: refused, nothing used up.
    let code = w.code().await;
    for path in ["/oauth/2026-03/token", "/oauth/v3/token", "/oauth/v3/token/introspect", "/oauth/2026-03/token/revoke"]
    {
        let query = format!("{path}?client_secret={}&code={code}", w.fake.client_secret());
        let answer = w
            .http
            .post(w.url(&query))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=authorization_code")
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        assert_token_error(&(status, parse(&answer.bytes().await.unwrap())), "invalid_request", "BAD_REQUEST");
    }
    assert_eq!(w.exchange(&code).await.0, 200, "the code was not used up");

    // A huge body, a malformed form, a form where JSON belongs, a JSON body where a form belongs.
    let huge = vec![b'a'; (1 << 20) + 1];
    let access = w.fake.issue(62515, &["oauth", "crm.objects.contacts.write"]).access_token;
    for path in ["/oauth/2026-03/token", "/crm/v3/objects/contacts", "/crm/v3/objects/contacts/search"] {
        let answer = w.http.post(w.url(path)).bearer_auth(&access).body(huge.clone()).send().await.unwrap();
        assert_eq!(answer.status(), 413, "{path}");
        let body = parse(&answer.bytes().await.unwrap());
        assert_eq!(body["status"], "error");
    }
    let malformed = w
        .http
        .post(w.url("/oauth/v3/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'%', 0xff, b'=', b'&', b'=', 0xfe])
        .send()
        .await
        .unwrap();
    let status = malformed.status().as_u16();
    assert_token_error(&(status, parse(&malformed.bytes().await.unwrap())), "unsupported_grant_type", "BAD_GRANT_TYPE");
    let json_token = w
        .http
        .post(w.url("/oauth/v3/token"))
        .header("content-type", "application/json")
        .body(json!({"grant_type": "refresh_token"}).to_string())
        .send()
        .await
        .unwrap();
    let status = json_token.status().as_u16();
    assert_token_error(
        &(status, parse(&json_token.bytes().await.unwrap())),
        "unsupported_grant_type",
        "BAD_GRANT_TYPE",
    );
    for (content_type, body) in [("application/json", "{\"properties\":"), ("text/plain", "{\"properties\":{}}")] {
        let answer = w
            .http
            .post(w.url("/crm/v3/objects/contacts"))
            .bearer_auth(&access)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        assert!(status == 400 || status == 415, "{content_type}: {status}");
        assert_eq!(parse(&answer.bytes().await.unwrap())["status"], "error", "{content_type}");
    }
}

// ---- the CRM, strictly ----

struct Crm {
    w: World,
    token: String,
}

impl Crm {
    async fn new() -> Crm {
        let w = world().await;
        w.fake.set_rate_limit(None);
        w.fake.set_search_rate_limit(None);
        let scopes = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.companies.read"];
        let token = w.fake.issue(62515, &scopes).access_token;
        Crm { w, token }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.w.http.request(method.parse().unwrap(), self.w.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, parse(&answer.bytes().await.unwrap()))
    }

    async fn create(&self, properties: Value) -> (u16, Value) {
        self.send("POST", "/crm/v3/objects/contacts", Some(json!({ "properties": properties }))).await
    }

    async fn search(&self, body: Value) -> (u16, Value) {
        self.send("POST", "/crm/v3/objects/contacts/search", Some(body)).await
    }
}

#[tokio::test]
async fn crm_create_checks_properties_emails_and_duplicates() {
    let c = Crm::new().await;
    let (status, body) = c.create(json!({"email": "new@example.com", "shoe_size": "44"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert!(body["message"].as_str().unwrap().contains("PROPERTY_DOESNT_EXIST"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("shoe_size"), "{body}");
    assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");

    let (status, body) = c.create(json!({"email": "not-an-email"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("INVALID_EMAIL"), "{body}");
    assert_eq!(c.w.fake.objects(62515, "contacts"), 3, "nothing created");

    let (status, first) = c.create(json!({"email": "new@example.com", "firstname": "Ada"})).await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = c.create(json!({"email": "NEW@example.com"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["category"], "CONFLICT");
    let id = first["id"].as_str().unwrap();
    assert_eq!(body["message"], format!("Contact already exists. Existing ID: {id}"));
    assert_eq!(c.w.fake.objects(62515, "contacts"), 4);

    // A property the portal has (added in HubSpot's UI) is accepted.
    c.w.fake.add_property("contacts", "shoe_size");
    assert_eq!(c.create(json!({"email": "b@example.com", "shoe_size": "44"})).await.0, 201);
}

#[tokio::test]
async fn crm_search_honours_sorts_and_refuses_what_hubspot_refuses() {
    let c = Crm::new().await;
    let (status, body) = c
        .search(
            json!({"sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}], "properties": ["firstname"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["results"].as_array().unwrap().iter().map(|r| r["properties"]["firstname"].as_str().unwrap()).collect();
    assert_eq!(names, ["Maria", "Jane", "Brian"]);
    let (_, body) = c.search(json!({"sorts": ["firstname"], "properties": ["firstname"]})).await;
    assert_eq!(body["results"][0]["properties"]["firstname"], "Brian");

    let filter = |op: &str| json!({"propertyName": "firstname", "operator": op, "value": "Jane"});
    let group = |n: usize| json!({"filters": vec![filter("EQ"); n]});
    let refused = [
        ("an unknown operator", json!({"filterGroups": [{"filters": [filter("LIKE")]}]}), "LIKE"),
        (
            "no operator",
            json!({"filterGroups": [{"filters": [{"propertyName": "firstname", "value": "x"}]}]}),
            "operator",
        ),
        ("6 filter groups", json!({"filterGroups": vec![group(1); 6]}), "filter groups"),
        ("7 filters in a group", json!({"filterGroups": [group(7)]}), "filters"),
        ("19 filters in all", json!({"filterGroups": [group(6), group(6), group(6), group(1)]}), "filters"),
        ("paging past 10,000", json!({"after": "9950", "limit": 100}), "10000"),
        ("two sorts", json!({"sorts": ["firstname", "lastname"]}), "sort"),
        ("a bad direction", json!({"sorts": [{"propertyName": "firstname", "direction": "UP"}]}), "UP"),
    ];
    for (what, body, says) in refused {
        let (status, answer) = c.search(body).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["category"], "VALIDATION_ERROR", "{what}");
        assert!(answer["message"].as_str().unwrap().contains(says), "{what}: {answer}");
    }
    let (status, body) = c.search(json!({"filterGroups": vec![group(6); 3]})).await;
    assert_eq!((status, body["total"].clone()), (200, json!(1)), "3 groups of 6 filters, 18 in all, are fine");
    let between = json!({"propertyName": "hs_object_id", "operator": "BETWEEN", "value": "101", "highValue": "102"});
    let (_, body) = c.search(json!({"filterGroups": [{"filters": [between]}]})).await;
    assert_eq!(body["total"], 2, "{body}");
}

#[tokio::test]
async fn crm_reads_honour_id_property_archived_properties_and_associations() {
    let c = Crm::new().await;
    let (status, jane) = c.send("GET", "/crm/v3/objects/contacts/jane.doe@example.com?idProperty=email", None).await;
    assert_eq!(status, 200, "{jane}");
    assert_eq!(jane["properties"]["email"], "jane.doe@example.com");
    let id = jane["id"].as_str().unwrap().to_owned();
    let (status, _) = c.send("GET", "/crm/v3/objects/contacts/nobody@example.com?idProperty=email", None).await;
    assert_eq!(status, 404);
    let (status, body) = c.send("GET", "/crm/v3/objects/contacts/x?idProperty=shoe_size", None).await;
    assert_eq!(status, 400, "{body}");

    // properties: the named ones (unknown ones left out) and the three HubSpot always sends.
    let (_, one) = c.send("GET", &format!("/crm/v3/objects/contacts/{id}?properties=firstname,shoe_size"), None).await;
    let mut names: Vec<&String> = one["properties"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["createdate", "firstname", "hs_object_id", "lastmodifieddate"]);

    // associations
    let company = c.w.fake.add_object(62515, "companies", &[("name", "Acme"), ("domain", "acme.example")]).unwrap();
    assert!(c.w.fake.associate(62515, "contacts", &id, "companies", &company));
    let (_, one) = c.send("GET", &format!("/crm/v3/objects/contacts/{id}?associations=companies,deals"), None).await;
    assert_eq!(one["associations"]["companies"]["results"], json!([{"id": company, "type": "contact_to_company"}]));
    assert!(one["associations"].get("deals").is_none(), "{one}");
    let (_, list) = c.send("GET", "/crm/v3/objects/contacts?associations=companies", None).await;
    let with: Vec<&Value> =
        list["results"].as_array().unwrap().iter().filter(|r| r.get("associations").is_some()).collect();
    assert_eq!(with.len(), 1, "{list}");
    let (_, plain) = c.send("GET", &format!("/crm/v3/objects/contacts/{id}"), None).await;
    assert!(plain.get("associations").is_none());

    // archived
    assert!(c.w.fake.archive_object(62515, "contacts", &id));
    let (status, _) = c.send("GET", &format!("/crm/v3/objects/contacts/{id}"), None).await;
    assert_eq!(status, 404, "an archived object is not found unless archived=true");
    let (status, gone) = c.send("GET", &format!("/crm/v3/objects/contacts/{id}?archived=true"), None).await;
    assert_eq!((status, gone["archived"].clone()), (200, json!(true)), "{gone}");
    assert!(gone["archivedAt"].is_string(), "{gone}");
    let (_, live) = c.send("GET", "/crm/v3/objects/contacts", None).await;
    assert_eq!(live["results"].as_array().unwrap().len(), 2);
    let (_, archived) = c.send("GET", "/crm/v3/objects/contacts?archived=true", None).await;
    assert_eq!(archived["results"].as_array().unwrap().len(), 1);
    let (_, found) = c.search(json!({})).await;
    assert_eq!(found["total"], 2, "search never finds archived objects");
    let (status, _) = c.send("GET", "/crm/v3/objects/contacts?archived=maybe", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_token_in_the_query_string_of_2026_03_account_info_is_refused() {
    let w = world().await;
    let access = w.fake.issue(62515, &["oauth"]).access_token;
    let answer = w
        .http
        .get(w.url(&format!("/account-info/2026-03/details?access_token={access}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let body = parse(&answer.bytes().await.unwrap());
    assert_eq!((body["status"].as_str(), body["category"].as_str()), (Some("error"), Some("VALIDATION_ERROR")));
    // v3 account info is not a 2026-03 endpoint: the bearer header still counts there.
    let answer =
        w.http.get(w.url(&format!("/account-info/v3/details?x={access}"))).bearer_auth(&access).send().await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn token_requests_are_counted_by_grant_type() {
    let w = world().await;
    let (_, refresh) = w.connect().await;
    w.refresh(&refresh).await;
    w.refresh_at("/oauth/v3/token", &refresh).await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", w.fake.client_id()),
        ("client_secret", w.fake.client_secret()),
    ];
    w.post("/oauth/v1/token", &form).await;
    assert_eq!(w.fake.grant_requests("authorization_code"), 1);
    assert_eq!(w.fake.grant_requests("refresh_token"), 2);
    assert_eq!(w.fake.grant_requests("client_credentials"), 1);
    assert_eq!(w.fake.grant_requests("password"), 0);
    assert_eq!(w.fake.token_requests(), 4);
    w.fake.reset_counts();
    assert_eq!(w.fake.grant_requests("refresh_token"), 0);
}
