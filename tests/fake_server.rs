//! The fake HubSpot as a server for other programs: the clickable consent page (interactive mode), a given
//! listening socket, scenarios, and the control API (`/__fake/*`), driven with plain reqwest.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used)]

use hubspot_connect::testing::{
    Decline, Endpoint, FakeAccountType, FakeHubSpot, FakePortal, FakeUser, Rotation, Scenario,
};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn interactive() -> FakeHubSpot {
    let fake = FakeHubSpot::builder().interactive(true).control_api(true).start().await;
    fake.add_portal(FakePortal::new(70001).name("Acme & Sons <EU>").eu());
    fake.add_portal(FakePortal::new(80001).name("Acme Developer").account_type(FakeAccountType::AppDeveloper));
    fake
}

fn authorize_url(fake: &FakeHubSpot, portal: Option<u64>) -> url::Url {
    let path = portal.map_or("/oauth/authorize".to_owned(), |id| format!("/oauth/{id}/authorize"));
    let mut url = url::Url::parse(&format!("{}{path}", fake.uri())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", fake.client_id())
        .append_pair("redirect_uri", fake.redirect_uri())
        .append_pair("scope", "oauth crm.objects.contacts.read")
        .append_pair("optional_scope", "crm.objects.deals.read")
        .append_pair("state", "state-7");
    url
}

/// The hidden fields of the page's form, plus the chosen portal and button.
fn form_of_page(page: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for input in page.split("<input").skip(1) {
        let tag = input.split('>').next().unwrap();
        let attr = |name: &str| {
            tag.split(&format!("{name}=\"")).nth(1).map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"))
        };
        if attr("type").as_deref() == Some("hidden") {
            fields.push((attr("name").unwrap(), attr("value").unwrap_or_default()));
        }
    }
    fields
}

async fn submit(
    fake: &FakeHubSpot,
    path: &str,
    mut form: Vec<(String, String)>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    form.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    http()
        .post(format!("{}{path}", fake.uri()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap()
}

async fn exchange(fake: &FakeHubSpot, code: &str) -> Value {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", fake.redirect_uri()),
        ("client_id", fake.client_id()),
        ("client_secret", fake.client_secret()),
    ];
    let answer = http()
        .post(format!("{}/oauth/2026-03/token", fake.uri()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    serde_json::from_str(&answer.text().await.unwrap()).unwrap()
}

#[tokio::test]
async fn the_consent_page_lists_the_portals_and_the_scopes_and_connects_the_chosen_one() {
    let fake = interactive().await;
    let answer = http().get(authorize_url(&fake, None)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = answer.text().await.unwrap();
    assert!(page.contains("<h1>Choose an account</h1>"), "{page}");
    // One radio button per portal, labelled by its name; its id and account type beside it.
    for (id, name) in [(62515, "Portal 62515"), (70001, "Acme &amp; Sons &lt;EU&gt;"), (80001, "Acme Developer")] {
        assert!(page.contains(&format!("type=\"radio\" name=\"portal_id\" value=\"{id}\"")), "{id}: {page}");
        assert!(page.contains(&format!("<label for=\"portal-{id}\">{name}</label>")), "{name}: {page}");
    }
    assert!(page.contains("Developer account"), "{page}");
    assert!(!page.contains("Acme & Sons <EU>"), "portal names are escaped");
    assert!(page.contains("Required scopes") && page.contains("<li>crm.objects.contacts.read</li>"), "{page}");
    assert!(page.contains("Optional scopes") && page.contains("<li>crm.objects.deals.read</li>"));
    assert!(page.contains(">Connect app</button>") && page.contains(">Cancel</button>"), "{page}");
    assert_eq!(fake.codes_issued(), 0, "showing the page issues no code");

    // Connect app, with the second portal chosen.
    let form = form_of_page(&page);
    let answer =
        submit(&fake, "/oauth/authorize", form.clone(), &[("portal_id", "70001"), ("action", "connect")]).await;
    assert_eq!(answer.status(), 302);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(fake.redirect_uri()), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("state-7"));
    let tokens = exchange(&fake, &param(&location, "code").unwrap()).await;
    assert_eq!(tokens["hub_id"], 70001);
    assert_eq!(tokens["scopes"], json!(["oauth", "crm.objects.contacts.read", "crm.objects.deals.read"]));

    // Cancel: HubSpot's access_denied, with the state.
    let answer = submit(&fake, "/oauth/authorize", form.clone(), &[("action", "cancel")]).await;
    assert_eq!(answer.status(), 302);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&location, "state").as_deref(), Some("state-7"));
    assert_eq!(param(&location, "code"), None);

    // No account chosen, an unknown one, or a tampered form: a page, no code.
    let issued = fake.codes_issued();
    for extra in [vec![("action", "connect")], vec![("portal_id", "999"), ("action", "connect")]] {
        let answer = submit(&fake, "/oauth/authorize", form.clone(), &extra).await;
        assert_eq!(answer.status(), 400, "{extra:?}");
    }
    let mut tampered = form.clone();
    tampered.iter_mut().filter(|(k, _)| k == "redirect_uri").for_each(|(_, v)| *v = "https://evil.example/cb".into());
    let answer = submit(&fake, "/oauth/authorize", tampered, &[("portal_id", "62515"), ("action", "connect")]).await;
    assert_eq!(answer.status(), 400);
    assert_eq!(fake.codes_issued(), issued);
}

#[tokio::test]
async fn a_preselected_portal_skips_the_picker() {
    let fake = interactive().await;
    let page = http().get(authorize_url(&fake, Some(80001))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Choose an account"), "{page}");
    assert!(!page.contains("type=\"radio\""), "{page}");
    assert!(page.contains("Acme Developer") && page.contains("80001"), "{page}");
    let form = form_of_page(&page);
    // The portal comes from the path; a portal_id in the form does not change it.
    let answer = submit(&fake, "/oauth/80001/authorize", form, &[("portal_id", "62515"), ("action", "connect")]).await;
    assert_eq!(answer.status(), 302);
    let location = url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(exchange(&fake, &param(&location, "code").unwrap()).await["hub_id"], 80001);
}

#[tokio::test]
async fn interactive_mode_can_be_switched_and_consent_refuses_the_page() {
    let fake = FakeHubSpot::start().await;
    assert_eq!(http().get(authorize_url(&fake, None)).send().await.unwrap().status(), 302);
    fake.set_interactive(true);
    assert_eq!(http().get(authorize_url(&fake, None)).send().await.unwrap().status(), 200);
    assert!(fake.consent(authorize_url(&fake, None).as_str()).await.is_err());
    fake.set_interactive(false);
    assert!(fake.consent(authorize_url(&fake, None).as_str()).await.is_ok());
}

#[tokio::test]
async fn the_fake_listens_on_a_given_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = FakeHubSpot::builder().listener(listener).start().await;
    assert_eq!(fake.uri(), format!("http://127.0.0.1:{port}"));
    assert!(fake.consent(authorize_url(&fake, None).as_str()).await.is_ok());
}

#[test]
fn a_scenario_is_read_from_json_and_a_bad_one_names_the_field() {
    let scenario = Scenario::from_json(
        r#"{"portals": [{"id": 5, "name": "Five", "account_type": "SANDBOX", "eu": true}],
            "user": {"id": 9, "email": "nine@example.com"}, "refuse_scopes": ["a.b"], "decline": "with_redirect",
            "rotation": "strict", "access_token_ttl": 60,
            "failures": [{"endpoint": "crm_list", "failure": "too_many_requests", "retry_after": 2, "times": 3}]}"#,
    )
    .unwrap();
    assert_eq!(scenario.portals, vec![FakePortal::new(5).name("Five").account_type(FakeAccountType::Sandbox).eu()]);
    assert_eq!(scenario.user, Some(FakeUser::new(9, "nine@example.com")));
    assert_eq!(scenario.decline, Some(Decline::WithRedirect));
    assert_eq!(scenario.rotation, Some(Rotation::Strict));
    assert_eq!(scenario.failures.len(), 1);
    assert_eq!(scenario.failures[0].endpoint, Endpoint::CrmList);
    assert_eq!(scenario.failures[0].times, 3);

    for (json, field) in [
        ("[]", "(scenario)"),
        ("not json", "(scenario)"),
        (r#"{"portal": []}"#, "portal"),
        (r#"{"portals": {}}"#, "portals"),
        (r#"{"portals": [{"name": "x"}]}"#, "portals[0].id"),
        (r#"{"portals": [{"id": 1}, {"id": -2}]}"#, "portals[1].id"),
        (r#"{"portals": [{"id": 1, "account_type": "GOLD"}]}"#, "portals[0].account_type"),
        (r#"{"portals": [{"id": 1, "colour": "red"}]}"#, "portals[0].colour"),
        (r#"{"refuse_scopes": "a"}"#, "refuse_scopes"),
        (r#"{"refuse_scopes": ["a", 1]}"#, "refuse_scopes[1]"),
        (r#"{"decline": "maybe"}"#, "decline"),
        (r#"{"rotation": true}"#, "rotation"),
        (r#"{"access_token_ttl": "1h"}"#, "access_token_ttl"),
        (r#"{"user": {"id": 1}}"#, "user.email"),
        (r#"{"failures": [{"endpoint": "nowhere", "failure": "server_error"}]}"#, "failures[0].endpoint"),
        (r#"{"failures": [{"endpoint": "token_v1", "failure": "boom"}]}"#, "failures[0].failure"),
        (r#"{"failures": [{"endpoint": "token_v1", "failure": "status"}]}"#, "failures[0].status"),
        (r#"{"failures": [{"endpoint": "token_v1", "failure": "server_error", "times": 0.5}]}"#, "failures[0].times"),
    ] {
        let e = Scenario::from_json(json).unwrap_err();
        assert_eq!(e.field(), field, "{json}: {e}");
        assert!(e.to_string().starts_with(field), "{e}");
    }
}

async fn control(fake: &FakeHubSpot, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = http();
    let request = match body {
        Some(body) => client
            .post(format!("{}{path}", fake.uri()))
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => client.get(format!("{}{path}", fake.uri())),
    };
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, serde_json::from_str(&answer.text().await.unwrap()).unwrap())
}

#[tokio::test]
async fn the_control_api_merges_scenarios_counts_uninstalls_and_resets() {
    let start = Scenario::from_json(r#"{"portals": [{"id": 100, "name": "Start"}]}"#).unwrap();
    let fake = FakeHubSpot::builder().scenario(start).control_api(true).start().await;
    assert_eq!(fake.portals().iter().map(|p| p.id).collect::<Vec<_>>(), [100, 62515]);

    let (status, body) = control(&fake, "/__fake/scenario", Some(json!({"portals": [{"id": 1, "colour": 2}]}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["field"], "portals[0].colour");
    assert!(body["message"].as_str().unwrap().contains("portals[0].colour"), "{body}");
    assert_eq!(fake.portals().len(), 2, "a refused scenario changes nothing");

    let scenario = json!({
        "portals": [{"id": 200, "name": "Added", "account_type": "APP_DEVELOPER"}],
        "refuse_scopes": ["crm.objects.contacts.read"],
        "access_token_ttl": 60,
        "failures": [{"endpoint": "account_info_2026_03", "failure": "server_error", "times": 1}],
    });
    assert_eq!(control(&fake, "/__fake/scenario", Some(scenario)).await, (200, json!({"ok": true})));
    assert_eq!(fake.portals().iter().map(|p| p.id).collect::<Vec<_>>(), [100, 200, 62515]);

    let callback = fake.consent(authorize_url(&fake, None).as_str()).await.unwrap();
    let tokens = exchange(&fake, &param(&callback, "code").unwrap()).await;
    assert_eq!(tokens["expires_in"], 60);
    assert_eq!(tokens["scopes"], json!(["oauth", "crm.objects.deals.read"]));
    let info = http()
        .get(format!("{}/account-info/2026-03/details", fake.uri()))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 500, "the injected failure");

    let (status, counts) = control(&fake, "/__fake/requests", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        counts,
        json!({"counts": {"authorize": 1, "token:authorization_code": 1, "token:refresh_token": 0,
            "token:client_credentials": 0, "introspect": 0, "revoke": 0, "account_info": 1, "crm": 0}})
    );
    let text = counts.to_string();
    assert!(!text.contains(tokens["access_token"].as_str().unwrap()));

    // Uninstall: refresh tokens die, the access token lives on until it expires.
    assert_eq!(control(&fake, "/__fake/uninstall", Some(json!({"portal_id": "x"}))).await.1["field"], "portal_id");
    assert_eq!(control(&fake, "/__fake/uninstall", Some(json!({"portal_id": 62515}))).await.0, 200);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        ("client_id", fake.client_id()),
        ("client_secret", fake.client_secret()),
    ];
    let answer = http()
        .post(format!("{}/oauth/2026-03/token", fake.uri()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(refresh).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let contacts = http()
        .get(format!("{}/crm/v3/objects/companies", fake.uri()))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(contacts.status(), 403, "still authenticated, but without the companies scope");

    // Reset: back to the start (its scenario included), every count at 0.
    assert_eq!(control(&fake, "/__fake/reset", Some(json!({}))).await, (200, json!({"ok": true})));
    assert_eq!(fake.portals().iter().map(|p| p.id).collect::<Vec<_>>(), [100, 62515]);
    assert_eq!(control(&fake, "/__fake/requests", None).await.1["counts"]["authorize"], 0);
    let callback = fake.consent(authorize_url(&fake, None).as_str()).await.unwrap();
    let tokens = exchange(&fake, &param(&callback, "code").unwrap()).await;
    assert_eq!(tokens["expires_in"], 1800);
    assert_eq!(control(&fake, "/__fake/nothing", None).await.0, 404);
}

#[tokio::test]
async fn without_the_control_api_its_paths_are_hubspots_404() {
    let fake = FakeHubSpot::start().await;
    assert_eq!(control(&fake, "/__fake/requests", None).await.0, 404);
}
