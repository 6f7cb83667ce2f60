//! The authenticated client's own cost: `HubSpotClient::send` against plain reqwest with a fixed bearer header,
//! both calling the same loopback server in the same run.
//!
//! ```sh
//! cargo bench --bench client
//! ```
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use hubspot_connect::store::MemoryStore;
use hubspot_connect::testing::FakeHubSpot;
use hubspot_connect::{BeginOptions, Callback, Connections, HubSpotApi, Scopes, api::ApiRequest};

fn client_vs_reqwest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (client, server, token, _fake) = rt.block_on(async {
        let fake = FakeHubSpot::start().await;
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_string(r#"{"results":[]}"#))
            .mount(&server)
            .await;
        let connections = Connections::builder(fake.connector_builder().build().unwrap(), MemoryStore::new()).build();
        let begun = connections.begin("bench", &Scopes::new(), BeginOptions::default()).await.unwrap();
        let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
        let id = connections.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap().connection.id;
        let token = connections.access_token(&id).await.unwrap();
        let api = HubSpotApi::builder(connections)
            .api_base(server.uri())
            .rate_limit(u32::MAX, Duration::from_secs(1))
            .search_rate_limit(u32::MAX)
            .build()
            .unwrap();
        let client = api.client(&id).await.unwrap();
        (client, server, token, fake)
    });
    let raw = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!("{}/crm/v3/objects/contacts", server.uri());
    let bearer = format!("Bearer {}", token.secret());

    let mut group = c.benchmark_group("api_call");
    group.bench_function("plain_reqwest_fixed_header", |b| {
        b.to_async(&rt).iter(|| async {
            let r = raw.get(&url).header("authorization", &bearer).send().await.unwrap();
            black_box(r.bytes().await.unwrap());
        })
    });
    group.bench_function("hubspot_client", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(client.send(ApiRequest::get("crm/v3/objects/contacts")).await.unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, client_vs_reqwest);
criterion_main!(benches);
