//! The one duration histogram, for a trace's p50/p99/max and for a fleet's:
//! exact while small, then log-linear buckets (16 per power of two, ≤ 6.25 %
//! error). Mergeable: a fleet's histogram is the sum of its traces', so a
//! batch of one trace gives that trace's percentiles. Memory is fixed
//! whatever the number of samples.

const EXACT: usize = 256;
const SUB: u32 = 16;
/// Buckets in all (64 powers of two × 16).
pub const BUCKETS: usize = 64 * SUB as usize;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogHistogram {
    exact: Vec<u64>,
    buckets: Option<Box<[u64; BUCKETS]>>,
    count: u64,
    max: u64,
}

/// The bucket holding `v`.
pub fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - 4;
    let sub = ((v >> shift) as u32) & (SUB - 1);
    (((msb - 3) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The smallest value of bucket `b`.
pub fn bucket_lower(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let msb = b as u32 / SUB + 3;
    let sub = b as u32 % SUB;
    ((SUB + sub) as u64) << (msb - 4)
}

/// The largest value of bucket `b`.
pub fn bucket_upper(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let msb = b as u32 / SUB + 3;
    let sub = b as u32 % SUB;
    let shift = msb - 4;
    (((SUB + sub) as u64 + 1) << shift).wrapping_sub(1)
}

impl LogHistogram {
    pub fn add(&mut self, v: u64) {
        self.count += 1;
        self.max = self.max.max(v);
        if let Some(b) = &mut self.buckets {
            b[bucket(v)] += 1;
            return;
        }
        self.exact.push(v);
        if self.exact.len() > EXACT {
            self.switch_to_buckets();
        }
    }

    /// `n` samples of bucket `b` (read back from a table of buckets; the
    /// max becomes the bucket's top).
    pub fn add_bucket(&mut self, b: usize, n: u64) {
        if n == 0 {
            return;
        }
        let b = b.min(BUCKETS - 1);
        self.switch_to_buckets();
        if let Some(bs) = &mut self.buckets {
            bs[b] += n;
        }
        self.count += n;
        self.max = self.max.max(bucket_upper(b));
    }

    fn switch_to_buckets(&mut self) {
        if self.buckets.is_some() {
            return;
        }
        let mut b = Box::new([0u64; BUCKETS]);
        for &x in &self.exact {
            b[bucket(x)] += 1;
        }
        self.exact = Vec::new();
        self.buckets = Some(b);
    }

    /// Add another histogram's samples (exact while both are small enough).
    pub fn merge(&mut self, o: &LogHistogram) {
        match &o.buckets {
            None if self.buckets.is_none() && self.exact.len() + o.exact.len() <= EXACT => {
                self.exact.extend_from_slice(&o.exact);
                self.count += o.count;
                self.max = self.max.max(o.max);
            }
            _ => {
                self.switch_to_buckets();
                let mine = self.buckets.as_mut().expect("bucket mode");
                match &o.buckets {
                    Some(ob) => mine.iter_mut().zip(ob.iter()).for_each(|(a, b)| *a += b),
                    None => o.exact.iter().for_each(|&x| mine[bucket(x)] += 1),
                }
                self.count += o.count;
                self.max = self.max.max(o.max);
            }
        }
    }

    /// The same samples at bucket resolution, the max the top of the highest
    /// bucket: what a table of buckets gives back (for comparing like with like).
    pub fn bucketed(&self) -> LogHistogram {
        let mut h = LogHistogram::default();
        for (b, n) in self.nonzero_buckets() {
            h.add_bucket(b, n);
        }
        h
    }

    /// `(bucket, count)` of every non-empty bucket, in order.
    pub fn nonzero_buckets(&self) -> Vec<(usize, u64)> {
        match &self.buckets {
            Some(b) => b
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i, c))
                .collect(),
            None => {
                let mut m = std::collections::BTreeMap::new();
                for &x in &self.exact {
                    *m.entry(bucket(x)).or_insert(0u64) += 1;
                }
                m.into_iter().collect()
            }
        }
    }

    /// Each sample (exact mode) or each bucket's lower bound, with its count.
    pub fn values(&self) -> Vec<(u64, u64)> {
        match &self.buckets {
            Some(_) => self
                .nonzero_buckets()
                .into_iter()
                .map(|(b, n)| (bucket_lower(b), n))
                .collect(),
            None => self.exact.iter().map(|&x| (x, 1)).collect(),
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The q-quantile (nearest rank). Exact for small counts, else a bucket bound (capped at max).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        match &self.buckets {
            None => {
                let mut v = self.exact.clone();
                v.sort_unstable();
                v[(rank - 1) as usize]
            }
            Some(b) => {
                let mut seen = 0u64;
                for (i, &c) in b.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        return bucket_upper(i).min(self.max);
                    }
                }
                self.max
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_then_bounded() {
        let mut h = LogHistogram::default();
        for v in 1..=100 {
            h.add(v * 1000);
        }
        assert_eq!(h.quantile(0.5), 50_000);
        assert_eq!(h.quantile(0.99), 99_000);
        assert_eq!(h.max(), 100_000);
        for v in 1..=100_000u64 {
            h.add(v * 10);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.07, "{p50}");
        assert!(h.exact.is_empty());
    }

    #[test]
    fn buckets_monotonic_and_bounded() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 1 << 20, 1 << 40] {
            let b = bucket(v);
            assert!(b >= last);
            assert!(bucket_lower(b) <= v && bucket_upper(b) >= v, "{v}");
            last = b;
        }
        assert!(bucket(u64::MAX) < BUCKETS && bucket_upper(bucket(u64::MAX)) == u64::MAX);
    }

    #[test]
    fn merging_traces_gives_the_fleet_the_same_percentiles() {
        // One trace: the fleet of it has its percentiles, exact or bucketed.
        for n in [10u64, 1000] {
            let mut one = LogHistogram::default();
            (1..=n).for_each(|v| one.add(v * 997));
            let mut fleet = LogHistogram::default();
            fleet.merge(&one);
            assert_eq!(
                (
                    fleet.quantile(0.5),
                    fleet.quantile(0.99),
                    fleet.max(),
                    fleet.count()
                ),
                (
                    one.quantile(0.5),
                    one.quantile(0.99),
                    one.max(),
                    one.count()
                )
            );
        }
        // Two halves merged: the whole's percentiles.
        let (mut a, mut b, mut all) = (
            LogHistogram::default(),
            LogHistogram::default(),
            LogHistogram::default(),
        );
        for v in 1..=2000u64 {
            if v % 2 == 0 {
                a.add(v * 10)
            } else {
                b.add(v * 10)
            }
            all.add(v * 10);
        }
        a.merge(&b);
        assert_eq!(
            (a.quantile(0.5), a.quantile(0.99), a.count()),
            (all.quantile(0.5), all.quantile(0.99), all.count())
        );
        // Read back from a bucket table: the same buckets.
        let mut back = LogHistogram::default();
        for (bk, n) in all.nonzero_buckets() {
            back.add_bucket(bk, n);
        }
        assert_eq!(back, all.bucketed());
    }
}
