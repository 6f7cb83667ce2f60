//! The tenant-scoped handle: each operation a signed-in customer may do works on its own connections, and answers
//! `CONNECTION_NOT_FOUND` for another tenant's, with nothing done at HubSpot or in the store.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hubspot_connect::store::{ConnectionFilter, ConnectionStore, MemoryStore, TokenStore};
use hubspot_connect::testing::{Endpoint, FakeHubSpot, FakePortal};
use hubspot_connect::{
    BeginOptions, Callback, Connection, Connections, ErrorCode, HubSpotApi, ManualClock, Result, Scopes,
};

struct World {
    fake: FakeHubSpot,
    store: Arc<dyn TokenStore>,
    connections: Connections,
    acme: Connection,
    globex: Connection,
}

fn scopes() -> Scopes {
    Scopes::new().require("crm.objects.contacts.read")
}

async fn world() -> World {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    fake.add_portal(FakePortal::new(777));
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build().unwrap();
    let connections =
        Connections::builder_shared(Arc::new(connector), Arc::clone(&store)).clock(Arc::new(clock.clone())).build();
    let connect = |tenant: &'static str, portal: u64| {
        let (connections, fake) = (connections.clone(), fake.clone());
        async move {
            let mine = connections.tenant(tenant);
            let begun = mine.begin(&scopes(), BeginOptions::default().portal(portal)).await.unwrap();
            let url = fake.consent(begun.authorize_url.as_str()).await.unwrap();
            mine.complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap().connection
        }
    };
    let acme = connect("acme", 62515).await;
    let globex = connect("globex", 777).await;
    World { fake, store, connections, acme, globex }
}

impl World {
    /// Every request the fake has seen, by endpoint.
    fn requests(&self) -> Vec<usize> {
        Endpoint::ALL.iter().map(|e| self.fake.requests(*e)).collect()
    }

    async fn stored(&self) -> Vec<Connection> {
        self.store.list(&ConnectionFilter::all()).await.unwrap()
    }

    /// `op` on globex's connection through acme's handle: refused as not found, nothing done anywhere.
    async fn refused<T: std::fmt::Debug>(&self, op: impl std::future::Future<Output = Result<T>>) {
        let (requests, stored) = (self.requests(), self.stored().await);
        let err = op.await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::ConnectionNotFound, "{err}");
        assert!(!err.message().contains("globex"), "the error says nothing of the other tenant: {err}");
        assert_eq!(self.requests(), requests, "no request reached HubSpot");
        assert_eq!(self.stored().await, stored, "the store is untouched");
    }
}

#[tokio::test]
async fn status_and_list_are_the_tenants_own() {
    let w = world().await;
    let acme = w.connections.tenant("acme");
    assert_eq!(acme.status(&w.acme.id).await.unwrap().portal_id, 62515);
    w.refused(acme.status(&w.globex.id)).await;
    let listed = acme.list().await.unwrap();
    assert_eq!(listed.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![&w.acme.id]);
}

#[tokio::test]
async fn test_is_the_tenants_own() {
    let w = world().await;
    let acme = w.connections.tenant("acme");
    assert_eq!(acme.test(&w.acme.id).await.unwrap().portal_id, 62515);
    w.refused(acme.test(&w.globex.id)).await;
}

#[tokio::test]
async fn reconnect_is_the_tenants_own() {
    let w = world().await;
    let acme = w.connections.tenant("acme");
    assert!(acme.reconnect(&w.acme.id, &scopes(), BeginOptions::default()).await.is_ok());
    w.refused(acme.reconnect(&w.globex.id, &scopes(), BeginOptions::default())).await;
}

#[tokio::test]
async fn disconnect_is_the_tenants_own() {
    let w = world().await;
    let acme = w.connections.tenant("acme");
    w.refused(acme.disconnect(&w.globex.id)).await;
    assert!(acme.disconnect(&w.acme.id).await.unwrap().revoked);
    assert_eq!(w.stored().await.len(), 1, "globex's connection is still there");
}

#[tokio::test]
async fn tokens_and_api_clients_are_the_tenants_own() {
    let w = world().await;
    let acme = w.connections.tenant("acme");
    assert_eq!(acme.access_token(&w.acme.id).await.unwrap(), w.acme.access_token);
    w.refused(acme.access_token(&w.globex.id)).await;
    let api = HubSpotApi::builder(w.connections.clone()).api_base(w.fake.uri()).build().unwrap();
    assert!(api.client_for(&acme, &w.acme.id).await.is_ok());
    w.refused(api.client_for(&acme, &w.globex.id)).await;
}

#[tokio::test]
async fn a_callback_started_by_another_tenant_is_refused() {
    let w = world().await;
    let begun = w.connections.tenant("globex").begin(&scopes(), BeginOptions::default()).await.unwrap();
    let url = w.fake.consent(begun.authorize_url.as_str()).await.unwrap();
    let err = w.connections.tenant("acme").complete(&Callback::from_url(url.as_str()).unwrap()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidState);
}
