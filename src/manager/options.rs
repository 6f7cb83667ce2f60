//! How a manager is configured: its policies, the options of `begin` and `sweep`, and the builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::{Connections, Shared, cache};
use crate::clock::{Clock, SystemClock};
use crate::connection::ConnectionId;
use crate::connector::{AccountType, Connector};
use crate::retry::Backoff;
use crate::store::TokenStore;

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
    pub(super) fn for_tenant(&self, tenant: &str) -> Option<usize> {
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
    /// How long the store's event log keeps an event: [`Connections::purge_events`] (which every
    /// [`Connections::sweep`] runs) removes older ones. Default 30 days.
    pub event_retention: Duration,
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
            event_retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Options for [`Connections::begin`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BeginOptions {
    /// Preselect this portal in HubSpot's account picker.
    pub portal_id: Option<u64>,
    /// A same-origin path to send the user back to after the callback (checked by [`validate_return_path`](super::validate_return_path)).
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
    pub(super) fn new(connector: Arc<dyn Connector>, store: Arc<dyn TokenStore>) -> Self {
        Self { connector, store, clock: Arc::new(SystemClock), policy: Policy::default(), owner: None }
    }

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

    /// Account types refused with [`ErrorCode::WrongAccountType`](crate::ErrorCode::WrongAccountType) (default: `APP_DEVELOPER`).
    pub fn refuse_account_types(mut self, types: impl IntoIterator<Item = AccountType>) -> Self {
        self.policy.refused_account_types = types.into_iter().collect();
        self
    }

    /// How long the event log keeps events (default 30 days); see [`Policy::event_retention`].
    pub fn event_retention(mut self, retention: Duration) -> Self {
        self.policy.event_retention = retention;
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
