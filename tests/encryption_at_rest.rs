//! Encryption at rest, end to end: connections written through `EncryptedStore` with planted canary tokens leave no
//! trace of them in the backend's bytes (plain, base64 or URL-encoded), and survive a key rotation.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::{Duration, UNIX_EPOCH};

use hubspot_connect::store::{
    ConnectionStore, EncryptedStore, EncryptionKey, InsertRules, KeyRing, PendingStore, SqliteStore,
};
use hubspot_connect::{AccessToken, Connection, RefreshToken, secret::PkceVerifier, store::PendingAuthorization};

const CANARY_AT: &str = "CANARY-access-9d1f2b7c41";
const CANARY_RT: &str = "CANARY-refresh-5e8a0c3d92";
const CANARY_PKCE: &str = "CANARY-verifier-77b3e1f0aa";

/// Every form in which a canary could leak: as is, URL-encoded, and base64 (standard and URL-safe) at each of the
/// three byte alignments.
fn forms(canary: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut out = vec![canary.as_bytes().to_vec()];
    out.push(url::form_urlencoded::byte_serialize(canary.as_bytes()).collect::<String>().into_bytes());
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for pad in 0..3 {
            let encoded = engine.encode(format!("{}{canary}", "x".repeat(pad)));
            out.push(encoded.as_bytes()[4..encoded.len() - 4].to_vec());
        }
    }
    out
}

fn assert_no_canary(haystack: &[u8], where_: &str) {
    for canary in [CANARY_AT, CANARY_RT, CANARY_PKCE] {
        for form in forms(canary) {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_slice()),
                "{where_} holds {canary} as {:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

fn canary_connections() -> Vec<Connection> {
    (0..20)
        .map(|i| {
            let mut c = Connection::new(
                format!("tenant-{i}"),
                1000 + i,
                AccessToken::new(CANARY_AT),
                Some(RefreshToken::new(CANARY_RT)),
                Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
                UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            );
            c.installed_by = Some("ops@acme.example".into());
            c
        })
        .collect()
}

async fn write_canaries<S: ConnectionStore + PendingStore>(store: &S) -> Vec<Connection> {
    let conns = canary_connections();
    for c in &conns {
        store.insert(c, InsertRules::default()).await.unwrap();
        let next = c.next_version(UNIX_EPOCH + Duration::from_secs(1_800_000_100));
        assert!(store.compare_and_swap(&next).await.unwrap());
    }
    let pending =
        PendingAuthorization::new("state-1", "tenant-0", PkceVerifier::new(CANARY_PKCE), UNIX_EPOCH, UNIX_EPOCH);
    store.put_pending(pending).await.unwrap();
    conns
}

#[tokio::test]
async fn the_sqlite_file_holds_no_canary_and_rotation_reencrypts() {
    let dir = std::env::temp_dir().join(format!("hc-enc-{}", hubspot_connect::ConnectionId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.db");
    let url = format!("sqlite://{}", path.display());

    let old = EncryptionKey::generate("2026-10").unwrap();
    let store = EncryptedStore::new(SqliteStore::open(&url).await.unwrap(), KeyRing::new(vec![old.clone()]).unwrap());
    let conns = write_canaries(&store).await;
    for c in &conns {
        let back = store.get(&c.id).await.unwrap().unwrap();
        assert_eq!(back.access_token.secret(), CANARY_AT);
        assert_eq!(back.refresh_token.unwrap().secret(), CANARY_RT);
    }
    // Every byte the backend wrote: the database, its write-ahead log and shared memory.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096);
    assert_no_canary(&bytes, "the SQLite files");
    // The test can fail: the same scan finds the canary in an unencrypted store's file.
    let plain_path = dir.join("plain.db");
    let plain = SqliteStore::open(&format!("sqlite://{}", plain_path.display())).await.unwrap();
    write_canaries(&plain).await;
    plain.close().await;
    let mut plain_bytes = std::fs::read(&plain_path).unwrap();
    plain_bytes.extend(std::fs::read(dir.join("plain.db-wal")).unwrap_or_default());
    assert!(plain_bytes.windows(CANARY_AT.len()).any(|w| w == CANARY_AT.as_bytes()));

    // Rotate: a new key first, the old one still readable.
    let new = EncryptionKey::generate("2026-11").unwrap();
    let inner = SqliteStore::open(&url).await.unwrap();
    let rotated = EncryptedStore::new(inner.clone(), KeyRing::new(vec![new.clone(), old]).unwrap());
    assert_eq!(rotated.get(&conns[0].id).await.unwrap().unwrap().access_token.secret(), CANARY_AT);
    let report = rotated.rotate().await.unwrap();
    assert_eq!((report.checked, report.reencrypted), (20, 20));
    for c in &conns {
        let raw = inner.get(&c.id).await.unwrap().unwrap();
        assert!(raw.access_token.secret().starts_with("enc:v1:2026-11:"));
        assert!(raw.refresh_token.unwrap().secret().starts_with("enc:v1:2026-11:"));
    }
    // Without the old key, everything still reads.
    let only_new = EncryptedStore::new(inner, KeyRing::new(vec![new]).unwrap());
    for c in &conns {
        assert_eq!(only_new.get(&c.id).await.unwrap().unwrap().refresh_token.unwrap().secret(), CANARY_RT);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A prefix no other test uses.
#[cfg(any(feature = "postgres", feature = "redis"))]
fn random_prefix() -> String {
    let id = hubspot_connect::ConnectionId::random();
    format!("enc{}", id.as_str().replace(|c: char| !c.is_ascii_alphanumeric(), "")).chars().take(24).collect()
}

/// Every row of the PostgreSQL tables, as PostgreSQL renders it (`row_to_json`), holds no canary; an unencrypted
/// store's rows do (so the scan can fail).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_postgres_rows_hold_no_canary() {
    use hubspot_connect::store::PostgresStore;
    let Some(url) = std::env::var("HUBCONNECT_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SKIPPED: HUBCONNECT_TEST_POSTGRES_URL is not set; PostgreSQL encryption-at-rest test not run");
        return;
    };
    async fn dump(store: &PostgresStore) -> Vec<u8> {
        let mut bytes = Vec::new();
        for table in ["connections", "pending"] {
            let sql = format!("SELECT row_to_json(t)::text FROM \"{}_{table}\" t", store.prefix());
            let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(store.pool()).await.unwrap();
            assert!(!rows.is_empty());
            for row in rows {
                bytes.extend(row.into_bytes());
            }
        }
        for table in ["connections", "pending", "leases", "events", "schema"] {
            let sql = format!("DROP TABLE \"{}_{table}\"", store.prefix());
            sqlx::query(&sql).execute(store.pool()).await.unwrap();
        }
        bytes
    }
    let inner = PostgresStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
    let keys = KeyRing::new(vec![EncryptionKey::generate("2026-11").unwrap()]).unwrap();
    let store = EncryptedStore::new(inner.clone(), keys);
    let conns = write_canaries(&store).await;
    assert_eq!(store.get(&conns[3].id).await.unwrap().unwrap().access_token.secret(), CANARY_AT);
    assert_no_canary(&dump(&inner).await, "the PostgreSQL rows");

    let plain = PostgresStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
    write_canaries(&plain).await;
    let plain_bytes = dump(&plain).await;
    assert!(plain_bytes.windows(CANARY_RT.len()).any(|w| w == CANARY_RT.as_bytes()));
}

/// Every value under the store's Redis keys (every field of every hash, every string, every member of every sorted
/// set) holds no canary; an unencrypted store's do.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_values_hold_no_canary() {
    use hubspot_connect::store::RedisStore;
    use redis::AsyncCommands;
    let Some(url) = std::env::var("HUBCONNECT_TEST_REDIS_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("SKIPPED: HUBCONNECT_TEST_REDIS_URL is not set; Redis encryption-at-rest test not run");
        return;
    };
    async fn dump(store: &RedisStore) -> Vec<u8> {
        let mut conn = store.connection().clone();
        let keys: Vec<String> = conn.keys(format!("{{{}}}:*", store.prefix())).await.unwrap();
        assert!(keys.len() > 20, "{keys:?}");
        let mut bytes = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "hash" => conn.hgetall::<_, Vec<Vec<u8>>>(&key).await.unwrap(),
                "string" => vec![conn.get::<_, Vec<u8>>(&key).await.unwrap()],
                "zset" => conn.zrange::<_, Vec<Vec<u8>>>(&key, 0, -1).await.unwrap(),
                other => panic!("unexpected key type {other} at {key}"),
            };
            bytes.extend(key.into_bytes());
            for value in values {
                bytes.extend(value);
            }
        }
        store.clear().await.unwrap();
        bytes
    }
    let inner = RedisStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
    let keys = KeyRing::new(vec![EncryptionKey::generate("2026-11").unwrap()]).unwrap();
    let store = EncryptedStore::new(inner.clone(), keys);
    let conns = write_canaries(&store).await;
    assert_eq!(store.get(&conns[3].id).await.unwrap().unwrap().refresh_token.unwrap().secret(), CANARY_RT);
    assert_no_canary(&dump(&inner).await, "the Redis values");

    let plain = RedisStore::connect_with_prefix(&url, &random_prefix()).await.unwrap();
    write_canaries(&plain).await;
    let plain_bytes = dump(&plain).await;
    assert!(plain_bytes.windows(CANARY_RT.len()).any(|w| w == CANARY_RT.as_bytes()));
}
