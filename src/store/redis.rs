//! The Redis store: connections, pending authorizations and refresh leases in Redis, shared by any number of
//! processes. What it promises is on [`RedisStore`], which is public at `crate::store::RedisStore` (this module is
//! private).

use std::fmt;
use std::time::{Duration, SystemTime};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Script, ScriptInvocation};
use async_trait::async_trait;

use super::record::{Bad, ConnectionRecord, PendingRecord, to_ms, validate_prefix};
use super::{
    ConnectionFilter, ConnectionStore, EventStore, InsertRules, Inserted, LeaseStore, PendingStore, store_error,
};
use crate::clock::saturating_add;
use crate::connection::{Connection, ConnectionId, PendingAuthorization};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Event, EventCursor, LoggedEvent};

use super::PENDING_GRACE;

/// Stores a pending authorization and keeps its tenant's newest `ARGV[4]` (a sorted set of the tenant's state hashes
/// by creation time, `KEYS[2]`). KEYS[1] the record's key; ARGV: record, its lifetime in ms, created ms, the most
/// kept, the record keys' prefix, the state hash.
const PUT_PENDING: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[6])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  for _, hash in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    if hash ~= ARGV[6] then
      redis.call('DEL', ARGV[5] .. hash)
    end
    redis.call('ZREM', KEYS[2], hash)
  end
end
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"#;

/// How long a lease key outlives its own `until` before Redis deletes it (a lease's validity is its stored `until`,
/// compared with the caller's clock; the key's expiry only cleans up after owners that never released).
const LEASE_GRACE: Duration = Duration::from_secs(60);

/// Connections, pending authorizations and leases in Redis (feature `redis`).
///
/// What it promises:
///
/// - **Atomic rules, in Lua.** Every write that must hold across workers is one Lua script, which Redis runs with
///   nothing else in between: an insert checks "one portal, one tenant" and the portal limit and writes the
///   connection and its indexes; compare-and-swap compares the stored version and writes; a lease is taken only if
///   it is free, expired or already the caller's; a lease is released only by its owner. Taking a pending
///   authorization is one `GETDEL`. Any number of processes with a `RedisStore` on the same Redis (and prefix)
///   behave like workers sharing one store.
/// - **Durability: your Redis's.** A call returns `Ok` once Redis applied the write in memory. Whether it survives a
///   restart depends on the server's persistence: with no persistence (the default of many installs) a restart
///   loses every connection, so every customer must reconnect; with `appendonly yes` and `appendfsync everysec`,
///   about a second of writes can be lost; with `appendfsync always`, none. With replicas, a failover can lose what
///   was not yet replicated (`WAIT` is not used). Run Redis with AOF persistence if it is your only copy of the
///   tokens; a lost refresh token means a reconnect.
/// - **Its own keys.** Every key starts with `{prefix}:` (`{hubconnect}:` by default, see
///   [`RedisStore::connect_with_prefix`]): the braces are a Redis Cluster hash tag, so every key of one store lives
///   in one slot and the scripts can touch them together. The keys are `…:c:{id}` (a connection: a hash with its
///   version, tenant, portal and record), `…:t:{tenant}` and `…:p:{portal}` (the indexes the rules use), `…:ids`
///   (a sorted set of every id, for listing), `…:s:{state hash}` (a pending authorization, expiring an hour after the
///   authorization does), `…:sp:{tenant}` (a tenant's pending authorizations by age, to keep at most
///   [`MAX_PENDING_PER_TENANT`](super::MAX_PENDING_PER_TENANT)) and `…:l:{key}` (a lease, expiring a minute after the
///   lease does).
/// - **Listing reads the indexes.** [`ConnectionStore::list`] reads the ids from the tenant or portal index when the
///   filter names one (else from `…:ids`), then the records in one `MULTI`; the other filters apply in memory. It is
///   meant for dashboards and sweeps over thousands of connections, not millions.
/// - **No panics on bad data.** A record that cannot be read back (broken JSON, an unknown status) is an
///   [`ErrorCode::StoreUnavailable`] error naming the key's kind and the field, never the value.
///
/// Tokens are stored as plain text: restrict who can reach the server (`requirepass` or ACLs, TLS), or wrap the
/// store in [`EncryptedStore`](super::EncryptedStore). This crate builds the `redis` client without TLS; for
/// `rediss://` enable a TLS feature of the `redis` crate in your own `Cargo.toml`.
///
/// Times are stored as Unix milliseconds (sub-millisecond parts are dropped).
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> hubspot_connect::Result<()> {
/// use std::time::{Duration, UNIX_EPOCH};
/// use hubspot_connect::store::{ConnectionStore, InsertRules, Inserted, LeaseStore, RedisStore};
/// use hubspot_connect::{AccessToken, Connection, RefreshToken};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
/// let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
/// let connection =
///     Connection::new("acme", 12345, AccessToken::new("at"), Some(RefreshToken::new("rt")), None, now);
/// assert_eq!(store.insert(&connection, InsertRules::default()).await?, Inserted::Created);
///
/// let next = store.get(&connection.id).await?.expect("just inserted").next_version(now);
/// assert!(store.compare_and_swap(&next).await?);
/// assert!(!store.compare_and_swap(&next).await?); // stale now
///
/// assert!(store.try_lease("refresh:acme", "worker-1", Duration::from_secs(30), now).await?);
/// assert!(!store.try_lease("refresh:acme", "worker-2", Duration::from_secs(30), now).await?);
/// # Ok(())
/// # }
/// ```
///
/// Cloning is cheap and shares the connection (a multiplexed [`ConnectionManager`] that reconnects by itself).
/// `Debug` shows the prefix only, never the URL, its password or a token.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// `{prefix}:`, the start of every key.
    base: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix [`RedisStore::connect`] uses.
    pub const DEFAULT_PREFIX: &'static str = "hubconnect";

    /// Connects to Redis at `url` (`redis://[:password@]host:6379[/db]`, any form the `redis` crate parses) with the
    /// default prefix. Connecting and every command time out after 5 seconds; a dropped connection is re-established
    /// by itself. The URL is never logged nor put in an error.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] for a malformed URL, [`ErrorCode::StoreUnavailable`] when Redis does not answer.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_prefix(url, Self::DEFAULT_PREFIX).await
    }

    /// Like [`RedisStore::connect`], with every key under `{prefix}:`, so several apps (or test runs) share one Redis.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] unless `prefix` is 1 to 32 ASCII letters, digits or underscores; otherwise as
    /// [`RedisStore::connect`].
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self> {
        validate_prefix("Redis key", prefix)?;
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, "empty Redis URL for the token store"));
        }
        // The parse error is not attached: its text may quote the URL, password included.
        let client = ::redis::Client::open(trimmed)
            .map_err(|_| Error::new(ErrorCode::InvalidConfig, "invalid Redis URL for the token store"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| store_error("connecting to Redis", e))?;
        Self::from_connection(conn, prefix)
    }

    /// A store over a connection manager you configured yourself, with keys under `{prefix}:`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] for an invalid prefix (see [`RedisStore::connect_with_prefix`]).
    pub fn from_connection(conn: ConnectionManager, prefix: &str) -> Result<Self> {
        validate_prefix("Redis key", prefix)?;
        Ok(Self { conn, prefix: prefix.to_owned(), base: format!("{{{prefix}}}:") })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection, to share with the rest of an app or to inspect the keys.
    pub fn connection(&self) -> &ConnectionManager {
        &self.conn
    }

    /// Deletes every key of this store's prefix (every connection, pending authorization and lease), with `SCAN`
    /// and `UNLINK`; returns how many keys went. For tests and for an app's uninstall, never while workers run.
    ///
    /// # Errors
    /// [`ErrorCode::StoreUnavailable`] when Redis fails.
    pub async fn clear(&self) -> Result<usize> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.base));
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| store_error("listing the store's keys", e))?;
            if !keys.is_empty() {
                let n: usize = conn.unlink(&keys).await.map_err(|e| store_error("deleting the store's keys", e))?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// `script` with the keys of `c`: its record, its tenant's index and its portal's index.
    fn keyed<'a>(&self, script: &'a Script, c: &Connection) -> ScriptInvocation<'a> {
        let mut invocation = script.key(self.connection_key(c.id.as_str()));
        invocation.key(self.tenant_key(&c.tenant)).key(self.portal_key(c.portal_id));
        invocation
    }

    fn connection_key(&self, id: &str) -> String {
        format!("{}c:{id}", self.base)
    }

    fn tenant_key(&self, tenant: &str) -> String {
        format!("{}t:{tenant}", self.base)
    }

    fn portal_key(&self, portal_id: u64) -> String {
        format!("{}p:{portal_id}", self.base)
    }

    fn ids_key(&self) -> String {
        format!("{}ids", self.base)
    }

    fn pending_key(&self, state_hash: &str) -> String {
        format!("{}s:{state_hash}", self.base)
    }

    fn tenant_pending_key(&self, tenant: &str) -> String {
        format!("{}sp:{tenant}", self.base)
    }

    fn lease_key(&self, key: &str) -> String {
        format!("{}l:{key}", self.base)
    }
}

/// `pattern` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Lua function that appends events, put in front of every script that writes them. The log is a sorted set
/// `{base}ev` (score: the sequence number from `INCR {base}evseq`; member: `{seq}|{occurred ms}|{event JSON}`),
/// and each connection's events are also in `{base}evc:{id}`. Events come as argument pairs (connection id or "",
/// `{occurred ms}|{event JSON}`) from `ARGV[first]` on.
macro_rules! lua_append {
    () => {
        r#"
local function append(base, first)
  for i = first, #ARGV - 1, 2 do
    local seq = redis.call('INCR', base .. 'evseq')
    local member = string.format('%d', seq) .. '|' .. ARGV[i + 1]
    redis.call('ZADD', base .. 'ev', seq, member)
    if ARGV[i] ~= '' then redis.call('ZADD', base .. 'evc:' .. ARGV[i], seq, member) end
  end
end
"#
    };
}

/// KEYS: connection, tenant index, portal index, ids. ARGV: id, tenant, portal, record, shared ("1"/"0"), max
/// portals ("" for none), the connection key prefix, the key base, then the events (see [`lua_append`]).
const INSERT: &str = concat!(
    lua_append!(),
    r#"
local same = redis.call('HGET', KEYS[2], ARGV[3])
if same then
  local record = redis.call('HMGET', ARGV[7] .. same, 'v', 'd')
  if record[1] and record[2] then return {'existing', record[1], record[2]} end
end
if ARGV[5] ~= '1' then
  local owners = redis.call('HKEYS', KEYS[3])
  table.sort(owners)
  for _, tenant in ipairs(owners) do
    if tenant ~= ARGV[2] then return {'taken', tenant} end
  end
end
local held = redis.call('HLEN', KEYS[2])
if ARGV[6] ~= '' and held >= tonumber(ARGV[6]) then return {'limit', tostring(held)} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'duplicate'} end
redis.call('HSET', KEYS[1], 'v', '1', 't', ARGV[2], 'p', ARGV[3], 'd', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
append(ARGV[8], 9)
return {'created'}
"#
);

/// KEYS: connection, the new tenant index, the new portal index. ARGV: expected version, next version, tenant,
/// portal, record, id, the key base (`{prefix}:`), then the events (see [`lua_append`]).
const COMPARE_AND_SWAP: &str = concat!(
    lua_append!(),
    r#"
local cur = redis.call('HMGET', KEYS[1], 'v', 't', 'p')
if not cur[1] or cur[1] ~= ARGV[1] then return 0 end
if cur[2] ~= ARGV[3] or cur[3] ~= ARGV[4] then
  if cur[2] and cur[3] then
    redis.call('HDEL', ARGV[7] .. 't:' .. cur[2], cur[3])
    redis.call('HDEL', ARGV[7] .. 'p:' .. cur[3], cur[2])
  end
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[3], ARGV[6])
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', ARGV[3], 'p', ARGV[4], 'd', ARGV[5])
append(ARGV[7], 8)
return 1
"#
);

/// KEYS: connection, ids. ARGV: id, the key base, then the events (see [`lua_append`]).
const DELETE: &str = concat!(
    lua_append!(),
    r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HMGET', KEYS[1], 't', 'p')
redis.call('DEL', KEYS[1])
if cur[1] and cur[2] then
  local t = ARGV[2] .. 't:' .. cur[1]
  if redis.call('HGET', t, cur[2]) == ARGV[1] then redis.call('HDEL', t, cur[2]) end
  local p = ARGV[2] .. 'p:' .. cur[2]
  if redis.call('HGET', p, cur[1]) == ARGV[1] then redis.call('HDEL', p, cur[1]) end
end
redis.call('ZREM', KEYS[2], ARGV[1])
append(ARGV[2], 3)
return 1
"#
);

/// ARGV: the key base, then the events (see [`lua_append`]).
const APPEND: &str = concat!(lua_append!(), "append(ARGV[1], 2)\nreturn 1\n");

/// KEYS: the log. ARGV: the key base, the horizon (ms), the most to remove. Removes the oldest events while they
/// occurred before the horizon (the log is in append order, which is time order up to the writers' clocks).
const PURGE_EVENTS: &str = r#"
local removed = 0
local horizon = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
while removed < most do
  local batch = redis.call('ZRANGE', KEYS[1], 0, 99)
  if #batch == 0 then return removed end
  for _, m in ipairs(batch) do
    local ms, body = string.match(m, '^%d+|(-?%d+)|(.*)$')
    if ms and tonumber(ms) >= horizon then return removed end
    redis.call('ZREM', KEYS[1], m)
    if body then
      local ok, event = pcall(cjson.decode, body)
      if ok and type(event) == 'table' and type(event.connection_id) == 'string' then
        redis.call('ZREM', ARGV[1] .. 'evc:' .. event.connection_id, m)
      end
    end
    removed = removed + 1
  end
end
return removed
"#;

/// KEYS: lease. ARGV: owner, until (ms), now (ms), key expiry (ms).
const TRY_LEASE: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'o', 'u')
if cur[1] and cur[1] ~= ARGV[1] then
  local until_ms = tonumber(cur[2])
  local now_ms = tonumber(ARGV[3])
  -- Held unless expired, or absurdly far ahead (more than twice the asked time to live: a clock that ran ahead).
  if until_ms and until_ms > now_ms and until_ms <= 2 * tonumber(ARGV[2]) - now_ms then return 0 end
end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 'u', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"#;

/// KEYS: lease. ARGV: owner.
const RELEASE_LEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

fn corrupt(what: &str, detail: impl fmt::Display) -> Error {
    Error::new(ErrorCode::StoreUnavailable, format!("a stored {what} cannot be read: {detail}")).permanent()
}

/// A stored record's JSON. The JSON error is not attached: its text can quote part of the record, a token included.
fn parse_record<T: serde::de::DeserializeOwned>(what: &str, record: &str) -> Result<T> {
    serde_json::from_str(record).map_err(|e| {
        corrupt(what, format_args!("invalid JSON at line {} column {} ({:?})", e.line(), e.column(), e.classify()))
    })
}

fn encode_connection(c: &Connection) -> Result<String> {
    // serde_json's error for this struct never quotes a value.
    serde_json::to_string(&ConnectionRecord::new(c)).map_err(|e| store_error("encoding a connection", e))
}

fn decode_connection(version: &str, record: &str) -> Result<Connection> {
    const WHAT: &str = "connection";
    let version: u64 = version.parse().map_err(|_| corrupt(WHAT, "its version is not a number"))?;
    let s: ConnectionRecord = parse_record(WHAT, record)?;
    // Only an id of the crate's own shape is named: an error never quotes what a damaged record holds.
    let own_id = s.id.len() <= 64
        && s.id
            .strip_prefix("hc_")
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let id = if own_id { format!("{:?}", s.id) } else { "(an id of another shape)".to_owned() };
    s.into_connection(version).map_err(|Bad { field, problem }| corrupt(WHAT, format_args!("{id}: {field}: {problem}")))
}

fn encode_pending(p: &PendingAuthorization) -> Result<String> {
    serde_json::to_string(&PendingRecord::new(p)).map_err(|e| store_error("encoding a pending authorization", e))
}

fn decode_pending(record: &str) -> Result<PendingAuthorization> {
    const WHAT: &str = "pending authorization";
    let s: PendingRecord = parse_record(WHAT, record)?;
    s.into_pending().map_err(|Bad { field, problem }| corrupt(WHAT, format_args!("{field}: {problem}")))
}

/// Milliseconds for `PEXPIRE`/`PX`: at least 1, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl ConnectionStore for RedisStore {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let mut conn = self.conn.clone();
        let (version, record): (Option<String>, Option<String>) = conn
            .hmget(self.connection_key(id.as_str()), &["v", "d"])
            .await
            .map_err(|e| store_error("reading a connection", e))?;
        match (version, record) {
            (Some(v), Some(d)) => decode_connection(&v, &d).map(Some),
            _ => Ok(None),
        }
    }

    async fn insert_with_events(&self, new: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        let record = encode_connection(new)?;
        let events = encode_events(events)?;
        let mut conn = self.conn.clone();
        let script = Script::new(INSERT);
        let mut invocation = self.keyed(&script, new);
        invocation.key(self.ids_key());
        let shared = if rules.allow_shared_portals { "1" } else { "0" };
        let max_portals = rules.max_portals.map(|m| m.to_string()).unwrap_or_default();
        let portal = new.portal_id.to_string();
        let base = format!("{}c:", self.base);
        for arg in [new.id.as_str(), &new.tenant, &portal, &record, shared, &max_portals, &base] {
            invocation.arg(arg);
        }
        invocation.arg(&self.base);
        for arg in &events {
            invocation.arg(arg);
        }
        let reply: Vec<String> =
            invocation.invoke_async(&mut conn).await.map_err(|e| store_error("inserting a connection", e))?;
        match reply.as_slice() {
            [created] if created == "created" => Ok(Inserted::Created),
            [existing, v, d] if existing == "existing" => Ok(Inserted::Existing(Box::new(decode_connection(v, d)?))),
            [taken, tenant] if taken == "taken" => Ok(Inserted::PortalTaken { tenant: tenant.clone() }),
            [limit, held] if limit == "limit" => {
                Ok(Inserted::LimitReached { held: held.parse().unwrap_or(usize::MAX) })
            }
            [duplicate] if duplicate == "duplicate" => Err(Error::new(
                ErrorCode::StoreUnavailable,
                format!("a connection with id {:?} is already stored", new.id.as_str()),
            )
            .permanent()),
            _ => Err(corrupt("script reply", "the insert script answered in an unknown shape")),
        }
    }

    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        let Some(expected) = next.version.checked_sub(1) else { return Ok(false) };
        let record = encode_connection(next)?;
        let events = encode_events(events)?;
        let mut conn = self.conn.clone();
        let script = Script::new(COMPARE_AND_SWAP);
        let mut invocation = self.keyed(&script, next);
        invocation
            .arg(expected.to_string())
            .arg(next.version.to_string())
            .arg(&next.tenant)
            .arg(next.portal_id.to_string())
            .arg(record)
            .arg(next.id.as_str())
            .arg(&self.base);
        for arg in &events {
            invocation.arg(arg);
        }
        let swapped: i64 =
            invocation.invoke_async(&mut conn).await.map_err(|e| store_error("updating a connection", e))?;
        Ok(swapped == 1)
    }

    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        let events = encode_events(events)?;
        let mut conn = self.conn.clone();
        let script = Script::new(DELETE);
        let mut invocation = script.key(self.connection_key(id.as_str()));
        invocation.key(self.ids_key()).arg(id.as_str()).arg(&self.base);
        for arg in &events {
            invocation.arg(arg);
        }
        let deleted: i64 =
            invocation.invoke_async(&mut conn).await.map_err(|e| store_error("deleting a connection", e))?;
        Ok(deleted == 1)
    }

    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        let mut conn = self.conn.clone();
        let fail = |e| store_error("listing connections", e);
        let ids: Vec<String> = match (&filter.tenant, filter.portal_id) {
            (Some(tenant), Some(portal)) => {
                let id: Option<String> = conn.hget(self.tenant_key(tenant), portal.to_string()).await.map_err(fail)?;
                id.into_iter().collect()
            }
            (Some(tenant), None) => conn.hvals(self.tenant_key(tenant)).await.map_err(fail)?,
            (None, Some(portal)) => conn.hvals(self.portal_key(portal)).await.map_err(fail)?,
            (None, None) => conn.zrange(self.ids_key(), 0, -1).await.map_err(fail)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for id in &ids {
            pipe.hmget(self.connection_key(id), &["v", "d"]);
        }
        let records: Vec<(Option<String>, Option<String>)> = pipe.query_async(&mut conn).await.map_err(fail)?;
        let mut found = Vec::with_capacity(records.len());
        for record in records {
            // Deleted since the ids were read: not listed.
            if let (Some(v), Some(d)) = record {
                let c = decode_connection(&v, &d)?;
                if filter.matches(&c) {
                    found.push(c);
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }
}

#[async_trait]
impl EventStore for RedisStore {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events = encode_events(events)?;
        let mut conn = self.conn.clone();
        let script = Script::new(APPEND);
        let mut invocation = script.arg(&self.base);
        for arg in &events {
            invocation.arg(arg);
        }
        let _: i64 = invocation.invoke_async(&mut conn).await.map_err(|e| store_error("appending events", e))?;
        Ok(())
    }

    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = ::redis::cmd("ZRANGEBYSCORE")
            .arg(format!("{}ev", self.base))
            .arg(format!("({}", cursor.position()))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(-1))
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("reading events", e))?;
        members.iter().map(|m| decode_event(m)).collect()
    }

    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = ::redis::cmd("ZREVRANGEBYSCORE")
            .arg(format!("{}evc:{}", self.base, id.as_str()))
            .arg("+inf")
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(i64::try_from(limit).unwrap_or(-1))
            .query_async(&mut conn)
            .await
            .map_err(|e| store_error("reading a connection's events", e))?;
        let mut events = members.iter().map(|m| decode_event(m)).collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
        const BATCH: u64 = 10_000;
        let mut conn = self.conn.clone();
        let mut total = 0;
        loop {
            // In batches, so no single script blocks Redis for long.
            let removed: u64 = Script::new(PURGE_EVENTS)
                .key(format!("{}ev", self.base))
                .arg(&self.base)
                .arg(to_ms(older_than))
                .arg(BATCH)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| store_error("purging old events", e))?;
            total += removed;
            if removed < BATCH {
                return Ok(total);
            }
        }
    }
}

/// The script arguments for `events`: pairs of (connection id or "", `{occurred ms}|{JSON}`).
fn encode_events(events: &[Event]) -> Result<Vec<String>> {
    let mut args = Vec::with_capacity(events.len() * 2);
    for event in events {
        // serde_json's error for an event never quotes a value.
        let json = serde_json::to_string(event).map_err(|e| store_error("encoding an event", e))?;
        args.push(event.connection_id.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default());
        args.push(format!("{}|{json}", to_ms(event.occurred_at)));
    }
    Ok(args)
}

/// A log member, `{seq}|{occurred ms}|{JSON}`.
fn decode_event(member: &str) -> Result<LoggedEvent> {
    let mut parts = member.splitn(3, '|');
    let seq = parts.next().and_then(|s| s.parse::<u64>().ok());
    let _occurred = parts.next();
    let event = parts.next().and_then(|json| serde_json::from_str::<Event>(json).ok());
    match (seq, event) {
        (Some(seq), Some(event)) => Ok(LoggedEvent::new(EventCursor::from_position(seq), event)),
        _ => Err(corrupt("event", "not a log entry")),
    }
}

#[async_trait]
impl PendingStore for RedisStore {
    async fn put_pending(&self, pending: PendingAuthorization) -> Result<()> {
        let record = encode_pending(&pending)?;
        let life = pending.expires_at.duration_since(pending.created_at).unwrap_or_default();
        let mut conn = self.conn.clone();
        let _: i64 = Script::new(PUT_PENDING)
            .key(self.pending_key(&pending.state_hash))
            .key(self.tenant_pending_key(&pending.tenant))
            .arg(record)
            .arg(millis(life.saturating_add(PENDING_GRACE)))
            .arg(to_ms(pending.created_at))
            .arg(super::MAX_PENDING_PER_TENANT)
            .arg(format!("{}s:", self.base))
            .arg(pending.state_hash.as_str())
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error("storing a pending authorization", e))?;
        Ok(())
    }

    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        let mut conn = self.conn.clone();
        // GETDEL: of any number of concurrent takers, only one gets the record.
        let record: Option<String> = conn
            .get_del(self.pending_key(state_hash))
            .await
            .map_err(|e| store_error("taking a pending authorization", e))?;
        let Some(pending) = record.as_deref().map(decode_pending).transpose()? else { return Ok(None) };
        // Its place in the tenant's allowance; a failure here only leaves a member the next put trims.
        let _: std::result::Result<i64, _> =
            conn.zrem(self.tenant_pending_key(&pending.tenant), pending.state_hash.as_str()).await;
        Ok(Some(pending))
    }
}

#[async_trait]
impl LeaseStore for RedisStore {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        let until = saturating_add(now, ttl);
        let mut conn = self.conn.clone();
        let taken: i64 = Script::new(TRY_LEASE)
            .key(self.lease_key(key))
            .arg(owner)
            .arg(to_ms(until))
            .arg(to_ms(now))
            .arg(millis(ttl.saturating_add(LEASE_GRACE)))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error("taking a lease", e))?;
        Ok(taken == 1)
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let released: i64 = Script::new(RELEASE_LEASE)
            .key(self.lease_key(key))
            .arg(owner)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| store_error("releasing a lease", e))?;
        Ok(released == 1)
    }
}

/// For the `store_record` fuzz target: any text is a connection, a pending authorization, or a typed store error
/// that never quotes the record; what decodes encodes back to a record that decodes to the same.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_record(data: &[u8]) {
    let record = String::from_utf8_lossy(data).replace('\u{1}', "CANARY-secret");
    match decode_connection("1", &record) {
        Ok(c) => assert_eq!(decode_connection("1", &encode_connection(&c).expect("encodes")).expect("decodes"), c),
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::StoreUnavailable);
            assert!(!format!("{e} {e:?}").contains("CANARY-secret"), "the error quotes the record");
        }
    }
    match decode_pending(&record) {
        Ok(p) => {
            let again = encode_pending(&p).expect("encodes");
            assert_eq!(encode_pending(&decode_pending(&again).expect("decodes")).expect("encodes"), again);
        }
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::StoreUnavailable);
            assert!(!format!("{e} {e:?}").contains("CANARY-secret"), "the error quotes the record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_escaped() {
        assert_eq!(glob_escape("{hubconnect}:"), "{hubconnect}:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    /// Found by the `store_record` fuzz target: an unknown status was quoted in the error.
    #[test]
    fn an_unknown_status_or_odd_id_is_not_quoted() {
        let record = |id: &str, status: &str| {
            format!(
                r#"{{"id":"{id}","tenant":"t","portal_id":1,"kind":"oauth","status":"{status}","access_token":"a",
                "refresh_token":null,"expires_at_ms":null,"scopes":[],"installed_by":null,"installed_by_user_id":null,
                "hub_domain":null,"account_type":null,"last_error":null,"retry_at_ms":null,"failures":0,
                "created_at_ms":0,"updated_at_ms":0,"refreshed_at_ms":0}}"#
            )
        };
        let e = decode_connection("1", &record("hc_abc123", "CANARY-status")).unwrap_err();
        assert!(!e.to_string().contains("CANARY") && e.to_string().contains("hc_abc123"), "{e}");
        let e = decode_connection("1", &record("CANARY-id", "nope")).unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
    }

    #[test]
    fn broken_records_are_errors_without_their_text() {
        let e = decode_connection("1", r#"{"id":"x","access_token":"CANARY-SECRET""#).unwrap_err();
        assert_eq!(e.code(), ErrorCode::StoreUnavailable);
        assert!(!format!("{e} {e:?}").contains("CANARY"));
        assert_eq!(decode_connection("x", "{}").unwrap_err().code(), ErrorCode::StoreUnavailable);
        assert_eq!(decode_pending("[]").unwrap_err().code(), ErrorCode::StoreUnavailable);
    }

    mod properties {
        use super::*;
        use crate::connection::{ConnectionStatus, CredentialKind, LastError};
        use crate::connector::AccountType;
        use crate::scope::Scope;
        use crate::secret::{AccessToken, PkceVerifier, RefreshToken};
        use crate::store::record::from_ms;
        use proptest::prelude::*;

        fn time() -> impl Strategy<Value = SystemTime> {
            (-62_135_596_800_000i64..253_402_300_799_999).prop_map(|ms| from_ms(ms).unwrap())
        }

        prop_compose! {
            fn connection()(
                tenant in ".{1,20}",
                portal_id in any::<u64>(),
                private in any::<bool>(),
                status in prop::sample::select(vec![
                    ConnectionStatus::Connected, ConnectionStatus::NeedsReauth, ConnectionStatus::Backoff,
                    ConnectionStatus::Disconnected,
                ]),
                access in ".{0,40}",
                refresh in proptest::option::of(".{0,40}"),
                expires_at in proptest::option::of(time()),
                scopes in proptest::collection::vec("[a-z.]{1,20}", 0..4),
                installed_by in proptest::option::of(".{0,20}"),
                user_id in proptest::option::of(any::<u64>()),
                account in proptest::option::of("[A-Z_]{1,16}"),
                last_error in proptest::option::of((prop::sample::select(ErrorCode::ALL), ".{0,40}", time())),
                retry_at in proptest::option::of(time()),
                failures in any::<u32>(),
                times in (time(), time(), time()),
                version in any::<u64>(),
            ) -> Connection {
                let mut c = Connection::new(tenant, portal_id, AccessToken::new(access), refresh.map(RefreshToken::new), expires_at, times.0);
                c.kind = if private { CredentialKind::PrivateApp } else { CredentialKind::OAuth };
                c.status = status;
                c.scopes = scopes.into_iter().map(Scope::new).collect();
                c.installed_by = installed_by;
                c.installed_by_user_id = user_id;
                c.account_type = account.map(|a| AccountType::parse(&a));
                c.last_error = last_error.map(|(code, message, at)| LastError { code, message, at });
                c.retry_at = retry_at;
                c.failures = failures;
                c.updated_at = times.1;
                c.refreshed_at = times.2;
                c.version = version;
                c
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Every connection survives its record unchanged.
            #[test]
            fn connections_round_trip(c in connection()) {
                let record = encode_connection(&c).unwrap();
                prop_assert_eq!(decode_connection(&c.version.to_string(), &record).unwrap(), c);
            }

            /// Every pending authorization survives its record unchanged.
            #[test]
            fn pending_round_trip(
                state in "[a-f0-9]{1,64}",
                tenant in ".{1,20}",
                verifier in "[A-Za-z0-9_-]{43,128}",
                portal in proptest::option::of(any::<u64>()),
                return_to in proptest::option::of(".{0,40}"),
                times in (time(), time()),
            ) {
                let mut p = PendingAuthorization::new(&state, tenant, PkceVerifier::new(verifier), times.0, times.1);
                p.portal_id = portal;
                p.return_to = return_to;
                let back = decode_pending(&encode_pending(&p).unwrap()).unwrap();
                prop_assert_eq!(encode_pending(&back).unwrap(), encode_pending(&p).unwrap());
            }

            /// Arbitrary text (or a damaged record) is a typed store error that never quotes the record.
            #[test]
            fn arbitrary_records_are_typed_errors(
                version in ".{0,8}",
                record in prop_oneof![".{0,200}", "\\{\"id\":\"x\",\"access_token\":\"CANARY-[a-z]{8}\"[,:\\[\\]{}a-z0-9\"]{0,20}"],
            ) {
                if let Err(e) = decode_connection(&version, &record) {
                    prop_assert_eq!(e.code(), ErrorCode::StoreUnavailable);
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("CANARY"));
                }
                if let Err(e) = decode_pending(&record) {
                    prop_assert_eq!(e.code(), ErrorCode::StoreUnavailable);
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("CANARY"));
                }
            }
        }
    }

    #[test]
    fn millis_are_at_least_one() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2_000);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
