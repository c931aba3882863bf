//! [`Histogram`]: latencies in nanoseconds, recorded in constant time and merged across processes.
//!
//! Buckets are log-linear: 32 per power of two, so a reported quantile is at most about 3 % above
//! the true value. A worker process records into one histogram and sends it to the coordinator as
//! sparse `(bucket, count)` pairs, which merge exactly.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A latency histogram; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

/// The sparse form a histogram travels in.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SparseHistogram {
    counts: Vec<(u32, u64)>,
    max: u64,
    sum: u128,
}

fn index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) as usize & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The largest value that falls into bucket `index`.
fn upper_bound(index: usize) -> u64 {
    if index < SUB {
        return index as u64;
    }
    let shift = (index >> SUB_BITS) - 1;
    let lower = ((SUB + (index & (SUB - 1))) as u64) << shift;
    lower + ((1u64 << shift) - 1)
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0, sum: 0 }
    }
}

impl Histogram {
    pub(crate) fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.5 for the median): the upper bound of its bucket, never more
    /// than the largest value recorded. 0 when nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound(index).min(self.max);
            }
        }
        self.max
    }

    pub(crate) fn merge(&mut self, other: &SparseHistogram) {
        for &(index, count) in &other.counts {
            if let Some(slot) = self.counts.get_mut(index as usize) {
                *slot += count;
                self.total += count;
            }
        }
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub(crate) fn to_sparse(&self) -> SparseHistogram {
        let counts = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, &count)| (index as u32, count))
            .collect();
        SparseHistogram { counts, max: self.max, sum: self.sum }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values_within_three_percent() {
        for value in (0..5000).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let bound = upper_bound(index(value));
            assert!(bound >= value, "{value} above its bucket's bound {bound}");
            assert!(bound - value <= value / 32 + 1, "{value}: bound {bound} too loose");
        }
    }

    #[test]
    fn quantiles_survive_the_trip_through_the_sparse_form() {
        let mut histogram = Histogram::default();
        for value in 1..=1000 {
            histogram.record(value * 1000);
        }
        let mut merged = Histogram::default();
        merged.merge(&histogram.to_sparse());
        assert_eq!(merged.count(), 1000);
        assert_eq!(merged.max(), 1_000_000);
        for (q, expected) in [(0.5, 500_000), (0.99, 990_000), (1.0, 1_000_000)] {
            let got = merged.quantile(q);
            assert!(got >= expected && got <= expected + expected / 32, "q{q}: {got}");
        }
    }
}
