//! Connecting a portal. `begin` stores a pending authorization and returns HubSpot's authorize URL; `complete` takes
//! the callback through five named steps:
//!
//! 1. [take the pending authorization](Connections::take_pending): the state is used once, by the tenant that
//!    started it, before it expires;
//! 2. exchange the code (with the PKCE verifier);
//! 3. identify the installation: which portal, which user, which scopes;
//! 4. [enforce the vendor's policy](Connections::enforce_policy): the required scopes, the refused account types;
//! 5. [persist](Connections::persist): a new connection (the tenant's portal limit and "one portal, one tenant" are
//!    checked by the store in the same atomic step), or fresh tokens over the connection being reconnected.
//!
//! An installation refused in steps 3 to 5 has its refresh token revoked ([`Connections::revoke_refused`]); a store
//! that fails does not revoke anything. Private apps go through the same policy and insert checks.

use std::fmt;
use std::time::SystemTime;

use url::Url;

use super::{Connections, Event, EventKind, callback, not_found};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, PendingAuthorization};
use crate::connector::{AccountType, AuthorizeRequest, Installation, TokenSet};
use crate::error::{Error, ErrorCode, Result};
use crate::manager::{BeginOptions, Callback, validate_return_path};
use crate::scope::{Scope, ScopeSet, Scopes};
use crate::secret::{AccessToken, AuthorizationCode, RefreshToken};
use crate::store::{ConnectionFilter, InsertRules, Inserted};

/// A started authorization: where to send the user, and until when the callback is accepted.
#[non_exhaustive]
pub struct AuthorizeRedirect {
    /// HubSpot's authorize URL. It carries the state: redirect to it, do not log it.
    pub authorize_url: Url,
    /// When the pending authorization expires.
    pub expires_at: SystemTime,
}

impl fmt::Debug for AuthorizeRedirect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.authorize_url.clone();
        shown.set_query(Some("[redacted]"));
        f.debug_struct("AuthorizeRedirect")
            .field("authorize_url", &shown.as_str())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The result of a completed callback.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectOutcome {
    /// The stored connection.
    pub connection: Connection,
    /// The return path given to `begin`.
    pub return_to: Option<String>,
    /// Whether this re-authorized an existing connection (a reconnect, or the same tenant connecting the same
    /// portal again).
    pub reconnected: bool,
}

/// Why a step after the code exchange stopped the connect.
enum Stop {
    /// The installation is refused: its refresh token is revoked (the portal, when known, guards against revoking
    /// a token a stored connection holds).
    Refused(Error, Option<u64>),
    /// Something failed (the store): nothing is revoked.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl Connections {
    /// Starts connecting a portal for `tenant`: stores a pending authorization and returns HubSpot's authorize URL.
    pub async fn begin(&self, tenant: &str, scopes: &dyn ScopeSet, options: BeginOptions) -> Result<AuthorizeRedirect> {
        self.begin_inner(tenant, scopes, options, None).await
    }

    /// Starts re-authorizing an existing connection (after `RECONNECT_REQUIRED`, or to add scopes): same
    /// connection id, its portal preselected; completing with another portal is [`ErrorCode::PortalMismatch`].
    pub async fn reconnect(
        &self,
        id: &ConnectionId,
        scopes: &dyn ScopeSet,
        options: BeginOptions,
    ) -> Result<AuthorizeRedirect> {
        let c = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
        self.reconnect_stored(c, scopes, options).await
    }

    /// [`reconnect`](Self::reconnect) of a connection already read from the store.
    pub(super) async fn reconnect_stored(
        &self,
        c: Connection,
        scopes: &dyn ScopeSet,
        options: BeginOptions,
    ) -> Result<AuthorizeRedirect> {
        let options = BeginOptions { portal_id: Some(c.portal_id), ..options };
        self.begin_inner(&c.tenant, scopes, options, Some(c.id)).await
    }

    async fn begin_inner(
        &self,
        tenant: &str,
        scopes: &dyn ScopeSet,
        options: BeginOptions,
        reconnect: Option<ConnectionId>,
    ) -> Result<AuthorizeRedirect> {
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
        Ok(AuthorizeRedirect { authorize_url: auth.url, expires_at })
    }

    /// Completes a callback, whoever's it is (the command line tool, a callback route that does not know the user).
    pub async fn complete(&self, callback: &Callback) -> Result<ConnectOutcome> {
        self.complete_inner(None, callback).await
    }

    /// Completes a callback for the signed-in `tenant`: a state that another tenant started is
    /// [`ErrorCode::InvalidState`], and nothing is exchanged.
    pub async fn complete_for(&self, tenant: &str, callback: &Callback) -> Result<ConnectOutcome> {
        self.complete_inner(Some(tenant), callback).await
    }

    async fn complete_inner(&self, tenant: Option<&str>, callback: &Callback) -> Result<ConnectOutcome> {
        let (pending, code) = self.take_pending(tenant, callback).await?;
        // From here on the tenant is known: a failure is written to the event log as `connect_failed`.
        let mut failed = Event::for_tenant(EventKind::ConnectFailed, pending.tenant.clone(), self.now());
        failed.portal_id = pending.portal_id;
        failed.connection_id = pending.reconnect.clone();
        match self.complete_pending(pending, code).await {
            Ok(done) => Ok(done),
            Err((e, portal)) => {
                failed.occurred_at = self.now();
                failed.portal_id = portal.or(failed.portal_id);
                let failed = failed.with_error(&e);
                if let Err(store) = self.inner.store.append_events(std::slice::from_ref(&failed)).await {
                    tracing::warn!(
                        code = store.code().as_str(),
                        "a failed connect could not be written to the event log"
                    );
                }
                self.publish(vec![failed]);
                Err(e)
            }
        }
    }

    /// Steps 2 to 5 for a taken pending authorization. A failure comes with the portal, when known.
    async fn complete_pending(
        &self,
        pending: PendingAuthorization,
        code: Result<AuthorizationCode>,
    ) -> std::result::Result<ConnectOutcome, (Error, Option<u64>)> {
        let code = code.map_err(|e| (e, None))?;
        let PendingAuthorization { tenant, pkce_verifier, required_scopes, return_to, reconnect, .. } = pending;
        let tokens = self.inner.connector.exchange_code(code, pkce_verifier).await.map_err(|e| (e, None))?;
        let admitted = async {
            let installed = self
                .inner
                .connector
                .identify(&tokens.access_token)
                .await
                .map_err(|e| Stop::Refused(e, tokens.portal_id))?;
            let portal = Some(installed.portal_id);
            self.enforce_policy(&required_scopes, &installed).map_err(|e| Stop::Refused(e, portal))?;
            self.persist(&tenant, reconnect.as_ref(), &tokens, &installed).await
        };
        match admitted.await {
            Ok((connection, reconnected)) => Ok(ConnectOutcome { connection, return_to, reconnected }),
            Err(Stop::Failed(e)) => Err((e, tokens.portal_id)),
            Err(Stop::Refused(e, portal)) => {
                if let Some(refresh) = &tokens.refresh_token {
                    self.revoke_refused(refresh, portal).await;
                }
                Err((e, portal.or(tokens.portal_id)))
            }
        }
    }

    /// Step 1: the pending authorization the callback's state names, taken (so used once) before anything is
    /// checked, and the code (or why the callback carries none usable: expired, declined). A callback without a known state is refused before anything is exchanged, whatever
    /// else it carries.
    async fn take_pending(
        &self,
        tenant: Option<&str>,
        callback: &Callback,
    ) -> Result<(PendingAuthorization, Result<AuthorizationCode>)> {
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
        // The pending authorization is the tenant's own: what fails now is the tenant's failed connect.
        let code = if self.now() >= pending.expires_at {
            Err(Error::new(
                ErrorCode::TokenExpired,
                "the authorization took too long and expired; start connecting again",
            ))
        } else if let Some(error) = &callback.error {
            Err(access_denied(error, callback.error_description.as_deref()))
        } else {
            match &callback.code {
                Some(code) => Ok(AuthorizationCode::new(code.secret())),
                None => Err(Error::new(ErrorCode::InvalidState, "the callback has no code")),
            }
        };
        Ok((pending, code))
    }

    /// Step 4: the vendor's policy on an identified installation: every required scope granted, an account type
    /// the vendor accepts.
    fn enforce_policy(&self, required: &[Scope], installed: &Installation) -> Result<()> {
        let required = Scopes::new().require_all(required.iter().cloned());
        if let Err(missing) = required.check(&installed.scopes) {
            return Err(Error::new(
                ErrorCode::AuthScopeDenied,
                format!("the connection was refused: {missing}; reconnect and accept every requested permission"),
            )
            .with_missing_scopes(missing.scopes().to_vec()));
        }
        if let Some(t) = self.refused_account_type(installed) {
            return Err(Error::new(
                ErrorCode::WrongAccountType,
                format!("a {t} account was chosen; connect your main HubSpot account instead"),
            ));
        }
        Ok(())
    }

    fn refused_account_type<'a>(&self, installed: &'a Installation) -> Option<&'a AccountType> {
        installed.account_type().filter(|t| self.inner.policy.refused_account_types.contains(t))
    }

    /// Step 5: stores the connection. A reconnect writes the fresh tokens over the connection it names (refused if
    /// another portal was chosen); otherwise the store inserts a new connection, or answers the tenant's existing
    /// connection to the same portal (whose tokens are then replaced), or refuses by the policy's limits. Returns
    /// the stored connection and whether it existed before.
    async fn persist(
        &self,
        tenant: &str,
        reconnect: Option<&ConnectionId>,
        tokens: &TokenSet,
        installed: &Installation,
    ) -> std::result::Result<(Connection, bool), Stop> {
        let mut connection = Connection::new(
            tenant,
            installed.portal_id,
            tokens.access_token.clone(),
            tokens.refresh_token.clone(),
            Some(tokens.expires_at),
            self.now(),
        );
        connection.refreshed_at = tokens.requested_at;
        apply_installation(&mut connection, installed);

        if let Some(id) = reconnect {
            let current = self.inner.store.get(id).await?.ok_or_else(|| not_found(id))?;
            if current.portal_id != installed.portal_id {
                let err = Error::new(
                    ErrorCode::PortalMismatch,
                    format!(
                        "portal {} was authorized, but this connection is to portal {}; reconnect and choose portal {}",
                        installed.portal_id, current.portal_id, current.portal_id
                    ),
                );
                return Err(Stop::Refused(err, Some(installed.portal_id)));
            }
            return Ok((self.replace_tokens(current, connection).await?, true));
        }
        let events = vec![self.event(EventKind::Connected, &connection)];
        match self.inner.store.insert_with_events(&connection, self.insert_rules(tenant), &events).await? {
            Inserted::Created => {
                self.remember(&connection);
                self.publish(events);
                Ok((connection, false))
            }
            Inserted::Existing(current) => Ok((self.replace_tokens(*current, connection).await?, true)),
            refused => Err(Stop::Refused(insert_refusal(&refused, installed.portal_id), Some(installed.portal_id))),
        }
    }

    fn insert_rules(&self, tenant: &str) -> InsertRules {
        InsertRules {
            allow_shared_portals: self.inner.policy.allow_shared_portals,
            max_portals: self.inner.policy.portal_limit.for_tenant(tenant),
        }
    }

    /// Revokes the refresh token of an installation that was refused, unless a stored connection to the same
    /// portal holds the very same token: HubSpot can hand the same refresh token to the same user, portal and app
    /// on a second install, and revoking it would disconnect the owner. When the portal is unknown or the store
    /// cannot be read, nothing is revoked (a stray token is harmless; a revoked connection is not).
    async fn revoke_refused(&self, refresh: &RefreshToken, portal: Option<u64>) {
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
            // `recovered` first (when it was not connected), then `reconnected`, then `scopes_changed`.
            let mut events = Vec::new();
            if was != ConnectionStatus::Connected {
                events.push(self.event(EventKind::Recovered, &next));
            }
            events.push(self.event(EventKind::Reconnected, &next));
            if scopes_differ(&current.scopes, &next.scopes) {
                events.push(self.event(EventKind::ScopesChanged, &next));
            }
            if self.inner.store.compare_and_swap_with_events(&next, &events).await? {
                self.remember(&next);
                self.publish(events);
                return Ok(next);
            }
            current = self.inner.store.get(&current.id).await?.ok_or_else(|| not_found(&current.id))?;
        }
        Err(Error::new(ErrorCode::StoreUnavailable, "the connection kept changing while it was being reconnected"))
    }

    /// Connects a private app's access token (an app-level credential, identified through account info and never
    /// refreshed). The account type and the store's insert are checked as for an OAuth installation; a portal the
    /// tenant already connected is refused, since a private app's token cannot replace OAuth tokens.
    pub async fn connect_private_app(&self, tenant: &str, token: AccessToken) -> Result<Connection> {
        let installed = self.inner.connector.identify_app_token(&token).await?;
        if let Some(t) = self.refused_account_type(&installed) {
            return Err(Error::new(ErrorCode::WrongAccountType, format!("the token belongs to a {t} account")));
        }
        let mut connection = Connection::new(tenant, installed.portal_id, token, None, None, self.now());
        connection.kind = CredentialKind::PrivateApp;
        apply_installation(&mut connection, &installed);
        let events = vec![self.event(EventKind::Connected, &connection)];
        match self.inner.store.insert_with_events(&connection, self.insert_rules(tenant), &events).await? {
            Inserted::Created => {
                self.publish(events);
                Ok(connection)
            }
            Inserted::Existing(c) => Err(Error::new(
                ErrorCode::PortalAlreadyConnected,
                format!("portal {} is already connected for this tenant as {}", c.portal_id, c.id),
            )),
            refused => Err(insert_refusal(&refused, installed.portal_id)),
        }
    }
}

/// The error for an insert the store refused by the policy's limits, the same for OAuth and private apps.
fn insert_refusal(inserted: &Inserted, portal_id: u64) -> Error {
    match inserted {
        Inserted::LimitReached { held } => Error::new(
            ErrorCode::PortalLimitReached,
            format!("this account already has {held} connected HubSpot portals, the most its plan allows"),
        ),
        // `PortalTaken` (`Created` and `Existing` are successes and never come here).
        _ => Error::new(
            ErrorCode::PortalAlreadyConnected,
            format!("HubSpot portal {portal_id} is already connected to another account; disconnect it there first"),
        ),
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

/// Whether two scope lists name different scopes (order and repeats aside).
pub(crate) fn scopes_differ(a: &[Scope], b: &[Scope]) -> bool {
    fn set(s: &[Scope]) -> std::collections::BTreeSet<&str> {
        s.iter().map(Scope::as_str).collect()
    }
    set(a) != set(b)
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
