//! Ticket keys derived from one shared secret (`[frontend.tls] ticket_secret`), so every edge
//! of a fleet rotates at the same moment with no key distribution: period n = ⌊unix time /
//! rotation⌋, its key = HKDF-SHA256(secret, n). Encrypt with n, decrypt with n-1, n, n+1.
//! Reading the secret file and the derivation live here; sealing is `tickets.rs`'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};

use super::certs::read_limited;
use super::tickets::TicketKey;
use super::TlsError;

/// Fewest secret bytes accepted (256 bits).
pub(super) const MIN_SECRET: usize = 32;
/// Most secret bytes read.
pub(super) const MAX_SECRET: u64 = 1024;
/// The HKDF salt: names the scheme, so a secret reused elsewhere yields other keys.
const SALT: &[u8] = b"sluice session ticket key v1";
/// HKDF output per period: key name (16) and AES-256-GCM key (32).
const OKM_LEN: usize = 48;

struct Okm;

impl KeyType for Okm {
    fn len(&self) -> usize {
        OKM_LEN
    }
}

/// The wall clock as seconds since the Unix epoch; a test can supply its own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock ([`Clock`]'s default).
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Reads and checks a secret file: [`MIN_SECRET`]..=[`MAX_SECRET`] bytes, used as they are
/// (`openssl rand 32 > FILE` or `openssl rand -hex 32 > FILE` both work).
pub(super) fn read_secret(path: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = read_limited(path, MAX_SECRET)?;
    if bytes.len() < MIN_SECRET {
        return Err(TlsError::Config(format!(
            "ticket_secret {path}: {} bytes; at least {MIN_SECRET} random bytes are needed \
             (e.g. `openssl rand 32 > {path}`)",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The ticket key of `period` under `secret`: the same on every edge with the same secret.
pub(super) fn derive(secret: &[u8], period: u64) -> Result<TicketKey, TlsError> {
    let prk = Salt::new(HKDF_SHA256, SALT).extract(secret);
    let info = period.to_be_bytes();
    let info = [&info[..]];
    let okm = prk.expand(&info, Okm).map_err(|_| TlsError::Random)?;
    let mut out = [0u8; OKM_LEN];
    okm.fill(&mut out).map_err(|_| TlsError::Random)?;
    let mut name = [0u8; 16];
    name.copy_from_slice(&out[..16]);
    TicketKey::aes256(name, &out[16..])
}

/// The period arithmetic and the secret, for one frontend.
pub(super) struct Derivation {
    secret: Vec<u8>,
    every: u64,
    clock: Clock,
    /// The period the installed keys were derived for (u64::MAX: none yet).
    derived_for: AtomicU64,
}

impl std::fmt::Debug for Derivation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Derivation")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl Derivation {
    /// `every` is at least a second (config checks the range).
    pub(super) fn new(secret: Vec<u8>, every: Duration, clock: Clock) -> Derivation {
        Derivation {
            secret,
            every: every.as_secs().max(1),
            clock,
            derived_for: AtomicU64::new(u64::MAX),
        }
    }

    /// The current period.
    pub(super) fn period(&self) -> u64 {
        (self.clock)() / self.every
    }

    /// The keys of `period` in use order: that period's (encrypts), the previous one and the
    /// next one (both only decrypt: tickets from just before a rotation, and from an edge
    /// whose clock is a little ahead).
    pub(super) fn keys_for(&self, period: u64) -> Result<Vec<TicketKey>, TlsError> {
        let mut keys = vec![derive(&self.secret, period)?];
        if let Some(prev) = period.checked_sub(1) {
            keys.push(derive(&self.secret, prev)?);
        }
        keys.push(derive(&self.secret, period.saturating_add(1))?);
        Ok(keys)
    }

    /// The period to derive for when it differs from the installed one (and claims it, so
    /// one caller derives); None when the installed keys are current.
    pub(super) fn due(&self) -> Option<u64> {
        let now = self.period();
        let had = self.derived_for.load(Ordering::Acquire);
        (had != now
            && self
                .derived_for
                .compare_exchange(had, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then_some(now)
    }

    /// Seconds a ticket is good for: two periods (the hint sent to clients).
    pub(super) fn lifetime_secs(&self) -> u32 {
        u32::try_from(self.every.saturating_mul(2)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_secret_and_period_give_the_same_key_everywhere() {
        let s = [7u8; 32];
        let a = derive(&s, 42).unwrap();
        let b = derive(&s, 42).unwrap();
        assert_eq!(a.name(), b.name());
        assert_ne!(derive(&s, 43).unwrap().name(), a.name());
        assert_ne!(derive(&[8u8; 32], 42).unwrap().name(), a.name());
        // Sealed by one derivation, opened by another one of the same period.
        let t = a.seal_for_test(b"state");
        assert_eq!(b.open_for_test(&t).as_deref(), Some(&b"state"[..]));
    }

    #[test]
    fn periods_follow_the_clock_and_are_claimed_once() {
        let now = Arc::new(AtomicU64::new(1_000));
        let c = now.clone();
        let d = Derivation::new(
            vec![1; 32],
            Duration::from_secs(10),
            Arc::new(move || c.load(Ordering::SeqCst)),
        );
        assert_eq!(d.due(), Some(100));
        assert_eq!(d.due(), None);
        now.store(1_009, Ordering::SeqCst);
        assert_eq!(d.due(), None);
        now.store(1_010, Ordering::SeqCst);
        assert_eq!(d.due(), Some(101));
        assert_eq!(d.lifetime_secs(), 20);
        let names: Vec<_> = d.keys_for(101).unwrap().iter().map(|k| *k.name()).collect();
        let want: Vec<_> = [101, 100, 102]
            .iter()
            .map(|p| *derive(&[1; 32], *p).unwrap().name())
            .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn short_secrets_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, [0u8; 31]).unwrap();
        let p = path.to_str().unwrap();
        let e = read_secret(p).unwrap_err().to_string();
        assert!(e.contains("31 bytes") && e.contains(p), "{e}");
        std::fs::write(&path, [0u8; 32]).unwrap();
        assert_eq!(read_secret(p).unwrap().len(), 32);
        std::fs::write(&path, vec![0u8; 1025]).unwrap();
        assert!(read_secret(p).is_err());
    }
}
