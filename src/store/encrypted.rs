//! Encryption at rest: a store wrapper that encrypts every token before it reaches any backend.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::{ConnectionFilter, ConnectionStore, EventStore, InsertRules, Inserted, LeaseStore, PendingStore};
use crate::connection::{Connection, ConnectionId, PendingAuthorization};
use crate::error::{Error, ErrorCode, Result};
use crate::event::{Event, EventCursor, LoggedEvent};
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};

const PREFIX: &str = "enc:v1:";

/// One 256-bit key with its id. `Debug` shows the id only; the key is zeroized on drop.
#[derive(Clone)]
pub struct EncryptionKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey").field("id", &self.id).field("key", &"[redacted]").finish()
    }
}

impl EncryptionKey {
    /// A key from its id (`[A-Za-z0-9_-]{1,32}`) and 32 bytes.
    pub fn new(id: impl Into<String>, key: [u8; 32]) -> Result<Self> {
        let id = id.into();
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(Error::new(ErrorCode::InvalidConfig, "an encryption key id must be 1 to 32 of [A-Za-z0-9_-]"));
        }
        Ok(Self { id, key: Zeroizing::new(key) })
    }

    /// A key from `id` and the standard base64 of 32 bytes.
    pub fn from_base64(id: impl Into<String>, key: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(key.trim())
                .map_err(|_| Error::new(ErrorCode::InvalidConfig, "an encryption key is not standard base64"))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::new(ErrorCode::InvalidConfig, "an encryption key must be 32 bytes (256 bits)"))?;
        Self::new(id, key)
    }

    /// A fresh random key.
    pub fn generate(id: impl Into<String>) -> Result<Self> {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::new(id, key)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as `id:base64` (the `HUBCONNECT_ENCRYPTION_KEYS` format).
    ///
    /// # Security warning
    /// The result is the key itself.
    pub fn to_config(&self) -> String {
        format!("{}:{}", self.id, STANDARD.encode(self.key.as_slice()))
    }
}

/// The keys: the first encrypts, every one decrypts. Rotate by putting a new key first and running
/// [`EncryptedStore::rotate`].
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<EncryptionKey>,
}

impl KeyRing {
    /// A ring from keys, the first one current. Fails when empty or when two keys share an id.
    pub fn new(keys: Vec<EncryptionKey>) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::new(ErrorCode::InvalidConfig, "the key ring needs at least one key"));
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(Error::new(
                    ErrorCode::InvalidConfig,
                    format!("two encryption keys have the id {:?}", k.id),
                ));
            }
        }
        Ok(Self { keys })
    }

    /// Parses `id:base64key,id:base64key,…` (the `HUBCONNECT_ENCRYPTION_KEYS` format).
    pub fn parse(config: &str) -> Result<Self> {
        let keys = config
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(|part| {
                let (id, key) = part.trim().split_once(':').ok_or_else(|| {
                    Error::new(ErrorCode::InvalidConfig, "each encryption key must be written id:base64key")
                })?;
                EncryptionKey::from_base64(id, key)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(keys)
    }

    /// The id of the key that encrypts.
    pub fn current_id(&self) -> &str {
        &self.keys[0].id
    }

    fn current(&self) -> &EncryptionKey {
        &self.keys[0]
    }

    fn find(&self, id: &str) -> Option<&EncryptionKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// What a record's associated data binds a ciphertext to.
struct Binding<'a> {
    tenant: &'a str,
    record: &'a str,
    field: &'a str,
}

impl Binding<'_> {
    fn aad(&self, key_id: &str) -> Vec<u8> {
        // Length-prefixed, so no two different bindings share bytes.
        let mut aad = b"hubspot-connect/v1".to_vec();
        for part in [self.tenant, self.record, self.field, key_id] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

fn decrypt_error(what: &str, b: &Binding<'_>) -> Error {
    Error::new(
        ErrorCode::StoreUnavailable,
        format!("the stored {} of record {} cannot be decrypted: {what}", b.field, b.record),
    )
    .permanent()
}

impl KeyRing {
    fn seal(&self, plain: &str, b: &Binding<'_>) -> Result<String> {
        let key = self.current();
        let cipher = XChaCha20Poly1305::new(key.key.as_slice().into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: &b.aad(&key.id) })
            .map_err(|_| Error::new(ErrorCode::StoreUnavailable, "encryption failed").permanent())?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob)))
    }

    fn open(&self, stored: &str, b: &Binding<'_>, accept_plaintext: bool) -> Result<Zeroizing<String>> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return if accept_plaintext {
                Ok(Zeroizing::new(stored.to_owned()))
            } else {
                Err(decrypt_error("it is not encrypted (and plaintext is not accepted)", b))
            };
        };
        let (key_id, blob) = rest.split_once(':').ok_or_else(|| decrypt_error("the record is damaged", b))?;
        let key =
            self.find(key_id).ok_or_else(|| decrypt_error(&format!("key {key_id:?} is not in the key ring"), b))?;
        let blob = URL_SAFE_NO_PAD.decode(blob).map_err(|_| decrypt_error("the record is damaged", b))?;
        if blob.len() < 24 + 16 {
            return Err(decrypt_error("the record is damaged", b));
        }
        let (nonce, sealed) = blob.split_at(24);
        let cipher = XChaCha20Poly1305::new(key.key.as_slice().into());
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &b.aad(key_id) })
            .map_err(|_| decrypt_error("authentication failed (wrong key, or a record moved or damaged)", b))?;
        let plain = Zeroizing::new(plain);
        String::from_utf8(plain.to_vec()).map(Zeroizing::new).map_err(|_| decrypt_error("the record is damaged", b))
    }
}

fn key_id_of(stored: &str) -> Option<&str> {
    stored.strip_prefix(PREFIX)?.split_once(':').map(|(id, _)| id)
}

/// Encrypts every token, refresh token and PKCE verifier with XChaCha20-Poly1305 before it reaches `S`.
///
/// - a fresh random 192-bit nonce per write;
/// - associated data binds each ciphertext to its tenant, its record (connection id or state hash), its field and
///   the key id, so a ciphertext copied to another connection or field does not decrypt;
/// - the key id is in every value (`enc:v1:{key id}:{base64url(nonce ‖ ciphertext)}`): the first key of the
///   [`KeyRing`] encrypts, every key decrypts, and [`EncryptedStore::rotate`] re-encrypts every connection under the
///   first key;
/// - a wrong key, a moved or a damaged record is [`ErrorCode::StoreUnavailable`], never a panic, never a wrong token.
///
/// Everything else (ids, tenants, portals, scopes, statuses, times) stays in clear, so the backend can index it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> hubspot_connect::Result<()> {
/// use hubspot_connect::store::{ConnectionStore, EncryptedStore, EncryptionKey, InsertRules, KeyRing, MemoryStore};
/// use hubspot_connect::{AccessToken, Connection, RefreshToken};
///
/// let keys = KeyRing::new(vec![EncryptionKey::generate("2026-11")?])?;
/// let store = EncryptedStore::new(MemoryStore::new(), keys);
/// let c = Connection::new("acme", 62515, AccessToken::new("at"), Some(RefreshToken::new("rt")), None, std::time::UNIX_EPOCH);
/// store.insert(&c, InsertRules::default()).await?;
/// assert!(store.inner().get(&c.id).await?.unwrap().access_token.secret().starts_with("enc:v1:2026-11:"));
/// assert_eq!(store.get(&c.id).await?.unwrap().access_token.secret(), "at");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct EncryptedStore<S> {
    inner: S,
    keys: KeyRing,
    accept_plaintext: bool,
}

/// What [`EncryptedStore::rotate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Connections looked at.
    pub checked: usize,
    /// Re-encrypted under the current key.
    pub reencrypted: usize,
    /// Changed by someone else meanwhile (they were written with the current key anyway).
    pub skipped: usize,
    /// Connections that could not be re-encrypted (no key in the ring opens them, the record is damaged, or the
    /// store refused the write), in the order met. The others were rotated all the same; a rerun retries these.
    pub failed: Vec<ConnectionId>,
}

impl<S> EncryptedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, keys: KeyRing) -> Self {
        Self { inner, keys, accept_plaintext: false }
    }

    /// Reads values that are not encrypted yet (to migrate a store that ran without encryption; run
    /// [`EncryptedStore::rotate`] afterwards). Off by default.
    pub fn accept_plaintext(mut self, accept: bool) -> Self {
        self.accept_plaintext = accept;
        self
    }

    /// The wrapped store (sees only ciphertext).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The key ring.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    fn seal_connection(&self, c: &Connection) -> Result<Connection> {
        let mut out = c.clone();
        let b = |field| Binding { tenant: &c.tenant, record: c.id.as_str(), field };
        out.access_token = AccessToken::new(self.keys.seal(c.access_token.secret(), &b("access_token"))?);
        if let Some(r) = &c.refresh_token {
            out.refresh_token = Some(RefreshToken::new(self.keys.seal(r.secret(), &b("refresh_token"))?));
        }
        Ok(out)
    }

    fn open_connection(&self, c: Connection) -> Result<Connection> {
        let mut out = c.clone();
        let b = |field| Binding { tenant: &c.tenant, record: c.id.as_str(), field };
        out.access_token = AccessToken::new(
            self.keys.open(c.access_token.secret(), &b("access_token"), self.accept_plaintext)?.as_str(),
        );
        if let Some(r) = &c.refresh_token {
            out.refresh_token = Some(RefreshToken::new(
                self.keys.open(r.secret(), &b("refresh_token"), self.accept_plaintext)?.as_str(),
            ));
        }
        Ok(out)
    }
}

impl<S: ConnectionStore> EncryptedStore<S> {
    /// Re-encrypts every connection not yet under the current key (compare-and-swap, so it is safe while workers
    /// run). A connection that cannot be re-encrypted is listed in [`RotationReport::failed`] and the rotation goes
    /// on with the rest, so one damaged record never keeps an old key in service. `Err` only when the connections
    /// cannot be listed at all.
    ///
    /// Pending authorizations are short-lived and expire under the old key: keep the old key in the ring for the
    /// authorization lifetime (10 minutes by default) after rotating.
    pub async fn rotate(&self) -> Result<RotationReport> {
        let mut report = RotationReport::default();
        for stored in self.inner.list(&ConnectionFilter::all()).await? {
            report.checked += 1;
            let current = self.keys.current_id();
            let up_to_date = key_id_of(stored.access_token.secret()) == Some(current)
                && stored.refresh_token.as_ref().is_none_or(|r| key_id_of(r.secret()) == Some(current));
            if up_to_date {
                continue;
            }
            match self.rotate_one(&stored).await {
                Ok(true) => report.reencrypted += 1,
                Ok(false) => report.skipped += 1,
                Err(e) => {
                    tracing::warn!(connection = %stored.id, code = e.code().as_str(), "could not re-encrypt a connection");
                    report.failed.push(stored.id.clone());
                }
            }
        }
        Ok(report)
    }

    async fn rotate_one(&self, stored: &Connection) -> Result<bool> {
        let plain = self.open_connection(stored.clone())?;
        let mut next = self.seal_connection(&plain)?;
        next.version = stored.version.saturating_add(1);
        self.inner.compare_and_swap(&next).await
    }
}

#[async_trait]
impl<S: ConnectionStore> ConnectionStore for EncryptedStore<S> {
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        self.inner.get(id).await?.map(|c| self.open_connection(c)).transpose()
    }

    async fn insert_with_events(&self, new: &Connection, rules: InsertRules, events: &[Event]) -> Result<Inserted> {
        // Events hold no secret: they pass through.
        Ok(match self.inner.insert_with_events(&self.seal_connection(new)?, rules, events).await? {
            Inserted::Existing(c) => Inserted::Existing(Box::new(self.open_connection(*c)?)),
            other => other,
        })
    }

    async fn compare_and_swap_with_events(&self, next: &Connection, events: &[Event]) -> Result<bool> {
        self.inner.compare_and_swap_with_events(&self.seal_connection(next)?, events).await
    }

    async fn delete_with_events(&self, id: &ConnectionId, events: &[Event]) -> Result<bool> {
        self.inner.delete_with_events(id, events).await
    }

    async fn list(&self, filter: &ConnectionFilter) -> Result<Vec<Connection>> {
        self.inner.list(filter).await?.into_iter().map(|c| self.open_connection(c)).collect()
    }
}

/// Events hold no secret: the log passes through unencrypted.
#[async_trait]
impl<S: EventStore> EventStore for EncryptedStore<S> {
    async fn append_events(&self, events: &[Event]) -> Result<()> {
        self.inner.append_events(events).await
    }
    async fn events_since(&self, cursor: EventCursor, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.inner.events_since(cursor, limit).await
    }
    async fn history(&self, id: &ConnectionId, limit: usize) -> Result<Vec<LoggedEvent>> {
        self.inner.history(id, limit).await
    }
    async fn purge_events(&self, older_than: SystemTime) -> Result<u64> {
        self.inner.purge_events(older_than).await
    }
}

#[async_trait]
impl<S: PendingStore> PendingStore for EncryptedStore<S> {
    async fn put_pending(&self, mut pending: PendingAuthorization) -> Result<()> {
        let b = Binding { tenant: &pending.tenant, record: &pending.state_hash, field: "pkce_verifier" };
        let sealed = self.keys.seal(pending.pkce_verifier.secret(), &b)?;
        pending.pkce_verifier = PkceVerifier::new(sealed);
        self.inner.put_pending(pending).await
    }

    async fn take_pending(&self, state_hash: &str) -> Result<Option<PendingAuthorization>> {
        let Some(mut pending) = self.inner.take_pending(state_hash).await? else { return Ok(None) };
        let b = Binding { tenant: &pending.tenant, record: &pending.state_hash, field: "pkce_verifier" };
        let plain = self.keys.open(pending.pkce_verifier.secret(), &b, self.accept_plaintext)?;
        pending.pkce_verifier = PkceVerifier::new(plain.as_str());
        Ok(Some(pending))
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for EncryptedStore<S> {
    async fn try_lease(&self, key: &str, owner: &str, ttl: Duration, now: SystemTime) -> Result<bool> {
        self.inner.try_lease(key, owner, ttl, now).await
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool> {
        self.inner.release_lease(key, owner).await
    }
}

/// For the `envelope` fuzz target: arbitrary text never opens; a sealed value mutated by `data` opens only as its
/// own plaintext (when the mutation left the envelope's bytes as they were).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_envelope(data: &[u8]) {
    let keys = KeyRing::new(vec![EncryptionKey::new("k1", [7; 32]).expect("a valid key")]).expect("a valid ring");
    let bind = Binding { tenant: "t", record: "r", field: "access_token" };
    let text = String::from_utf8_lossy(data);
    for candidate in [text.to_string(), format!("{PREFIX}k1:{text}")] {
        assert!(keys.open(&candidate, &bind, false).is_err(), "arbitrary text opened");
    }
    // Mutations: pairs of (position, byte): the byte replaces the one at that position (0: removes it).
    let plain = "CANARY-plaintext";
    let sealed = keys.seal(plain, &bind).expect("sealing works");
    let mut bytes = sealed.clone().into_bytes();
    for pair in data.chunks_exact(2) {
        if bytes.is_empty() {
            break;
        }
        let at = usize::from(pair[0]) * bytes.len() / 256;
        if pair[1] == 0 {
            bytes.remove(at);
        } else {
            bytes[at] = pair[1];
        }
    }
    let Ok(mutated) = String::from_utf8(bytes) else { return };
    if let Ok(opened) = keys.open(&mutated, &bind, false) {
        assert_eq!(opened.as_str(), plain, "a mutated envelope opened as another plaintext");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn conn(tenant: &str, at: &str) -> Connection {
        Connection::new(
            tenant,
            1,
            AccessToken::new(at),
            Some(RefreshToken::new("rt-CANARY")),
            None,
            SystemTime::UNIX_EPOCH,
        )
    }

    fn ring(ids: &[&str]) -> KeyRing {
        KeyRing::new(ids.iter().map(|id| EncryptionKey::new(*id, [id.len() as u8; 32]).unwrap()).collect()).unwrap()
    }

    #[tokio::test]
    async fn round_trip_and_fresh_nonces() {
        let store = EncryptedStore::new(MemoryStore::new(), ring(&["k1"]));
        let c = conn("acme", "at-CANARY");
        store.insert(&c, InsertRules::default()).await.unwrap();
        let raw = store.inner().get(&c.id).await.unwrap().unwrap();
        assert!(raw.access_token.secret().starts_with("enc:v1:k1:"));
        assert!(!raw.access_token.secret().contains("CANARY"));
        assert_eq!(store.get(&c.id).await.unwrap().unwrap(), c);
        let again = store.keys.seal("same", &Binding { tenant: "t", record: "r", field: "f" }).unwrap();
        let other = store.keys.seal("same", &Binding { tenant: "t", record: "r", field: "f" }).unwrap();
        assert_ne!(again, other, "a fresh nonce per write");
    }

    #[tokio::test]
    async fn moved_wrong_key_and_damaged_records_are_typed_errors() {
        let store = EncryptedStore::new(MemoryStore::new(), ring(&["k1"]));
        let a = conn("acme", "at-a");
        let mut b = conn("acme", "at-b");
        b.portal_id = 2;
        store.insert(&a, InsertRules { allow_shared_portals: true, max_portals: None }).await.unwrap();
        store.insert(&b, InsertRules { allow_shared_portals: true, max_portals: None }).await.unwrap();
        // Move a's ciphertext into b.
        let raw_a = store.inner().get(&a.id).await.unwrap().unwrap();
        let mut raw_b = store.inner().get(&b.id).await.unwrap().unwrap().next_version(SystemTime::UNIX_EPOCH);
        raw_b.access_token = raw_a.access_token.clone();
        assert!(store.inner().compare_and_swap(&raw_b).await.unwrap());
        let err = store.get(&b.id).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StoreUnavailable);
        assert!(err.message().contains("authentication failed"), "{err}");

        // Another ring cannot read a.
        let other = EncryptedStore::new(MemoryStore::new(), ring(&["k2"]));
        let blob = raw_a.access_token.secret();
        let bind = Binding { tenant: "acme", record: a.id.as_str(), field: "access_token" };
        assert!(other.keys.open(blob, &bind, false).unwrap_err().message().contains("not in the key ring"));
        let same_id_other_key = KeyRing::new(vec![EncryptionKey::new("k1", [9; 32]).unwrap()]).unwrap();
        assert!(same_id_other_key.open(blob, &bind, false).is_err());

        // Damage: truncated, flipped, not base64, no key id, plaintext.
        let mut flipped = blob.to_owned().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        for bad in [&blob[..20], std::str::from_utf8(&flipped).unwrap(), "enc:v1:k1:!!!", "enc:v1:k1", "at-plain"] {
            let err = store.keys.open(bad, &bind, false).unwrap_err();
            assert_eq!(err.code(), ErrorCode::StoreUnavailable, "{bad}");
        }
        assert_eq!(store.keys.open("at-plain", &bind, true).unwrap().as_str(), "at-plain");
    }

    #[tokio::test]
    async fn rotation_reencrypts_under_the_new_key() {
        let old = EncryptedStore::new(MemoryStore::new(), ring(&["old"]));
        let c = conn("acme", "at-rot");
        old.insert(&c, InsertRules::default()).await.unwrap();
        let inner = old.inner;
        let rotated = EncryptedStore::new(inner, ring(&["new", "old"]));
        assert_eq!(rotated.get(&c.id).await.unwrap().unwrap().access_token.secret(), "at-rot");
        let report = rotated.rotate().await.unwrap();
        assert_eq!((report.checked, report.reencrypted, report.skipped), (1, 1, 0));
        let raw = rotated.inner().get(&c.id).await.unwrap().unwrap();
        assert!(raw.access_token.secret().starts_with("enc:v1:new:"));
        assert!(raw.refresh_token.unwrap().secret().starts_with("enc:v1:new:"));
        assert_eq!(rotated.rotate().await.unwrap().reencrypted, 0);
        let only_new = EncryptedStore::new(rotated.inner, ring(&["new"]));
        assert_eq!(only_new.get(&c.id).await.unwrap().unwrap().access_token.secret(), "at-rot");
    }

    #[tokio::test]
    async fn rotation_goes_on_past_a_record_it_cannot_open() {
        // Finding 3: one unreadable record must not stop the rest from being re-encrypted.
        let old = EncryptedStore::new(MemoryStore::new(), ring(&["old"]));
        let rules = InsertRules { allow_shared_portals: true, max_portals: None };
        let mut ids = Vec::new();
        for portal in 1..=3 {
            let mut c = conn("acme", &format!("at-{portal}"));
            c.portal_id = portal;
            old.insert(&c, rules).await.unwrap();
            ids.push(c.id);
        }
        // The second record was written under a key nobody has any more.
        let lost = EncryptedStore::new(MemoryStore::new(), ring(&["lost"]));
        let bind = Binding { tenant: "acme", record: ids[1].as_str(), field: "access_token" };
        let mut damaged = old.inner().get(&ids[1]).await.unwrap().unwrap().next_version(SystemTime::UNIX_EPOCH);
        damaged.access_token = AccessToken::new(lost.keys.seal("at-2", &bind).unwrap());
        assert!(old.inner().compare_and_swap(&damaged).await.unwrap());

        let rotated = EncryptedStore::new(old.inner, ring(&["new", "old"]));
        let report = rotated.rotate().await.unwrap();
        assert_eq!((report.checked, report.reencrypted, report.skipped), (3, 2, 0));
        assert_eq!(report.failed, vec![ids[1].clone()]);
        for id in [&ids[0], &ids[2]] {
            let raw = rotated.inner().get(id).await.unwrap().unwrap();
            assert!(raw.access_token.secret().starts_with("enc:v1:new:"), "{id}");
        }
        // A rerun retries only the failed one.
        let again = rotated.rotate().await.unwrap();
        assert_eq!((again.reencrypted, again.failed.len()), (0, 1));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Any mutation of a sealed value (a byte changed, dropped or added, anywhere) is an error, never
            /// another plaintext.
            #[test]
            fn any_mutation_is_an_error(
                plain in "[ -~]{0,64}",
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
                how in 0u8..3,
            ) {
                let keys = ring(&["k1"]);
                let bind = Binding { tenant: "t", record: "r", field: "access_token" };
                let sealed = keys.seal(&plain, &bind).unwrap();
                let opened = keys.open(&sealed, &bind, false).unwrap();
                prop_assert_eq!(opened.as_str(), plain.as_str());
                let mut bytes = sealed.clone().into_bytes();
                let i = at.index(bytes.len());
                match how {
                    0 => { if bytes[i] == byte { return Ok(()); } bytes[i] = byte; }
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, byte),
                }
                let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()) };
                prop_assume!(mutated != sealed);
                // base64url without padding: a changed last character may decode to the same bytes.
                if let Ok(opened) = keys.open(&mutated, &bind, false) {
                    let same_blob = URL_SAFE_NO_PAD.decode(sealed.rsplit(':').next().unwrap()).ok()
                        == URL_SAFE_NO_PAD.decode(mutated.rsplit(':').next().unwrap()).ok();
                    prop_assert!(same_blob && opened.as_str() == plain, "{mutated:?} opened as {:?}", opened.as_str());
                }
            }

            /// Any text at all: an error or (only for an intact envelope) the plaintext; never a panic.
            #[test]
            fn any_text_is_an_error(text in ".{0,200}", prefixed in any::<bool>()) {
                let keys = ring(&["k1"]);
                let bind = Binding { tenant: "t", record: "r", field: "access_token" };
                let text = if prefixed { format!("enc:v1:k1:{text}") } else { text };
                let err = keys.open(&text, &bind, false).unwrap_err();
                prop_assert_eq!(err.code(), ErrorCode::StoreUnavailable);
            }
        }
    }

    #[tokio::test]
    async fn pending_verifier_is_encrypted() {
        let store = EncryptedStore::new(MemoryStore::new(), ring(&["k1"]));
        let p = PendingAuthorization::new(
            "state",
            "acme",
            PkceVerifier::new("verifier-CANARY"),
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH,
        );
        let hash = p.state_hash.clone();
        store.put_pending(p).await.unwrap();
        let back = store.take_pending(&hash).await.unwrap().unwrap();
        assert_eq!(back.pkce_verifier.secret(), "verifier-CANARY");
    }

    #[test]
    fn key_ring_parsing() {
        let k = EncryptionKey::generate("a").unwrap();
        let cfg = format!("{},{}", k.to_config(), EncryptionKey::generate("b").unwrap().to_config());
        let ring = KeyRing::parse(&cfg).unwrap();
        assert_eq!(ring.current_id(), "a");
        for bad in ["", "a", "a:notbase64!", "a:AAAA", &format!("{0},{0}", k.to_config()), "bad id:AAAA"] {
            assert_eq!(KeyRing::parse(bad).unwrap_err().code(), ErrorCode::InvalidConfig, "{bad}");
        }
        assert!(!format!("{ring:?}").contains(&k.to_config()[2..]));
    }
}
