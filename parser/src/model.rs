//! Typed payloads for the tracepoints the replay models (SPEC §2.5).
//!
//! [`Modelled::from_event`] reads an event's fields by the kernel's format
//! field names, whichever input format they came from (the text parser
//! normalises plugin formats such as `a:1 [120] S ==> b:2 [120]` to those
//! names). Everything else is [`Modelled::Other`].

use crate::event::{Event, Fields};

/// A page fault tracepoint (`exceptions:page_fault_user` / `page_fault_kernel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault<'a> {
    /// `page_fault_user` (true) or `page_fault_kernel` (false): the tracepoint, i.e. `user_mode(regs)`.
    pub user_tracepoint: bool,
    /// Faulting address, when numeric.
    pub address: Option<u64>,
    /// The address as printed (may be a symbol).
    pub address_text: Option<&'a str>,
    /// Instruction pointer when numeric; `ip_text` holds a symbol (`__put_user_4`).
    pub ip: Option<u64>,
    pub ip_text: Option<&'a str>,
    pub error_code: u64,
}

impl PageFault<'_> {
    pub const PROTECTION: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const USER: u64 = 4;
    pub const RESERVED: u64 = 8;
    pub const INSTRUCTION: u64 = 16;

    /// A kernel-mode access (error_code bit 2 clear).
    pub fn kernel_mode(&self) -> bool {
        self.error_code & Self::USER == 0
    }
}

/// One `nmi:nmi_handler` event: a handler returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NmiHandler<'a> {
    /// Handler symbol (`perf_event_nmi_handler`) or its address as text;
    /// empty when the format gives a number (trace.dat: see `handler_addr`).
    pub handler: &'a str,
    /// The handler's address when the format gives a number (trace.dat
    /// without symbol resolution).
    pub handler_addr: Option<u64>,
    pub delta_ns: u64,
    pub handled: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedSwitch<'a> {
    pub prev_comm: &'a str,
    pub prev_pid: i32,
    pub prev_prio: i32,
    /// As printed (`R`, `S`, `D`, `R+`) or the raw number as text.
    pub prev_state: &'a str,
    pub next_comm: &'a str,
    pub next_pid: i32,
    pub next_prio: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modelled<'a> {
    PageFault(PageFault<'a>),
    NmiHandler(NmiHandler<'a>),
    SchedSwitch(SchedSwitch<'a>),
    /// `sched_process_fork`: parent and child.
    Fork {
        parent_comm: &'a str,
        parent_pid: i32,
        child_comm: &'a str,
        child_pid: i32,
    },
    /// `task_newtask`: the new task and its clone flags (0x100 = CLONE_VM).
    NewTask {
        pid: i32,
        comm: &'a str,
        clone_flags: u64,
    },
    /// `sched_process_exec`.
    Exec {
        filename: &'a str,
        pid: i32,
        old_pid: i32,
    },
    /// `sched_process_exit`.
    Exit {
        comm: &'a str,
        pid: i32,
    },
    /// `sched_process_free`.
    Free {
        comm: &'a str,
        pid: i32,
    },
    /// `tlb_flush`: reason 0 = flush on task switch.
    TlbFlush {
        pages: i64,
        reason: i64,
    },
    /// `vmalloc:alloc_vmap_area`: `addr` is va_start; vstart/vend bound the vmalloc range.
    AllocVmapArea {
        addr: u64,
        size: u64,
        align: u64,
        vstart: u64,
        vend: u64,
        failed: bool,
    },
    /// `vmalloc:free_vmap_area_noflush`.
    FreeVmapArea {
        va_start: u64,
    },
    /// `percpu:percpu_create_chunk`: base address (None when the text hashed it).
    PercpuCreateChunk {
        base_addr: Option<u64>,
    },
    /// `percpu:percpu_alloc_percpu`.
    PercpuAlloc {
        base_addr: Option<u64>,
        off: u64,
        size: u64,
    },
    /// Interrupt entry (`irq_vectors:*_entry`, `irq:irq_handler_entry`, `irq:softirq_entry`).
    IrqEntry {
        kind: IrqKind,
    },
    /// Interrupt exit.
    IrqExit {
        kind: IrqKind,
    },
    /// A console/printk line (`console` event, field `msg`).
    Console {
        msg: &'a str,
    },
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    Hard,
    Soft,
}

/// The values of `names` (the first of each): for a binary record by the
/// places its format noted for this list (see
/// [`RecordFields::named`](crate::tracedat::format::RecordFields::named)),
/// for text in one pass over the fields (text payloads are split on access:
/// one pass instead of one per name). Each kind of event asks with its own
/// `static` list.
fn fields_of<'a, const N: usize>(
    f: &Fields<'a>,
    names: &'static [&'static str; N],
) -> [Option<crate::Value<'a>>; N] {
    if let Fields::Record(r) = f {
        return r.named(names);
    }
    let mut out = [None; N];
    for fl in f.iter() {
        if let Some(k) = names.iter().position(|n| *n == fl.name) {
            if out[k].is_none() {
                out[k] = Some(fl.value);
            }
        }
    }
    out
}

// The fields each modelled event is read by (kernel format names).
static PAGE_FAULT: [&str; 3] = ["address", "ip", "error_code"];
static NMI_HANDLER: [&str; 3] = ["handler", "delta_ns", "handled"];
static SCHED_SWITCH: [&str; 7] = [
    "prev_comm",
    "prev_pid",
    "prev_prio",
    "prev_state",
    "next_comm",
    "next_pid",
    "next_prio",
];
static FORK: [&str; 6] = [
    "parent_comm",
    "comm",
    "parent_pid",
    "pid",
    "child_comm",
    "child_pid",
];
static NEW_TASK: [&str; 3] = ["pid", "comm", "clone_flags"];
static EXEC: [&str; 3] = ["filename", "pid", "old_pid"];
static PID_COMM: [&str; 2] = ["pid", "comm"];
static TLB_FLUSH: [&str; 2] = ["pages", "reason"];
static VMAP_AREA: [&str; 8] = [
    "addr", "va_start", "msg", "size", "align", "vstart", "vend", "failed",
];
static PERCPU_ALLOC: [&str; 3] = ["base_addr", "off", "size"];

fn i32v(v: Option<crate::Value<'_>>) -> Option<i32> {
    v?.as_i64().map(|v| v as i32)
}

/// A field the kernel prints with `%lx` (hex without `0x`, e.g. task_newtask's
/// `clone_flags=4100` is CLONE_VFORK|CLONE_VM). Text is hex; binary is a number.
fn hex_value(v: crate::Value<'_>) -> Option<u64> {
    match v {
        crate::Value::Str(s) => u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok(),
        v => v.as_u64(),
    }
}

/// A pointer printed by `%p` in tracefs text is hashed (`000000006b7a76f4`,
/// no `0x`): never an address. Real addresses have `0x` (trace-cmd report)
/// or are numbers (trace.dat).
fn pointer(v: Option<crate::Value<'_>>) -> Option<u64> {
    match v? {
        crate::Value::Str(s) if !s.starts_with("0x") => None,
        v => v.as_u64(),
    }
}

impl<'a> Modelled<'a> {
    /// Interpret an event. Missing or malformed fields give [`Modelled::Other`]
    /// rather than a guess.
    pub fn from_event(ev: &Event<'a>) -> Modelled<'a> {
        let f = &ev.fields;
        // Dispatched on the kind the reader resolved; the name only for the
        // events the analyses do not ask for by kind.
        use crate::EventKind as K;
        let m = match ev.kind {
            K::PageFaultUser | K::PageFaultKernel => (|| {
                let [addr, ip, ec] = fields_of(f, &PAGE_FAULT);
                let addr = addr?;
                Some(Modelled::PageFault(PageFault {
                    user_tracepoint: ev.kind == K::PageFaultUser,
                    address: addr.as_u64(),
                    address_text: addr.as_str(),
                    ip: ip.and_then(|v| v.as_u64()),
                    ip_text: ip.and_then(|v| v.as_str()),
                    error_code: ec?.as_u64()?,
                }))
            })(),
            K::NmiHandler => (|| {
                let [handler, delta, handled] = fields_of(f, &NMI_HANDLER);
                Some(Modelled::NmiHandler(NmiHandler {
                    handler: handler.and_then(|v| v.as_str()).unwrap_or(""),
                    handler_addr: match handler {
                        Some(crate::Value::Str(_)) | None => None,
                        Some(v) => v.as_u64(),
                    },
                    delta_ns: delta?.as_u64()?,
                    handled: handled?.as_i64()?,
                }))
            })(),
            K::SchedSwitch => (|| {
                let [pc, pp, ppr, ps, nc, np, npr] = fields_of(f, &SCHED_SWITCH);
                let text = |v: Option<crate::Value<'a>>| v.and_then(|v| v.as_str()).unwrap_or("");
                let prio =
                    |v: Option<crate::Value<'a>>| v.and_then(|v| v.as_i64()).unwrap_or(0) as i32;
                Some(Modelled::SchedSwitch(SchedSwitch {
                    prev_comm: text(pc),
                    prev_pid: pp?.as_i64()? as i32,
                    prev_prio: prio(ppr),
                    prev_state: text(ps),
                    next_comm: text(nc),
                    next_pid: np?.as_i64()? as i32,
                    next_prio: prio(npr),
                }))
            })(),
            K::SchedProcessFork => (|| {
                let [pc, c, pp, p, cc, cp] = fields_of(f, &FORK);
                Some(Modelled::Fork {
                    parent_comm: pc
                        .and_then(|v| v.as_str())
                        .or_else(|| c.and_then(|v| v.as_str()))
                        .unwrap_or(""),
                    parent_pid: i32v(pp).or_else(|| i32v(p))?,
                    child_comm: cc.and_then(|v| v.as_str()).unwrap_or(""),
                    child_pid: i32v(cp)?,
                })
            })(),
            K::TaskNewtask => (|| {
                let [p, c, cf] = fields_of(f, &NEW_TASK);
                Some(Modelled::NewTask {
                    pid: i32v(p)?,
                    comm: c.and_then(|v| v.as_str()).unwrap_or(""),
                    clone_flags: hex_value(cf?)?,
                })
            })(),
            K::SchedProcessExec => (|| {
                let [fl, p, op] = fields_of(f, &EXEC);
                Some(Modelled::Exec {
                    filename: fl.and_then(|v| v.as_str()).unwrap_or(""),
                    pid: i32v(p)?,
                    old_pid: i32v(op).or_else(|| i32v(p))?,
                })
            })(),
            K::SchedProcessFree => {
                let [p, c] = fields_of(f, &PID_COMM);
                i32v(p).map(|pid| Modelled::Free {
                    comm: c.and_then(|v| v.as_str()).unwrap_or(""),
                    pid,
                })
            }
            K::TlbFlush => (|| {
                let [p, r] = fields_of(f, &TLB_FLUSH);
                Some(Modelled::TlbFlush {
                    pages: p?.as_i64()?,
                    reason: r?.as_i64()?,
                })
            })(),
            K::AllocVmapArea => (|| {
                let [addr, va_start, msg, size, align, vstart, vend, failed] =
                    fields_of(f, &VMAP_AREA);
                let u64v = |v: Option<crate::Value<'_>>| v.and_then(|v| v.as_u64());
                // The print format is `va_start: %lu size=...`: text splitters
                // may hand the first pair over as `va_start` or inside `msg`.
                let addr = u64v(addr).or_else(|| u64v(va_start)).or_else(|| {
                    msg?.as_str()?
                        .trim()
                        .strip_prefix("va_start:")
                        .and_then(|v| v.trim().parse().ok())
                })?;
                Some(Modelled::AllocVmapArea {
                    addr,
                    size: u64v(size)?,
                    align: u64v(align).unwrap_or(0),
                    vstart: u64v(vstart)?,
                    vend: u64v(vend)?,
                    failed: failed.and_then(|v| v.as_i64()).unwrap_or(0) != 0,
                })
            })(),
            K::PercpuCreateChunk => Some(Modelled::PercpuCreateChunk {
                base_addr: pointer(f.get("base_addr")),
            }),
            K::Console => f.str("msg").map(|msg| Modelled::Console { msg }),
            K::Other | K::IrqEntry | K::IrqExit | K::VmallocProbe => match ev.name {
                "sched_process_exit" => {
                    let [p, c] = fields_of(f, &PID_COMM);
                    i32v(p).map(|pid| Modelled::Exit {
                        comm: c.and_then(|v| v.as_str()).unwrap_or(""),
                        pid,
                    })
                }
                "free_vmap_area_noflush" => f
                    .u64("va_start")
                    .map(|va_start| Modelled::FreeVmapArea { va_start }),
                "percpu_alloc_percpu" => {
                    let [base, off, size] = fields_of(f, &PERCPU_ALLOC);
                    Some(Modelled::PercpuAlloc {
                        base_addr: pointer(base),
                        off: off.and_then(|v| v.as_u64()).unwrap_or(0),
                        size: size.and_then(|v| v.as_u64()).unwrap_or(0),
                    })
                }
                n => irq_kind(ev.system, n),
            },
        };
        m.unwrap_or(Modelled::Other)
    }
}

fn irq_kind(system: Option<&str>, name: &str) -> Option<Modelled<'static>> {
    match name {
        "irq_handler_entry" => {
            return Some(Modelled::IrqEntry {
                kind: IrqKind::Hard,
            })
        }
        "irq_handler_exit" => {
            return Some(Modelled::IrqExit {
                kind: IrqKind::Hard,
            })
        }
        "softirq_entry" => {
            return Some(Modelled::IrqEntry {
                kind: IrqKind::Soft,
            })
        }
        "softirq_exit" => {
            return Some(Modelled::IrqExit {
                kind: IrqKind::Soft,
            })
        }
        _ => {}
    }
    // irq_vectors:*_entry / *_exit (local_timer_entry, reschedule_exit, ...).
    // Without a system name (tracefs/report text) the suffix and the known
    // vector names identify them.
    let vector_system = matches!(system, Some("irq_vectors"));
    if let Some(base) = name.strip_suffix("_entry") {
        if vector_system || is_vector(base) {
            return Some(Modelled::IrqEntry {
                kind: IrqKind::Hard,
            });
        }
    } else if let Some(base) = name.strip_suffix("_exit") {
        if vector_system || is_vector(base) {
            return Some(Modelled::IrqExit {
                kind: IrqKind::Hard,
            });
        }
    }
    None
}

/// x86 `irq_vectors` tracepoint stems.
fn is_vector(base: &str) -> bool {
    matches!(
        base,
        "local_timer"
            | "spurious_apic"
            | "error_apic"
            | "x86_platform_ipi"
            | "irq_work"
            | "reschedule"
            | "call_function"
            | "call_function_single"
            | "threshold_apic"
            | "deferred_error_apic"
            | "thermal_apic"
    )
}
