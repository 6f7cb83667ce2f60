//! The SQLite store: connections, pending authorizations and refresh leases in one SQLite file. What it promises
//! is on [`SqliteStore`], which is public at `crate::store::SqliteStore` (this module is private); the operations
//! are [`SqlStore`]'s, over the [`Lite`] dialect.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::{Dialect, sql_store};
use crate::error::{Error, ErrorCode, Result};
use crate::store::store_error;

/// SQLite's dialect: a `BEGIN IMMEDIATE` transaction (the file's write lock, taken at once) around every insert and
/// migration, which is all it takes to keep concurrent ones apart, in any process.
pub(crate) struct Lite;

#[async_trait::async_trait]
impl Dialect for Lite {
    type Db = Sqlite;
    const NAME: &'static str = "SQLite";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const MULTI_STATEMENT: bool = true;

    /// `?1` placeholders; `INTEGER` (the same affinity as `BIGINT`, spelled as the tables always were); `TEXT`
    /// compares byte-wise and `lower()` folds ASCII letters only without a collation; `LIMIT -1` for no limit; no
    /// row locks to skip (the transaction holds the whole file).
    fn spell(sql: String) -> String {
        sql.replace('$', "?")
            .replace("BIGINT", "INTEGER")
            .replace(r#" COLLATE "C""#, "")
            .replace("LIMIT ALL", "LIMIT -1")
            .replace(" FOR UPDATE SKIP LOCKED", "")
            .replace("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT")
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

/// Connects the pool [`SqliteStore::open`] uses: WAL, `synchronous=FULL`, the busy timeout, private files, and
/// a single connection for an in-memory database.
async fn connect_pool(url_or_path: &str) -> Result<SqlitePool> {
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
    connect_with_retry(pool_options, options).await
}

sql_store! {
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
/// - **Its own tables.** Four tables (connections, pending authorizations, leases, the event log) and a
///   schema-version table, all named with a prefix (`hubconnect` by default,
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
pub struct SqliteStore(Lite, SqlitePool);

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
fn open(url_or_path);

/// Like [`SqliteStore::open`], with tables named `{prefix}_connections`, `{prefix}_pending`,
/// `{prefix}_leases`, `{prefix}_events` and `{prefix}_schema`, so several apps can share one file.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] unless `prefix` is 1 to 32 ASCII letters, digits or underscores; otherwise as
/// [`SqliteStore::open`].
fn open_with_prefix(url_or_path, prefix) via connect_pool;

/// A store over a pool you configured yourself, with tables named by `prefix`; brings the schema up to date.
///
/// Configure the pool as [`SqliteStore::open`] does for the same guarantees: WAL journal, `synchronous=FULL`, a
/// busy timeout, and a single connection for an in-memory database.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] for an invalid prefix (see [`SqliteStore::open_with_prefix`]),
/// [`ErrorCode::StoreUnavailable`] when the schema cannot be created or is newer than this crate knows.
fn from_pool;
}

/// How long a writer waits for another writer's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::PendingAuthorization;
    use crate::secret::PkceVerifier;
    use crate::store::PendingStore;

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
