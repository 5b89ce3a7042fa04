//! Regressions of a fleet against its baseline (README "Batches and
//! regressions"): a finding kind's rate of traces with a warning or error
//! of that kind, by a one-sided Fisher exact test (or absent from the
//! baseline and present now), and each NMI handler's p99 latency (doubled,
//! or crossing the kernel's 1 ms `nmi_longest_ns`). The baseline is read
//! back from an earlier batch's Parquet files (feature `tables`).

use crate::finding::KindName;
use crate::histogram::LogHistogram;
use crate::units::fmt_ns;
use std::collections::{BTreeMap, BTreeSet};
#[cfg(feature = "tables")]
use std::path::Path;
use std::path::PathBuf;

/// Significance level of the finding-rate test.
pub const ALPHA: f64 = 0.05;
/// Calls of a handler needed in both batches before its p99 is compared.
pub const MIN_CALLS_P99: u64 = 50;
/// p99 ratio that counts as a regression.
pub const P99_RATIO: f64 = 2.0;
/// The kernel's `nmi_longest_ns`: a p99 crossing it is a regression.
const SLOW_NS: f64 = crate::detect::slow_handler::SLOW_HANDLER_NS as f64;

/// What an earlier batch said (read back from its Parquet files).
pub struct Baseline {
    pub dir: PathBuf,
    pub traces_ok: u64,
    /// Kind → traces with a warning or error of that kind.
    pub serious: BTreeMap<KindName, u64>,
    pub durations: BTreeMap<String, LogHistogram>,
}

/// A finding kind's number of traces, and the baseline's.
#[derive(Clone, Debug)]
pub struct KindRate {
    pub kind: KindName,
    /// Traces with at least one such finding.
    pub traces: u64,
    /// The same in the baseline, when comparing.
    pub baseline_traces: Option<u64>,
    pub regressed: bool,
}

/// A handler's fleet p99 against the baseline's.
#[derive(Clone, Debug)]
pub struct P99Row {
    pub handler: String,
    pub p99_ns: Option<f64>,
    pub baseline_p99_ns: Option<f64>,
    pub regressed: bool,
}

#[cfg(feature = "tables")]
fn str_col<'a>(
    df: &'a polars::prelude::DataFrame,
    name: &str,
) -> polars::prelude::PolarsResult<&'a polars::prelude::StringChunked> {
    df.column(name)?.str()
}

/// Read an earlier batch's `traces.parquet`, `findings.parquet` and `nmi_durations.parquet`.
#[cfg(feature = "tables")]
pub fn read_baseline(dir: &Path) -> Result<Baseline, String> {
    let ctx =
        |f: &'static str| move |e: PolarsError| format!("baseline {}: {f}: {e}", dir.display());
    use crate::tables::read_parquet;
    use polars::prelude::PolarsError;
    let traces = read_parquet(&dir.join("traces.parquet")).map_err(ctx("traces.parquet"))?;
    let status = str_col(&traces, "status").map_err(ctx("traces.parquet"))?;
    let traces_ok = status.iter().filter(|s| *s == Some("ok")).count() as u64;
    let findings = read_parquet(&dir.join("findings.parquet")).map_err(ctx("findings.parquet"))?;
    let c = ctx("findings.parquet");
    let (t, k, s) = (
        str_col(&findings, "trace").map_err(&c)?,
        str_col(&findings, "kind").map_err(&c)?,
        str_col(&findings, "severity").map_err(&c)?,
    );
    let mut pairs = BTreeSet::new();
    for ((t, k), s) in t.iter().zip(k.iter()).zip(s.iter()) {
        if let (Some(t), Some(k), Some(s)) = (t, k, s) {
            if s == "warning" || s == "error" {
                pairs.insert((t.to_string(), k.to_string()));
            }
        }
    }
    let mut serious = BTreeMap::new();
    for (_, k) in pairs {
        *serious.entry(KindName::parse(&k)).or_insert(0) += 1;
    }
    let d =
        read_parquet(&dir.join("nmi_durations.parquet")).map_err(ctx("nmi_durations.parquet"))?;
    let c = ctx("nmi_durations.parquet");
    let h = str_col(&d, "handler").map_err(&c)?;
    // By each bucket's lower bound, whatever bucket scheme wrote the file
    // (before this version: 10 log bins per decade).
    let low = d
        .column("bucket_low_ns")
        .and_then(|x| x.f64())
        .map_err(&c)?;
    let c = d.column("count").and_then(|x| x.u64()).map_err(&c)?;
    let mut durations: BTreeMap<String, LogHistogram> = BTreeMap::new();
    for ((h, low), c) in h.iter().zip(low.iter()).zip(c.iter()) {
        if let (Some(h), Some(low), Some(c)) = (h, low, c) {
            durations
                .entry(h.to_string())
                .or_default()
                .add_bucket(crate::histogram::bucket(low.max(0.0) as u64), c);
        }
    }
    Ok(Baseline {
        dir: dir.to_path_buf(),
        traces_ok,
        serious,
        durations,
    })
}

fn ln_fact(n: u64, table: &mut Vec<f64>) -> f64 {
    while table.len() as u64 <= n {
        let k = table.len();
        let prev = table.last().copied().unwrap_or(0.0);
        table.push(if k == 0 { 0.0 } else { prev + (k as f64).ln() });
    }
    table[n as usize]
}

/// One-sided Fisher exact test: P(X >= a) where X is how many of the `k`
/// traces with the finding fall in the current batch of `n`, out of `n + m`.
pub fn fisher_greater(a: u64, n: u64, b: u64, m: u64) -> f64 {
    let total = n + m;
    let k = a + b;
    let mut t = Vec::new();
    let ln_choose =
        |x: u64, y: u64, t: &mut Vec<f64>| ln_fact(x, t) - ln_fact(y, t) - ln_fact(x - y, t);
    let denom = ln_choose(total, k, &mut t);
    let hi = k.min(n);
    let mut p = 0.0;
    for x in a..=hi {
        if k - x > m {
            continue;
        }
        p += (ln_choose(n, x, &mut t) + ln_choose(m, k - x, &mut t) - denom).exp();
    }
    p.min(1.0)
}

/// A regression found against the baseline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Regression {
    pub what: String,
    pub kind_or_handler: String,
    pub baseline: String,
    pub current: String,
    pub rule: String,
}

pub struct Comparison {
    pub rates: Vec<KindRate>,
    pub p99: Vec<P99Row>,
    pub regressions: Vec<Regression>,
}

/// Compare a batch with its baseline. `n`: traces analysed; `cur`: kind →
/// traces with a warning or error of that kind; `fleet_durations`: the
/// batch's handler durations, summed.
pub fn compare(
    n: u64,
    cur: &BTreeMap<KindName, u64>,
    fleet_durations: &BTreeMap<String, LogHistogram>,
    base: &Baseline,
) -> Comparison {
    let kinds: BTreeSet<KindName> = cur.keys().chain(base.serious.keys()).cloned().collect();
    let mut rates = Vec::new();
    let mut regressions = Vec::new();
    let m = base.traces_ok;
    for k in kinds {
        let a = cur.get(&k).copied().unwrap_or(0);
        let b = base.serious.get(&k).copied().unwrap_or(0);
        let rate_now = if n > 0 { a as f64 / n as f64 } else { 0.0 };
        let rate_base = if m > 0 { b as f64 / m as f64 } else { 0.0 };
        let mut regressed = false;
        if a > 0 && b == 0 {
            regressed = true;
            regressions.push(Regression {
                what: "finding rate".into(),
                kind_or_handler: k.to_string(),
                baseline: format!("0 of {m} traces"),
                current: format!("{a} of {n} traces"),
                rule: "kind absent from the baseline (warning or error) appears".into(),
            });
        } else if a > 0 && rate_now > rate_base {
            let p = fisher_greater(a, n, b, m);
            if p < ALPHA {
                regressed = true;
                regressions.push(Regression {
                    what: "finding rate".into(),
                    kind_or_handler: k.to_string(),
                    baseline: format!("{b} of {m} traces ({:.1}%)", 100.0 * rate_base),
                    current: format!("{a} of {n} traces ({:.1}%)", 100.0 * rate_now),
                    rule: format!("one-sided Fisher exact p = {p:.4} < {ALPHA}"),
                });
            }
        }
        rates.push(KindRate {
            kind: k,
            traces: a,
            baseline_traces: Some(b),
            regressed,
        });
    }
    let handlers: BTreeSet<&String> = fleet_durations
        .keys()
        .chain(base.durations.keys())
        .collect();
    let mut p99 = Vec::new();
    for h in handlers {
        // Compared at bucket resolution on both sides (the baseline's files keep buckets, not the max).
        let cur_norm = fleet_durations.get(h).map(LogHistogram::bucketed);
        let cur = cur_norm.as_ref().filter(|x| x.count() > 0);
        let old = base.durations.get(h).filter(|x| x.count() > 0);
        let pc = cur.map(|x| x.quantile(0.99) as f64);
        let pb = old.map(|x| x.quantile(0.99) as f64);
        let mut regressed = false;
        if let (Some(c), Some(o), Some(pc), Some(pb)) = (cur, old, pc, pb) {
            if c.count() >= MIN_CALLS_P99 && o.count() >= MIN_CALLS_P99 {
                let doubled = pc >= P99_RATIO * pb;
                let crossed = pc > SLOW_NS && pb <= SLOW_NS;
                if doubled || crossed {
                    regressed = true;
                    regressions.push(Regression {
                        what: "NMI latency p99".into(),
                        kind_or_handler: h.clone(),
                        baseline: format!(
                            "{} ({} call{})",
                            fmt_ns(pb),
                            o.count(),
                            if o.count() == 1 { "" } else { "s" }
                        ),
                        current: format!(
                            "{} ({} call{})",
                            fmt_ns(pc),
                            c.count(),
                            if c.count() == 1 { "" } else { "s" }
                        ),
                        rule: if doubled {
                            format!("p99 x{:.1} (>= x{P99_RATIO})", pc / pb)
                        } else {
                            "p99 crossed 1 ms".into()
                        },
                    });
                }
            }
        }
        p99.push(P99Row {
            handler: h.clone(),
            p99_ns: pc,
            baseline_p99_ns: pb,
            regressed,
        });
    }
    Comparison {
        rates,
        p99,
        regressions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_exact_one_sided() {
        // 5 of 10 now against 0 of 10 before: P(X >= 5) = C(10,5)C(10,0)/C(20,5) = 252/15504
        assert!((fisher_greater(5, 10, 0, 10) - 252.0 / 15504.0).abs() < 1e-12);
        assert!((fisher_greater(0, 10, 3, 10) - 1.0).abs() < 1e-12);
        assert!(fisher_greater(2, 41, 1, 40) > 0.4);
    }

    #[test]
    fn a_kind_new_to_the_fleet_regresses_and_a_doubled_p99_too() {
        let mut slow = LogHistogram::default();
        let mut fast = LogHistogram::default();
        for _ in 0..100 {
            slow.add(40_000);
            fast.add(10_000);
        }
        let base = Baseline {
            dir: PathBuf::new(),
            traces_ok: 100,
            serious: BTreeMap::new(),
            durations: [("h".to_string(), fast)].into(),
        };
        let cur: BTreeMap<KindName, u64> = [(crate::Kind::NmiVmallocFault.into(), 1)].into();
        let c = compare(100, &cur, &[("h".to_string(), slow)].into(), &base);
        let what: Vec<(&str, &str)> = c
            .regressions
            .iter()
            .map(|r| (r.what.as_str(), r.kind_or_handler.as_str()))
            .collect();
        assert_eq!(
            what,
            vec![
                ("finding rate", "nmi_vmalloc_fault"),
                ("NMI latency p99", "h")
            ]
        );
        assert!(c.rates[0].regressed && c.p99[0].regressed);
    }
}
