//! The OAuth responders: the authorize (consent) page, both token endpoint generations, introspection,
//! revocation, the v1 token metadata, and account info.

use std::time::{SystemTime, UNIX_EPOCH};

use url::Url;
use wiremock::Request;

use super::request::{bearer, first, is_form};
use super::state::{AccessLookup, Challenge, Grant, State, TokenError};
use super::types::{AppRegistration, DeadIntrospection, Decline, FakePortal};
use super::wire::{self, AccessDescription, Answer, Generation};

// ---- authorize ----

/// `GET /oauth[/{portalId}]/authorize`: checks the request, then plays the user: a `302` to the redirect URI
/// with a code (or an error), or an HTML page. In interactive mode a `GET` answers the consent page and the page's
/// form comes back as a `POST` to the same path (`query` is then the form body), checked again in full.
pub(crate) fn authorize(
    url: &Url,
    submitted: bool,
    query: &[(String, String)],
    state: &mut State,
    now: SystemTime,
) -> Answer {
    let chosen = url.path().strip_prefix("/oauth/").and_then(|rest| rest.strip_suffix("/authorize"));
    let preselected = match chosen {
        None => None,
        Some(segment) => match segment.parse::<u64>() {
            Ok(id) if state.portals.contains_key(&id) => Some(id),
            _ => {
                return Answer::html(
                    404,
                    "Account not found",
                    "This HubSpot account does not exist or you cannot access it.",
                );
            }
        },
    };
    let (redirect_uri, mut location) = match check_authorize(query, &state.app) {
        Ok(checked) => checked,
        Err(refusal) => return Answer::html(400, "Authorization failed", &refusal),
    };
    let redirect_uri = redirect_uri.as_str();
    let scope = first(query, "scope").unwrap_or_default();
    let challenge = match (first(query, "code_challenge"), first(query, "code_challenge_method")) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some(Challenge::S256(c.to_owned())),
        (Some(c), None | Some("plain")) => Some(Challenge::Plain(c.to_owned())),
        (Some(_), Some(_)) => {
            return Answer::html(400, "Authorization failed", "The code_challenge_method is not supported.");
        }
    };
    let state_param = first(query, "state");
    let decline = if submitted {
        match first(query, "action") {
            Some("connect") => Decline::Consent,
            Some("cancel") => Decline::WithRedirect,
            _ => return Answer::html(400, "Authorization failed", "Choose \"Connect app\" or \"Cancel\"."),
        }
    } else {
        state.decline
    };
    match decline {
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
    if state.interactive && !submitted {
        let portals: Vec<FakePortal> = match preselected {
            Some(id) => vec![state.portal(id)],
            None => state.portals.values().cloned().collect(),
        };
        let page = wire::ConsentPage {
            action: url.path(),
            portals: &portals,
            preselected: preselected.is_some(),
            user: &state.user.email,
            fields: query,
        };
        return wire::consent_page(&page);
    }
    let portal_id = match (preselected, submitted) {
        (Some(id), _) => id,
        (None, false) => state.instant_portal(),
        (None, true) => match first(query, "portal_id").and_then(|p| p.parse::<u64>().ok()) {
            Some(id) if state.portals.contains_key(&id) => id,
            Some(_) => return Answer::html(400, "Choose an account", "That account does not exist."),
            None => return Answer::html(400, "Choose an account", "Choose the account to connect the app to."),
        },
    };
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

const INSUFFICIENT: &str = "Couldn't complete the connection: Authorization failed because the provided scopes are \
                            insufficient. Please contact the app developer.";
const MISMATCH: &str = "Couldn't complete the connection: Authorization failed because there is a mismatch between \
                        the scopes in the install URL and the app's configured scopes. Please contact the app developer.";

/// Whether a redirect URL could be registered with HubSpot: `https`, or `http` on `localhost`; a host name, never
/// an IP address.
fn acceptable_redirect(url: &Url) -> Result<(), String> {
    match url.host() {
        Some(url::Host::Domain(host)) => {
            let local = host.eq_ignore_ascii_case("localhost");
            if url.scheme() == "https" || (url.scheme() == "http" && local) {
                Ok(())
            } else {
                Err(format!("The redirect_uri must use https (http is allowed only for localhost): {url}"))
            }
        }
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) => {
            Err(format!("The redirect_uri must not be an IP address; use a host name such as localhost: {url}"))
        }
        None => Err(format!("The redirect_uri is not a valid URL: {url}")),
    }
}

/// The checks of the authorize step against the app registration, in the fake's order: `client_id`,
/// `redirect_uri`, then `scope` and `optional_scope`. On success the redirect URI, parsed.
pub(crate) fn check_authorize(query: &[(String, String)], app: &AppRegistration) -> Result<(String, Url), String> {
    match first(query, "client_id") {
        None | Some("") => return Err("The client_id parameter is missing.".to_owned()),
        Some(id) if id != app.client_id => {
            return Err("The client_id does not belong to any app.".to_owned());
        }
        Some(_) => {}
    }
    let Some(redirect_uri) = first(query, "redirect_uri").filter(|r| !r.is_empty()) else {
        return Err("The redirect_uri parameter is missing.".to_owned());
    };
    let Ok(location) = Url::parse(redirect_uri) else {
        return Err("The redirect_uri is not a valid URL.".to_owned());
    };
    acceptable_redirect(&location)?;
    let registered = app.redirect_uris.iter().any(|r| Url::parse(r).is_ok_and(|r| r == location));
    if !registered {
        return Err(format!(
            "The redirect_uri does not match any redirect URL registered for this app: {redirect_uri}"
        ));
    }
    let scope = first(query, "scope").unwrap_or_default();
    if scope.split_whitespace().next().is_none() {
        return Err("The scope parameter is missing.".to_owned());
    }
    let optional = first(query, "optional_scope").unwrap_or_default();
    // HubSpot's two messages (knowledge base, "Resolve a 'Request for Integration Permissions' error"), each
    // followed by the fake's detail.
    let mut required: Vec<&str> = app.required_scopes.iter().map(String::as_str).collect();
    if !required.contains(&"oauth") {
        required.push("oauth");
    }
    let missing: Vec<&str> = required.into_iter().filter(|r| !scope.split_whitespace().any(|s| s == *r)).collect();
    if !missing.is_empty() {
        return Err(format!("{INSUFFICIENT} (required scopes missing: {})", missing.join(" ")));
    }
    let misplaced: Vec<String> = scope
        .split_whitespace()
        .filter(|s| !app.may_be_in_scope(s))
        .map(|s| if app.declares(s) { format!("{s} (optional, in scope)") } else { format!("{s} (not configured)") })
        .chain(optional.split_whitespace().filter(|s| !app.may_be_optional(s)).map(|s| {
            if app.declares(s) { format!("{s} (required, in optional_scope)") } else { format!("{s} (not configured)") }
        }))
        .collect();
    if !misplaced.is_empty() {
        return Err(format!("{MISMATCH} ({})", misplaced.join(", ")));
    }
    Ok((redirect_uri.to_owned(), location))
}

// ---- token endpoints ----

fn client_error(form: &[(String, String)], app: &AppRegistration) -> Option<TokenError> {
    if first(form, "client_id") != Some(app.client_id.as_str()) {
        return Some(TokenError::bad_client("missing or unknown client id"));
    }
    if first(form, "client_secret") != Some(app.client_secret.as_str()) {
        return Some(TokenError::bad_client("client secret is missing or does not match the client id"));
    }
    None
}

/// `POST /oauth/{v1,v3,2026-03}/token`: redeems a code, refreshes, or mints an app-level token.
pub(crate) fn token(
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
    state.count_grant(grant_type.unwrap_or_default());
    if !matches!(grant_type, Some("authorization_code" | "refresh_token" | "client_credentials")) {
        let e = TokenError::bad_grant_type(
            "missing or unknown grant type: use authorization_code, refresh_token or client_credentials",
        );
        return wire::token_error(&e, state.error_style);
    }
    if let Some(e) = client_error(form, &state.app) {
        return wire::token_error(&e, state.error_style);
    }
    if grant_type == Some("client_credentials") {
        return match state.mint_app_token(first(form, "scope"), now) {
            Ok((token, expires_in, scopes)) => {
                Answer::json(200, &wire::client_credentials_success(&token, expires_in, &scopes))
            }
            Err(e) => wire::token_error(&e, state.error_style),
        };
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

fn remaining_secs(expires_at: SystemTime, now: SystemTime) -> u64 {
    expires_at.duration_since(now).map(|d| d.as_secs()).unwrap_or(0)
}

/// `GET /oauth/v1/access-tokens/{token}`.
pub(crate) fn v1_access_info(token: &str, state: &State, now: SystemTime) -> Answer {
    match state.access_lookup(token, now) {
        AccessLookup::Live(record) => {
            let portal = state.portal(record.grant.portal_id);
            let expires_in = remaining_secs(record.expires_at, now);
            Answer::json(200, &wire::v1_access_info(token, &record.grant, &portal, state.app.app_id, expires_in))
        }
        AccessLookup::Expired(_) | AccessLookup::Invalid => wire::token_not_found(),
    }
}

/// `GET /oauth/v1/refresh-tokens/{token}`.
pub(crate) fn v1_refresh_info(token: &str, state: &State) -> Answer {
    match state.live_refresh(token) {
        Some(record) => {
            let portal = state.portal(record.grant.portal_id);
            Answer::json(200, &wire::v1_refresh_info(token, &record.grant, &portal, &state.app.client_id))
        }
        None => wire::token_not_found(),
    }
}

/// Whether to look the token up as a refresh token first (only when the hint says so).
fn refresh_first(form: &[(String, String)]) -> bool {
    first(form, "token_type_hint") == Some("refresh_token")
}

/// `POST /oauth/2026-03/token/introspect`.
pub(crate) fn introspect(form: &[(String, String)], state: &mut State, now: SystemTime) -> Answer {
    if let Some(e) = client_error(form, &state.app) {
        return wire::token_error(&e, state.error_style);
    }
    let token = first(form, "token").unwrap_or_default();
    let order = if refresh_first(form) { [true, false] } else { [false, true] };
    for refresh in order {
        if refresh {
            if let Some(record) = state.live_refresh(token) {
                let portal = state.portal(record.grant.portal_id);
                return Answer::json(
                    200,
                    &wire::introspect_refresh(token, &record.grant, &portal, state.app.app_id, &state.app.client_id),
                );
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
                app_id: state.app.app_id,
                client_id: &state.app.client_id,
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
        DeadIntrospection::Inactive => Answer::json(200, &wire::introspect_inactive()),
        DeadIntrospection::BadRequest => {
            let error =
                if refresh_first(form) { TokenError::bad_refresh_token() } else { TokenError::bad_access_token() };
            wire::token_error(&error, state.error_style)
        }
    }
}

/// `POST /oauth/2026-03/token/revoke`: revokes a refresh token (and its family) or an access token.
pub(crate) fn revoke(form: &[(String, String)], state: &mut State) -> Answer {
    if let Some(e) = client_error(form, &state.app) {
        return wire::token_error(&e, state.error_style);
    }
    let token = first(form, "token").unwrap_or_default();
    // The hint only orders the look-up; a token is never both kinds, so trying both is the same.
    let _ = state.revoke_refresh(token);
    let _ = state.revoke_access(token);
    let _ = state.revoke_app_token(token);
    Answer::empty(state.revoke_status)
}

/// `DELETE /oauth/v1/refresh-tokens/{token}`: revokes a live refresh token and its family.
pub(crate) fn revoke_v1(token: &str, state: &mut State) -> Answer {
    if state.revoke_refresh(token) { Answer::empty(204) } else { wire::token_not_found() }
}

// ---- account info ----

/// `GET /account-info/v3/details` and `GET /account-info/2026-03/details` for the bearer token's portal.
pub(crate) fn account_info(request: &Request, state: &State, now: SystemTime) -> Answer {
    let Some(token) = bearer(request) else {
        return wire::credentials_not_found();
    };
    match state.access_lookup(token, now) {
        AccessLookup::Live(record) if !record.grant.scopes.iter().any(|s| s == "oauth") => {
            wire::missing_scopes("oauth")
        }
        AccessLookup::Live(record) => Answer::json(200, &wire::account_info(&state.portal(record.grant.portal_id))),
        AccessLookup::Expired(ago) => wire::token_expired(ago),
        AccessLookup::Invalid => wire::token_invalid(),
    }
}
