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

#[cfg(test)]
mod tests {
    use super::*;

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
