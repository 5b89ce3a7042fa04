//! Address spaces (mms) and the vmalloc top-level entries each one holds.
//!
//! `init_mm` gets every new top-level entry. An mm created by fork (without
//! CLONE_VM) or exec copies `init_mm`'s entries at that moment; an mm that
//! predates the trace is assumed to hold every entry opened before the trace
//! started (its age is unknown) and none opened during it.

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
    Fork { ts_ns: u64 },
    Exec { ts_ns: u64 },
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
}

impl Mm {
    pub fn describe(&self) -> String {
        match self.birth {
            MmBirth::Init => "init_mm".into(),
            MmBirth::BeforeTrace => format!("mm#{} of pid {} (predates the trace)", self.serial, self.owner_pid),
            MmBirth::Fork { ts_ns } => format!("mm#{} of pid {} (fork at {})", self.serial, self.owner_pid, crate::fmt_ts(ts_ns)),
            MmBirth::Exec { ts_ns } => format!("mm#{} of pid {} (exec at {})", self.serial, self.owner_pid, crate::fmt_ts(ts_ns)),
        }
    }
}

/// Every live mm, with slot reuse so memory follows live mms, not history.
pub struct MmTable {
    mms: Vec<Mm>,
    free: Vec<MmId>,
    next_serial: u64,
    /// Entries opened during the trace (mms predating the trace lack them).
    opened: EntrySet,
}

impl Default for MmTable {
    fn default() -> Self {
        MmTable::new()
    }
}

impl MmTable {
    pub fn new() -> MmTable {
        let init = Mm { has: EntrySet::ALL, synced: EntrySet::EMPTY, birth: MmBirth::Init, owner_pid: 0, refs: u32::MAX / 2, serial: 0 };
        MmTable { mms: vec![init], free: Vec::new(), next_serial: 1, opened: EntrySet::EMPTY }
    }

    /// A new mm (fork, exec, or one first seen in the trace). Its kernel part
    /// is a copy of `init_mm`'s.
    pub fn create(&mut self, birth: MmBirth, owner_pid: i32) -> MmId {
        let has = match birth {
            MmBirth::BeforeTrace => EntrySet::ALL.minus(&self.opened),
            _ => self.mms[INIT_MM as usize].has,
        };
        let mm = Mm {
            has,
            synced: EntrySet::EMPTY,
            birth,
            owner_pid,
            refs: 0,
            serial: self.next_serial,
        };
        self.next_serial += 1;
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

    #[inline]
    pub fn get_mut(&mut self, id: MmId) -> &mut Mm {
        &mut self.mms[id as usize]
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
        m.refs = m.refs.saturating_sub(1);
        if m.refs == 0 {
            self.free.push(id);
        }
    }

    /// A new top-level entry appeared in `init_mm`: every existing mm lacks it.
    pub fn open_entry(&mut self, e: u16) {
        self.opened.insert(e);
        let free = &self.free;
        for (i, m) in self.mms.iter_mut().enumerate() {
            if i != INIT_MM as usize && !free.contains(&(i as MmId)) {
                m.has.remove(e);
            }
        }
    }

    /// A lazy fault copied entry `e` into `id`.
    pub fn sync(&mut self, id: MmId, e: u16) {
        let m = &mut self.mms[id as usize];
        m.has.insert(e);
        m.synced.insert(e);
    }

    /// Live mms (other than `init_mm`) lacking an entry `init_mm` gained
    /// during the trace: out of sync with `init_mm` until a lazy fault syncs them.
    pub fn out_of_sync(&self) -> usize {
        if self.opened.is_empty() {
            return 0;
        }
        let stale = |m: &Mm| !self.opened.minus(&m.has).is_empty();
        let all = self.mms.iter().skip(1).filter(|m| stale(m)).count();
        let freed = self.free.iter().filter(|&&f| f != INIT_MM && stale(&self.mms[f as usize])).count();
        all - freed
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
}
