//! The control API (`/__fake/*`, JSON, not part of HubSpot): scenarios, uninstall, reset and the request counts,
//! for programs that drive a fake they did not start (`hubconnect fake`).

use serde_json::{Value, json};
use wiremock::Request;

use super::scenario::Scenario;
use super::state::State;
use super::types::Endpoint;
use super::wire::Answer;

fn ok() -> Answer {
    Answer::json(200, &json!({"ok": true}))
}

/// A refused control request: `{"status":"error","message":"FIELD: what","field":"FIELD"}`.
fn bad_request(field: &str, message: &str) -> Answer {
    Answer::json(400, &json!({"status": "error", "message": format!("{field}: {message}"), "field": field}))
}

/// Answers one control request.
pub(crate) fn handle(request: &Request, state: &mut State) -> Answer {
    let post = request.method == http::Method::POST;
    match (post, request.url.path()) {
        (true, "/__fake/scenario") => match Scenario::from_json(&String::from_utf8_lossy(&request.body)) {
            Ok(scenario) => {
                state.apply(&scenario);
                ok()
            }
            Err(e) => bad_request(e.field(), e.message()),
        },
        (true, "/__fake/uninstall") => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            if !body.is_object() {
                return bad_request("(body)", "expected a JSON object {\"portal_id\": N}");
            }
            match body.get("portal_id").map(Value::as_u64) {
                Some(Some(portal_id)) => {
                    state.revoke_refresh_tokens_of(portal_id);
                    ok()
                }
                Some(None) => bad_request("portal_id", "expected a portal id (a whole number)"),
                None => bad_request("portal_id", "missing"),
            }
        }
        (true, "/__fake/reset") => {
            state.reset();
            ok()
        }
        (false, "/__fake/requests") => Answer::json(200, &counts(state)),
        _ => Answer::json(
            404,
            &json!({"status": "error", "message": "No such control endpoint: POST /__fake/scenario, \
                POST /__fake/uninstall, POST /__fake/reset, GET /__fake/requests"}),
        ),
    }
}

/// `{"counts": {...}}` by kind of request. Never a token.
fn counts(state: &State) -> Value {
    let sum = |endpoints: &[Endpoint]| endpoints.iter().map(|e| state.requests(*e)).sum::<usize>();
    json!({"counts": {
        "authorize": state.requests(Endpoint::Authorize),
        "token:authorization_code": state.grant_requests("authorization_code"),
        "token:refresh_token": state.grant_requests("refresh_token"),
        "token:client_credentials": state.grant_requests("client_credentials"),
        "introspect": sum(&[Endpoint::Introspect202603, Endpoint::IntrospectV3, Endpoint::AccessTokenInfoV1,
            Endpoint::RefreshTokenInfoV1]),
        "revoke": sum(&[Endpoint::Revoke202603, Endpoint::RevokeV3, Endpoint::RevokeV1]),
        "account_info": sum(&[Endpoint::AccountInfo202603, Endpoint::AccountInfoV3]),
        "crm": sum(&[Endpoint::CrmList, Endpoint::CrmGet, Endpoint::CrmSearch, Endpoint::CrmCreate]),
    }})
}
