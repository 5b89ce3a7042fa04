//! One small raw tracefs trace per kernel-era fact (analyses/RULES.md), each
//! expecting the verdict the kernel line it cites implies. The traces are
//! written in the kernel's own text format (kernel/trace/trace_output.c:
//! `COMM-PID [CPU] FLAGS SECS.USECS: EVENT: FIELDS`).

#[allow(unused_imports)]
use nmitrace_analyses::{Confidence, Kind, Severity};
use nmitrace_analyses::{Config, Finding, Report};
use nmitrace_parser::{Input, Trace};

/// A raw tracefs text trace, built line by line.
struct Raw {
    text: String,
}

/// The default x86_64 4-level vmalloc range, and the top (per-cpu) PGD entry.
const VSTART: u64 = 0xffff_c900_0000_0000;
const VEND: u64 = 0xffff_e8ff_ffff_ffff;
const TOP_CHUNK: u64 = 0xffff_e8ff_ffe0_0000;

impl Raw {
    /// `flags5`: the 5-character flags column (4.19+); else 4 characters.
    fn new(flags5: bool) -> Raw {
        let cols = if flags5 { "|||||" } else { "||||" };
        Raw { text: format!("# tracer: nop\n#\n#           TASK-PID     CPU#  {cols}  TIMESTAMP  FUNCTION\n#              | |         |   {cols}     |         |\n") }
    }

    fn header(mut self, line: &str) -> Raw {
        self.text
            .insert_str("# tracer: nop\n".len(), &format!("{line}\n"));
        self
    }

    fn ev(
        mut self,
        who: (&str, i32),
        cpu: u32,
        flags: &str,
        us: u64,
        event: &str,
        fields: &str,
    ) -> Raw {
        self.text.push_str(&format!(
            "{:>16}-{:<7} [{cpu:03}] {flags} {:>5}.{:06}: {event}: {fields}\n",
            who.0,
            who.1,
            us / 1_000_000,
            us % 1_000_000
        ));
        self
    }

    fn switch(self, cpu: u32, us: u64, prev: (&str, i32), next: (&str, i32), flags: &str) -> Raw {
        let f = format!(
            "prev_comm={} prev_pid={} prev_prio=120 prev_state=S ==> next_comm={} next_pid={} next_prio=120",
            prev.0, prev.1, next.0, next.1
        );
        self.ev(prev, cpu, flags, us, "sched_switch", &f)
    }

    fn flush0(self, cpu: u32, us: u64, who: (&str, i32), flags: &str) -> Raw {
        self.ev(
            who,
            cpu,
            flags,
            us,
            "tlb_flush",
            "pages:-1 reason:flush on task switch (0)",
        )
    }

    fn nmi(
        self,
        cpu: u32,
        us: u64,
        who: (&str, i32),
        flags: &str,
        handler: &str,
        delta_ns: u64,
        handled: i64,
    ) -> Raw {
        self.ev(
            who,
            cpu,
            flags,
            us,
            "nmi_handler",
            &format!("{handler}() delta_ns: {delta_ns} handled: {handled}"),
        )
    }

    fn kfault(
        self,
        cpu: u32,
        us: u64,
        who: (&str, i32),
        flags: &str,
        addr: u64,
        error_code: u64,
    ) -> Raw {
        self.ev(
            who,
            cpu,
            flags,
            us,
            "page_fault_kernel",
            &format!("address=0x{addr:x} ip=perf_callchain error_code=0x{error_code:x}"),
        )
    }

    fn console(self, cpu: u32, us: u64, who: (&str, i32), flags: &str, msg: &str) -> Raw {
        self.ev(who, cpu, flags, us, "console", msg)
    }

    /// `kworker` opens the top vmalloc PGD entry (a per-cpu chunk's area).
    fn new_chunk(self, cpu: u32, us: u64, flags: &str) -> Raw {
        let f = format!("va_start: {TOP_CHUNK} size=2097152 align=2097152 vstart=0x{VSTART:x} vend=0x{VEND:x} failed=0");
        self.ev(("kworker/1:2", 77), cpu, flags, us, "alloc_vmap_area", &f)
    }

    fn analyze(self, kernel: &str, arch: &str) -> Report {
        let cfg = Config {
            kernel: Some(kernel.into()),
            arch: Some(arch.into()),
            ..Config::default()
        };
        let mut t = Trace::from_input(
            "raw".into(),
            Input::from_bytes("raw", self.text.clone().into_bytes()).unwrap(),
        )
        .unwrap();
        t.probe().unwrap();
        let r = nmitrace_analyses::analyze_trace(t, &cfg).unwrap().report;
        assert_eq!(
            r.parse.unparsed_lines, 0,
            "{:?}\n{}",
            r.parse.unparsed_examples, self.text
        );
        r
    }
}

fn of<'a>(r: &'a Report, kind: &str) -> Vec<&'a Finding> {
    r.findings
        .iter()
        .filter(|f| f.kind.as_str() == kind)
        .collect()
}

fn kinds(r: &Report) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| format!("{} {} {}", f.kind, f.severity, f.confidence))
        .collect()
}

const A: (&str, i32) = ("bash", 100);
const B: (&str, i32) = ("cc1", 200);
const PERF: &str = "perf_event_nmi_handler";

/// An NMI in A→B's switch window (stamped A after the reason-0 flush) takes a
/// kernel-mode fault on the vmalloc entry opened during the trace.
fn fault_in_window() -> Raw {
    Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .ev(
            B,
            1,
            "d..2.",
            1_100,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=001",
        )
        .new_chunk(1, 2_000, ".....")
        .switch(0, 10_000, A, B, "d..2.")
        .flush0(0, 10_001, A, "d..2.")
        .kfault(0, 10_003, A, "d.Z2.", TOP_CHUNK + 0x100, 0)
        .nmi(0, 10_006, A, "d.Z2.", PERF, 4_000, 1)
        .ev(
            B,
            0,
            "d..2.",
            10_010,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
}

/// arch/x86/mm/fault.c `vmalloc_fault()`, 4.7.4 line 442:
/// `pgd = pgd_offset(current->active_mm, address);` — in the window
/// `current` is prev, so the entry goes into prev's directory and the access
/// through cr3 faults again: an error.
#[test]
fn up_to_4_7_vmalloc_fault_fills_current_active_mm() {
    let r = fault_in_window().analyze("4.7", "x86_64");
    let v = of(&r, "nmi_vmalloc_fault");
    assert_eq!(v.len(), 1, "{:?}", kinds(&r));
    assert_eq!(v[0].severity, Severity::Error);
    assert_eq!(v[0].details_json()["wrong_pgd"], true);
    let w = of(&r, "cr3_current_mismatch");
    assert_eq!(
        (w.len(), w[0].severity.as_str(), w[0].confidence.as_str()),
        (1, "error", "observed")
    );
}

/// 4.8.15 fault.c line 442: `pgd = (pgd_t *)__va(read_cr3()) + pgd_index(address);`
/// — the sync goes into cr3's directory, right even inside the window.
#[test]
fn from_4_8_vmalloc_fault_fills_cr3() {
    let r = fault_in_window().analyze("4.8", "x86_64");
    let v = of(&r, "nmi_vmalloc_fault");
    assert_eq!(
        (v.len(), v[0].severity.as_str()),
        (1, "warning"),
        "{:?}",
        kinds(&r)
    );
    assert_eq!(v[0].details_json()["wrong_pgd"], false);
    assert_eq!(
        of(&r, "cr3_current_mismatch")[0].severity,
        Severity::Warning
    );
}

/// A vmalloc fault in NMI, outside any switch.
fn fault_in_nmi(addr: u64, error_code: u64) -> Raw {
    Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .kfault(0, 10_003, A, "d.Z1.", addr, error_code)
        .nmi(0, 10_006, A, "d.Z1.", PERF, 4_000, 1)
}

/// 5.8 removed vmalloc faulting for every x86 ("x86/mm: remove vmalloc
/// faulting", 7f0a002b5a21: 5.8.1's fault.c has no `vmalloc_fault`), 5-level
/// paging included: a not-present fault on vmalloc memory there is a bug.
/// 5.7 still synced lazily.
#[test]
fn from_5_8_no_x86_faults_vmalloc_lazily() {
    for arch in ["x86_64", "x86_64-la57"] {
        let addr = if arch == "x86_64" {
            TOP_CHUNK
        } else {
            0xffa0_0000_0010_0000
        };
        let r = fault_in_nmi(addr, 0).analyze("5.8", arch);
        assert_eq!(
            of(&r, "nmi_vmalloc_fault")[0].severity,
            Severity::Error,
            "{arch}: {:?}",
            kinds(&r)
        );
        let r = fault_in_nmi(addr, 0).analyze("5.7", arch);
        assert_eq!(
            of(&r, "nmi_vmalloc_fault")[0].severity,
            Severity::Warning,
            "{arch}: {:?}",
            kinds(&r)
        );
    }
}

/// 4819e15f740e "x86/mm/32: Bring back vmalloc faulting on x86_32" (5.9,
/// 5.8.8): `#ifdef CONFIG_X86_32 … if (vmalloc_fault(address) >= 0) return;`
/// — for the race between a new mapping and its sync: legal again on x86_32.
#[test]
fn x86_32_got_vmalloc_fault_back_in_5_9_for_a_race() {
    let addr = 0xf880_0000 + 0x40_0000;
    assert_eq!(
        of(
            &fault_in_nmi(addr, 0).analyze("5.8", "x86_32"),
            "nmi_vmalloc_fault"
        )[0]
        .severity,
        Severity::Error
    );
    assert_eq!(
        of(
            &fault_in_nmi(addr, 0).analyze("5.9", "x86_32"),
            "nmi_vmalloc_fault"
        )[0]
        .severity,
        Severity::Warning
    );
    assert_eq!(
        of(
            &fault_in_nmi(addr, 0).analyze("5.8.8", "x86_32"),
            "nmi_vmalloc_fault"
        )[0]
        .severity,
        Severity::Warning
    );
}

/// arch/x86/mm/fault.c (4.19.1 `__do_page_fault`, 5.4.59 `do_kern_addr_fault`):
/// `if (!(error_code & (X86_PF_RSVD | X86_PF_USER | X86_PF_PROT))) { if
/// (vmalloc_fault(address) >= 0) return; }` — a protection fault on vmalloc
/// memory is no lazy sync (a write to read-only vmalloc memory).
#[test]
fn a_protection_fault_is_not_a_vmalloc_sync() {
    let r = fault_in_nmi(TOP_CHUNK, 0x3).analyze("4.19", "x86_64");
    assert!(of(&r, "nmi_vmalloc_fault").is_empty(), "{:?}", kinds(&r));
    let p = of(&r, "nmi_page_fault");
    assert_eq!((p.len(), p[0].severity.as_str()), (1, "error"));
    assert_eq!(r.input.model.replay.lazy_vmalloc_syncs, 0);
}

/// A trace without page-fault events: the exposure of older mms is inferred.
fn exposure_trace(addr_in_new_entry: u64) -> Raw {
    Raw::new(false)
        .ev(A, 0, "d..2", 1_000, "sched_wakeup", "comm=x pid=1 prio=120 target_cpu=000")
        .ev(
            ("kworker/1:2", 77),
            1,
            "....",
            2_000,
            "alloc_vmap_area",
            &format!("va_start: {addr_in_new_entry} size=4194304 align=4096 vstart=0xf8800000 vend=0xff7fdfff failed=0"),
        )
        .switch(0, 10_000, A, B, "d..2")
        .flush0(0, 10_001, A, "d..2")
        .ev(B, 0, "d..2", 10_010, "sched_wakeup", "comm=x pid=1 prio=120 target_cpu=000")
}

/// include/asm/pgtable-3level_types.h (4.4): `#define SHARED_KERNEL_PMD 1`
/// (no PTI, not Xen PV), and pgd_ctor() clones the kernel PGD entries, which
/// all point at the one kernel PMD page: PAE never needs a lazy sync
/// (`vmalloc_sync_all`: `if (SHARED_KERNEL_PMD) return;`). Non-PAE copies
/// 4 MiB PGD entries and syncs them lazily up to 5.7.
#[test]
fn pae_with_a_shared_kernel_pmd_never_syncs_lazily() {
    let top = 0xfec0_0000u64;
    let r = exposure_trace(top).analyze("4.4", "x86_32");
    assert!(!of(&r, "vmalloc_exposure").is_empty(), "{:?}", kinds(&r));
    let r = exposure_trace(top).analyze("4.4", "x86_32-pae");
    assert!(of(&r, "vmalloc_exposure").is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.input.model.lazy_vmalloc_faults, false);
}

/// Before 4.6 ftrace had no NMI flag (TRACE_FLAG_NMI is in 4.6.2, not 4.5.0):
/// `nmi_enter()` adds `NMI_OFFSET + HARDIRQ_OFFSET` (4.4 hardirq.h:62), so an
/// NMI's events print `h`. Inside an `nmi_handler` interval they are NMI
/// context: the fault is not lost. From 4.6 an `h` event is a hardirq.
#[test]
fn before_4_6_nmi_events_print_h() {
    let raw = || {
        Raw::new(false)
            .ev(
                A,
                0,
                "d..2",
                1_000,
                "sched_wakeup",
                "comm=x pid=1 prio=120 target_cpu=000",
            )
            .kfault(0, 10_003, A, "d.h1", 0xffff_c900_0010_0000, 0)
            .nmi(0, 10_006, A, "d.h1", PERF, 4_000, 1)
            .ev(
                A,
                0,
                "d..2",
                10_020,
                "sched_wakeup",
                "comm=x pid=1 prio=120 target_cpu=000",
            )
    };
    let r = raw().analyze("4.4", "x86_64");
    let v = of(&r, "nmi_vmalloc_fault");
    assert_eq!(v.len(), 1, "{:?}", kinds(&r));
    assert_eq!(
        v[0].details_json()["nmi_context_from"],
        "nmi_handler interval"
    );
    let r = raw().analyze("4.6", "x86_64");
    assert!(of(&r, "nmi_vmalloc_fault").is_empty(), "{:?}", kinds(&r));
}

/// arch/x86/kernel/nmi.c `default_do_nmi()` (3.2+): `if (regs->ip ==
/// __this_cpu_read(last_nmi_rip)) b2b = true;` — the trace carries no ip, so
/// the swallowed verdict rests on a timing proxy, and says so.
#[test]
fn b2b_verdicts_say_they_rest_on_timing() {
    let r = Raw::new(true)
        .nmi(0, 100_000, A, "d.Z1.", PERF, 3_000, 2)
        .nmi(0, 100_002, A, "d.Z1.", PERF, 1_000, 0)
        .analyze("6.1", "x86_64");
    let s = of(&r, "swallowed_nmi");
    assert_eq!(s.len(), 1, "{:?}", kinds(&r));
    assert!(s[0].details_json()["b2b_from"]
        .as_str()
        .unwrap()
        .contains("last_nmi_rip"));
}

/// x86_pmu_handle_irq() returns the number of overflowed counters one PMI
/// serviced (`handled++` per counter, arch/x86/events/core.c): perf's
/// `handled: 2` is one NMI edge. Lost edges are counted per source.
#[test]
fn lost_nmis_are_counted_per_source_not_per_handled() {
    let one_pmi_two_counters = Raw::new(true)
        .nmi(0, 100_000, A, "d.Z1.", PERF, 3_000, 2)
        .nmi(0, 900_000, A, "d.Z1.", PERF, 3_000, 1);
    let r = one_pmi_two_counters.analyze("6.1", "x86_64");
    assert!(of(&r, "lost_nmi").is_empty(), "{:?}", kinds(&r));
    let two_sources = Raw::new(true)
        .nmi(0, 100_000, A, "d.Z1.", PERF, 3_000, 1)
        .nmi(
            0,
            100_002,
            A,
            "d.Z1.",
            "nmi_cpu_backtrace_handler",
            1_500,
            1,
        )
        .nmi(0, 900_000, A, "d.Z1.", PERF, 3_000, 1);
    let r = two_sources.analyze("6.1", "x86_64");
    let l = of(&r, "lost_nmi");
    assert_eq!(
        (l.len(), l[0].details_json()["lost"].as_i64()),
        (1, Some(1)),
        "{:?}",
        kinds(&r)
    );
}

/// kernel/trace/trace.c `print_event_info()`: `# entries-in-buffer/entries-written:
/// %lu/%lu`, where entries-written adds `ring_buffer_overrun_cpu()` (events
/// overwritten in overwrite mode): a flight recorder's overwritten past is an
/// info note, not a loss inside the trace.
#[test]
fn a_flight_recorders_overwritten_past_is_a_note() {
    let r = Raw::new(true)
        .header("#\n# entries-in-buffer/entries-written: 3/5000   #P:2")
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .ev(
            A,
            0,
            "d..2.",
            1_100,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .ev(
            A,
            1,
            "d..2.",
            1_200,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=001",
        )
        .analyze("6.1", "x86_64");
    let o = of(&r, "trace_overwritten");
    assert_eq!(
        (o.len(), o[0].severity.as_str()),
        (1, "info"),
        "{:?}",
        kinds(&r)
    );
    assert_eq!(o[0].details_json()["overwritten"], 4997);
    assert!(of(&r, "trace_data_loss").is_empty());
    assert_eq!(r.events.overwritten_events, 4997);
}

/// trace-cmd report prints `CPU:%d [%lld EVENTS DROPPED]` from the page's
/// missed-events count (tracecmd/trace-read.c): before a CPU's first event it
/// is the overwritten past; after it, a gap.
#[test]
fn a_loss_before_a_cpus_first_event_is_the_overwritten_past() {
    let text = "cpus=2\nCPU:0 [400 EVENTS DROPPED]\n            bash-100   [000]     1.001000: sched_wakeup:         comm=x pid=1 prio=120 target_cpu=000\nCPU:0 [7 EVENTS DROPPED]\n            bash-100   [000]     1.002000: sched_wakeup:         comm=x pid=1 prio=120 target_cpu=000\n";
    let mut t = Trace::from_input(
        "r".into(),
        Input::from_bytes("r", text.as_bytes().to_vec()).unwrap(),
    )
    .unwrap();
    t.probe().unwrap();
    let r = nmitrace_analyses::analyze_trace(t, &Config::default())
        .unwrap()
        .report;
    assert_eq!(of(&r, "trace_overwritten").len(), 1, "{:?}", kinds(&r));
    let l = of(&r, "trace_data_loss");
    assert_eq!((l.len(), l[0].severity.as_str()), (1, "warning"));
    assert_eq!(r.events.lost_events, 7);
}

/// arch/x86/kernel/nmi.c `nmi_check_duration()` (6.12, and from 3.15 in
/// nmi_max_handler): `if (duration < nmi_longest_ns || duration <
/// action->max_duration) return;` — the kernel prints "took too long" for a
/// new per-handler maximum at or over 1 ms only.
#[test]
fn took_too_long_is_printed_for_a_new_maximum_only() {
    let bt = "nmi_cpu_backtrace_handler";
    let r = Raw::new(true)
        .nmi(0, 100_000, A, "d.Z1.", bt, 2_000_000, 1)
        .console(
            0,
            100_001,
            A,
            "d.Z1.",
            "INFO: NMI handler (nmi_cpu_backtrace_handler) took too long to run: 2.000 msecs",
        )
        .nmi(0, 900_000, A, "d.Z1.", bt, 1_500_000, 1)
        .nmi(0, 1_900_000, A, "d.Z1.", bt, 1_000_000, 1)
        .analyze("6.12", "x86_64");
    let s = of(&r, "slow_nmi_handler");
    assert_eq!(s.len(), 3, "{:?}", kinds(&r)); // 1 ms itself is slow: the test is `<`
    assert_eq!(s[0].details_json()["kernel_prints_too_long"], true);
    assert_eq!(s[0].details_json()["console_confirmed"], true);
    assert_eq!(s[1].details_json()["kernel_prints_too_long"], false);
    assert!(s[1].details_json().get("console_confirmed").is_none());
    assert_eq!(s[2].details_json()["kernel_prints_too_long"], false);
}

/// 248ed51048c4 (5.6) printed the previous `max_duration` ("0.000 msecs" on
/// the first one) until f94c91f7ba3b (5.10): there the line still confirms
/// the handler's slow call.
#[test]
fn took_too_long_on_5_6_to_5_9_prints_the_previous_maximum() {
    let r = Raw::new(true)
        .nmi(0, 100_000, A, "d.Z1.", PERF, 2_000_000, 1)
        .console(
            0,
            100_001,
            A,
            "d.Z1.",
            "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 0.000 msecs",
        )
        .analyze("5.8", "x86_64");
    let s = of(&r, "slow_nmi_handler");
    assert_eq!(s.len(), 1, "{:?}", kinds(&r));
    assert_eq!(s[0].details_json()["console_confirmed"], true);
}

/// x86_64 `vmalloc_fault()` 2.6.37–5.1: `WARN_ON_ONCE(in_nmi());` (ebc8827f75954,
/// removed by a65c88e16f32): the kernel's own word that a vmalloc fault ran
/// in NMI, confirming the fault event, or standing alone without one.
#[test]
fn vmalloc_faults_warn_in_nmi_up_to_5_1() {
    let warn = "WARNING: CPU: 0 PID: 100 at arch/x86/mm/fault.c:378 vmalloc_fault+0x1c7/0x1e0";
    let r = Raw::new(false)
        .ev(
            A,
            0,
            "d..2",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .kfault(0, 10_003, A, "d.Z1", 0xffff_c900_0010_0000, 0)
        .console(0, 10_004, A, "d.Z1", warn)
        .nmi(0, 10_006, A, "d.Z1", PERF, 4_000, 1)
        .analyze("4.19", "x86_64");
    let v = of(&r, "nmi_vmalloc_fault");
    assert_eq!(v.len(), 1, "{:?}", kinds(&r));
    assert!(v[0].details_json()["confirmed_by"]
        .as_str()
        .unwrap()
        .contains("WARN_ON_ONCE"));
    let r = Raw::new(false)
        .console(0, 10_004, A, "d.Z1", warn)
        .nmi(0, 10_006, A, "d.Z1", PERF, 4_000, 1)
        .analyze("4.19", "x86_64");
    assert_eq!(of(&r, "nmi_vmalloc_fault").len(), 1, "{:?}", kinds(&r));
}

/// arch/x86/mm/fault.c `show_fault_oops()`: "BUG: unable to handle page
/// fault for address: %px" (4.20+; "kernel paging request at" before): an
/// oops on a fault in NMI makes that fault an error.
#[test]
fn an_oops_on_a_fault_in_nmi_is_an_error() {
    let r = Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .kfault(0, 10_003, A, "d.Z1.", 0xffff_8880_0000_1000, 0)
        .console(
            0,
            10_004,
            A,
            "d.Z1.",
            "BUG: unable to handle page fault for address: ffff888000001000",
        )
        .nmi(0, 10_006, A, "d.Z1.", PERF, 4_000, 1)
        .analyze("6.1", "x86_64");
    let p = of(&r, "nmi_page_fault");
    assert_eq!(
        (p.len(), p[0].severity.as_str()),
        (1, "error"),
        "{:?}",
        kinds(&r)
    );
}

/// A switch from A to B on CPU 0 with an NMI whose stamp and dump vary.
fn window(nmi_who: (&str, i32), after_flush: bool, dump: &[&str]) -> Raw {
    let mut r = Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .ev(
            B,
            1,
            "d..2.",
            1_100,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=001",
        )
        .switch(0, 10_000, A, B, "d..2.");
    if after_flush {
        r = r.flush0(0, 10_001, A, "d..2.");
    }
    let mut us = 10_002;
    if !dump.is_empty() {
        r = r.console(0, us, nmi_who, "d.Z2.", "NMI backtrace for cpu 0");
        for l in dump {
            us += 1;
            r = r.console(0, us, nmi_who, "d.Z2.", l);
        }
    }
    r = r.nmi(
        0,
        us + 1,
        nmi_who,
        "d.Z2.",
        "nmi_cpu_backtrace_handler",
        1_500 + 1_000 * dump.len() as u64,
        1,
    );
    if !after_flush {
        r = r.flush0(0, us + 2, A, "d..2.");
    }
    r.ev(
        B,
        0,
        "d..2.",
        us + 5,
        "sched_wakeup",
        "comm=x pid=1 prio=120 target_cpu=000",
    )
}

/// kernel/sched/core.c `__schedule()` traces sched_switch with `current` =
/// prev; arch/x86/mm/tlb.c `switch_mm_irqs_off()` writes cr3
/// (`load_new_mm_cr3`) then `trace_tlb_flush(TLB_FLUSH_ON_TASK_SWITCH, …)`;
/// arch/x86/kernel/process_64.c `__switch_to()` writes `current_task` last.
/// The stamp places the NMI: prev after the flush = in the window; prev
/// before the flush = possible; next = after it.
#[test]
fn the_stamp_places_the_nmi() {
    let w = |who, after| {
        let r = window(who, after, &[]).analyze("6.1", "x86_64");
        of(&r, "cr3_current_mismatch")
            .iter()
            .map(|f| f.confidence.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(w(A, true), vec![Confidence::Observed]);
    assert_eq!(w(A, false), vec![Confidence::Inferred]);
    assert!(w(B, true).is_empty());
}

/// lib/nmi_backtrace.c `nmi_cpu_backtrace()` → `show_regs()`: RIP, the
/// instruction bytes, CR3 and the call trace of the interrupted context. A
/// RIP in `__switch_to` (after the cr3 write, before `current = next`)
/// confirms a possible window; a user-mode RIP (CS 0033) refutes it.
#[test]
fn the_nmis_own_dump_decides() {
    let r = window(
        A,
        false,
        &[
            "CPU: 0 UID: 0 PID: 100 Comm: bash Not tainted 6.1.0 #1",
            "RIP: 0010:__switch_to+0x13/0x4a0",
            "Call Trace:",
            " <TASK>",
            " __schedule+0x397/0xf60",
        ],
    )
    .analyze("6.1", "x86_64");
    let f = of(&r, "cr3_current_mismatch");
    assert_eq!(
        (f.len(), f[0].confidence.as_str()),
        (1, "observed"),
        "{:?}",
        kinds(&r)
    );
    assert!(f[0].details_json()["confirmed_by"]
        .as_str()
        .unwrap()
        .contains("__switch_to"));
    assert_eq!(
        f[0].details_json()["interrupted_rip"],
        "0010:__switch_to+0x13/0x4a0"
    );
    let r = window(
        A,
        true,
        &[
            "CPU: 0 UID: 0 PID: 100 Comm: bash Not tainted 6.1.0 #1",
            "RIP: 0033:0x7f54b31da011",
        ],
    )
    .analyze("6.1", "x86_64");
    assert!(of(&r, "cr3_current_mismatch").is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.input.model.replay.switch_windows_refuted_by_nmi_dump, 1);
}

/// arch/x86/mm/tlb.c `leave_mm()` (6.12: `switch_mm(NULL, &init_mm, NULL)`,
/// a reason-0 flush) and `kthread_use_mm()` (5.8+) write cr3 outside a
/// switch, for `current` itself: no window.
#[test]
fn a_reason0_flush_outside_a_switch_is_no_window() {
    let idle = ("<idle>", 0);
    let kw = ("kworker/0:1", 30);
    let r = Raw::new(true)
        .ev(
            idle,
            0,
            "d..1.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .flush0(0, 2_000, idle, "d..1.")
        .nmi(0, 2_010, idle, "d.Z1.", PERF, 3_000, 1)
        .flush0(1, 3_000, kw, "d..1.")
        .nmi(1, 3_010, kw, "d.Z1.", PERF, 3_000, 1)
        .analyze("6.1", "x86_64");
    assert!(of(&r, "cr3_current_mismatch").is_empty(), "{:?}", kinds(&r));
}

/// fs/exec.c `exec_mmap()` (4.4 and 6.12): `tsk->active_mm = mm;` before
/// `activate_mm(active_mm, mm)` → `switch_mm()` writes cr3: an NMI between
/// sees the new mm in `current->active_mm` and the old one in cr3. Only the
/// dump shows it (nothing is traced in between).
#[test]
fn execs_reverse_window_shows_in_the_dump() {
    let r = Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .console(0, 2_000, A, "d.Z1.", "NMI backtrace for cpu 0")
        .console(
            0,
            2_001,
            A,
            "d.Z1.",
            "CPU: 0 UID: 0 PID: 100 Comm: bash Not tainted 6.1.0 #1",
        )
        .console(
            0,
            2_002,
            A,
            "d.Z1.",
            "RIP: 0010:switch_mm_irqs_off+0x200/0x3d0",
        )
        .console(
            0,
            2_003,
            A,
            "d.Z1.",
            "Code: 48 09 c7 <48> 0f ba ef 3f 0f 22 df 0f 1f 00",
        )
        .console(0, 2_004, A, "d.Z1.", "Call Trace:")
        .console(0, 2_005, A, "d.Z1.", " <TASK>")
        .console(0, 2_006, A, "d.Z1.", " switch_mm+0x2e/0x50")
        .console(0, 2_007, A, "d.Z1.", " exec_mmap+0x1a3/0x2c0")
        .console(0, 2_008, A, "d.Z1.", " begin_new_exec+0x140/0x7e0")
        .nmi(0, 2_010, A, "d.Z1.", "nmi_cpu_backtrace_handler", 12_000, 1)
        .flush0(0, 2_020, A, "d..1.")
        .ev(
            A,
            0,
            ".....",
            2_030,
            "sched_process_exec",
            "filename=/usr/bin/true pid=100 old_pid=100",
        )
        .analyze("6.1", "x86_64");
    let f = of(&r, "cr3_current_mismatch");
    assert_eq!(
        (f.len(), f[0].confidence.as_str()),
        (1, "observed"),
        "{:?}",
        kinds(&r)
    );
    assert_eq!(f[0].details_json()["reverse"], true);
}

/// From `sched_switch` to `switch_to` irqs are off: prev emitting an ordinary
/// event after its switch means the switch did not go on as traced (events
/// lost without a marker), so its window cannot be trusted.
#[test]
fn a_switch_that_prev_outlives_is_no_window() {
    let r = Raw::new(true)
        .ev(
            A,
            0,
            "d..2.",
            1_000,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
        .ev(
            B,
            1,
            "d..2.",
            1_100,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=001",
        )
        .switch(0, 10_000, A, B, "d..2.")
        .flush0(0, 10_001, A, "d..2.")
        .nmi(0, 10_400, A, "d.Z..", PERF, 3_000, 1)
        .ev(
            A,
            0,
            "d....",
            10_460,
            "page_fault_user",
            "address=0x563afb56d040 ip=0x7f1b217076a8 error_code=0x4",
        )
        .analyze("6.1", "x86_64");
    assert!(of(&r, "cr3_current_mismatch").is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.input.model.replay.switches_contradicted, 1);
}
