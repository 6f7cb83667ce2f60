//! [`Connections`]: the lifecycle of every tenant's HubSpot connections over a [`Connector`] and a [`TokenStore`].

mod cache;
mod callback;
mod event;
mod refresh;
mod summary;
mod tenant;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use url::Url;

pub use self::callback::{Callback, validate_return_path};
pub use self::event::{Event, EventKind};
pub use self::summary::{ConnectionSummary, Disconnected, ErrorSummary, TestReport};
pub use self::tenant::TenantConnections;

use crate::clock::{Clock, SystemClock, saturating_add};
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, LastError, PendingAuthorization};
use crate::connector::{AccountType, AuthorizeRequest, Connector, Installation};
use crate::error::{Error, ErrorCode, Result};
use crate::retry::Backoff;
use crate::scope::{Scope, ScopeSet, Scopes};
use crate::secret::AccessToken;
use crate::store::{ConnectionFilter, InsertRules, Inserted, TokenStore};

/// A tenant's portal limit, from its plan (`None`: unlimited).
pub type PlanLimit = Arc<dyn Fn(&str) -> Option<usize> + Send + Sync>;

/// How many portals a tenant may connect.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum PortalLimit {
    /// No limit.
    #[default]
    Unlimited,
    /// The same limit for every tenant.
    PerTenant(usize),
    /// A limit per tenant (from its plan); `None` means unlimited.
    Plans(PlanLimit),
}

impl PortalLimit {
    fn for_tenant(&self, tenant: &str) -> Option<usize> {
        match self {
            PortalLimit::Unlimited => None,
            PortalLimit::PerTenant(n) => Some(*n),
            PortalLimit::Plans(f) => f(tenant),
        }
    }
}

impl fmt::Debug for PortalLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortalLimit::Unlimited => f.write_str("Unlimited"),
            PortalLimit::PerTenant(n) => write!(f, "PerTenant({n})"),
            PortalLimit::Plans(_) => f.write_str("Plans(..)"),
        }
    }
}

/// The manager's policies. Every field has a sensible default; see [`ConnectionsBuilder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Policy {
    /// Refresh this long before expiry. Default 5 minutes.
    pub refresh_margin: Duration,
    /// Up to this much more, fixed per token (every process and every check agree), so many connections do not
    /// refresh in the same second. Default 30 s. The refresh point is never earlier than half the token's lifetime.
    pub refresh_jitter: Duration,
    /// How long a started authorization is accepted. Default 10 minutes.
    pub auth_ttl: Duration,
    /// Portals per tenant.
    pub portal_limit: PortalLimit,
    /// Let several tenants connect the same portal. Default off.
    pub allow_shared_portals: bool,
    /// Account types that may be connected. Default: every type but `APP_DEVELOPER`.
    pub refused_account_types: Vec<AccountType>,
    /// How long a refresh lease lasts; longer than a token request can take. Default 60 s.
    pub lease_ttl: Duration,
    /// How often a caller waiting for another process's refresh looks again (at least every 10 ms). Default 100 ms.
    /// Only a caller without a still-valid token waits, and for at most three lease lifetimes.
    pub lease_poll: Duration,
    /// The cooldowns after failed refreshes: the first after one failure, doubling with each failure in a row (at
    /// least HubSpot's `Retry-After`). Default 30 s, doubling, at most 30 minutes, without jitter.
    pub backoff: Backoff,
    /// The longest a cached token is served without checking the store still holds it (a connection disconnected
    /// or refreshed by another process is noticed within this time). Default 5 s.
    pub cache_revalidate: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(300),
            refresh_jitter: Duration::from_secs(30),
            auth_ttl: Duration::from_secs(600),
            portal_limit: PortalLimit::Unlimited,
            allow_shared_portals: false,
            refused_account_types: vec![AccountType::AppDeveloper],
            lease_ttl: Duration::from_secs(60),
            lease_poll: Duration::from_millis(100),
            backoff: Backoff::new(Duration::from_secs(30), Duration::from_secs(1800)).without_jitter(),
            cache_revalidate: Duration::from_secs(5),
        }
    }
}

/// Options for [`Connections::begin`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BeginOptions {
    /// Preselect this portal in HubSpot's account picker.
    pub portal_id: Option<u64>,
    /// A same-origin path to send the user back to after the callback (checked by [`validate_return_path`]).
    pub return_to: Option<String>,
    /// Send the user to HubSpot's EU login host.
    pub eu: bool,
}

impl BeginOptions {
    /// Preselects a portal.
    pub fn portal(mut self, portal_id: u64) -> Self {
        self.portal_id = Some(portal_id);
        self
    }

    /// Sets the return path.
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// Uses the EU login host.
    pub fn eu(mut self, eu: bool) -> Self {
        self.eu = eu;
        self
    }
}

/// A started authorization: where to send the user, and until when the callback is accepted.
#[non_exhaustive]
pub struct Begun {
    /// HubSpot's authorize URL. It carries the state: redirect to it, do not log it.
    pub authorize_url: Url,
    /// When the pending authorization expires.
    pub expires_at: SystemTime,
}

impl fmt::Debug for Begun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.authorize_url.clone();
        shown.set_query(Some("[redacted]"));
        f.debug_struct("Begun").field("authorize_url", &shown.as_str()).field("expires_at", &self.expires_at).finish()
    }
}

/// The result of a completed callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Completed {
    /// The stored connection.
    pub connection: Connection,
    /// The return path given to `begin`.
    pub return_to: Option<String>,
    /// Whether this re-authorized an existing connection (a reconnect, or the same tenant connecting the same
    /// portal again).
    pub reconnected: bool,
}

/// Options for [`Connections::sweep`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SweepOptions {
    /// Refresh connections whose tokens were last refreshed longer ago than this. Default 1 day.
    pub idle_for: Duration,
    /// At most this many refreshes at once. Default 4.
    pub concurrency: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self { idle_for: Duration::from_secs(86_400), concurrency: 4 }
    }
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Connections looked at (idle ones).
    pub checked: usize,
    /// Refreshed successfully.
    pub refreshed: usize,
    /// Found dead: HubSpot refused the refresh token.
    pub needs_reauth: usize,
    /// Failed for a passing reason (in `backoff`).
    pub failed: usize,
}

/// The connection manager: connect, keep connected, reconnect, disconnect.
///
/// Cheap to clone (an `Arc` inside); share one per process. Several processes may share one store: refreshes are
/// coordinated through the store's leases and compare-and-swap writes.
///
#[doc = include_str!("../../docs/lifecycle.md")]
pub struct Connections {
    inner: Arc<Shared>,
}

impl Clone for Connections {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("connector", &self.inner.connector)
            .field("store", &self.inner.store)
            .field("policy", &self.inner.policy)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) connector: Arc<dyn Connector>,
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Policy,
    pub(crate) owner: String,
    pub(crate) cache: cache::TokenCache,
    pub(crate) events: broadcast::Sender<Event>,
}

/// Configures [`Connections`].
#[derive(Debug)]
pub struct ConnectionsBuilder {
    connector: Arc<dyn Connector>,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    policy: Policy,
    owner: Option<String>,
}

impl ConnectionsBuilder {
    /// The clock (default [`SystemClock`]). Give the connector the same one.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// All policies at once.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Refresh this long before expiry (default 5 minutes), plus up to `jitter` (default 30 s) at random.
    pub fn refresh_margin(mut self, margin: Duration, jitter: Duration) -> Self {
        self.policy.refresh_margin = margin;
        self.policy.refresh_jitter = jitter;
        self
    }

    /// How long a started authorization is accepted (default 10 minutes).
    pub fn auth_ttl(mut self, ttl: Duration) -> Self {
        self.policy.auth_ttl = ttl;
        self
    }

    /// The same portal limit for every tenant.
    pub fn max_portals_per_tenant(mut self, max: usize) -> Self {
        self.policy.portal_limit = PortalLimit::PerTenant(max);
        self
    }

    /// A portal limit per tenant, such as its plan's (`None`: unlimited).
    pub fn portal_limit(mut self, limit: impl Fn(&str) -> Option<usize> + Send + Sync + 'static) -> Self {
        self.policy.portal_limit = PortalLimit::Plans(Arc::new(limit));
        self
    }

    /// Let several tenants connect the same portal (off by default).
    pub fn allow_shared_portals(mut self, allow: bool) -> Self {
        self.policy.allow_shared_portals = allow;
        self
    }

    /// Account types refused with [`ErrorCode::WrongAccountType`] (default: `APP_DEVELOPER`).
    pub fn refuse_account_types(mut self, types: impl IntoIterator<Item = AccountType>) -> Self {
        self.policy.refused_account_types = types.into_iter().collect();
        self
    }

    /// The lease owner name of this manager (default: random). Give each process its own.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Builds the manager.
    pub fn build(self) -> Connections {
        let (events, _) = broadcast::channel(1024);
        Connections {
            inner: Arc::new(Shared {
                connector: self.connector,
                store: self.store,
                clock: self.clock,
                cache: cache::TokenCache::new(self.policy.cache_revalidate),
                policy: self.policy,
                owner: self.owner.unwrap_or_else(|| format!("owner-{}", ConnectionId::random().as_str())),
                events,
            }),
        }
    }
}

fn not_found(id: &ConnectionId) -> Error {
    Error::new(ErrorCode::ConnectionNotFound, format!("no connection {id}"))
}

impl Connections {
    /// Starts configuring a manager.
    pub fn builder(connector: impl Connector, store: impl TokenStore) -> ConnectionsBuilder {
        Self::builder_shared(Arc::new(connector), Arc::new(store))
    }

    /// Starts configuring a manager over a connector and a store already shared (`Arc`s), for instance a store
    /// chosen at run time.
    pub fn builder_shared(connector: Arc<dyn Connector>, store: Arc<dyn TokenStore>) -> ConnectionsBuilder {
        ConnectionsBuilder { connector, store, clock: Arc::new(SystemClock), policy: Policy::default(), owner: None }
    }

    /// The connector.
    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.inner.connector
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The clock the manager reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The policies in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Subscribes to connection events (a slow subscriber misses the oldest, see tokio's `broadcast`).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    pub(crate) fn emit(&self, kind: EventKind, c: &Connection) {
        let event = Event::new(kind, c, self.now());
        tracing::info!(
            event = ?kind,
            connection = %c.id,
            portal_id = c.portal_id,
            code = c.last_error.as_ref().map(|e| e.code.as_str()),
            "hubspot connection event"
        );
        let _ = self.inner.events.send(event);
    }

    /// Starts connecting a portal for `tenant`: stores a pending authorization and returns HubSpot's authorize URL.
    pub async fn begin(&self, tenant: &str, scopes: &dyn ScopeSet, options: BeginOptions) -> Result<Begun> {
        self.begin_inner(tenant, scopes, options, None).await
    }

    /// Starts re-authorizing an existing connection (after `RECONNECT_REQUIRED`, or to add scopes): same
    /// connection id, its portal preselected; completing with another portal is [`ErrorCode::PortalMismatch`].
    pub async fn reconnect(&self, id: &ConnectionId, scopes: &dyn ScopeSet, options: BeginOptions) -> Result<Begun> {
        let c = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
        let options = BeginOptions { portal_id: Some(c.portal_id), ..options };
        self.begin_inner(&c.tenant, scopes, options, Some(c.id)).await
    }

    async fn begin_inner(
        &self,
        tenant: &str,
        scopes: &dyn ScopeSet,
        options: BeginOptions,
        reconnect: Option<ConnectionId>,
    ) -> Result<Begun> {
        if tenant.is_empty() || tenant.len() > 256 {
            return Err(Error::new(ErrorCode::InvalidConfig, "the tenant must be 1 to 256 characters"));
        }
        let return_to = options.return_to.as_deref().map(validate_return_path).transpose()?;
        let mut request = AuthorizeRequest::new(scopes).eu(options.eu);
        if let Some(portal) = options.portal_id {
            request = request.portal(portal);
        }
        let auth = self.inner.connector.authorize_url(&request)?;
        let now = self.now();
        let expires_at = saturating_add(now, self.inner.policy.auth_ttl);
        let mut pending = PendingAuthorization::new(auth.state.secret(), tenant, auth.pkce_verifier, now, expires_at);
        pending.required_scopes = request.required;
        pending.optional_scopes = request.optional;
        pending.portal_id = options.portal_id;
        pending.return_to = return_to;
        pending.reconnect = reconnect;
        self.inner.store.put_pending(pending).await?;
        Ok(Begun { authorize_url: auth.url, expires_at })
    }

    /// Completes a callback, whoever's it is (the command line tool, a callback route that does not know the user).
    pub async fn complete(&self, callback: &Callback) -> Result<Completed> {
        self.complete_inner(None, callback).await
    }

    /// Completes a callback for the signed-in `tenant`: a state that another tenant started is
    /// [`ErrorCode::InvalidState`], and nothing is exchanged.
    pub async fn complete_for(&self, tenant: &str, callback: &Callback) -> Result<Completed> {
        self.complete_inner(Some(tenant), callback).await
    }

    async fn complete_inner(&self, tenant: Option<&str>, callback: &Callback) -> Result<Completed> {
        let pending = match &callback.state {
            Some(state) => self.inner.store.take_pending(&PendingAuthorization::hash_state(state.secret())).await?,
            None => None,
        };
        if let (None, Some(error)) = (&callback.state, &callback.error) {
            return Err(access_denied(error, callback.error_description.as_deref()));
        }
        let mut pending = pending.ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "the callback's state is unknown, already used or forged; nothing was exchanged",
            )
        })?;
        pending.return_to = callback::recheck_return_path(pending.return_to.take());
        if tenant.is_some_and(|t| t != pending.tenant) {
            return Err(Error::new(
                ErrorCode::InvalidState,
                "the callback's state was started by another tenant; nothing was exchanged",
            ));
        }
        if self.now() >= pending.expires_at {
            return Err(Error::new(
                ErrorCode::TokenExpired,
                "the authorization took too long and expired; start connecting again",
            ));
        }
        if let Some(error) = &callback.error {
            return Err(access_denied(error, callback.error_description.as_deref()));
        }
        let code = match &callback.code {
            Some(code) => crate::secret::AuthorizationCode::new(code.secret()),
            None => return Err(Error::new(ErrorCode::InvalidState, "the callback has no code")),
        };
        let tokens = self.inner.connector.exchange_code(code, pending.pkce_verifier).await?;
        let refresh = tokens.refresh_token.clone();
        let refresh = &refresh;
        // A refused installation's refresh token is revoked, unless a stored connection holds the same token.
        let revoke = |reason: Error, portal: Option<u64>| async move {
            if let Some(r) = refresh {
                self.revoke_refused(r, portal).await;
            }
            reason
        };
        let installed = match self.inner.connector.identify(&tokens.access_token).await {
            Ok(i) => i,
            Err(e) => return Err(revoke(e, tokens.portal_id).await),
        };
        let portal = Some(installed.portal_id);
        let required = Scopes::new().require_all(pending.required_scopes.iter().cloned());
        if let Err(missing) = required.check(&installed.scopes) {
            let err = Error::new(
                ErrorCode::AuthScopeDenied,
                format!("the connection was refused: {missing}; reconnect and accept every requested permission"),
            )
            .with_missing_scopes(missing.scopes().to_vec());
            return Err(revoke(err, portal).await);
        }
        if let Some(t) = installed.account_type().filter(|t| self.inner.policy.refused_account_types.contains(t)) {
            let err = Error::new(
                ErrorCode::WrongAccountType,
                format!("a {t} account was chosen; connect your main HubSpot account instead"),
            );
            return Err(revoke(err, portal).await);
        }
        let now = self.now();
        let mut connection = Connection::new(
            pending.tenant.clone(),
            installed.portal_id,
            tokens.access_token.clone(),
            tokens.refresh_token.clone(),
            Some(tokens.expires_at),
            now,
        );
        connection.refreshed_at = tokens.requested_at;
        apply_installation(&mut connection, &installed);

        if let Some(id) = &pending.reconnect {
            let current = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
            if current.portal_id != installed.portal_id {
                let err = Error::new(
                    ErrorCode::PortalMismatch,
                    format!(
                        "portal {} was authorized, but this connection is to portal {}; reconnect and choose portal {}",
                        installed.portal_id, current.portal_id, current.portal_id
                    ),
                );
                return Err(revoke(err, portal).await);
            }
            let stored = self.replace_tokens(current, connection).await?;
            return Ok(Completed { connection: stored, return_to: pending.return_to, reconnected: true });
        }

        let rules = InsertRules {
            allow_shared_portals: self.inner.policy.allow_shared_portals,
            max_portals: self.inner.policy.portal_limit.for_tenant(&pending.tenant),
        };
        match self.inner.store.insert(&connection, rules).await? {
            Inserted::Created => {
                self.remember(&connection);
                self.emit(EventKind::Connected, &connection);
                Ok(Completed { connection, return_to: pending.return_to, reconnected: false })
            }
            Inserted::Existing(current) => {
                let stored = self.replace_tokens(*current, connection).await?;
                Ok(Completed { connection: stored, return_to: pending.return_to, reconnected: true })
            }
            Inserted::PortalTaken { .. } => Err(revoke(
                Error::new(
                    ErrorCode::PortalAlreadyConnected,
                    format!(
                        "HubSpot portal {} is already connected to another account; disconnect it there first",
                        installed.portal_id
                    ),
                ),
                portal,
            )
            .await),
            Inserted::LimitReached { held } => Err(revoke(
                Error::new(
                    ErrorCode::PortalLimitReached,
                    format!("this account already has {held} connected HubSpot portals, the most its plan allows"),
                ),
                portal,
            )
            .await),
        }
    }

    /// Revokes the refresh token of an installation that was refused, unless a stored connection to the same
    /// portal holds the very same token: HubSpot can hand the same refresh token to the same user, portal and app
    /// on a second install, and revoking it would disconnect the owner. When the portal is unknown or the store
    /// cannot be read, nothing is revoked (a stray token is harmless; a revoked connection is not).
    async fn revoke_refused(&self, refresh: &crate::secret::RefreshToken, portal: Option<u64>) {
        let Some(portal) = portal else {
            tracing::warn!("a refused installation's token is not revoked: its portal is unknown");
            return;
        };
        match self.inner.store.list(&ConnectionFilter::all().portal(portal)).await {
            Ok(held)
                if held.iter().any(|c| c.refresh_token.as_ref().is_some_and(|t| t.secret() == refresh.secret())) =>
            {
                tracing::warn!(
                    portal_id = portal,
                    "HubSpot handed a refused installation the refresh token of a stored connection; it is kept"
                );
            }
            Ok(_) => {
                if let Err(e) = self.inner.connector.revoke(refresh).await {
                    tracing::warn!(code = e.code().as_str(), "could not revoke a refused installation's token");
                }
            }
            Err(e) => {
                tracing::warn!(
                    code = e.code().as_str(),
                    "a refused installation's token is not revoked: the store failed"
                );
            }
        }
    }

    /// Writes fresh tokens from a (re)authorization over a stored connection, keeping its id and creation time.
    async fn replace_tokens(&self, mut current: Connection, fresh: Connection) -> Result<Connection> {
        for _ in 0..5 {
            let was = current.status;
            let mut next = current.next_version(self.now());
            next.take_tokens(&fresh);
            next.installed_by = fresh.installed_by.clone();
            next.installed_by_user_id = fresh.installed_by_user_id;
            next.hub_domain = fresh.hub_domain.clone();
            next.account_type = fresh.account_type.clone();
            next.kind = CredentialKind::OAuth;
            if self.inner.store.compare_and_swap(&next).await? {
                self.remember(&next);
                let kind = if was == ConnectionStatus::Connected { EventKind::Connected } else { EventKind::Recovered };
                self.emit(kind, &next);
                return Ok(next);
            }
            current = self.inner.store.get(&current.id).await?.ok_or_else(|| not_found(&current.id))?;
        }
        Err(Error::new(ErrorCode::StoreUnavailable, "the connection kept changing while it was being reconnected"))
    }

    /// Connects a private app's access token (an app-level credential, identified through account info and never
    /// refreshed).
    pub async fn connect_private_app(&self, tenant: &str, token: AccessToken) -> Result<Connection> {
        let installed = self.inner.connector.identify_app_token(&token).await?;
        if let Some(t) = installed.account_type().filter(|t| self.inner.policy.refused_account_types.contains(t)) {
            return Err(Error::new(ErrorCode::WrongAccountType, format!("the token belongs to a {t} account")));
        }
        let mut connection = Connection::new(tenant, installed.portal_id, token, None, None, self.now());
        connection.kind = CredentialKind::PrivateApp;
        apply_installation(&mut connection, &installed);
        let rules = InsertRules {
            allow_shared_portals: self.inner.policy.allow_shared_portals,
            max_portals: self.inner.policy.portal_limit.for_tenant(tenant),
        };
        match self.inner.store.insert(&connection, rules).await? {
            Inserted::Created => {
                self.emit(EventKind::Connected, &connection);
                Ok(connection)
            }
            Inserted::Existing(c) => Err(Error::new(
                ErrorCode::PortalAlreadyConnected,
                format!("portal {} is already connected for this tenant as {}", c.portal_id, c.id),
            )),
            Inserted::PortalTaken { .. } => Err(Error::new(
                ErrorCode::PortalAlreadyConnected,
                format!("HubSpot portal {} is already connected to another account", installed.portal_id),
            )),
            Inserted::LimitReached { held } => Err(Error::new(
                ErrorCode::PortalLimitReached,
                format!("this account already has {held} connected HubSpot portals, the most its plan allows"),
            )),
        }
    }

    /// The stored connection.
    pub async fn status(&self, id: &ConnectionId) -> Result<Connection> {
        self.inner.store.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// The connections matching `filter`.
    pub async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        self.inner.store.list(filter).await
    }

    /// The connections a HubSpot user installed, so a vendor can move them to someone else before that user is
    /// removed from the portal (which may kill their tokens).
    pub async fn connections_installed_by(&self, user: &str) -> Result<Vec<Connection>> {
        self.inner.store.list(&ConnectionFilter::all().installed_by(user)).await
    }

    /// Tests a connection: a valid token (refreshed if due), then HubSpot's account info and token metadata.
    pub async fn test(&self, id: &ConnectionId) -> Result<TestReport> {
        let c = self.status(id).await?;
        let started = self.now();
        let token = self.access_token(id).await?;
        let installed = match c.kind {
            CredentialKind::PrivateApp => self.inner.connector.identify_app_token(&token).await?,
            _ => self.inner.connector.identify(&token).await?,
        };
        let latency = self.now().duration_since(started).unwrap_or_default();
        if installed.portal_id != c.portal_id {
            return Err(Error::new(
                ErrorCode::PortalMismatch,
                format!("the token now belongs to portal {}, not {}", installed.portal_id, c.portal_id),
            ));
        }
        let mut scopes = installed.scopes.clone();
        scopes.sort();
        Ok(TestReport {
            id: c.id,
            portal_id: installed.portal_id,
            account_type: installed.account_type().cloned(),
            scopes,
            latency,
        })
    }

    /// Disconnects: revokes the refresh token at HubSpot, then purges the connection locally even if the revoke
    /// failed. The result says which happened.
    pub async fn disconnect(&self, id: &ConnectionId) -> Result<Disconnected> {
        let c = self.status(id).await?;
        let revoke_error = match &c.refresh_token {
            Some(r) => match self.inner.connector.revoke(r).await {
                Ok(true) => None,
                Ok(false) => Some(Error::new(ErrorCode::HubspotUnavailable, "this provider cannot revoke tokens")),
                Err(e) => Some(e),
            },
            None => Some(Error::new(ErrorCode::HubspotUnavailable, "a private app's token cannot be revoked here")),
        };
        self.inner.store.delete(id).await?;
        self.forget(id);
        let mut gone = c.next_version(self.now());
        gone.status = ConnectionStatus::Disconnected;
        gone.last_error =
            revoke_error.as_ref().map(|e| LastError { code: e.code(), message: e.to_string(), at: self.now() });
        self.emit(EventKind::Disconnected, &gone);
        Ok(Disconnected { id: c.id, revoked: revoke_error.is_none(), revoke_error })
    }

    /// Refreshes connections whose tokens have not been refreshed for `idle_for`, a few at a time, so dead
    /// connections are found before a user finds them. Connections needing re-authorization are skipped.
    pub async fn sweep(&self, options: SweepOptions) -> Result<SweepReport> {
        let now = self.now();
        let idle: Vec<Connection> = self
            .inner
            .store
            .list(&ConnectionFilter::all())
            .await?
            .into_iter()
            .filter(|c| c.kind == CredentialKind::OAuth)
            .filter(|c| matches!(c.status, ConnectionStatus::Connected | ConnectionStatus::Backoff))
            .filter(|c| saturating_add(c.refreshed_at, options.idle_for) <= now)
            .filter(|c| c.retry_at.is_none_or(|t| t <= now))
            .collect();
        let mut report = SweepReport { checked: idle.len(), ..SweepReport::default() };
        let permits = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for c in idle {
            let this = self.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                // Unless another worker refreshed it since the listing: one refresh however many sweeps run.
                this.single_flight(&c.id, refresh::Force::Unless(c.access_token.clone())).await.map(|_| ())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => report.refreshed += 1,
                Ok(Err(e)) if e.code() == ErrorCode::ReconnectRequired => report.needs_reauth += 1,
                _ => report.failed += 1,
            }
        }
        Ok(report)
    }
}

fn access_denied(error: &str, description: Option<&str>) -> Error {
    let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
    let detail =
        description.map(|d| format!(": {}", d.chars().filter(|c| !c.is_control()).take(200).collect::<String>()));
    Error::new(
        ErrorCode::AccessDenied,
        format!("HubSpot did not grant access ({error}{}); connect again to retry", detail.unwrap_or_default()),
    )
}

fn apply_installation(c: &mut Connection, installed: &Installation) {
    c.scopes = installed.scopes.clone();
    c.scopes.sort();
    c.scopes.dedup();
    c.installed_by = installed.user.clone();
    c.installed_by_user_id = installed.user_id;
    c.hub_domain = installed.hub_domain.clone();
    c.account_type = installed.account_type().cloned();
}

#[allow(dead_code)]
fn _assert_send(c: &Connections) -> impl Send + '_ {
    let _ = Scope::OAUTH;
    async move {
        let _ = c.access_token(&ConnectionId::new("x")).await;
    }
}
