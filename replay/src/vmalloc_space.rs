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
    /// Per-cpu chunks' real addresses come from `pcpu_get_vm_areas` returns:
    /// a `percpu_create_chunk` with a hashed address assumes nothing.
    pub percpu_from_probe: bool,
}

impl VmallocSpace {
    /// An `alloc_vmap_area`. Returns the entries it opened, if any (bottom-up
    /// growth into entries above every one seen so far), and whether they
    /// hold a per-cpu chunk.
    pub fn alloc(
        &mut self,
        pgd: &mut PgdModel,
        addr: u64,
        size: u64,
        vstart: u64,
        vend: u64,
        percpu_pending: bool,
    ) -> Option<(EntrySet, bool)> {
        self.vmap_allocs += 1;
        if !self.frozen {
            pgd.learn_range(vstart, vend);
        }
        let e = pgd.entry(addr)?;
        // vmalloc grows bottom-up from the start; per-cpu chunks top-down
        // from the end. An entry first seen in the top half is taken for a
        // per-cpu chunk's (an assumption: the state before the trace is unknown).
        let top_down = (e as usize) * 2 >= pgd.entries();
        self.place(pgd, addr, size, top_down || percpu_pending)
    }

    /// A vmap area whose kind the trace says (the `nmt:*_ret` kprobes of
    /// scripts/qemu on kernels without vmalloc tracepoints):
    /// `alloc_vmap_area` for vmalloc, vmap, ioremap and modules (bottom-up),
    /// `pcpu_get_vm_areas` for per-cpu chunks (top-down). Returns the
    /// entries it opened.
    pub fn area(
        &mut self,
        pgd: &PgdModel,
        start: u64,
        end: u64,
        percpu: bool,
    ) -> Option<(EntrySet, bool)> {
        if percpu {
            // percpu_create_chunk, which follows, counts the chunk
            self.percpu_from_probe = true;
        } else {
            self.vmap_allocs += 1;
        }
        let e = pgd.entry(start)?;
        let last = pgd.entry(end.saturating_sub(1)).unwrap_or(e);
        if !percpu && self.max_alloc_entry.is_none() {
            // The first area: the bottom of the vmalloc space, mapped since
            // boot (ACPI, PCI ioremaps); its entries predate the trace.
            for i in e..=last {
                self.seen.insert(i);
            }
            self.max_alloc_entry = Some(last);
            self.frozen = true;
            return None;
        }
        // Every other entry first seen now opens now. vmalloc is first-fit
        // from the bottom, but not contiguous: aligned allocations
        // (test_vmalloc's align_shift_alloc_test put one-page areas at
        // 0xe0000000, 0xe8000000, 0xf0000000 of 5.4.59 i386) populate
        // entries far above the ones between, which stay empty until later
        // areas reach them; the kernel's lazy faults there show it. Opening
        // only entries above the highest one seen missed 33 of 127 faults.
        self.place(pgd, start, end.saturating_sub(start), true)
            .map(|(set, _)| (set, percpu))
    }

    /// Mark the entries of `[addr, addr + size)` seen. Opened now: every
    /// entry not seen before of a top-down area; of a bottom-up one, those
    /// above every bottom-up entry seen (the first area's entries are taken
    /// to predate the trace). An area may span several entries: all count.
    fn place(
        &mut self,
        pgd: &PgdModel,
        addr: u64,
        size: u64,
        top_down: bool,
    ) -> Option<(EntrySet, bool)> {
        let e = pgd.entry(addr)?;
        self.frozen = true;
        let last = pgd
            .entry(addr.saturating_add(size.saturating_sub(1)))
            .unwrap_or(e);
        let mut opened = EntrySet::EMPTY;
        for i in e..=last {
            if !self.seen.contains(i) {
                let above = self.max_alloc_entry.is_some_and(|m| i > m);
                if above || top_down {
                    opened.insert(i);
                }
                self.seen.insert(i);
            }
        }
        if !top_down {
            self.max_alloc_entry = Some(self.max_alloc_entry.map_or(last, |m| m.max(last)));
        }
        if opened.is_empty() {
            None
        } else {
            Some((opened, top_down))
        }
    }

    /// A `percpu_create_chunk`. Returns the entry it opened, if any, and
    /// whether its address was assumed (hashed pointer → top entry).
    pub fn percpu_chunk(&mut self, pgd: &PgdModel, base: Option<u64>) -> Option<(u16, bool)> {
        self.percpu_chunks += 1;
        let (e, assumed) = match base {
            Some(b) => (pgd.entry(b)?, false),
            None if self.percpu_from_probe => return None,
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
