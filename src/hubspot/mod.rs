//! The HubSpot connector: HubSpot's OAuth 2.0 protocol, both endpoint generations.

pub(crate) mod http;
mod info;
pub(crate) mod token;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use oauth2::{
    AuthType, AuthUrl, ClientId, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge, RedirectUrl,
    RequestTokenError, TokenUrl,
};
use reqwest::Method;
use url::{Host, Url};

use crate::clock::{Clock, SystemClock};
use crate::connector::{AccountInfo, Authorization, AuthorizeRequest, Connector, Installation, TokenSet};
use crate::error::{Error, ErrorCode, Result};
use crate::secret::{AccessToken, AuthorizationCode, ClientSecret, CsrfState, PkceVerifier, RefreshToken};

pub use self::http::RetryPolicy;
pub use self::info::{TokenInfo, TokenKind};
pub use crate::error::{HubSpotError, HubSpotErrorDetail};

use self::http::{Answer, Op, Transport, map_error};
use self::token::{TokenErrorBody, TokenResponseBody};

/// HubSpot's OAuth endpoint generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ApiVersion {
    /// The legacy v1 endpoints (`/oauth/v1/token`, metadata GETs, `DELETE` revoke). HubSpot shuts them down
    /// on 2027-02-16.
    V1,
    /// The v3 endpoints (`/oauth/v3/token`, `/token/introspect`, `/token/revoke`), HubSpot's generation of early 2026:
    /// the same API as 2026-03 under another path. Account info is read at `/account-info/v3/details`.
    V3,
    /// The date-versioned endpoints (`/oauth/2026-03/token`, `/token/introspect`, `/token/revoke`). The default.
    #[default]
    V2026_03,
}

impl ApiVersion {
    /// `"v1"`, `"v3"` or `"2026-03"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V3 => "v3",
            ApiVersion::V2026_03 => "2026-03",
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "v1" | "V1" => Ok(ApiVersion::V1),
            "v3" | "V3" => Ok(ApiVersion::V3),
            "2026-03" => Ok(ApiVersion::V2026_03),
            other => Err(Error::new(
                ErrorCode::InvalidConfig,
                format!("unknown HubSpot OAuth API version {other:?} (expected v1, v3 or 2026-03)"),
            )),
        }
    }
}

type TokenClient = oauth2::Client<
    TokenErrorBody,
    TokenResponseBody,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The HubSpot connector: builds authorize URLs and talks to HubSpot's OAuth and account-info endpoints.
///
/// Stateless and cheap to clone. Build it with [`HubSpotConnector::builder`].
///
/// ```
/// use hubspot_connect::connector::AuthorizeRequest;
/// use hubspot_connect::hubspot::ApiVersion;
/// use hubspot_connect::scope::presets;
/// use hubspot_connect::{ClientSecret, Connector, HubSpotConnector};
///
/// let hubspot = HubSpotConnector::builder(
///     "3f2a1c9e-0000-4000-8000-000000000000",
///     ClientSecret::new("client-secret"),
///     "https://app.example.com/oauth/callback",
/// )
/// .version(ApiVersion::V2026_03)
/// .build()?;
///
/// let auth = hubspot.authorize_url(&AuthorizeRequest::new(&presets::crm::read_only()).portal(62515))?;
/// assert!(auth.url.as_str().starts_with("https://app.hubspot.com/oauth/62515/authorize?"));
/// assert!(auth.url.as_str().contains("scope=crm.lists.read%20crm.objects"));
/// # Ok::<(), hubspot_connect::Error>(())
/// ```
#[derive(Clone)]
pub struct HubSpotConnector {
    inner: Arc<Inner>,
}

struct Inner {
    client_id: String,
    client_secret: ClientSecret,
    redirect_uri: Url,
    auth_base: Url,
    eu_auth_base: Url,
    api_base: Url,
    version: ApiVersion,
    transport: Transport,
    token_client: TokenClient,
}

impl fmt::Debug for HubSpotConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("HubSpotConnector")
            .field("client_id", &i.client_id)
            .field("client_secret", &i.client_secret)
            .field("redirect_uri", &i.redirect_uri.as_str())
            .field("auth_base", &i.auth_base.as_str())
            .field("api_base", &i.api_base.as_str())
            .field("version", &i.version)
            .finish_non_exhaustive()
    }
}

/// Configures a [`HubSpotConnector`].
#[derive(Debug)]
pub struct HubSpotConnectorBuilder {
    client_id: String,
    client_secret: ClientSecret,
    redirect_uri: String,
    auth_base: String,
    eu_auth_base: String,
    api_base: String,
    version: ApiVersion,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    max_response_body: usize,
    proxy: Option<String>,
}

impl HubSpotConnectorBuilder {
    /// HubSpot's login host, `https://app.hubspot.com` by default (the fake HubSpot's address in tests).
    pub fn auth_base(mut self, url: impl Into<String>) -> Self {
        self.auth_base = url.into();
        self
    }

    /// HubSpot's EU login host, `https://app-eu1.hubspot.com` by default.
    pub fn eu_auth_base(mut self, url: impl Into<String>) -> Self {
        self.eu_auth_base = url.into();
        self
    }

    /// HubSpot's API host, `https://api.hubapi.com` by default (also for EU accounts).
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = url.into();
        self
    }

    /// The endpoint generation. [`ApiVersion::V2026_03`] by default.
    pub fn version(mut self, version: ApiVersion) -> Self {
        self.version = version;
        self
    }

    /// The timeout of each request to HubSpot. 10 seconds by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How failed calls are retried. A code exchange is never retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The clock for expiry times and retry back-off. [`SystemClock`] by default.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The largest answer read from HubSpot's OAuth and account endpoints (1 MiB by default; theirs are a few KiB).
    /// A longer one is refused unread as [`ErrorCode::HubspotUnavailable`].
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = bytes;
        self
    }

    /// Sends every request through this proxy (an `http://` or `https://` URL). Without it no proxy is
    /// used, whatever `HTTPS_PROXY` or `ALL_PROXY` say: a proxy sees the client secret and every token, so it is
    /// never picked up silently from the environment.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Checks the configuration and builds the connector.
    ///
    /// Fails with [`ErrorCode::InvalidConfig`] when a URL does not parse, uses plain `http://` on a host that is not
    /// loopback, or the redirect URI is an IP address over https or carries a fragment.
    pub fn build(self) -> Result<HubSpotConnector> {
        if self.client_id.trim().is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, "the HubSpot client id is empty"));
        }
        let redirect_uri = parse_endpoint(&self.redirect_uri, "redirect URI")?;
        if redirect_uri.fragment().is_some() {
            return Err(Error::new(ErrorCode::InvalidConfig, "the redirect URI must not have a #fragment"));
        }
        if redirect_uri.scheme() == "https" && matches!(redirect_uri.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) {
            return Err(Error::new(
                ErrorCode::InvalidConfig,
                "HubSpot does not accept an IP address as redirect URI host; use a domain name",
            ));
        }
        let auth_base = base(parse_endpoint(&self.auth_base, "authorize base URL")?);
        let eu_auth_base = base(parse_endpoint(&self.eu_auth_base, "EU authorize base URL")?);
        let api_base = base(parse_endpoint(&self.api_base, "API base URL")?);
        let token_url = api_base
            .join(match self.version {
                ApiVersion::V1 => "oauth/v1/token",
                ApiVersion::V3 => "oauth/v3/token",
                ApiVersion::V2026_03 => "oauth/2026-03/token",
            })
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("bad token URL: {e}")))?;
        let token_client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(self.client_secret.secret().to_owned()))
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(token_url))
            .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
        let proxy = self.proxy.as_deref().map(parse_proxy).transpose()?;
        let reach = http::Reach { max_body: self.max_response_body, proxy };
        let transport = Transport::new(self.timeout, self.clock, self.retry, reach)?;
        Ok(HubSpotConnector {
            inner: Arc::new(Inner {
                client_id: self.client_id,
                client_secret: self.client_secret,
                redirect_uri,
                auth_base,
                eu_auth_base,
                api_base,
                version: self.version,
                transport,
                token_client,
            }),
        })
    }
}

/// A proxy URL the vendor configured.
pub(crate) fn parse_proxy(url: &str) -> Result<Url> {
    let parsed =
        Url::parse(url.trim()).map_err(|_| Error::new(ErrorCode::InvalidConfig, "the proxy URL is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::new(ErrorCode::InvalidConfig, "the proxy URL must be http:// or https://"));
    }
    Ok(parsed)
}

/// Parses a URL and allows plain `http://` only on loopback hosts.
pub(crate) fn parse_endpoint(raw: &str, what: &str) -> Result<Url> {
    let url = Url::parse(raw.trim())
        .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("the {what} is not a URL: {e}")))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if url.host().is_some_and(|h| is_loopback(&h)) => Ok(url),
        "http" => Err(Error::new(
            ErrorCode::InvalidConfig,
            format!("the {what} uses plain http:// on a host that is not loopback; use https://"),
        )),
        scheme => Err(Error::new(ErrorCode::InvalidConfig, format!("the {what} must be https:// (not {scheme}:)"))),
    }
}

/// Whether a host is this machine: `localhost` (and `*.localhost`), 127.0.0.0/8 or ::1.
pub(crate) fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn base(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    url
}

impl HubSpotConnector {
    /// Starts configuring a connector for an app's client id, client secret and redirect URI.
    pub fn builder(
        client_id: impl Into<String>,
        client_secret: ClientSecret,
        redirect_uri: impl Into<String>,
    ) -> HubSpotConnectorBuilder {
        HubSpotConnectorBuilder {
            client_id: client_id.into(),
            client_secret,
            redirect_uri: redirect_uri.into(),
            auth_base: "https://app.hubspot.com".into(),
            eu_auth_base: "https://app-eu1.hubspot.com".into(),
            api_base: "https://api.hubapi.com".into(),
            version: ApiVersion::default(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_response_body: http::MAX_OAUTH_BODY,
            proxy: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The app's client id.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The redirect URI sent with every authorization and code exchange.
    pub fn redirect_uri(&self) -> &Url {
        &self.inner.redirect_uri
    }

    /// The endpoint generation in use.
    pub fn version(&self) -> ApiVersion {
        self.inner.version
    }

    /// The API host.
    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// The clock the connector reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.transport.clock
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        self.inner
            .api_base
            .join(path)
            .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("bad HubSpot URL: {e}")))
    }

    fn api_url_with_token(&self, path: &str, token: &str) -> Result<Url> {
        let mut url = self.api_url(path)?;
        url.path_segments_mut()
            .map_err(|()| Error::new(ErrorCode::InvalidConfig, "the API base URL cannot carry a path"))?
            .pop_if_empty()
            .push(token);
        Ok(url)
    }

    fn form(&self, pairs: &[(&str, &str)]) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.inner.client_id)
            .append_pair("client_secret", self.inner.client_secret.secret())
            .extend_pairs(pairs)
            .finish()
    }

    fn build_request(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Request> {
        builder.build().map_err(|e| {
            Error::new(ErrorCode::InvalidConfig, "could not build the request").with_source(e.without_url())
        })
    }

    async fn oauth_call(&self, op: Op, request: oauth2::HttpRequest, secrets: &[&str]) -> Result<oauth2::HttpResponse> {
        let request = reqwest::Request::try_from(request).map_err(|e| {
            Error::new(ErrorCode::InvalidConfig, "could not build the token request").with_source(e.without_url())
        })?;
        let answer = self.inner.transport.send_ok(op, request, secrets).await?;
        let mut response = ::http::Response::new(answer.body);
        *response.status_mut() = ::http::StatusCode::from_u16(answer.status).unwrap_or(::http::StatusCode::OK);
        *response.headers_mut() = answer.headers;
        Ok(response)
    }

    /// One token request (exchange or refresh) through `oauth2`, with its result read into a [`TokenSet`].
    async fn token_request(
        &self,
        op: Op,
        code: Option<(&AuthorizationCode, &PkceVerifier)>,
        refresh: Option<&RefreshToken>,
    ) -> Result<TokenSet> {
        let client = &self.inner.token_client;
        let mut secrets = vec![self.inner.client_secret.secret()];
        secrets.extend(code.iter().flat_map(|(c, v)| [c.secret(), v.secret()]));
        secrets.extend(refresh.map(RefreshToken::secret));
        let http = OAuthHttp {
            connector: self.clone(),
            op,
            secrets: secrets.iter().map(|s| zeroize::Zeroizing::new((*s).to_owned())).collect(),
        };
        let requested_at = self.inner.transport.clock.now();
        let result = match (code, refresh) {
            (Some((code, verifier)), _) => {
                client
                    .exchange_code(oauth2::AuthorizationCode::new(code.secret().to_owned()))
                    .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier.secret().to_owned()))
                    .request_async(&http)
                    .await
            }
            (None, Some(refresh)) => {
                let token = oauth2::RefreshToken::new(refresh.secret().to_owned());
                client.exchange_refresh_token(&token).request_async(&http).await
            }
            (None, None) => {
                return Err(Error::new(ErrorCode::InvalidConfig, "a token request needs a code or a refresh token"));
            }
        };
        let body = match result {
            Ok(body) => match body.error_body() {
                Some(error) => return Err(error_in_success(op, error, &secrets, self.clock().as_ref())),
                None => body,
            },
            Err(RequestTokenError::Request(e)) => return Err(e),
            Err(RequestTokenError::ServerResponse(TokenErrorBody(body))) => {
                return Err(error_in_success(op, body, &secrets, self.clock().as_ref()));
            }
            Err(RequestTokenError::Parse(e, raw)) => {
                if let Some(body) =
                    HubSpotError::from_json(Some(::http::StatusCode::OK), &raw).filter(HubSpotError::is_error_body)
                {
                    return Err(error_in_success(op, body, &secrets, self.clock().as_ref()));
                }
                let detail = if serde_json::from_slice::<serde_json::Value>(&raw).is_err() {
                    "is not JSON".to_owned()
                } else if e.inner().to_string().starts_with("missing field") {
                    format!("is missing `{}`", missing_field(&e.inner().to_string()))
                } else {
                    format!("has an unexpected value at `{}`", e.path())
                };
                return Err(Error::new(ErrorCode::HubspotUnavailable, format!("HubSpot's token response {detail}"))
                    .with_status(200)
                    .permanent());
            }
            Err(RequestTokenError::Other(what)) => {
                let what: String = what.chars().take(200).collect();
                return Err(Error::new(
                    ErrorCode::HubspotUnavailable,
                    format!("HubSpot's token endpoint gave an unusable answer: {what}"),
                )
                .permanent());
            }
        };
        body.into_token_set(requested_at, refresh)
    }

    /// What HubSpot says about an access token (who installed it, which portal, which scopes, time left).
    /// `Ok(None)` when HubSpot reports it inactive or unknown.
    pub async fn introspect_access_token(&self, token: &AccessToken) -> Result<Option<TokenInfo>> {
        self.introspect(TokenKind::AccessToken, token.secret()).await
    }

    /// What HubSpot says about a refresh token. `Ok(None)` when HubSpot reports it inactive or unknown.
    pub async fn introspect_refresh_token(&self, token: &RefreshToken) -> Result<Option<TokenInfo>> {
        self.introspect(TokenKind::RefreshToken, token.secret()).await
    }

    async fn introspect(&self, kind: TokenKind, token: &str) -> Result<Option<TokenInfo>> {
        let secrets = [token, self.inner.client_secret.secret()];
        let transport = &self.inner.transport;
        transport
            .retrying(Op::Introspect, || async {
                let request = match self.inner.version {
                    version @ (ApiVersion::V3 | ApiVersion::V2026_03) => self.build_request(
                        transport
                            .request(Method::POST, self.api_url(&format!("oauth/{version}/token/introspect"))?)
                            .header(::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .header(::http::header::ACCEPT, "application/json")
                            .body(self.form(&[("token", token), ("token_type_hint", kind.as_str())])),
                    )?,
                    ApiVersion::V1 => {
                        let path = match kind {
                            TokenKind::AccessToken => "oauth/v1/access-tokens/",
                            TokenKind::RefreshToken => "oauth/v1/refresh-tokens/",
                        };
                        self.build_request(
                            transport
                                .request(Method::GET, self.api_url_with_token(path, token)?)
                                .header(::http::header::ACCEPT, "application/json"),
                        )?
                    }
                };
                let answer = transport.send(Op::Introspect, request).await?;
                if answer.is_success() {
                    return info::parse_token_info(&answer.body, kind);
                }
                if is_unknown_token(&answer) {
                    return Ok(None);
                }
                Err(map_error(Op::Introspect, &answer, &secrets, transport.clock.as_ref()))
            })
            .await
    }

    /// The account's details: type, data-hosting location, UI domain, time zone, currency.
    pub async fn account_info(&self, token: &AccessToken) -> Result<AccountInfo> {
        let secrets = [token.secret()];
        let path = match self.inner.version {
            ApiVersion::V1 | ApiVersion::V3 => "account-info/v3/details",
            ApiVersion::V2026_03 => "account-info/2026-03/details",
        };
        let transport = &self.inner.transport;
        transport
            .retrying(Op::AccountInfo, || async {
                let request = self.build_request(
                    transport
                        .request(Method::GET, self.api_url(path)?)
                        .bearer_auth(token.secret())
                        .header(::http::header::ACCEPT, "application/json"),
                )?;
                let answer = transport.send_ok(Op::AccountInfo, sensitive(request), &secrets).await?;
                info::parse_account_info(&answer.body)
            })
            .await
    }
}

/// `oauth2`'s HTTP client: the crate's transport (no redirects, capped bodies, typed errors).
/// It owns what it needs (the secrets as zeroized copies): `oauth2`'s client trait and a `Send` future do not mix
/// with borrowed state.
struct OAuthHttp {
    connector: HubSpotConnector,
    op: Op,
    secrets: Vec<zeroize::Zeroizing<String>>,
}

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let secrets: Vec<&str> = self.secrets.iter().map(|s| s.as_str()).collect();
            self.connector.oauth_call(self.op, request, &secrets).await
        })
    }
}

/// Marks the authorization header sensitive, so it never appears in debug output.
fn sensitive(mut request: reqwest::Request) -> reqwest::Request {
    if let Some(v) = request.headers_mut().get_mut(::http::header::AUTHORIZATION) {
        v.set_sensitive(true);
    }
    request
}

/// Whether an error answer means "no such token" (v1's 404; a 400 naming the token as invalid).
fn is_unknown_token(answer: &Answer) -> bool {
    if answer.status == 404 {
        return true;
    }
    if answer.status != 400 {
        return false;
    }
    HubSpotError::from_json(Some(::http::StatusCode::BAD_REQUEST), &answer.body).is_some_and(|b| {
        matches!(b.error.as_deref(), Some("invalid_grant" | "invalid_token" | "invalid_request"))
            || matches!(b.legacy_status.as_deref(), Some("BAD_REFRESH_TOKEN" | "BAD_ACCESS_TOKEN" | "BAD_TOKEN"))
    })
}

fn error_in_success(op: Op, body: HubSpotError, secrets: &[&str], clock: &dyn Clock) -> Error {
    let raw = serde_json::to_vec(&serde_json::json!({
        "error": body.error, "error_description": body.error_description, "status": body.legacy_status,
        "message": body.message, "correlationId": body.correlation_id, "category": body.category,
    }))
    .unwrap_or_default();
    let answer =
        Answer { status: body.http_status.map_or(200, |s| s.as_u16()), headers: ::http::HeaderMap::new(), body: raw };
    map_error(op, &answer, secrets, clock)
}

fn missing_field(serde_message: &str) -> String {
    serde_message.split('`').nth(1).unwrap_or("a required field").chars().take(40).collect()
}

#[async_trait]
impl Connector for HubSpotConnector {
    fn authorize_url(&self, request: &AuthorizeRequest) -> Result<Authorization> {
        let base = if request.eu { &self.inner.eu_auth_base } else { &self.inner.auth_base };
        let path = match request.portal_id {
            Some(id) => format!("oauth/{id}/authorize"),
            None => "oauth/authorize".to_owned(),
        };
        let auth_url =
            base.join(&path).map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("bad authorize URL: {e}")))?;
        let client = oauth2::basic::BasicClient::new(ClientId::new(self.inner.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_redirect_uri(RedirectUrl::from_url(self.inner.redirect_uri.clone()));
        let state = CsrfState::random();
        let state_param = state.secret().to_owned();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut required: Vec<&str> = request.required.iter().map(|s| s.as_str()).collect();
        required.sort_unstable();
        required.dedup();
        let mut optional: Vec<&str> =
            request.optional.iter().map(|s| s.as_str()).filter(|s| !required.contains(s)).collect();
        optional.sort_unstable();
        optional.dedup();
        let mut builder = client
            .authorize_url(move || CsrfToken::new(state_param))
            .add_scopes(required.iter().map(|s| oauth2::Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge);
        if !optional.is_empty() {
            builder = builder.add_extra_param("optional_scope", optional.join(" "));
        }
        let (mut url, _) = builder.url();
        // HubSpot's SDKs join scopes with %20; form encoding wrote `+` (a literal `+` would be `%2B`).
        let query = url.query().map(|q| q.replace('+', "%20"));
        url.set_query(query.as_deref());
        Ok(Authorization::new(url, state, PkceVerifier::new(verifier.into_secret())))
    }

    async fn exchange_code(&self, code: AuthorizationCode, verifier: PkceVerifier) -> Result<TokenSet> {
        // Never retried: a code is single-use, and a retry after a lost answer could only fail.
        self.token_request(Op::Exchange, Some((&code, &verifier)), None).await
    }

    async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenSet> {
        self.inner.transport.retrying(Op::Refresh, || self.token_request(Op::Refresh, None, Some(refresh_token))).await
    }

    async fn identify(&self, access_token: &AccessToken) -> Result<Installation> {
        let info = self
            .introspect_access_token(access_token)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::ReconnectRequired, "HubSpot reports the access token as inactive"))?;
        let account = self.account_info(access_token).await?;
        if account.portal_id != info.portal_id {
            return Err(Error::new(
                ErrorCode::HubspotUnavailable,
                format!(
                    "HubSpot's answers disagree: the token belongs to portal {} but account info names portal {}",
                    info.portal_id, account.portal_id
                ),
            )
            .permanent());
        }
        Ok(Installation {
            portal_id: info.portal_id,
            hub_domain: info.hub_domain,
            user: info.user,
            user_id: info.user_id,
            app_id: info.app_id,
            scopes: info.scopes,
            account: Some(account),
        })
    }

    async fn identify_app_token(&self, token: &AccessToken) -> Result<Installation> {
        let account = self.account_info(token).await?;
        let mut installed = Installation::new(account.portal_id, Vec::new());
        installed.account = Some(account);
        Ok(installed)
    }

    async fn revoke(&self, refresh_token: &RefreshToken) -> Result<bool> {
        let token = refresh_token.secret();
        let secrets = [token, self.inner.client_secret.secret()];
        let transport = &self.inner.transport;
        transport
            .retrying(Op::Revoke, || async {
                let request = match self.inner.version {
                    version @ (ApiVersion::V3 | ApiVersion::V2026_03) => self.build_request(
                        transport
                            .request(Method::POST, self.api_url(&format!("oauth/{version}/token/revoke"))?)
                            .header(::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(self.form(&[("token", token), ("token_type_hint", "refresh_token")])),
                    )?,
                    ApiVersion::V1 => self.build_request(
                        transport.request(Method::DELETE, self.api_url_with_token("oauth/v1/refresh-tokens/", token)?),
                    )?,
                };
                let answer = transport.send(Op::Revoke, request).await?;
                // Any 2xx is success (HubSpot documents 204 for v1 and no status for 2026-03); a token HubSpot no
                // longer knows is as good as revoked.
                if answer.is_success() || answer.status == 404 || is_unknown_token(&answer) {
                    return Ok(true);
                }
                Err(map_error(Op::Revoke, &answer, &secrets, transport.clock.as_ref()))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::{ScopeSet, Scopes};

    fn connector(redirect: &str) -> Result<HubSpotConnector> {
        HubSpotConnector::builder("cid", ClientSecret::new("secret"), redirect).build()
    }

    #[test]
    fn redirect_uri_rules() {
        assert!(connector("https://app.example.com/cb").is_ok());
        assert!(connector("http://localhost:3000/cb").is_ok());
        assert!(connector("http://127.0.0.1:3000/cb").is_ok());
        assert!(connector("http://[::1]:3000/cb").is_ok());
        for bad in [
            "http://app.example.com/cb",
            "https://203.0.113.9/cb",
            "ftp://example.com/cb",
            "https://app.example.com/cb#frag",
            "not a url",
            "http://localhost.evil.com/cb",
        ] {
            let err = connector(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn authorize_url_shape() {
        let c = connector("https://app.example.com/oauth/callback").unwrap();
        let scopes =
            Scopes::new().require("crm.objects.contacts.read").optionally("crm.objects.deals.read").optionally("files");
        let a = c.authorize_url(&AuthorizeRequest::new(&scopes)).unwrap();
        let url = a.url.as_str();
        assert!(url.starts_with("https://app.hubspot.com/oauth/authorize?"), "{url}");
        assert!(url.contains("scope=crm.objects.contacts.read%20oauth"), "{url}");
        assert!(url.contains("optional_scope=crm.objects.deals.read%20files"), "{url}");
        assert!(!url.contains('+'), "{url}");
        let pairs: std::collections::HashMap<String, String> = a.url.query_pairs().into_owned().collect();
        assert_eq!(pairs["client_id"], "cid");
        assert_eq!(pairs["redirect_uri"], "https://app.example.com/oauth/callback");
        assert_eq!(pairs["state"], a.state.secret());
        assert_eq!(pairs["state"].len(), 43);
        assert_eq!(pairs["code_challenge_method"], "S256");
        use base64::Engine;
        use sha2::Digest;
        let expected =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(a.pkce_verifier.secret()));
        assert_eq!(pairs["code_challenge"], expected);

        let eu = c.authorize_url(&AuthorizeRequest::new(&scopes).portal(42).eu(true)).unwrap();
        assert!(eu.url.as_str().starts_with("https://app-eu1.hubspot.com/oauth/42/authorize?"));
        let again = c.authorize_url(&AuthorizeRequest::new(&scopes)).unwrap();
        assert_ne!(again.state.secret(), a.state.secret());
        assert_ne!(again.pkce_verifier.secret(), a.pkce_verifier.secret());
        assert!(scopes.required().len() == 2);
    }

    #[test]
    fn no_optional_scope_param_when_none() {
        let c = connector("https://app.example.com/cb").unwrap();
        let a = c.authorize_url(&AuthorizeRequest::new(&Scopes::new())).unwrap();
        assert!(!a.url.as_str().contains("optional_scope"));
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = HubSpotConnector::builder("cid", ClientSecret::new("CANARY-SECRET"), "https://x.example/cb")
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("CANARY"));
    }

    #[test]
    fn version_parse() {
        assert_eq!("v1".parse::<ApiVersion>().unwrap(), ApiVersion::V1);
        assert_eq!("2026-03".parse::<ApiVersion>().unwrap(), ApiVersion::V2026_03);
        assert_eq!("v3".parse::<ApiVersion>().unwrap(), ApiVersion::V3);
        assert_eq!("v2".parse::<ApiVersion>().unwrap_err().code(), ErrorCode::InvalidConfig);
    }
}
