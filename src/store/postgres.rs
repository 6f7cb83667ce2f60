//! The PostgreSQL store: connections, pending authorizations and refresh leases in PostgreSQL, shared by any number
//! of processes. What it promises is on [`PostgresStore`], which is public at `crate::store::PostgresStore` (this
//! module is private).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Executor, Row};

use super::codec::{StoredLastError, encode_json, from_i64, from_ms, parse_kind, to_i64, to_ms, validate_prefix};
use super::{ConnectionFilter, ConnectionStore, InsertRules, Inserted, LeaseStore, PendingStore, store_error};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, PendingAuthorization};
use crate::connector::AccountType;
use crate::error::{Error, ErrorCode, Result};
use crate::scope::Scope;
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// How long an insert waits for another instance's insert of the same portal or tenant before giving up (the
/// counterpart of the SQLite store's busy timeout).
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// How long a call waits for a pooled connection (or for the server to accept a new one) before failing with
/// [`ErrorCode::StoreUnavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections, pending authorizations and leases in PostgreSQL (feature `postgres`).
///
/// What it promises:
///
/// - **Durable writes: PostgreSQL's.** A call returns `Ok` once PostgreSQL committed the write. With PostgreSQL's
///   default `synchronous_commit = on` (and `fsync = on`), a committed write survives a crash of the server; with
///   `synchronous_commit = off` the last few hundred milliseconds of commits can be lost in a crash (a refresh lost
///   that way is redone; a connection lost that way must be reconnected). With synchronous replication, what
///   survives a failover is what your `synchronous_commit` level waits for.
/// - **Many instances, one database.** Any number of processes, on any number of machines, with a `PostgresStore`
///   each on the same database (and prefix) behave like workers sharing one store: compare-and-swap is one
///   `UPDATE … WHERE id = $1 AND version = $n`, taking a pending authorization is one `DELETE … RETURNING`, a lease
///   is one `INSERT … ON CONFLICT DO UPDATE … WHERE` (owner, or expired), and an insert runs in a transaction that
///   first takes transaction-level advisory locks on the portal and on the tenant (`pg_advisory_xact_lock`, always in
///   the same order, so two inserts never deadlock), then checks "one portal, one tenant" and the portal limit, then
///   writes. An insert that waits more than 5 seconds for those locks fails with [`ErrorCode::StoreUnavailable`]
///   (retryable).
///
///   There is no `UNIQUE` constraint on the portal: whether a portal may be shared by several tenants is a rule of
///   each call ([`InsertRules::allow_shared_portals`]), not of the table, so the rule is checked under the locks
///   instead. The same locks make the portal limit ([`InsertRules::max_portals`]) hold, which no constraint could.
/// - **Its own tables.** `{prefix}_connections`, `{prefix}_pending`, `{prefix}_leases` and a schema-version table
///   `{prefix}_schema`, with `hubconnect` as the default prefix (see [`PostgresStore::connect_with_prefix`]), so
///   several apps (or test runs) share one database. The tables go where unqualified names go: the first schema of
///   the connection's `search_path`, normally `public`; to use another schema, set it in the URL
///   (`?options=-c%20search_path%3Dhubspot`).
/// - **Migrations on connect, safe when instances start together.** Connecting creates or upgrades the tables in one
///   transaction that first takes an advisory lock derived from the prefix (`pg_advisory_xact_lock`): instances
///   starting at the same moment migrate one after the other, and the later ones find nothing to do. A schema newer
///   than this crate knows is refused with [`ErrorCode::StoreUnavailable`].
/// - **No panics on bad data.** A row that cannot be read back (an unknown status, broken JSON, a column of the
///   wrong type) is an [`ErrorCode::StoreUnavailable`] error naming the table and column, never the value.
///
/// Running PostgreSQL for it: the first connect (and the first after upgrading this crate to a new schema version)
/// needs a role that may create tables in the target schema (`CREATE` on it: the database owner, or, since
/// PostgreSQL 15, a role granted `CREATE ON SCHEMA public`). If your app's role must not run DDL, connect once with
/// an admin role (a deploy step), then give the app's role `SELECT, INSERT, UPDATE, DELETE` on the four tables: an
/// up-to-date schema is only read, never altered, and advisory locks need no privilege.
///
/// TLS: this crate builds sqlx without a TLS backend, so the default `sslmode=prefer` connects in clear text. To
/// connect over TLS, enable a TLS feature of sqlx in your own `Cargo.toml` (`sqlx = { version = "0.8", features =
/// ["tls-rustls"] }`; Cargo turns it on for this crate's sqlx too) and use `?sslmode=require` or `verify-full`.
///
/// Tokens are stored as plain text: restrict who can read the tables, or wrap the store in
/// [`EncryptedStore`](super::EncryptedStore).
///
/// Times are stored as `BIGINT` Unix milliseconds (sub-millisecond parts are dropped), scopes and the last error as
/// JSON text, ids above `i64::MAX` (portal and user ids, versions) as their two's-complement `BIGINT`.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> hubspot_connect::Result<()> {
/// use std::time::{Duration, UNIX_EPOCH};
/// use hubspot_connect::store::{ConnectionStore, InsertRules, Inserted, LeaseStore, PostgresStore};
/// use hubspot_connect::{AccessToken, Connection, RefreshToken};
///
/// let store = PostgresStore::connect("postgres://app@db.internal:5432/app").await?;
/// let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
/// let connection =
///     Connection::new("acme", 12345, AccessToken::new("at"), Some(RefreshToken::new("rt")), None, now);
/// assert_eq!(store.insert(&connection, InsertRules::default()).await?, Inserted::Created);
///
/// // Every later write is a compare-and-swap on the version.
/// let next = store.get(&connection.id).await?.expect("just inserted").next_version(now);
/// assert!(store.compare_and_swap(&next).await?);
/// assert!(!store.compare_and_swap(&next).await?); // stale now
///
/// // One lease owner at a time, across every instance.
/// assert!(store.try_lease("refresh:acme", "worker-1", Duration::from_secs(30), now).await?);
/// assert!(!store.try_lease("refresh:acme", "worker-2", Duration::from_secs(30), now).await?);
/// # Ok(())
/// # }
/// ```
///
/// Cloning is cheap and shares the connection pool. `Debug` shows the table prefix and the pool (its sizes, never
/// the URL or its password), never a token.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    prefix: String,
    sql: std::sync::Arc<Sql>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("prefix", &self.prefix).field("pool", &self.pool).finish()
    }
}

impl PostgresStore {
    /// The table prefix [`PostgresStore::connect`] uses.
    pub const DEFAULT_PREFIX: &'static str = "hubconnect";

    /// The schema version this crate writes (kept in the `{prefix}_schema` table).
    pub const SCHEMA_VERSION: i64 = 1;

    /// Connects to the database at `url` (`postgres://user:password@host:5432/database?sslmode=…`, any form sqlx's
    /// `PgConnectOptions` parses) with the default table prefix and brings the schema up to date.
    ///
    /// The pool is sqlx's default (up to 10 connections), except that a call waits at most 5 seconds for a
    /// connection; for other settings build a pool yourself and use
    /// [`PostgresStore::from_pool`]. The URL is never logged nor put in an error.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] for a malformed URL, [`ErrorCode::StoreUnavailable`] when the database cannot
    /// be reached or migrated.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_prefix(url, Self::DEFAULT_PREFIX).await
    }

    /// Like [`PostgresStore::connect`], with tables named `{prefix}_connections`, `{prefix}_pending`,
    /// `{prefix}_leases` and `{prefix}_schema`, so several apps can share one database.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] unless `prefix` is 1 to 32 ASCII letters, digits or underscores; otherwise as
    /// [`PostgresStore::connect`].
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        validate_prefix("PostgreSQL table", prefix)?;
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| store_error("connecting to PostgreSQL", e))?;
        Self::from_pool(pool, prefix).await
    }

    /// A store over a pool you configured yourself, with tables named by `prefix`; brings the schema up to date.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] for an invalid prefix (see [`PostgresStore::connect_with_prefix`]),
    /// [`ErrorCode::StoreUnavailable`] when the schema cannot be created or is newer than this crate knows.
    pub async fn from_pool(pool: PgPool, prefix: &str) -> Result<Self> {
        validate_prefix("PostgreSQL table", prefix)?;
        migrate(&pool, prefix).await?;
        Ok(Self { pool, prefix: prefix.to_owned(), sql: std::sync::Arc::new(Sql::new(prefix)) })
    }

    /// The connection pool, to share with the rest of an app or to inspect the tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Closes the pool (every clone's too) after the calls under way finish. Calls made after this fail with
    /// [`ErrorCode::StoreUnavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Parses a URL into connect options, naming the application `hubspot-connect` unless the URL (or `PGAPPNAME`)
/// names it. The error never holds the URL.
fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(Error::new(ErrorCode::InvalidConfig, "empty PostgreSQL URL for the token store"));
    }
    let options = PgConnectOptions::from_str(trimmed).map_err(|e| {
        Error::new(ErrorCode::InvalidConfig, "invalid PostgreSQL URL for the token store").with_source(e)
    })?;
    Ok(if options.get_application_name().is_none() { options.application_name("hubspot-connect") } else { options })
}

/// A key for `pg_advisory_xact_lock`: the first 8 bytes of a SHA-256, so every build of every instance derives the
/// same key (a process-local hasher would not).
fn lock_key(parts: &[&[u8]]) -> i64 {
    let mut hash = Sha256::new();
    hash.update(b"hubspot-connect");
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The schema, one list of statements per version. `{p}` is the table prefix. Append, never edit.
///
/// Integers are `BIGINT` throughout (sqlx reads an `i64` from `BIGINT` only); `id` compares byte-wise (`COLLATE
/// "C"`) so listing orders ids the same way on every database, whatever its default collation.
const MIGRATIONS: &[&[&str]] = &[&[
    r#"CREATE TABLE "{p}_connections" (
        id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL,
        portal_id BIGINT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        access_token TEXT NOT NULL,
        refresh_token TEXT,
        expires_at_ms BIGINT,
        scopes TEXT NOT NULL,
        installed_by TEXT,
        installed_by_user_id BIGINT,
        hub_domain TEXT,
        account_type TEXT,
        last_error TEXT,
        retry_at_ms BIGINT,
        failures BIGINT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        refreshed_at_ms BIGINT NOT NULL,
        version BIGINT NOT NULL
    )"#,
    r#"CREATE INDEX "{p}_connections_tenant" ON "{p}_connections" (tenant, portal_id)"#,
    r#"CREATE INDEX "{p}_connections_portal" ON "{p}_connections" (portal_id)"#,
    r#"CREATE TABLE "{p}_pending" (
        state_hash TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL,
        pkce_verifier TEXT NOT NULL,
        required_scopes TEXT NOT NULL,
        optional_scopes TEXT NOT NULL,
        portal_id BIGINT,
        return_to TEXT,
        reconnect TEXT,
        created_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    )"#,
    r#"CREATE INDEX "{p}_pending_expires" ON "{p}_pending" (expires_at_ms)"#,
    r#"CREATE TABLE "{p}_leases" (
        key TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        until_ms BIGINT NOT NULL
    )"#,
]];

/// Creates or upgrades the schema in one transaction that first takes an advisory lock derived from the prefix:
/// concurrent connectors (in any process) run it one after the other, and the later ones find nothing to do.
///
/// The schema table is looked up before it is created, so a role without `CREATE` can connect once an admin role has
/// migrated (PostgreSQL checks the privilege even for `CREATE TABLE IF NOT EXISTS` on an existing table).
async fn migrate(pool: &PgPool, prefix: &str) -> Result<()> {
    const LATEST: i64 = PostgresStore::SCHEMA_VERSION;
    const _: () = assert!(MIGRATIONS.len() as i64 == LATEST);
    let fail = |e| store_error("migrating the PostgreSQL schema", e);
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(&[prefix.as_bytes(), b"migrate"]))
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    let schema_table = format!(r#""{prefix}_schema""#);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(schema_table.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
    if !exists {
        let create =
            format!("CREATE TABLE {schema_table} (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)");
        tx.execute(create.as_str()).await.map_err(fail)?;
    }
    let current: Option<i64> = sqlx::query_scalar(&format!("SELECT version FROM {schema_table} WHERE id = 1"))
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
    let current = current.unwrap_or(0);
    if current > LATEST {
        return Err(Error::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the PostgreSQL token store's schema ({prefix}_schema) is version {current}, newer than this version \
                 of hubspot-connect knows ({LATEST}): upgrade the crate"
            ),
        ));
    }
    if current == LATEST {
        // Nothing to do: end the transaction without having written anything.
        return tx.commit().await.map_err(fail);
    }
    for (version, statements) in (1..).zip(MIGRATIONS) {
        if version <= current {
            continue;
        }
        for statement in *statements {
            tx.execute(statement.replace("{p}", prefix).as_str()).await.map_err(fail)?;
        }
    }
    sqlx::query(&format!(
        "INSERT INTO {schema_table} (id, version) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version"
    ))
    .bind(LATEST)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)
}

const CONNECTION_COLUMNS: &str = "id, tenant, portal_id, kind, status, access_token, refresh_token, expires_at_ms, \
    scopes, installed_by, installed_by_user_id, hub_domain, account_type, last_error, retry_at_ms, failures, \
    created_at_ms, updated_at_ms, refreshed_at_ms, version";

const PENDING_COLUMNS: &str = "state_hash, tenant, pkce_verifier, required_scopes, optional_scopes, portal_id, \
    return_to, reconnect, created_at_ms, expires_at_ms";

/// Every statement, built once for the prefix.
struct Sql {
    get: String,
    find_same: String,
    find_portal_owner: String,
    count_held: String,
    insert: String,
    compare_and_swap: String,
    delete: String,
    list: String,
    put_pending: String,
    cap_pending: String,
    take_pending: String,
    try_lease: String,
    release_lease: String,
}

impl Sql {
    fn new(p: &str) -> Self {
        let c = format!(r#""{p}_connections""#);
        let pending = format!(r#""{p}_pending""#);
        let leases = format!(r#""{p}_leases""#);
        Self {
            get: format!("SELECT {CONNECTION_COLUMNS} FROM {c} WHERE id = $1"),
            find_same: format!(
                "SELECT {CONNECTION_COLUMNS} FROM {c} WHERE tenant = $1 AND portal_id = $2 ORDER BY id LIMIT 1"
            ),
            find_portal_owner: format!("SELECT tenant FROM {c} WHERE portal_id = $1 ORDER BY id LIMIT 1"),
            count_held: format!("SELECT COUNT(*) FROM {c} WHERE tenant = $1"),
            insert: format!(
                "INSERT INTO {c} ({CONNECTION_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
            ),
            compare_and_swap: format!(
                "UPDATE {c} SET tenant = $2, portal_id = $3, kind = $4, status = $5, access_token = $6, \
                 refresh_token = $7, expires_at_ms = $8, scopes = $9, installed_by = $10, installed_by_user_id = $11, \
                 hub_domain = $12, account_type = $13, last_error = $14, retry_at_ms = $15, failures = $16, \
                 created_at_ms = $17, updated_at_ms = $18, refreshed_at_ms = $19, version = $20 \
                 WHERE id = $1 AND version = $21 RETURNING version"
            ),
            delete: format!("DELETE FROM {c} WHERE id = $1"),
            list: format!("SELECT {CONNECTION_COLUMNS} FROM {c}"),
            // Purges what expired before $11 (PENDING_GRACE before this one was created) in the same statement. SKIP LOCKED:
            // two puts purging at once never wait for (or deadlock on) each other, nor on a take under way.
            put_pending: format!(
                "WITH purged AS (
                    DELETE FROM {pending} WHERE state_hash IN (
                        SELECT state_hash FROM {pending} WHERE expires_at_ms <= $11 AND state_hash <> $1
                        FOR UPDATE SKIP LOCKED
                    )
                 )
                 INSERT INTO {pending} ({PENDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (state_hash) DO UPDATE SET tenant = EXCLUDED.tenant, \
                 pkce_verifier = EXCLUDED.pkce_verifier, required_scopes = EXCLUDED.required_scopes, \
                 optional_scopes = EXCLUDED.optional_scopes, portal_id = EXCLUDED.portal_id, \
                 return_to = EXCLUDED.return_to, reconnect = EXCLUDED.reconnect, \
                 created_at_ms = EXCLUDED.created_at_ms, expires_at_ms = EXCLUDED.expires_at_ms"
            ),
            cap_pending: format!(
                "DELETE FROM {pending} WHERE state_hash IN (
                    SELECT state_hash FROM {pending} WHERE tenant = $1 AND state_hash <> $2
                    ORDER BY created_at_ms DESC, state_hash DESC OFFSET $3 FOR UPDATE SKIP LOCKED
                 )"
            ),
            take_pending: format!("DELETE FROM {pending} WHERE state_hash = $1 RETURNING {PENDING_COLUMNS}"),
            try_lease: format!(
                "INSERT INTO {leases} (key, owner, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner, until_ms = EXCLUDED.until_ms \
                 WHERE {leases}.owner = EXCLUDED.owner OR {leases}.until_ms <= $4 OR {leases}.until_ms > 2 * $3 - $4 \
                 RETURNING key"
            ),
            release_lease: format!("DELETE FROM {leases} WHERE key = $1 AND owner = $2"),
        }
    }
}

/// Binds every column of `c` as `$1` (id) to `$20` (version).
fn bind_connection<'q>(query: Query<'q>, c: &'q Connection, version: u64) -> Result<Query<'q>> {
    let scopes = encode_json("encoding a connection's scopes", &c.scopes)?;
    let last_error = match &c.last_error {
        Some(e) => Some(encode_json("encoding a connection's last error", &StoredLastError::new(e))?),
        None => None,
    };
    Ok(query
        .bind(c.id.as_str())
        .bind(c.tenant.as_str())
        .bind(to_i64(c.portal_id))
        .bind(c.kind.as_str())
        .bind(c.status.as_str())
        .bind(c.access_token.secret())
        .bind(c.refresh_token.as_ref().map(RefreshToken::secret))
        .bind(c.expires_at.map(to_ms))
        .bind(scopes)
        .bind(c.installed_by.as_deref())
        .bind(c.installed_by_user_id.map(to_i64))
        .bind(c.hub_domain.as_deref())
        .bind(c.account_type.as_ref().map(|a| a.as_str().to_owned()))
        .bind(last_error)
        .bind(c.retry_at.map(to_ms))
        .bind(i64::from(c.failures))
        .bind(to_ms(c.created_at))
        .bind(to_ms(c.updated_at))
        .bind(to_ms(c.refreshed_at))
        .bind(to_i64(version)))
}

/// Reads columns of one row, turning anything unreadable into a [`ErrorCode::StoreUnavailable`] error that names
/// the table, the row and the column (never a value).
struct Reader<'r> {
    row: &'r PgRow,
    table: &'static str,
    key: String,
}

impl Reader<'_> {
    fn corrupt(&self, column: &str, problem: impl fmt::Display) -> Error {
        Error::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the PostgreSQL token store holds a {} row{} it cannot read: column {column}: {problem}",
                self.table, self.key
            ),
        )
    }

    fn get<T>(&self, column: &str) -> Result<T>
    where
        T: for<'a> sqlx::Decode<'a, Postgres> + sqlx::Type<Postgres>,
    {
        self.row.try_get(column).map_err(|e| self.corrupt(column, "wrong type or NULL").with_source(e))
    }

    fn time(&self, column: &str) -> Result<SystemTime> {
        let ms: i64 = self.get(column)?;
        from_ms(ms).ok_or_else(|| self.corrupt(column, "time out of range"))
    }

    fn optional_time(&self, column: &str) -> Result<Option<SystemTime>> {
        match self.get::<Option<i64>>(column)? {
            Some(ms) => from_ms(ms).map(Some).ok_or_else(|| self.corrupt(column, "time out of range")),
            None => Ok(None),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(|e| self.corrupt(column, "invalid JSON").with_source(e))
    }
}

fn decode_connection(row: &PgRow) -> Result<Connection> {
    let key = row.try_get::<String, _>("id").map(|id| format!(" (id {id:?})")).unwrap_or_default();
    let r = Reader { row, table: "connection", key };
    let kind: String = r.get("kind")?;
    let status: String = r.get("status")?;
    let failures: i64 = r.get("failures")?;
    let last_error = match r.get::<Option<String>>("last_error")? {
        Some(text) => {
            let stored: StoredLastError =
                serde_json::from_str(&text).map_err(|e| r.corrupt("last_error", "invalid JSON").with_source(e))?;
            Some(stored.into_last_error().ok_or_else(|| r.corrupt("last_error", "time out of range"))?)
        }
        None => None,
    };
    Ok(Connection {
        id: ConnectionId::new(r.get::<String>("id")?),
        tenant: r.get("tenant")?,
        portal_id: from_i64(r.get("portal_id")?),
        kind: parse_kind(&kind).ok_or_else(|| r.corrupt("kind", "unknown credential kind"))?,
        status: ConnectionStatus::parse(&status).ok_or_else(|| r.corrupt("status", "unknown status"))?,
        access_token: AccessToken::new(r.get::<String>("access_token")?),
        refresh_token: r.get::<Option<String>>("refresh_token")?.map(RefreshToken::new),
        expires_at: r.optional_time("expires_at_ms")?,
        scopes: r.json::<Vec<Scope>>("scopes")?,
        installed_by: r.get("installed_by")?,
        installed_by_user_id: r.get::<Option<i64>>("installed_by_user_id")?.map(from_i64),
        hub_domain: r.get("hub_domain")?,
        account_type: r.get::<Option<String>>("account_type")?.map(|a| AccountType::parse(&a)),
        last_error,
        retry_at: r.optional_time("retry_at_ms")?,
        failures: u32::try_from(failures).map_err(|_| r.corrupt("failures", "out of range"))?,
        created_at: r.time("created_at_ms")?,
        updated_at: r.time("updated_at_ms")?,
        refreshed_at: r.time("refreshed_at_ms")?,
        version: from_i64(r.get("version")?),
    })
}

fn decode_pending(row: &PgRow) -> Result<PendingAuthorization> {
    let r = Reader { row, table: "pending authorization", key: String::new() };
    Ok(PendingAuthorization {
        state_hash: r.get("state_hash")?,
        tenant: r.get("tenant")?,
        pkce_verifier: PkceVerifier::new(r.get::<String>("pkce_verifier")?),
        required_scopes: r.json("required_scopes")?,
        optional_scopes: r.json("optional_scopes")?,
        portal_id: r.get::<Option<i64>>("portal_id")?.map(from_i64),
        return_to: r.get("return_to")?,
        reconnect: r.get::<Option<String>>("reconnect")?.map(ConnectionId::new),
        created_at: r.time("created_at_ms")?,
        expires_at: r.time("expires_at_ms")?,
    })
}

impl PostgresStore {
    /// The insert's locks, checks and write, inside the caller's transaction.
    async fn insert_in(
        &self,
        conn: &mut sqlx::PgConnection,
        connection: &Connection,
        rules: InsertRules,
    ) -> Result<Inserted> {
        let portal = to_i64(connection.portal_id);
        // Every insert that could conflict with this one (the same portal, or the same tenant's limit) takes one of
        // these locks, held until commit. Taken in ascending order, so two inserts never wait on each other in a
        // cycle.
        let prefix = self.prefix.as_bytes();
        let mut keys = [
            lock_key(&[prefix, b"portal", &connection.portal_id.to_be_bytes()]),
            lock_key(&[prefix, b"tenant", connection.tenant.as_bytes()]),
        ];
        keys.sort_unstable();
        (&mut *conn).execute(LOCK_TIMEOUT).await.map_err(|e| store_error("starting to insert a connection", e))?;
        for (n, key) in keys.iter().enumerate() {
            if n > 0 && keys[n - 1] == *key {
                continue;
            }
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(*key)
                .execute(&mut *conn)
                .await
                .map_err(|e| store_error("waiting for other inserts of the portal or tenant", e))?;
        }
        // READ COMMITTED: each statement below sees every insert committed before the locks were granted.
        let same = sqlx::query(&self.sql.find_same)
            .bind(connection.tenant.as_str())
            .bind(portal)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| store_error("looking for the tenant's connection to the portal", e))?;
        if let Some(row) = same {
            return Ok(Inserted::Existing(Box::new(decode_connection(&row)?)));
        }
        if !rules.allow_shared_portals {
            let owner: Option<String> = sqlx::query_scalar(&self.sql.find_portal_owner)
                .bind(portal)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| store_error("looking for the portal's tenant", e))?;
            if let Some(tenant) = owner {
                return Ok(Inserted::PortalTaken { tenant });
            }
        }
        let held: i64 = sqlx::query_scalar(&self.sql.count_held)
            .bind(connection.tenant.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| store_error("counting the tenant's portals", e))?;
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        if rules.max_portals.is_some_and(|max| held >= max) {
            return Ok(Inserted::LimitReached { held });
        }
        bind_connection(sqlx::query(&self.sql.insert), connection, 1)?
            .execute(&mut *conn)
            .await
            .map_err(|e| store_error("inserting a connection", e))?;
        Ok(Inserted::Created)
    }
}

#[async_trait]
impl ConnectionStore for PostgresStore {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let row = sqlx::query(&self.sql.get)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("reading a connection", e))?;
        row.as_ref().map(decode_connection).transpose()
    }

    async fn insert(&self, connection: &Connection, rules: InsertRules) -> Result<Inserted> {
        // Explicitly READ COMMITTED (whatever the server's default): a later statement must see what the previous
        // holder of the locks committed, which a REPEATABLE READ snapshot taken at the first statement would not.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(|e| store_error("starting a transaction to insert a connection", e))?;
        match self.insert_in(&mut tx, connection, rules).await {
            Ok(Inserted::Created) => {
                tx.commit().await.map_err(|e| store_error("committing a new connection", e))?;
                Ok(Inserted::Created)
            }
            Ok(other) => {
                tx.rollback().await.map_err(|e| store_error("ending a transaction", e))?;
                Ok(other)
            }
            Err(e) => {
                // Dropping the transaction would roll back too; doing it here releases the locks at once.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn compare_and_swap(&self, next: &Connection) -> Result<bool> {
        let Some(expected) = next.version.checked_sub(1) else { return Ok(false) };
        let row = bind_connection(sqlx::query(&self.sql.compare_and_swap), next, next.version)?
            .bind(to_i64(expected))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("updating a connection", e))?;
        Ok(row.is_some())
    }

    async fn delete(&self, id: &ConnectionId) -> Result<bool> {
        let result = sqlx::query(&self.sql.delete)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("deleting a connection", e))?;
        Ok(result.rows_affected() > 0)
    }

    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        let mut sql = self.sql.list.clone();
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if filter.tenant.is_some() {
            conditions.push(format!("tenant = ${}", next()));
        }
        if filter.portal_id.is_some() {
            conditions.push(format!("portal_id = ${}", next()));
        }
        if filter.status.is_some() {
            conditions.push(format!("status = ${}", next()));
        }
        if filter.installed_by.is_some() {
            // lower() under the "C" collation folds ASCII letters only, like `eq_ignore_ascii_case`.
            conditions.push(format!(r#"lower(installed_by COLLATE "C") = lower(${} COLLATE "C")"#, next()));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(" ORDER BY id");
        let mut query = sqlx::query(&sql);
        if let Some(tenant) = &filter.tenant {
            query = query.bind(tenant.as_str());
        }
        if let Some(portal) = filter.portal_id {
            query = query.bind(to_i64(portal));
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(user) = &filter.installed_by {
            query = query.bind(user.as_str());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(|e| store_error("listing connections", e))?;
        rows.iter().map(decode_connection).collect()
    }
}

#[async_trait]
impl PendingStore for PostgresStore {
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        let required = encode_json("encoding a pending authorization's scopes", &pending.required_scopes)?;
        let optional = encode_json("encoding a pending authorization's scopes", &pending.optional_scopes)?;
        // Purge what expired long enough ago, so abandoned authorizations do not pile up (in the same statement).
        let horizon = pending.created_at.checked_sub(super::PENDING_GRACE).map(to_ms);
        sqlx::query(&self.sql.put_pending)
            .bind(pending.state_hash.as_str())
            .bind(pending.tenant.as_str())
            .bind(pending.pkce_verifier.secret())
            .bind(required)
            .bind(optional)
            .bind(pending.portal_id.map(to_i64))
            .bind(pending.return_to.as_deref())
            .bind(pending.reconnect.as_ref().map(ConnectionId::as_str))
            .bind(to_ms(pending.created_at))
            .bind(to_ms(pending.expires_at))
            .bind(horizon)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("storing a pending authorization", e))?;
        // At most MAX_PENDING_PER_TENANT per tenant: the newest are kept.
        sqlx::query(&self.sql.cap_pending)
            .bind(pending.tenant.as_str())
            .bind(pending.state_hash.as_str())
            .bind(i64::try_from(super::MAX_PENDING_PER_TENANT.saturating_sub(1)).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("storing a pending authorization", e))?;
        Ok(())
    }

    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        // One statement: of any number of concurrent takers, only one deletes the row and gets it back.
        let row = sqlx::query(&self.sql.take_pending)
            .bind(state_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("taking a pending authorization", e))?;
        row.as_ref().map(decode_pending).transpose()
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        let until = saturating_add(now, ttl);
        // One statement: a row comes back if it inserted the lease, or updated it (same owner, or expired).
        let row = sqlx::query(&self.sql.try_lease)
            .bind(key)
            .bind(owner)
            .bind(to_ms(until))
            .bind(to_ms(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("taking a lease", e))?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        let result = sqlx::query(&self.sql.release_lease)
            .bind(key)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("releasing a lease", e))?;
        Ok(result.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        // Fixed forever: instances built from different versions of this crate must lock the same keys.
        assert_eq!(lock_key(&[b"hubconnect", b"migrate"]), lock_key(&[b"hubconnect", b"migrate"]));
        assert_ne!(lock_key(&[b"ab", b"c"]), lock_key(&[b"a", b"bc"]));
        assert_ne!(lock_key(&[b"one", b"migrate"]), lock_key(&[b"two", b"migrate"]));
        assert_ne!(lock_key(&[b"p", b"tenant", b"1"]), lock_key(&[b"p", b"portal", b"1"]));
    }

    #[test]
    fn urls() {
        for url in ["postgres://u@localhost/db", "postgresql://u:p@10.0.0.1:5433/db?sslmode=disable", "postgres:///db"]
        {
            assert!(connect_options(url).is_ok(), "{url}");
        }
        for url in ["", "  ", "postgres://u@localhost/db?sslmode=sometimes"] {
            assert_eq!(connect_options(url).map(|_| ()).map_err(|e| e.code()), Err(ErrorCode::InvalidConfig), "{url}");
        }
        let named = connect_options("postgres://u@localhost/db?application_name=mine").ok();
        assert_eq!(named.as_ref().and_then(|o| o.get_application_name()), Some("mine"));
    }
}
