//! Address spaces (mms) and the vmalloc top-level entries each one holds.
//!
//! `init_mm` gets every new top-level entry. An mm created by fork (without
//! CLONE_VM) or exec copies `init_mm`'s entries at that moment; an mm that
//! predates the trace is assumed to hold every entry opened before the trace
//! started (its age is unknown) and none opened during it, but for those an
//! eager sync (x86 `vmalloc_sync()`) copied into every pgd.

use crate::pgd_model::EntrySet;

/// Index into the [`MmTable`]. 0 is `init_mm`.
pub type MmId = u32;
pub const INIT_MM: MmId = 0;

/// How an mm came to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmBirth {
    Init,
    /// Already existed when the trace started (age unknown).
    BeforeTrace,
    Fork {
        ts_ns: u64,
    },
    Exec {
        ts_ns: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Mm {
    /// Entries this mm's page directory holds (by the model).
    pub has: EntrySet,
    /// Entries a lazy fault copied in (observed syncs).
    pub synced: EntrySet,
    pub birth: MmBirth,
    /// The task that created (or first showed) it.
    pub owner_pid: i32,
    /// Tasks using it plus CPUs that have it loaded.
    refs: u32,
    /// Serial number, so a recycled slot is a different mm in reports.
    pub serial: u64,
    /// In use (not a recycled slot waiting in the free list).
    live: bool,
}

impl Mm {
    pub fn describe(&self) -> String {
        match self.birth {
            MmBirth::Init => "init_mm".into(),
            MmBirth::BeforeTrace => format!(
                "mm#{} of pid {} (predates the trace)",
                self.serial, self.owner_pid
            ),
            MmBirth::Fork { ts_ns } => format!(
                "mm#{} of pid {} (fork at {})",
                self.serial,
                self.owner_pid,
                crate::fmt_ts(ts_ns)
            ),
            MmBirth::Exec { ts_ns } => format!(
                "mm#{} of pid {} (exec at {})",
                self.serial,
                self.owner_pid,
                crate::fmt_ts(ts_ns)
            ),
        }
    }
}

/// Every live mm, with slot reuse so memory follows live mms, not history.
pub struct MmTable {
    mms: Vec<Mm>,
    free: Vec<MmId>,
    next_serial: u64,
    /// Entries opened during the trace.
    opened: EntrySet,
    /// Entries opened since the last eager sync (all of `opened` if none):
    /// an mm that predates the trace, first seen now, lacks these.
    opened_since_sync: EntrySet,
    /// Live mms other than `init_mm` lacking an entry of `opened`, kept up
    /// to date by every change ([`MmTable::out_of_sync`]).
    stale: usize,
}

impl Default for MmTable {
    fn default() -> Self {
        MmTable::new()
    }
}

impl MmTable {
    pub fn new() -> MmTable {
        let init = Mm {
            has: EntrySet::ALL,
            synced: EntrySet::EMPTY,
            birth: MmBirth::Init,
            owner_pid: 0,
            refs: u32::MAX / 2,
            serial: 0,
            live: true,
        };
        MmTable {
            mms: vec![init],
            free: Vec::new(),
            next_serial: 1,
            opened: EntrySet::EMPTY,
            opened_since_sync: EntrySet::EMPTY,
            stale: 0,
        }
    }

    /// `m` lacks an entry `init_mm` gained during the trace.
    #[inline]
    fn is_stale(opened: &EntrySet, m: &Mm) -> bool {
        !opened.minus(&m.has).is_empty()
    }

    /// A new mm (fork, exec, or one first seen in the trace). Its kernel part
    /// is a copy of `init_mm`'s.
    pub fn create(&mut self, birth: MmBirth, owner_pid: i32) -> MmId {
        let has = match birth {
            MmBirth::BeforeTrace => EntrySet::ALL.minus(&self.opened_since_sync),
            _ => self.mms[INIT_MM as usize].has,
        };
        let mm = Mm {
            has,
            synced: EntrySet::EMPTY,
            birth,
            owner_pid,
            refs: 0,
            serial: self.next_serial,
            live: true,
        };
        self.next_serial += 1;
        if Self::is_stale(&self.opened, &mm) {
            self.stale += 1;
        }
        if let Some(id) = self.free.pop() {
            self.mms[id as usize] = mm;
            id
        } else {
            self.mms.push(mm);
            (self.mms.len() - 1) as MmId
        }
    }

    #[inline]
    pub fn get(&self, id: MmId) -> &Mm {
        &self.mms[id as usize]
    }

    pub fn grab(&mut self, id: MmId) {
        if id != INIT_MM {
            self.mms[id as usize].refs += 1;
        }
    }

    /// Drop a reference; the slot is recycled when nothing uses the mm.
    pub fn drop_ref(&mut self, id: MmId) {
        if id == INIT_MM {
            return;
        }
        let m = &mut self.mms[id as usize];
        if !m.live {
            return;
        }
        m.refs = m.refs.saturating_sub(1);
        if m.refs == 0 {
            m.live = false;
            if Self::is_stale(&self.opened, m) {
                self.stale -= 1;
            }
            self.free.push(id);
        }
    }

    /// A new top-level entry appeared in `init_mm`: every existing mm lacks it.
    pub fn open_entry(&mut self, e: u16) {
        let before = self.opened;
        self.opened.insert(e);
        self.opened_since_sync.insert(e);
        for m in self.mms.iter_mut().skip(1).filter(|m| m.live) {
            // lacking `e` now, it is out of sync whatever it was before
            if !Self::is_stale(&before, m) {
                self.stale += 1;
            }
            m.has.remove(e);
        }
    }

    /// A lazy fault copied entry `e` into `id`.
    pub fn sync(&mut self, id: MmId, e: u16) {
        let m = &mut self.mms[id as usize];
        let was = id != INIT_MM && m.live && Self::is_stale(&self.opened, m);
        m.has.insert(e);
        m.synced.insert(e);
        if was && !Self::is_stale(&self.opened, m) {
            self.stale -= 1;
        }
    }

    /// An eager sync (x86 `vmalloc_sync()` over `pgd_list`): every live mm
    /// now holds every entry `init_mm` has, and so does every mm that exists
    /// and is first seen later. Not a lazy sync: `synced` stays.
    pub fn sync_all(&mut self) {
        self.opened_since_sync = EntrySet::EMPTY;
        for m in self.mms.iter_mut().skip(1).filter(|m| m.live) {
            m.has = EntrySet::ALL;
        }
        self.stale = 0;
    }

    /// Live mms (other than `init_mm`) lacking an entry `init_mm` gained
    /// during the trace: out of sync with `init_mm` until a lazy fault syncs them.
    pub fn out_of_sync(&self) -> usize {
        self.stale
    }

    /// [`MmTable::out_of_sync`] counted from scratch (tests check the kept count against it).
    #[cfg(test)]
    fn out_of_sync_recount(&self) -> usize {
        self.mms
            .iter()
            .skip(1)
            .filter(|m| m.live && Self::is_stale(&self.opened, m))
            .count()
    }

    pub fn live(&self) -> usize {
        self.mms.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_copies_init_mm_and_open_entry_reaches_existing_only() {
        let mut t = MmTable::new();
        let old = t.create(MmBirth::BeforeTrace, 10);
        t.grab(old);
        t.open_entry(5);
        assert!(!t.get(old).has.contains(5));
        let young = t.create(MmBirth::Fork { ts_ns: 1 }, 11);
        assert!(t.get(young).has.contains(5));
        t.sync(old, 5);
        assert!(t.get(old).has.contains(5));
        t.drop_ref(old);
        let again = t.create(MmBirth::Exec { ts_ns: 2 }, 12);
        assert_eq!(again, old);
        assert_ne!(t.get(again).serial, 1);
    }

    #[test]
    fn kept_out_of_sync_count_matches_a_recount_under_random_changes() {
        let mut t = MmTable::new();
        let mut live: Vec<MmId> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut opened_any = false;
        for step in 0..20_000 {
            match rnd(10) {
                0..=2 => {
                    let birth = match rnd(3) {
                        0 => MmBirth::BeforeTrace,
                        1 => MmBirth::Fork { ts_ns: step },
                        _ => MmBirth::Exec { ts_ns: step },
                    };
                    let id = t.create(birth, step as i32);
                    t.grab(id);
                    live.push(id);
                }
                3 | 4 if !live.is_empty() => {
                    let id = live.swap_remove(rnd(live.len() as u64) as usize);
                    t.drop_ref(id);
                    // a second drop of a freed mm changes nothing
                    if rnd(4) == 0 {
                        t.drop_ref(id);
                    }
                }
                5 => {
                    t.open_entry(rnd(8) as u16);
                    opened_any = true;
                    if rnd(8) == 0 {
                        t.sync_all();
                        assert_eq!(t.out_of_sync(), 0);
                    }
                }
                _ if !live.is_empty() => {
                    let id = live[rnd(live.len() as u64) as usize];
                    t.sync(id, rnd(8) as u16);
                }
                _ => {}
            }
            assert_eq!(t.out_of_sync(), t.out_of_sync_recount(), "step {step}");
            assert_eq!(t.live(), live.len() + 1, "step {step}");
        }
        assert!(opened_any && t.out_of_sync() > 0);
    }
}
