//! Keeping connections alive: a background task runs `Connections::sweep` on a tokio interval, refreshing the
//! connections nobody used for a day, so that a dead one is found by the vendor before the customer finds it. One
//! customer uninstalls the app from HubSpot; the next sweep finds the refused refresh token, the connection turns
//! `needs_reauth`, and an event listener reacts: it reads the connection's status and prepares the reconnect link
//! the vendor emails to the customer, who follows it and is connected again.
//!
//! ```sh
//! cargo run --example keep_alive
//! ```
//!
//! Time is a `ManualClock` moved 12 hours at each tick of a 200 ms interval, so two days pass in a second. In
//! production, give nothing (the system clock), tick every hour and sweep with `SweepOptions::default()` (idle for a
//! day, 4 refreshes at once). Nothing leaves this machine: the fake HubSpot listens on a loopback port.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use hubspot_connect::connections::SweepOptions;
use hubspot_connect::store::MemoryStore;
use hubspot_connect::testing::{FakeHubSpot, FakePortal, FakeUser};
use hubspot_connect::{BeginOptions, Callback, Connections, Event, EventKind, ManualClock, Scopes};

const HOURS_PER_TICK: u64 = 12;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new();
    let fake = FakeHubSpot::start_with_clock(Arc::new(clock.clone())).await;
    let connector = fake.connector_builder().clock(Arc::new(clock.clone())).build()?;
    let connections = Connections::builder(connector, MemoryStore::new()).clock(Arc::new(clock.clone())).build();

    // Three customers connect their portals (see the quickstart example for these steps).
    let scopes = Scopes::new().require("crm.objects.contacts.read");
    let customers = [(4_815_162, "acme", "Acme Inc"), (2_342, "globex", "Globex"), (1_001, "initech", "Initech")];
    for (portal, tenant, name) in customers {
        fake.add_portal(FakePortal::new(portal).name(name));
        fake.set_user(FakeUser::new(portal, format!("admin@{tenant}.example")));
        let begun = connections.begin(tenant, &scopes, BeginOptions::default().portal(portal)).await?;
        let callback = fake.consent(begun.authorize_url.as_str()).await?;
        let c = connections.complete_for(tenant, &Callback::from_url(callback.as_str())?).await?.connection;
        println!("hour  0  {name} connected portal {portal} as {}", c.id);
    }

    // The listener subscribes before anything can happen.
    let mut events = connections.subscribe();

    // The same afternoon, Globex's admin uninstalls the app in HubSpot. Nothing tells the vendor.
    fake.uninstall(2_342);
    println!("hour  0  Globex uninstalls the app in HubSpot (the vendor is not told)");

    // The keep-alive task: in production, `tokio::spawn` it next to the web server and let it run forever. It
    // hands each report to the log below.
    let (reports, mut sweeps) = tokio::sync::mpsc::channel(1);
    tokio::spawn({
        let (connections, clock) = (connections.clone(), clock.clone());
        async move {
            let mut interval = tokio::time::interval(Duration::from_millis(200));
            interval.tick().await; // the first tick is immediate
            for tick in 1..=4 {
                interval.tick().await;
                clock.advance(Duration::from_secs(HOURS_PER_TICK * 3600));
                println!("hour {:>2}  sweep", tick * HOURS_PER_TICK);
                if reports.send(connections.sweep(SweepOptions::default()).await).await.is_err() {
                    return;
                }
            }
        }
    });

    // The listener: what a vendor's app does with events (log them, email the customer, update its own UI).
    let mut dead = None;
    loop {
        let event = tokio::select! {
            biased; // every event a sweep published comes before its report
            event = events.recv() => event?,
            report = sweeps.recv() => match report {
                Some(Ok(r)) => {
                    // A connection needing re-authorization is not idle: the sweep never retries a dead token.
                    println!(
                        "          done: {} idle for a day, {} refreshed, {} needing re-authorization, {} failed",
                        r.checked, r.refreshed, r.needs_reauth, r.failed
                    );
                    continue;
                }
                Some(Err(e)) => { println!("          the sweep failed: error[{}] {e}", e.code()); continue; }
                None => break,
            },
        };
        println!("          event {}", describe(&event));
        if event.kind != EventKind::NeedsReauth {
            continue;
        }
        let c = connections.status(event.connection_id.as_ref().ok_or("an event without a connection")?).await?;
        let why = c.last_error.as_ref().map(|e| format!("error[{}] {}", e.code, e.message)).unwrap_or_default();
        println!("          → status {}: {why}", c.status.as_str());
        println!(
            "          → email to {}: \"Your HubSpot connection stopped working. Reconnect: \
             https://app.vendor.example/integrations/hubspot/{}/reconnect\"",
            c.installed_by.as_deref().unwrap_or("the customer"),
            c.id
        );
        dead = Some(c.id);
    }
    let id = dead.ok_or("the sweep found no dead connection")?;

    // Days later, Globex's admin clicks the link. The vendor's reconnect route (`ConnectRoutes` in the `web` module
    // with the `axum` feature) calls `reconnect`: same connection, its portal preselected.
    let redirect =
        connections.reconnect(&id, &scopes, BeginOptions::default().return_to("/settings/integrations")).await?;
    let mut shown = redirect.authorize_url.clone();
    shown.set_query(None);
    println!("later     Globex's admin clicks the link: 302 to {shown}?…");
    let callback = fake.consent(redirect.authorize_url.as_str()).await?;
    let done = connections.complete_for("globex", &Callback::from_url(callback.as_str())?).await?;
    let c = &done.connection;
    println!(
        "          and installs the app again: {} is {} (the same connection: {})",
        c.id,
        c.status.as_str(),
        c.id == id
    );
    while let Ok(event) = events.try_recv() {
        println!("          event {}", describe(&event));
    }
    assert_eq!(connections.status(&id).await?.status.as_str(), "connected");
    Ok(())
}

/// One line about an event: its type, connection and portal (events never carry a token).
fn describe(event: &Event) -> String {
    let id = event.connection_id.as_ref().map(|id| id.to_string()).unwrap_or_default();
    format!("{} for {id} (portal {})", event.kind.as_str(), event.portal_id.unwrap_or_default())
}
