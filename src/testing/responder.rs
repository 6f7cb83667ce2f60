//! The mounted responders: which request is which [`Endpoint`], and who answers it. One [`Responder`] per endpoint
//! counts the request, plays a queued failure or hands the request to the OAuth or CRM responder.

use std::sync::Arc;
use std::time::SystemTime;

use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::request::{form_of, path_token};
use super::state::{Shared, State};
use super::types::{Endpoint, ErrorStyle, Failure};
use super::wire::{self, Answer, Generation};
use super::{control, crm, oauth};

/// Mounts one [`Responder`] per endpoint on `server`, all answering from `shared`, and with `control_api` the
/// control API under `/__fake/`.
pub(crate) async fn mount(server: &MockServer, shared: &Arc<Shared>, control_api: bool) {
    for endpoint in Endpoint::ALL {
        let mock = match endpoint {
            Endpoint::Authorize => Mock::given(method("GET")).and(path_regex(r"^/oauth/(?:[^/]+/)?authorize$")),
            Endpoint::TokenV1 => Mock::given(method("POST")).and(path("/oauth/v1/token")),
            Endpoint::Token202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token")),
            Endpoint::TokenV3 => Mock::given(method("POST")).and(path("/oauth/v3/token")),
            Endpoint::Introspect202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token/introspect")),
            Endpoint::IntrospectV3 => Mock::given(method("POST")).and(path("/oauth/v3/token/introspect")),
            Endpoint::AccessTokenInfoV1 => {
                Mock::given(method("GET")).and(path_regex(r"^/oauth/v1/access-tokens/[^/]+$"))
            }
            Endpoint::RefreshTokenInfoV1 => {
                Mock::given(method("GET")).and(path_regex(r"^/oauth/v1/refresh-tokens/[^/]+$"))
            }
            Endpoint::RevokeV1 => Mock::given(method("DELETE")).and(path_regex(r"^/oauth/v1/refresh-tokens/[^/]+$")),
            Endpoint::Revoke202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token/revoke")),
            Endpoint::RevokeV3 => Mock::given(method("POST")).and(path("/oauth/v3/token/revoke")),
            Endpoint::AccountInfoV3 => Mock::given(method("GET")).and(path("/account-info/v3/details")),
            Endpoint::AccountInfo202603 => Mock::given(method("GET")).and(path("/account-info/2026-03/details")),
            Endpoint::CrmList => Mock::given(method("GET")).and(path_regex(r"^/crm/v3/objects/[^/]+/?$")),
            Endpoint::CrmGet => Mock::given(method("GET")).and(path_regex(r"^/crm/v3/objects/[^/]+/[^/]+$")),
            Endpoint::CrmSearch => Mock::given(method("POST")).and(path_regex(r"^/crm/v3/objects/[^/]+/search$")),
            Endpoint::CrmCreate => Mock::given(method("POST")).and(path_regex(r"^/crm/v3/objects/[^/]+/?$")),
        };
        mock.respond_with(Responder { shared: Arc::clone(shared), endpoint })
            .named(format!("fake HubSpot: {}", endpoint.route()))
            .mount(server)
            .await;
    }
    // The consent page's form posts back to the authorize path (interactive mode).
    Mock::given(method("POST"))
        .and(path_regex(r"^/oauth/(?:[^/]+/)?authorize$"))
        .respond_with(Responder { shared: Arc::clone(shared), endpoint: Endpoint::Authorize })
        .named("fake HubSpot: POST /oauth/authorize (the consent page's form)")
        .mount(server)
        .await;
    if control_api {
        Mock::given(path_regex(r"^/__fake/"))
            .respond_with(Control { shared: Arc::clone(shared) })
            .named("fake HubSpot: the control API (/__fake/*)")
            .mount(server)
            .await;
    }
    // Last of all, below every mock a test may add: anything unrouted gets HubSpot's JSON 404.
    Mock::given(any())
        .respond_with(NotFound)
        .with_priority(u8::MAX)
        .named("fake HubSpot: unrouted paths")
        .mount(server)
        .await;
}

/// Answers a request no endpoint serves.
#[derive(Debug)]
struct NotFound;

impl Respond for NotFound {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        wire::route_not_found().into_template()
    }
}

/// Answers the control API from the shared state.
struct Control {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Respond for Control {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.body.len() > MAX_BODY {
            return wire::body_too_large().into_template();
        }
        control::handle(request, &mut self.shared.lock()).into_template()
    }
}

/// Answers one endpoint from the shared state.
struct Responder {
    shared: Arc<Shared>,
    endpoint: Endpoint,
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
        let answer = match refuse_input(self.endpoint, request, state.error_style) {
            Some(refusal) => refusal,
            None => handle(self.endpoint, request, &form, &mut state, now),
        };
        drop(state);
        let template = answer.into_template();
        match delay {
            Some(d) => template.set_delay(d),
            None => template,
        }
    }
}

/// The largest request body the fake reads (HubSpot documents none; the fake chooses 1 MiB).
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Fields that never belong in the query string of a body-only endpoint.
const SECRET_FIELDS: [&str; 6] = ["client_id", "client_secret", "code", "code_verifier", "refresh_token", "token"];

/// Input refused before any endpoint looks at it: a body over [`MAX_BODY`] (`413`), credentials in the query
/// string of a 2026-03 or v3 OAuth endpoint (`400`, as a token-endpoint error), or a token in the query string of
/// 2026-03 account info (`400 VALIDATION_ERROR`). Either way nothing changes in the fake.
fn refuse_input(endpoint: Endpoint, request: &Request, style: ErrorStyle) -> Option<Answer> {
    if request.body.len() > MAX_BODY {
        return Some(wire::body_too_large());
    }
    if endpoint.is_body_only() && request.url.query_pairs().any(|(k, _)| SECRET_FIELDS.contains(&k.as_ref())) {
        return Some(wire::credentials_in_query(style));
    }
    if endpoint == Endpoint::AccountInfo202603
        && request.url.query_pairs().any(|(k, _)| matches!(k.as_ref(), "access_token" | "token" | "hapikey"))
    {
        return Some(wire::validation_error(
            "Tokens are not accepted in the query string: send the access token in the Authorization header.",
        ));
    }
    None
}

/// The normal answer of `endpoint`, from the OAuth or the CRM responder.
fn handle(
    endpoint: Endpoint,
    request: &Request,
    form: &[(String, String)],
    state: &mut State,
    now: SystemTime,
) -> Answer {
    match endpoint {
        Endpoint::Authorize => oauth::authorize(&request.url, request.method == http::Method::POST, form, state, now),
        Endpoint::TokenV1 => oauth::token(Generation::V1, request, form, state, now),
        Endpoint::Token202603 => oauth::token(Generation::V2026_03, request, form, state, now),
        Endpoint::TokenV3 => oauth::token(Generation::V3, request, form, state, now),
        Endpoint::Introspect202603 | Endpoint::IntrospectV3 => oauth::introspect(form, state, now),
        Endpoint::AccessTokenInfoV1 => oauth::v1_access_info(&path_token(&request.url), state, now),
        Endpoint::RefreshTokenInfoV1 => oauth::v1_refresh_info(&path_token(&request.url), state),
        Endpoint::RevokeV1 => oauth::revoke_v1(&path_token(&request.url), state),
        Endpoint::Revoke202603 | Endpoint::RevokeV3 => oauth::revoke(form, state),
        Endpoint::AccountInfoV3 | Endpoint::AccountInfo202603 => oauth::account_info(request, state, now),
        Endpoint::CrmList | Endpoint::CrmGet | Endpoint::CrmSearch | Endpoint::CrmCreate => {
            crm::handle(endpoint, request, state, now)
        }
    }
}
