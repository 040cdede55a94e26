//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) for `balance = "hash"`: a lookup
//! table of a prime number of slots, filled from per-server permutations derived from the
//! server's name, so balancers with the same servers and weights build the same table with no
//! coordination, and removing one of N servers moves about 1/N of the keys. Table building and
//! lookup only; which servers are in play and the slot grab are the snapshot's and `algo`'s.

use super::snapshot::hash64;

/// Slots in the table: prime, and ≥ 100 × the servers of any real backend (the paper's rule
/// for an even spread).
pub(crate) const TABLE_SIZE: usize = 65_537;
/// Largest per-round claim count after gcd reduction (weights beyond scale down).
const MAX_WEIGHT: u64 = 256;

/// Builds the table over `ids` (server indices) named `names` with `weights`: entry `k` is
/// the server index owning slot `k`. Servers take turns in name order (so the configuration
/// order does not matter), each claiming `weight` slots per round along its own permutation.
pub(crate) fn table(ids: &[usize], names: &[&str], weights: &[u64]) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    let w = super::snapshot::reduce(weights, MAX_WEIGHT * ids.len() as u64);
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(names[b]).then(a.cmp(&b)));
    let m = TABLE_SIZE as u64;
    let perm: Vec<(u64, u64)> = names
        .iter()
        .map(|n| {
            let offset = hash64(&[b"maglev offset", n.as_bytes()]) % m;
            let skip = hash64(&[b"maglev skip", n.as_bytes()]) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; ids.len()];
    let mut table = vec![u32::MAX; TABLE_SIZE];
    let mut filled = 0;
    while filled < TABLE_SIZE {
        for &k in &order {
            for _ in 0..w[k] {
                let (offset, skip) = perm[k];
                // Every step of a permutation reaches a new slot (m is prime, skip < m), so
                // this loop ends within m steps.
                let mut slot = ((offset + next[k] * skip) % m) as usize;
                while table[slot] != u32::MAX {
                    next[k] += 1;
                    slot = ((offset + next[k] * skip) % m) as usize;
                }
                table[slot] = ids[k] as u32;
                next[k] += 1;
                filled += 1;
                if filled == TABLE_SIZE {
                    return table;
                }
            }
        }
    }
    table
}

/// The slot of a key hash.
pub(crate) fn slot(hash: u64) -> usize {
    (hash % TABLE_SIZE as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("srv{i}")).collect()
    }

    fn build(names: &[String], weights: &[u64]) -> Vec<u32> {
        let ids: Vec<usize> = (0..names.len()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        table(&ids, &refs, weights)
    }

    fn key(i: u32) -> usize {
        slot(hash64(&[&i.to_le_bytes()]))
    }

    #[test]
    fn the_same_servers_give_the_same_table_in_any_order() {
        let n = names(4);
        let a = build(&n, &[1; 4]);
        // The same servers listed in another order: the same owner for every slot.
        let rev: Vec<String> = n.iter().rev().cloned().collect();
        let b = build(&rev, &[1; 4]);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(n[*x as usize], rev[*y as usize]);
        }
        assert!(a.iter().all(|&s| s < 4));
    }

    #[test]
    fn removing_one_of_four_moves_about_a_quarter() {
        let n = names(4);
        let before = build(&n, &[1; 4]);
        let three: Vec<String> = n[..3].to_vec();
        let after = build(&three, &[1; 3]);
        let moved = (0..1000)
            .filter(|&i| n[before[key(i)] as usize] != three[after[key(i)] as usize])
            .count();
        // The removed server's keys (~25 %) must move; few others may.
        assert!((200..=300).contains(&moved), "{moved} of 1000 moved");
        let spread: Vec<usize> = (0..4)
            .map(|s| before.iter().filter(|&&o| o == s).count())
            .collect();
        assert!(spread
            .iter()
            .all(|&c| c.abs_diff(TABLE_SIZE / 4) < TABLE_SIZE / 100));
    }

    #[test]
    fn weights_set_the_share() {
        let t = build(&names(2), &[1, 2]);
        let a = t.iter().filter(|&&o| o == 0).count() as f64 / TABLE_SIZE as f64;
        assert!((a - 1.0 / 3.0).abs() < 0.01, "share {a}");
        let t = build(&names(3), &[100, 200, 300]);
        let c = t.iter().filter(|&&o| o == 2).count() as f64 / TABLE_SIZE as f64;
        assert!((c - 0.5).abs() < 0.01, "share {c}");
    }
}
