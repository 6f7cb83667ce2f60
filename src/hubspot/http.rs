//! The HTTP transport to HubSpot: no redirects, capped bodies, typed errors, bounded retries with back-off.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use crate::clock::Clock;
use crate::error::{Error, ErrorCode, HubSpotError};
use crate::retry::Backoff;

/// The largest answer read from HubSpot's OAuth and account endpoints by default (1 MiB): theirs are a few KiB.
pub(crate) const MAX_OAUTH_BODY: usize = 1024 * 1024;

/// The largest API answer read by default (64 MiB): far above HubSpot's largest page (a batch read or list of 100
/// objects with every property is a few MiB).
pub(crate) const MAX_API_BODY: usize = 64 * 1024 * 1024;

/// How failed calls to HubSpot are retried. A code exchange is never retried.
///
/// Retried: 5xx answers, timeouts, connection failures, and 429 answers whose `Retry-After` is no longer than
/// [`RetryPolicy::max_retry_after`]. The delay before each retry follows [`RetryPolicy::backoff`]; a `Retry-After`
/// is honoured as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt. Default 2.
    pub max_retries: u32,
    /// The delays between attempts. Default 250 ms, doubling, at most 5 s, with jitter.
    pub backoff: Backoff,
    /// The longest `Retry-After` waited for; a longer one is returned as [`ErrorCode::RateLimited`]. Default 10 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    /// A policy with `max_retries` retries and the default delays.
    pub fn with_max_retries(max_retries: u32) -> Self {
        Self { max_retries, ..Self::default() }
    }
}

/// The operation a request belongs to; decides how errors are read and whether they are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Exchange,
    Refresh,
    Introspect,
    AccountInfo,
    Revoke,
    Api,
}

impl Op {
    fn what(self) -> &'static str {
        match self {
            Op::Exchange => "exchanging the authorization code",
            Op::Refresh => "refreshing the access token",
            Op::Introspect => "reading the token's metadata",
            Op::AccountInfo => "reading the account's details",
            Op::Revoke => "revoking the refresh token",
            Op::Api => "calling HubSpot's API",
        }
    }

    fn is_token_endpoint(self) -> bool {
        matches!(self, Op::Exchange | Op::Refresh)
    }
}

/// A response from HubSpot, body read (and capped).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) retry: RetryPolicy,
    max_body: usize,
}

/// How a [`Transport`] reaches HubSpot besides its timeout, clock and retries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reach {
    /// The largest answer read; a longer one is refused unread.
    pub(crate) max_body: usize,
    /// A proxy the vendor configured. Without one, no proxy is used, whatever the environment (`HTTPS_PROXY`, …)
    /// says: a proxy sees every token.
    pub(crate) proxy: Option<url::Url>,
}

impl Transport {
    pub(crate) fn new(
        timeout: Duration,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
        reach: Reach,
    ) -> Result<Self, Error> {
        let build_error = |e: reqwest::Error| {
            Error::new(ErrorCode::InvalidConfig, "could not build the HTTP client").with_source(e.without_url())
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("hubspot-connect/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(proxy) = reach.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(build_error)?);
        }
        let client = builder.build().map_err(build_error)?;
        Ok(Self { client, clock, retry, max_body: reach.max_body })
    }

    /// Sends one request and reads the answer, whatever its status.
    pub(crate) async fn send(&self, op: Op, request: reqwest::Request) -> Result<Answer, Error> {
        let response = self.client.execute(request).await.map_err(|e| network_error(op, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(op, response, self.max_body).await?;
        Ok(Answer { status, headers, body })
    }

    /// Sends, then turns any non-2xx answer into a typed error.
    pub(crate) async fn send_ok(&self, op: Op, request: reqwest::Request, secrets: &[&str]) -> Result<Answer, Error> {
        let answer = self.send(op, request).await?;
        if answer.is_success() { Ok(answer) } else { Err(map_error(op, &answer, secrets, self.clock.as_ref())) }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out. An exchange runs once.
    pub(crate) async fn retrying<T, F, Fut>(&self, op: Op, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let max = if op == Op::Exchange { 0 } else { self.retry.max_retries };
        let mut retry = 0;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if retry >= max || !err.is_retryable() {
                return Err(err);
            }
            // A refresh HubSpot may have carried out (it timed out, or the connection broke mid-request) is not
            // sent again: with refresh-token rotation the old token would be refused and the connection lost. The
            // caller backs off and tries later instead.
            if op == Op::Refresh && err.may_have_taken_effect() {
                tracing::debug!(code = err.code().as_str(), "not retrying a refresh that may have reached HubSpot");
                return Err(err);
            }
            let delay = match err.retry_after() {
                Some(d) if d > self.retry.max_retry_after => return Err(err),
                Some(d) => d,
                None => self.retry.backoff.delay(retry, &mut rand::thread_rng()),
            };
            tracing::debug!(code = err.code().as_str(), retry, ?delay, op = op.what(), "retrying a HubSpot call");
            self.clock.sleep(delay).await;
            retry += 1;
        }
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: url::Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }
}

fn network_error(op: Op, e: reqwest::Error) -> Error {
    let timeout = e.is_timeout();
    let unsent = e.is_connect();
    let e = e.without_url();
    let what = op.what();
    let err = if timeout {
        Error::new(ErrorCode::HubspotUnavailable, format!("HubSpot did not answer in time while {what}")).with_timeout()
    } else if e.is_connect() {
        Error::new(ErrorCode::HubspotUnavailable, format!("could not connect to HubSpot while {what}"))
    } else {
        Error::new(ErrorCode::HubspotUnavailable, format!("the request to HubSpot failed while {what}"))
    };
    let err = if unsent { err.with_unsent() } else { err };
    err.with_source(e)
}

/// The error for an answer over `max` bytes. An API answer that big is a limit the vendor set too low
/// ([`ErrorCode::InvalidConfig`]); an OAuth answer that big is not HubSpot's ([`ErrorCode::HubspotUnavailable`]).
fn too_big(op: Op, status: u16, max: usize) -> Error {
    let limit = if max >= 1024 * 1024 { format!("{} MiB", max / (1024 * 1024)) } else { format!("{} KiB", max / 1024) };
    let err = if op == Op::Api {
        Error::new(
            ErrorCode::InvalidConfig,
            format!(
                "HubSpot's answer is larger than the {limit} this client reads while {}; raise \
                 ApiConfig::max_response_body or ask for smaller pages",
                op.what()
            ),
        )
    } else {
        Error::new(
            ErrorCode::HubspotUnavailable,
            format!("HubSpot's answer is larger than the {limit} an OAuth answer can be while {}", op.what()),
        )
    };
    err.with_status(status).permanent()
}

async fn read_capped(op: Op, mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    let status = response.status().as_u16();
    if response.content_length().is_some_and(|len| len > max as u64) {
        return Err(too_big(op, status, max));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(too_big(op, status, max));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(network_error(op, e)),
        }
    }
}

/// The longest `Retry-After` believed (a day); a longer one is read as a day.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// Parses `Retry-After`: delay-seconds or an HTTP date (relative to `clock`), at most [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap, clock: &dyn Clock) -> Option<Duration> {
    parse_retry_after(headers.get(http::header::RETRY_AFTER)?.as_bytes(), clock.now())
}

/// `Retry-After`'s value: delay-seconds or an HTTP date, relative to `now`; `None` when it is neither.
pub(crate) fn parse_retry_after(value: &[u8], now: std::time::SystemTime) -> Option<Duration> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// Turns a non-2xx answer into a typed error. `secrets` are scrubbed from anything HubSpot echoed.
///
/// The code comes from HubSpot's RFC 6749 `error`, refined by its legacy `status` when that names a more specific
/// case (a redirect-URI mismatch is reported as `invalid_grant`), then from the API's `category`, then from the
/// HTTP status.
pub(crate) fn map_error(op: Op, answer: &Answer, secrets: &[&str], clock: &dyn Clock) -> Error {
    let status = answer.status;
    let what = op.what();
    let body = HubSpotError::from_json_scrubbed(http::StatusCode::from_u16(status).ok(), &answer.body, secrets);
    let rate_limited = status == 429
        || body.as_ref().is_some_and(|b| {
            b.category.as_deref() == Some("RATE_LIMITS") || b.error_type.as_deref() == Some("RATE_LIMIT")
        });
    if rate_limited {
        let mut err = Error::new(
            ErrorCode::RateLimited,
            with_details(format!("HubSpot's rate limit was hit while {what}"), body.as_ref()),
        )
        .with_status(status);
        if let Some(d) = retry_after(&answer.headers, clock) {
            err = err.with_retry_after(d);
        }
        return attach(err, body);
    }
    if status >= 500 {
        let err = Error::new(
            ErrorCode::HubspotUnavailable,
            with_details(format!("HubSpot answered {status} while {what}"), body.as_ref()),
        )
        .with_status(status);
        return attach(err, body);
    }
    if (300..400).contains(&status) {
        return Error::new(
            ErrorCode::HubspotUnavailable,
            format!("HubSpot answered with a redirect ({status}) while {what}; redirects from HubSpot's API are not followed"),
        )
        .with_status(status)
        .permanent();
    }
    let Some(body) = body else {
        if op == Op::Api && (400..500).contains(&status) {
            let code = match status {
                401 => ErrorCode::ReconnectRequired,
                403 => ErrorCode::MissingScopes,
                _ => ErrorCode::RequestRejected,
            };
            return Error::new(code, format!("HubSpot refused the request ({status}) with a body that is not JSON"))
                .with_status(status);
        }
        return Error::new(
            ErrorCode::HubspotUnavailable,
            format!("HubSpot answered {status} with a body that is not JSON while {what}"),
        )
        .with_status(status)
        .permanent();
    };
    let code = classify(op, status, &body);
    let lead = match code {
        ErrorCode::ReconnectRequired if op == Op::Refresh => "HubSpot refused the refresh token".to_owned(),
        ErrorCode::ReconnectRequired => format!("HubSpot refused the token while {what}"),
        ErrorCode::TokenExpired if op == Op::Exchange => "HubSpot refused the authorization code".to_owned(),
        ErrorCode::TokenExpired => format!("the access token has expired ({what})"),
        ErrorCode::InvalidClient => format!("HubSpot rejected the app's credentials or redirect URI while {what}"),
        ErrorCode::MissingScopes => format!("the token lacks a scope needed for {what}"),
        ErrorCode::AccessDenied => format!("HubSpot denied access while {what}"),
        ErrorCode::AuthScopeDenied => format!("HubSpot refused the requested scopes while {what}"),
        ErrorCode::RequestRejected => format!("HubSpot refused the request ({status})"),
        _ => format!("HubSpot answered {status} while {what}"),
    };
    let missing = body.missing_scopes();
    // HubSpot said it is passing (`temporarily_unavailable`, `server_error`), or said something this crate does
    // not know: only the former is worth trying again.
    let passing = matches!(body.error.as_deref(), Some("temporarily_unavailable" | "server_error"));
    let err = Error::new(code, with_details(lead, Some(&body))).with_status(status).with_missing_scopes(missing);
    let err = if passing { err } else { err.permanent() };
    attach(err, Some(body))
}

fn attach(err: Error, body: Option<HubSpotError>) -> Error {
    match body {
        Some(b) => err.with_hubspot(b),
        None => err,
    }
}

fn classify(op: Op, status: u16, body: &HubSpotError) -> ErrorCode {
    let token_fields = op != Op::Api;
    let by_status = body.legacy_status.as_deref().filter(|_| token_fields).and_then(legacy_status);
    let by_error = body.error.as_deref().filter(|_| token_fields).and_then(|e| rfc_error(op, e));
    let by_category = body.category.as_deref().and_then(category);
    let by_http = match status {
        401 | 403 if op.is_token_endpoint() || op == Op::Revoke => Some(ErrorCode::InvalidClient),
        401 => Some(ErrorCode::ReconnectRequired),
        403 => Some(ErrorCode::MissingScopes),
        400..=499 if op == Op::Api => Some(ErrorCode::RequestRejected),
        _ => None,
    };
    by_error
        .map(|e| by_status.unwrap_or(e))
        .or(by_status)
        .or(by_category)
        .or(by_http)
        .unwrap_or(ErrorCode::HubspotUnavailable)
}

fn legacy_status(status: &str) -> Option<ErrorCode> {
    Some(match status {
        "BAD_REFRESH_TOKEN" => ErrorCode::ReconnectRequired,
        "BAD_AUTH_CODE" | "EXPIRED_AUTH_CODE" => ErrorCode::TokenExpired,
        "MISMATCH_REDIRECT_URI_AUTH_CODE"
        | "BAD_REDIRECT_URI"
        | "BAD_CLIENT_ID"
        | "BAD_CLIENT_SECRET"
        | "BAD_GRANT_TYPE"
        | "INVALID_CLIENT" => ErrorCode::InvalidClient,
        _ => return None,
    })
}

fn rfc_error(op: Op, error: &str) -> Option<ErrorCode> {
    Some(match error {
        "invalid_grant" if op == Op::Exchange => ErrorCode::TokenExpired,
        "invalid_grant" | "invalid_token" => ErrorCode::ReconnectRequired,
        "invalid_client" | "unauthorized_client" | "unsupported_grant_type" | "redirect_uri_mismatch" => {
            ErrorCode::InvalidClient
        }
        "access_denied" => ErrorCode::AccessDenied,
        "invalid_scope" => ErrorCode::AuthScopeDenied,
        "temporarily_unavailable" | "server_error" => ErrorCode::HubspotUnavailable,
        _ => return None,
    })
}

fn category(category: &str) -> Option<ErrorCode> {
    Some(match category {
        "EXPIRED_AUTHENTICATION" => ErrorCode::TokenExpired,
        "INVALID_AUTHENTICATION" => ErrorCode::ReconnectRequired,
        "MISSING_SCOPES" => ErrorCode::MissingScopes,
        "RATE_LIMITS" => ErrorCode::RateLimited,
        _ => return None,
    })
}

/// "lead (STATUS: message; correlation id X)".
fn with_details(lead: String, body: Option<&HubSpotError>) -> String {
    let Some(body) = body else { return lead };
    let mut parts = Vec::new();
    let label =
        body.legacy_status.as_deref().filter(|s| *s != "error").or(body.error.as_deref()).or(body.category.as_deref());
    match (label, body.text()) {
        (Some(l), Some(t)) => parts.push(format!("{l}: {t}")),
        (Some(l), None) => parts.push(l.to_owned()),
        (None, Some(t)) => parts.push(t.to_owned()),
        (None, None) => {}
    }
    if let Some(id) = &body.correlation_id {
        parts.push(format!("correlation id {id}"));
    }
    if parts.is_empty() { lead } else { format!("{lead} ({})", parts.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: HeaderMap::new(), body: body.as_bytes().to_vec() }
    }

    fn code(op: Op, status: u16, body: &str) -> ErrorCode {
        map_error(op, &answer(status, body), &[], &ManualClock::new()).code()
    }

    #[test]
    fn token_endpoint_mapping() {
        let both = r#"{"error":"invalid_grant","error_description":"x","status":"BAD_REFRESH_TOKEN","message":"x"}"#;
        assert_eq!(code(Op::Refresh, 400, both), ErrorCode::ReconnectRequired);
        assert_eq!(code(Op::Refresh, 400, r#"{"error":"invalid_grant"}"#), ErrorCode::ReconnectRequired);
        assert_eq!(code(Op::Refresh, 400, r#"{"status":"BAD_REFRESH_TOKEN"}"#), ErrorCode::ReconnectRequired);
        assert_eq!(code(Op::Exchange, 400, r#"{"error":"invalid_grant"}"#), ErrorCode::TokenExpired);
        assert_eq!(code(Op::Exchange, 400, r#"{"status":"BAD_AUTH_CODE"}"#), ErrorCode::TokenExpired);
        assert_eq!(code(Op::Exchange, 400, r#"{"status":"EXPIRED_AUTH_CODE"}"#), ErrorCode::TokenExpired);
        assert_eq!(
            code(Op::Exchange, 400, r#"{"error":"invalid_grant","status":"MISMATCH_REDIRECT_URI_AUTH_CODE"}"#),
            ErrorCode::InvalidClient
        );
        assert_eq!(code(Op::Exchange, 400, r#"{"status":"BAD_REDIRECT_URI"}"#), ErrorCode::InvalidClient);
        assert_eq!(code(Op::Exchange, 400, r#"{"status":"BAD_CLIENT_ID"}"#), ErrorCode::InvalidClient);
        assert_eq!(code(Op::Refresh, 400, r#"{"error":"invalid_client"}"#), ErrorCode::InvalidClient);
        assert_eq!(code(Op::Refresh, 401, r#"{"message":"no"}"#), ErrorCode::InvalidClient);
        assert_eq!(code(Op::Refresh, 400, r#"{"status":"SOMETHING_NEW"}"#), ErrorCode::HubspotUnavailable);
    }

    #[test]
    fn api_mapping() {
        assert_eq!(code(Op::AccountInfo, 401, r#"{"category":"EXPIRED_AUTHENTICATION"}"#), ErrorCode::TokenExpired);
        assert_eq!(
            code(Op::AccountInfo, 401, r#"{"category":"INVALID_AUTHENTICATION"}"#),
            ErrorCode::ReconnectRequired
        );
        let e = map_error(
            Op::AccountInfo,
            &answer(
                403,
                r#"{"category":"MISSING_SCOPES","errors":[{"message":"m","context":{"requiredGranularScopes":["oauth"]}}]}"#,
            ),
            &[],
            &ManualClock::new(),
        );
        assert_eq!(e.code(), ErrorCode::MissingScopes);
        assert_eq!(e.missing_scopes(), &[crate::Scope::OAUTH]);
    }

    #[test]
    fn transient_and_garbage() {
        let e = map_error(Op::Refresh, &answer(502, "<html>bad gateway</html>"), &[], &ManualClock::new());
        assert_eq!(e.code(), ErrorCode::HubspotUnavailable);
        assert!(e.is_retryable());
        let e = map_error(Op::Refresh, &answer(400, "<html>"), &[], &ManualClock::new());
        assert_eq!(e.code(), ErrorCode::HubspotUnavailable);
        assert!(!e.is_retryable());
        let e = map_error(Op::Refresh, &answer(302, ""), &[], &ManualClock::new());
        assert_eq!(e.code(), ErrorCode::HubspotUnavailable);
        assert!(e.message().contains("redirect"));
    }

    #[test]
    fn rate_limit_with_both_retry_after_forms() {
        let clock = ManualClock::new();
        let mut a = answer(
            429,
            r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
        );
        a.headers.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let e = map_error(Op::Refresh, &a, &[], &clock);
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(clock.now() + Duration::from_secs(30));
        a.headers.insert(http::header::RETRY_AFTER, date.parse().unwrap());
        assert_eq!(map_error(Op::Refresh, &a, &[], &clock).retry_after(), Some(Duration::from_secs(30)));
        a.headers.remove(http::header::RETRY_AFTER);
        assert_eq!(map_error(Op::Refresh, &a, &[], &clock).retry_after(), None);
    }

    #[test]
    fn message_keeps_hubspot_text_and_correlation_but_no_secret() {
        let e = map_error(
            Op::Refresh,
            &answer(
                400,
                r#"{"status":"BAD_REFRESH_TOKEN","message":"token SECRET-abc is bad","correlationId":"cid-9"}"#,
            ),
            &["SECRET-abc"],
            &ManualClock::new(),
        );
        assert_eq!(
            e.message(),
            "HubSpot refused the refresh token (BAD_REFRESH_TOKEN: token [redacted] is bad; correlation id cid-9)"
        );
        assert_eq!(e.correlation_id(), Some("cid-9"));
        assert!(!format!("{e:?}").contains("SECRET-abc"));
    }

    #[test]
    fn retry_after_is_capped_in_both_forms() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(b"99999999999999999999999", now), Some(MAX_RETRY_AFTER));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(400 * 86_400));
        assert_eq!(parse_retry_after(far.as_bytes(), now), Some(MAX_RETRY_AFTER));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(parse_retry_after(past.as_bytes(), now), Some(Duration::ZERO));
        for bad in [&b""[..], b"-1", b"+5", b"1.5", b"soon", b"\xff\xfe", b"5 s"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            /// Any bytes: a delay of at most a day, or nothing; never a panic.
            #[test]
            fn any_bytes(value in proptest::collection::vec(any::<u8>(), 0..40), now in 0u64..4_000_000_000) {
                let now = std::time::UNIX_EPOCH + Duration::from_secs(now);
                if let Some(d) = parse_retry_after(&value, now) {
                    prop_assert!(d <= MAX_RETRY_AFTER);
                }
            }

            /// Delay-seconds read as themselves (capped); an HTTP date as the time until it (capped).
            #[test]
            fn both_forms(secs in any::<u64>(), ahead in 0u64..10_000_000, now in 0u64..4_000_000_000) {
                let now = std::time::UNIX_EPOCH + Duration::from_secs(now);
                let expected = Duration::from_secs(secs).min(MAX_RETRY_AFTER);
                prop_assert_eq!(parse_retry_after(format!(" {secs} ").as_bytes(), now), Some(expected));
                let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
                let expected = Duration::from_secs(ahead).min(MAX_RETRY_AFTER);
                prop_assert_eq!(parse_retry_after(date.as_bytes(), now), Some(expected));
            }
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for retry in 0..40 {
            let d = p.backoff.delay(retry, &mut rand::thread_rng());
            assert!(d <= p.backoff.max);
            let full = p.backoff.initial.saturating_mul(1 << retry.min(16)).min(p.backoff.max);
            assert!(d >= full / 2, "{retry}: {d:?}");
        }
    }
}
