//! Encryption at rest, end to end: connections written through `EncryptedStore` with planted canary tokens leave no
//! trace of them in the backend's bytes (plain, base64 or URL-encoded), and survive a key rotation.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use hubspot_connect::store::{
    ConnectionStore, EncryptedStore, EncryptionKey, InsertRules, KeyRing, PendingStore, SqliteStore,
};
use hubspot_connect::{AccessToken, Connection, PendingAuthorization, PkceVerifier, RefreshToken};

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
