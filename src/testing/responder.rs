//! The mounted responders: one per endpoint, each turning a request into HubSpot's answer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use url::Url;
use wiremock::{Request, Respond, ResponseTemplate};

use super::crm;
use super::state::{
    APP_ID, AccessLookup, CLIENT_ID, CLIENT_SECRET, Challenge, DEFAULT_PORTAL, Grant, Shared, State, TokenError,
};
use super::types::{DeadIntrospection, Decline, Endpoint, Failure};
use super::wire::{self, AccessDescription, Answer, Generation};

/// Answers one endpoint from the shared state.
pub(crate) struct Responder {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: Endpoint,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = self.shared.clock.now();
        let form = form_of(request);
        let authorization =
            request.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut state = self.shared.lock();
        let mut delay = None;
        let failure = state.arrive(self.endpoint, form.clone());
        state.remember_authorization(self.endpoint, authorization);
        match failure {
            Some(Failure::Slow(d)) => delay = Some(d),
            Some(failure) => {
                if let Some(answer) = Answer::failure(&failure) {
                    if self.endpoint.is_crm() {
                        crm::note_injected(self.endpoint, request, &mut state, now);
                    }
                    return answer.into_template();
                }
            }
            None => {}
        }
        let answer = handle(self.endpoint, request, &form, &mut state, now);
        drop(state);
        let template = answer.into_template();
        match delay {
            Some(d) => template.set_delay(d),
            None => template,
        }
    }
}

/// The form body of a POST (none for a JSON body), or the query pairs of any other request.
fn form_of(request: &Request) -> Vec<(String, String)> {
    if request.method == http::Method::POST {
        serde_urlencoded::from_bytes(&request.body).unwrap_or_default()
    } else {
        request.url.query_pairs().into_owned().collect()
    }
}

fn first<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn handle(
    endpoint: Endpoint,
    request: &Request,
    form: &[(String, String)],
    state: &mut State,
    now: SystemTime,
) -> Answer {
    match endpoint {
        Endpoint::Authorize => authorize(&request.url, form, state, now),
        Endpoint::TokenV1 => token(Generation::V1, request, form, state, now),
        Endpoint::Token202603 => token(Generation::V2026_03, request, form, state, now),
        Endpoint::Introspect202603 => introspect(form, state, now),
        Endpoint::AccessTokenInfoV1 => v1_access_info(&path_token(&request.url), state, now),
        Endpoint::RefreshTokenInfoV1 => v1_refresh_info(&path_token(&request.url), state),
        Endpoint::RevokeV1 => {
            if state.revoke_refresh(&path_token(&request.url)) {
                Answer::empty(204)
            } else {
                not_found()
            }
        }
        Endpoint::Revoke202603 => revoke(form, state),
        Endpoint::AccountInfoV3 | Endpoint::AccountInfo202603 => account_info(request, state, now),
        Endpoint::CrmList | Endpoint::CrmGet | Endpoint::CrmSearch | Endpoint::CrmCreate => {
            crm::handle(endpoint, request, state, now)
        }
    }
}

// ---- authorize ----

fn authorize(url: &Url, query: &[(String, String)], state: &mut State, now: SystemTime) -> Answer {
    let chosen = url.path().strip_prefix("/oauth/").and_then(|rest| rest.strip_suffix("/authorize"));
    let portal_id = match chosen {
        None => DEFAULT_PORTAL,
        Some(segment) => match segment.parse::<u64>() {
            Ok(id) if state.portals.contains_key(&id) => id,
            _ => {
                return Answer::html(
                    404,
                    "Account not found",
                    "This HubSpot account does not exist or you cannot access it.",
                );
            }
        },
    };
    if first(query, "client_id") != Some(CLIENT_ID) {
        return Answer::html(400, "Authorization failed", "The client_id is missing or does not belong to any app.");
    }
    let Some(redirect_uri) = first(query, "redirect_uri").filter(|r| !r.is_empty()) else {
        return Answer::html(400, "Authorization failed", "The redirect_uri is missing.");
    };
    let Ok(mut location) = Url::parse(redirect_uri) else {
        return Answer::html(400, "Authorization failed", "The redirect_uri is not a valid URL.");
    };
    let scope = first(query, "scope").unwrap_or_default();
    if scope.split_whitespace().next().is_none() {
        return Answer::html(400, "Authorization failed", "The scope parameter is missing.");
    }
    let challenge = match (first(query, "code_challenge"), first(query, "code_challenge_method")) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some(Challenge::S256(c.to_owned())),
        (Some(c), None | Some("plain")) => Some(Challenge::Plain(c.to_owned())),
        (Some(_), Some(_)) => {
            return Answer::html(400, "Authorization failed", "The code_challenge_method is not supported.");
        }
    };
    let state_param = first(query, "state");
    match state.decline {
        Decline::Consent => {}
        Decline::WithRedirect => {
            {
                let mut pairs = location.query_pairs_mut();
                pairs.append_pair("error", "access_denied");
                pairs.append_pair("error_description", "The user declined to install the app.");
                if let Some(s) = state_param {
                    pairs.append_pair("state", s);
                }
            }
            return Answer::redirect(302, location.as_str());
        }
        Decline::WithoutRedirect => {
            return Answer::html(
                200,
                "App not connected",
                "You chose not to connect this app. You can close this page.",
            );
        }
    }
    let requested =
        scope.split_whitespace().chain(first(query, "optional_scope").unwrap_or_default().split_whitespace());
    let grant = Grant { portal_id, user: state.user.clone(), scopes: state.granted(requested) };
    let code = state.issue_code(grant, redirect_uri, challenge, now);
    {
        let mut pairs = location.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(s) = state_param {
            pairs.append_pair("state", s);
        }
    }
    Answer::redirect(302, location.as_str())
}

// ---- token endpoints ----

fn is_form(request: &Request) -> bool {
    request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn client_error(form: &[(String, String)]) -> Option<TokenError> {
    if first(form, "client_id") != Some(CLIENT_ID) {
        return Some(TokenError::bad_client("missing or unknown client id"));
    }
    if first(form, "client_secret") != Some(CLIENT_SECRET) {
        return Some(TokenError::bad_client("client secret is missing or does not match the client id"));
    }
    None
}

fn token(
    generation: Generation,
    request: &Request,
    form: &[(String, String)],
    state: &mut State,
    now: SystemTime,
) -> Answer {
    if !is_form(request) {
        let e = TokenError::bad_grant_type(
            "missing or unknown grant type: send the fields as application/x-www-form-urlencoded",
        );
        return wire::token_error(&e, state.error_style);
    }
    let grant_type = first(form, "grant_type");
    if !matches!(grant_type, Some("authorization_code" | "refresh_token")) {
        let e = TokenError::bad_grant_type("missing or unknown grant type: use authorization_code or refresh_token");
        return wire::token_error(&e, state.error_style);
    }
    if let Some(e) = client_error(form) {
        return wire::token_error(&e, state.error_style);
    }
    let result = if grant_type == Some("authorization_code") {
        state.redeem_code(first(form, "code"), first(form, "redirect_uri"), first(form, "code_verifier"), now)
    } else {
        state.refresh(first(form, "refresh_token"), now)
    };
    match result {
        Ok(minted) => Answer::json(200, &wire::token_success(&minted, generation, state.token_fields)),
        Err(e) => wire::token_error(&e, state.error_style),
    }
}

// ---- metadata, introspection, revocation ----

/// The `{token}` of `/oauth/v1/.../{token}`, percent-decoded.
fn path_token(url: &Url) -> String {
    let raw = url.path().rsplit('/').next().unwrap_or_default();
    percent_decode(raw)
}

pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn not_found() -> Answer {
    Answer::json(404, &wire::generic_error("The token was not found, has expired or was revoked.", "OBJECT_NOT_FOUND"))
}

fn remaining_secs(expires_at: SystemTime, now: SystemTime) -> u64 {
    expires_at.duration_since(now).map(|d| d.as_secs()).unwrap_or(0)
}

fn v1_access_info(token: &str, state: &State, now: SystemTime) -> Answer {
    match state.access_lookup(token, now) {
        AccessLookup::Live(record) => {
            let portal = state.portal(record.grant.portal_id);
            let expires_in = remaining_secs(record.expires_at, now);
            Answer::json(200, &wire::v1_access_info(token, &record.grant, &portal, APP_ID, expires_in))
        }
        AccessLookup::Expired(_) | AccessLookup::Invalid => not_found(),
    }
}

fn v1_refresh_info(token: &str, state: &State) -> Answer {
    match state.live_refresh(token) {
        Some(record) => {
            let portal = state.portal(record.grant.portal_id);
            Answer::json(200, &wire::v1_refresh_info(token, &record.grant, &portal, CLIENT_ID))
        }
        None => not_found(),
    }
}

/// Whether to look the token up as a refresh token first (only when the hint says so).
fn refresh_first(form: &[(String, String)]) -> bool {
    first(form, "token_type_hint") == Some("refresh_token")
}

fn introspect(form: &[(String, String)], state: &mut State, now: SystemTime) -> Answer {
    if let Some(e) = client_error(form) {
        return wire::token_error(&e, state.error_style);
    }
    let token = first(form, "token").unwrap_or_default();
    let order = if refresh_first(form) { [true, false] } else { [false, true] };
    for refresh in order {
        if refresh {
            if let Some(record) = state.live_refresh(token) {
                let portal = state.portal(record.grant.portal_id);
                return Answer::json(200, &wire::introspect_refresh(token, &record.grant, &portal, APP_ID, CLIENT_ID));
            }
        } else if let AccessLookup::Live(record) = state.access_lookup(token, now) {
            let grant = record.grant.clone();
            let expires_at = record.expires_at;
            let portal = state.portal(grant.portal_id);
            let install_id = state.install_id(grant.portal_id);
            let description = AccessDescription {
                token,
                grant: &grant,
                portal: &portal,
                app_id: APP_ID,
                client_id: CLIENT_ID,
                expires_in: remaining_secs(expires_at, now),
                expires_at_millis: expires_at
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0),
                install_id,
            };
            return Answer::json(200, &wire::introspect_access(&description));
        }
    }
    match state.dead_introspection {
        DeadIntrospection::Inactive => Answer::json(200, &json!({ "active": false })),
        DeadIntrospection::BadRequest => {
            let error =
                if refresh_first(form) { TokenError::bad_refresh_token() } else { TokenError::bad_access_token() };
            wire::token_error(&error, state.error_style)
        }
    }
}

fn revoke(form: &[(String, String)], state: &mut State) -> Answer {
    if let Some(e) = client_error(form) {
        return wire::token_error(&e, state.error_style);
    }
    let token = first(form, "token").unwrap_or_default();
    // The hint only orders the look-up; a token is never both kinds, so trying both is the same.
    let _ = state.revoke_refresh(token);
    let _ = state.revoke_access(token);
    Answer::empty(state.revoke_status)
}

// ---- account info ----

pub(crate) fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

fn account_info(request: &Request, state: &State, now: SystemTime) -> Answer {
    let Some(token) = bearer(request) else {
        return wire::credentials_not_found();
    };
    match state.access_lookup(token, now) {
        AccessLookup::Live(record) => Answer::json(200, &wire::account_info(&state.portal(record.grant.portal_id))),
        AccessLookup::Expired(ago) => wire::token_expired(ago),
        AccessLookup::Invalid => wire::token_invalid(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("abc%2Fd%20e%zz%4"), "abc/d e%zz%4");
        assert_eq!(percent_decode("CN-_x"), "CN-_x");
    }
}
