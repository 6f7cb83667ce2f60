//! [`TenantConnections`]: what one signed-in customer may do, and nothing on another customer's connections.

use super::{AuthorizeRedirect, BeginOptions, ConnectOutcome, Connections, DisconnectReport, TestReport, not_found};
use crate::connection::{Connection, ConnectionId};
use crate::error::Result;
use crate::manager::Callback;
use crate::scope::ScopeSet;
use crate::secret::AccessToken;
use crate::store::ConnectionFilter;

/// The operations a signed-in customer (a tenant of the vendor's app) may do on its own connections, from
/// [`Connections::tenant`].
///
/// Every operation that takes a connection id first checks the connection belongs to this tenant, and answers
/// [`ErrorCode::ConnectionNotFound`](crate::ErrorCode::ConnectionNotFound) for another tenant's id, exactly as for
/// an id that does not exist: nothing is done, and nothing tells the caller the id exists. Use it in every route a
/// customer reaches; the unscoped [`Connections`] operations are for operators and workers.
///
/// ```no_run
/// # async fn route(connections: hubspot_connect::Connections, id: hubspot_connect::ConnectionId) -> hubspot_connect::Result<()> {
/// // In a request handler, with the tenant of the signed-in user:
/// let mine = connections.tenant("acme");
/// let report = mine.test(&id).await?; // CONNECTION_NOT_FOUND if `id` is another tenant's
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TenantConnections {
    connections: Connections,
    tenant: String,
}

impl Connections {
    /// The operations `tenant` may do on its own connections; see [`TenantConnections`].
    pub fn tenant(&self, tenant: impl Into<String>) -> TenantConnections {
        TenantConnections { connections: self.clone(), tenant: tenant.into() }
    }
}

impl TenantConnections {
    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The unscoped manager.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The connection, if it is this tenant's.
    pub async fn status(&self, id: &ConnectionId) -> Result<Connection> {
        let c = self.connections.status(id).await?;
        if c.tenant == self.tenant { Ok(c) } else { Err(not_found(id)) }
    }

    /// This tenant's connections, ordered by id.
    pub async fn list(&self) -> Result<Vec<Connection>> {
        self.connections.list(&ConnectionFilter::all().tenant(self.tenant.clone())).await
    }

    /// Starts connecting a portal for this tenant.
    pub async fn begin(&self, scopes: &dyn ScopeSet, options: BeginOptions) -> Result<AuthorizeRedirect> {
        self.connections.begin(&self.tenant, scopes, options).await
    }

    /// Completes a callback started by this tenant (another tenant's is `INVALID_STATE`, nothing exchanged).
    pub async fn complete(&self, callback: &Callback) -> Result<ConnectOutcome> {
        self.connections.complete_for(&self.tenant, callback).await
    }

    /// Starts re-authorizing one of this tenant's connections.
    pub async fn reconnect(
        &self,
        id: &ConnectionId,
        scopes: &dyn ScopeSet,
        options: BeginOptions,
    ) -> Result<AuthorizeRedirect> {
        let c = self.status(id).await?;
        self.connections.reconnect_stored(c, scopes, options).await
    }

    /// Tests one of this tenant's connections.
    pub async fn test(&self, id: &ConnectionId) -> Result<TestReport> {
        self.status(id).await?;
        self.connections.test(id).await
    }

    /// Disconnects one of this tenant's connections (revoke at HubSpot, then purge).
    pub async fn disconnect(&self, id: &ConnectionId) -> Result<DisconnectReport> {
        self.status(id).await?;
        self.connections.disconnect(id).await
    }

    /// A valid access token for one of this tenant's connections.
    pub async fn access_token(&self, id: &ConnectionId) -> Result<AccessToken> {
        self.status(id).await?;
        self.connections.access_token(id).await
    }
}
