//! The vmalloc area as the trace shows it: which top-level entries are in
//! use, and which were opened during the trace (so mms created before lack them).

use crate::pgd_model::{EntrySet, PgdModel};

/// A top-level entry that appeared in `init_mm` during the trace.
#[derive(Clone, Debug)]
pub struct OpenedEntry {
    pub entry: u16,
    pub base: u64,
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: i32,
    /// What opened it: `percpu_create_chunk` or `alloc_vmap_area`.
    pub how: &'static str,
    /// The address that opened it (None when the trace hashed it).
    pub addr: Option<u64>,
    /// A per-cpu chunk lives there (NMI handlers touch per-cpu data).
    pub percpu: bool,
    /// The address was assumed (hashed pointer): top of the range.
    pub assumed: bool,
    pub line: String,
}

#[derive(Default)]
pub struct VmallocSpace {
    /// Entries seen in use (allocations or faults) during the trace.
    pub seen: EntrySet,
    pub opened: Vec<OpenedEntry>,
    pub opened_set: EntrySet,
    /// Highest entry a bottom-up `alloc_vmap_area` was seen in.
    pub max_alloc_entry: Option<u16>,
    pub percpu_chunks: u64,
    pub vmap_allocs: u64,
    /// Entry indexes are in use: the range can no longer be re-learned.
    pub frozen: bool,
}

impl VmallocSpace {
    /// An `alloc_vmap_area`. Returns the entry it opened, if any: bottom-up
    /// growth into an entry above every one seen so far.
    pub fn alloc(&mut self, pgd: &mut PgdModel, addr: u64, size: u64, vstart: u64, vend: u64, percpu_pending: bool) -> Option<(u16, bool)> {
        self.vmap_allocs += 1;
        if !self.frozen {
            pgd.learn_range(vstart, vend);
        }
        let e = pgd.entry(addr)?;
        self.frozen = true;
        let last = pgd.entry(addr.saturating_add(size.saturating_sub(1))).unwrap_or(e);
        let mut opened = None;
        // vmalloc grows bottom-up from the start; per-cpu chunks top-down
        // from the end. An entry first seen in the top half (a per-cpu
        // chunk's), or bottom-up growth past every entry seen, is taken as
        // opened now (an assumption: the state before the trace is unknown).
        let top_down = (e as usize) * 2 >= pgd.entries();
        for i in e..=last {
            if !self.seen.contains(i) {
                let above = self.max_alloc_entry.is_some_and(|m| i > m);
                if above || top_down || percpu_pending {
                    opened = Some((i, top_down || percpu_pending));
                }
                self.seen.insert(i);
            }
        }
        if !top_down {
            self.max_alloc_entry = Some(self.max_alloc_entry.map_or(last, |m| m.max(last)));
        }
        opened
    }

    /// A `percpu_create_chunk`. Returns the entry it opened, if any, and
    /// whether its address was assumed (hashed pointer → top entry).
    pub fn percpu_chunk(&mut self, pgd: &PgdModel, base: Option<u64>) -> Option<(u16, bool)> {
        self.percpu_chunks += 1;
        let (e, assumed) = match base {
            Some(b) => (pgd.entry(b)?, false),
            None => ((pgd.entries() - 1) as u16, true),
        };
        self.frozen = true;
        if self.seen.contains(e) {
            return None;
        }
        self.seen.insert(e);
        Some((e, assumed))
    }
}
