//! Canary tokens: a secret planted in every secret type and in every answer of the fake HubSpot never shows up in
//! any `Debug`, `Display` or error text the crate produces.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hubspot_connect::store::MemoryStore;
use hubspot_connect::testing::{Endpoint, Failure, FakeHubSpot};
use hubspot_connect::{
    AccessToken, BeginOptions, Callback, ClientSecret, Connections, Connector, HubSpotConnector, ManualClock,
    RefreshToken, Scopes,
    connector::AuthorizeRequest,
    hubspot::{ApiVersion, RetryPolicy},
    secret::{AuthorizationCode, CsrfState, PkceVerifier},
    store::PendingAuthorization,
};

const CANARY: &str = "CANARY-7f3a9c1e";

/// Everything printed during the test, to search at the end.
#[derive(Default)]
struct Shown(String);

impl Shown {
    fn debug(&mut self, v: &impl std::fmt::Debug) {
        self.0.push_str(&format!("{v:?}\n{v:#?}\n"));
    }
    fn error(&mut self, e: &hubspot_connect::Error) {
        self.0.push_str(&format!("{e}\n{e:?}\n"));
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            self.0.push_str(&format!("{s}\n{s:?}\n"));
            source = s.source();
        }
        if let Some(h) = e.hubspot() {
            self.debug(h);
        }
    }
    fn result<T: std::fmt::Debug>(&mut self, r: &hubspot_connect::Result<T>) {
        match r {
            Ok(v) => self.debug(v),
            Err(e) => self.error(e),
        }
    }
    fn assert_clean(&self, secrets: &[String]) {
        assert!(!self.0.is_empty());
        for s in secrets {
            assert!(!s.is_empty());
            for form in encodings(s) {
                assert!(!self.0.contains(&form), "secret {form:?} found in output:\n{}", self.0);
            }
        }
    }
}

fn encodings(s: &str) -> Vec<String> {
    use base64::Engine;
    let mut v = vec![s.to_owned(), url::form_urlencoded::byte_serialize(s.as_bytes()).collect()];
    v.push(base64::engine::general_purpose::STANDARD.encode(s));
    v.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s));
    v
}

#[test]
fn every_secret_type_hides_its_value() {
    let mut shown = Shown::default();
    shown.debug(&AccessToken::new(CANARY));
    shown.debug(&RefreshToken::new(CANARY));
    shown.debug(&ClientSecret::new(CANARY));
    shown.debug(&AuthorizationCode::new(CANARY));
    shown.debug(&PkceVerifier::new(CANARY));
    shown.debug(&CsrfState::new(CANARY));
    shown.debug(&PendingAuthorization::new(
        CANARY,
        "t",
        PkceVerifier::new(CANARY),
        std::time::UNIX_EPOCH,
        std::time::UNIX_EPOCH,
    ));
    shown.debug(&Callback::from_query(&format!("code={CANARY}&state={CANARY}")).unwrap());
    let c = hubspot_connect::Connection::new(
        "t",
        1,
        AccessToken::new(CANARY),
        Some(RefreshToken::new(CANARY)),
        None,
        std::time::UNIX_EPOCH,
    );
    shown.debug(&c);
    let hubspot =
        HubSpotConnector::builder("cid", ClientSecret::new(CANARY), "https://app.example.com/cb").build().unwrap();
    shown.debug(&hubspot);
    shown.assert_clean(&[CANARY.to_owned()]);
}

/// Drives every operation, good and bad, on both generations, with canaries in every answer the fake can echo.
#[tokio::test]
async fn no_token_from_any_answer_reaches_any_output() {
    let mut shown = Shown::default();
    let mut secrets = vec![CANARY.to_owned()];
    for version in [ApiVersion::V2026_03, ApiVersion::V1] {
        let clock = ManualClock::new();
        let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
        secrets.push(fake.client_secret().to_owned());
        let connector = fake
            .connector_builder()
            .version(version)
            .clock(Arc::new(clock.clone()))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        shown.debug(&connector);
        let manager =
            Connections::builder(connector.clone(), MemoryStore::new()).clock(Arc::new(clock.clone())).build();
        shown.debug(&manager);

        // The happy path, with every value printed.
        let scopes = Scopes::new().require("crm.objects.contacts.read");
        let begun = manager.begin("acme", &scopes, BeginOptions::default()).await.unwrap();
        shown.debug(&begun);
        let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
        let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        secrets.push(pairs["code"].clone());
        secrets.push(pairs["state"].clone());
        let done = manager.complete(&Callback::from_url(url.as_str()).unwrap()).await;
        shown.result(&done);
        let c = done.unwrap().connection;
        secrets.push(c.access_token.secret().to_owned());
        secrets.push(c.refresh_token.as_ref().unwrap().secret().to_owned());
        let replay = manager.complete(&Callback::from_url(url.as_str()).unwrap()).await;
        shown.result(&replay);
        let refreshed = manager.force_refresh(&c.id).await;
        shown.result(&refreshed);
        secrets.push(refreshed.unwrap().access_token.secret().to_owned());
        shown.result(&manager.test(&c.id).await);
        shown.result(&connector.introspect_access_token(&c.access_token).await);
        shown.result(&connector.introspect_refresh_token(c.refresh_token.as_ref().unwrap()).await);
        shown.result(&connector.account_info(&c.access_token).await);
        shown.result(&connector.identify(&c.access_token).await);

        // Every endpoint answers with error bodies that echo the token it was sent (the canary, below).
        let echo = format!(
            r#"{{"error":"invalid_grant","error_description":"token {CANARY} is bad","status":"BAD_REFRESH_TOKEN","message":"unknown token {CANARY}","correlationId":"c-1","errors":[{{"message":"{CANARY}"}}]}}"#
        );
        for ep in Endpoint::ALL {
            for status in [200, 400, 401, 403, 429, 500] {
                let body = echo.clone().into_bytes();
                fake.fail(ep, Failure::Status { status, content_type: "application/json".into(), body }, 1);
            }
        }
        let refresh = RefreshToken::new(CANARY);
        let access = AccessToken::new(CANARY);
        for _ in 0..6 {
            shown.result(&connector.refresh(&refresh).await);
            shown.result(&connector.introspect_access_token(&access).await);
            shown.result(&connector.introspect_refresh_token(&refresh).await);
            shown.result(&connector.account_info(&access).await);
            shown.result(&connector.identify(&access).await);
            shown.result(&connector.revoke(&refresh).await);
            let auth = connector.authorize_url(&AuthorizeRequest::new(&scopes)).unwrap();
            shown.debug(&auth);
            shown.result(&connector.exchange_code(AuthorizationCode::new(CANARY), PkceVerifier::new(CANARY)).await);
        }
        // Garbage bodies that carry the canary.
        for body in
            [format!("<html>{CANARY}</html>"), format!("{{\"access_token\":{CANARY}"), format!("[\"{CANARY}\"]")]
        {
            fake.fail(
                ep_token(version),
                Failure::Status { status: 200, content_type: "application/json".into(), body: body.into_bytes() },
                1,
            );
            shown.result(&connector.refresh(&refresh).await);
        }
        // The manager's errors after HubSpot refuses.
        fake.uninstall(62515);
        clock.advance(std::time::Duration::from_secs(3600));
        shown.result(&manager.access_token(&c.id).await);
        shown.result(&manager.status(&c.id).await);
        shown.result(&manager.disconnect(&c.id).await);
    }
    shown.assert_clean(&secrets);
}

fn ep_token(version: ApiVersion) -> Endpoint {
    match version {
        ApiVersion::V1 => Endpoint::TokenV1,
        _ => Endpoint::Token202603,
    }
}
