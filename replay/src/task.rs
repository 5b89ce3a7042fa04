//! Tasks: pid → mm (shared by CLONE_VM threads), kernel threads (no mm: they
//! borrow the previous `active_mm`, lazy TLB, no cr3 write).

use crate::mm::{MmBirth, MmId, MmTable};
use ahash::AHashMap;

#[derive(Clone, Debug)]
pub struct Task {
    /// `None` for kernel threads (and the idle task).
    pub mm: Option<MmId>,
    pub kthread: bool,
    /// The classification is only a guess from the name.
    pub kthread_guessed: bool,
}

/// Comm prefixes of kernel threads (used only when the trace gives nothing better).
const KTHREAD_PREFIXES: &[&str] = &[
    "swapper",
    "<idle>",
    "kworker/",
    "ksoftirqd/",
    "migration/",
    "rcu_",
    "rcuc/",
    "rcuop/",
    "cpuhp/",
    "idle_inject/",
    "watchdog/",
    "watchdogd",
    "kthreadd",
    "kswapd",
    "khugepaged",
    "kcompactd",
    "irq/",
    "jbd2/",
    "oom_reaper",
    "kauditd",
    "ksmd",
    "kblockd",
    "kdevtmpfs",
    "khungtaskd",
    "kintegrityd",
    "writeback",
    "scsi_",
    "xfs",
    "btrfs",
    "ext4-",
    "md",
    "kthrotld",
    "kstrn",
    "ipv6_addrconf",
    "mm_percpu_wq",
    "pool_workqueue",
    "netns",
    "events",
    "kmpath",
    "krfcommd",
    "kvm",
    "nvme",
    "ttm",
    "card",
    "poll_",
    "zswap",
    "cryptd",
    "edac-",
    "ata_",
    "usb-storage",
    "khvcd",
];

pub fn comm_is_kthread(pid: i32, comm: &str) -> bool {
    pid == 0 || pid == 2 || KTHREAD_PREFIXES.iter().any(|p| comm.starts_with(p))
}

#[derive(Default)]
pub struct TaskTable {
    tasks: AHashMap<i32, Task>,
}

impl TaskTable {
    pub fn get(&self, pid: i32) -> Option<&Task> {
        self.tasks.get(&pid)
    }

    /// The task, created on first sight: a task that predates the trace.
    pub fn get_or_insert(&mut self, pid: i32, comm: Option<&str>, mms: &mut MmTable) -> &mut Task {
        self.tasks.entry(pid).or_insert_with(|| {
            let k = comm_is_kthread(pid, comm.unwrap_or(""));
            let mm = if k {
                None
            } else {
                let id = mms.create(MmBirth::BeforeTrace, pid);
                mms.grab(id);
                Some(id)
            };
            Task {
                mm,
                kthread: k,
                kthread_guessed: pid != 0,
            }
        })
    }

    /// The trace proved the task has an mm (a cr3 write switched to it).
    pub fn make_user(&mut self, pid: i32, mms: &mut MmTable) -> MmId {
        let t = self.get_or_insert(pid, None, mms);
        if let Some(m) = t.mm {
            return m;
        }
        let id = mms.create(MmBirth::BeforeTrace, pid);
        mms.grab(id);
        t.mm = Some(id);
        t.kthread = false;
        t.kthread_guessed = false;
        id
    }

    /// A new task. `share_with` = the parent when CLONE_VM, kthread when the
    /// parent is kthreadd.
    pub fn spawn(
        &mut self,
        ts_ns: u64,
        parent: i32,
        child: i32,
        child_comm: &str,
        clone_vm: bool,
        mms: &mut MmTable,
    ) {
        if let Some(old) = self.tasks.remove(&child) {
            if let Some(m) = old.mm {
                mms.drop_ref(m);
            }
        }
        let parent_mm = self.get_or_insert(parent, None, mms).mm;
        // Children of kernel threads (kthreadd, usermode helpers) have no mm
        // until they exec; CLONE_VM children share the parent's.
        let mm = match parent_mm {
            None => None,
            Some(pm) if clone_vm => Some(pm),
            Some(_) => Some(mms.create(MmBirth::Fork { ts_ns }, child)),
        };
        let _ = child_comm;
        if let Some(m) = mm {
            mms.grab(m);
        }
        self.tasks.insert(
            child,
            Task {
                mm,
                kthread: mm.is_none(),
                kthread_guessed: false,
            },
        );
    }

    /// exec: a fresh mm (kernel part copied from init_mm now). Returns the new mm and the old one.
    pub fn exec(&mut self, ts_ns: u64, pid: i32, mms: &mut MmTable) -> (MmId, Option<MmId>) {
        let t = self.get_or_insert(pid, None, mms);
        let old = t.mm.take();
        let id = mms.create(MmBirth::Exec { ts_ns }, pid);
        mms.grab(id);
        t.mm = Some(id);
        t.kthread = false;
        t.kthread_guessed = false;
        if let Some(o) = old {
            mms.drop_ref(o);
        }
        (id, old)
    }

    /// sched_process_free: forget the task.
    pub fn free(&mut self, pid: i32, mms: &mut MmTable) {
        if pid == 0 {
            return;
        }
        if let Some(t) = self.tasks.remove(&pid) {
            if let Some(m) = t.mm {
                mms.drop_ref(m);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}
