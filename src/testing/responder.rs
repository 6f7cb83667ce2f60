//! The mounted responders: which request is which [`Endpoint`], and who answers it. One [`Responder`] per endpoint
//! counts the request, plays a queued failure or hands the request to the OAuth or CRM responder.

use std::sync::Arc;
use std::time::SystemTime;

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::request::{form_of, path_token};
use super::state::{Shared, State};
use super::types::{Endpoint, Failure};
use super::wire::{Answer, Generation};
use super::{crm, oauth};

/// Mounts one [`Responder`] per endpoint on `server`, all answering from `shared`.
pub(crate) async fn mount(server: &MockServer, shared: &Arc<Shared>) {
    for endpoint in Endpoint::ALL {
        let mock = match endpoint {
            Endpoint::Authorize => Mock::given(method("GET")).and(path_regex(r"^/oauth/(?:[^/]+/)?authorize$")),
            Endpoint::TokenV1 => Mock::given(method("POST")).and(path("/oauth/v1/token")),
            Endpoint::Token202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token")),
            Endpoint::Introspect202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token/introspect")),
            Endpoint::AccessTokenInfoV1 => {
                Mock::given(method("GET")).and(path_regex(r"^/oauth/v1/access-tokens/[^/]+$"))
            }
            Endpoint::RefreshTokenInfoV1 => {
                Mock::given(method("GET")).and(path_regex(r"^/oauth/v1/refresh-tokens/[^/]+$"))
            }
            Endpoint::RevokeV1 => Mock::given(method("DELETE")).and(path_regex(r"^/oauth/v1/refresh-tokens/[^/]+$")),
            Endpoint::Revoke202603 => Mock::given(method("POST")).and(path("/oauth/2026-03/token/revoke")),
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
        let answer = handle(self.endpoint, request, &form, &mut state, now);
        drop(state);
        let template = answer.into_template();
        match delay {
            Some(d) => template.set_delay(d),
            None => template,
        }
    }
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
        Endpoint::Authorize => oauth::authorize(&request.url, form, state, now),
        Endpoint::TokenV1 => oauth::token(Generation::V1, request, form, state, now),
        Endpoint::Token202603 => oauth::token(Generation::V2026_03, request, form, state, now),
        Endpoint::Introspect202603 => oauth::introspect(form, state, now),
        Endpoint::AccessTokenInfoV1 => oauth::v1_access_info(&path_token(&request.url), state, now),
        Endpoint::RefreshTokenInfoV1 => oauth::v1_refresh_info(&path_token(&request.url), state),
        Endpoint::RevokeV1 => oauth::revoke_v1(&path_token(&request.url), state),
        Endpoint::Revoke202603 => oauth::revoke(form, state),
        Endpoint::AccountInfoV3 | Endpoint::AccountInfo202603 => oauth::account_info(request, state, now),
        Endpoint::CrmList | Endpoint::CrmGet | Endpoint::CrmSearch | Endpoint::CrmCreate => {
            crm::handle(endpoint, request, state, now)
        }
    }
}
