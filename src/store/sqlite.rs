//! The SQLite store: connections, pending authorizations and refresh leases in one SQLite file. What it promises
//! is on [`SqliteStore`], which is public at `crate::store::SqliteStore` (this module is private).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Executor, Row};

use super::codec::{StoredLastError, encode_json, from_i64, from_ms, parse_kind, to_i64, to_ms, validate_prefix};
use super::{ConnectionFilter, ConnectionStore, InsertRules, Inserted, LeaseStore, PendingStore, store_error};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, ConnectionStatus, PendingAuthorization};
use crate::connector::AccountType;
use crate::error::{Error, ErrorCode, Result};
use crate::scope::Scope;
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections, pending authorizations and leases in a SQLite file (feature `sqlite`, on by default).
///
/// What it promises:
///
/// - **Durable writes.** The file is opened in WAL mode with `synchronous=FULL`: a write that returned `Ok` survives
///   a crash or a power cut.
/// - **Several processes, one file.** Two processes (or two [`SqliteStore`]s in one process) opened on the same file
///   behave like two workers sharing one store: compare-and-swap, "one portal, one tenant", the portal limit, the
///   single take of a pending authorization and the lease rules all hold across them, because each is one SQL
///   statement or one `BEGIN IMMEDIATE` transaction. A writer that finds the file locked waits up to 5 seconds (the
///   busy timeout) before the call fails with [`ErrorCode::StoreUnavailable`]. The file must be on a local disk:
///   SQLite's locking does not work over network file systems.
/// - **Its own tables.** Three tables and a schema-version table, all named with a prefix (`hubconnect` by default,
///   see [`SqliteStore::open_with_prefix`]) so several apps can share one file. The schema is created and migrated
///   when the store opens, in one transaction, whatever number of processes open it at once.
/// - **No panics on bad data.** A row that cannot be read back (an unknown status, broken JSON) is an
///   [`ErrorCode::StoreUnavailable`] error naming the table and column.
///
/// Tokens are stored as plain text: protect the file (permissions, disk encryption) as you would the tokens.
///
/// Times are stored as integer Unix milliseconds (sub-millisecond parts are dropped), scopes and the last error as
/// JSON text, ids above `i64::MAX` (portal and user ids) as their two's-complement `INTEGER`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> hubspot_connect::Result<()> {
/// use std::time::{Duration, UNIX_EPOCH};
/// use hubspot_connect::store::{ConnectionStore, InsertRules, Inserted, LeaseStore, SqliteStore};
/// use hubspot_connect::{AccessToken, Connection, RefreshToken};
///
/// // A file path or `sqlite://path.db` in production; a private in-memory database here.
/// let store = SqliteStore::open("sqlite::memory:").await?;
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
/// // One lease owner at a time.
/// assert!(store.try_lease("refresh:acme", "worker-1", Duration::from_secs(30), now).await?);
/// assert!(!store.try_lease("refresh:acme", "worker-2", Duration::from_secs(30), now).await?);
/// # Ok(())
/// # }
/// ```
///
/// Cloning is cheap and shares the connection pool. `Debug` shows the table prefix and the pool, never a token.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    prefix: String,
    sql: std::sync::Arc<Sql>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("prefix", &self.prefix).field("pool", &self.pool).finish()
    }
}

impl SqliteStore {
    /// The table prefix [`SqliteStore::open`] uses.
    pub const DEFAULT_PREFIX: &'static str = "hubconnect";

    /// The schema version this crate writes (kept in the `{prefix}_schema` table).
    pub const SCHEMA_VERSION: i64 = 1;

    /// Opens (creating it if missing) the database at `url_or_path` with the default table prefix, and brings its
    /// schema up to date.
    ///
    /// Accepts `sqlite://path.db`, `sqlite:path.db`, a plain file path, and `sqlite::memory:` (a private database
    /// that lives as long as this store and its clones, on a single connection). A URL's query parameters are passed
    /// to sqlx's `SqliteConnectOptions`; the database must be writable (the schema is checked on open).
    ///
    /// # Errors
    /// [`ErrorCode::StoreUnavailable`] when the file cannot be opened or migrated, [`ErrorCode::InvalidConfig`] for
    /// a malformed URL.
    pub async fn open(url_or_path: &str) -> Result<Self> {
        Self::open_with_prefix(url_or_path, Self::DEFAULT_PREFIX).await
    }

    /// Like [`SqliteStore::open`], with tables named `{prefix}_connections`, `{prefix}_pending`,
    /// `{prefix}_leases` and `{prefix}_schema`, so several apps can share one file.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] unless `prefix` is 1 to 32 ASCII letters, digits or underscores; otherwise as
    /// [`SqliteStore::open`].
    pub async fn open_with_prefix(url_or_path: &str, prefix: &str) -> Result<Self> {
        validate_prefix("SQLite table", prefix)?;
        let (options, in_memory) = connect_options(url_or_path)?;
        if !in_memory {
            create_private(options.get_filename())?;
        }
        let pool_options = if in_memory {
            // Every connection to `sqlite::memory:` would see its own database, and the database goes away with its
            // last connection: keep exactly one, forever.
            SqlitePoolOptions::new().min_connections(1).max_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new()
        };
        let pool = connect_with_retry(pool_options, options).await?;
        Self::from_pool(pool, prefix).await
    }

    /// A store over a pool you configured yourself, with tables named by `prefix`; brings the schema up to date.
    ///
    /// Configure the pool as [`SqliteStore::open`] does for the same guarantees: WAL journal, `synchronous=FULL`, a
    /// busy timeout, and a single connection for an in-memory database.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] for an invalid prefix (see [`SqliteStore::open_with_prefix`]),
    /// [`ErrorCode::StoreUnavailable`] when the schema cannot be created or is newer than this crate knows.
    pub async fn from_pool(pool: SqlitePool, prefix: &str) -> Result<Self> {
        validate_prefix("SQLite table", prefix)?;
        migrate(&pool, prefix).await?;
        Ok(Self { pool, prefix: prefix.to_owned(), sql: std::sync::Arc::new(Sql::new(prefix)) })
    }

    /// The connection pool, to share with the rest of an app or to inspect the tables.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The table prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Closes the pool (every clone's too) after the calls under way finish, checkpointing the WAL into the file.
    /// Calls made after this fail with [`ErrorCode::StoreUnavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Parses a URL or path into connect options with this store's settings; also says whether it is in memory.
fn connect_options(url_or_path: &str) -> Result<(SqliteConnectOptions, bool)> {
    let trimmed = url_or_path.trim();
    let (options, in_memory) = if trimmed.starts_with("sqlite:") {
        let rest = trimmed.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
        let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory = database == ":memory:"
            || url::form_urlencoded::parse(params.as_bytes()).any(|(k, v)| k == "mode" && v == "memory");
        let options = SqliteConnectOptions::from_str(trimmed).map_err(|e| {
            Error::new(ErrorCode::InvalidConfig, "invalid SQLite URL for the token store").with_source(e)
        })?;
        (options, in_memory)
    } else if trimmed == ":memory:" {
        (SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| store_error("opening SQLite", e))?, true)
    } else if trimmed.is_empty() {
        return Err(Error::new(ErrorCode::InvalidConfig, "empty SQLite path for the token store"));
    } else {
        (SqliteConnectOptions::new().filename(url_or_path), false)
    };
    let options = options.create_if_missing(true).busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
    let options = options.synchronous(SqliteSynchronous::Full);
    let options = if in_memory { options } else { options.journal_mode(SqliteJournalMode::Wal) };
    Ok((options, in_memory))
}

/// Creates the database file and its `-wal` and `-shm` companions, readable and writable by the owner only
/// (0600), before SQLite opens them: SQLite would create them with the process's umask (often 0644), and without
/// encryption at rest they hold every tenant's refresh token. Files that exist are left as they are.
fn create_private(path: &std::path::Path) -> Result<()> {
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" {
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = name.to_owned();
        file.push(suffix);
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        match open.open(&file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // A directory that does not exist or cannot be written: SQLite reports it the way it always has.
            Err(_) if suffix.is_empty() => return Ok(()),
            Err(e) => return Err(store_error("creating the SQLite file's companions", e)),
        }
    }
    Ok(())
}

/// Connects, retrying for up to the busy timeout while the file is locked: switching a new file to WAL takes an
/// exclusive lock that SQLite does not wait for, so two processes opening a new file at once may collide.
async fn connect_with_retry(pool_options: SqlitePoolOptions, options: SqliteConnectOptions) -> Result<SqlitePool> {
    const PAUSE: Duration = Duration::from_millis(50);
    let attempts = BUSY_TIMEOUT.as_millis() / PAUSE.as_millis();
    let mut attempt = 0;
    loop {
        match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(e) if is_busy(&e) && attempt < attempts => {
                attempt += 1;
                tokio::time::sleep(PAUSE).await;
            }
            Err(e) => return Err(store_error("opening the SQLite database", e)),
        }
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, with any extended code.
fn is_busy(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else { return false };
    db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// The schema, one list of statements per version. `{p}` is the table prefix. Append, never edit.
const MIGRATIONS: &[&[&str]] = &[&[
    r#"CREATE TABLE "{p}_connections" (
        id TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL,
        portal_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        access_token TEXT NOT NULL,
        refresh_token TEXT,
        expires_at_ms INTEGER,
        scopes TEXT NOT NULL,
        installed_by TEXT,
        installed_by_user_id INTEGER,
        hub_domain TEXT,
        account_type TEXT,
        last_error TEXT,
        retry_at_ms INTEGER,
        failures INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        refreshed_at_ms INTEGER NOT NULL,
        version INTEGER NOT NULL
    )"#,
    r#"CREATE INDEX "{p}_connections_tenant" ON "{p}_connections" (tenant, portal_id)"#,
    r#"CREATE INDEX "{p}_connections_portal" ON "{p}_connections" (portal_id)"#,
    r#"CREATE TABLE "{p}_pending" (
        state_hash TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL,
        pkce_verifier TEXT NOT NULL,
        required_scopes TEXT NOT NULL,
        optional_scopes TEXT NOT NULL,
        portal_id INTEGER,
        return_to TEXT,
        reconnect TEXT,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    )"#,
    r#"CREATE INDEX "{p}_pending_expires" ON "{p}_pending" (expires_at_ms)"#,
    r#"CREATE TABLE "{p}_leases" (
        key TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL,
        until_ms INTEGER NOT NULL
    )"#,
]];

/// Creates or upgrades the schema in one `BEGIN IMMEDIATE` transaction: concurrent openers run it one after the
/// other, and the later ones find nothing to do.
async fn migrate(pool: &SqlitePool, prefix: &str) -> Result<()> {
    const LATEST: i64 = SqliteStore::SCHEMA_VERSION;
    const _: () = assert!(MIGRATIONS.len() as i64 == LATEST);
    let fail = |e| store_error("migrating the SQLite schema", e);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
    let create = format!(
        r#"CREATE TABLE IF NOT EXISTS "{prefix}_schema" (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"#
    );
    tx.execute(create.as_str()).await.map_err(fail)?;
    let current: Option<i64> = sqlx::query_scalar(&format!(r#"SELECT version FROM "{prefix}_schema" WHERE id = 1"#))
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
    let current = current.unwrap_or(0);
    if current > LATEST {
        return Err(Error::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the SQLite token store's schema ({prefix}_schema) is version {current}, newer than this version of \
                 hubspot-connect knows ({LATEST}): upgrade the crate"
            ),
        ));
    }
    for (version, statements) in (1..).zip(MIGRATIONS) {
        if version <= current {
            continue;
        }
        for statement in *statements {
            tx.execute(statement.replace("{p}", prefix).as_str()).await.map_err(fail)?;
        }
    }
    if current < LATEST {
        sqlx::query(&format!(
            r#"INSERT INTO "{prefix}_schema" (id, version) VALUES (1, ?1)
               ON CONFLICT(id) DO UPDATE SET version = excluded.version"#
        ))
        .bind(LATEST)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
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
    purge_pending: String,
    cap_pending: String,
    put_pending: String,
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
            get: format!("SELECT {CONNECTION_COLUMNS} FROM {c} WHERE id = ?1"),
            find_same: format!(
                "SELECT {CONNECTION_COLUMNS} FROM {c} WHERE tenant = ?1 AND portal_id = ?2 ORDER BY id LIMIT 1"
            ),
            find_portal_owner: format!("SELECT tenant FROM {c} WHERE portal_id = ?1 ORDER BY id LIMIT 1"),
            count_held: format!("SELECT COUNT(*) FROM {c} WHERE tenant = ?1"),
            insert: format!(
                "INSERT INTO {c} ({CONNECTION_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"
            ),
            compare_and_swap: format!(
                "UPDATE {c} SET tenant = ?2, portal_id = ?3, kind = ?4, status = ?5, access_token = ?6, \
                 refresh_token = ?7, expires_at_ms = ?8, scopes = ?9, installed_by = ?10, installed_by_user_id = ?11, \
                 hub_domain = ?12, account_type = ?13, last_error = ?14, retry_at_ms = ?15, failures = ?16, \
                 created_at_ms = ?17, updated_at_ms = ?18, refreshed_at_ms = ?19, version = ?20 \
                 WHERE id = ?1 AND version = ?21"
            ),
            delete: format!("DELETE FROM {c} WHERE id = ?1"),
            list: format!("SELECT {CONNECTION_COLUMNS} FROM {c}"),
            purge_pending: format!("DELETE FROM {pending} WHERE expires_at_ms <= ?1"),
            cap_pending: format!(
                "DELETE FROM {pending} WHERE state_hash IN (SELECT state_hash FROM {pending} \
                 WHERE tenant = ?1 AND state_hash <> ?2 ORDER BY created_at_ms DESC, state_hash DESC LIMIT -1 OFFSET ?3)"
            ),
            put_pending: format!(
                "INSERT OR REPLACE INTO {pending} ({PENDING_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            take_pending: format!("DELETE FROM {pending} WHERE state_hash = ?1 RETURNING {PENDING_COLUMNS}"),
            try_lease: format!(
                "INSERT INTO {leases} (key, owner, until_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(key) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
                 WHERE {leases}.owner = excluded.owner OR {leases}.until_ms <= ?4 OR {leases}.until_ms > 2 * ?3 - ?4"
            ),
            release_lease: format!("DELETE FROM {leases} WHERE key = ?1 AND owner = ?2"),
        }
    }
}

/// Binds every column of `c` as `?1` (id) to `?20` (version).
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
    row: &'r SqliteRow,
    table: &'static str,
    key: String,
}

impl Reader<'_> {
    fn corrupt(&self, column: &str, problem: impl fmt::Display) -> Error {
        Error::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the SQLite token store holds a {} row{} it cannot read: column {column}: {problem}",
                self.table, self.key
            ),
        )
    }

    fn get<T>(&self, column: &str) -> Result<T>
    where
        T: for<'a> sqlx::Decode<'a, Sqlite> + sqlx::Type<Sqlite>,
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

fn decode_connection(row: &SqliteRow) -> Result<Connection> {
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

fn decode_pending(row: &SqliteRow) -> Result<PendingAuthorization> {
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

impl SqliteStore {
    /// The insert's checks and write, inside the caller's `BEGIN IMMEDIATE` transaction.
    async fn insert_in(
        &self,
        conn: &mut sqlx::SqliteConnection,
        connection: &Connection,
        rules: InsertRules,
    ) -> Result<Inserted> {
        let portal = to_i64(connection.portal_id);
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
impl ConnectionStore for SqliteStore {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let row = sqlx::query(&self.sql.get)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("reading a connection", e))?;
        row.as_ref().map(decode_connection).transpose()
    }

    async fn insert(&self, connection: &Connection, rules: InsertRules) -> Result<Inserted> {
        // One write transaction from the first read: concurrent inserters (in any process) run one after the other.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
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
                // Dropping the transaction would roll back too; doing it here releases the write lock at once.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn compare_and_swap(&self, next: &Connection) -> Result<bool> {
        let Some(expected) = next.version.checked_sub(1) else { return Ok(false) };
        let result = bind_connection(sqlx::query(&self.sql.compare_and_swap), next, next.version)?
            .bind(to_i64(expected))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("updating a connection", e))?;
        Ok(result.rows_affected() == 1)
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
        if filter.tenant.is_some() {
            conditions.push("tenant = ?");
        }
        if filter.portal_id.is_some() {
            conditions.push("portal_id = ?");
        }
        if filter.status.is_some() {
            conditions.push("status = ?");
        }
        if filter.installed_by.is_some() {
            // NOCASE folds ASCII letters only, like `eq_ignore_ascii_case`.
            conditions.push("installed_by = ? COLLATE NOCASE");
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
impl PendingStore for SqliteStore {
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        let required = encode_json("encoding a pending authorization's scopes", &pending.required_scopes)?;
        let optional = encode_json("encoding a pending authorization's scopes", &pending.optional_scopes)?;
        let fail = |e| store_error("storing a pending authorization", e);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
        // Purge what expired long enough ago, so abandoned authorizations do not pile up.
        if let Some(horizon) = pending.created_at.checked_sub(super::PENDING_GRACE) {
            sqlx::query(&self.sql.purge_pending).bind(to_ms(horizon)).execute(&mut *tx).await.map_err(fail)?;
        }
        // At most MAX_PENDING_PER_TENANT per tenant: the newest are kept.
        sqlx::query(&self.sql.cap_pending)
            .bind(pending.tenant.as_str())
            .bind(pending.state_hash.as_str())
            .bind(i64::try_from(super::MAX_PENDING_PER_TENANT.saturating_sub(1)).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
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
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
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
impl LeaseStore for SqliteStore {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        let until = saturating_add(now, ttl);
        let result = sqlx::query(&self.sql.try_lease)
            .bind(key)
            .bind(owner)
            .bind(to_ms(until))
            .bind(to_ms(now))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("taking a lease", e))?;
        Ok(result.rows_affected() == 1)
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
    fn urls() {
        for url in ["sqlite::memory:", ":memory:", "sqlite://file::memory:?mode=memory"] {
            assert!(connect_options(url).map(|(_, mem)| mem).unwrap_or(false), "{url}");
        }
        for url in ["sqlite://a.db", "sqlite:a.db", "a.db", "/tmp/x/a.db"] {
            assert_eq!(connect_options(url).map(|(_, mem)| mem).ok(), Some(false), "{url}");
        }
        assert_eq!(connect_options("  ").map(|_| ()).map_err(|e| e.code()), Err(ErrorCode::InvalidConfig));
    }

    /// Finding 1: the database and its WAL files are the owner's only (0600), whatever the umask.
    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hubconnect-mode-{}", crate::ConnectionId::random()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("tokens.db");
        for url in [format!("sqlite://{}", db.display()), dir.join("plain.db").display().to_string()] {
            let store = SqliteStore::open(&url).await.unwrap();
            store
                .put_pending(PendingAuthorization::new(
                    "s",
                    "t",
                    PkceVerifier::new("v"),
                    std::time::UNIX_EPOCH,
                    std::time::UNIX_EPOCH,
                ))
                .await
                .unwrap();
            let base = url.trim_start_matches("sqlite://").to_owned();
            for file in [base.clone(), format!("{base}-wal"), format!("{base}-shm")] {
                let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{file}: {mode:o}");
            }
            store.close().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
