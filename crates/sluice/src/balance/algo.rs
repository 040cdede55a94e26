//! The five selection algorithms over an immutable snapshot. Each returns a server index
//! whose connection slot it has already taken (`try_acquire`), or None. No locks: only the
//! snapshot, the pool's rotation counter and per-server atomics are touched.

use std::sync::atomic::Ordering;

use rand::Rng;

use super::snapshot::{client_hash, hash64, Snapshot};
use super::{Pool, ServerId};
use crate::addr::ClientAddr;
use crate::spec::Balance;

/// Attempts when a chosen server fills up between the load read and the slot grab.
const RACE_RETRIES: usize = 4;

/// What a hashing algorithm hashes: `key` when given (the SNI), else the client's IP.
#[derive(Clone, Copy)]
pub(super) struct Key<'a> {
    pub client: &'a ClientAddr,
    pub key: Option<&'a [u8]>,
}

pub(super) fn pick(
    pool: &Pool,
    snap: &Snapshot,
    key: Key<'_>,
    tried: &[ServerId],
) -> Option<usize> {
    if snap.eligible.is_empty() {
        return None;
    }
    match pool.balance {
        Balance::Roundrobin => roundrobin(pool, snap, tried),
        Balance::Leastconn => leastconn(pool, snap, tried),
        Balance::Source => source(snap, key.client, tried),
        Balance::Random => random(pool, snap, tried),
        Balance::Hash => hash(snap, key, tried),
    }
}

/// Maglev: the key's slot names the server; a tried or full server passes the key on to
/// the owners of the following slots, in order (the same fallback on every balancer).
fn hash(snap: &Snapshot, key: Key<'_>, tried: &[ServerId]) -> Option<usize> {
    let table = &snap.maglev;
    let h = match key.key {
        Some(k) => hash64(&[k]),
        None => client_hash(key.client.addr().ip()),
    };
    let start = super::maglev::slot(h);
    let mut seen: Vec<usize> = Vec::new();
    for k in 0..table.len() {
        let id = table[(start + k) % table.len()] as usize;
        if seen.contains(&id) {
            continue;
        }
        if grab(snap, tried, id) {
            return Some(id);
        }
        seen.push(id);
        if seen.len() == snap.eligible.len() {
            return None;
        }
    }
    None
}

fn untried(tried: &[ServerId], id: usize) -> bool {
    !tried.contains(&ServerId(id))
}

/// Takes a slot on `id` unless it was tried already or is full.
fn grab(snap: &Snapshot, tried: &[ServerId], id: usize) -> bool {
    untried(tried, id) && snap.servers[id].try_acquire()
}

/// Next entry of the precomputed SWRR cycle; skipped (tried/full) entries pass to the next
/// one, so the weighted order holds among the remaining servers.
fn roundrobin(pool: &Pool, snap: &Snapshot, tried: &[ServerId]) -> Option<usize> {
    let n = snap.schedule.len();
    let start = pool.rr_next();
    (0..n)
        .map(|k| snap.schedule[(start + k) % n] as usize)
        .find(|&id| grab(snap, tried, id))
}

/// `a` carries less load than `b` relative to weight: active_a/w_a < active_b/w_b.
fn lighter(snap: &Snapshot, a: usize, b: usize) -> bool {
    let (sa, sb) = (&snap.servers[a], &snap.servers[b]);
    let la = sa.active.load(Ordering::Relaxed) as u128;
    let lb = sb.active.load(Ordering::Relaxed) as u128;
    la * u128::from(snap.weight_of(b)) < lb * u128::from(snap.weight_of(a))
}

/// Fewest active connections per weight unit; ties go to the first in a rotating order.
/// One pass, one atomic load per server.
fn leastconn(pool: &Pool, snap: &Snapshot, tried: &[ServerId]) -> Option<usize> {
    let n = snap.eligible.len();
    for _ in 0..RACE_RETRIES {
        let mut idx = pool.rr_next() % n;
        // (server, active, weight) of the lightest so far.
        let mut best: Option<(usize, u64, u64)> = None;
        for _ in 0..n {
            let id = snap.eligible[idx];
            idx = if idx + 1 == n { 0 } else { idx + 1 };
            let s = &snap.servers[id];
            let active = s.active.load(Ordering::Relaxed);
            if (s.max_connections != 0 && active >= s.max_connections) || !untried(tried, id) {
                continue;
            }
            let (a, w) = (active as u64, snap.weight_of(id));
            // a/w < ba/bw without division; a < 2^32 and w < 2^32 in any real deployment,
            // and saturation only blurs ties beyond that.
            if best.is_none_or(|(_, ba, bw)| a.saturating_mul(bw) < ba.saturating_mul(w)) {
                best = Some((id, a, w));
            }
        }
        let (id, _, _) = best?;
        if snap.servers[id].try_acquire() {
            return Some(id);
        }
    }
    None
}

/// Consistent hash of the client IP on the ring of selectable servers; a tried or full
/// server passes the client on to the next distinct server clockwise.
fn source(snap: &Snapshot, client: &ClientAddr, tried: &[ServerId]) -> Option<usize> {
    let ring = &snap.ring;
    let n = ring.len();
    let h = client_hash(client.addr().ip());
    let start = ring.partition_point(|p| p.0 < h);
    let mut last_rejected = usize::MAX;
    for k in 0..n {
        let id = ring[(start + k) % n].1 as usize;
        if id == last_rejected {
            continue;
        }
        if grab(snap, tried, id) {
            return Some(id);
        }
        last_rejected = id;
    }
    None
}

/// Two weighted random choices; the lighter one (per weight) wins. Falls back to leastconn
/// when both are tried or full.
fn random(pool: &Pool, snap: &Snapshot, tried: &[ServerId]) -> Option<usize> {
    let cum = &snap.cum_weights;
    let total = *cum.last()?;
    let mut rng = rand::thread_rng();
    let mut draw = || {
        let r = rng.gen_range(0..total);
        snap.eligible[cum.partition_point(|&c| c <= r)]
    };
    let (a, b) = (draw(), draw());
    let (first, second) = if lighter(snap, b, a) { (b, a) } else { (a, b) };
    if grab(snap, tried, first) {
        return Some(first);
    }
    if second != first && grab(snap, tried, second) {
        return Some(second);
    }
    leastconn(pool, snap, tried)
}
