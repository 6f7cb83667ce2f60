//! The fake HubSpot's answers against schemas of the fields and types HubSpot answers with, checked by a small
//! OpenAPI 3.0 schema validator written here.
//!
//! The schemas are the project's own (`tests/schemas/`: only the fields the fake must answer, types only). HubSpot's
//! OpenAPI specs are proprietary and not shipped; set `HUBCONNECT_SPECS_DIR` to a folder holding them (same file
//! names) to check the fake against HubSpot's own specs instead: `.ci/run` does so with `../shared/reference/specs`
//! when that folder is present, so drift from HubSpot is still caught.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hubspot_connect::ManualClock;
use hubspot_connect::testing::{Endpoint, Failure, FakeAccountType, FakeHubSpot, FakePortal};
use serde_json::{Value, json};
use sha2::Digest as _;

const SPEC_FILES: [&str; 5] =
    ["account-info-2026-03.json", "account-info-v3.json", "oauth-2026-03.json", "oauth-v1.json", "oauth-v3.json"];

/// Where the schemas come from: `HUBCONNECT_SPECS_DIR` (HubSpot's specs), else the project's own.
fn schema_dir() -> PathBuf {
    match std::env::var_os("HUBCONNECT_SPECS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas"),
    }
}

/// Whether the schemas are HubSpot's own specs (with their paths and examples).
fn hubspot_specs() -> bool {
    std::env::var_os("HUBCONNECT_SPECS_DIR").is_some_and(|d| !d.is_empty())
}

// ---------------------------------------------------------------------------------------------------------------
// The validator
// ---------------------------------------------------------------------------------------------------------------

/// One spec document, to validate values against its `#/components/schemas/...`.
struct Spec {
    name: &'static str,
    doc: Value,
}

impl Spec {
    fn load(name: &'static str) -> Spec {
        let path = schema_dir().join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Spec { name, doc: serde_json::from_str(&text).unwrap() }
    }

    fn schema(&self, name: &str) -> &Value {
        let schema = &self.doc["components"]["schemas"][name];
        assert!(schema.is_object(), "{}: no schema {name}", self.name);
        schema
    }

    /// The problems of `value` against the named component schema (empty when it conforms).
    fn problems(&self, schema_name: &str, value: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        self.check(self.schema(schema_name), value, "$", &mut problems);
        problems
    }

    /// Asserts that `value` conforms to the named component schema.
    #[track_caller]
    fn assert_valid(&self, schema_name: &str, value: &Value) {
        let problems = self.problems(schema_name, value);
        assert!(problems.is_empty(), "{} {schema_name}: {problems:#?}\nvalue: {value:#}", self.name);
    }

    fn resolve<'a>(&'a self, reference: &str) -> &'a Value {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{}: unsupported $ref {reference}", self.name));
        self.schema(name)
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return self.check(self.resolve(reference), value, at, problems);
        }
        if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
            let mut matched = Vec::new();
            let mut failures = Vec::new();
            for (i, choice) in choices.iter().enumerate() {
                let mut p = Vec::new();
                self.check(choice, value, at, &mut p);
                if p.is_empty() {
                    matched.push(choice.get("$ref").and_then(Value::as_str).map_or(format!("#{i}"), str::to_owned));
                } else {
                    failures.push(p);
                }
            }
            if matched.len() != 1 {
                problems.push(format!(
                    "{at}: oneOf must match exactly one schema, matched {matched:?}; the others failed with {failures:?}"
                ));
            }
        }
        if let Some(kind) = schema.get("type").and_then(Value::as_str) {
            let ok = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "boolean" => value.is_boolean(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                other => panic!("{}: unsupported type {other}", self.name),
            };
            if !ok {
                problems.push(format!("{at}: expected {kind}, got {value}"));
                return;
            }
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            let in_range = match format {
                "int32" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "int64" => value.as_i64().is_some(),
                _ => true,
            };
            if !in_range {
                problems.push(format!("{at}: {value} is out of {format} range"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            problems.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if let Some(object) = value.as_object() {
            for field in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let field = field.as_str().unwrap();
                if !object.contains_key(field) {
                    problems.push(format!("{at}: missing required field {field}"));
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    if let Some(v) = object.get(name) {
                        self.check(property, v, &format!("{at}.{name}"), problems);
                    }
                }
            }
            // additionalProperties: ignored (HubSpot adds fields; so does the fake, e.g. `portalName`).
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{at}[{i}]"), problems);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Driving the fake with plain reqwest
// ---------------------------------------------------------------------------------------------------------------

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

struct Http {
    fake: FakeHubSpot,
    client: reqwest::Client,
}

impl Http {
    /// A fake on a manual clock, so `expires_in` is exact.
    async fn new() -> Http {
        Http::with(FakeHubSpot::start_with_clock(Arc::new(ManualClock::new())).await)
    }

    fn with(fake: FakeHubSpot) -> Http {
        Http { fake, client: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.uri())
    }

    /// Authorize (with PKCE) and consent; returns the code.
    async fn code(&self, portal: Option<u64>) -> String {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER));
        let path = match portal {
            Some(id) => format!("/oauth/{id}/authorize"),
            None => "/oauth/authorize".to_owned(),
        };
        let mut url = url::Url::parse(&self.url(&path)).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", self.fake.client_id())
            .append_pair("redirect_uri", self.fake.redirect_uri())
            .append_pair("scope", "oauth crm.objects.contacts.read")
            .append_pair("optional_scope", "crm.objects.deals.read")
            .append_pair("state", "s-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let callback = self.fake.consent(url.as_str()).await.unwrap();
        callback.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let body = serde_urlencoded::to_string(form).unwrap();
        let answer = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, parse(&answer.text().await.unwrap()))
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        (status, parse(&answer.text().await.unwrap()))
    }

    /// Exchanges a fresh code at the given token path; returns the token answer.
    async fn tokens(&self, token_path: &str, portal: Option<u64>) -> Value {
        let code = self.code(portal).await;
        let (status, body) = self
            .post_form(
                token_path,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", self.fake.redirect_uri()),
                    ("client_id", self.fake.client_id()),
                    ("client_secret", self.fake.client_secret()),
                    ("code_verifier", VERIFIER),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn introspect(&self, token: &str, hint: Option<&str>) -> (u16, Value) {
        let mut form =
            vec![("client_id", self.fake.client_id()), ("client_secret", self.fake.client_secret()), ("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        self.post_form("/oauth/2026-03/token/introspect", &form).await
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no string {field} in {v}"))
}

// ---------------------------------------------------------------------------------------------------------------
// The fake's answers against the specs
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn token_answers_match_token_response_if() {
    let h = Http::new().await;
    let v1 = h.tokens("/oauth/v1/token", None).await;
    Spec::load("oauth-v1.json").assert_valid("TokenResponseIF", &v1);
    Spec::load("oauth-v1.json").assert_valid("AccessTokenResponse", &v1);
    assert_eq!(v1["token_type"], "bearer");
    assert_eq!(v1["expires_in"], 1800);

    let v2026 = h.tokens("/oauth/2026-03/token", None).await;
    for spec in ["oauth-2026-03.json", "oauth-v3.json"] {
        Spec::load(spec).assert_valid("TokenResponseIF", &v2026);
        Spec::load(spec).assert_valid("AccessTokenResponse", &v2026);
    }
    assert_eq!(v2026["hub_id"], 62515);
    assert_eq!(v2026["user_id"], 123);
    assert_eq!(v2026["scopes"], json!(["oauth", "crm.objects.contacts.read", "crm.objects.deals.read"]));

    // The refresh answers too.
    let refresh = str_of(&v2026, "refresh_token").to_owned();
    for path in ["/oauth/v1/token", "/oauth/2026-03/token"] {
        let (status, body) = h
            .post_form(
                path,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("client_id", h.fake.client_id()),
                    ("client_secret", h.fake.client_secret()),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        Spec::load("oauth-2026-03.json").assert_valid("TokenResponseIF", &body);
    }
}

#[tokio::test]
async fn token_shapes_look_like_hubspots() {
    let h = Http::new().await;
    let t = h.tokens("/oauth/2026-03/token", None).await;
    let access = str_of(&t, "access_token");
    assert!(access.starts_with("CN") && access.len() <= 300, "{access}");
    let refresh = str_of(&t, "refresh_token");
    let groups: Vec<usize> = refresh.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{refresh}");
}

#[tokio::test]
async fn introspection_matches_token_info_response_base_if() {
    let h = Http::new().await;
    let t = h.tokens("/oauth/2026-03/token", None).await;
    let spec = Spec::load("oauth-2026-03.json");
    for hint in [Some("access_token"), None, Some("refresh_token")] {
        let (status, access) = h.introspect(str_of(&t, "access_token"), hint).await;
        assert_eq!(status, 200, "{access}");
        spec.assert_valid("TokenInfoResponseBaseIF", &access);
        spec.assert_valid("PublicAccessTokenInfoResponse", &access);
        assert!(!spec.problems("PublicRefreshTokenInfoResponse", &access).is_empty());
        spec.assert_valid("SignedAccessToken", &access["signed_access_token"]);
        assert_eq!(access["active"], true);
        assert_eq!(access["user"], "admin@example.com");
        assert_eq!(access["hub_domain"], "portal-62515.hubspot.com");
        assert_eq!(access["app_id"], h.fake.app_id());
        assert_eq!(access["client_id"], h.fake.client_id());
        assert_eq!(access["expires_in"], 1800);
    }
    for hint in [Some("refresh_token"), None, Some("access_token")] {
        let (status, refresh) = h.introspect(str_of(&t, "refresh_token"), hint).await;
        assert_eq!(status, 200, "{refresh}");
        spec.assert_valid("TokenInfoResponseBaseIF", &refresh);
        spec.assert_valid("PublicRefreshTokenInfoResponse", &refresh);
        assert!(!spec.problems("PublicAccessTokenInfoResponse", &refresh).is_empty());
        assert_eq!(refresh["token_use"], "refresh_token");
        assert_eq!(refresh["user"], "admin@example.com");
        assert!(refresh["hub_domain"].is_string());
    }
    // v3 is the same API under another path.
    let (_, access) = h.introspect(str_of(&t, "access_token"), None).await;
    Spec::load("oauth-v3.json").assert_valid("TokenInfoResponseBaseIF", &access);
}

#[tokio::test]
async fn v3_answers_match_the_v3_spec() {
    let h = Http::new().await;
    let spec = Spec::load("oauth-v3.json");
    let t = h.tokens("/oauth/v3/token", None).await;
    spec.assert_valid("TokenResponseIF", &t);
    spec.assert_valid("AccessTokenResponse", &t);
    let creds = [("client_id", h.fake.client_id()), ("client_secret", h.fake.client_secret())];
    let form = [creds[0], creds[1], ("token", str_of(&t, "access_token"))];
    let (status, access) = h.post_form("/oauth/v3/token/introspect", &form).await;
    assert_eq!(status, 200, "{access}");
    spec.assert_valid("TokenInfoResponseBaseIF", &access);
    spec.assert_valid("PublicAccessTokenInfoResponse", &access);
    let form = [creds[0], creds[1], ("token", str_of(&t, "refresh_token")), ("token_type_hint", "refresh_token")];
    let (status, refresh) = h.post_form("/oauth/v3/token/introspect", &form).await;
    assert_eq!(status, 200, "{refresh}");
    spec.assert_valid("PublicRefreshTokenInfoResponse", &refresh);
    // An error of the v3 token endpoint has the token-endpoint shape the other generations use.
    let (status, error) = h.post_form("/oauth/v3/token", &[("grant_type", "refresh_token")]).await;
    assert_eq!(status, 400);
    assert_eq!(error["status"], "BAD_CLIENT_ID");
}

#[tokio::test]
async fn client_credentials_answers_match_client_credentials_token_response() {
    let h = Http::new().await;
    for (path, spec) in [
        ("/oauth/v1/token", "oauth-v1.json"),
        ("/oauth/v3/token", "oauth-v3.json"),
        ("/oauth/2026-03/token", "oauth-2026-03.json"),
    ] {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", h.fake.client_id()),
            ("client_secret", h.fake.client_secret()),
            ("scope", "developer.webhooks_journal.read"),
        ];
        let (status, body) = h.post_form(path, &form).await;
        assert_eq!(status, 200, "{body}");
        let spec = Spec::load(spec);
        spec.assert_valid("ClientCredentialsTokenResponse", &body);
        spec.assert_valid("TokenResponseIF", &body);
        assert!(!spec.problems("AccessTokenResponse", &body).is_empty(), "no refresh token: {body}");
    }
}

#[tokio::test]
async fn the_json_404_matches_the_error_schema() {
    let h = Http::new().await;
    let (status, body) = h.get("/no/such/path", None).await;
    assert_eq!(status, 404);
    Spec::load("oauth-2026-03.json").assert_valid("Error", &body);
    Spec::load("account-info-v3.json").assert_valid("Error", &body);
}

#[tokio::test]
async fn v1_metadata_matches_the_v1_spec() {
    let h = Http::new().await;
    let t = h.tokens("/oauth/v1/token", None).await;
    let spec = Spec::load("oauth-v1.json");

    let (status, access) = h.get(&format!("/oauth/v1/access-tokens/{}", str_of(&t, "access_token")), None).await;
    assert_eq!(status, 200, "{access}");
    spec.assert_valid("AccessTokenInfoResponse", &access);
    assert_eq!(access["token_type"], "access");
    assert_eq!(access["user"], "admin@example.com");
    assert_eq!(access["hub_domain"], "portal-62515.hubspot.com");

    let (status, refresh) = h.get(&format!("/oauth/v1/refresh-tokens/{}", str_of(&t, "refresh_token")), None).await;
    assert_eq!(status, 200, "{refresh}");
    spec.assert_valid("RefreshTokenInfoResponse", &refresh);
    assert_eq!(refresh["token_type"], "refresh");
    assert_eq!(refresh["client_id"], h.fake.client_id());
    assert!(refresh.get("app_id").is_none() && refresh.get("expires_in").is_none());

    let (status, missing) = h.get("/oauth/v1/refresh-tokens/unknown", None).await;
    assert_eq!(status, 404);
    spec.assert_valid("Error", &missing);
    assert_eq!(missing["category"], "OBJECT_NOT_FOUND");
}

#[tokio::test]
async fn account_info_matches_portal_information_response() {
    let h = Http::new().await;
    h.fake.add_portal(FakePortal::new(4242).account_type(FakeAccountType::AppDeveloper).eu());
    h.fake.add_portal(FakePortal::new(777).account_type(FakeAccountType::Sandbox));
    h.fake.add_portal(FakePortal::new(778).account_type(FakeAccountType::DeveloperTest));
    let cases = [
        (None, 62515, "STANDARD"),
        (Some(4242), 4242, "APP_DEVELOPER"),
        (Some(777), 777, "SANDBOX"),
        (Some(778), 778, "DEVELOPER_TEST"),
    ];
    for (portal, id, account_type) in cases {
        let t = h.tokens("/oauth/2026-03/token", portal).await;
        for (path, spec) in [
            ("/account-info/v3/details", "account-info-v3.json"),
            ("/account-info/2026-03/details", "account-info-2026-03.json"),
        ] {
            let (status, info) = h.get(path, Some(str_of(&t, "access_token"))).await;
            assert_eq!(status, 200, "{info}");
            Spec::load(spec).assert_valid("PortalInformationResponse", &info);
            assert_eq!(info["portalId"], id);
            assert_eq!(info["accountType"], account_type);
        }
    }
    let t = h.tokens("/oauth/2026-03/token", Some(4242)).await;
    let (_, eu) = h.get("/account-info/v3/details", Some(str_of(&t, "access_token"))).await;
    assert_eq!(eu["dataHostingLocation"], "eu1");
    assert_eq!(eu["uiDomain"], "app-eu1.hubspot.com");
    assert_eq!(eu["utcOffset"], "-05:00");
    assert_eq!(eu["utcOffsetMilliseconds"], -18_000_000);
}

#[tokio::test]
async fn error_bodies_match_the_error_schema() {
    let clock = ManualClock::new();
    let h = Http::with(FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await);
    let t = h.tokens("/oauth/2026-03/token", None).await;
    let access = str_of(&t, "access_token").to_owned();
    clock.advance(Duration::from_secs(1800 + 7));
    let mut bodies = Vec::new();

    let (status, expired) = h.get("/account-info/v3/details", Some(&access)).await;
    assert_eq!(status, 401);
    assert_eq!(expired["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(expired["message"], "The OAuth token used to make this call expired 7 second(s) ago.");
    bodies.push(expired);
    let (status, unknown) = h.get("/account-info/2026-03/details", Some("CNunknown")).await;
    assert_eq!(status, 401);
    assert_eq!(unknown["category"], "INVALID_AUTHENTICATION");
    bodies.push(unknown);
    let (status, missing) = h.get("/account-info/2026-03/details", None).await;
    assert_eq!(status, 401);
    assert_eq!(missing["category"], "INVALID_AUTHENTICATION");
    bodies.push(missing);

    h.fake.fail(Endpoint::AccountInfo202603, Failure::ServerError, 1);
    let (status, server_error) = h.get("/account-info/2026-03/details", None).await;
    assert_eq!(status, 500);
    bodies.push(server_error);
    h.fake.fail(Endpoint::AccountInfo202603, Failure::TooManyRequests { retry_after: Some(1) }, 1);
    let (status, rate_limited) = h.get("/account-info/2026-03/details", None).await;
    assert_eq!(status, 429);
    bodies.push(rate_limited);

    for body in &bodies {
        for spec in SPEC_FILES {
            Spec::load(spec).assert_valid("Error", body);
        }
        let correlation = str_of(body, "correlationId");
        assert_eq!(correlation.split('-').count(), 5, "{correlation}");
    }
}

/// A CRM object as HubSpot writes it (`SimplePublicObject`): string id, string-or-null properties, ISO dates.
#[track_caller]
fn assert_crm_object(object: &Value) {
    let keys: Vec<&str> = object.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["archived", "createdAt", "id", "properties", "updatedAt"], "{object}");
    assert!(str_of(object, "id").chars().all(|c| c.is_ascii_digit()), "{object}");
    assert_eq!(object["archived"], false);
    for field in ["createdAt", "updatedAt"] {
        let date = str_of(object, field);
        assert!(date.len() == 24 && date.ends_with('Z') && &date[10..11] == "T", "{date}");
    }
    let properties = object["properties"].as_object().unwrap();
    assert!(properties.values().all(|v| v.is_string() || v.is_null()), "{object}");
    assert_eq!(properties["hs_object_id"], object["id"]);
}

#[tokio::test]
async fn crm_answers_have_hubspots_shapes() {
    let h = Http::new().await;
    let portal = 62515;
    let token =
        h.fake.issue(portal, &["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write"]).access_token;

    // A page, and the next one through `paging.next.after` and `link`.
    let (status, page) = h.get("/crm/v3/objects/contacts?limit=2", Some(&token)).await;
    assert_eq!(status, 200, "{page}");
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    results.iter().for_each(assert_crm_object);
    assert!(results[0]["properties"]["email"].is_string());
    let after = str_of(&page["paging"]["next"], "after");
    let link = str_of(&page["paging"]["next"], "link");
    assert!(link.starts_with(&h.fake.uri()) && link.contains(&format!("after={after}")), "{link}");
    let (_, rest) = h.get(&link[h.fake.uri().len()..], Some(&token)).await;
    assert_eq!(rest["results"].as_array().unwrap().len(), h.fake.objects(portal, "contacts") - 2);
    assert!(rest.get("paging").is_none(), "{rest}");

    // One object; a missing one is a 404 in the Error shape.
    let id = str_of(&results[0], "id");
    let (status, one) = h.get(&format!("/crm/v3/objects/contacts/{id}"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_crm_object(&one);
    assert_eq!(one, results[0]);
    let mut errors = Vec::new();
    let (status, missing) = h.get("/crm/v3/objects/contacts/999999", Some(&token)).await;
    assert_eq!((status, str_of(&missing, "category")), (404, "OBJECT_NOT_FOUND"));
    errors.push(missing);

    // Create (201) and search.
    let answer = h
        .client
        .post(h.url("/crm/v3/objects/contacts"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"properties": {"email": "new@example.com", "firstname": "New"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let created = parse(&answer.text().await.unwrap());
    assert_crm_object(&created);
    assert_eq!(created["properties"]["email"], "new@example.com");
    let filter = json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "new@example.com"}]}]});
    let answer = h
        .client
        .post(h.url("/crm/v3/objects/contacts/search"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(filter.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let found = parse(&answer.text().await.unwrap());
    assert_eq!(found["total"], 1);
    assert_eq!(found["results"][0]["id"], created["id"]);
    found["results"].as_array().unwrap().iter().for_each(assert_crm_object);

    // No token, a dead token, a missing scope.
    let (status, none) = h.get("/crm/v3/objects/contacts", None).await;
    assert_eq!((status, str_of(&none, "category")), (401, "INVALID_AUTHENTICATION"));
    assert!(str_of(&none, "message").starts_with("Authentication credentials not found"));
    errors.push(none);
    let (status, unknown) = h.get("/crm/v3/objects/contacts", Some("CNunknown")).await;
    assert_eq!((status, str_of(&unknown, "category")), (401, "INVALID_AUTHENTICATION"));
    errors.push(unknown);
    let (status, scopes) = h.get("/crm/v3/objects/deals", Some(&token)).await;
    assert_eq!((status, str_of(&scopes, "category")), (403, "MISSING_SCOPES"));
    assert_eq!(scopes["errors"][0]["context"]["requiredGranularScopes"], json!(["crm.objects.deals.read"]));
    errors.push(scopes);
    for body in &errors {
        Spec::load("account-info-v3.json").assert_valid("Error", body);
    }

    // The fake's own rate limit.
    h.fake.set_rate_limit(Some((1, Duration::from_secs(10))));
    let answer = h.client.get(h.url("/crm/v3/objects/contacts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(answer.status(), 429);
    assert_eq!(answer.headers()["x-hubspot-ratelimit-remaining"], "0");
    let limited = parse(&answer.text().await.unwrap());
    assert_eq!((str_of(&limited, "errorType"), str_of(&limited, "policyName")), ("RATE_LIMIT", "TEN_SECONDLY_ROLLING"));
    assert_eq!(h.fake.rate_limited_requests(), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// The copies and the validator itself
// ---------------------------------------------------------------------------------------------------------------

/// Finding 10: HubSpot's specs are not shipped; the project's schemas hold types, not HubSpot's text.
#[test]
fn the_projects_schemas_are_its_own() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!dir.join("tests/specs").exists(), "HubSpot's specs must not be in the crate");
    for name in SPEC_FILES {
        let text = std::fs::read_to_string(dir.join("tests/schemas").join(name)).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert!(doc.get("paths").is_none() && doc.get("info").is_none(), "{name}: only component schemas");
        for word in ["\"description\"", "\"example\"", "\"title\""] {
            assert!(!text.contains(word), "{name} holds {word}");
        }
    }
}

#[test]
fn every_spec_parses_and_has_the_schemas_used() {
    for name in SPEC_FILES {
        let spec = Spec::load(name);
        spec.schema("Error");
    }
    let v1 = Spec::load("oauth-v1.json");
    for name in ["TokenResponseIF", "AccessTokenInfoResponse", "RefreshTokenInfoResponse", "SignedAccessToken"] {
        v1.schema(name);
    }
}

fn good_portal() -> Value {
    json!({
        "portalId": 62515, "accountType": "STANDARD", "timeZone": "US/Eastern", "companyCurrency": "USD",
        "additionalCurrencies": [], "utcOffset": "-05:00", "utcOffsetMilliseconds": -18000000,
        "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"
    })
}

#[test]
fn the_validator_on_the_specs_own_example() {
    if !hubspot_specs() {
        return; // HubSpot's example is in HubSpot's spec only (HUBCONNECT_SPECS_DIR, set by .ci/run).
    }
    let spec = Spec::load("account-info-v3.json");
    spec.assert_valid("PortalInformationResponse", &good_portal());
    let example = &spec.doc["paths"]["/account-info/v3/details"]["get"]["responses"]["200"]["content"]["application/json"]
        ["example"];
    // The spec's own example lacks `accountType`, which its schema requires: the validator says exactly that.
    assert_eq!(spec.problems("PortalInformationResponse", example), ["$: missing required field accountType"]);
    let mut completed = example.clone();
    completed["accountType"] = json!("STANDARD");
    spec.assert_valid("PortalInformationResponse", &completed);
}

#[test]
fn the_validator_finds_a_missing_required_field() {
    let spec = Spec::load("account-info-v3.json");
    let mut v = good_portal();
    v.as_object_mut().unwrap().remove("uiDomain");
    let problems = spec.problems("PortalInformationResponse", &v);
    assert_eq!(problems, ["$: missing required field uiDomain"]);
}

#[test]
fn the_validator_finds_a_wrong_type() {
    let spec = Spec::load("account-info-v3.json");
    let mut v = good_portal();
    v["additionalCurrencies"] = json!("USD");
    assert!(!spec.problems("PortalInformationResponse", &v).is_empty());
    let mut v = good_portal();
    v["additionalCurrencies"] = json!(["USD", 5]);
    assert_eq!(spec.problems("PortalInformationResponse", &v), ["$.additionalCurrencies[1]: expected string, got 5"]);
    let mut v = good_portal();
    v["accountType"] = json!("PARTNER");
    assert_eq!(spec.problems("PortalInformationResponse", &v).len(), 1, "not in the enum");
    assert!(!spec.problems("PortalInformationResponse", &json!([good_portal()])).is_empty(), "not an object");
}

#[test]
fn the_validator_wants_integers_where_the_spec_says_integer() {
    let spec = Spec::load("account-info-v3.json");
    for bad in [json!("62515"), json!(62515.5), json!(1.0), json!(true), json!(null)] {
        let mut v = good_portal();
        v["portalId"] = bad.clone();
        assert!(!spec.problems("PortalInformationResponse", &v).is_empty(), "{bad} accepted as integer");
    }
    let mut v = good_portal();
    v["portalId"] = json!(3_000_000_000_u64);
    assert_eq!(spec.problems("PortalInformationResponse", &v), ["$.portalId: 3000000000 is out of int32 range"]);
    v["portalId"] = json!(62515);
    v["utcOffsetMilliseconds"] = json!(u64::MAX);
    assert!(!spec.problems("PortalInformationResponse", &v).is_empty(), "beyond int64");
}

#[test]
fn the_validator_wants_exactly_one_one_of_match() {
    let spec = Spec::load("oauth-2026-03.json");
    let access = json!({"access_token": "a", "expires_in": 1800, "refresh_token": "r", "token_type": "bearer",
                        "token_use": "access_token"});
    spec.assert_valid("TokenResponseIF", &access);
    let mut none = access.clone();
    none["token_use"] = json!("id_token");
    assert!(spec.problems("TokenResponseIF", &none)[0].contains("matched []"));
    let mut missing = access.clone();
    missing.as_object_mut().unwrap().remove("token_use");
    assert!(!spec.problems("TokenResponseIF", &missing).is_empty(), "v1's captured shape lacks token_use");
    let client_credentials = json!({"access_token": "a", "expires_in": 1800, "token_type": "bearer",
                                    "token_use": "client_credentials"});
    spec.assert_valid("TokenResponseIF", &client_credentials);
}

#[test]
fn the_validator_follows_refs_into_nested_objects() {
    let spec = Spec::load("oauth-v1.json");
    let info = json!({"token": "t", "hub_id": 1, "user_id": 2, "app_id": 3, "expires_in": 4, "scopes": ["oauth"],
                      "token_type": "access", "signed_access_token": {"appId": "3"}});
    let problems = spec.problems("AccessTokenInfoResponse", &info);
    assert!(problems.iter().any(|p| p == "$.signed_access_token.appId: expected integer, got \"3\""), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("missing required field hublet")), "{problems:?}");
}
