//! The error type, its stable [`ErrorCode`]s, and HubSpot's own error body ([`HubSpotError`]).

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scope::Scope;

#[doc = include_str!("../docs/errors.md")]
///
/// `as_str()` gives the code (`"RECONNECT_REQUIRED"`), [`ErrorCode::advice`] a sentence a support team can show.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// The user did not grant every required scope; reconnect and accept all scopes.
    AuthScopeDenied,
    /// The tenant already has as many portals as its plan allows.
    PortalLimitReached,
    /// The authorization session timed out (pending authorization or code expired); start again.
    TokenExpired,
    /// The portal is connected to another tenant; disconnect it there first.
    PortalAlreadyConnected,
    /// The user declined, or HubSpot redirected back with an error.
    AccessDenied,
    /// Unknown, forged or replayed state; nothing was exchanged.
    InvalidState,
    /// HubSpot refused the refresh token (app uninstalled, user removed, token revoked).
    ReconnectRequired,
    /// A reconnect authorized a different portal than the connection's.
    PortalMismatch,
    /// A developer or test account was chosen where a standard account is required.
    WrongAccountType,
    /// An API call was refused for a scope the connection lacks.
    MissingScopes,
    /// HubSpot's rate limit held after the allowed retries.
    RateLimited,
    /// HubSpot failed (5xx, timeout, garbage body) after the allowed retries.
    HubspotUnavailable,
    /// Client id, secret or redirect URI rejected by HubSpot.
    InvalidClient,
    /// No such connection.
    ConnectionNotFound,
    /// The token store failed; nothing was lost or half-written.
    StoreUnavailable,
    /// HubSpot refused an API request as invalid (a 4xx other than 401, 403 and 429: a validation error, an
    /// object that does not exist, a conflict). HubSpot's body says why.
    RequestRejected,
    /// A read-only connection was asked to change something (any method but GET and HEAD).
    ReadOnly,
    /// The crate was configured with something it cannot use (a redirect URI over plain http to a public host,
    /// a malformed URL). A vendor's bug, not a user's.
    InvalidConfig,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::AuthScopeDenied,
        ErrorCode::PortalLimitReached,
        ErrorCode::TokenExpired,
        ErrorCode::PortalAlreadyConnected,
        ErrorCode::AccessDenied,
        ErrorCode::InvalidState,
        ErrorCode::ReconnectRequired,
        ErrorCode::PortalMismatch,
        ErrorCode::WrongAccountType,
        ErrorCode::MissingScopes,
        ErrorCode::RateLimited,
        ErrorCode::HubspotUnavailable,
        ErrorCode::InvalidClient,
        ErrorCode::ConnectionNotFound,
        ErrorCode::StoreUnavailable,
        ErrorCode::RequestRejected,
        ErrorCode::ReadOnly,
        ErrorCode::InvalidConfig,
    ];

    /// Whether an error with this code is, as a rule, a passing one (see [`Error::is_retryable`]).
    pub(crate) const fn is_transient(self) -> bool {
        matches!(self, ErrorCode::RateLimited | ErrorCode::HubspotUnavailable | ErrorCode::StoreUnavailable)
    }

    /// The stable code string, such as `"AUTH_SCOPE_DENIED"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AuthScopeDenied => "AUTH_SCOPE_DENIED",
            ErrorCode::PortalLimitReached => "PORTAL_LIMIT_REACHED",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::PortalAlreadyConnected => "PORTAL_ALREADY_CONNECTED",
            ErrorCode::AccessDenied => "ACCESS_DENIED",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::ReconnectRequired => "RECONNECT_REQUIRED",
            ErrorCode::PortalMismatch => "PORTAL_MISMATCH",
            ErrorCode::WrongAccountType => "WRONG_ACCOUNT_TYPE",
            ErrorCode::MissingScopes => "MISSING_SCOPES",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::HubspotUnavailable => "HUBSPOT_UNAVAILABLE",
            ErrorCode::InvalidClient => "INVALID_CLIENT",
            ErrorCode::ConnectionNotFound => "CONNECTION_NOT_FOUND",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::RequestRejected => "REQUEST_REJECTED",
            ErrorCode::ReadOnly => "READ_ONLY",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
        }
    }

    /// The code for a code string, if it is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// What a vendor can tell its user, in one sentence.
    pub const fn advice(self) -> &'static str {
        match self {
            ErrorCode::AuthScopeDenied => {
                "Not every required permission was granted. Connect again and accept all requested permissions."
            }
            ErrorCode::PortalLimitReached => {
                "Your plan's limit of connected HubSpot accounts is reached. Disconnect one or upgrade your plan."
            }
            ErrorCode::TokenExpired => "The connection attempt timed out. Please start connecting again.",
            ErrorCode::PortalAlreadyConnected => {
                "This HubSpot account is already connected to another organization. Disconnect it there first."
            }
            ErrorCode::AccessDenied => "The connection was not approved in HubSpot. Connect again to retry.",
            ErrorCode::InvalidState => "This connection link is no longer valid. Start connecting again from the app.",
            ErrorCode::ReconnectRequired => {
                "HubSpot no longer accepts this connection (the app was uninstalled, or the user who installed it \
                 was removed or lost access). A HubSpot Super Admin must reconnect."
            }
            ErrorCode::PortalMismatch => {
                "A different HubSpot account was chosen while reconnecting. Reconnect and pick the original account."
            }
            ErrorCode::WrongAccountType => {
                "A developer or test account was chosen. Connect again and choose your main HubSpot account."
            }
            ErrorCode::MissingScopes => {
                "The connection lacks a permission this action needs. Reconnect and accept all requested permissions."
            }
            ErrorCode::RateLimited => "HubSpot's rate limit was reached. The request can be retried shortly.",
            ErrorCode::HubspotUnavailable => "HubSpot could not be reached or answered with an error. Try again later.",
            ErrorCode::InvalidClient => {
                "HubSpot rejected the app's credentials or redirect URL. The app's configuration must be fixed."
            }
            ErrorCode::ConnectionNotFound => "This HubSpot connection does not exist (any more).",
            ErrorCode::StoreUnavailable => "Connection storage is unavailable. Nothing was changed; try again.",
            ErrorCode::RequestRejected => "HubSpot refused the request. The details say what to fix.",
            ErrorCode::ReadOnly => "This connection is read-only and cannot change anything in HubSpot.",
            ErrorCode::InvalidConfig => "The integration is misconfigured. Contact support.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ErrorCode::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown error code {s:?}")))
    }
}

/// The error of every operation in this crate: a stable [`ErrorCode`], a one-line message, and what HubSpot said.
///
/// An error never holds a token, a code, a client secret, a raw token-endpoint body or a URL with secrets in it.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    code: ErrorCode,
    message: String,
    hubspot: Option<HubSpotError>,
    retry_after: Option<Duration>,
    missing_scopes: Vec<Scope>,
    status: Option<StatusCode>,
    timeout: bool,
    /// The failure repeats however often the call is tried: HubSpot's answer or the stored record itself cannot be
    /// used. [`ErrorCode::HubspotUnavailable`] and [`ErrorCode::StoreUnavailable`] each cover both a passing outage
    /// and such a failure (splitting them would change codes users match on), so this one fact is kept per error;
    /// whether to retry still follows from the code (see [`Error::is_retryable`]).
    permanent: bool,
    /// The request never left (a connection that could not be made): it cannot have taken effect.
    unsent: bool,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a one-line message. The message must not contain secrets. Whether it is worth
    /// retrying follows from the code ([`Error::is_retryable`]).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Inner {
                code,
                message: message.into(),
                hubspot: None,
                retry_after: None,
                missing_scopes: Vec::new(),
                status: None,
                timeout: false,
                permanent: false,
                unsent: false,
                source: None,
            }),
        }
    }

    /// Attaches the underlying cause (returned by `source()`). It must not hold secrets.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// Attaches HubSpot's error body.
    pub(crate) fn with_hubspot(mut self, body: HubSpotError) -> Self {
        if self.inner.status.is_none() {
            self.inner.status = body.http_status;
        }
        self.inner.hubspot = Some(body);
        self
    }

    /// Sets how long HubSpot asked to wait before retrying.
    pub(crate) fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.inner.retry_after = Some(retry_after);
        self
    }

    /// Sets the scopes that were missing.
    pub(crate) fn with_missing_scopes(mut self, scopes: Vec<Scope>) -> Self {
        self.inner.missing_scopes = scopes;
        self
    }

    /// Sets the HTTP status HubSpot answered with (a number outside 100 to 999 is none HTTP knows, and is dropped).
    pub(crate) fn with_status(mut self, status: u16) -> Self {
        self.inner.status = StatusCode::from_u16(status).ok();
        self
    }

    /// Marks the error as a timeout.
    pub(crate) fn with_timeout(mut self) -> Self {
        self.inner.timeout = true;
        self
    }

    /// Marks a failure that trying again repeats: an answer from HubSpot or a stored record that cannot be used.
    pub(crate) fn permanent(mut self) -> Self {
        self.inner.permanent = true;
        self
    }

    /// Marks a request that never left, so it cannot have taken effect at HubSpot.
    pub(crate) fn with_unsent(mut self) -> Self {
        self.inner.unsent = true;
        self
    }

    /// Whether the request may have reached HubSpot and taken effect there: HubSpot did not answer, and the
    /// request was not known to be unsent (a timeout, a connection lost mid-request).
    pub(crate) fn may_have_taken_effect(&self) -> bool {
        self.inner.status.is_none() && !self.inner.unsent
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.inner.code
    }

    /// The one-line message (the same as `Display`).
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// HubSpot's error body, when HubSpot sent one.
    pub fn hubspot(&self) -> Option<&HubSpotError> {
        self.inner.hubspot.as_ref()
    }

    /// HubSpot's correlation id, for a support ticket.
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner.hubspot.as_ref()?.correlation_id.as_deref()
    }

    /// How long HubSpot asked to wait (`Retry-After`), for [`ErrorCode::RateLimited`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The scopes that were missing, for [`ErrorCode::AuthScopeDenied`] and [`ErrorCode::MissingScopes`].
    pub fn missing_scopes(&self) -> &[Scope] {
        &self.inner.missing_scopes
    }

    /// The HTTP status HubSpot answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        self.inner.timeout
    }

    /// Whether the same call may succeed if tried again later. It follows from the code:
    /// [`ErrorCode::RateLimited`], [`ErrorCode::HubspotUnavailable`] (HubSpot down, a timeout, a 5xx) and
    /// [`ErrorCode::StoreUnavailable`] are worth another try, unless HubSpot's answer or the stored record itself
    /// cannot be used (a body that is not what HubSpot sends, a record that cannot be decrypted): trying again gets
    /// the same. Every other code needs something done first.
    pub fn is_retryable(&self) -> bool {
        self.inner.code.is_transient() && !self.inner.permanent
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("code", &self.inner.code).field("message", &self.inner.message);
        if let Some(h) = &self.inner.hubspot {
            d.field("hubspot", h);
        }
        if let Some(s) = self.inner.status {
            d.field("status", &s.as_u16());
        }
        if let Some(r) = self.inner.retry_after {
            d.field("retry_after", &r);
        }
        if !self.inner.missing_scopes.is_empty() {
            d.field("missing_scopes", &self.inner.missing_scopes);
        }
        if let Some(s) = &self.inner.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner.source.as_deref().map(|s| s as &(dyn StdError + 'static))
    }
}

/// HubSpot's error body, kept typed. Every field is optional: HubSpot's token endpoint speaks RFC 6749
/// (`error`, `error_description`), a legacy shape (`status`, `message`, `correlationId`), or both; its API
/// speaks the generic shape (`category`, `subCategory`, `errors`, `context`).
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubSpotError {
    /// The HTTP status of the answer (serialized as its number).
    #[serde(default, with = "status_number")]
    pub http_status: Option<StatusCode>,
    /// RFC 6749 `error`, such as `invalid_grant`.
    pub error: Option<String>,
    /// RFC 6749 `error_description`.
    pub error_description: Option<String>,
    /// HubSpot's legacy `status` text, such as `BAD_REFRESH_TOKEN` (or `"error"` on API errors); not the HTTP
    /// status, which is [`HubSpotError::http_status`].
    #[serde(rename = "status")]
    pub legacy_status: Option<String>,
    /// HubSpot's `message`.
    pub message: Option<String>,
    /// HubSpot's `correlationId`: quote it in a support ticket.
    pub correlation_id: Option<String>,
    /// HubSpot's `category`, such as `EXPIRED_AUTHENTICATION` or `MISSING_SCOPES`.
    pub category: Option<String>,
    /// HubSpot's `subCategory`.
    pub sub_category: Option<String>,
    /// Rate-limit `policyName`, such as `TEN_SECONDLY_ROLLING`.
    pub policy_name: Option<String>,
    /// Rate-limit `errorType`, such as `RATE_LIMIT`.
    pub error_type: Option<String>,
    /// HubSpot's `errors[]` details.
    pub errors: Vec<HubSpotErrorDetail>,
}

/// One entry of HubSpot's `errors[]`.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubSpotErrorDetail {
    /// The detail's message.
    pub message: Option<String>,
    /// The detail's code.
    pub code: Option<String>,
    /// The field or parameter concerned.
    pub r#in: Option<String>,
    /// The detail's sub-category.
    pub sub_category: Option<String>,
    /// Scopes named in the detail's context (`requiredGranularScopes`, `missingScopes`, `requiredScopes`).
    pub scopes: Vec<String>,
}

/// `Option<StatusCode>` as its number (HubSpotError's serialized form keeps `http_status: 401`).
mod status_number {
    use http::StatusCode;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(status: &Option<StatusCode>, serializer: S) -> Result<S::Ok, S::Error> {
        status.map(|s| s.as_u16()).serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<StatusCode>, D::Error> {
        Option::<u16>::deserialize(deserializer)?
            .map(|n| StatusCode::from_u16(n).map_err(serde::de::Error::custom))
            .transpose()
    }
}

const MAX_FIELD: usize = 512;

fn string_field(obj: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_owned();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn scopes_from_context(ctx: Option<&Value>, out: &mut Vec<String>) {
    let Some(Value::Object(ctx)) = ctx else { return };
    for key in ["requiredGranularScopes", "missingScopes", "requiredScopes", "requiredScope"] {
        match ctx.get(key) {
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(|v| v.as_str()).flat_map(|s| s.split(", ")).map(truncate))
            }
            Some(Value::String(s)) => out.push(truncate(s)),
            _ => {}
        }
    }
}

impl HubSpotError {
    /// Reads an error body. `None` when the body is not a JSON object. Long text fields are cut to 512 bytes.
    pub fn from_json(http_status: Option<StatusCode>, body: &[u8]) -> Option<Self> {
        let mut e = Self::from_json_whole(http_status, body)?;
        e.truncate_fields();
        Some(e)
    }

    /// Reads an error body, removes every secret (and every piece of one) from it, and only then cuts long fields,
    /// so no part of a secret echoed near a cut survives.
    pub(crate) fn from_json_scrubbed(http_status: Option<StatusCode>, body: &[u8], secrets: &[&str]) -> Option<Self> {
        let mut e = Self::from_json_whole(http_status, body)?;
        e.scrub(secrets);
        e.truncate_fields();
        Some(e)
    }

    fn truncate_fields(&mut self) {
        self.each_text_mut(|text| *text = truncate(text));
    }

    fn from_json_whole(http_status: Option<StatusCode>, body: &[u8]) -> Option<Self> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let Value::Object(obj) = &value else { return None };
        let errors = match obj.get("errors") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_object)
                .take(32)
                .map(|e| {
                    let mut scopes = Vec::new();
                    scopes_from_context(e.get("context"), &mut scopes);
                    HubSpotErrorDetail {
                        message: string_field(e, "message"),
                        code: string_field(e, "code"),
                        r#in: string_field(e, "in"),
                        sub_category: string_field(e, "subCategory"),
                        scopes,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(HubSpotError {
            http_status,
            error: string_field(obj, "error"),
            error_description: string_field(obj, "error_description"),
            legacy_status: string_field(obj, "status"),
            message: string_field(obj, "message"),
            correlation_id: string_field(obj, "correlationId"),
            category: string_field(obj, "category"),
            sub_category: string_field(obj, "subCategory"),
            policy_name: string_field(obj, "policyName"),
            error_type: string_field(obj, "errorType"),
            errors,
        })
    }

    /// Whether the body says anything an error body says (and so is not, say, a token response).
    pub fn is_error_body(&self) -> bool {
        self.error.is_some() || self.category.is_some() || matches!(&self.legacy_status, Some(s) if !s.is_empty())
    }

    /// Every scope HubSpot names as missing, from `errors[].context` and the top-level context.
    pub fn missing_scopes(&self) -> Vec<Scope> {
        let mut scopes: Vec<Scope> =
            self.errors.iter().flat_map(|e| e.scopes.iter().cloned()).map(Scope::new).collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The most specific human-readable text HubSpot sent.
    pub fn text(&self) -> Option<&str> {
        self.message
            .as_deref()
            .or(self.error_description.as_deref())
            .or_else(|| self.errors.first().and_then(|e| e.message.as_deref()))
    }

    /// Replaces every occurrence of each secret in the text fields with `[redacted]`.
    pub(crate) fn scrub(&mut self, secrets: &[&str]) {
        self.each_text_mut(|text| *text = scrub(text, secrets));
    }

    /// Applies `f` to every text the body holds, the scopes HubSpot names in `errors[].context` included.
    fn each_text_mut(&mut self, mut f: impl FnMut(&mut String)) {
        let fields = [
            &mut self.error,
            &mut self.error_description,
            &mut self.legacy_status,
            &mut self.message,
            &mut self.correlation_id,
            &mut self.category,
            &mut self.sub_category,
            &mut self.policy_name,
            &mut self.error_type,
        ];
        for text in fields.into_iter().flatten() {
            f(text);
        }
        for e in &mut self.errors {
            for text in [&mut e.message, &mut e.code, &mut e.r#in, &mut e.sub_category].into_iter().flatten() {
                f(text);
            }
            for scope in &mut e.scopes {
                f(scope);
            }
        }
    }

    /// Every text the body holds (for checks that no secret survived).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn texts(&self) -> Vec<&str> {
        let top = [
            &self.error,
            &self.error_description,
            &self.legacy_status,
            &self.message,
            &self.correlation_id,
            &self.category,
            &self.sub_category,
            &self.policy_name,
            &self.error_type,
        ];
        let mut out: Vec<&str> = top.into_iter().flatten().map(String::as_str).collect();
        for e in &self.errors {
            out.extend([&e.message, &e.code, &e.r#in, &e.sub_category].into_iter().flatten().map(String::as_str));
            out.extend(e.scopes.iter().map(String::as_str));
        }
        out
    }
}

/// The shortest piece of a secret that [`scrub`] removes wherever it appears.
pub(crate) const SCRUB_WINDOW: usize = 8;

/// Removes secrets from `text`: every occurrence of a secret of 4 to 7 bytes, and every run of text that holds any
/// [`SCRUB_WINDOW`]-byte piece of a longer secret (so a secret cut short by truncation, or echoed in part, does not
/// survive either). Each removed run becomes `[redacted]`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let bytes = text.as_bytes();
    let mut marked = vec![false; bytes.len()];
    let mut windows: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for secret in secrets.iter().map(|s| s.as_bytes()) {
        if secret.len() >= SCRUB_WINDOW {
            windows.extend(secret.windows(SCRUB_WINDOW));
        } else if secret.len() >= 4 {
            for start in 0..bytes.len().saturating_sub(secret.len() - 1) {
                if &bytes[start..start + secret.len()] == secret {
                    marked[start..start + secret.len()].iter_mut().for_each(|m| *m = true);
                }
            }
        }
    }
    if !windows.is_empty() {
        for (start, window) in bytes.windows(SCRUB_WINDOW).enumerate() {
            if windows.contains(window) {
                marked[start..start + SCRUB_WINDOW].iter_mut().for_each(|m| *m = true);
            }
        }
    }
    if !marked.contains(&true) {
        return text.to_owned();
    }
    // The marker itself must not hold a piece of a secret (a secret could contain "redacted").
    let marker =
        if "[redacted]".as_bytes().windows(SCRUB_WINDOW).any(|w| windows.contains(w)) { "[***]" } else { "[redacted]" };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        if !marked[i..i + len].contains(&true) {
            out.push_str(&text[i..i + len]);
            i += len;
            continue;
        }
        // A marked run, widened to whole characters.
        let mut end = i + len;
        while end < bytes.len() && marked[end] {
            end += 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(marker);
        i = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(!code.advice().is_empty());
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
        }
        assert_eq!(ErrorCode::ReconnectRequired.to_string(), "RECONNECT_REQUIRED");
        assert_eq!(ErrorCode::parse("NOPE"), None);
    }

    #[test]
    fn reads_every_shape() {
        let both = br#"{"error":"invalid_grant","error_description":"d","status":"BAD_REFRESH_TOKEN","message":"m","correlationId":"c-1"}"#;
        let e = HubSpotError::from_json(Some(StatusCode::BAD_REQUEST), both).unwrap();
        assert_eq!(e.error.as_deref(), Some("invalid_grant"));
        assert_eq!(e.legacy_status.as_deref(), Some("BAD_REFRESH_TOKEN"));
        assert_eq!(e.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(e.text(), Some("m"));
        assert!(e.is_error_body());

        let scopes = br#"{"status":"error","message":"no","category":"MISSING_SCOPES","errors":[{"message":"x","context":{"requiredGranularScopes":["crm.objects.deals.read","crm.objects.deals.write"]}}]}"#;
        let e = HubSpotError::from_json(Some(StatusCode::FORBIDDEN), scopes).unwrap();
        assert_eq!(e.missing_scopes().len(), 2);

        assert!(HubSpotError::from_json(None, b"<html>").is_none());
        assert!(HubSpotError::from_json(None, b"[1,2]").is_none());
        assert!(!HubSpotError::from_json(None, b"{}").unwrap().is_error_body());
        let odd = HubSpotError::from_json(None, br#"{"status":500,"message":["x"]}"#).unwrap();
        assert_eq!(odd.legacy_status.as_deref(), Some("500"));
        assert_eq!(odd.message, None);
    }

    #[test]
    fn long_fields_are_truncated() {
        let body = format!(r#"{{"message":"{}"}}"#, "é".repeat(5000));
        let e = HubSpotError::from_json(None, body.as_bytes()).unwrap();
        assert!(e.message.unwrap().len() < 600);
    }

    #[test]
    fn scrub_removes_secrets() {
        let mut e = HubSpotError::from_json(
            None,
            br#"{"message":"token CANARY-1234 is bad","errors":[{"message":"CANARY-1234"}]}"#,
        )
        .unwrap();
        e.scrub(&["CANARY-1234"]);
        assert_eq!(e.message.as_deref(), Some("token [redacted] is bad"));
        assert_eq!(e.errors[0].message.as_deref(), Some("[redacted]"));
    }

    #[test]
    fn a_secret_near_the_cut_is_scrubbed_before_truncation() {
        // Finding 4: a 45-character secret echoed so that the 512-byte cut falls inside it.
        let secret = "CANARY-0123456789-abcdefghijklmnopqrstuvwxyz";
        for at in [480, 490, 500, 505, 510] {
            let body = format!(r#"{{"message":"{}{secret} tail"}}"#, "x".repeat(at));
            let e =
                HubSpotError::from_json_scrubbed(Some(StatusCode::BAD_REQUEST), body.as_bytes(), &[secret]).unwrap();
            let text = e.message.unwrap();
            for piece in secret.as_bytes().windows(SCRUB_WINDOW) {
                assert!(!text.contains(std::str::from_utf8(piece).unwrap()), "{at}: {text}");
            }
        }
        // And a part of a secret, echoed alone, goes too.
        assert_eq!(scrub("seen: CANARY-0123456789 only", &[secret]), "seen: [redacted] only");
    }

    #[test]
    fn scrub_keeps_text_without_secrets_and_whole_characters() {
        assert_eq!(scrub("nothing here", &["SECRET-TOKEN-1"]), "nothing here");
        assert_eq!(scrub("é SECRET-TOKEN-1é", &["SECRET-TOKEN-1"]), "é [redacted]é");
        assert_eq!(scrub("abcd", &["abcd"]), "[redacted]");
        assert_eq!(scrub("abc", &["abc"]), "abc", "secrets under 4 bytes are not scrubbed");
        assert_eq!(scrub("the redacted word", &["xx-redacted-yy"]), "the [***] word");
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        const SECRET: &str = "[A-Za-z0-9._~+/=-]{8,80}";

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// No 8-byte piece of a secret survives the scrubber, whatever surrounds it.
            #[test]
            fn no_piece_of_a_secret_survives(
                secret in SECRET,
                before in ".{0,40}",
                after in ".{0,40}",
                cut in 0usize..80,
                keep in 8usize..80,
            ) {
                let start = cut.min(secret.len() - 8);
                let end = (start + keep).min(secret.len());
                let text = format!("{before}{}{after}{secret}", &secret[start..end]);
                let out = scrub(&text, &[&secret]);
                for piece in secret.as_bytes().windows(SCRUB_WINDOW) {
                    prop_assert!(!out.as_bytes().windows(SCRUB_WINDOW).any(|w| w == piece), "{out:?}");
                }
            }

            /// The same through HubSpot's error body, with the 512-byte cut anywhere.
            #[test]
            fn no_piece_of_a_secret_survives_an_error_body(secret in SECRET, pad in 400usize..520) {
                let body = serde_json::json!({
                    "message": format!("{}{secret}", "p".repeat(pad)),
                    "errors": [{"message": secret.clone(), "context": {"missingScopes": [secret.clone()]}}],
                });
                let bytes = serde_json::to_vec(&body).unwrap();
                let e = HubSpotError::from_json_scrubbed(Some(StatusCode::BAD_REQUEST), &bytes, &[&secret]).unwrap();
                for text in e.texts() {
                    for piece in secret.as_bytes().windows(SCRUB_WINDOW) {
                        prop_assert!(!text.as_bytes().windows(SCRUB_WINDOW).any(|w| w == piece), "{text:?}");
                    }
                }
            }

            /// Any bytes: an error body or `None`, never a panic, fields within bounds.
            #[test]
            fn any_bytes_read_without_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Some(e) = HubSpotError::from_json(Some(StatusCode::BAD_REQUEST), &body) {
                    prop_assert!(e.text().is_none_or(|t| t.len() <= MAX_FIELD + 3));
                }
            }

            /// Any JSON object of HubSpot's shapes reads back its fields.
            #[test]
            fn error_shapes_read_back(
                error in proptest::option::of("[a-z_]{1,20}"),
                status in proptest::option::of("[A-Z_]{1,20}"),
                message in proptest::option::of(".{0,100}"),
                correlation in proptest::option::of("[a-f0-9-]{1,36}"),
            ) {
                let mut obj = serde_json::Map::new();
                for (k, v) in [("error", &error), ("status", &status), ("message", &message), ("correlationId", &correlation)] {
                    if let Some(v) = v {
                        obj.insert(k.to_owned(), Value::String(v.clone()));
                    }
                }
                let bytes = serde_json::to_vec(&Value::Object(obj)).unwrap();
                let e = HubSpotError::from_json(Some(StatusCode::BAD_REQUEST), &bytes).unwrap();
                prop_assert_eq!(e.error, error);
                prop_assert_eq!(e.legacy_status, status);
                prop_assert_eq!(e.message, message);
                prop_assert_eq!(e.correlation_id, correlation);
            }
        }
    }

    #[test]
    fn retryable_follows_from_the_code() {
        for code in ErrorCode::ALL {
            let e = Error::new(*code, "x");
            let passing =
                matches!(code, ErrorCode::RateLimited | ErrorCode::HubspotUnavailable | ErrorCode::StoreUnavailable);
            assert_eq!(e.is_retryable(), passing, "{code}");
            assert!(!e.permanent().is_retryable(), "{code}: an answer that cannot be used stays so");
        }
        let timeout = Error::new(ErrorCode::HubspotUnavailable, "x").with_timeout();
        assert!(timeout.is_timeout() && timeout.is_retryable());
    }

    #[test]
    fn the_http_status_is_typed_and_apart_from_hubspots_status_text() {
        let body =
            HubSpotError::from_json(Some(StatusCode::BAD_REQUEST), br#"{"status":"BAD_REFRESH_TOKEN","message":"m"}"#)
                .unwrap();
        assert_eq!(body.http_status, Some(StatusCode::BAD_REQUEST));
        assert_eq!(body.legacy_status.as_deref(), Some("BAD_REFRESH_TOKEN"));
        let e = Error::new(ErrorCode::ReconnectRequired, "x").with_hubspot(body.clone());
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST), "taken from the body when not set");
        assert_eq!(
            Error::new(ErrorCode::HubspotUnavailable, "x").with_status(502).status(),
            Some(StatusCode::BAD_GATEWAY)
        );
        assert_eq!(Error::new(ErrorCode::HubspotUnavailable, "x").with_status(42).status(), None);
        assert!(format!("{:?}", e).contains("status: 400"), "{e:?}");

        // The serialized form keeps its names and numbers.
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!((json["http_status"].as_u64(), json["status"].as_str()), (Some(400), Some("BAD_REFRESH_TOKEN")));
        assert_eq!(serde_json::from_value::<HubSpotError>(json).unwrap(), body);
        let bad = serde_json::json!({"http_status": 5, "errors": []});
        assert!(serde_json::from_value::<HubSpotError>(bad).is_err());
    }

    #[test]
    fn display_is_the_message_and_source_chains() {
        let io = std::io::Error::other("socket closed");
        let e = Error::new(ErrorCode::HubspotUnavailable, "HubSpot did not answer").with_source(io);
        assert_eq!(e.to_string(), "HubSpot did not answer");
        assert_eq!(e.source().unwrap().to_string(), "socket closed");
        assert!(e.is_retryable());
        assert!(!Error::new(ErrorCode::ReconnectRequired, "x").is_retryable());
    }
}
