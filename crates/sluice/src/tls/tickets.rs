//! Stateless session tickets: nginx `ssl_session_ticket_key` files (80 or 48 random bytes),
//! the first key encrypts, all decrypt, swapped lock-free on reload; or keys derived from a
//! shared `ticket_secret` per wall-clock period (`ticket_secret.rs`); or, with neither, a
//! random key per process rotated every 12 h with the previous one still accepted.
//! Tickets are AES-GCM sealed (not nginx's AES-CBC+HMAC): sluice and nginx share key files and
//! rotation tooling, not tickets (their plaintexts differ anyway).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, NONCE_LEN};
use rustls::server::ProducesTickets;

use super::certs::read_limited;
use super::ticket_secret::{read_secret, Clock, Derivation};
use super::TlsError;

/// Lifetime hint sent with tickets (seconds). nginx uses `ssl_session_timeout`; we pick 12 h,
/// the rotation period of the random key, so a hinted ticket is always still decryptable.
pub const TICKET_LIFETIME_SECS: u32 = 12 * 60 * 60;
/// How often the per-process random key rotates when no key files are configured.
pub(super) const RANDOM_ROTATION: Duration = Duration::from_secs(TICKET_LIFETIME_SECS as u64);

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Larger tickets are refused before any crypto (rustls' own plaintexts are a few hundred bytes).
const MAX_TICKET: usize = 16 * 1024;

/// One ticket key: the 16-byte name that prefixes every ticket it seals, and the AEAD key.
pub struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material; the name is public (it is on the wire).
        f.debug_struct("TicketKey")
            .field("name", &hex(&self.name))
            .finish()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TicketKey {
    /// Parses nginx's layout: 80 bytes = name(16) | HMAC secret(32) | AES-256 key(32);
    /// 48 bytes = name(16) | HMAC secret(16) | AES-128 key(16). The HMAC secret is unused
    /// because GCM authenticates. `origin` names the source in errors.
    pub fn from_nginx_bytes(bytes: &[u8], origin: &str) -> Result<TicketKey, TlsError> {
        let bad = || TlsError::TicketKeySize {
            path: origin.to_string(),
            len: bytes.len(),
        };
        let (alg, aes) = match bytes.len() {
            80 => (&AES_256_GCM, &bytes[48..80]),
            48 => (&AES_128_GCM, &bytes[32..48]),
            _ => return Err(bad()),
        };
        let mut name = [0u8; NAME_LEN];
        name.copy_from_slice(&bytes[..NAME_LEN]);
        let key = UnboundKey::new(alg, aes).map_err(|_| bad())?;
        Ok(TicketKey {
            name,
            aead: LessSafeKey::new(key),
        })
    }

    /// Reads a key file (at most 80 bytes are accepted).
    pub fn from_file(path: &str) -> Result<TicketKey, TlsError> {
        let bytes = read_limited(path, 80).map_err(|e| match e {
            TlsError::TooLarge { .. } => TlsError::TicketKeySize {
                path: path.to_string(),
                len: std::fs::metadata(path)
                    .map(|m| m.len() as usize)
                    .unwrap_or(81),
            },
            e => e,
        })?;
        TicketKey::from_nginx_bytes(&bytes, path)
    }

    /// A key from its name and a 32-byte AES-256-GCM key (derived keys).
    pub(super) fn aes256(name: [u8; NAME_LEN], aes: &[u8]) -> Result<TicketKey, TlsError> {
        let key = UnboundKey::new(&AES_256_GCM, aes).map_err(|_| TlsError::Random)?;
        Ok(TicketKey {
            name,
            aead: LessSafeKey::new(key),
        })
    }

    #[cfg(test)]
    pub(super) fn seal_for_test(&self, plain: &[u8]) -> Vec<u8> {
        self.seal(plain).unwrap()
    }

    #[cfg(test)]
    pub(super) fn open_for_test(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.open(&ticket[NAME_LEN..])
    }

    /// A fresh random 80-byte key.
    pub fn random() -> Result<TicketKey, TlsError> {
        let mut bytes = [0u8; 80];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| TlsError::Random)?;
        TicketKey::from_nginx_bytes(&bytes, "<random>")
    }

    /// The 16-byte key name every ticket sealed with this key starts with.
    pub fn name(&self) -> &[u8; NAME_LEN] {
        &self.name
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.name),
                &mut out[NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// `ticket` without its name prefix.
    fn open(&self, rest: &[u8]) -> Option<Vec<u8>> {
        if rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(&self.name), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

/// The current keys: `keys[0]` encrypts, any of them decrypts (chosen by name).
#[derive(Debug)]
struct KeySet {
    keys: Vec<Arc<TicketKey>>,
}

/// Self-rotation state for the no-files case.
#[derive(Debug)]
struct Rotation {
    every: Duration,
    start: tokio::time::Instant,
    /// Milliseconds since `start` at which the next rotation is due.
    next_ms: AtomicU64,
    lock: Mutex<()>,
}

/// Where a [`Ticketer`]'s keys come from.
#[derive(Debug)]
enum Source {
    Files,
    Random(Rotation),
    Secret(ArcSwap<Derivation>),
}

/// Called on each ticket that could not be decrypted (a metric).
type FailureHook = Box<dyn Fn() + Send + Sync>;

/// A [`ProducesTickets`] whose key set can be swapped at any time without locks.
pub struct Ticketer {
    keys: ArcSwap<KeySet>,
    source: Source,
    on_failure: OnceLock<FailureHook>,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticketer")
            .field("keys", &self.keys)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Ticketer {
    /// Keys from files, first encrypts. An empty list is refused.
    pub fn from_files(paths: &[String]) -> Result<Ticketer, TlsError> {
        Ok(Ticketer {
            keys: ArcSwap::from_pointee(read_key_files(paths)?),
            source: Source::Files,
            on_failure: OnceLock::new(),
        })
    }

    /// Keys derived from the secret in `path` per period of `every` wall-clock time
    /// (`clock`: seconds since the Unix epoch), the same on every edge with that secret.
    pub fn from_secret(path: &str, every: Duration, clock: Clock) -> Result<Ticketer, TlsError> {
        let d = Derivation::new(read_secret(path)?, every, clock);
        let keys = d.keys_for(d.period())?;
        let t = Ticketer {
            keys: ArcSwap::from_pointee(KeySet::of(keys)),
            source: Source::Secret(ArcSwap::from_pointee(d)),
            on_failure: OnceLock::new(),
        };
        t.maybe_rotate();
        Ok(t)
    }

    /// Sets what runs on each ticket that does not decrypt (once; later calls are ignored).
    pub fn on_decrypt_failure(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_failure.set(Box::new(hook));
    }

    /// One random key now, a new one every `every`; the previous key keeps decrypting until
    /// the rotation after. Time is tokio's clock, so paused-time tests can drive it.
    pub fn random(every: Duration) -> Result<Ticketer, TlsError> {
        let keys = KeySet {
            keys: vec![Arc::new(TicketKey::random()?)],
        };
        Ok(Ticketer {
            keys: ArcSwap::from_pointee(keys),
            source: Source::Random(Rotation {
                every,
                start: tokio::time::Instant::now(),
                next_ms: AtomicU64::new(every.as_millis() as u64),
                lock: Mutex::new(()),
            }),
            on_failure: OnceLock::new(),
        })
    }

    /// True when keys come from files (and [`Ticketer::reload`] applies).
    pub fn is_file_based(&self) -> bool {
        matches!(self.source, Source::Files)
    }

    /// Replaces the key set from files; on error the old set stays.
    pub fn reload(&self, paths: &[String]) -> Result<(), TlsError> {
        let set = read_key_files(paths)?;
        self.keys.store(Arc::new(set));
        Ok(())
    }

    /// Re-reads the secret (and takes a new rotation); on error the old keys stay. Only for
    /// a ticketer made by [`Ticketer::from_secret`]; others are left as they are.
    pub fn reload_secret(&self, path: &str, every: Duration, clock: Clock) -> Result<(), TlsError> {
        let Source::Secret(current) = &self.source else {
            return Ok(());
        };
        let d = Derivation::new(read_secret(path)?, every, clock);
        let period = d.period();
        let keys = d.keys_for(period)?;
        d.due(); // claims `period`: the keys below are its keys
        current.store(Arc::new(d));
        self.keys.store(Arc::new(KeySet::of(keys)));
        Ok(())
    }

    /// Name of the key that encrypts new tickets now.
    pub fn current_name(&self) -> [u8; NAME_LEN] {
        self.maybe_rotate();
        self.keys.load().keys[0].name
    }

    fn maybe_rotate(&self) {
        let r = match &self.source {
            Source::Files => return,
            Source::Secret(d) => return self.maybe_derive(&d.load()),
            Source::Random(r) => r,
        };
        let now_ms = r.start.elapsed().as_millis() as u64;
        if now_ms < r.next_ms.load(Ordering::Acquire) {
            return;
        }
        let Ok(_guard) = r.lock.lock() else { return };
        if now_ms < r.next_ms.load(Ordering::Acquire) {
            return; // another thread rotated meanwhile
        }
        let Ok(fresh) = TicketKey::random() else {
            return;
        };
        let old = self.keys.load();
        let mut keys = vec![Arc::new(fresh)];
        // Keep only the previous encrypting key; older ones expire here.
        keys.extend(old.keys.first().cloned());
        self.keys.store(Arc::new(KeySet { keys }));
        r.next_ms
            .store(now_ms + r.every.as_millis() as u64, Ordering::Release);
        tracing::info!("rotated the random session ticket key");
    }

    /// Installs the keys of a new period (the first caller to see it derives them).
    fn maybe_derive(&self, d: &Derivation) {
        let Some(period) = d.due() else { return };
        match d.keys_for(period) {
            Ok(keys) => self.keys.store(Arc::new(KeySet::of(keys))),
            Err(e) => tracing::warn!("session ticket keys for period {period}: {e}"),
        }
    }

    fn failed(&self) {
        if let Some(hook) = self.on_failure.get() {
            hook();
        }
    }
}

impl KeySet {
    fn of(keys: Vec<TicketKey>) -> KeySet {
        KeySet {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }
}

fn read_key_files(paths: &[String]) -> Result<KeySet, TlsError> {
    if paths.is_empty() {
        return Err(TlsError::Config("ticket_keys is empty".into()));
    }
    let keys = paths
        .iter()
        .map(|p| TicketKey::from_file(p).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KeySet { keys })
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        match &self.source {
            Source::Secret(d) => d.load().lifetime_secs(),
            _ => TICKET_LIFETIME_SECS,
        }
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.maybe_rotate();
        self.keys.load().keys.first()?.seal(plain)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() > MAX_TICKET || ticket.len() < NAME_LEN {
            self.failed();
            return None;
        }
        self.maybe_rotate();
        let (name, rest) = ticket.split_at(NAME_LEN);
        let set = self.keys.load();
        let plain = set
            .keys
            .iter()
            .find(|k| k.name[..] == *name)
            .and_then(|key| key.open(rest));
        if plain.is_none() {
            self.failed();
        }
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_bytes(fill: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn seals_with_first_key_and_opens_with_any_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str, b: &[u8]| {
            let path = dir.path().join(n);
            std::fs::write(&path, b).unwrap();
            path.to_str().unwrap().to_string()
        };
        let k1 = p("k1", &key_bytes(1, 80));
        let k2 = p("k2", &key_bytes(2, 48));
        let t = Ticketer::from_files(std::slice::from_ref(&k1)).unwrap();
        let old = t.encrypt(b"session state").unwrap();
        assert_eq!(&old[..16], &key_bytes(1, 80)[..16]);
        assert_eq!(t.decrypt(&old).as_deref(), Some(&b"session state"[..]));

        t.reload(&[k2.clone(), k1.clone()]).unwrap();
        let new = t.encrypt(b"x").unwrap();
        assert_eq!(&new[..16], &key_bytes(2, 48)[..16]);
        assert_eq!(t.decrypt(&old).as_deref(), Some(&b"session state"[..]));
        assert_eq!(t.decrypt(&new).as_deref(), Some(&b"x"[..]));

        t.reload(&[k2]).unwrap();
        assert_eq!(t.decrypt(&old), None, "a removed key must not decrypt");
    }

    #[test]
    fn tampered_short_or_huge_tickets_are_none() {
        let t = Ticketer::random(RANDOM_ROTATION).unwrap();
        let good = t.encrypt(b"abc").unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 1;
            assert_eq!(t.decrypt(&bad), None, "flip at {i} accepted");
        }
        for cut in 0..good.len() {
            assert_eq!(t.decrypt(&good[..cut]), None);
        }
        let mut huge = good.clone();
        huge.resize(MAX_TICKET + 1, 0);
        assert_eq!(t.decrypt(&huge), None);
    }

    #[test]
    fn key_file_sizes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 47, 49, 79, 81, 4096] {
            let path = dir.path().join(format!("k{len}"));
            std::fs::write(&path, key_bytes(0, len)).unwrap();
            let path = path.to_str().unwrap().to_string();
            let err = TicketKey::from_file(&path).unwrap_err().to_string();
            assert!(
                err.contains(&path) && err.contains(&format!("{len} bytes")),
                "{err}"
            );
        }
        let err = Ticketer::from_files(&["/nonexistent/ticket.key".into()]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ticket.key"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn random_key_rotates_and_previous_still_decrypts() {
        let t = Ticketer::random(RANDOM_ROTATION).unwrap();
        let first = t.current_name();
        let ticket = t.encrypt(b"s").unwrap();
        tokio::time::advance(RANDOM_ROTATION - Duration::from_secs(1)).await;
        assert_eq!(t.current_name(), first);
        tokio::time::advance(Duration::from_secs(2)).await;
        let second = t.current_name();
        assert_ne!(second, first, "key rotated after 12 h");
        assert_eq!(
            t.decrypt(&ticket).as_deref(),
            Some(&b"s"[..]),
            "previous key accepted"
        );
        tokio::time::advance(RANDOM_ROTATION).await;
        assert_ne!(t.current_name(), second);
        assert_eq!(
            t.decrypt(&ticket),
            None,
            "key from two rotations ago is gone"
        );
    }
}
