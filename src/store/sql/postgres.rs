//! The PostgreSQL store: connections, pending authorizations and refresh leases in PostgreSQL, shared by any number
//! of processes. What it promises is on [`PostgresStore`], which is public at `crate::store::PostgresStore` (this
//! module is private); the operations are [`SqlStore`]'s, over the [`Pg`] dialect.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::Executor;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};

use super::{Dialect, sql_store};
use crate::connection::Connection;
use crate::error::{Error, ErrorCode, Result};
use crate::store::store_error;

/// How long an insert waits for another instance's insert of the same portal or tenant before giving up (the
/// counterpart of the SQLite store's busy timeout).
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '5s'";

/// How long a call waits for a pooled connection (or for the server to accept a new one) before failing with
/// [`ErrorCode::StoreUnavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// PostgreSQL's dialect: the statements' own spelling, and transaction-level advisory locks to keep concurrent
/// migrations and inserts apart across instances.
pub(crate) struct Pg;

#[async_trait]
impl Dialect for Pg {
    type Db = Postgres;
    const NAME: &'static str = "PostgreSQL";
    // Explicitly READ COMMITTED (whatever the server's default): a statement after the advisory locks must see what
    // the previous holder of the locks committed, which a REPEATABLE READ snapshot taken earlier would not.
    const BEGIN: &'static str = "BEGIN ISOLATION LEVEL READ COMMITTED";

    /// Takes an advisory lock derived from the prefix, then looks the schema table up before creating it, so a role
    /// without `CREATE` can connect once an admin role has migrated (PostgreSQL checks the privilege even for
    /// `CREATE TABLE IF NOT EXISTS` on an existing table).
    async fn before_migrating(conn: &mut PgConnection, prefix: &str) -> Result<bool> {
        let fail = |e| store_error("migrating the PostgreSQL schema", e);
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&[prefix.as_bytes(), b"migrate"]))
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!(r#""{prefix}_schema""#))
            .fetch_one(&mut *conn)
            .await
            .map_err(fail)
    }

    /// Every insert that could conflict with this one (the same portal, or the same tenant's limit) takes one of
    /// these locks, held until commit. Taken in ascending order, so two inserts never wait on each other in a cycle.
    async fn before_inserting(conn: &mut PgConnection, prefix: &str, connection: &Connection) -> Result<()> {
        let prefix = prefix.as_bytes();
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
        // READ COMMITTED: each statement after this sees every insert committed before the locks were granted.
        Ok(())
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// One advisory lock per prefix, held until commit: appends take sequence numbers one transaction at a time,
    /// so numbers are handed out in commit order. Taken last in every transaction (after row and insert locks), so
    /// it never closes a cycle.
    async fn before_appending(conn: &mut PgConnection, prefix: &str) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_key(&[prefix.as_bytes(), b"events"]))
            .execute(&mut *conn)
            .await
            .map_err(|e| store_error("waiting to append events", e))?;
        Ok(())
    }

    /// The same lock, for a write and its appends sent as one statement (one round trip instead of five).
    fn append_lock(prefix: &str) -> Option<String> {
        Some(format!("pg_advisory_xact_lock({})", lock_key(&[prefix.as_bytes(), b"events"])))
    }
}

/// Connects the pool [`PostgresStore::connect`] uses.
async fn connect_pool(url: &str) -> Result<PgPool> {
    let options = connect_options(url)?;
    PgPoolOptions::new()
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| store_error("connecting to PostgreSQL", e))
}

sql_store! {
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
///   each call ([`InsertRules::allow_shared_portals`](crate::store::InsertRules::allow_shared_portals)), not of the
///   table, so the rule is checked under the locks instead. The same locks make the portal limit
///   ([`InsertRules::max_portals`](crate::store::InsertRules::max_portals)) hold, which no constraint could.
/// - **Its own tables.** `{prefix}_connections`, `{prefix}_pending`, `{prefix}_leases`, `{prefix}_events` and a
///   schema-version table
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
/// an admin role (a deploy step), then give the app's role `SELECT, INSERT, UPDATE, DELETE` on the five tables and
/// `USAGE` on the events' sequence (`{prefix}_events_seq_seq`): an up-to-date schema is only read, never altered, and
/// advisory locks need no privilege.
///
/// TLS: this crate builds sqlx without a TLS backend, so the default `sslmode=prefer` connects in clear text. To
/// connect over TLS, enable a TLS feature of sqlx in your own `Cargo.toml` (`sqlx = { version = "0.8", features =
/// ["tls-rustls"] }`; Cargo turns it on for this crate's sqlx too) and use `?sslmode=require` or `verify-full`.
///
/// Tokens are stored as plain text: restrict who can read the tables, or wrap the store in
/// [`EncryptedStore`](crate::store::EncryptedStore).
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
pub struct PostgresStore(Pg, PgPool);

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
fn connect(url);

/// Like [`PostgresStore::connect`], with tables named `{prefix}_connections`, `{prefix}_pending`,
/// `{prefix}_leases`, `{prefix}_events` and `{prefix}_schema`, so several apps can share one database.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] unless `prefix` is 1 to 32 ASCII letters, digits or underscores; otherwise as
/// [`PostgresStore::connect`].
fn connect_with_prefix(url, prefix) via connect_pool;

/// A store over a pool you configured yourself, with tables named by `prefix`; brings the schema up to date.
///
/// # Errors
/// [`ErrorCode::InvalidConfig`] for an invalid prefix (see [`PostgresStore::connect_with_prefix`]),
/// [`ErrorCode::StoreUnavailable`] when the schema cannot be created or is newer than this crate knows.
fn from_pool;
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
