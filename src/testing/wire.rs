//! HubSpot's wire shapes: answers, JSON bodies, error bodies and the HTML pages of the consent screen.
//!
//! Above the state (it writes what the state holds), below the responders (they choose what to answer).

use std::time::Duration;

use serde_json::{Map, Value, json};
use wiremock::ResponseTemplate;

use super::random;
use super::state::crm::{FakeObject, Limited, default_properties, last_modified_property, singular};
use super::state::{Grant, Minted, TokenError};
use super::types::{ErrorStyle, Failure, FakeAccountType, FakePortal, TokenFields};
use crate::clock::rfc3339;

/// An HTTP answer, before it becomes a [`ResponseTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// `None`: no `Content-Type` header.
    pub(crate) content_type: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            content_type: Some("application/json;charset=utf-8".to_owned()),
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    pub(crate) fn html(status: u16, title: &str, text: &str) -> Self {
        let page = format!(
            "<!DOCTYPE html><html><head><title>{}</title></head><body><h1>{}</h1><p>{}</p></body></html>",
            escape(title),
            escape(title),
            escape(text)
        );
        Self {
            status,
            content_type: Some("text/html;charset=utf-8".to_owned()),
            headers: Vec::new(),
            body: page.into_bytes(),
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self { status, content_type: None, headers: Vec::new(), body: Vec::new() }
    }

    pub(crate) fn redirect(status: u16, location: &str) -> Self {
        Self::empty(status).header("Location", location)
    }

    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The answer a [`Failure`] other than [`Failure::Slow`] stands for.
    pub(crate) fn failure(failure: &Failure) -> Option<Self> {
        Some(match failure {
            Failure::ServerError => Self::json(500, &generic_error("internal error", "INTERNAL_ERROR")),
            Failure::BadGatewayHtml => Self {
                status: 502,
                content_type: Some("text/html".to_owned()),
                headers: Vec::new(),
                body: b"<html>502 Bad Gateway</html>".to_vec(),
            },
            Failure::TooManyRequests { retry_after } => {
                let body = json!({
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": random::uuid(),
                    "policyName": "TEN_SECONDLY_ROLLING",
                    "category": "RATE_LIMITS",
                });
                let answer = Self::json(429, &body)
                    .header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
                    .header("X-HubSpot-RateLimit-Max", "110")
                    .header("X-HubSpot-RateLimit-Remaining", "0");
                match retry_after {
                    Some(secs) => answer.header("Retry-After", secs.to_string()),
                    None => answer,
                }
            }
            Failure::Slow(_) => return None,
            Failure::Status { status, content_type, body } => Self {
                status: *status,
                content_type: (!content_type.is_empty()).then(|| content_type.clone()),
                headers: Vec::new(),
                body: body.clone(),
            },
            Failure::Redirect { status, location } => Self::redirect(*status, location),
        })
    }

    pub(crate) fn into_template(self) -> ResponseTemplate {
        let status = if (100..=999).contains(&self.status) { self.status } else { 500 };
        let mut template = ResponseTemplate::new(status);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(&value))
            {
                template = template.append_header(name, value);
            }
        }
        match self.content_type {
            // wiremock parses the MIME type into a header value and panics on a bad one: check it first.
            Some(ct) if http::HeaderValue::from_str(&ct).is_ok() => template.set_body_raw(self.body, &ct),
            Some(_) => template.set_body_raw(self.body, "application/octet-stream"),
            None => template.set_body_bytes(self.body),
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// What the consent page shows.
#[derive(Debug)]
pub(crate) struct ConsentPage<'a> {
    /// The path the form posts back to (the authorize path, portal included when preselected).
    pub(crate) action: &'a str,
    /// The accounts to choose from, or the one preselected.
    pub(crate) portals: &'a [FakePortal],
    /// Whether the authorize URL preselected the portal (then there is no picker).
    pub(crate) preselected: bool,
    /// The signed-in user's email.
    pub(crate) user: &'a str,
    /// The authorize request's fields; those of the OAuth protocol are carried in hidden inputs.
    pub(crate) fields: &'a [(String, String)],
}

/// The OAuth fields the consent page's form carries back.
const CARRIED: [&str; 7] =
    ["client_id", "redirect_uri", "scope", "optional_scope", "state", "code_challenge", "code_challenge_method"];

fn account_kind(portal: &FakePortal) -> &str {
    match portal.account_type {
        FakeAccountType::Standard => "Standard account",
        FakeAccountType::DeveloperTest => "Developer test account",
        FakeAccountType::Sandbox => "Sandbox account",
        FakeAccountType::AppDeveloper => "Developer account",
        _ => portal.account_type.as_str(),
    }
}

/// HubSpot's consent screen, simplified: "Choose an account" (one radio button per portal, labelled by its name,
/// with its id and account type beside it) unless a portal is preselected, the requested scopes split into
/// required and optional, and the buttons "Connect app" and "Cancel". Every text from outside is escaped.
pub(crate) fn consent_page(page: &ConsentPage<'_>) -> Answer {
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Connect app | HubSpot</title>\
         <style>body{font-family:sans-serif;color:#33475b;max-width:40em;margin:2em auto;padding:0 1em}\
         ul{list-style:none;padding:0}li{margin:.4em 0}fieldset{border:1px solid #cbd6e2;border-radius:4px}\
         .portal-id,.account-type{color:#7c98b6;font-size:.9em}.scopes li{font-family:monospace}\
         button{font-size:1em;padding:.5em 1.2em;border-radius:3px;border:1px solid #ff7a59;cursor:pointer}\
         button[value=connect]{background:#ff7a59;color:#fff}button[value=cancel]{background:#fff;color:#ff7a59}\
         </style></head><body><main>",
    );
    let scopes = |name: &str| -> Vec<String> {
        page.fields
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect()
    };
    html.push_str(&format!("<form method=\"post\" action=\"{}\">", escape(page.action)));
    match (page.preselected, page.portals.first()) {
        (true, Some(portal)) => html.push_str(&format!(
            "<h1>Connect app to {}</h1><p class=\"portal\" data-portal-id=\"{}\" data-account-type=\"{}\">\
             {} <span class=\"portal-id\">{}</span> <span class=\"account-type\">{}</span></p>",
            escape(&portal.name),
            portal.id,
            escape(portal.account_type.as_str()),
            escape(&portal.name),
            portal.id,
            escape(account_kind(portal)),
        )),
        _ => {
            html.push_str("<h1>Choose an account</h1><fieldset><legend>Accounts</legend><ul class=\"portals\">");
            for portal in page.portals {
                html.push_str(&format!(
                    "<li data-portal-id=\"{id}\" data-account-type=\"{kind}\"><input type=\"radio\" \
                     name=\"portal_id\" value=\"{id}\" id=\"portal-{id}\" required> <label for=\"portal-{id}\">\
                     {name}</label> <span class=\"portal-id\">{id}</span> <span class=\"account-type\">{human}</span>\
                     </li>",
                    id = portal.id,
                    kind = escape(portal.account_type.as_str()),
                    name = escape(&portal.name),
                    human = escape(account_kind(portal)),
                ));
            }
            html.push_str("</ul></fieldset>");
        }
    }
    html.push_str(&format!("<p>Signed in as {}</p>", escape(page.user)));
    for (title, list) in [("Required scopes", scopes("scope")), ("Optional scopes", scopes("optional_scope"))] {
        if list.is_empty() {
            continue;
        }
        html.push_str(&format!("<h2>{title}</h2><ul class=\"scopes\">"));
        for scope in list {
            html.push_str(&format!("<li>{}</li>", escape(&scope)));
        }
        html.push_str("</ul>");
    }
    for (name, value) in page.fields.iter().filter(|(k, _)| CARRIED.contains(&k.as_str())) {
        html.push_str(&format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value)));
    }
    html.push_str(
        "<button type=\"submit\" name=\"action\" value=\"connect\">Connect app</button> \
         <button type=\"submit\" name=\"action\" value=\"cancel\" formnovalidate>Cancel</button>\
         </form></main></body></html>",
    );
    Answer {
        status: 200,
        content_type: Some("text/html;charset=utf-8".to_owned()),
        headers: vec![("Cache-Control".to_owned(), "no-store".to_owned())],
        body: html.into_bytes(),
    }
}

/// HubSpot's generic error body, the specs' `Error` schema.
pub(crate) fn generic_error(message: &str, category: &str) -> Value {
    json!({
        "status": "error",
        "message": message,
        "correlationId": random::uuid(),
        "category": category,
    })
}

/// A token-endpoint error (HTTP 400) in the configured style.
pub(crate) fn token_error(error: &TokenError, style: ErrorStyle) -> Answer {
    let body = match style {
        ErrorStyle::LegacyOnly => json!({
            "status": error.status,
            "message": error.message,
            "correlationId": random::uuid(),
        }),
        ErrorStyle::RfcOnly => json!({
            "error": error.error,
            "error_description": error.message,
        }),
        ErrorStyle::Both => json!({
            "error": error.error,
            "error_description": error.message,
            "status": error.status,
            "message": error.message,
            "correlationId": random::uuid(),
        }),
    };
    Answer::json(400, &body)
}

/// Which token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    V1,
    V3,
    V2026_03,
}

/// A successful token answer.
pub(crate) fn token_success(minted: &Minted, generation: Generation, fields: TokenFields) -> Value {
    let mut body = Map::new();
    body.insert("token_type".into(), json!("bearer"));
    if let Some(refresh) = &minted.refresh_token {
        body.insert("refresh_token".into(), json!(refresh));
    }
    body.insert("access_token".into(), json!(minted.access_token));
    body.insert("expires_in".into(), json!(minted.expires_in));
    if fields == TokenFields::Spec {
        body.insert("token_use".into(), json!("access_token"));
        if generation != Generation::V1 {
            body.insert("hub_id".into(), json!(minted.grant.portal_id));
            body.insert("user_id".into(), json!(minted.grant.user.id));
            body.insert("scopes".into(), json!(minted.grant.scopes));
        }
    }
    Value::Object(body)
}

/// `GET /oauth/v1/access-tokens/{token}`: the v1 spec's `AccessTokenInfoResponse`.
pub(crate) fn v1_access_info(token: &str, grant: &Grant, portal: &FakePortal, app_id: u64, expires_in: u64) -> Value {
    json!({
        "token": token,
        "user": grant.user.email,
        "hub_domain": portal.hub_domain,
        "scopes": grant.scopes,
        "hub_id": grant.portal_id,
        "app_id": app_id,
        "expires_in": expires_in,
        "user_id": grant.user.id,
        "token_type": "access",
    })
}

/// `GET /oauth/v1/refresh-tokens/{token}`: the v1 spec's `RefreshTokenInfoResponse`.
pub(crate) fn v1_refresh_info(token: &str, grant: &Grant, portal: &FakePortal, client_id: &str) -> Value {
    json!({
        "token": token,
        "user": grant.user.email,
        "hub_domain": portal.hub_domain,
        "scopes": grant.scopes,
        "hub_id": grant.portal_id,
        "user_id": grant.user.id,
        "client_id": client_id,
        "token_type": "refresh",
    })
}

/// What introspection needs to describe an access token.
#[derive(Debug)]
pub(crate) struct AccessDescription<'a> {
    pub(crate) token: &'a str,
    pub(crate) grant: &'a Grant,
    pub(crate) portal: &'a FakePortal,
    pub(crate) app_id: u64,
    pub(crate) client_id: &'a str,
    pub(crate) expires_in: u64,
    pub(crate) expires_at_millis: u64,
    pub(crate) install_id: String,
}

/// `POST /oauth/2026-03/token/introspect` for a live access token: the spec's `PublicAccessTokenInfoResponse`.
pub(crate) fn introspect_access(d: &AccessDescription<'_>) -> Value {
    use base64::Engine as _;
    let scopes_blob = base64::engine::general_purpose::STANDARD.encode(d.grant.scopes.join(" "));
    json!({
        "active": true,
        "token": d.token,
        "token_use": "access_token",
        "token_type": "access",
        "user": d.grant.user.email,
        "hub_domain": d.portal.hub_domain,
        "scopes": d.grant.scopes,
        "hub_id": d.grant.portal_id,
        "app_id": d.app_id,
        "client_id": d.client_id,
        "expires_in": d.expires_in,
        "user_id": d.grant.user.id,
        "is_private_distribution": false,
        "signed_access_token": {
            "expiresAt": d.expires_at_millis,
            "scopes": scopes_blob,
            "hubId": d.grant.portal_id,
            "userId": d.grant.user.id,
            "appId": d.app_id,
            "signature": random::base64url(20),
            "scopeToScopeGroupPks": random::base64url(24),
            "newSignature": random::base64url(32),
            "hublet": d.portal.data_hosting_location,
            "trialScopes": "",
            "trialScopeToScopeGroupPks": "",
            "isUserLevel": false,
            "installingUserId": d.grant.user.id,
            "isServiceAccount": false,
            "isPrivateDistribution": false,
            "appInstallId": d.install_id,
            "audience": d.client_id,
        },
    })
}

/// `POST /oauth/2026-03/token/introspect` for a live refresh token: the spec's `PublicRefreshTokenInfoResponse`.
pub(crate) fn introspect_refresh(
    token: &str,
    grant: &Grant,
    portal: &FakePortal,
    app_id: u64,
    client_id: &str,
) -> Value {
    json!({
        "active": true,
        "token": token,
        "token_use": "refresh_token",
        "token_type": "refresh",
        "user": grant.user.email,
        "hub_domain": portal.hub_domain,
        "scopes": grant.scopes,
        "hub_id": grant.portal_id,
        "app_id": app_id,
        "client_id": client_id,
        "user_id": grant.user.id,
    })
}

/// `POST /oauth/2026-03/token/introspect` for a dead token, in [`DeadIntrospection::Inactive`] mode.
///
/// [`DeadIntrospection::Inactive`]: super::DeadIntrospection::Inactive
pub(crate) fn introspect_inactive() -> Value {
    json!({ "active": false })
}

/// `GET /account-info/.../details`: the spec's `PortalInformationResponse`.
pub(crate) fn account_info(portal: &FakePortal) -> Value {
    json!({
        "portalId": portal.id,
        "portalName": portal.name,
        "accountType": portal.account_type.as_str(),
        "timeZone": portal.time_zone,
        "companyCurrency": portal.currency,
        "additionalCurrencies": portal.additional_currencies,
        "utcOffset": portal.utc_offset(),
        "utcOffsetMilliseconds": i64::from(portal.utc_offset_minutes) * 60_000,
        "uiDomain": portal.ui_domain,
        "dataHostingLocation": portal.data_hosting_location,
        "createdAt": portal.created_at_millis,
    })
}

/// A `grant_type=client_credentials` answer: the specs' `ClientCredentialsTokenResponse` (`token_use`
/// `"client_credentials"`), an app-level token without refresh token, portal or user.
pub(crate) fn client_credentials_success(access_token: &str, expires_in: u64, scopes: &[String]) -> Value {
    json!({
        "token_type": "bearer",
        "access_token": access_token,
        "expires_in": expires_in,
        "token_use": "client_credentials",
        "scopes": scopes,
    })
}

// ---- not found, bad input, authentication errors ----

/// `404` for a path no endpoint serves, with HubSpot's generic error body (the fake's wording).
pub(crate) fn route_not_found() -> Answer {
    Answer::json(404, &generic_error("Resource not found", "OBJECT_NOT_FOUND"))
}

/// `413` for a body over the fake's limit, with HubSpot's generic error body (the fake's status and wording).
pub(crate) fn body_too_large() -> Answer {
    Answer::json(413, &generic_error("The request body is too large.", "VALIDATION_ERROR"))
}

/// `400` for credentials in the query string of a 2026-03 or v3 endpoint, as a token-endpoint error.
pub(crate) fn credentials_in_query(style: ErrorStyle) -> Answer {
    let error = TokenError {
        error: "invalid_request",
        status: "BAD_REQUEST",
        message: "client credentials, codes and tokens must be sent in the form body, not in the query string"
            .to_owned(),
    };
    token_error(&error, style)
}

/// `404 OBJECT_NOT_FOUND` for a token of the v1 metadata and revocation endpoints.
pub(crate) fn token_not_found() -> Answer {
    Answer::json(404, &generic_error("The token was not found, has expired or was revoked.", "OBJECT_NOT_FOUND"))
}

/// A `401` with HubSpot's generic error body.
fn unauthorized(message: &str, category: &str) -> Answer {
    Answer::json(401, &generic_error(message, category))
}

/// `401 INVALID_AUTHENTICATION`: no bearer token (and, on the CRM API, one that is unknown or revoked).
pub(crate) fn credentials_not_found() -> Answer {
    unauthorized(
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more \
         details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        "INVALID_AUTHENTICATION",
    )
}

/// `401 EXPIRED_AUTHENTICATION`: the access token expired this long ago.
pub(crate) fn token_expired(ago: Duration) -> Answer {
    unauthorized(
        &format!("The OAuth token used to make this call expired {} second(s) ago.", ago.as_secs()),
        "EXPIRED_AUTHENTICATION",
    )
}

/// `401 INVALID_AUTHENTICATION` of account info: the access token is unknown or revoked.
pub(crate) fn token_invalid() -> Answer {
    unauthorized(
        "The OAuth token used to make this call is not valid: it is unknown or was revoked.",
        "INVALID_AUTHENTICATION",
    )
}

// ---- the CRM objects API ----

/// One object as the CRM API shows it: the `wanted` properties (with the three HubSpot always includes), or the
/// type's default properties when none are named.
pub(crate) fn object_json(id: u64, object: &FakeObject, object_type: &str, wanted: Option<&[String]>) -> Value {
    let mut properties = Map::new();
    match wanted {
        Some(names) if !names.is_empty() => {
            for name in names {
                properties.insert(name.clone(), object.properties.get(name).map_or(Value::Null, |v| json!(v)));
            }
            // HubSpot always includes these three.
            for name in ["createdate", "hs_object_id", last_modified_property(object_type)] {
                properties.insert(name.to_owned(), object.properties.get(name).map_or(Value::Null, |v| json!(v)));
            }
        }
        _ => {
            for name in default_properties(object_type) {
                properties.insert((*name).to_owned(), object.properties.get(*name).map_or(Value::Null, |v| json!(v)));
            }
        }
    }
    let mut body = json!({
        "id": id.to_string(),
        "properties": properties,
        "createdAt": rfc3339::millis(object.created_at),
        "updatedAt": rfc3339::millis(object.updated_at),
        "archived": object.archived_at.is_some(),
    });
    if let Some(at) = object.archived_at {
        body["archivedAt"] = json!(rfc3339::millis(at));
    }
    body
}

/// Adds `associations` to an object's JSON for the requested types it has associations with (HubSpot leaves out
/// the types without any, and the key when none is left).
pub(crate) fn add_associations(body: &mut Value, object: &FakeObject, object_type: &str, requested: &[&'static str]) {
    let mut found = Map::new();
    for to_type in requested {
        let Some(ids) = object.associations.get(to_type).filter(|ids| !ids.is_empty()) else { continue };
        let label = format!("{}_to_{}", singular(object_type), singular(to_type));
        let results: Vec<Value> = ids.iter().map(|id| json!({ "id": id.to_string(), "type": label })).collect();
        found.insert((*to_type).to_owned(), json!({ "results": results }));
    }
    if !found.is_empty() {
        body["associations"] = Value::Object(found);
    }
}

/// A `400 VALIDATION_ERROR` for property values HubSpot refuses on create: the message lists each problem the
/// way HubSpot writes it (`Property values were not valid: [{"isValid":false,...,"error":"PROPERTY_DOESNT_EXIST",
/// "name":...}]`), and `errors` carries one entry per problem with its `code`.
pub(crate) fn invalid_property_values(problems: &[(String, &'static str, String)]) -> Answer {
    let listed: Vec<Value> = problems
        .iter()
        .map(|(name, error, message)| {
            json!({"isValid": false, "message": message, "error": error, "name": name, "localizedErrorMessage": message})
        })
        .collect();
    let mut body =
        generic_error(&format!("Property values were not valid: {}", Value::Array(listed)), "VALIDATION_ERROR");
    body["errors"] = Value::Array(
        problems
            .iter()
            .map(|(name, error, message)| json!({"message": message, "code": error, "context": {"propertyName": [name]}}))
            .collect(),
    );
    Answer::json(400, &body)
}

/// `409 CONFLICT`: an object with this unique value exists (HubSpot's wording for contacts).
pub(crate) fn already_exists(object_type: &str, existing: u64) -> Answer {
    let kind = match object_type {
        "contacts" => "Contact",
        "companies" => "Company",
        "deals" => "Deal",
        _ => "Ticket",
    };
    Answer::json(409, &generic_error(&format!("{kind} already exists. Existing ID: {existing}"), "CONFLICT"))
}

/// `403 MISSING_SCOPES`, naming the scope in `requiredGranularScopes`.
pub(crate) fn missing_scopes(scope: &str) -> Answer {
    let mut body = generic_error(
        "This app hasn't been granted all required scopes to make this call. Read more about required scopes here: \
         https://developers.hubspot.com/scopes.",
        "MISSING_SCOPES",
    );
    body["errors"] = json!([{
        "message": "One or more of the following scopes are required.",
        "context": { "requiredGranularScopes": [scope] },
    }]);
    body["links"] = json!({ "scopes": "https://developers.hubspot.com/scopes" });
    Answer::json(403, &body)
}

/// `400 VALIDATION_ERROR`.
pub(crate) fn validation_error(message: &str) -> Answer {
    Answer::json(400, &generic_error(message, "VALIDATION_ERROR"))
}

/// `404 OBJECT_NOT_FOUND` for a CRM object.
pub(crate) fn object_not_found(object_type: &str, id: &str) -> Answer {
    let message = format!("Object not found.  objectId are usually numeric. {object_type} {id} does not exist.");
    Answer::json(404, &generic_error(&message, "OBJECT_NOT_FOUND"))
}

/// The 429 of HubSpot's own limiter (no `Retry-After`: HubSpot sends none for these policies; the search limit
/// sends no rate-limit headers either).
pub(crate) fn rate_limited(limited: &Limited) -> Answer {
    let (message, policy) = if limited.search {
        ("You have reached your secondly limit.", "SECONDLY")
    } else {
        ("You have reached your ten_secondly_rolling limit.", "TEN_SECONDLY_ROLLING")
    };
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": random::uuid(),
        "policyName": policy,
    });
    let answer = Answer::json(429, &body);
    if limited.search {
        return answer;
    }
    answer
        .header("X-HubSpot-RateLimit-Interval-Milliseconds", limited.window.as_millis().to_string())
        .header("X-HubSpot-RateLimit-Max", limited.max.to_string())
        .header("X-HubSpot-RateLimit-Remaining", "0")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::types::FakeUser;

    fn minted(refresh: Option<&str>) -> Minted {
        Minted {
            access_token: "CNabc".into(),
            refresh_token: refresh.map(str::to_owned),
            grant: Grant { portal_id: 62515, user: FakeUser::default(), scopes: vec!["oauth".into()] },
            expires_in: 1800,
        }
    }

    #[test]
    fn token_answers_per_generation_and_fields() {
        let v1 = token_success(&minted(Some("r")), Generation::V1, TokenFields::Spec);
        assert_eq!(v1["token_use"], "access_token");
        assert!(v1.get("hub_id").is_none());
        let v26 = token_success(&minted(Some("r")), Generation::V2026_03, TokenFields::Spec);
        assert_eq!(v26["hub_id"], 62515);
        assert_eq!(v26["scopes"], json!(["oauth"]));
        let minimal = token_success(&minted(Some("r")), Generation::V2026_03, TokenFields::Minimal);
        let keys: Vec<&String> = minimal.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let omitted = token_success(&minted(None), Generation::V1, TokenFields::Spec);
        assert!(omitted.get("refresh_token").is_none());
    }

    #[test]
    fn error_styles() {
        let e = TokenError::bad_refresh_token();
        let body = |style| -> Value { serde_json::from_slice(&token_error(&e, style).body).unwrap() };
        let both = body(ErrorStyle::Both);
        assert_eq!(both["error"], "invalid_grant");
        assert_eq!(both["status"], "BAD_REFRESH_TOKEN");
        assert!(both["correlationId"].is_string());
        assert!(body(ErrorStyle::LegacyOnly).get("error").is_none());
        assert!(body(ErrorStyle::RfcOnly).get("status").is_none());
        assert_eq!(token_error(&e, ErrorStyle::Both).status, 400);
    }

    #[test]
    fn a_bad_raw_content_type_does_not_panic() {
        let a = Answer::failure(&Failure::Status { status: 200, content_type: "bad\nvalue".into(), body: vec![] });
        let _ = a.unwrap().into_template();
        let a = Answer::failure(&Failure::Status { status: 2000, content_type: String::new(), body: vec![] });
        let _ = a.unwrap().into_template();
    }

    #[test]
    fn html_is_escaped() {
        let a = Answer::html(400, "<t>", "a & \"b\"");
        let page = String::from_utf8(a.body).unwrap();
        assert!(page.contains("&lt;t&gt;") && page.contains("a &amp; &quot;b&quot;"), "{page}");
    }

    #[test]
    fn the_limiters_429s() {
        let general = rate_limited(&Limited { max: 2, window: Duration::from_secs(10), search: false });
        assert_eq!(general.status, 429);
        assert!(general.headers.contains(&("X-HubSpot-RateLimit-Interval-Milliseconds".into(), "10000".into())));
        assert!(general.headers.contains(&("X-HubSpot-RateLimit-Max".into(), "2".into())));
        let search = rate_limited(&Limited { max: 5, window: Duration::from_secs(1), search: true });
        assert_eq!(search.status, 429);
        assert!(search.headers.is_empty(), "{search:?}");
    }
}
