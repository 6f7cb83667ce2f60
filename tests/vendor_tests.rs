//! The vendor test suite of `examples/vendor_tests` as `#[tokio::test]`s: the same scenarios (in
//! `examples/vendor_tests/scenarios.rs`), run by `cargo test`. This is the form a vendor's own `tests/` file takes.

#[path = "../examples/vendor_tests/scenarios.rs"]
mod scenarios;

use scenarios::TestResult;

#[tokio::test]
async fn consent_connects_the_portal() -> TestResult {
    scenarios::consent_connects_the_portal().await
}

#[tokio::test]
async fn a_refused_scope_is_auth_scope_denied() -> TestResult {
    scenarios::a_refused_scope_is_auth_scope_denied().await
}

#[tokio::test]
async fn an_uninstall_is_reconnect_required() -> TestResult {
    scenarios::an_uninstall_is_reconnect_required().await
}

#[tokio::test]
async fn a_rate_limit_is_rate_limited() -> TestResult {
    scenarios::a_rate_limit_is_rate_limited().await
}
