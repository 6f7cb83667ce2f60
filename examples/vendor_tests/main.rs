//! How a vendor tests its HubSpot integration with the fake HubSpot: four scenarios of a test suite (the user
//! consents; the user refuses a required scope → `AUTH_SCOPE_DENIED` naming it; the customer uninstalls the app →
//! `RECONNECT_REQUIRED`; HubSpot keeps answering 429 → `RATE_LIMITED`), each asserting what the vendor's users would
//! see. A failed assertion makes the run exit non-zero.
//!
//! ```sh
//! cargo run --example vendor_tests     # the scenarios, one by one
//! cargo test --test vendor_tests       # the same scenarios as #[tokio::test]s (tests/vendor_tests.rs)
//! ```
//!
//! The scenarios are in `scenarios.rs` beside this file; in your own crate, put them in `tests/` as
//! `#[tokio::test]`s, with `hubspot-connect = { version = "…", features = ["test-util"] }` in
//! `[dev-dependencies]`. Each starts its own fake HubSpot on a loopback port and a manual clock, so nothing leaves
//! the machine and nothing waits: a 429's `Retry-After` moves the clock instead of sleeping.
#![allow(clippy::print_stdout)]

use std::future::Future;
use std::pin::Pin;

mod scenarios;

type Scenario = fn() -> Pin<Box<dyn Future<Output = scenarios::TestResult> + Send>>;

/// Each scenario: its name, what it checks, the test.
const SCENARIOS: [(&str, &str, Scenario); 4] = [
    (
        "consent_connects_the_portal",
        "the user approves: connected, installer and scopes stored, contacts synced",
        || Box::pin(scenarios::consent_connects_the_portal()),
    ),
    (
        "a_refused_scope_is_auth_scope_denied",
        "the user unticks contacts: AUTH_SCOPE_DENIED naming the scope, nothing stored",
        || Box::pin(scenarios::a_refused_scope_is_auth_scope_denied()),
    ),
    (
        "an_uninstall_is_reconnect_required",
        "the customer uninstalls: the sync gets RECONNECT_REQUIRED, status needs_reauth",
        || Box::pin(scenarios::an_uninstall_is_reconnect_required()),
    ),
    (
        "a_rate_limit_is_rate_limited",
        "HubSpot keeps answering 429: RATE_LIMITED with its Retry-After after 3 retries",
        || Box::pin(scenarios::a_rate_limit_is_rate_limited()),
    ),
];

#[tokio::main]
async fn main() {
    println!("running {} scenarios", SCENARIOS.len());
    let mut failed = Vec::new();
    for (name, checks, scenario) in SCENARIOS {
        // Each in its own task, so that a failed assertion (a panic) fails that scenario only.
        let outcome = match tokio::spawn(scenario()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => format!("FAILED: {e}"),
            Err(panic) => format!("FAILED: {panic}"),
        };
        println!("scenario {name} ... {outcome}\n    ({checks})");
        if outcome != "ok" {
            failed.push(name);
        }
    }
    let passed = SCENARIOS.len() - failed.len();
    println!("\nresult: {}. {passed} passed; {} failed", if failed.is_empty() { "ok" } else { "FAILED" }, failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}
