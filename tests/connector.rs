//! The HubSpot connector against the fake HubSpot: every operation on both endpoint generations, every error
//! mapping, and the bad answers a real network can bring.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::testing::{
    DeadIntrospection, Decline, Endpoint, ErrorStyle, Failure, FakeAccountType, FakeHubSpot, FakePortal, Rotation,
};
use hubspot_connect::{
    AccessToken, ClientSecret, Clock, Connector, ErrorCode, HubSpotConnector, ManualClock, RefreshToken, Scope, Scopes,
    connector::{AccountType, AuthorizeRequest, TokenSet},
    hubspot::{ApiVersion, RetryPolicy},
    scope::ScopeSet,
    secret::AuthorizationCode,
};

const BOTH: [ApiVersion; 3] = [ApiVersion::V2026_03, ApiVersion::V1, ApiVersion::V3];

struct Env {
    fake: FakeHubSpot,
    clock: ManualClock,
    hubspot: HubSpotConnector,
    version: ApiVersion,
}

async fn env(version: ApiVersion) -> Env {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let hubspot = fake.connector_builder().version(version).clock(Arc::new(clock.clone())).build().unwrap();
    Env { fake, clock, hubspot, version }
}

impl Env {
    fn token_endpoint(&self) -> Endpoint {
        match self.version {
            ApiVersion::V1 => Endpoint::TokenV1,
            ApiVersion::V3 => Endpoint::TokenV3,
            _ => Endpoint::Token202603,
        }
    }

    fn scopes() -> Scopes {
        Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read")
    }

    /// Authorize and consent; returns the code and the verifier.
    async fn consent(&self, request: AuthorizeRequest) -> (AuthorizationCode, hubspot_connect::secret::PkceVerifier) {
        let auth = self.hubspot.authorize_url(&request).unwrap();
        let callback = self.fake.consent(auth.url.as_str()).await.unwrap();
        let pairs: std::collections::HashMap<String, String> = callback.query_pairs().into_owned().collect();
        assert_eq!(pairs["state"], auth.state.secret(), "the state comes back unchanged");
        (AuthorizationCode::new(pairs["code"].clone()), auth.pkce_verifier)
    }

    async fn connect(&self) -> TokenSet {
        let (code, verifier) = self.consent(AuthorizeRequest::new(&Self::scopes())).await;
        self.hubspot.exchange_code(code, verifier).await.unwrap()
    }
}

/// Asserts that nothing secret from this test shows in an error.
fn assert_clean(err: &hubspot_connect::Error, secrets: &[&str]) {
    let shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(err);
    let mut chain = String::new();
    while let Some(s) = source {
        chain.push_str(&format!("{s} {s:?}"));
        source = s.source();
    }
    for secret in secrets {
        assert!(!shown.contains(secret), "secret in error: {shown}");
        assert!(!chain.contains(secret), "secret in error source: {chain}");
    }
}

#[tokio::test]
async fn the_whole_protocol_on_both_generations() {
    for version in BOTH {
        let e = env(version).await;
        e.fake.add_portal(FakePortal::new(777).account_type(FakeAccountType::Standard));
        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes()).portal(777)).await;
        let sent_at = e.clock.now();
        let tokens = e.hubspot.exchange_code(code, verifier).await.unwrap();
        assert_eq!(tokens.expires_at, sent_at + Duration::from_secs(1800), "{version}");
        assert_eq!(tokens.requested_at, sent_at);
        let refresh = tokens.refresh_token.clone().unwrap();

        let who = e.hubspot.identify(&tokens.access_token).await.unwrap();
        assert_eq!(who.portal_id, 777, "{version}");
        assert_eq!(who.user.as_deref(), Some("admin@example.com"));
        assert_eq!(who.user_id, Some(123));
        assert_eq!(who.app_id, Some(e.fake.app_id()));
        assert!(who.scopes.contains(&Scope::from_static("crm.objects.contacts.read")));
        assert!(who.scopes.contains(&Scope::from_static("crm.objects.deals.read")));
        assert_eq!(who.account_type(), Some(&AccountType::Standard));
        assert!(Env::scopes().check(&who.scopes).is_ok());

        e.clock.advance(Duration::from_secs(1700));
        let refreshed = e.hubspot.refresh(&refresh).await.unwrap();
        assert_ne!(refreshed.access_token.secret(), tokens.access_token.secret());
        assert_eq!(refreshed.expires_at, e.clock.now() + Duration::from_secs(1800));
        assert_eq!(refreshed.refresh_token.as_ref().unwrap().secret(), refresh.secret());

        let info = e.hubspot.introspect_refresh_token(&refresh).await.unwrap().unwrap();
        assert_eq!(info.portal_id, 777);

        assert!(e.hubspot.revoke(&refresh).await.unwrap(), "{version}");
        let err = e.hubspot.refresh(&refresh).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version}: {err}");
        assert_eq!(e.hubspot.introspect_refresh_token(&refresh).await.unwrap(), None, "{version}");
        assert_clean(&err, &[refresh.secret(), e.fake.client_secret()]);
    }
}

#[tokio::test]
async fn token_requests_carry_hubspots_fields() {
    for version in BOTH {
        let e = env(version).await;
        let tokens = e.connect().await;
        let form = e.fake.last_form(e.token_endpoint()).unwrap();
        let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
        for field in ["grant_type", "code", "redirect_uri", "client_id", "client_secret", "code_verifier"] {
            assert!(names.contains(&field), "{version}: {field} missing from {names:?}");
        }
        assert!(form.contains(&("grant_type".into(), "authorization_code".into())));
        assert!(form.contains(&("redirect_uri".into(), e.fake.redirect_uri().into())));
        // Every field is one HubSpot names for the token endpoint (the project's schema of its form).
        let spec: serde_json::Value = serde_json::from_str(include_str!("schemas/oauth-v1.json")).unwrap();
        let props = &spec["components"]["schemas"]["TokenRequest"]["properties"];
        assert!(props.as_object().is_some_and(|p| p.len() >= 6));
        for name in &names {
            assert!(props.get(*name).is_some(), "{version}: {name} is not a HubSpot token field");
        }

        e.hubspot.refresh(tokens.refresh_token.as_ref().unwrap()).await.unwrap();
        let form = e.fake.last_form(e.token_endpoint()).unwrap();
        assert!(form.contains(&("grant_type".into(), "refresh_token".into())));
        for name in form.iter().map(|(k, _)| k.as_str()) {
            assert!(props.get(name).is_some(), "{version}: {name} is not a HubSpot token field");
        }
    }
}

#[tokio::test]
async fn refused_scopes_are_named() {
    let e = env(ApiVersion::V2026_03).await;
    e.fake.refuse_scopes(&["crm.objects.contacts.read", "crm.objects.deals.read"]);
    let tokens = e.connect().await;
    let who = e.hubspot.identify(&tokens.access_token).await.unwrap();
    let missing = Env::scopes().check(&who.scopes).unwrap_err();
    assert_eq!(missing.scopes(), &[Scope::from_static("crm.objects.contacts.read")]);
}

#[tokio::test]
async fn developer_accounts_and_eu_accounts_are_reported() {
    for version in BOTH {
        let e = env(version).await;
        e.fake.add_portal(FakePortal::new(4242).account_type(FakeAccountType::AppDeveloper));
        e.fake.add_portal(FakePortal::new(5151).eu());
        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes()).portal(4242)).await;
        let t = e.hubspot.exchange_code(code, verifier).await.unwrap();
        let who = e.hubspot.identify(&t.access_token).await.unwrap();
        assert_eq!(who.account_type(), Some(&AccountType::AppDeveloper));

        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes()).portal(5151)).await;
        let t = e.hubspot.exchange_code(code, verifier).await.unwrap();
        let account = e.hubspot.account_info(&t.access_token).await.unwrap();
        assert!(account.is_eu(), "{version}");
        assert_eq!(account.ui_domain.as_deref(), Some("app-eu1.hubspot.com"));
    }
}

#[tokio::test]
async fn an_expired_or_reused_code_is_token_expired() {
    for version in BOTH {
        let e = env(version).await;
        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
        let code_text = code.secret().to_owned();
        e.clock.advance(Duration::from_secs(3600));
        let err = e.hubspot.exchange_code(code, verifier).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::TokenExpired, "{version}: {err}");
        assert!(err.message().contains("EXPIRED_AUTH_CODE"), "{err}");
        assert_clean(&err, &[&code_text, e.fake.client_secret()]);

        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
        let again = AuthorizationCode::new(code.secret());
        e.hubspot.exchange_code(code, verifier).await.unwrap();
        let (_, other_verifier) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
        let err = e.hubspot.exchange_code(again, other_verifier).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::TokenExpired, "{version}: {err}");
        assert!(err.message().contains("BAD_AUTH_CODE"), "{err}");
    }
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let e = env(ApiVersion::V2026_03).await;
    let (code, _) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
    let err =
        e.hubspot.exchange_code(code, hubspot_connect::secret::PkceVerifier::new("x".repeat(43))).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TokenExpired, "{err}");
}

#[tokio::test]
async fn client_and_redirect_errors_are_invalid_client() {
    for version in BOTH {
        let e = env(version).await;
        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
        let other_redirect = HubSpotConnector::builder(
            e.fake.client_id(),
            ClientSecret::new(e.fake.client_secret()),
            "http://localhost:9999/elsewhere",
        )
        .auth_base(e.fake.uri())
        .api_base(e.fake.uri())
        .version(version)
        .build()
        .unwrap();
        let err = other_redirect.exchange_code(code, verifier).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidClient, "{version}: {err}");
        assert!(err.message().contains("MISMATCH_REDIRECT_URI_AUTH_CODE"), "{err}");

        let wrong_secret = HubSpotConnector::builder(
            e.fake.client_id(),
            ClientSecret::new("CANARY-wrong-secret"),
            e.fake.redirect_uri(),
        )
        .api_base(e.fake.uri())
        .version(version)
        .build()
        .unwrap();
        let tokens = e.connect().await;
        let err = wrong_secret.refresh(tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidClient, "{version}: {err}");
        assert_clean(&err, &["CANARY-wrong-secret", tokens.refresh_token.as_ref().unwrap().secret()]);
    }
}

#[tokio::test]
async fn uninstall_and_removed_user_need_reconnecting_in_every_error_style() {
    for version in BOTH {
        for style in [ErrorStyle::Both, ErrorStyle::LegacyOnly, ErrorStyle::RfcOnly] {
            let e = env(version).await;
            e.fake.set_error_style(style);
            let tokens = e.connect().await;
            e.fake.uninstall(62515);
            let err = e.hubspot.refresh(tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version} {style:?}: {err}");
            assert!(!err.is_retryable());
            assert_eq!(e.fake.token_requests(), 2, "a refused refresh is not retried");

            let e = env(version).await;
            e.fake.set_error_style(style);
            let tokens = e.connect().await;
            e.fake.remove_user(123);
            let err = e.hubspot.refresh(tokens.refresh_token.as_ref().unwrap()).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version} {style:?}: {err}");
        }
    }
}

#[tokio::test]
async fn rotation_modes() {
    for version in BOTH {
        let e = env(version).await;
        e.fake.set_rotation(Rotation::Omit);
        let t = e.connect().await;
        let old = t.refresh_token.clone().unwrap();
        let r = e.hubspot.refresh(&old).await.unwrap();
        assert_eq!(r.refresh_token.as_ref().unwrap().secret(), old.secret(), "kept when none is returned");
        assert!(!r.refresh_token_rotated);

        e.fake.set_rotation(Rotation::Strict);
        let r1 = e.hubspot.refresh(&old).await.unwrap();
        assert!(r1.refresh_token_rotated);
        let new = r1.refresh_token.clone().unwrap();
        assert_ne!(new.secret(), old.secret());
        let r2 = e.hubspot.refresh(&new).await.unwrap();
        let newest = r2.refresh_token.clone().unwrap();
        let err = e.hubspot.refresh(&new).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version}: stale token under strict rotation");
        assert_eq!(e.fake.stale_refresh_presentations(), 1);
        let err = e.hubspot.refresh(&newest).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version}: the whole family is revoked");
    }
}

#[tokio::test]
async fn transient_failures_are_retried_with_injected_sleeps() {
    for version in BOTH {
        let e = env(version).await;
        let t = e.connect().await;
        let refresh = t.refresh_token.unwrap();
        let ep = e.token_endpoint();

        e.fake.reset_counts();
        e.fake.fail(ep, Failure::ServerError, 1);
        e.hubspot.refresh(&refresh).await.unwrap();
        assert_eq!(e.fake.requests(ep), 2, "{version}");
        assert_eq!(e.clock.sleeps().len(), 1);

        e.fake.reset_counts();
        e.fake.fail(ep, Failure::BadGatewayHtml, 3);
        let err = e.hubspot.refresh(&refresh).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{version}: {err}");
        assert_eq!(err.status(), Some(http::StatusCode::BAD_GATEWAY));
        assert!(err.is_retryable());
        assert_eq!(e.fake.requests(ep), 3, "one try and two retries");
        assert_eq!(e.clock.sleeps().len(), 3);
        let backoffs = &e.clock.sleeps()[1..];
        assert!(backoffs[0] >= Duration::from_millis(125) && backoffs[0] <= Duration::from_millis(250), "{backoffs:?}");
        assert!(backoffs[1] >= Duration::from_millis(250) && backoffs[1] <= Duration::from_millis(500), "{backoffs:?}");
    }
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let e = env(ApiVersion::V2026_03).await;
    let t = e.connect().await;
    let refresh = t.refresh_token.unwrap();
    let ep = e.token_endpoint();

    e.fake.fail(ep, Failure::TooManyRequests { retry_after: Some(3) }, 1);
    e.hubspot.refresh(&refresh).await.unwrap();
    assert_eq!(e.clock.sleeps(), vec![Duration::from_secs(3)]);

    e.fake.fail(ep, Failure::TooManyRequests { retry_after: None }, 1);
    e.hubspot.refresh(&refresh).await.unwrap();
    assert_eq!(e.clock.sleeps().len(), 2, "backs off without Retry-After");

    e.fake.reset_counts();
    e.fake.fail(ep, Failure::TooManyRequests { retry_after: Some(60) }, 1);
    let err = e.hubspot.refresh(&refresh).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(err.hubspot().unwrap().policy_name.as_deref(), Some("TEN_SECONDLY_ROLLING"));
    assert_eq!(e.fake.requests(ep), 1, "a long Retry-After is returned, not waited for");

    e.fake.fail(ep, Failure::TooManyRequests { retry_after: Some(1) }, 3);
    let err = e.hubspot.refresh(&refresh).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited);
}

#[tokio::test]
async fn a_code_exchange_is_never_retried() {
    for failure in [Failure::ServerError, Failure::TooManyRequests { retry_after: Some(1) }, Failure::BadGatewayHtml] {
        let e = env(ApiVersion::V2026_03).await;
        let (code, verifier) = e.consent(AuthorizeRequest::new(&Env::scopes())).await;
        e.fake.fail(e.token_endpoint(), failure, 1);
        let err = e.hubspot.exchange_code(code, verifier).await.unwrap_err();
        assert!(matches!(err.code(), ErrorCode::HubspotUnavailable | ErrorCode::RateLimited), "{err}");
        assert_eq!(e.fake.requests(e.token_endpoint()), 1);
        assert!(e.clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn slow_answers_time_out() {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let hubspot = fake
        .connector_builder()
        .clock(Arc::new(clock.clone()))
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::with_max_retries(1))
        .build()
        .unwrap();
    let issued = fake.issue(62515, &["oauth"]);
    fake.fail(Endpoint::Token202603, Failure::Slow(Duration::from_secs(3)), 2);
    let err = hubspot.refresh(&RefreshToken::new(issued.refresh_token.clone())).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable, "{err}");
    assert!(err.is_timeout());
    // A refresh HubSpot may have carried out is not sent again (refresh-token rotation would refuse the old token).
    assert_eq!(fake.requests(Endpoint::Token202603), 1);
    assert_clean(&err, &[&issued.refresh_token]);

    // A read that timed out is retried.
    fake.reset_failures();
    fake.fail(Endpoint::AccountInfo202603, Failure::Slow(Duration::from_secs(3)), 2);
    let err = hubspot.identify(&AccessToken::new(issued.access_token.clone())).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(fake.requests(Endpoint::AccountInfo202603), 2);
}

fn raw(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Failure {
    Failure::Status { status, content_type: content_type.into(), body: body.into() }
}

/// Every odd answer from the token endpoint gives a typed error, never a panic, never a secret in the text.
#[tokio::test]
async fn garbage_from_the_token_endpoint() {
    let json = "application/json";
    let cases: Vec<(&str, Failure, ErrorCode)> = vec![
        ("empty body", raw(200, json, ""), ErrorCode::HubspotUnavailable),
        ("html 200", raw(200, "text/html", "<html><body>Login</body></html>"), ErrorCode::HubspotUnavailable),
        ("html labelled json", raw(200, json, "<html>"), ErrorCode::HubspotUnavailable),
        (
            "missing access_token",
            raw(200, json, r#"{"token_type":"bearer","expires_in":1800}"#),
            ErrorCode::HubspotUnavailable,
        ),
        (
            "negative expires_in",
            raw(200, json, r#"{"access_token":"CANARY-AT","expires_in":-5}"#),
            ErrorCode::HubspotUnavailable,
        ),
        (
            "unknown token type",
            raw(200, json, r#"{"access_token":"CANARY-AT","token_type":"mac"}"#),
            ErrorCode::HubspotUnavailable,
        ),
        ("number as token", raw(200, json, r#"{"access_token":12345678}"#), ErrorCode::HubspotUnavailable),
        ("array", raw(200, json, "[1,2,3]"), ErrorCode::HubspotUnavailable),
        (
            "200 carrying an error",
            raw(
                200,
                json,
                r#"{"status":"BAD_REFRESH_TOKEN","message":"refresh token is invalid, expired or revoked"}"#,
            ),
            ErrorCode::ReconnectRequired,
        ),
        (
            // Finding 9: a token beside an error is an error, typed by the error.
            "token and error",
            raw(200, json, r#"{"access_token":"CANARY-AT","refresh_token":"CANARY-AT2","error":"invalid_grant"}"#),
            ErrorCode::ReconnectRequired,
        ),
        (
            "token and unknown error",
            raw(200, json, r#"{"access_token":"CANARY-AT","error":"something_new"}"#),
            ErrorCode::HubspotUnavailable,
        ),
        (
            // Finding 9: a token with CR/LF (a header injection if ever sent) is never stored.
            "access token with CR/LF",
            raw(200, json, r#"{"access_token":"CANARY-AT\r\nX-Injected: 1","expires_in":60}"#),
            ErrorCode::HubspotUnavailable,
        ),
        (
            "refresh token with a space",
            raw(200, json, r#"{"access_token":"CANARY-AT","refresh_token":"CANARY AT2"}"#),
            ErrorCode::HubspotUnavailable,
        ),
        ("2 MiB body", raw(200, json, vec![b' '; 2 * 1024 * 1024]), ErrorCode::HubspotUnavailable),
        ("2 MiB error body", raw(400, json, vec![b' '; 2 * 1024 * 1024]), ErrorCode::HubspotUnavailable),
        ("400 html", raw(400, "text/html", "<html>400</html>"), ErrorCode::HubspotUnavailable),
        ("204", raw(204, json, ""), ErrorCode::HubspotUnavailable),
        (
            "echoes the token",
            raw(400, json, r#"{"status":"BAD_REFRESH_TOKEN","message":"unknown token REFRESH-ECHO"}"#),
            ErrorCode::ReconnectRequired,
        ),
    ];
    for (name, failure, code) in cases {
        let e = env(ApiVersion::V2026_03).await;
        let refresh = RefreshToken::new("REFRESH-ECHO");
        e.fake.fail(Endpoint::Token202603, failure, 3);
        let err = e.hubspot.refresh(&refresh).await.unwrap_err();
        assert_eq!(err.code(), code, "{name}: {err}");
        assert_clean(&err, &["REFRESH-ECHO", "CANARY-AT", "CANARY AT2", e.fake.client_secret()]);
        assert!(!err.message().contains('\n'), "{name}: one line");
    }
}

#[tokio::test]
async fn odd_but_valid_token_answers_are_accepted() {
    let json = "application/json";
    let cases: Vec<(&str, &str, Duration)> = vec![
        (
            "string expires_in",
            r#"{"access_token":"a","token_type":"bearer","expires_in":"1800"}"#,
            Duration::from_secs(1800),
        ),
        (
            "null expires_in",
            r#"{"access_token":"a","token_type":"bearer","expires_in":null}"#,
            Duration::from_secs(1800),
        ),
        ("zero expires_in", r#"{"access_token":"a","token_type":"bearer","expires_in":0}"#, Duration::ZERO),
        (
            "huge expires_in",
            r#"{"access_token":"a","token_type":"bearer","expires_in":99999999999999}"#,
            Duration::from_secs(86400),
        ),
        ("BEARER", r#"{"access_token":"a","token_type":"BEARER","expires_in":60}"#, Duration::from_secs(60)),
        (
            "unknown fields",
            r#"{"access_token":"a","token_type":"Bearer","expires_in":60,"surprise":[{"x":1}]}"#,
            Duration::from_secs(60),
        ),
    ];
    for (name, body, lifetime) in cases {
        let e = env(ApiVersion::V2026_03).await;
        e.fake.fail(Endpoint::Token202603, raw(200, json, body), 1);
        let now = e.clock.now();
        let t = e.hubspot.refresh(&RefreshToken::new("kept")).await.unwrap();
        assert_eq!(t.expires_at, now + lifetime, "{name}");
        assert_eq!(t.refresh_token.unwrap().secret(), "kept", "{name}");
    }
}

#[tokio::test]
async fn redirects_from_hubspot_are_not_followed() {
    let e = env(ApiVersion::V2026_03).await;
    let target = format!("{}/elsewhere", e.fake.uri());
    wiremock::Mock::given(wiremock::matchers::path("/elsewhere"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("{}"))
        .expect(0)
        .named("redirect target")
        .mount(e.fake.server())
        .await;
    e.fake.fail(Endpoint::Token202603, Failure::Redirect { status: 307, location: target }, 1);
    let err = e.hubspot.refresh(&RefreshToken::new("r")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable);
    assert!(err.message().contains("redirect"), "{err}");
    e.fake.server().verify().await;
}

#[tokio::test]
async fn introspection_of_dead_tokens_is_none_either_way() {
    for version in BOTH {
        for mode in [DeadIntrospection::Inactive, DeadIntrospection::BadRequest] {
            let e = env(version).await;
            e.fake.set_dead_token_introspection(mode);
            assert_eq!(e.hubspot.introspect_access_token(&AccessToken::new("nope")).await.unwrap(), None);
            assert_eq!(e.hubspot.introspect_refresh_token(&RefreshToken::new("nope")).await.unwrap(), None);
            let err = e.hubspot.identify(&AccessToken::new("nope")).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version} {mode:?}");
        }
    }
}

#[tokio::test]
async fn account_info_errors() {
    for version in BOTH {
        let e = env(version).await;
        let t = e.connect().await;
        e.fake.expire_access_tokens();
        let err = e.hubspot.account_info(&t.access_token).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::TokenExpired, "{version}: {err}");
        assert_eq!(err.status(), Some(http::StatusCode::UNAUTHORIZED));
        assert_eq!(err.hubspot().unwrap().category.as_deref(), Some("EXPIRED_AUTHENTICATION"));
        assert!(err.correlation_id().is_some());
        assert_clean(&err, &[t.access_token.secret()]);

        let err = e.hubspot.account_info(&AccessToken::new("unknown")).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ReconnectRequired, "{version}: {err}");

        let ep = match version {
            ApiVersion::V1 | ApiVersion::V3 => Endpoint::AccountInfoV3,
            _ => Endpoint::AccountInfo202603,
        };
        let t = e.connect().await;
        e.fake.reset_counts();
        e.fake.fail(ep, Failure::ServerError, 1);
        e.hubspot.account_info(&t.access_token).await.unwrap();
        assert_eq!(e.fake.requests(ep), 2);
    }
}

#[tokio::test]
async fn revoke_accepts_any_success_status() {
    for status in [200, 204] {
        let e = env(ApiVersion::V2026_03).await;
        e.fake.set_revoke_status(status);
        let t = e.connect().await;
        assert!(e.hubspot.revoke(t.refresh_token.as_ref().unwrap()).await.unwrap());
        assert_eq!(e.fake.requests(Endpoint::Revoke202603), 1);
        let form = e.fake.last_form(Endpoint::Revoke202603).unwrap();
        assert!(form.contains(&("token_type_hint".into(), "refresh_token".into())));
    }
    let e = env(ApiVersion::V3).await;
    let t = e.connect().await;
    assert!(e.hubspot.revoke(t.refresh_token.as_ref().unwrap()).await.unwrap());
    assert_eq!(e.fake.requests(Endpoint::RevokeV3), 1);
    assert!(e.hubspot.introspect_refresh_token(t.refresh_token.as_ref().unwrap()).await.unwrap().is_none());
    assert_eq!(e.fake.requests(Endpoint::IntrospectV3), 1);
    let e = env(ApiVersion::V1).await;
    let t = e.connect().await;
    assert!(e.hubspot.revoke(t.refresh_token.as_ref().unwrap()).await.unwrap());
    assert_eq!(e.fake.requests(Endpoint::RevokeV1), 1);
    assert!(e.hubspot.revoke(t.refresh_token.as_ref().unwrap()).await.unwrap(), "already revoked is revoked");
    let err = {
        e.fake.fail(Endpoint::RevokeV1, Failure::ServerError, 3);
        e.hubspot.revoke(t.refresh_token.as_ref().unwrap()).await.unwrap_err()
    };
    assert_eq!(err.code(), ErrorCode::HubspotUnavailable);
}

#[tokio::test]
async fn declined_consent_is_reported_by_the_fake() {
    let e = env(ApiVersion::V2026_03).await;
    e.fake.decline(Decline::WithRedirect);
    let auth = e.hubspot.authorize_url(&AuthorizeRequest::new(&Env::scopes())).unwrap();
    let callback = e.fake.consent(auth.url.as_str()).await.unwrap();
    let pairs: std::collections::HashMap<String, String> = callback.query_pairs().into_owned().collect();
    assert_eq!(pairs["error"], "access_denied");
    assert_eq!(pairs["state"], auth.state.secret());
    e.fake.decline(Decline::WithoutRedirect);
    assert!(e.fake.consent(auth.url.as_str()).await.is_err());
    assert_eq!(e.fake.token_requests(), 0);
}
