//! What an event is, resolved once by the reader: for trace.dat from the
//! record's numeric format id (each format's kind is computed when the
//! header is read), for text from the event name. The replay and the
//! analyses dispatch on it instead of comparing names.

/// The events nmitrace models; everything else is [`EventKind::Other`] (counted only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum EventKind {
    #[default]
    Other,
    /// `exceptions:page_fault_user`.
    PageFaultUser,
    /// `exceptions:page_fault_kernel`.
    PageFaultKernel,
    /// `nmi:nmi_handler`.
    NmiHandler,
    SchedSwitch,
    SchedProcessFork,
    SchedProcessExec,
    SchedProcessFree,
    /// `task:task_newtask`.
    TaskNewtask,
    /// `tlb:tlb_flush`.
    TlbFlush,
    /// `vmalloc:alloc_vmap_area`.
    AllocVmapArea,
    /// `percpu:percpu_create_chunk`.
    PercpuCreateChunk,
    /// `printk:console`.
    Console,
    /// Kprobe events standing in for vmalloc tracepoints on kernels without
    /// them (`alloc_vmap_area_ret`, `pcpu_get_vm_areas_ret`,
    /// `vmalloc_sync_mappings`, `vmalloc_sync_unmappings`; scripts/qemu/kprobes).
    VmallocProbe,
    /// Any other `*_entry` event (interrupt vectors): rebuilds the context
    /// stack where the format has no flags.
    IrqEntry,
    /// Any other `*_exit` event.
    IrqExit,
}

impl EventKind {
    /// Every kind, in declaration order (`ALL[k as usize] == k`; keep it
    /// in step with the enum: a test checks).
    pub const ALL: [EventKind; 16] = {
        use EventKind::*;
        [
            Other,
            PageFaultUser,
            PageFaultKernel,
            NmiHandler,
            SchedSwitch,
            SchedProcessFork,
            SchedProcessExec,
            SchedProcessFree,
            TaskNewtask,
            TlbFlush,
            AllocVmapArea,
            PercpuCreateChunk,
            Console,
            VmallocProbe,
            IrqEntry,
            IrqExit,
        ]
    };

    /// The kind of an event named `name`.
    pub fn of(name: &str) -> EventKind {
        use EventKind::*;
        let k = match name.as_bytes().first() {
            Some(b'p') => match name {
                "page_fault_user" => PageFaultUser,
                "page_fault_kernel" => PageFaultKernel,
                "percpu_create_chunk" => PercpuCreateChunk,
                "pcpu_get_vm_areas_ret" => VmallocProbe,
                _ => Other,
            },
            Some(b'n') if name == "nmi_handler" => NmiHandler,
            Some(b's') => match name {
                "sched_switch" => SchedSwitch,
                "sched_process_fork" => SchedProcessFork,
                "sched_process_exec" => SchedProcessExec,
                "sched_process_free" => SchedProcessFree,
                _ => Other,
            },
            Some(b't') => match name {
                "tlb_flush" => TlbFlush,
                "task_newtask" => TaskNewtask,
                _ => Other,
            },
            Some(b'a') => match name {
                "alloc_vmap_area" => AllocVmapArea,
                "alloc_vmap_area_ret" => VmallocProbe,
                _ => Other,
            },
            Some(b'v') if name == "vmalloc_sync_mappings" || name == "vmalloc_sync_unmappings" => {
                VmallocProbe
            }
            Some(b'c') if name == "console" => Console,
            _ => Other,
        };
        match k {
            Other if name.ends_with("_entry") => IrqEntry,
            Other if name.ends_with("_exit") => IrqExit,
            k => k,
        }
    }

    /// The one event name of this kind (`EventKind::of` gives it for that
    /// name alone); `None` for the kinds of many names.
    pub fn name(self) -> Option<&'static str> {
        use EventKind::*;
        Some(match self {
            PageFaultUser => "page_fault_user",
            PageFaultKernel => "page_fault_kernel",
            NmiHandler => "nmi_handler",
            SchedSwitch => "sched_switch",
            SchedProcessFork => "sched_process_fork",
            SchedProcessExec => "sched_process_exec",
            SchedProcessFree => "sched_process_free",
            TaskNewtask => "task_newtask",
            TlbFlush => "tlb_flush",
            AllocVmapArea => "alloc_vmap_area",
            PercpuCreateChunk => "percpu_create_chunk",
            Console => "console",
            Other | VmallocProbe | IrqEntry | IrqExit => return None,
        })
    }

    /// Read by the replay or the analyses beyond counting.
    pub fn modelled(self) -> bool {
        !matches!(
            self,
            EventKind::Other | EventKind::IrqEntry | EventKind::IrqExit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::EventKind::{self, *};

    #[test]
    fn names_resolve_to_kinds() {
        for (n, k) in [
            ("page_fault_user", PageFaultUser),
            ("page_fault_kernel", PageFaultKernel),
            ("nmi_handler", NmiHandler),
            ("sched_switch", SchedSwitch),
            ("sched_process_free", SchedProcessFree),
            ("task_newtask", TaskNewtask),
            ("tlb_flush", TlbFlush),
            ("alloc_vmap_area", AllocVmapArea),
            ("alloc_vmap_area_ret", VmallocProbe),
            ("vmalloc_sync_unmappings", VmallocProbe),
            ("percpu_create_chunk", PercpuCreateChunk),
            ("console", Console),
            ("local_timer_entry", IrqEntry),
            ("sys_exit", IrqExit),
            ("sched_wakeup", Other),
            ("page_fault", Other),
            ("", Other),
        ] {
            assert_eq!(EventKind::of(n), k, "{n}");
        }
        assert!(NmiHandler.modelled() && !IrqEntry.modelled() && !Other.modelled());
    }

    /// A kind with one name is that name's, and no other name's: `of` matches
    /// such names whole (a near miss is another kind).
    #[test]
    fn a_kind_of_one_name_is_that_names_only() {
        for k in EventKind::ALL {
            if let Some(n) = k.name() {
                assert_eq!(EventKind::of(n), k);
                for near in [
                    format!("{n}_entry"),
                    format!("x{n}"),
                    format!("{n}x"),
                    n[1..].to_string(),
                ] {
                    assert_ne!(EventKind::of(&near), k, "{near}");
                }
            }
        }
        assert_eq!(Other.name(), None);
        assert_eq!(IrqEntry.name(), None);
    }

    /// `ALL` lists every kind once, in declaration order (a reader indexes
    /// tables by `kind as usize`).
    #[test]
    fn all_lists_every_kind_in_order() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        assert_eq!(
            EventKind::ALL.len(),
            EventKind::IrqExit as usize + 1,
            "IrqExit is the last kind"
        );
    }
}
