//! A stored connection: one tenant's link to one HubSpot portal, with its tokens and health.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::connector::AccountType;
use crate::error::ErrorCode;
use crate::scope::Scope;
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};

/// `prefix` and 26 random base32 characters (128 random bits and two more): the crate's random ids.
pub(crate) fn random_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(prefix.len() + 26);
    id.push_str(prefix);
    id.extend((0..26).map(|_| ALPHABET[rng.gen_range(0..32)] as char));
    id
}

/// A connection's id: random, URL-safe, stable across reconnects.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(String);

impl ConnectionId {
    /// A fresh random id (`hc_` and 26 base32 characters, 128 random bits).
    pub fn random() -> Self {
        Self(random_id("hc_"))
    }

    /// An id from a string (an id read back from a URL, a CLI argument, a database).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ConnectionId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

/// A connection's health, as a vendor shows it to its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionStatus {
    /// Working: "Connected".
    Connected,
    /// HubSpot refused the refresh token; a user must reconnect. Never retried on its own.
    NeedsReauth,
    /// A refresh failed for a passing reason (HubSpot down, rate limited); retried after a cooldown.
    Backoff,
    /// Disconnected by the vendor or its user.
    Disconnected,
}

impl ConnectionStatus {
    /// `connected`, `needs_reauth`, `backoff` or `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Backoff => "backoff",
            ConnectionStatus::Disconnected => "disconnected",
        }
    }

    /// The status for its name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Connected, Self::NeedsReauth, Self::Backoff, Self::Disconnected].into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which kind of credential a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialKind {
    /// OAuth access and refresh tokens, refreshed ahead of expiry.
    #[serde(rename = "oauth")]
    OAuth,
    /// A private app's access token: app-level, never refreshed, never expires on its own.
    PrivateApp,
}

impl CredentialKind {
    /// `oauth` or `private_app`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::OAuth => "oauth",
            CredentialKind::PrivateApp => "private_app",
        }
    }
}

/// The last error a connection saw, kept for support: code and a message without secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// The error's code.
    pub code: ErrorCode,
    /// The error's message.
    pub message: String,
    /// When it happened.
    pub at: SystemTime,
}

/// A connection as stored: the tokens, who installed it, and its health.
///
/// `Debug` shows the tokens as `[redacted]`. Every write to a store is a compare-and-swap on `version`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Connection {
    /// The connection's id.
    pub id: ConnectionId,
    /// The vendor's tenant (customer, organization, workspace) that owns the connection.
    pub tenant: String,
    /// The HubSpot portal (account) id.
    pub portal_id: u64,
    /// OAuth or private-app token.
    pub kind: CredentialKind,
    /// Health.
    pub status: ConnectionStatus,
    /// The current access token.
    pub access_token: AccessToken,
    /// The refresh token (`None` for private-app tokens).
    pub refresh_token: Option<RefreshToken>,
    /// When the access token expires (`None`: it does not expire on its own).
    pub expires_at: Option<SystemTime>,
    /// The granted scopes.
    pub scopes: Vec<Scope>,
    /// The installing user's email.
    pub installed_by: Option<String>,
    /// The installing user's HubSpot id.
    pub installed_by_user_id: Option<u64>,
    /// The portal's domain.
    pub hub_domain: Option<String>,
    /// The account type.
    pub account_type: Option<AccountType>,
    /// The last error, cleared when the connection recovers.
    pub last_error: Option<LastError>,
    /// In `backoff`: no refresh is tried before this time.
    pub retry_at: Option<SystemTime>,
    /// Refresh failures in a row (for the back-off).
    pub failures: u32,
    /// When the connection was first made.
    pub created_at: SystemTime,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// When the tokens were last refreshed (or first issued).
    pub refreshed_at: SystemTime,
    /// The record's version: 1 when inserted, one more on every write.
    pub version: u64,
}

impl Connection {
    /// A new OAuth connection, `connected`, version 1, made at `now`. Set the other fields directly.
    pub fn new(
        tenant: impl Into<String>,
        portal_id: u64,
        access_token: AccessToken,
        refresh_token: Option<RefreshToken>,
        expires_at: Option<SystemTime>,
        now: SystemTime,
    ) -> Self {
        Self {
            id: ConnectionId::random(),
            tenant: tenant.into(),
            portal_id,
            kind: CredentialKind::OAuth,
            status: ConnectionStatus::Connected,
            access_token,
            refresh_token,
            expires_at,
            scopes: Vec::new(),
            installed_by: None,
            installed_by_user_id: None,
            hub_domain: None,
            account_type: None,
            last_error: None,
            retry_at: None,
            failures: 0,
            created_at: now,
            updated_at: now,
            refreshed_at: now,
            version: 1,
        }
    }

    /// Takes `fresh`'s tokens, expiry and scopes, and marks the connection healthy.
    pub(crate) fn take_tokens(&mut self, fresh: &Connection) {
        self.access_token = fresh.access_token.clone();
        self.refresh_token = fresh.refresh_token.clone();
        self.expires_at = fresh.expires_at;
        self.refreshed_at = fresh.refreshed_at;
        self.scopes = fresh.scopes.clone();
        self.mark_healthy();
    }

    /// `connected`, no error, no cooldown.
    pub(crate) fn mark_healthy(&mut self) {
        self.status = ConnectionStatus::Connected;
        self.last_error = None;
        self.retry_at = None;
        self.failures = 0;
    }

    /// A copy for the next compare-and-swap: version plus one, `updated_at` set to `now`.
    pub fn next_version(&self, now: SystemTime) -> Self {
        let mut next = self.clone();
        next.version = self.version.saturating_add(1);
        next.updated_at = now;
        next
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.secret(), other.secret())
    }
}

impl PartialEq for RefreshToken {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq(self.secret(), other.secret())
    }
}

/// Compares two strings without leaking where they differ through timing.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A started authorization waiting for its callback. Taken from the store at most once.
#[derive(Debug)]
#[non_exhaustive]
pub struct PendingAuthorization {
    /// SHA-256 of the state, hex: the key. The state itself is never stored.
    pub state_hash: String,
    /// The tenant that started it.
    pub tenant: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: PkceVerifier,
    /// Required scopes requested.
    pub required_scopes: Vec<Scope>,
    /// Optional scopes requested.
    pub optional_scopes: Vec<Scope>,
    /// The preselected portal, if any.
    pub portal_id: Option<u64>,
    /// A same-origin path to send the user back to.
    pub return_to: Option<String>,
    /// For a reconnect: the connection being reconnected.
    pub reconnect: Option<ConnectionId>,
    /// When it was started.
    pub created_at: SystemTime,
    /// When it stops being accepted.
    pub expires_at: SystemTime,
}

impl PendingAuthorization {
    /// A pending authorization for `tenant`, keyed by the hash of `state`. Set the other fields directly.
    pub fn new(
        state: &str,
        tenant: impl Into<String>,
        pkce_verifier: PkceVerifier,
        created_at: SystemTime,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            state_hash: Self::hash_state(state),
            tenant: tenant.into(),
            pkce_verifier,
            required_scopes: Vec::new(),
            optional_scopes: Vec::new(),
            portal_id: None,
            return_to: None,
            reconnect: None,
            created_at,
            expires_at,
        }
    }

    /// SHA-256 of a state, lowercase hex: the key a pending authorization is stored under.
    pub fn hash_state(state: &str) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(state.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_url_safe() {
        let a = ConnectionId::random();
        assert_ne!(a, ConnectionId::random());
        assert_eq!(a.as_str().len(), 29);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    }

    #[test]
    fn status_names() {
        for s in [
            ConnectionStatus::Connected,
            ConnectionStatus::NeedsReauth,
            ConnectionStatus::Backoff,
            ConnectionStatus::Disconnected,
        ] {
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn state_hash_is_sha256_hex() {
        assert_eq!(
            PendingAuthorization::hash_state("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_equality() {
        assert_eq!(AccessToken::new("a"), AccessToken::new("a"));
        assert_ne!(RefreshToken::new("a"), RefreshToken::new("b"));
        assert!(!constant_time_eq("a", "ab"));
    }
}
