//! Collects findings with a per-kind cap, so a pathological trace cannot
//! grow the report without bound.

use crate::report::Finding;
use std::collections::BTreeMap;

/// Findings kept per kind; the rest are counted.
pub const MAX_PER_KIND: u64 = 1000;

#[derive(Default)]
pub struct Findings {
    pub list: Vec<Finding>,
    per_kind: BTreeMap<String, u64>,
    suppressed: BTreeMap<String, u64>,
}

impl Findings {
    /// Add a finding; returns its index when kept.
    pub fn push(&mut self, f: Finding) -> Option<usize> {
        let n = self.per_kind.entry(f.kind.clone()).or_default();
        *n += 1;
        if *n > MAX_PER_KIND {
            *self.suppressed.entry(f.kind).or_default() += 1;
            return None;
        }
        self.list.push(f);
        Some(self.list.len() - 1)
    }

    /// The kept findings plus one `findings_truncated` note per capped kind.
    pub fn into_vec(mut self) -> Vec<Finding> {
        for (kind, n) in self.suppressed {
            let mut f = Finding::new("findings_truncated", "info", "observed");
            f.message = format!("{n} more {kind} findings were not listed (limit {MAX_PER_KIND} per kind)");
            f.details.insert("kind".into(), kind.into());
            f.details.insert("suppressed".into(), n.into());
            self.list.push(f);
        }
        self.list
    }
}
