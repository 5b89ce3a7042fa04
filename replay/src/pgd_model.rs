//! Page-directory models (SPEC §3.3): which top-level entry covers a vmalloc
//! address, and sets of such entries.

/// The page-directory layouts of SPEC §3.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgdKind {
    /// PGD entry = 512 GiB (address bits 39-47).
    X86_64FourLevel,
    /// PGD entry = 256 TiB (bits 48-56).
    X86_64FiveLevel,
    /// Non-PAE PGD entry = 4 MiB.
    X86_32,
    /// PAE: the kernel PMD entry (2 MiB) is what gets synced.
    X86_32Pae,
}

impl PgdKind {
    pub fn name(&self) -> &'static str {
        match self {
            PgdKind::X86_64FourLevel => "x86_64 4-level: PGD entry = 512 GiB",
            PgdKind::X86_64FiveLevel => "x86_64 5-level: PGD entry = 256 TiB",
            PgdKind::X86_32 => "x86_32 non-PAE: PGD entry = 4 MiB",
            PgdKind::X86_32Pae => "x86_32 PAE: PMD entry = 2 MiB",
        }
    }

    /// log2 of the bytes one synced entry covers.
    pub fn shift(&self) -> u32 {
        match self {
            PgdKind::X86_64FourLevel => 39,
            PgdKind::X86_64FiveLevel => 48,
            PgdKind::X86_32 => 22,
            PgdKind::X86_32Pae => 21,
        }
    }

    /// Default vmalloc range `[start, end]` (inclusive).
    pub fn default_range(&self) -> (u64, u64) {
        match self {
            PgdKind::X86_64FourLevel => (0xffff_c900_0000_0000, 0xffff_e8ff_ffff_ffff),
            PgdKind::X86_64FiveLevel => (0xffa0_0000_0000_0000, 0xffd1_ffff_ffff_ffff),
            // x86_32: `VMALLOC_START = high_memory + VMALLOC_OFFSET` (8 MiB)
            // and `VMALLOC_END = PKMAP_BASE - 2 * PAGE_SIZE`
            // (arch/x86/include/asm/pgtable_32_types.h, 5.4.59 lines 36, 62):
            // the start follows the size of lowmem (RAM, `vmalloc=`), so no
            // fixed range is right. 0xf8800000 holds only with 896 MiB of
            // lowmem; a 5.4.59 guest with 1 GiB and `vmalloc=512M` has
            // 0xdf3fe000-0xff3fe000. Without vstart/vend in the trace the
            // default is every address vmalloc can use under the default
            // 3G/1G split: PAGE_OFFSET (0xc0000000) + 8 MiB, up to the
            // highest VMALLOC_END (pkmap at 0xff800000). Below the vmalloc
            // start lies lowmem, which every pgd maps from boot on and which
            // never takes a not-present kernel fault but for a bug.
            PgdKind::X86_32 | PgdKind::X86_32Pae => (0xc080_0000, 0xff7f_dfff),
        }
    }
}

/// Most entries a set can hold; a vmalloc range needing more is clipped
/// (x86_32 PAE's default range, 1 GiB less 8 MiB and pkmap/fixmap, needs 504).
pub const MAX_ENTRIES: usize = 512;

/// A set of top-level entry indexes (0 = the entry holding the vmalloc start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntrySet([u64; MAX_ENTRIES / 64]);

impl EntrySet {
    pub const EMPTY: EntrySet = EntrySet([0; MAX_ENTRIES / 64]);
    pub const ALL: EntrySet = EntrySet([u64::MAX; MAX_ENTRIES / 64]);

    #[inline]
    pub fn contains(&self, i: u16) -> bool {
        let i = i as usize;
        i < MAX_ENTRIES && self.0[i / 64] & (1 << (i % 64)) != 0
    }
    #[inline]
    pub fn insert(&mut self, i: u16) {
        let i = i as usize;
        if i < MAX_ENTRIES {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }
    #[inline]
    pub fn remove(&mut self, i: u16) {
        let i = i as usize;
        if i < MAX_ENTRIES {
            self.0[i / 64] &= !(1 << (i % 64));
        }
    }
    /// Entries in `self` that `other` lacks.
    pub fn minus(&self, other: &EntrySet) -> EntrySet {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a &= !b;
        }
        r
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..MAX_ENTRIES as u16).filter(move |i| self.contains(*i))
    }
}

/// The page-directory model in use and the vmalloc range it covers.
#[derive(Clone, Copy, Debug)]
pub struct PgdModel {
    pub kind: PgdKind,
    pub vmalloc_start: u64,
    pub vmalloc_end: u64,
    /// The range was taken from `alloc_vmap_area` vstart/vend.
    pub range_from_trace: bool,
}

impl PgdModel {
    pub fn new(kind: PgdKind) -> PgdModel {
        let (s, e) = kind.default_range();
        PgdModel {
            kind,
            vmalloc_start: s,
            vmalloc_end: e,
            range_from_trace: false,
        }
    }

    /// Learn the vmalloc range from an `alloc_vmap_area` vstart/vend pair.
    /// Narrow ranges (modules area, per-purpose windows) are ignored: the
    /// widest plausible range wins. Returns true when the range changed.
    pub fn learn_range(&mut self, vstart: u64, vend: u64) -> bool {
        if vend <= vstart {
            return false;
        }
        let span = vend - vstart;
        let plausible = match self.kind {
            PgdKind::X86_64FourLevel | PgdKind::X86_64FiveLevel => {
                vstart >= 0xff00_0000_0000_0000 && span >= 1 << 40
            }
            _ => vstart >= 0x8000_0000 && vend <= 0xffff_ffff && span >= 1 << 24,
        };
        if !plausible {
            return false;
        }
        let cur = self.vmalloc_end - self.vmalloc_start;
        if self.range_from_trace && span <= cur {
            return false;
        }
        self.vmalloc_start = vstart;
        self.vmalloc_end = vend;
        self.range_from_trace = true;
        true
    }

    #[inline]
    pub fn in_vmalloc(&self, addr: u64) -> bool {
        addr >= self.vmalloc_start && addr <= self.vmalloc_end
    }

    /// The top-level entry index covering a vmalloc address.
    #[inline]
    pub fn entry(&self, addr: u64) -> Option<u16> {
        if !self.in_vmalloc(addr) {
            return None;
        }
        let s = self.kind.shift();
        let i = (addr >> s) - (self.vmalloc_start >> s);
        if (i as usize) < MAX_ENTRIES {
            Some(i as u16)
        } else {
            None
        }
    }

    /// Number of entries the vmalloc range spans.
    pub fn entries(&self) -> usize {
        let s = self.kind.shift();
        (((self.vmalloc_end >> s) - (self.vmalloc_start >> s)) as usize + 1).min(MAX_ENTRIES)
    }

    /// The entry's index in the hardware table, as a kernel developer names
    /// it (`pgd_index()`; PMD index for PAE): 465 for 0xffffe8ffffe00000.
    pub fn table_index(&self, i: u16) -> u64 {
        let base = self.entry_base(i);
        match self.kind {
            PgdKind::X86_64FourLevel => (base >> 39) & 511,
            PgdKind::X86_64FiveLevel => (base >> 48) & 511,
            PgdKind::X86_32 => (base >> 22) & 1023,
            PgdKind::X86_32Pae => (base >> 21) & 511,
        }
    }

    /// First address covered by entry `i`.
    pub fn entry_base(&self, i: u16) -> u64 {
        let s = self.kind.shift();
        ((self.vmalloc_start >> s) + i as u64) << s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_default_has_64_entries() {
        let m = PgdModel::new(PgdKind::X86_64FourLevel);
        assert_eq!(m.entries(), 64);
        assert_eq!(m.entry(0xffff_c900_0000_0000), Some(0));
        assert_eq!(m.entry(0xffff_e8ff_ffc0_0000), Some(63));
        assert_eq!(m.entry(0xffff_8800_0000_0000), None);
        assert_eq!(m.entry_base(1), 0xffff_c980_0000_0000);
        assert_eq!(m.table_index(m.entry(0xffff_e8ff_ffe0_0000).unwrap()), 465);
    }

    #[test]
    fn range_learning_ignores_modules_area() {
        let mut m = PgdModel::new(PgdKind::X86_64FourLevel);
        assert!(!m.learn_range(0xffff_ffff_a000_0000, 0xffff_ffff_ff00_0000));
        assert!(m.learn_range(0xffff_a580_0000_0000, 0xffff_c580_0000_0000));
        assert_eq!(m.entry(0xffff_a580_0000_1000), Some(0));
    }

    #[test]
    fn x86_32_default_covers_every_lowmem_size() {
        // 5.4.59 i386, 1 GiB RAM, vmalloc=512M: boot log `vmalloc : 0xdf3fe000 - 0xff3fe000`.
        let m = PgdModel::new(PgdKind::X86_32);
        assert!(
            m.in_vmalloc(0xdf3f_e000) && m.in_vmalloc(0xe700_0000) && m.in_vmalloc(0xff3f_dfff)
        );
        assert!(!m.in_vmalloc(0xbfff_f000) && !m.in_vmalloc(0xc000_1000));
        assert_eq!(m.entries(), 252);
        assert_eq!(m.table_index(m.entry(0xe700_0000).unwrap()), 0xe70 >> 2);
        let p = PgdModel::new(PgdKind::X86_32Pae);
        assert_eq!(p.entries(), 504);
        assert!(p.entry(0xff3f_d000).is_some());
        // vstart/vend from the trace still narrow it (x86_32 with vmalloc tracepoints).
        let mut m = m;
        assert!(m.learn_range(0xdf3f_e000, 0xff3f_e000));
        assert_eq!(m.entry(0xdf3f_e000), Some(0));
    }

    #[test]
    fn sets() {
        let mut a = EntrySet::EMPTY;
        a.insert(3);
        a.insert(200);
        assert!(a.contains(3) && a.contains(200) && !a.contains(4));
        let b = EntrySet::ALL.minus(&a);
        assert!(!b.contains(3) && b.contains(4));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 200]);
    }
}
