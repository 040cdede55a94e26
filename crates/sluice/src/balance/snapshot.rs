//! The immutable selection snapshot: the pool's server list, which of them are in play (up
//! primaries, else up backups) and the precomputed per-algorithm data (SWRR schedule, hash
//! ring, cumulative weights, Maglev table) over effective weights (agent %, slow start).
//! Rebuilt on every health, agent or warm-up step change and on an in-place server update
//! (DNS), swapped in via ArcSwap; never mutated in place.

use std::net::IpAddr;
use std::sync::Arc;

use super::server::ServerEntry;
use crate::spec::Balance;

/// Longest SWRR schedule; larger weight sums are scaled down proportionally.
const MAX_SCHEDULE: u64 = 4096;
/// Virtual nodes on the hash ring per (gcd-reduced) weight unit.
const VNODES_PER_WEIGHT: u64 = 128;
/// Most points on the ring; larger rings are scaled down proportionally.
const MAX_RING: u64 = 65_536;

#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// The pool's servers, in configuration order; indices below point into it.
    pub servers: Arc<Vec<Arc<ServerEntry>>>,
    /// Indices of the servers selection may use, in configuration order.
    pub eligible: Vec<usize>,
    /// True when `eligible` holds backups because no primary is up.
    pub backup_mode: bool,
    /// roundrobin: the smooth-weighted interleaving, one full cycle.
    pub schedule: Vec<u32>,
    /// source: (point hash, server index), sorted by hash.
    pub ring: Vec<(u64, u32)>,
    /// random: cumulative weights over `eligible`.
    pub cum_weights: Vec<u64>,
    /// hash: the Maglev lookup table (server index per slot).
    pub maglev: Vec<u32>,
    /// Effective weight of every server, by position (`ServerEntry::effective_weight`: the
    /// configured weight scaled by the agent's % and the slow-start step).
    pub weights: Vec<u64>,
}

impl Snapshot {
    /// The effective weight of server `id` (leastconn and random compare load per weight).
    pub(crate) fn weight_of(&self, id: usize) -> u64 {
        self.weights.get(id).copied().unwrap_or(0)
    }
}

impl Snapshot {
    pub(crate) fn build(members: Arc<Vec<Arc<ServerEntry>>>, balance: Balance) -> Snapshot {
        let servers = &members[..];
        let now = tokio::time::Instant::now();
        // Effective weights (configured x agent % x slow-start step), by server position.
        let weights: Vec<u64> = servers.iter().map(|s| s.effective_weight(now).0).collect();
        let usable = |backup: bool| -> Vec<usize> {
            (0..servers.len())
                .filter(|&i| {
                    let s = &servers[i];
                    s.backup == backup
                        && weights[i] > 0
                        && s.is_up()
                        && !s.agent_down()
                        && s.takes_new()
                        && s.agent_ready()
                })
                .collect()
        };
        let mut eligible = usable(false);
        let mut backup_mode = false;
        if eligible.is_empty() {
            eligible = usable(true);
            backup_mode = !eligible.is_empty();
        }
        let eligible_weights: Vec<u64> = eligible.iter().map(|&i| weights[i]).collect();
        let mut snap = Snapshot {
            servers: members.clone(),
            backup_mode,
            weights,
            ..Snapshot::default()
        };
        match balance {
            Balance::Roundrobin => snap.schedule = swrr_schedule(&eligible, &eligible_weights),
            Balance::Source => {
                let names: Vec<&str> = eligible.iter().map(|&i| servers[i].name.as_str()).collect();
                snap.ring = hash_ring(&eligible, &names, &eligible_weights);
            }
            Balance::Random => {
                let mut acc = 0;
                snap.cum_weights = eligible_weights
                    .iter()
                    .map(|w| {
                        acc += w;
                        acc
                    })
                    .collect();
            }
            Balance::Hash => {
                let names: Vec<&str> = eligible.iter().map(|&i| servers[i].name.as_str()).collect();
                snap.maglev = super::maglev::table(&eligible, &names, &eligible_weights);
            }
            Balance::Leastconn => {}
        }
        snap.eligible = eligible;
        snap
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Divides by the common gcd, then scales so the sum stays within `cap` (each weight >= 1).
pub(super) fn reduce(weights: &[u64], cap: u64) -> Vec<u64> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let sum: u64 = w.iter().sum();
    if sum > cap {
        w = w.iter().map(|x| (x * cap / sum).max(1)).collect();
    }
    w
}

/// nginx's smooth weighted round robin, unrolled over one cycle (sum of reduced weights).
/// Weights 5,1,1 give a a b a c a a.
pub(crate) fn swrr_schedule(ids: &[usize], weights: &[u64]) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let w = reduce(weights, MAX_SCHEDULE);
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for k in 0..w.len() {
            current[k] += w[k] as i64;
            if current[k] > current[best] {
                best = k;
            }
        }
        current[best] -= total;
        out.push(ids[best] as u32);
    }
    out
}

/// 64-bit FNV-1a followed by the splitmix64 finalizer (good avalanche, stable across builds).
pub(crate) fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The hash key of a client: its IP only (not the port), IPv4-mapped IPv6 folded to IPv4.
pub(crate) fn client_hash(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash64(&[&v4.octets()]),
        IpAddr::V6(v6) => hash64(&[&v6.octets()]),
    }
}

/// Consistent-hash ring: each server contributes points named after itself, so a server's
/// points do not depend on the others and removing one moves only its own clients.
fn hash_ring(ids: &[usize], names: &[&str], weights: &[u64]) -> Vec<(u64, u32)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let w = reduce(weights, MAX_RING / VNODES_PER_WEIGHT);
    let mut ring = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        for v in 0..w[k] * VNODES_PER_WEIGHT {
            ring.push((hash64(&[names[k].as_bytes(), &v.to_le_bytes()]), id as u32));
        }
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swrr_interleaves_without_bursts() {
        let s = swrr_schedule(&[0, 1, 2], &[5, 1, 1]);
        assert_eq!(s, vec![0, 0, 1, 0, 2, 0, 0]);
        let s = swrr_schedule(&[0, 1], &[3, 2]);
        assert_eq!(s, vec![0, 1, 0, 1, 0]);
        // gcd reduction keeps the cycle short, the pattern the same.
        assert_eq!(swrr_schedule(&[0, 1], &[300, 200]), vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn huge_weights_are_capped() {
        let s = swrr_schedule(&[0, 1], &[u32::MAX as u64, 1]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 1);
        assert!(s.contains(&1));
    }
}
