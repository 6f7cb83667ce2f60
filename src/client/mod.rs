//! The authenticated HubSpot API client: one connection's token on every request, sent only to HubSpot's hosts,
//! with HubSpot's rules for 401, 403, 429 and 5xx, and a per-portal request budget.

mod budget;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

pub use self::budget::RateLimit;

use self::budget::Budgets;
use crate::clock::Clock;
use crate::connection::ConnectionId;
use crate::error::{Error, ErrorCode, Result};
use crate::hubspot::http::{Answer, Op, Reach, Transport, map_error, retry_after};
use crate::hubspot::parse_endpoint;
use crate::manager::Connections;
use crate::retry::Backoff;
use crate::secret::AccessToken;

/// How [`HubSpotApi`] calls HubSpot. Every field has a default; see the setters on [`HubSpotApiBuilder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Where relative paths go. `https://api.hubapi.com` by default.
    pub api_base: Url,
    /// Hosts that receive the bearer token (the API base's host is always one). Anything else gets no token.
    pub api_hosts: Vec<String>,
    /// Per portal: HubSpot's default for OAuth apps, 110 requests per 10 seconds.
    pub rate_limit: RateLimit,
    /// Per portal, CRM search: 5 requests per second.
    pub search_rate_limit: RateLimit,
    /// Retries of 5xx answers and timeouts (idempotent methods, or requests marked safe to retry). Default 2.
    pub max_retries: u32,
    /// Retries after a 429. Default 3.
    pub max_rate_limit_retries: u32,
    /// The longest single wait for a 429. Default 15 s.
    pub max_rate_limit_wait: Duration,
    /// The delays between retries of 5xx answers and timeouts. Default 250 ms, doubling, at most 256 s (`2¹⁰`
    /// times the first), with jitter.
    pub backoff: Backoff,
    /// The timeout of each request. Default 30 s.
    pub timeout: Duration,
    /// Redirects followed (same host with the token, another host without it and never with a body). Default 5.
    pub max_redirects: u32,
    /// The largest answer read; a longer one is refused unread as [`ErrorCode::InvalidConfig`] (the limit is too
    /// low for what the integration asks). Default 64 MiB, far above HubSpot's largest page.
    pub max_response_body: usize,
    /// A proxy for every request. `None` (the default): no proxy, whatever `HTTPS_PROXY` or `ALL_PROXY` say, since
    /// a proxy sees every token.
    pub proxy: Option<Url>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        #[allow(clippy::unwrap_used)] // a constant that parses
        let api_base = Url::parse("https://api.hubapi.com/").unwrap();
        Self {
            api_base,
            api_hosts: vec!["api.hubapi.com".into(), "api.hubspot.com".into()],
            rate_limit: RateLimit::new(110, Duration::from_secs(10)),
            search_rate_limit: RateLimit::new(5, Duration::from_secs(1)),
            max_retries: 2,
            max_rate_limit_retries: 3,
            max_rate_limit_wait: Duration::from_secs(15),
            backoff: Backoff::new(Duration::from_millis(250), Duration::from_millis(250 << 10)),
            timeout: Duration::from_secs(30),
            max_redirects: 5,
            max_response_body: crate::hubspot::http::MAX_API_BODY,
            proxy: None,
        }
    }
}

/// The process-wide handle for calling HubSpot's API: holds the manager, the HTTP client and the per-portal
/// budgets. Make one per process and take a [`HubSpotClient`] per connection from it.
pub struct HubSpotApi {
    connections: Connections,
    shared: Arc<Shared>,
}

struct Shared {
    config: ApiConfig,
    transport: Transport,
    budgets: Budgets,
}

impl Clone for HubSpotApi {
    fn clone(&self) -> Self {
        Self { connections: self.connections.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl fmt::Debug for HubSpotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotApi").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// Configures a [`HubSpotApi`].
#[derive(Debug)]
pub struct HubSpotApiBuilder {
    connections: Connections,
    config: ApiConfig,
    api_base: Option<String>,
}

impl HubSpotApiBuilder {
    /// The API base URL (the fake HubSpot's address in tests). Its host receives the token.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = Some(url.into());
        self
    }

    /// HubSpot's rolling limit per portal (default 110 per 10 s).
    pub fn rate_limit(mut self, max: u32, window: Duration) -> Self {
        self.config.rate_limit = RateLimit::new(max, window);
        self
    }

    /// The CRM search limit per portal (default 5 per second).
    pub fn search_rate_limit(mut self, per_second: u32) -> Self {
        self.config.search_rate_limit = RateLimit::new(per_second, Duration::from_secs(1));
        self
    }

    /// The largest answer read (64 MiB by default).
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.config.max_response_body = bytes;
        self
    }

    /// Sends every request through this proxy (an `http://` or `https://` URL); without it, no proxy is used.
    pub fn proxy(mut self, url: Url) -> Self {
        self.config.proxy = Some(url);
        self
    }

    /// The whole configuration.
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the handle. Plain `http://` is refused except on loopback hosts.
    pub fn build(mut self) -> Result<HubSpotApi> {
        if let Some(base) = self.api_base.take() {
            let mut url = parse_endpoint(&base, "API base URL")?;
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            if let Some(host) = url.host_str() {
                self.config.api_hosts.push(host.to_ascii_lowercase());
            }
            self.config.api_base = url;
        }
        let clock = Arc::clone(self.connections.clock());
        let proxy = self.config.proxy.as_ref().map(|p| crate::hubspot::parse_proxy(p.as_str())).transpose()?;
        let reach = Reach { max_body: self.config.max_response_body, proxy };
        let transport = Transport::new(self.config.timeout, clock, crate::hubspot::RetryPolicy::none(), reach)?;
        let budgets = Budgets::new(self.config.rate_limit, self.config.search_rate_limit);
        Ok(HubSpotApi {
            connections: self.connections,
            shared: Arc::new(Shared { config: self.config, transport, budgets }),
        })
    }
}

impl HubSpotApi {
    /// Starts configuring the API handle over a connection manager.
    pub fn builder(connections: Connections) -> HubSpotApiBuilder {
        HubSpotApiBuilder { connections, config: ApiConfig::default(), api_base: None }
    }

    /// A client for one connection.
    pub async fn client(&self, id: &ConnectionId) -> Result<HubSpotClient> {
        let c = self.connections.status(id).await?;
        Ok(HubSpotClient { api: self.clone(), id: c.id, portal_id: c.portal_id, read_only: false })
    }

    /// A client for one of `tenant`'s connections: another tenant's id is
    /// [`ErrorCode::ConnectionNotFound`](crate::ErrorCode::ConnectionNotFound), as if it did not exist.
    pub async fn client_for(
        &self,
        tenant: &crate::manager::TenantConnections,
        id: &ConnectionId,
    ) -> Result<HubSpotClient> {
        let c = tenant.status(id).await?;
        Ok(HubSpotClient { api: self.clone(), id: c.id, portal_id: c.portal_id, read_only: false })
    }

    /// The connection manager.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
}

/// A request to HubSpot's API. Paths are relative to the API base (`crm/v3/objects/contacts`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path and query, relative to the API base, or an absolute URL on a HubSpot API host.
    pub path: String,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// The body's content type.
    pub content_type: Option<&'static str>,
    /// Retry this request after a 5xx or a timeout even though its method is not idempotent (a POST that
    /// creates nothing, such as a search). Off by default.
    pub retry_safe: bool,
}

impl ApiRequest {
    /// A request with a method and a path.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), body: None, content_type: None, retry_safe: false }
    }

    /// A GET.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// A POST.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// A JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("the request body is not serializable: {e}")))?;
        self.body = Some(bytes);
        self.content_type = Some("application/json");
        Ok(self)
    }

    /// Marks a non-idempotent request as safe to retry after a 5xx or a timeout.
    pub fn retry_safe(mut self) -> Self {
        self.retry_safe = true;
        self
    }

    fn idempotent(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS)
    }

    fn is_search(&self) -> bool {
        self.method == Method::POST && self.path.split(['?', '#']).next().is_some_and(|p| p.ends_with("/search"))
    }
}

/// A 2xx answer from HubSpot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiResponse {
    /// The status (a 2xx).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (at most [`ApiConfig::max_response_body`]).
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(ErrorCode::HubspotUnavailable, format!("HubSpot's answer could not be read as expected: {e}"))
                .with_status(self.status.as_u16())
                .permanent()
        })
    }
}

/// Calls HubSpot's API for one connection. Cheap to clone; make as many as you like.
///
/// - The bearer token goes only to the configured HubSpot API hosts, is marked sensitive, and is dropped when a
///   redirect leads to another host.
/// - A 401 refreshes at most once per request, and only if the refused token is still the stored one (otherwise the
///   newer token is used); a second 401 is an error.
/// - A 403 for scopes is [`ErrorCode::MissingScopes`] naming HubSpot's required scopes; it never refreshes.
/// - A 429 waits as `Retry-After` says (seconds or an HTTP date) or as HubSpot's policy implies, a bounded number
///   of times, then [`ErrorCode::RateLimited`].
/// - Every request first waits for the portal's budget (110 per 10 s; search 5 per second), shared by every
///   client of the same [`HubSpotApi`]; HubSpot's `X-HubSpot-RateLimit-*` headers tighten it.
/// - 5xx answers and timeouts are retried with back-off and jitter for idempotent methods only, or requests marked
///   [`ApiRequest::retry_safe`].
/// - [`HubSpotClient::read_only`] refuses everything but GET and HEAD with [`ErrorCode::ReadOnly`].
/// - Any other 4xx is [`ErrorCode::RequestRejected`], with HubSpot's body typed in [`Error::hubspot`].
pub struct HubSpotClient {
    api: HubSpotApi,
    id: ConnectionId,
    portal_id: u64,
    read_only: bool,
}

impl Clone for HubSpotClient {
    fn clone(&self) -> Self {
        Self { api: self.api.clone(), id: self.id.clone(), portal_id: self.portal_id, read_only: self.read_only }
    }
}

impl fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotClient")
            .field("connection", &self.id)
            .field("portal_id", &self.portal_id)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl HubSpotClient {
    /// The same client, refusing every method but GET and HEAD (for audit-style connections).
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// The connection.
    pub fn connection_id(&self) -> &ConnectionId {
        &self.id
    }

    /// The portal.
    pub fn portal_id(&self) -> u64 {
        self.portal_id
    }

    /// GETs a path and reads the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send(ApiRequest::get(path)).await?.json()
    }

    /// POSTs JSON and reads the JSON answer. Not retried after a 5xx unless it is a search.
    pub async fn post_json<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let mut request = ApiRequest::post(path).json(body)?;
        if request.is_search() {
            request = request.retry_safe();
        }
        self.send(request).await?.json()
    }

    fn clock(&self) -> &Arc<dyn Clock> {
        self.api.connections.clock()
    }

    fn url(&self, path: &str) -> Result<Url> {
        let config = &self.api.shared.config;
        let url = if path.starts_with("https://") || path.starts_with("http://") {
            parse_endpoint(path, "request URL")?
        } else {
            config
                .api_base
                .join(path.trim_start_matches('/'))
                .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("bad request path: {e}")))?
        };
        if !self.is_api_host(&url) {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} is not a HubSpot API host; the token is only sent to HubSpot",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        Ok(url)
    }

    /// Whether `url` may receive the token: the API base's origin (scheme, host and port), or a listed host over
    /// https on the default port.
    fn is_api_host(&self, url: &Url) -> bool {
        let config = &self.api.shared.config;
        let same_origin = url.origin() == config.api_base.origin();
        let listed = url.scheme() == "https"
            && url.port().is_none()
            && url.host_str().is_some_and(|h| config.api_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
        same_origin || listed
    }

    /// Sends a request with the connection's token, following HubSpot's rules (see the type's docs).
    pub async fn send(&self, request: ApiRequest) -> Result<ApiResponse> {
        if self.read_only && !matches!(request.method, Method::GET | Method::HEAD) {
            return Err(Error::new(
                ErrorCode::ReadOnly,
                format!("connection {} is read-only; {} is refused", self.id, request.method),
            ));
        }
        let config = &self.api.shared.config;
        let url = self.url(&request.path)?;
        let search = request.is_search();
        let retryable = request.idempotent() || request.retry_safe;
        let connections = &self.api.connections;
        let mut token = connections.access_token(&self.id).await?;
        let mut refreshed = false;
        let mut server_retries = 0;
        let mut rate_retries = 0;
        loop {
            let permit = self.api.shared.budgets.acquire(self.portal_id, search, self.clock()).await;
            let result = self.send_once(&request, url.clone(), &token).await;
            // The request counts against the budget until its answer is in (HubSpot counted it on arrival).
            drop(permit);
            let answer = match result {
                Ok(answer) => answer,
                Err(e) if e.is_retryable() && retryable && server_retries < config.max_retries => {
                    self.back_off(server_retries).await;
                    server_retries += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A 429 says how long to wait itself (below); its `Remaining: 0` must not add a second wait.
            if answer.status != 429 {
                self.api.shared.budgets.observe(self.portal_id, search, &answer.headers, self.clock().as_ref());
            }
            if answer.is_success() {
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
                return Ok(ApiResponse { status, headers: answer.headers, body: answer.body });
            }
            let err = map_error(Op::Api, &answer, &[token.secret()], self.clock().as_ref());
            match answer.status {
                401 if !refreshed => {
                    refreshed = true;
                    tracing::info!(connection = %self.id, portal_id = self.portal_id, "HubSpot refused the token; refreshing once");
                    token = connections.token_rejected(&self.id, &token).await?;
                }
                429 if rate_retries < config.max_rate_limit_retries => {
                    let wait = rate_limit_wait(&answer, self.clock().as_ref());
                    match wait {
                        Some(w) if w <= config.max_rate_limit_wait => {
                            tracing::info!(connection = %self.id, portal_id = self.portal_id, ?w, "HubSpot rate limit; waiting");
                            rate_retries += 1;
                            self.clock().sleep(w).await;
                        }
                        _ => return Err(err),
                    }
                }
                s if s >= 500 && retryable && server_retries < config.max_retries => {
                    self.back_off(server_retries).await;
                    server_retries += 1;
                }
                _ => {
                    tracing::debug!(
                        connection = %self.id,
                        portal_id = self.portal_id,
                        code = err.code().as_str(),
                        correlation_id = err.correlation_id(),
                        "HubSpot API error"
                    );
                    return Err(err);
                }
            }
        }
    }

    async fn back_off(&self, retry: u32) {
        let delay = self.api.shared.config.backoff.delay(retry, &mut rand::thread_rng());
        self.clock().sleep(delay).await;
    }

    /// One request, following redirects by hand: the token goes only to HubSpot's hosts.
    async fn send_once(&self, request: &ApiRequest, mut url: Url, token: &AccessToken) -> Result<Answer> {
        let shared = &self.api.shared;
        let mut method = request.method.clone();
        let mut body = request.body.clone();
        for _ in 0..=shared.config.max_redirects {
            let mut builder =
                shared.transport.request(method.clone(), url.clone()).header(header::ACCEPT, "application/json");
            if let (Some(b), Some(ct)) = (&body, request.content_type) {
                builder = builder.header(header::CONTENT_TYPE, ct).body(b.clone());
            }
            let mut req = builder.build().map_err(|e| {
                Error::new(ErrorCode::InvalidConfig, "could not build the request").with_source(e.without_url())
            })?;
            if self.is_api_host(&url) {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
                    Error::new(ErrorCode::ReconnectRequired, "the stored access token is not a valid header")
                })?;
                value.set_sensitive(true);
                req.headers_mut().insert(header::AUTHORIZATION, value);
            }
            let answer = shared.transport.send(Op::Api, req).await?;
            if !(300..400).contains(&answer.status) || answer.status == 304 {
                return Ok(answer);
            }
            let Some(location) = answer.headers.get(header::LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok(answer);
            };
            url = url.join(location).map_err(|_| {
                Error::new(ErrorCode::HubspotUnavailable, "HubSpot redirected to an unreadable location")
            })?;
            if url.scheme() != "https" && !url.host().is_some_and(|h| crate::hubspot::is_loopback(&h)) {
                return Err(Error::new(ErrorCode::HubspotUnavailable, "HubSpot redirected to a plain http:// address"));
            }
            if matches!(answer.status, 301..=303) && method != Method::GET && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            if body.is_some() && !self.is_api_host(&url) {
                return Err(Error::new(
                    ErrorCode::HubspotUnavailable,
                    format!(
                        "HubSpot redirected a request with a body ({}) to {}, which is not a HubSpot API host; \
                         the body is not sent there",
                        answer.status,
                        url.host_str().unwrap_or("?")
                    ),
                )
                .with_status(answer.status)
                .permanent());
            }
        }
        Err(Error::new(ErrorCode::HubspotUnavailable, "HubSpot redirected too many times"))
    }
}

/// How long to wait after a 429: `Retry-After`, or what HubSpot's policy implies. `None`: do not wait (a daily
/// limit).
fn rate_limit_wait(answer: &Answer, clock: &dyn Clock) -> Option<Duration> {
    if let Some(d) = retry_after(&answer.headers, clock) {
        return Some(d);
    }
    let body = crate::error::HubSpotError::from_json(Some(http::StatusCode::TOO_MANY_REQUESTS), &answer.body);
    let policy = body.as_ref().and_then(|b| b.policy_name.as_deref()).unwrap_or("");
    match policy {
        "DAILY" => None,
        "SECONDLY" | "SECONDLY_ROLLING" => Some(Duration::from_secs(1)),
        _ => {
            let interval = answer
                .headers
                .get("x-hubspot-ratelimit-interval-milliseconds")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis);
            Some(interval.unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10)))
        }
    }
}
