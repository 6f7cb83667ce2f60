//! The one record mapping of the built-in backends: a connection and a pending authorization as flat records of
//! text and numbers (Unix milliseconds, `u64` as `i64`, JSON for scopes and the last error), the same fields for the
//! SQL tables' columns and for Redis's JSON records. Adding a field is one line in [`record!`]'s invocation (plus its
//! conversion below, and a migration for the SQL tables).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::store_error;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, CredentialKind, LastError, PendingAuthorization};
use crate::connector::AccountType;
use crate::error::{Error, ErrorCode, Result};
use crate::scope::Scope;
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};

/// One stored value as a SQL column holds it: text or a 64-bit integer, either possibly `NULL`.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

/// What a record's field is in a SQL column: whether the column is an integer, and the conversions both ways.
/// The problem a failed read reports never quotes the value.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) trait Field: Sized {
    /// Stored as an integer (else as text).
    const INT: bool;
    fn to_cell(&self) -> Result<Cell>;
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str>;
}

const NULL: &str = "wrong type or NULL";

fn text(cell: Cell) -> std::result::Result<Option<String>, &'static str> {
    match cell {
        Cell::Text(t) => Ok(t),
        Cell::Int(_) => Err(NULL),
    }
}

fn int(cell: Cell) -> std::result::Result<Option<i64>, &'static str> {
    match cell {
        Cell::Int(i) => Ok(i),
        Cell::Text(_) => Err(NULL),
    }
}

/// A field whose SQL column is `NOT NULL`, from its `Option` form.
fn required<T>(value: std::result::Result<Option<T>, &'static str>) -> std::result::Result<T, &'static str> {
    value?.ok_or(NULL)
}

impl Field for Option<String> {
    const INT: bool = false;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Text(self.clone()))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        text(cell)
    }
}

impl Field for String {
    const INT: bool = false;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Text(Some(self.clone())))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        required(text(cell))
    }
}

impl Field for Option<i64> {
    const INT: bool = true;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Int(*self))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        int(cell)
    }
}

impl Field for i64 {
    const INT: bool = true;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Int(Some(*self)))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        required(int(cell))
    }
}

/// Ids above `i64::MAX` as their two's-complement integer.
impl Field for Option<u64> {
    const INT: bool = true;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Int(self.map(to_i64)))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        Ok(int(cell)?.map(from_i64))
    }
}

impl Field for u64 {
    const INT: bool = true;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Int(Some(to_i64(*self))))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        required(int(cell)).map(from_i64)
    }
}

impl Field for u32 {
    const INT: bool = true;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Int(Some(i64::from(*self))))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        u32::try_from(required(int(cell))?).map_err(|_| "out of range")
    }
}

/// Scopes as JSON text.
impl Field for Vec<Scope> {
    const INT: bool = false;
    fn to_cell(&self) -> Result<Cell> {
        Ok(Cell::Text(Some(encode_json("encoding scopes", self)?)))
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        serde_json::from_str(&required(text(cell))?).map_err(|_| "invalid JSON")
    }
}

/// The last error as JSON text.
impl Field for Option<StoredLastError> {
    const INT: bool = false;
    fn to_cell(&self) -> Result<Cell> {
        self.as_ref().map(|e| encode_json("encoding a connection's last error", e)).transpose().map(Cell::Text)
    }
    fn from_cell(cell: Cell) -> std::result::Result<Self, &'static str> {
        text(cell)?.map(|t| serde_json::from_str(&t).map_err(|_| "invalid JSON")).transpose()
    }
}

/// A record: the struct (serialized as JSON by Redis) and, for SQL, its column names, its values in that order, and
/// the reading of a row column by column.
macro_rules! record {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize)]
        pub(super) struct $name {
            $(pub(super) $field: $ty,)*
        }

        #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
        impl $name {
            /// The SQL columns, named as the fields.
            pub(super) const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Every field's value, in the order of [`Self::COLUMNS`].
            pub(super) fn cells(&self) -> Result<Vec<Cell>> {
                Ok(vec![$(Field::to_cell(&self.$field)?),*])
            }

            /// Reads every field with `cell(column, is_int)`; `bad(column, problem)` is the error for a value that
            /// does not convert.
            pub(super) fn read(
                mut cell: impl FnMut(&'static str, bool) -> Result<Cell>,
                bad: impl Fn(&'static str, &'static str) -> Error,
            ) -> Result<Self> {
                Ok(Self {
                    $($field: <$ty as Field>::from_cell(cell(stringify!($field), <$ty as Field>::INT)?)
                        .map_err(|problem| bad(stringify!($field), problem))?,)*
                })
            }
        }
    };
}

record! {
    /// A connection's record: everything but its version (a column of its own in SQL, a hash field of its own in
    /// Redis, for the compare-and-swap).
    struct ConnectionRecord {
        id: String,
        tenant: String,
        portal_id: u64,
        kind: String,
        status: String,
        access_token: String,
        refresh_token: Option<String>,
        expires_at_ms: Option<i64>,
        scopes: Vec<Scope>,
        installed_by: Option<String>,
        installed_by_user_id: Option<u64>,
        hub_domain: Option<String>,
        account_type: Option<String>,
        last_error: Option<StoredLastError>,
        retry_at_ms: Option<i64>,
        failures: u32,
        created_at_ms: i64,
        updated_at_ms: i64,
        refreshed_at_ms: i64,
    }
}

record! {
    /// A pending authorization's record.
    struct PendingRecord {
        state_hash: String,
        tenant: String,
        pkce_verifier: String,
        required_scopes: Vec<Scope>,
        optional_scopes: Vec<Scope>,
        portal_id: Option<u64>,
        return_to: Option<String>,
        reconnect: Option<String>,
        created_at_ms: i64,
        expires_at_ms: i64,
    }
}

/// A field of a record that does not convert back: its name and the problem, never its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bad {
    pub(super) field: &'static str,
    pub(super) problem: &'static str,
}

fn time(ms: i64, field: &'static str) -> std::result::Result<SystemTime, Bad> {
    from_ms(ms).ok_or(Bad { field, problem: "time out of range" })
}

fn optional_time(ms: Option<i64>, field: &'static str) -> std::result::Result<Option<SystemTime>, Bad> {
    ms.map(|ms| time(ms, field)).transpose()
}

impl ConnectionRecord {
    pub(super) fn new(c: &Connection) -> Self {
        Self {
            id: c.id.as_str().to_owned(),
            tenant: c.tenant.clone(),
            portal_id: c.portal_id,
            kind: c.kind.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            access_token: c.access_token.secret().to_owned(),
            refresh_token: c.refresh_token.as_ref().map(|t| t.secret().to_owned()),
            expires_at_ms: c.expires_at.map(to_ms),
            scopes: c.scopes.clone(),
            installed_by: c.installed_by.clone(),
            installed_by_user_id: c.installed_by_user_id,
            hub_domain: c.hub_domain.clone(),
            account_type: c.account_type.as_ref().map(|a| a.as_str().to_owned()),
            last_error: c.last_error.as_ref().map(StoredLastError::new),
            retry_at_ms: c.retry_at.map(to_ms),
            failures: c.failures,
            created_at_ms: to_ms(c.created_at),
            updated_at_ms: to_ms(c.updated_at),
            refreshed_at_ms: to_ms(c.refreshed_at),
        }
    }

    /// The connection, with `version`; a field that does not convert is named.
    pub(super) fn into_connection(self, version: u64) -> std::result::Result<Connection, Bad> {
        Ok(Connection {
            kind: parse_kind(&self.kind).ok_or(Bad { field: "kind", problem: "unknown credential kind" })?,
            status: ConnectionStatus::parse(&self.status).ok_or(Bad { field: "status", problem: "unknown status" })?,
            expires_at: optional_time(self.expires_at_ms, "expires_at_ms")?,
            last_error: match self.last_error {
                Some(e) => Some(e.into_last_error().ok_or(Bad { field: "last_error", problem: "time out of range" })?),
                None => None,
            },
            retry_at: optional_time(self.retry_at_ms, "retry_at_ms")?,
            created_at: time(self.created_at_ms, "created_at_ms")?,
            updated_at: time(self.updated_at_ms, "updated_at_ms")?,
            refreshed_at: time(self.refreshed_at_ms, "refreshed_at_ms")?,
            id: ConnectionId::new(self.id),
            tenant: self.tenant,
            portal_id: self.portal_id,
            access_token: AccessToken::new(self.access_token),
            refresh_token: self.refresh_token.map(RefreshToken::new),
            scopes: self.scopes,
            installed_by: self.installed_by,
            installed_by_user_id: self.installed_by_user_id,
            hub_domain: self.hub_domain,
            account_type: self.account_type.map(|a| AccountType::parse(&a)),
            failures: self.failures,
            version,
        })
    }
}

impl PendingRecord {
    pub(super) fn new(p: &PendingAuthorization) -> Self {
        Self {
            state_hash: p.state_hash.clone(),
            tenant: p.tenant.clone(),
            pkce_verifier: p.pkce_verifier.secret().to_owned(),
            required_scopes: p.required_scopes.clone(),
            optional_scopes: p.optional_scopes.clone(),
            portal_id: p.portal_id,
            return_to: p.return_to.clone(),
            reconnect: p.reconnect.as_ref().map(|r| r.as_str().to_owned()),
            created_at_ms: to_ms(p.created_at),
            expires_at_ms: to_ms(p.expires_at),
        }
    }

    /// The pending authorization; a field that does not convert is named.
    pub(super) fn into_pending(self) -> std::result::Result<PendingAuthorization, Bad> {
        Ok(PendingAuthorization {
            created_at: time(self.created_at_ms, "created_at_ms")?,
            expires_at: time(self.expires_at_ms, "expires_at_ms")?,
            state_hash: self.state_hash,
            tenant: self.tenant,
            pkce_verifier: PkceVerifier::new(self.pkce_verifier),
            required_scopes: self.required_scopes,
            optional_scopes: self.optional_scopes,
            portal_id: self.portal_id,
            return_to: self.return_to,
            reconnect: self.reconnect.map(ConnectionId::new),
        })
    }
}

/// Unix milliseconds, rounded down (negative before 1970), saturating far out.
pub(super) fn to_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let ms = before.as_millis() + u128::from(before.subsec_nanos() % 1_000_000 != 0);
            i64::try_from(ms).map(|ms| -ms).unwrap_or(i64::MIN)
        }
    }
}

/// The time `ms` Unix milliseconds stand for, `None` when out of `SystemTime`'s range.
pub(super) fn from_ms(ms: i64) -> Option<SystemTime> {
    let span = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 { UNIX_EPOCH.checked_add(span) } else { UNIX_EPOCH.checked_sub(span) }
}

/// A `u64` as a signed 64-bit SQL integer, bit for bit (so every value round-trips and equality holds).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn to_i64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// The inverse of [`to_i64`].
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(super) fn from_i64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// The credential kind named by [`CredentialKind::as_str`].
pub(super) fn parse_kind(name: &str) -> Option<CredentialKind> {
    [CredentialKind::OAuth, CredentialKind::PrivateApp].into_iter().find(|k| k.as_str() == name)
}

/// [`LastError`] as stored: its time in Unix milliseconds like every other time here.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredLastError {
    pub(super) code: ErrorCode,
    pub(super) message: String,
    pub(super) at_ms: i64,
}

impl StoredLastError {
    pub(super) fn new(e: &LastError) -> Self {
        Self { code: e.code, message: e.message.clone(), at_ms: to_ms(e.at) }
    }

    /// Back to a [`LastError`]; `None` when the time is out of range.
    pub(super) fn into_last_error(self) -> Option<LastError> {
        Some(LastError { code: self.code, message: self.message, at: from_ms(self.at_ms)? })
    }
}

/// JSON text of `value`; a failure is a store error about `what`.
pub(super) fn encode_json(what: &str, value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| store_error(what, e))
}

/// `[A-Za-z0-9_]{1,32}`: safe to splice into a quoted SQL identifier or a Redis key (and short enough for
/// PostgreSQL's 63-byte identifiers with every suffix).
pub(super) fn validate_prefix(backend: &str, prefix: &str) -> Result<()> {
    if (1..=32).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::InvalidConfig,
        format!("invalid {backend} prefix {prefix:?}: use 1 to 32 ASCII letters, digits or underscores"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        for ok in ["a", "hubconnect", "App_2", "_", &"x".repeat(32)] {
            assert!(validate_prefix("test", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a-b", "a b", "a\"b", "a:b", "a{b", "é", &"x".repeat(33)] {
            assert_eq!(validate_prefix("test", bad).map_err(|e| e.code()), Err(ErrorCode::InvalidConfig), "{bad}");
        }
        // The longest prefix with the longest suffix fits PostgreSQL's 63-byte identifiers.
        assert!(format!("{}_connections_tenant", "x".repeat(32)).len() <= 63);
    }

    #[test]
    fn millis_round_trip() {
        for ms in [0, 1, 1_767_225_600_123, -1, -1_000_001, 253_402_300_799_000] {
            assert_eq!(from_ms(ms).map(to_ms), Some(ms));
        }
        assert_eq!(to_ms(UNIX_EPOCH - Duration::from_nanos(1_500_000)), -2);
        assert_eq!(to_ms(UNIX_EPOCH + Duration::from_nanos(1_999_999)), 1);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Times, `u64`s and the stored last error survive their encoding.
            #[test]
            fn round_trips(
                ms in -62_135_596_800_000i64..253_402_300_799_999,
                v in any::<u64>(),
                code in prop::sample::select(ErrorCode::ALL),
                message in ".{0,60}",
            ) {
                prop_assert_eq!(from_ms(ms).map(to_ms), Some(ms));
                prop_assert_eq!(from_i64(to_i64(v)), v);
                let e = LastError { code, message, at: from_ms(ms).unwrap() };
                let text = encode_json("test", &StoredLastError::new(&e)).unwrap();
                let back: StoredLastError = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back.into_last_error(), Some(e));
            }

            /// Arbitrary text is a serde error or a last error whose time is in range or `None`; never a panic.
            #[test]
            fn arbitrary_last_errors(text in prop_oneof![".{0,80}", r#"\{"code":"[A-Z_]{1,20}","message":".{0,10}","at_ms":-?[0-9]{1,20}\}"#]) {
                if let Ok(stored) = serde_json::from_str::<StoredLastError>(&text) {
                    let _ = stored.into_last_error();
                }
            }
        }
    }

    #[test]
    fn u64_round_trips() {
        for v in [0, 1, u64::from(u32::MAX), i64::MAX as u64, u64::MAX] {
            assert_eq!(from_i64(to_i64(v)), v);
        }
    }
}
