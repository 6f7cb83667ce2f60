//! The fake's world and its rules, without HTTP: codes, token families, rotation, revocation, expiry, the
//! switches and the inspection counts; the CRM's objects and rate windows in [`crm`].
//!
//! The bottom layer of the fake: it imports only the public value types and the random identifiers. The wire
//! formats stand above it, the responders above those, and [`FakeHubSpot`](super::FakeHubSpot) on top.

pub(crate) mod crm;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use self::crm::Crm;
use super::random;
use super::scenario::Scenario;
use super::types::{
    AppRegistration, DeadIntrospection, Decline, Endpoint, ErrorStyle, Failure, FakeAccountType, FakePortal, FakeUser,
    Reinstall, Rotation, TokenFields,
};
use crate::clock::Clock;

/// The portal chosen when the authorize URL names none.
pub(crate) const DEFAULT_PORTAL: u64 = 62515;

/// State shared by the [`FakeHubSpot`](super::FakeHubSpot) handle and the mounted responders.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(clock: Arc<dyn Clock>, state: State) -> Self {
        Self { clock, state: Mutex::new(state) }
    }

    /// Locks the state, recovering from a panic in another holder (the state stays usable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// Who installed what: the portal, the installing user and the granted scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) portal_id: u64,
    pub(crate) user: FakeUser,
    pub(crate) scopes: Vec<String>,
}

/// A PKCE challenge remembered with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    S256(String),
    Plain(String),
}

impl Challenge {
    fn accepts(&self, verifier: &str) -> bool {
        match self {
            Challenge::S256(challenge) => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == *challenge,
            Challenge::Plain(challenge) => verifier == challenge,
        }
    }
}

#[derive(Debug)]
struct CodeRecord {
    grant: Grant,
    redirect_uri: String,
    challenge: Option<Challenge>,
    expires_at: SystemTime,
    used: bool,
}

#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub(crate) grant: Grant,
    pub(crate) expires_at: SystemTime,
    revoked: bool,
}

#[derive(Debug)]
pub(crate) struct RefreshRecord {
    pub(crate) grant: Grant,
    family: u64,
    revoked: bool,
}

/// A chain of refresh tokens issued from one authorization.
#[derive(Debug)]
struct Family {
    current: String,
    revoked: bool,
}

/// A token-endpoint error: RFC 6749 `error`, HubSpot's `status`, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenError {
    pub(crate) error: &'static str,
    pub(crate) status: &'static str,
    pub(crate) message: String,
}

impl TokenError {
    fn new(error: &'static str, status: &'static str, message: impl Into<String>) -> Self {
        Self { error, status, message: message.into() }
    }

    pub(crate) fn bad_client(message: &str) -> Self {
        Self::new("invalid_client", "BAD_CLIENT_ID", message)
    }

    pub(crate) fn bad_grant_type(message: &str) -> Self {
        Self::new("unsupported_grant_type", "BAD_GRANT_TYPE", message)
    }

    pub(crate) fn bad_auth_code(message: &str) -> Self {
        Self::new("invalid_grant", "BAD_AUTH_CODE", message)
    }

    fn expired_auth_code() -> Self {
        Self::new("invalid_grant", "EXPIRED_AUTH_CODE", "auth code is expired")
    }

    fn redirect_mismatch() -> Self {
        Self::new(
            "invalid_grant",
            "MISMATCH_REDIRECT_URI_AUTH_CODE",
            "redirect URI does not match initial auth code URL",
        )
    }

    pub(crate) fn bad_refresh_token() -> Self {
        Self::new("invalid_grant", "BAD_REFRESH_TOKEN", "refresh token is invalid, expired or revoked")
    }

    pub(crate) fn bad_scope(message: String) -> Self {
        Self::new("invalid_scope", "BAD_SCOPE", message)
    }

    pub(crate) fn bad_access_token() -> Self {
        Self::new("invalid_grant", "BAD_ACCESS_TOKEN", "access token is invalid, expired or revoked")
    }
}

/// A successful token answer, before it is written for one endpoint generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minted {
    pub(crate) access_token: String,
    /// `None` when the answer has no `refresh_token` field ([`Rotation::Omit`]).
    pub(crate) refresh_token: Option<String>,
    pub(crate) grant: Grant,
    pub(crate) expires_in: u64,
}

/// What an access token is at a given moment.
#[derive(Debug)]
pub(crate) enum AccessLookup<'a> {
    Live(&'a AccessRecord),
    /// Expired this long ago.
    Expired(Duration),
    /// Unknown, revoked, uninstalled.
    Invalid,
}

/// The whole world of one fake HubSpot.
#[derive(Debug)]
pub(crate) struct State {
    /// The app, as registered when the fake started (never changed afterwards).
    pub(crate) app: AppRegistration,
    pub(crate) portals: BTreeMap<u64, FakePortal>,
    pub(crate) user: FakeUser,
    pub(crate) refused: Vec<String>,
    pub(crate) decline: Decline,
    pub(crate) access_ttl: Duration,
    pub(crate) code_ttl: Duration,
    pub(crate) rotation: Rotation,
    pub(crate) reinstall: Reinstall,
    pub(crate) error_style: ErrorStyle,
    pub(crate) dead_introspection: DeadIntrospection,
    pub(crate) revoke_status: u16,
    pub(crate) token_fields: TokenFields,
    /// Whether the authorize step shows the consent page instead of consenting at once.
    pub(crate) interactive: bool,
    /// The scenario applied at the start, applied again by [`State::reset`].
    start: Scenario,
    failures: HashMap<Endpoint, VecDeque<Failure>>,
    counts: HashMap<Endpoint, usize>,
    last_forms: HashMap<Endpoint, Vec<(String, String)>>,
    authorizations: HashMap<Endpoint, Option<String>>,
    stale_presentations: usize,
    /// Token requests by their `grant_type` (as sent, when it is one the fake knows).
    grants: HashMap<&'static str, usize>,
    pub(crate) crm: Crm,
    codes: HashMap<String, CodeRecord>,
    access: HashMap<String, AccessRecord>,
    refresh: HashMap<String, RefreshRecord>,
    families: HashMap<u64, Family>,
    next_family: u64,
    installs: HashMap<u64, String>,
    /// App-level access tokens (`grant_type=client_credentials`): their scopes and expiry.
    app_tokens: HashMap<String, (Vec<String>, SystemTime)>,
}

impl State {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_app(AppRegistration::default())
    }

    pub(crate) fn with_app(app: AppRegistration) -> Self {
        let mut portals = BTreeMap::new();
        portals.insert(DEFAULT_PORTAL, FakePortal::new(DEFAULT_PORTAL));
        Self {
            app,
            portals,
            user: FakeUser::default(),
            refused: Vec::new(),
            decline: Decline::default(),
            access_ttl: Duration::from_secs(1800),
            code_ttl: Duration::from_secs(600),
            rotation: Rotation::default(),
            reinstall: Reinstall::default(),
            error_style: ErrorStyle::default(),
            dead_introspection: DeadIntrospection::default(),
            revoke_status: 200,
            token_fields: TokenFields::default(),
            interactive: false,
            start: Scenario::default(),
            failures: HashMap::new(),
            counts: HashMap::new(),
            last_forms: HashMap::new(),
            authorizations: HashMap::new(),
            stale_presentations: 0,
            grants: HashMap::new(),
            crm: Crm::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            families: HashMap::new(),
            next_family: 1,
            installs: HashMap::new(),
            app_tokens: HashMap::new(),
        }
    }

    /// A fresh world for `app`, with `start` applied (and applied again on every [`reset`](Self::reset)).
    pub(crate) fn started(app: AppRegistration, start: Scenario, interactive: bool) -> Self {
        let mut state = Self::with_app(app);
        state.apply(&start);
        state.start = start;
        state.interactive = interactive;
        state
    }

    /// Back to the start: the app, the start scenario and the consent mode stay; everything else is new.
    pub(crate) fn reset(&mut self) {
        let app = self.app.clone();
        let start = std::mem::take(&mut self.start);
        *self = Self::started(app, start, self.interactive);
    }

    /// Merges a scenario: portals added or replaced, the switches it names set, its failures queued.
    pub(crate) fn apply(&mut self, scenario: &Scenario) {
        for portal in &scenario.portals {
            self.portals.insert(portal.id, portal.clone());
        }
        if let Some(user) = &scenario.user {
            self.user = user.clone();
        }
        if let Some(refused) = &scenario.refuse_scopes {
            self.refused = refused.clone();
        }
        if let Some(decline) = scenario.decline {
            self.decline = decline;
        }
        if let Some(rotation) = scenario.rotation {
            self.rotation = rotation;
        }
        if let Some(ttl) = scenario.access_token_ttl {
            self.access_ttl = ttl;
        }
        for f in &scenario.failures {
            self.queue_failure(f.endpoint, f.failure.clone(), f.times);
        }
    }

    // ---- requests, failures and inspection ----

    /// Counts a request, remembers its form and takes the next queued failure, if any.
    pub(crate) fn arrive(&mut self, endpoint: Endpoint, form: Vec<(String, String)>) -> Option<Failure> {
        *self.counts.entry(endpoint).or_default() += 1;
        self.last_forms.insert(endpoint, form);
        self.failures.get_mut(&endpoint).and_then(VecDeque::pop_front)
    }

    pub(crate) fn queue_failure(&mut self, endpoint: Endpoint, failure: Failure, times: usize) {
        let queue = self.failures.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(failure, times));
    }

    pub(crate) fn clear_failures(&mut self) {
        self.failures.clear();
    }

    pub(crate) fn requests(&self, endpoint: Endpoint) -> usize {
        self.counts.get(&endpoint).copied().unwrap_or(0)
    }

    pub(crate) fn last_form(&self, endpoint: Endpoint) -> Option<Vec<(String, String)>> {
        self.last_forms.get(&endpoint).cloned()
    }

    /// Remembers the `Authorization` header of the latest request to `endpoint` (`None`: it had none).
    pub(crate) fn remember_authorization(&mut self, endpoint: Endpoint, value: Option<String>) {
        self.authorizations.insert(endpoint, value);
    }

    pub(crate) fn last_authorization(&self, endpoint: Endpoint) -> Option<String> {
        self.authorizations.get(&endpoint).cloned().flatten()
    }

    pub(crate) fn stale_presentations(&self) -> usize {
        self.stale_presentations
    }

    /// Counts a token request of a known grant type.
    pub(crate) fn count_grant(&mut self, grant_type: &str) {
        let known = ["authorization_code", "refresh_token", "client_credentials"];
        if let Some(name) = known.into_iter().find(|g| *g == grant_type) {
            *self.grants.entry(name).or_default() += 1;
        }
    }

    pub(crate) fn grant_requests(&self, grant_type: &str) -> usize {
        self.grants.get(grant_type).copied().unwrap_or(0)
    }

    pub(crate) fn reset_counts(&mut self) {
        self.counts.clear();
        self.grants.clear();
        self.stale_presentations = 0;
        self.crm.reset_counts();
    }

    // ---- the world ----

    /// The portal with this id; a default one if it was never added (only [`State::mint`] creates grants for
    /// portals, and it adds them).
    pub(crate) fn portal(&self, id: u64) -> FakePortal {
        self.portals.get(&id).cloned().unwrap_or_else(|| FakePortal::new(id))
    }

    /// The `appInstallId` of the app in this portal (stable per portal).
    pub(crate) fn install_id(&mut self, portal_id: u64) -> String {
        self.installs.entry(portal_id).or_insert_with(|| random::digits(8)).clone()
    }

    /// `(scope ∪ optional_scope) − refused`, in order, without duplicates.
    pub(crate) fn granted<'a>(&self, requested: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut granted: Vec<String> = Vec::new();
        for scope in requested {
            if !scope.is_empty() && !self.refused.iter().any(|r| r == scope) && !granted.iter().any(|g| g == scope) {
                granted.push(scope.to_owned());
            }
        }
        granted
    }

    /// The portal instant consent picks when the authorize URL names none: [`DEFAULT_PORTAL`] while it is a
    /// standard account, else the first standard one (by id), else [`DEFAULT_PORTAL`].
    pub(crate) fn instant_portal(&self) -> u64 {
        let standard = |p: &FakePortal| p.account_type == FakeAccountType::Standard;
        if self.portals.get(&DEFAULT_PORTAL).is_some_and(standard) {
            return DEFAULT_PORTAL;
        }
        self.portals.values().find(|p| standard(p)).map_or(DEFAULT_PORTAL, |p| p.id)
    }

    // ---- codes ----

    pub(crate) fn codes_issued(&self) -> usize {
        self.codes.len()
    }

    pub(crate) fn issue_code(
        &mut self,
        grant: Grant,
        redirect_uri: &str,
        challenge: Option<Challenge>,
        now: SystemTime,
    ) -> String {
        let hublet = self.portal(grant.portal_id).data_hosting_location;
        let code = random::code(&hublet);
        let expires_at = crate::clock::saturating_add(now, self.code_ttl);
        self.codes.insert(
            code.clone(),
            CodeRecord { grant, redirect_uri: redirect_uri.to_owned(), challenge, expires_at, used: false },
        );
        code
    }

    /// `grant_type=authorization_code`. A code found and not expired is used up by the attempt, even when the
    /// redirect URI or the verifier is wrong.
    pub(crate) fn redeem_code(
        &mut self,
        code: Option<&str>,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: SystemTime,
    ) -> Result<Minted, TokenError> {
        let Some(record) = code.and_then(|c| self.codes.get_mut(c)) else {
            return Err(TokenError::bad_auth_code("missing or unknown auth code"));
        };
        if record.used {
            return Err(TokenError::bad_auth_code("missing or unknown auth code"));
        }
        if now >= record.expires_at {
            return Err(TokenError::expired_auth_code());
        }
        record.used = true;
        if redirect_uri != Some(record.redirect_uri.as_str()) {
            return Err(TokenError::redirect_mismatch());
        }
        if let Some(challenge) = &record.challenge {
            match verifier {
                None => return Err(TokenError::bad_auth_code("missing code_verifier for a code issued with PKCE")),
                Some(v) if !challenge.accepts(v) => {
                    return Err(TokenError::bad_auth_code("code_verifier does not match the code_challenge"));
                }
                Some(_) => {}
            }
        }
        let grant = record.grant.clone();
        Ok(self.mint(grant, now))
    }

    // ---- tokens ----

    /// A new access token and a new refresh-token family for this grant. Adds the portal if it is unknown.
    pub(crate) fn mint(&mut self, grant: Grant, now: SystemTime) -> Minted {
        self.portals.entry(grant.portal_id).or_insert_with(|| FakePortal::new(grant.portal_id));
        let _ = self.install_id(grant.portal_id);
        if self.reinstall == Reinstall::SameRefreshToken {
            let held = self
                .refresh
                .iter()
                .filter(|(_, r)| r.grant.portal_id == grant.portal_id && r.grant.user == grant.user)
                .map(|(token, _)| token.clone())
                .find(|token| self.live_refresh(token).is_some());
            if let Some(token) = held {
                // The same refresh token, now carrying the new grant's scopes.
                if let Some(record) = self.refresh.get_mut(&token) {
                    record.grant.scopes = grant.scopes.clone();
                }
                let access_token = self.mint_access(&grant, now);
                return Minted {
                    access_token,
                    refresh_token: Some(token),
                    grant,
                    expires_in: self.access_ttl.as_secs(),
                };
            }
        }
        let family = self.next_family;
        self.next_family += 1;
        let refresh_token = random::uuid();
        self.families.insert(family, Family { current: refresh_token.clone(), revoked: false });
        self.refresh.insert(refresh_token.clone(), RefreshRecord { grant: grant.clone(), family, revoked: false });
        let access_token = self.mint_access(&grant, now);
        Minted { access_token, refresh_token: Some(refresh_token), grant, expires_in: self.access_ttl.as_secs() }
    }

    fn mint_access(&mut self, grant: &Grant, now: SystemTime) -> String {
        let token = random::access_token();
        let expires_at = crate::clock::saturating_add(now, self.access_ttl);
        self.access.insert(token.clone(), AccessRecord { grant: grant.clone(), expires_at, revoked: false });
        token
    }

    /// `grant_type=refresh_token`, following the rotation mode.
    pub(crate) fn refresh(&mut self, token: Option<&str>, now: SystemTime) -> Result<Minted, TokenError> {
        let Some((token, record)) = token.and_then(|t| self.refresh.get(t).map(|r| (t, r))) else {
            return Err(TokenError::bad_refresh_token());
        };
        let family_id = record.family;
        let grant = record.grant.clone();
        if record.revoked {
            return Err(TokenError::bad_refresh_token());
        }
        let Some(family) = self.families.get_mut(&family_id) else {
            return Err(TokenError::bad_refresh_token());
        };
        if family.revoked {
            return Err(TokenError::bad_refresh_token());
        }
        if family.current != token {
            self.stale_presentations += 1;
            if self.rotation == Rotation::Strict {
                family.revoked = true;
                return Err(TokenError::bad_refresh_token());
            }
        }
        let refresh_token = match self.rotation {
            Rotation::Same => Some(token.to_owned()),
            Rotation::Omit => None,
            Rotation::Rotate | Rotation::Strict => {
                let next = random::uuid();
                family.current = next.clone();
                self.refresh
                    .insert(next.clone(), RefreshRecord { grant: grant.clone(), family: family_id, revoked: false });
                Some(next)
            }
        };
        let access_token = self.mint_access(&grant, now);
        Ok(Minted { access_token, refresh_token, grant, expires_in: self.access_ttl.as_secs() })
    }

    /// `grant_type=client_credentials`: an app-level access token with the requested app-level scopes (all of
    /// the app's when `scope` is absent), no refresh token. A scope the app does not allow is `BAD_SCOPE`.
    pub(crate) fn mint_app_token(
        &mut self,
        scope: Option<&str>,
        now: SystemTime,
    ) -> Result<(String, u64, Vec<String>), TokenError> {
        let scopes: Vec<String> = match scope.map(str::split_whitespace) {
            Some(requested) => {
                let mut scopes: Vec<String> = Vec::new();
                for s in requested {
                    if !self.app.app_scopes.iter().any(|a| a == s) {
                        return Err(TokenError::bad_scope(format!("scope {s} is not an app-level scope of this app")));
                    }
                    if !scopes.iter().any(|g| g == s) {
                        scopes.push(s.to_owned());
                    }
                }
                scopes
            }
            None => self.app.app_scopes.clone(),
        };
        let token = random::access_token();
        let expires_at = crate::clock::saturating_add(now, self.access_ttl);
        self.app_tokens.insert(token.clone(), (scopes.clone(), expires_at));
        Ok((token, self.access_ttl.as_secs(), scopes))
    }

    /// Revokes an app-level token. Returns whether it was known.
    pub(crate) fn revoke_app_token(&mut self, token: &str) -> bool {
        self.app_tokens.remove(token).is_some()
    }

    pub(crate) fn access_lookup(&self, token: &str, now: SystemTime) -> AccessLookup<'_> {
        match self.access.get(token) {
            Some(record) if record.revoked => AccessLookup::Invalid,
            Some(record) => match now.duration_since(record.expires_at) {
                Ok(ago) => AccessLookup::Expired(ago),
                Err(_) => AccessLookup::Live(record),
            },
            None => AccessLookup::Invalid,
        }
    }

    /// A refresh token that would refresh now: known, not revoked, and not superseded under strict rotation.
    pub(crate) fn live_refresh(&self, token: &str) -> Option<&RefreshRecord> {
        let record = self.refresh.get(token).filter(|r| !r.revoked)?;
        let family = self.families.get(&record.family).filter(|f| !f.revoked)?;
        if self.rotation == Rotation::Strict && family.current != token {
            return None;
        }
        Some(record)
    }

    /// Revokes a live refresh token and every token of its family. Returns whether it was live.
    pub(crate) fn revoke_refresh(&mut self, token: &str) -> bool {
        let Some(family) = self.live_refresh(token).map(|r| r.family) else {
            return false;
        };
        if let Some(f) = self.families.get_mut(&family) {
            f.revoked = true;
        }
        true
    }

    /// Revokes an access token (RFC 7009). Returns whether it was known and not yet revoked.
    pub(crate) fn revoke_access(&mut self, token: &str) -> bool {
        match self.access.get_mut(token) {
            Some(record) if !record.revoked => {
                record.revoked = true;
                true
            }
            _ => false,
        }
    }

    /// Every access token issued so far expires now (those already expired keep their expiry).
    pub(crate) fn expire_access_tokens(&mut self, now: SystemTime) {
        for record in self.access.values_mut() {
            record.expires_at = record.expires_at.min(now);
        }
    }

    /// Kills every code and token whose grant matches.
    fn kill(&mut self, matches: impl Fn(&Grant) -> bool) {
        for code in self.codes.values_mut().filter(|c| matches(&c.grant)) {
            code.used = true;
        }
        for record in self.access.values_mut().filter(|r| matches(&r.grant)) {
            record.revoked = true;
        }
        for record in self.refresh.values_mut().filter(|r| matches(&r.grant)) {
            record.revoked = true;
        }
    }

    /// The app is uninstalled from the portal.
    pub(crate) fn uninstall(&mut self, portal_id: u64) {
        self.kill(|g| g.portal_id == portal_id);
        self.installs.remove(&portal_id);
    }

    /// Revokes every refresh token of the portal; access tokens stay valid until they expire, codes stay usable.
    pub(crate) fn revoke_refresh_tokens_of(&mut self, portal_id: u64) {
        for record in self.refresh.values_mut().filter(|r| r.grant.portal_id == portal_id) {
            record.revoked = true;
        }
    }

    /// The installing user is removed from HubSpot.
    pub(crate) fn remove_user(&mut self, user_id: u64) {
        self.kill(|g| g.user.id == user_id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn grant(portal_id: u64, user_id: u64) -> Grant {
        Grant { portal_id, user: FakeUser::new(user_id, "u@example.com"), scopes: vec!["oauth".into()] }
    }

    fn code(s: &mut State, challenge: Option<Challenge>) -> String {
        s.issue_code(grant(DEFAULT_PORTAL, 1), "http://localhost/cb", challenge, t(0))
    }

    #[test]
    fn codes_are_single_use_and_expire() {
        let mut s = State::new();
        let c = code(&mut s, None);
        let m = s.redeem_code(Some(&c), Some("http://localhost/cb"), None, t(1)).unwrap();
        assert_eq!(m.grant.portal_id, DEFAULT_PORTAL);
        assert_eq!(m.expires_in, 1800);
        let e = s.redeem_code(Some(&c), Some("http://localhost/cb"), None, t(2)).unwrap_err();
        assert_eq!(e.status, "BAD_AUTH_CODE");

        let c = code(&mut s, None);
        let e = s.redeem_code(Some(&c), Some("http://localhost/cb"), None, t(600)).unwrap_err();
        assert_eq!(e.status, "EXPIRED_AUTH_CODE");
        assert_eq!(s.redeem_code(None, None, None, t(0)).unwrap_err().status, "BAD_AUTH_CODE");
    }

    #[test]
    fn redirect_and_pkce_are_checked() {
        let mut s = State::new();
        let c = code(&mut s, None);
        let e = s.redeem_code(Some(&c), Some("http://localhost/other"), None, t(1)).unwrap_err();
        assert_eq!((e.error, e.status), ("invalid_grant", "MISMATCH_REDIRECT_URI_AUTH_CODE"));
        let e = s.redeem_code(Some(&c), Some("http://localhost/cb"), None, t(1)).unwrap_err();
        assert_eq!(e.status, "BAD_AUTH_CODE", "the failed attempt used the code up");

        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = Challenge::S256("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into());
        for (given, ok) in [(None, false), (Some("wrong"), false), (Some(verifier), true)] {
            let c = code(&mut s, Some(challenge.clone()));
            let r = s.redeem_code(Some(&c), Some("http://localhost/cb"), given, t(1));
            assert_eq!(r.is_ok(), ok, "{given:?}");
            if let Err(e) = r {
                assert!(e.message.contains("code_verifier"), "{e:?}");
            }
        }
        let c = code(&mut s, Some(Challenge::Plain("plain-verifier".into())));
        assert!(s.redeem_code(Some(&c), Some("http://localhost/cb"), Some("plain-verifier"), t(1)).is_ok());
    }

    #[test]
    fn rotation_modes() {
        let mut s = State::new();
        let m = s.mint(grant(1, 1), t(0));
        let r0 = m.refresh_token.unwrap();
        assert_eq!(s.refresh(Some(&r0), t(1)).unwrap().refresh_token.as_deref(), Some(r0.as_str()));
        s.rotation = Rotation::Omit;
        assert_eq!(s.refresh(Some(&r0), t(1)).unwrap().refresh_token, None);
        s.rotation = Rotation::Rotate;
        let r1 = s.refresh(Some(&r0), t(1)).unwrap().refresh_token.unwrap();
        assert_ne!(r1, r0);
        let r2 = s.refresh(Some(&r0), t(1)).unwrap().refresh_token.unwrap();
        assert_eq!(s.stale_presentations(), 1, "r0 was superseded by r1");
        assert!(s.live_refresh(&r1).is_some(), "older tokens stay valid under Rotate");
        s.rotation = Rotation::Strict;
        assert!(s.live_refresh(&r1).is_none(), "superseded tokens are dead under Strict");
        let r3 = s.refresh(Some(&r2), t(1)).unwrap().refresh_token.unwrap();
        assert_eq!(s.refresh(Some(&r2), t(1)).unwrap_err().status, "BAD_REFRESH_TOKEN");
        assert_eq!(s.stale_presentations(), 2);
        assert_eq!(s.refresh(Some(&r3), t(1)).unwrap_err().status, "BAD_REFRESH_TOKEN", "the family is revoked");
        assert!(s.live_refresh(&r3).is_none());
        // Another family is untouched.
        let other = s.mint(grant(1, 1), t(0)).refresh_token.unwrap();
        assert!(s.refresh(Some(&other), t(1)).is_ok());
    }

    #[test]
    fn access_tokens_expire_by_the_clock_and_on_demand() {
        let mut s = State::new();
        let m = s.mint(grant(1, 1), t(0));
        assert!(matches!(s.access_lookup(&m.access_token, t(1799)), AccessLookup::Live(_)));
        assert!(matches!(s.access_lookup(&m.access_token, t(1800)), AccessLookup::Expired(d) if d.is_zero()));
        assert!(matches!(s.access_lookup(&m.access_token, t(1805)), AccessLookup::Expired(d) if d.as_secs() == 5));
        let m = s.mint(grant(1, 1), t(0));
        s.expire_access_tokens(t(10));
        assert!(matches!(s.access_lookup(&m.access_token, t(10)), AccessLookup::Expired(_)));
        assert!(matches!(s.access_lookup("nope", t(10)), AccessLookup::Invalid));
    }

    #[test]
    fn uninstall_and_user_removal_kill_only_their_tokens() {
        let mut s = State::new();
        let a = s.mint(grant(1, 10), t(0));
        let b = s.mint(grant(2, 10), t(0));
        let c = s.mint(grant(2, 20), t(0));
        s.uninstall(1);
        assert!(s.refresh(a.refresh_token.as_deref(), t(1)).is_err());
        assert!(matches!(s.access_lookup(&a.access_token, t(1)), AccessLookup::Invalid));
        assert!(s.refresh(b.refresh_token.as_deref(), t(1)).is_ok());
        s.remove_user(10);
        assert!(s.refresh(b.refresh_token.as_deref(), t(1)).is_err());
        assert!(s.refresh(c.refresh_token.as_deref(), t(1)).is_ok());
        // A new install works again.
        let again = s.mint(grant(1, 10), t(2));
        assert!(s.refresh(again.refresh_token.as_deref(), t(3)).is_ok());
    }

    #[test]
    fn revoking_a_refresh_token_leaves_access_tokens() {
        let mut s = State::new();
        let m = s.mint(grant(1, 1), t(0));
        let r = m.refresh_token.unwrap();
        assert!(s.revoke_refresh(&r));
        assert!(!s.revoke_refresh(&r), "already revoked");
        assert!(s.refresh(Some(&r), t(1)).is_err());
        assert!(matches!(s.access_lookup(&m.access_token, t(1)), AccessLookup::Live(_)));
        assert!(s.revoke_access(&m.access_token));
        assert!(matches!(s.access_lookup(&m.access_token, t(1)), AccessLookup::Invalid));
    }

    #[test]
    fn granted_scopes_drop_refused_and_duplicates() {
        let mut s = State::new();
        s.refused = vec!["b".into()];
        assert_eq!(s.granted(["oauth", "a", "b", "a", "", "c"]), ["oauth", "a", "c"]);
    }

    #[test]
    fn instant_consent_picks_the_first_standard_portal() {
        let mut s = State::new();
        assert_eq!(s.instant_portal(), DEFAULT_PORTAL);
        s.portals.insert(10, FakePortal::new(10).account_type(FakeAccountType::AppDeveloper));
        s.portals.insert(20, FakePortal::new(20));
        assert_eq!(s.instant_portal(), DEFAULT_PORTAL, "62515 while it is standard");
        s.portals.insert(DEFAULT_PORTAL, FakePortal::new(DEFAULT_PORTAL).account_type(FakeAccountType::Sandbox));
        assert_eq!(s.instant_portal(), 20);
    }

    #[test]
    fn reset_goes_back_to_the_start_scenario() {
        let start = Scenario::from_json(r#"{"portals": [{"id": 7}], "rotation": "strict"}"#).unwrap();
        let mut s = State::started(AppRegistration::default(), start, true);
        s.portals.insert(8, FakePortal::new(8));
        s.rotation = Rotation::Same;
        let c = code(&mut s, None);
        s.reset();
        assert_eq!(s.portals.keys().copied().collect::<Vec<_>>(), [7, DEFAULT_PORTAL]);
        assert_eq!(s.rotation, Rotation::Strict);
        assert!(s.interactive, "the consent mode survives a reset");
        assert_eq!(s.codes_issued(), 0);
        assert!(s.redeem_code(Some(&c), Some("http://localhost/cb"), None, t(0)).is_err(), "codes of before are gone");
    }

    #[test]
    fn failures_queue_in_order() {
        let mut s = State::new();
        s.queue_failure(Endpoint::TokenV1, Failure::ServerError, 2);
        s.queue_failure(Endpoint::TokenV1, Failure::BadGatewayHtml, 1);
        assert_eq!(s.arrive(Endpoint::TokenV1, vec![]), Some(Failure::ServerError));
        assert_eq!(s.arrive(Endpoint::TokenV1, vec![]), Some(Failure::ServerError));
        assert_eq!(s.arrive(Endpoint::TokenV1, vec![("a".into(), "b".into())]), Some(Failure::BadGatewayHtml));
        assert_eq!(s.arrive(Endpoint::TokenV1, vec![]), None);
        assert_eq!(s.requests(Endpoint::TokenV1), 4);
        assert_eq!(s.requests(Endpoint::Token202603), 0);
        s.reset_counts();
        assert_eq!(s.requests(Endpoint::TokenV1), 0);
    }
}
