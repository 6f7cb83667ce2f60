//! Operating on stored connections: status, list, test, disconnect, and the keep-alive sweep.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Connections, SweepOptions, not_found, refresh};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind};
use crate::connector::AccountType;
use crate::error::{Error, ErrorCode, Result};
use crate::event::EventKind;
use crate::scope::Scope;
use crate::store::ConnectionFilter;

/// The result of [`crate::Connections::test`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TestReport {
    /// The connection.
    pub id: ConnectionId,
    /// The portal HubSpot reports.
    pub portal_id: u64,
    /// The account type HubSpot reports.
    pub account_type: Option<AccountType>,
    /// The scopes HubSpot reports.
    pub scopes: Vec<Scope>,
    /// How long the check took.
    #[serde(rename = "latency_ms", serialize_with = "millis")]
    pub latency: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The result of [`crate::Connections::disconnect`]: the connection is purged locally either way.
#[derive(Debug)]
#[non_exhaustive]
pub struct DisconnectReport {
    /// The connection.
    pub id: ConnectionId,
    /// Whether HubSpot revoked the refresh token.
    pub revoked: bool,
    /// Why the revoke failed, if it did.
    pub revoke_error: Option<Error>,
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

impl Connections {
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
    pub async fn disconnect(&self, id: &ConnectionId) -> Result<DisconnectReport> {
        let c = self.status(id).await?;
        let revoke_error = match &c.refresh_token {
            Some(r) => match self.inner.connector.revoke(r).await {
                Ok(true) => None,
                Ok(false) => Some(Error::new(ErrorCode::HubspotUnavailable, "this provider cannot revoke tokens")),
                Err(e) => Some(e),
            },
            None => Some(Error::new(ErrorCode::HubspotUnavailable, "a private app's token cannot be revoked here")),
        };
        let mut event = self.event(EventKind::Disconnected, &c);
        if let Some(e) = &revoke_error {
            // Why the revoke failed (the connection is purged all the same).
            event = event.with_error(e);
        }
        let events = vec![event];
        let deleted = self.inner.store.delete_with_events(id, &events).await?;
        self.forget(id);
        if deleted {
            self.publish(events);
        }
        Ok(DisconnectReport { id: c.id, revoked: revoke_error.is_none(), revoke_error })
    }

    /// Refreshes connections whose tokens have not been refreshed for `idle_for`, a few at a time, so dead
    /// connections are found before a user finds them. Connections needing re-authorization are skipped.
    pub async fn sweep(&self, options: SweepOptions) -> Result<SweepReport> {
        if let Err(e) = self.purge_events().await {
            tracing::warn!(code = e.code().as_str(), "purging old events failed; the sweep goes on");
        }
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
