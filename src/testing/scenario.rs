//! A scenario: the fake's world and switches as JSON, for `hubconnect fake --scenario FILE` and the control API's
//! `POST /__fake/scenario`. A value type beside [`types`](super::types): read here, applied by the state.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::types::{Decline, Endpoint, Failure, FakeAccountType, FakePortal, FakeUser, Rotation};

/// The fake's world and switches, read from JSON with [`Scenario::from_json`] and merged into a running fake with
/// [`FakeHubSpot::apply`](super::FakeHubSpot::apply) (or at the start, with
/// [`FakeHubSpotBuilder::scenario`](super::FakeHubSpotBuilder::scenario)). Every field is optional; what a
/// scenario leaves out stays as it was.
///
/// ```json
/// {
///   "portals": [{"id": 62515, "name": "Acme Inc", "account_type": "STANDARD", "eu": false}],
///   "user": {"id": 123, "email": "admin@example.com"},
///   "refuse_scopes": ["crm.objects.deals.read"],
///   "decline": "consent",
///   "rotation": "rotate",
///   "access_token_ttl": 1800,
///   "failures": [{"endpoint": "crm_list", "failure": "too_many_requests", "retry_after": 1, "times": 2}]
/// }
/// ```
///
/// - `portals`: added, or replacing the portal with the same `id`; `account_type` one of `STANDARD`,
///   `DEVELOPER_TEST`, `SANDBOX`, `APP_DEVELOPER` (default `STANDARD`), `name` (default `Portal {id}`), `eu`
///   (default `false`).
/// - `user`: who consents next ([`FakeHubSpot::set_user`](super::FakeHubSpot::set_user)).
/// - `refuse_scopes`: replaces the refused scopes ([`FakeHubSpot::refuse_scopes`](super::FakeHubSpot::refuse_scopes)).
/// - `decline`: `consent`, `with_redirect` or `without_redirect` ([`Decline`]).
/// - `rotation`: `same`, `omit`, `rotate` or `strict` ([`Rotation`]).
/// - `access_token_ttl`: seconds.
/// - `failures`: queued in order ([`FakeHubSpot::fail`](super::FakeHubSpot::fail)); `endpoint` is the
///   [`Endpoint`] in snake case (`authorize`, `token_v1`, `token_v3`, `token_2026_03`, `introspect_v3`,
///   `introspect_2026_03`, `access_token_info_v1`, `refresh_token_info_v1`, `revoke_v1`, `revoke_v3`,
///   `revoke_2026_03`, `account_info_v3`, `account_info_2026_03`, `crm_list`, `crm_get`, `crm_search`,
///   `crm_create`); `failure` one of `server_error`, `bad_gateway_html`, `too_many_requests` (optional
///   `retry_after` seconds), `slow` (`delay_ms`), `status` (`status`, optional `content_type` and `body` text);
///   `times` (default 1).
///
/// Unknown fields are refused, so that a typo is not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scenario {
    /// Portals to add or replace.
    pub portals: Vec<FakePortal>,
    /// The user who consents next.
    pub user: Option<FakeUser>,
    /// The scopes to refuse at every later consent (replacing the list).
    pub refuse_scopes: Option<Vec<String>>,
    /// What the user does on the consent screen.
    pub decline: Option<Decline>,
    /// Whether refreshing rotates the refresh token.
    pub rotation: Option<Rotation>,
    /// The lifetime of access tokens issued from then on.
    pub access_token_ttl: Option<Duration>,
    /// Failures to queue.
    pub failures: Vec<ScenarioFailure>,
}

/// A failure to queue, as a [`Scenario`] names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScenarioFailure {
    /// The endpoint that fails.
    pub endpoint: Endpoint,
    /// How it fails.
    pub failure: Failure,
    /// How many requests in a row.
    pub times: usize,
}

/// A scenario that could not be read: the field at fault (e.g. `portals[1].account_type`, or `(scenario)` for the
/// whole document) and what is wrong with it. `Display`: `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    field: String,
    message: String,
}

impl ScenarioError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The field at fault, as a path: `portals[1].account_type`; `(scenario)` for the whole document.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ScenarioError {}

const WHOLE: &str = "(scenario)";

impl Scenario {
    /// Reads a scenario from JSON text.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the first field that is unknown, missing or of the wrong shape.
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ScenarioError::new(WHOLE, format!("not JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// Adds `later` on top of this scenario, as applying both in turn would: its portals after these (the same
    /// id replaces), the switches it names instead of these, its failures after these.
    pub fn merge(&mut self, later: Scenario) {
        self.portals.retain(|p| !later.portals.iter().any(|q| q.id == p.id));
        self.portals.extend(later.portals);
        self.user = later.user.or(self.user.take());
        self.refuse_scopes = later.refuse_scopes.or(self.refuse_scopes.take());
        self.decline = later.decline.or(self.decline);
        self.rotation = later.rotation.or(self.rotation);
        self.access_token_ttl = later.access_token_ttl.or(self.access_token_ttl);
        self.failures.extend(later.failures);
    }

    /// Reads a scenario from a parsed JSON value.
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json).
    pub fn from_value(value: &Value) -> Result<Scenario, ScenarioError> {
        let object = value.as_object().ok_or_else(|| ScenarioError::new(WHOLE, "expected a JSON object"))?;
        let mut scenario = Scenario::default();
        for (key, value) in object {
            match key.as_str() {
                "portals" => {
                    for (i, portal) in array(value, key)?.iter().enumerate() {
                        scenario.portals.push(read_portal(portal, &format!("portals[{i}]"))?);
                    }
                }
                "user" => scenario.user = Some(read_user(value, key)?),
                "refuse_scopes" => {
                    let scopes = array(value, key)?.iter().enumerate().map(|(i, s)| {
                        s.as_str().map(str::to_owned).ok_or_else(|| {
                            ScenarioError::new(format!("refuse_scopes[{i}]"), "expected a string (a scope)")
                        })
                    });
                    scenario.refuse_scopes = Some(scopes.collect::<Result<_, _>>()?);
                }
                "decline" => {
                    scenario.decline = Some(match string(value, key)? {
                        "consent" => Decline::Consent,
                        "with_redirect" => Decline::WithRedirect,
                        "without_redirect" => Decline::WithoutRedirect,
                        _ => return Err(one_of(key, "consent, with_redirect, without_redirect")),
                    });
                }
                "rotation" => {
                    scenario.rotation = Some(match string(value, key)? {
                        "same" => Rotation::Same,
                        "omit" => Rotation::Omit,
                        "rotate" => Rotation::Rotate,
                        "strict" => Rotation::Strict,
                        _ => return Err(one_of(key, "same, omit, rotate, strict")),
                    });
                }
                "access_token_ttl" => scenario.access_token_ttl = Some(Duration::from_secs(number(value, key)?)),
                "failures" => {
                    for (i, failure) in array(value, key)?.iter().enumerate() {
                        scenario.failures.push(read_failure(failure, &format!("failures[{i}]"))?);
                    }
                }
                other => return Err(unknown(other)),
            }
        }
        Ok(scenario)
    }
}

fn unknown(field: &str) -> ScenarioError {
    ScenarioError::new(field, "unknown field")
}

fn one_of(field: &str, values: &str) -> ScenarioError {
    ScenarioError::new(field, format!("expected one of {values}"))
}

fn array<'a>(value: &'a Value, field: &str) -> Result<&'a Vec<Value>, ScenarioError> {
    value.as_array().ok_or_else(|| ScenarioError::new(field, "expected an array"))
}

fn object<'a>(value: &'a Value, field: &str) -> Result<&'a Map<String, Value>, ScenarioError> {
    value.as_object().ok_or_else(|| ScenarioError::new(field, "expected an object"))
}

fn string<'a>(value: &'a Value, field: &str) -> Result<&'a str, ScenarioError> {
    value.as_str().ok_or_else(|| ScenarioError::new(field, "expected a string"))
}

fn number(value: &Value, field: &str) -> Result<u64, ScenarioError> {
    value.as_u64().ok_or_else(|| ScenarioError::new(field, "expected a whole number, 0 or more"))
}

fn required<'a>(object: &'a Map<String, Value>, at: &str, name: &str) -> Result<&'a Value, ScenarioError> {
    object.get(name).ok_or_else(|| ScenarioError::new(format!("{at}.{name}"), "missing"))
}

fn read_portal(value: &Value, at: &str) -> Result<FakePortal, ScenarioError> {
    let fields = object(value, at)?;
    let id = number(required(fields, at, "id")?, &format!("{at}.id"))?;
    let mut portal = FakePortal::new(id);
    for (key, value) in fields {
        let field = format!("{at}.{key}");
        match key.as_str() {
            "id" => {}
            "name" => portal.name = string(value, &field)?.to_owned(),
            "account_type" => {
                portal.account_type = match string(value, &field)? {
                    "STANDARD" => FakeAccountType::Standard,
                    "DEVELOPER_TEST" => FakeAccountType::DeveloperTest,
                    "SANDBOX" => FakeAccountType::Sandbox,
                    "APP_DEVELOPER" => FakeAccountType::AppDeveloper,
                    _ => return Err(one_of(&field, "STANDARD, DEVELOPER_TEST, SANDBOX, APP_DEVELOPER")),
                }
            }
            "eu" => match value.as_bool() {
                Some(true) => portal = portal.eu(),
                Some(false) => {}
                None => return Err(ScenarioError::new(field, "expected true or false")),
            },
            _ => return Err(unknown(&field)),
        }
    }
    Ok(portal)
}

fn read_user(value: &Value, at: &str) -> Result<FakeUser, ScenarioError> {
    let fields = object(value, at)?;
    if let Some(key) = fields.keys().find(|k| !matches!(k.as_str(), "id" | "email")) {
        return Err(unknown(&format!("{at}.{key}")));
    }
    let id = number(required(fields, at, "id")?, &format!("{at}.id"))?;
    let email = string(required(fields, at, "email")?, &format!("{at}.email"))?;
    Ok(FakeUser::new(id, email))
}

/// The snake-case name of an endpoint in a scenario.
pub(crate) fn endpoint_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Authorize => "authorize",
        Endpoint::TokenV1 => "token_v1",
        Endpoint::Token202603 => "token_2026_03",
        Endpoint::TokenV3 => "token_v3",
        Endpoint::Introspect202603 => "introspect_2026_03",
        Endpoint::IntrospectV3 => "introspect_v3",
        Endpoint::AccessTokenInfoV1 => "access_token_info_v1",
        Endpoint::RefreshTokenInfoV1 => "refresh_token_info_v1",
        Endpoint::RevokeV1 => "revoke_v1",
        Endpoint::Revoke202603 => "revoke_2026_03",
        Endpoint::RevokeV3 => "revoke_v3",
        Endpoint::AccountInfoV3 => "account_info_v3",
        Endpoint::AccountInfo202603 => "account_info_2026_03",
        Endpoint::CrmList => "crm_list",
        Endpoint::CrmGet => "crm_get",
        Endpoint::CrmSearch => "crm_search",
        Endpoint::CrmCreate => "crm_create",
    }
}

fn read_failure(value: &Value, at: &str) -> Result<ScenarioFailure, ScenarioError> {
    let fields = object(value, at)?;
    let known = ["endpoint", "failure", "times", "retry_after", "delay_ms", "status", "content_type", "body"];
    if let Some(key) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(unknown(&format!("{at}.{key}")));
    }
    let field = |name: &str| format!("{at}.{name}");
    let name = string(required(fields, at, "endpoint")?, &field("endpoint"))?;
    let endpoint = Endpoint::ALL
        .into_iter()
        .find(|e| endpoint_name(*e) == name)
        .ok_or_else(|| one_of(&field("endpoint"), "the endpoints in snake case, e.g. token_2026_03, crm_list"))?;
    let optional_number = |name: &str| fields.get(name).map(|v| number(v, &field(name))).transpose();
    let failure = match string(required(fields, at, "failure")?, &field("failure"))? {
        "server_error" => Failure::ServerError,
        "bad_gateway_html" => Failure::BadGatewayHtml,
        "too_many_requests" => Failure::TooManyRequests { retry_after: optional_number("retry_after")? },
        "slow" => Failure::Slow(Duration::from_millis(optional_number("delay_ms")?.unwrap_or(1000))),
        "status" => {
            let status = number(required(fields, at, "status")?, &field("status"))?;
            let status = u16::try_from(status)
                .ok()
                .filter(|s| (100..=999).contains(s))
                .ok_or_else(|| ScenarioError::new(field("status"), "expected an HTTP status, 100 to 999"))?;
            let text = |name: &str| -> Result<String, ScenarioError> {
                fields
                    .get(name)
                    .map(|v| string(v, &field(name)).map(str::to_owned))
                    .transpose()
                    .map(Option::unwrap_or_default)
            };
            Failure::Status { status, content_type: text("content_type")?, body: text("body")?.into_bytes() }
        }
        _ => {
            return Err(one_of(&field("failure"), "server_error, bad_gateway_html, too_many_requests, slow, status"));
        }
    };
    let times = optional_number("times")?.unwrap_or(1);
    let times = usize::try_from(times).map_err(|_| ScenarioError::new(field("times"), "too large"))?;
    Ok(ScenarioFailure { endpoint, failure, times })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_later_scenario_wins_field_by_field() {
        let mut start = Scenario::from_json(
            r#"{"portals": [{"id": 1, "name": "One"}, {"id": 2}], "rotation": "rotate", "access_token_ttl": 5,
                "failures": [{"endpoint": "token_v1", "failure": "server_error"}]}"#,
        )
        .unwrap();
        start.merge(
            Scenario::from_json(
                r#"{"portals": [{"id": 1, "name": "Uno"}], "rotation": "strict",
                    "failures": [{"endpoint": "crm_get", "failure": "slow", "delay_ms": 5, "times": 2}]}"#,
            )
            .unwrap(),
        );
        let names: Vec<(u64, &str)> = start.portals.iter().map(|p| (p.id, p.name.as_str())).collect();
        assert_eq!(names, [(2, "Portal 2"), (1, "Uno")]);
        assert_eq!(start.rotation, Some(Rotation::Strict));
        assert_eq!(start.access_token_ttl, Some(Duration::from_secs(5)));
        let failures: Vec<(Endpoint, usize)> = start.failures.iter().map(|f| (f.endpoint, f.times)).collect();
        assert_eq!(failures, [(Endpoint::TokenV1, 1), (Endpoint::CrmGet, 2)]);
        assert_eq!(start.failures[1].failure, Failure::Slow(Duration::from_millis(5)));
    }

    #[test]
    fn every_endpoint_has_a_distinct_name() {
        let mut names: Vec<&str> = Endpoint::ALL.iter().map(|e| endpoint_name(*e)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Endpoint::ALL.len());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for text in ["", "{", "null", "{\"portals\": [null]}", "{\"failures\": [{\"endpoint\": 1}]}", deep.as_str()] {
            assert!(Scenario::from_json(text).is_err(), "{text:.40}");
        }
        let e = Scenario::from_json(r#"{"failures": [{"endpoint": "crm_get", "failure": "status", "status": 70000}]}"#)
            .unwrap_err();
        assert_eq!(e.field(), "failures[0].status");
    }
}
