//! A bounded duration histogram for p50/p99/max: exact while small, then
//! log-linear buckets (16 per power of two, ≤ 6.25 % error). Memory is
//! fixed whatever the number of samples.

const EXACT: usize = 256;
const SUB: u32 = 16;
const BUCKETS: usize = 64 * SUB as usize;

#[derive(Clone, Debug, Default)]
pub struct LogHistogram {
    exact: Vec<u64>,
    buckets: Option<Box<[u32; BUCKETS]>>,
    count: u64,
    max: u64,
}

fn bucket(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - 4;
    let sub = ((v >> shift) as u32) & (SUB - 1);
    ((msb - 3) * SUB + sub) as usize
}

fn bucket_upper(b: usize) -> u64 {
    if b < SUB as usize {
        return b as u64;
    }
    let msb = b as u32 / SUB + 3;
    let sub = b as u32 % SUB;
    let shift = msb - 4;
    (((SUB + sub) as u64 + 1) << shift) - 1
}

impl LogHistogram {
    pub fn add(&mut self, v: u64) {
        self.count += 1;
        self.max = self.max.max(v);
        if let Some(b) = &mut self.buckets {
            b[bucket(v).min(BUCKETS - 1)] += 1;
            return;
        }
        self.exact.push(v);
        if self.exact.len() > EXACT {
            let mut b = Box::new([0u32; BUCKETS]);
            for &x in &self.exact {
                b[bucket(x).min(BUCKETS - 1)] += 1;
            }
            self.exact = Vec::new();
            self.buckets = Some(b);
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
                    seen += c as u64;
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
    fn buckets_monotonic() {
        let mut last = 0;
        for v in [0u64, 1, 15, 16, 17, 31, 32, 1000, 1 << 20, 1 << 40] {
            let b = bucket(v);
            assert!(b >= last);
            assert!(bucket_upper(b) >= v, "{v}");
            last = b;
        }
    }
}
