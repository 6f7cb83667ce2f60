//! The SQL store, written once: [`SqlStore`] does every operation over a [`Dialect`], which says what SQLite and
//! PostgreSQL do differently (how a write transaction begins, how an insert or a migration keeps concurrent callers
//! apart) and spells the statements (placeholders, column types, locking clauses) for its database. The public
//! types, [`SqliteStore`](super::SqliteStore) and [`PostgresStore`](super::PostgresStore), are thin wrappers made
//! by [`sql_store!`].

#[cfg(feature = "postgres")]
pub(super) mod postgres;
#[cfg(feature = "sqlite")]
pub(super) mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use super::record::{Bad, Cell, ConnectionRecord, PendingRecord, from_i64, to_i64, to_ms, validate_prefix};
use super::{ConnectionFilter, InsertRules, Inserted, MAX_PENDING_PER_TENANT, PENDING_GRACE, store_error};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, PendingAuthorization};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Event, EventCursor, LoggedEvent};

/// What one SQL database does its own way. Statements are written once, in PostgreSQL's spelling, and
/// [`Dialect::spell`] rewrites them for the others.
#[async_trait]
pub(crate) trait Dialect: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database;
    /// The database's name in messages ("SQLite").
    const NAME: &'static str;
    /// How a write transaction (an insert, a migration, storing a pending authorization) starts.
    const BEGIN: &'static str;
    /// Whether one query may hold several statements (with `$n` parameters numbered across all of them): then a
    /// write with events is sent as one `BEGIN; write; appends; COMMIT` instead of four round trips.
    const MULTI_STATEMENT: bool = false;

    /// `sql`, written in PostgreSQL's spelling (`$1` placeholders, `BIGINT`, `COLLATE "C"`, `LIMIT ALL`,
    /// `FOR UPDATE SKIP LOCKED`, `RETURNING` to tell whether a conditional write wrote), in this database's. The
    /// table prefix is put in afterwards, so it is never rewritten.
    fn spell(sql: String) -> String {
        sql
    }

    /// The first step of a migration, inside its transaction: keeps concurrent migrations apart (where the
    /// transaction does not) and says whether the schema table exists (`false`: create it if it does not).
    async fn before_migrating(_conn: &mut <Self::Db as Database>::Connection, _prefix: &str) -> Result<bool> {
        Ok(false)
    }

    /// The first step of an insert, inside its transaction: keeps inserts of the same portal or tenant apart
    /// (where the transaction does not).
    async fn before_inserting(
        _conn: &mut <Self::Db as Database>::Connection,
        _prefix: &str,
        _connection: &Connection,
    ) -> Result<()> {
        Ok(())
    }

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// The step before appending events, inside the transaction of the write they report: makes appends take their
    /// sequence numbers in the order they commit (where the transaction does not), so a reader continuing from a
    /// cursor never skips an event committed later with a smaller number.
    async fn before_appending(_conn: &mut <Self::Db as Database>::Connection, _prefix: &str) -> Result<()> {
        Ok(())
    }

    /// What [`Dialect::before_appending`] does, as an SQL expression a `WITH` clause can evaluate, where the database
    /// lets a write ending in `RETURNING` stand in a `WITH` clause: then a write with events is sent as one
    /// statement. `None`: it cannot.
    fn append_lock(_prefix: &str) -> Option<String> {
        None
    }
}

/// The schema, one list of statements per version, in PostgreSQL's spelling (see [`Dialect::spell`]). `{p}` is the
/// table prefix. Append, never edit. A new column is a field of [`ConnectionRecord`] or [`PendingRecord`] and
/// an `ALTER TABLE` here.
const MIGRATIONS: &[&[&str]] = &[
    &[
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
    ],
    // 2: the event log. `seq` is the cursor; `body` the event's JSON.
    &[
        r#"CREATE TABLE "{p}_events" (
        seq BIGSERIAL PRIMARY KEY,
        connection_id TEXT COLLATE "C",
        occurred_at_ms BIGINT NOT NULL,
        body TEXT NOT NULL
    )"#,
        r#"CREATE INDEX "{p}_events_connection" ON "{p}_events" (connection_id, seq)"#,
        r#"CREATE INDEX "{p}_events_occurred" ON "{p}_events" (occurred_at_ms)"#,
    ],
];

/// The schema version this crate writes.
pub(super) const SCHEMA_VERSION: i64 = 2;
const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// `$1, $2, …` for `n` parameters from `first`.
fn params(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Every statement, built once for the prefix, in the dialect's spelling.
struct Statements {
    get: String,
    find_same: String,
    find_portal_owner: String,
    count_held: String,
    insert: String,
    compare_and_swap: String,
    delete: String,
    list: String,
    purge_pending: String,
    put_pending: String,
    cap_pending: String,
    take_pending: String,
    try_lease: String,
    release_lease: String,
    append_event: String,
    events_since: String,
    history: String,
    purge_events: String,
}

impl Statements {
    fn new<D: Dialect>(prefix: &str) -> Self {
        let c = r#""{p}_connections""#;
        let pending = r#""{p}_pending""#;
        let leases = r#""{p}_leases""#;
        let events = r#""{p}_events""#;
        let record = ConnectionRecord::COLUMNS;
        let columns = format!("{}, version", record.join(", "));
        let n = record.len() + 1;
        let sets: Vec<String> = record.iter().zip(1..).skip(1).map(|(col, i)| format!("{col} = ${i}")).collect();
        let pending_columns = PendingRecord::COLUMNS.join(", ");
        let pending_sets: Vec<String> =
            PendingRecord::COLUMNS.iter().skip(1).map(|col| format!("{col} = excluded.{col}")).collect();
        let s = |sql: String| spell::<D>(sql, prefix);
        Self {
            get: s(format!("SELECT {columns} FROM {c} WHERE id = $1")),
            find_same: s(format!("SELECT {columns} FROM {c} WHERE tenant = $1 AND portal_id = $2 ORDER BY id LIMIT 1")),
            find_portal_owner: s(format!("SELECT tenant FROM {c} WHERE portal_id = $1 ORDER BY id LIMIT 1")),
            count_held: s(format!("SELECT COUNT(*) FROM {c} WHERE tenant = $1")),
            insert: s(format!("INSERT INTO {c} ({columns}) VALUES ({})", params(1, n))),
            compare_and_swap: s(format!(
                "UPDATE {c} SET {}, version = ${n} WHERE id = $1 AND version = ${} RETURNING version",
                sets.join(", "),
                n + 1,
            )),
            delete: s(format!("DELETE FROM {c} WHERE id = $1 RETURNING id")),
            list: s(format!("SELECT {columns} FROM {c}")),
            // Purges what expired before $1 (PENDING_GRACE before the new one was created; NULL: nothing). SKIP
            // LOCKED: two puts purging at once never wait for (or deadlock on) each other, nor on a take under way.
            purge_pending: s(format!(
                "DELETE FROM {pending} WHERE state_hash IN (
                    SELECT state_hash FROM {pending} WHERE expires_at_ms <= $1 AND state_hash <> $2
                    FOR UPDATE SKIP LOCKED
                 )"
            )),
            put_pending: s(format!(
                "INSERT INTO {pending} ({pending_columns}) VALUES ({}) ON CONFLICT (state_hash) DO UPDATE SET {}",
                params(1, PendingRecord::COLUMNS.len()),
                pending_sets.join(", ")
            )),
            cap_pending: s(format!(
                "DELETE FROM {pending} WHERE state_hash IN (
                    SELECT state_hash FROM {pending} WHERE tenant = $1 AND state_hash <> $2
                    ORDER BY created_at_ms DESC, state_hash DESC LIMIT ALL OFFSET $3 FOR UPDATE SKIP LOCKED
                 )"
            )),
            take_pending: s(format!("DELETE FROM {pending} WHERE state_hash = $1 RETURNING {pending_columns}")),
            // A row comes back if it inserted the lease, or updated it (same owner, expired, or absurdly far ahead:
            // see `lease_is_absurd`).
            try_lease: s(format!(
                "INSERT INTO {leases} (key, owner, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms \
                 WHERE {leases}.owner = excluded.owner OR {leases}.until_ms <= $4 OR {leases}.until_ms > 2 * $3 - $4 \
                 RETURNING key"
            )),
            release_lease: s(format!("DELETE FROM {leases} WHERE key = $1 AND owner = $2 RETURNING key")),
            append_event: s(format!("INSERT INTO {events} (connection_id, occurred_at_ms, body) VALUES ($1, $2, $3)")),
            events_since: s(format!("SELECT seq, body FROM {events} WHERE seq > $1 ORDER BY seq LIMIT $2")),
            history: s(format!("SELECT seq, body FROM {events} WHERE connection_id = $1 ORDER BY seq DESC LIMIT $2")),
            purge_events: s(format!("DELETE FROM {events} WHERE occurred_at_ms < $1")),
        }
    }
}

/// `sql` (in PostgreSQL's spelling, `{p}` standing for the table prefix) in the dialect's, for `prefix`.
fn spell<D: Dialect>(sql: String, prefix: &str) -> String {
    D::spell(sql).replace("{p}", prefix)
}

/// The store over one pool and one table prefix. Cloning shares the pool.
pub(crate) struct SqlStore<D: Dialect> {
    pub(super) pool: Pool<D::Db>,
    pub(super) prefix: String,
    sql: Arc<Statements>,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), prefix: self.prefix.clone(), sql: Arc::clone(&self.sql) }
    }
}

type Query<'q, D> = sqlx::query::Query<'q, <D as Dialect>::Db, <<D as Dialect>::Db as Database>::Arguments<'q>>;

/// Binds one value.
fn bind<'q, D: Dialect>(query: Query<'q, D>, cell: Cell) -> Query<'q, D>
where
    Option<String>: Encode<'q, D::Db> + Type<D::Db>,
    Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
{
    match cell {
        Cell::Text(t) => query.bind(t),
        Cell::Int(i) => query.bind(i),
    }
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> Option<String>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'r> Option<String>: Decode<'r, D::Db>,
    for<'r> Option<i64>: Decode<'r, D::Db>,
    for<'a> &'a str: ColumnIndex<<D::Db as Database>::Row>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// A store over `pool` with tables named by `prefix`, its schema brought up to date.
    pub(super) async fn new(pool: Pool<D::Db>, prefix: &str) -> Result<Self> {
        validate_prefix(&format!("{} table", D::NAME), prefix)?;
        let store = Self { pool, prefix: prefix.to_owned(), sql: Arc::new(Statements::new::<D>(prefix)) };
        store.migrate().await?;
        Ok(store)
    }

    /// Creates or upgrades the schema in one transaction that [`Dialect::before_migrating`] keeps apart from any
    /// other: concurrent openers (in any process) run it one after the other, and the later ones find nothing to do.
    async fn migrate(&self) -> Result<()> {
        let (name, prefix) = (D::NAME, self.prefix.as_str());
        let what = format!("migrating the {name} schema");
        let fail = |e| store_error(&what, e);
        let mut tx = self.pool.begin_with(D::BEGIN).await.map_err(fail)?;
        if !D::before_migrating(&mut tx, prefix).await? {
            let create = r#"CREATE TABLE IF NOT EXISTS "{p}_schema" (
                id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL
            )"#;
            (&mut *tx).execute(spell::<D>(create.to_owned(), prefix).as_str()).await.map_err(fail)?;
        }
        let current = sqlx::query(&format!(r#"SELECT version FROM "{prefix}_schema" WHERE id = 1"#))
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?
            .map(|row| row.try_get::<Option<i64>, usize>(0))
            .transpose()
            .map_err(fail)?
            .flatten()
            .unwrap_or(0);
        if current > SCHEMA_VERSION {
            return Err(Error::new(
                ErrorCode::StoreUnavailable,
                format!(
                    "the {name} token store's schema ({prefix}_schema) is version {current}, newer than this version \
                     of hubspot-connect knows ({SCHEMA_VERSION}): upgrade the crate"
                ),
            )
            .permanent());
        }
        if current < SCHEMA_VERSION {
            for statements in MIGRATIONS.iter().skip(usize::try_from(current).unwrap_or(0)) {
                for statement in *statements {
                    (&mut *tx).execute(spell::<D>((*statement).to_owned(), prefix).as_str()).await.map_err(fail)?;
                }
            }
            let upsert = r#"INSERT INTO "{p}_schema" (id, version) VALUES (1, $1)
                ON CONFLICT (id) DO UPDATE SET version = excluded.version"#;
            let upsert = spell::<D>(upsert.to_owned(), prefix);
            sqlx::query(&upsert).bind(Some(SCHEMA_VERSION)).execute(&mut *tx).await.map_err(fail)?;
        }
        // With nothing to do, this ends the transaction without having written anything.
        tx.commit().await.map_err(fail)
    }

    /// An error for a row that cannot be read back, naming the table, the row and the column (never a value).
    fn corrupt(table: &str, key: &str, column: &str, problem: &str) -> Error {
        Error::new(
            ErrorCode::StoreUnavailable,
            format!("the {} token store holds a {table} row{key} it cannot read: column {column}: {problem}", D::NAME),
        )
        .permanent()
    }

    /// Reads a record's columns from `row`.
    fn read_cell(row: &<D::Db as Database>::Row, column: &'static str, int: bool) -> sqlx::Result<Cell> {
        Ok(if int { Cell::Int(row.try_get(column)?) } else { Cell::Text(row.try_get(column)?) })
    }

    fn decode_connection(row: &<D::Db as Database>::Row) -> Result<Connection> {
        let key = match row.try_get::<Option<String>, _>("id") {
            Ok(Some(id)) => format!(" (id {id:?})"),
            _ => String::new(),
        };
        let corrupt = |column: &str, problem: &str| Self::corrupt("connection", &key, column, problem);
        let record = ConnectionRecord::read(
            |column, int| {
                Self::read_cell(row, column, int).map_err(|e| corrupt(column, "wrong type or NULL").with_source(e))
            },
            corrupt,
        )?;
        let version = row
            .try_get::<Option<i64>, _>("version")
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("version", "wrong type or NULL"))?;
        record.into_connection(from_i64(version)).map_err(|Bad { field, problem }| corrupt(field, problem))
    }

    fn decode_pending(row: &<D::Db as Database>::Row) -> Result<PendingAuthorization> {
        let corrupt = |column: &str, problem: &str| Self::corrupt("pending authorization", "", column, problem);
        let record = PendingRecord::read(
            |column, int| {
                Self::read_cell(row, column, int).map_err(|e| corrupt(column, "wrong type or NULL").with_source(e))
            },
            corrupt,
        )?;
        record.into_pending().map_err(|Bad { field, problem }| corrupt(field, problem))
    }

    /// `sql` with every column of `c` bound as `$1` (id) to `$20` (version).
    fn bind_connection<'q>(sql: &'q str, c: &Connection, version: u64) -> Result<Query<'q, D>> {
        let cells = ConnectionRecord::new(c).cells()?;
        let query = cells.into_iter().fold(sqlx::query(sql), bind::<D>);
        Ok(query.bind(Some(to_i64(version))))
    }

    /// Whether a conditional write (ending in `RETURNING`) wrote a row.
    async fn wrote(&self, query: Query<'_, D>) -> sqlx::Result<bool> {
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }

    pub(super) async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let row = sqlx::query(&self.sql.get)
            .bind(Some(id.as_str().to_owned()))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("reading a connection", e))?;
        row.as_ref().map(Self::decode_connection).transpose()
    }

    /// The insert's checks and write, inside the caller's transaction.
    async fn insert_in(
        &self,
        conn: &mut <D::Db as Database>::Connection,
        connection: &Connection,
        rules: InsertRules,
    ) -> Result<Inserted> {
        D::before_inserting(&mut *conn, &self.prefix, connection).await?;
        let tenant = Some(connection.tenant.clone());
        let portal = Some(to_i64(connection.portal_id));
        let same = sqlx::query(&self.sql.find_same)
            .bind(tenant.clone())
            .bind(portal)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| store_error("looking for the tenant's connection to the portal", e))?;
        if let Some(row) = same {
            return Ok(Inserted::Existing(Box::new(Self::decode_connection(&row)?)));
        }
        if !rules.allow_shared_portals {
            let fail = |e| store_error("looking for the portal's tenant", e);
            let owner = sqlx::query(&self.sql.find_portal_owner).bind(portal).fetch_optional(&mut *conn).await;
            if let Some(row) = owner.map_err(fail)? {
                let tenant = row.try_get::<Option<String>, usize>(0).map_err(fail)?.unwrap_or_default();
                return Ok(Inserted::PortalTaken { tenant });
            }
        }
        let fail = |e| store_error("counting the tenant's portals", e);
        let row = sqlx::query(&self.sql.count_held).bind(tenant).fetch_one(&mut *conn).await.map_err(fail)?;
        let held = row.try_get::<Option<i64>, usize>(0).map_err(fail)?.unwrap_or(0);
        let held = usize::try_from(held).unwrap_or(usize::MAX);
        if rules.max_portals.is_some_and(|max| held >= max) {
            return Ok(Inserted::LimitReached { held });
        }
        Self::bind_connection(&self.sql.insert, connection, 1)?
            .execute(&mut *conn)
            .await
            .map_err(|e| store_error("inserting a connection", e))?;
        Ok(Inserted::Created)
    }

    pub(super) async fn insert(
        &self,
        connection: &Connection,
        rules: InsertRules,
        events: &[Event],
    ) -> Result<Inserted> {
        let mut tx = self
            .pool
            .begin_with(D::BEGIN)
            .await
            .map_err(|e| store_error("starting a transaction to insert a connection", e))?;
        let inserted = match self.insert_in(&mut tx, connection, rules).await {
            Ok(Inserted::Created) => self.append_in(&mut tx, events).await.map(|()| Inserted::Created),
            other => other,
        };
        match inserted {
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

    pub(super) async fn compare_and_swap(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        let Some(expected) = next.version.checked_sub(1) else { return Ok(false) };
        if events.is_empty() {
            // One statement, no transaction.
            let query =
                Self::bind_connection(&self.sql.compare_and_swap, next, next.version)?.bind(Some(to_i64(expected)));
            return self.wrote(query).await.map_err(|e| store_error("updating a connection", e));
        }
        let sql = self.with_appends(&self.sql.compare_and_swap, ConnectionRecord::COLUMNS.len() + 3, events.len());
        let query = Self::bind_connection(&sql, next, next.version)?.bind(Some(to_i64(expected)));
        self.write_with_events(query, events, "updating a connection").await
    }

    pub(super) async fn delete(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        if events.is_empty() {
            let query = sqlx::query(&self.sql.delete).bind(Some(id.as_str().to_owned()));
            return self.wrote(query).await.map_err(|e| store_error("deleting a connection", e));
        }
        let sql = self.with_appends(&self.sql.delete, 2, events.len());
        let query = sqlx::query(&sql).bind(Some(id.as_str().to_owned()));
        self.write_with_events(query, events, "deleting a connection").await
    }

    /// `write` (a conditional write ending in `RETURNING`, its parameters numbered below `first`) as one query that
    /// also appends `n` events (parameters from `first` on, three each) if, and only if, it wrote, in one
    /// transaction, where the dialect runs several statements in one query; `write` itself otherwise.
    fn with_appends(&self, write: &str, first: usize, n: usize) -> String {
        let rows: Vec<String> = (0..n)
            .map(|k| {
                let p = first + 3 * k;
                format!("({k}, ${p}, ${}, ${})", p + 1, p + 2)
            })
            .collect();
        if let Some(lock) = D::append_lock(&self.prefix) {
            // One statement: the write, then (only if it returned a row) the lock, then the appends, which read the
            // lock's row so they take their sequence numbers after it; `ORDER BY` keeps the events' order. The
            // write is spelled already and has its prefix.
            let sql = format!(
                r#"WITH w AS ({write}),
                   l AS (SELECT {lock} AS locked FROM (SELECT 1 FROM w LIMIT 1) AS one),
                   a AS (INSERT INTO "{{p}}_events" (connection_id, occurred_at_ms, body)
                         SELECT v.c, v.t, v.b FROM (VALUES {}) AS v(o, c, t, b) CROSS JOIN l ORDER BY v.o
                         RETURNING 1)
                   SELECT 1 FROM w"#,
                rows.join(", ")
            );
            return spell::<D>(sql, &self.prefix);
        }
        if !D::MULTI_STATEMENT {
            return write.to_owned();
        }
        // One statement for every event (sqlx numbers the gaps before a statement's first parameter across
        // statements, so a second statement's parameters would be misread). `changes()`: the rows the write changed,
        // so nothing is appended after a lost compare-and-swap; `ORDER BY` keeps the events' order.
        let append = format!(
            r#"INSERT INTO "{{p}}_events" (connection_id, occurred_at_ms, body) SELECT column2, column3, column4
               FROM (VALUES {}) WHERE changes() = 1 ORDER BY column1"#,
            rows.join(", ")
        );
        format!("{}; {write}; {}; COMMIT", D::BEGIN, spell::<D>(append, &self.prefix))
    }

    /// A conditional write (ending in `RETURNING`) and, if it wrote, `events`, in one transaction: one query built
    /// by [`SqlStore::with_appends`] where the dialect allows, otherwise a transaction of several.
    async fn write_with_events(&self, query: Query<'_, D>, events: &[Event], what: &str) -> Result<bool> {
        let fail = |e| store_error(what, e);
        if D::MULTI_STATEMENT || D::append_lock(&self.prefix).is_some() {
            let mut query = query;
            for event in events {
                let (id, at, body) = Self::event_cells(event)?;
                query = query.bind(id).bind(at).bind(body);
            }
            let mut conn = Unfinished(Some(self.pool.acquire().await.map_err(fail)?));
            let Some(c) = conn.0.as_mut() else { return Err(Error::new(ErrorCode::StoreUnavailable, "no connection")) };
            return match query.fetch_all(&mut **c).await {
                Ok(rows) => {
                    conn.finish();
                    Ok(!rows.is_empty())
                }
                Err(e) => {
                    // The query stopped part way: end its transaction (else the connection is closed on drop).
                    if (&mut **c).execute("ROLLBACK").await.is_ok() {
                        conn.finish();
                    }
                    Err(fail(e))
                }
            };
        }
        let mut tx = self.pool.begin_with(D::BEGIN).await.map_err(fail)?;
        let wrote = query.fetch_optional(&mut *tx).await.map_err(fail)?.is_some();
        if !wrote {
            tx.rollback().await.map_err(fail)?;
            return Ok(false);
        }
        if let Err(e) = self.append_in(&mut tx, events).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        tx.commit().await.map_err(fail)?;
        Ok(true)
    }

    /// Appends `events` inside the caller's transaction.
    async fn append_in(&self, conn: &mut <D::Db as Database>::Connection, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        D::before_appending(&mut *conn, &self.prefix).await?;
        for event in events {
            let (id, at, body) = Self::event_cells(event)?;
            sqlx::query(&self.sql.append_event)
                .bind(id)
                .bind(at)
                .bind(body)
                .execute(&mut *conn)
                .await
                .map_err(|e| store_error("appending an event", e))?;
        }
        Ok(())
    }

    /// An event's columns: its connection, when it occurred, its JSON.
    fn event_cells(event: &Event) -> Result<(Option<String>, Option<i64>, Option<String>)> {
        // serde_json's error for an event never quotes a value.
        let body = serde_json::to_string(event).map_err(|e| store_error("encoding an event", e))?;
        Ok((event.connection_id.as_ref().map(|id| id.as_str().to_owned()), Some(to_ms(event.occurred_at)), Some(body)))
    }

    pub(super) async fn append_events(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let fail = |e| store_error("appending events", e);
        let mut tx = self.pool.begin_with(D::BEGIN).await.map_err(fail)?;
        if let Err(e) = self.append_in(&mut tx, events).await {
            let _ = tx.rollback().await;
            return Err(e);
        }
        tx.commit().await.map_err(fail)
    }

    fn decode_event(row: &<D::Db as Database>::Row) -> Result<LoggedEvent> {
        let corrupt = |column: &str, problem: &str| Self::corrupt("event", "", column, problem);
        let seq =
            row.try_get::<Option<i64>, _>("seq").ok().flatten().ok_or_else(|| corrupt("seq", "wrong type or NULL"))?;
        let body = row
            .try_get::<Option<String>, _>("body")
            .ok()
            .flatten()
            .ok_or_else(|| corrupt("body", "wrong type or NULL"))?;
        let event = serde_json::from_str(&body).map_err(|_| corrupt("body", "not an event's JSON"))?;
        Ok(LoggedEvent::new(EventCursor::from_position(from_i64(seq)), event))
    }

    pub(super) async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(&self.sql.events_since)
            .bind(Some(to_i64(cursor.position())))
            .bind(Some(i64::try_from(limit).unwrap_or(i64::MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("reading events", e))?;
        rows.iter().map(Self::decode_event).collect()
    }

    pub(super) async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        let rows = sqlx::query(&self.sql.history)
            .bind(Some(id.as_str().to_owned()))
            .bind(Some(i64::try_from(limit).unwrap_or(i64::MAX)))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| store_error("reading a connection's events", e))?;
        let mut events = rows.iter().map(Self::decode_event).collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    pub(super) async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
        let done = sqlx::query(&self.sql.purge_events)
            .bind(Some(to_ms(older_than)))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("purging old events", e))?;
        Ok(D::rows_affected(&done))
    }

    pub(super) async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(tenant) = &filter.tenant {
            values.push(Cell::Text(Some(tenant.clone())));
            conditions.push(format!("tenant = ${}", values.len()));
        }
        if let Some(portal) = filter.portal_id {
            values.push(Cell::Int(Some(to_i64(portal))));
            conditions.push(format!("portal_id = ${}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(Cell::Text(Some(status.as_str().to_owned())));
            conditions.push(format!("status = ${}", values.len()));
        }
        if let Some(user) = &filter.installed_by {
            values.push(Cell::Text(Some(user.clone())));
            // lower() under the "C" collation folds ASCII letters only, like `eq_ignore_ascii_case`.
            conditions.push(format!(r#"lower(installed_by COLLATE "C") = lower(${} COLLATE "C")"#, values.len()));
        }
        let mut sql = self.sql.list.clone();
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&D::spell(conditions.join(" AND ")));
        }
        sql.push_str(" ORDER BY id");
        let query = values.into_iter().fold(sqlx::query(&sql), bind::<D>);
        let rows = query.fetch_all(&self.pool).await.map_err(|e| store_error("listing connections", e))?;
        rows.iter().map(Self::decode_connection).collect()
    }

    pub(super) async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        let cells = PendingRecord::new(&pending).cells()?;
        let fail = |e| store_error("storing a pending authorization", e);
        let state_hash = Some(pending.state_hash.clone());
        let mut tx = self.pool.begin_with(D::BEGIN).await.map_err(fail)?;
        // Purge what expired long enough ago, so abandoned authorizations do not pile up.
        let horizon = pending.created_at.checked_sub(PENDING_GRACE).map(to_ms);
        sqlx::query(&self.sql.purge_pending)
            .bind(horizon)
            .bind(state_hash.clone())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        cells.into_iter().fold(sqlx::query(&self.sql.put_pending), bind::<D>).execute(&mut *tx).await.map_err(fail)?;
        // At most MAX_PENDING_PER_TENANT per tenant: the newest are kept.
        sqlx::query(&self.sql.cap_pending)
            .bind(Some(pending.tenant.clone()))
            .bind(state_hash)
            .bind(Some(i64::try_from(MAX_PENDING_PER_TENANT.saturating_sub(1)).unwrap_or(i64::MAX)))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)
    }

    pub(super) async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        // One statement: of any number of concurrent takers, only one deletes the row and gets it back.
        let row = sqlx::query(&self.sql.take_pending)
            .bind(Some(state_hash.to_owned()))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("taking a pending authorization", e))?;
        row.as_ref().map(Self::decode_pending).transpose()
    }

    pub(super) async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        let until = saturating_add(now, ttl);
        // One statement, see `Statements::try_lease`.
        let query = sqlx::query(&self.sql.try_lease)
            .bind(Some(key.to_owned()))
            .bind(Some(owner.to_owned()))
            .bind(Some(to_ms(until)))
            .bind(Some(to_ms(now)));
        self.wrote(query).await.map_err(|e| store_error("taking a lease", e))
    }

    pub(super) async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        let query = sqlx::query(&self.sql.release_lease).bind(Some(key.to_owned())).bind(Some(owner.to_owned()));
        self.wrote(query).await.map_err(|e| store_error("releasing a lease", e))
    }
}

/// A pooled connection running a query that opens and closes its own transaction: closed instead of going back to
/// the pool unless [`Unfinished::finish`] says the transaction ended (a caller dropped part way through must not
/// leave an open transaction in the pool).
struct Unfinished<DB: Database>(Option<sqlx::pool::PoolConnection<DB>>);

impl<DB: Database> Unfinished<DB> {
    /// The transaction ended: the connection goes back to the pool.
    fn finish(&mut self) {
        drop(self.0.take());
    }
}

impl<DB: Database> Drop for Unfinished<DB> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// A public store type over [`SqlStore`]: the struct, its constants and constructors (with the docs given), `Debug`,
/// `pool`, `prefix`, `close`, and the four store traits. Invoked where the docs' links resolve (`ErrorCode` in scope).
macro_rules! sql_store {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($dialect:ty, $pool:ty);
        $(#[$open_doc:meta])*
        fn $open:ident($arg:ident);
        $(#[$with_prefix_doc:meta])*
        fn $with_prefix:ident($arg2:ident, prefix) via $connect:path;
        $(#[$from_pool_doc:meta])*
        fn from_pool;
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name($crate::store::sql::SqlStore<$dialect>);

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($name)).field("prefix", &self.0.prefix).field("pool", &self.0.pool).finish()
            }
        }

        impl $name {
            #[doc = concat!("The table prefix [`", stringify!($name), "::", stringify!($open), "`] uses.")]
            pub const DEFAULT_PREFIX: &'static str = "hubconnect";

            /// The schema version this crate writes (kept in the `{prefix}_schema` table).
            pub const SCHEMA_VERSION: i64 = $crate::store::sql::SCHEMA_VERSION;

            $(#[$open_doc])*
            pub async fn $open($arg: &str) -> $crate::error::Result<Self> {
                Self::$with_prefix($arg, Self::DEFAULT_PREFIX).await
            }

            $(#[$with_prefix_doc])*
            pub async fn $with_prefix($arg2: &str, prefix: &str) -> $crate::error::Result<Self> {
                $crate::store::record::validate_prefix(
                    &format!("{} table", <$dialect as $crate::store::sql::Dialect>::NAME),
                    prefix,
                )?;
                Self::from_pool($connect($arg2).await?, prefix).await
            }

            $(#[$from_pool_doc])*
            pub async fn from_pool(pool: $pool, prefix: &str) -> $crate::error::Result<Self> {
                $crate::store::sql::SqlStore::new(pool, prefix).await.map(Self)
            }

            /// The connection pool, to share with the rest of an app or to inspect the tables.
            pub fn pool(&self) -> &$pool {
                &self.0.pool
            }

            /// The table prefix.
            pub fn prefix(&self) -> &str {
                &self.0.prefix
            }

            /// Closes the pool (every clone's too) after the calls under way finish (SQLite checkpoints the WAL into
            /// the file then). Calls made after this fail with [`ErrorCode::StoreUnavailable`].
            pub async fn close(&self) {
                self.0.pool.close().await;
            }
        }

        // The four store traits, forwarded to the store (with the imports they need kept in this block).
        const _: () = {
            use ::std::time::{Duration, SystemTime};
            use $crate::connection::{Connection, ConnectionId, PendingAuthorization};
            use $crate::error::Result;
            use $crate::event::{Event, EventCursor, LoggedEvent};
            use $crate::store::{
                ConnectionFilter, ConnectionStore, EventStore, InsertRules, Inserted, LeaseStore, PendingStore,
            };

            #[::async_trait::async_trait]
            impl ConnectionStore for $name {
                async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
                    self.0.get(id).await
                }
                async fn insert_with_events(
                    &self,
                    new: &Connection,
                    rules: InsertRules,
                    events: &[Event],
                ) -> Result<Inserted> {
                    self.0.insert(new, rules, events).await
                }
                async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
                    self.0.compare_and_swap(next, events).await
                }
                async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
                    self.0.delete(id, events).await
                }
                async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
                    self.0.list(filter).await
                }
            }

            #[::async_trait::async_trait]
            impl PendingStore for $name {
                async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
                    self.0.put_pending(pending).await
                }
                async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
                    self.0.take_pending(state_hash).await
                }
            }

            #[::async_trait::async_trait]
            impl EventStore for $name {
                async fn append_events(&self, events: &[Event]) -> Result<()> {
                    self.0.append_events(events).await
                }
                async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
                    self.0.events_since(cursor, limit).await
                }
                async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
                    self.0.history(id, limit).await
                }
                async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
                    self.0.purge_events(older_than).await
                }
            }

            #[::async_trait::async_trait]
            impl LeaseStore for $name {
                async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
                    self.0.try_lease(key, owner, ttl, now).await
                }
                async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
                    self.0.release_lease(key, owner).await
                }
            }
        };
    };
}
pub(super) use sql_store;
