//! Run partitions (`server.partitions`, DESIGN.md section 3, "partitioned
//! orchestrators"): every run id hashes to one of P partitions, each owned by
//! one orchestrator at a time. The hash is FNV-1a (64-bit) of the id's bytes,
//! written out here so every process and every version computes the same
//! partition for a run.

/// Most partitions a studio may have.
pub const MAX_PARTITIONS: u32 = 64;

/// The partition of `run_id` among `partitions` (0 when `partitions` ≤ 1).
/// A retry (`<run>~retry<N>`, made by the orchestrator owning `<run>`) hashes
/// as its run, so it lives where the run it retries does.
pub fn of(run_id: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    let base = match run_id.rsplit_once("~retry") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => run_id,
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in base.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(partitions)) as u32
}

/// An id made from `base` that hashes to partition `k`: `base` itself when
/// it does, else `base~p<n>` for the smallest `n` that does. For runs an
/// orchestrator makes itself (review batches), so they live, and are looked
/// up, in the partition that made them. Gives `base` back when
/// `partitions` ≤ 1 or `k` is not a partition.
pub fn id_in(base: &str, k: u32, partitions: u32) -> String {
    if partitions <= 1 || k >= partitions || of(base, partitions) == k {
        return base.to_string();
    }
    // Each try lands in `k` with probability 1/P: 64 × P tries miss with
    // probability about e^-64.
    for n in 0..u64::from(partitions) * 64 {
        let id = format!("{base}~p{n}");
        if of(&id, partitions) == k {
            return id;
        }
    }
    base.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_for_a_partition_land_in_it() {
        for p in [2, 8, 64] {
            for k in 0..p {
                let id = id_in("review-batch:loop@2026-01-01T00:00:00.000Z", k, p);
                assert_eq!(of(&id, p), k, "{id}");
            }
        }
        assert_eq!(id_in("x", 0, 1), "x");
        assert_eq!(id_in("x", 9, 8), "x");
    }

    #[test]
    fn stable_and_spread() {
        assert_eq!(of("anything", 1), 0);
        assert_eq!(of("anything", 0), 0);
        // Fixed values: a change here would move every stored run.
        assert_eq!(of("", 8), (0xcbf2_9ce4_8422_2325u64 % 8) as u32);
        let a = of("daily@2026-01-01T00:00:00Z", 8);
        assert_eq!(a, of("daily@2026-01-01T00:00:00Z", 8));
        assert_eq!(of("daily@x~retry2", 8), of("daily@x", 8));
        assert_eq!(of("daily@x~retry", 64), of("daily@x~retry", 64));
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[of(&format!("bench@{i}"), 8) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {counts:?}");
        }
    }
}
