use super::*;
use crate::finding::{Confidence, Kind, Severity};
use nmitrace_parser::{Notice, ParseStats, Sink, TraceInfo};
use nmitrace_replay::testkit::{ev, OwnedEvent};

fn analyze(kernel: &str, evs: &[OwnedEvent]) -> Report {
    let cfg = Config {
        kernel: Some(kernel.into()),
        arch: Some("x86_64".into()),
        ..Config::default()
    };
    let mut a = Analyzer::new(cfg);
    for e in evs {
        e.with(|ev| {
            let _ = a.event(ev);
        });
    }
    a.finish("test", &TraceInfo::default(), &ParseStats::default())
}

fn kinds(r: &Report) -> Vec<(Kind, Severity, Confidence)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.severity, f.confidence))
        .collect()
}

fn only(r: &Report, kind: &str) -> Vec<Finding> {
    r.findings
        .iter()
        .filter(|f| f.kind.as_str() == kind)
        .cloned()
        .collect()
}

const A: (&str, i32) = ("bash", 100);
const B: (&str, i32) = ("cc1", 200);
const PERF: &str = "perf_event_nmi_handler";

#[test]
fn nmi_stamped_with_prev_after_reason0_flush_is_observed_mismatch() {
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::switch(10_000, 0, A, B),
            ev::flush0(11_000, 0, A),
            ev::nmi(15_000, 0, A, PERF, 2_000, 1),
            ev::other(20_000, 0, B),
        ],
    );
    let f = only(&r, "cr3_current_mismatch");
    assert_eq!(f.len(), 1, "{:?}", kinds(&r));
    assert_eq!(f[0].confidence, Confidence::Observed);
    assert_eq!(f[0].severity, Severity::Warning);
    assert_eq!(f[0].details_json()["prev_pid"], 100);
    assert_eq!(f[0].details_json()["next_pid"], 200);
    // Evidence: the switch, the flush, the NMI and next's first event, as printed.
    assert_eq!(f[0].evidence.len(), 4);
    assert!(f[0].evidence[1].contains("tlb_flush"));
    assert!(f[0].evidence[2].contains("nmi_handler"));
    assert!(f[0].evidence[3].contains("cc1-200"));
    assert_eq!(f[0].details_json()["window_end_ns"], 20_000);
    assert_eq!(r.nmis.instances, 1);
    assert_eq!(r.nmis.by_handler[PERF].count, 1);
}

#[test]
fn nmi_after_next_runs_is_not_a_mismatch() {
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::switch(10_000, 0, A, B),
            ev::flush0(11_000, 0, A),
            ev::other(20_000, 0, B),
            ev::nmi(40_000, 0, B, PERF, 2_000, 1),
        ],
    );
    assert!(
        only(&r, "cr3_current_mismatch").is_empty(),
        "{:?}",
        kinds(&r)
    );
}

#[test]
fn nmi_stamped_with_next_is_never_in_the_window() {
    // The NMI is stamped with next (current was already next: switch_to had
    // run), even though its interval reaches back before next's first event.
    // `current` never changes inside an NMI, so it ran wholly after the window.
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::switch(10_000, 0, A, B),
            ev::flush0(11_000, 0, A),
            ev::nmi(16_000, 0, B, PERF, 5_000, 1),
            ev::other(17_000, 0, B),
        ],
    );
    assert!(
        only(&r, "cr3_current_mismatch").is_empty(),
        "{:?}",
        kinds(&r)
    );
}

#[test]
fn nmi_stamped_with_prev_before_the_flush_is_inferred() {
    // Between sched_switch and the reason-0 flush, switch_mm may or may not
    // have written cr3 yet: a possible window.
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::other(1_500, 0, B),
            ev::switch(10_000, 0, A, B),
            ev::nmi(12_000, 0, A, PERF, 1_000, 1),
            ev::flush0(13_000, 0, A),
            ev::other(14_000, 0, B),
        ],
    );
    let f = only(&r, "cr3_current_mismatch");
    assert_eq!(f.len(), 1, "{:?}", kinds(&r));
    assert_eq!(f[0].confidence, Confidence::Inferred);
    assert_eq!(
        f[0].details_json()["window_from"],
        "sched_switch, before the reason-0 tlb_flush"
    );
}

#[test]
fn nmi_before_a_switch_to_a_kernel_thread_is_no_window() {
    // A kernel thread next borrows prev's mm (enter_lazy_tlb): no cr3 write.
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::switch(10_000, 0, A, ("kworker/0:1", 30)),
            ev::nmi(12_000, 0, A, PERF, 1_000, 1),
            ev::other(14_000, 0, ("kworker/0:1", 30)),
        ],
    );
    assert!(
        only(&r, "cr3_current_mismatch").is_empty(),
        "{:?}",
        kinds(&r)
    );
}

#[test]
fn exec_time_reason0_flush_is_not_a_window() {
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::flush0(2_000, 0, A),
            ev::nmi(3_000, 0, A, PERF, 500, 1),
            ev::exec(4_000, 0, A),
        ],
    );
    assert!(
        only(&r, "cr3_current_mismatch").is_empty(),
        "{:?}",
        kinds(&r)
    );
    assert_eq!(r.input.model.replay.switch_windows, 0);
}

#[test]
fn two_sources_then_swallowed_b2b() {
    let r = analyze(
        "4.19",
        &[
            ev::other(1_000, 0, A),
            ev::nmi(100_000, 0, A, PERF, 3_000, 2),
            // starts 500 ns after the previous ended: b2b.
            ev::nmi(101_500, 0, A, PERF, 1_000, 0),
        ],
    );
    assert_eq!(
        kinds(&r),
        vec![(Kind::SwallowedNmi, Severity::Info, Confidence::Observed)]
    );
    assert_eq!(r.nmis.instances, 2);
}

#[test]
fn empty_non_b2b_nmi_is_unknown() {
    let r = analyze(
        "4.19",
        &[
            ev::other(1_000, 0, A),
            ev::nmi(100_000, 0, A, PERF, 3_000, 1),
            ev::nmi(500_000, 0, A, PERF, 1_000, 0),
        ],
    );
    let k = kinds(&r);
    assert_eq!(
        k,
        vec![(Kind::UnknownNmi, Severity::Warning, Confidence::Observed)]
    );
    assert_eq!(only(&r, "unknown_nmi")[0].details_json()["b2b"], false);
}

#[test]
fn empty_b2b_without_swallow_is_unknown() {
    let r = analyze(
        "4.19",
        &[
            ev::nmi(100_000, 0, A, PERF, 3_000, 1),
            ev::nmi(101_000, 0, A, PERF, 500, 0),
        ],
    );
    assert_eq!(only(&r, "unknown_nmi").len(), 1);
    assert!(only(&r, "swallowed_nmi").is_empty());
}

#[test]
fn three_sources_and_swallowed_follower_is_one_lost() {
    // Three sources claimed work in one NMI; one latched edge came back as an
    // empty b2b NMI (swallowed): one edge collapsed.
    let r = analyze(
        "4.19",
        &[
            ev::nmi(100_000, 0, A, PERF, 3_000, 1),
            ev::nmi(100_000, 0, A, "nmi_cpu_backtrace_handler", 0, 1),
            ev::nmi(100_100, 0, A, "perf_ibs_nmi_handler", 100, 1),
            ev::nmi(101_000, 0, A, PERF, 500, 0),
            ev::nmi(101_100, 0, A, "nmi_cpu_backtrace_handler", 100, 0),
        ],
    );
    let lost = only(&r, "lost_nmi");
    assert_eq!(lost.len(), 1, "{:?}", kinds(&r));
    assert_eq!(lost[0].details_json()["lost"], 1);
    assert_eq!(lost[0].details_json()["sources"], 3);
    assert_eq!(lost[0].details_json()["vendor"], "amd");
    assert_eq!(lost[0].confidence, Confidence::Observed);
    assert_eq!(lost[0].severity, Severity::Info);
    assert_eq!(only(&r, "swallowed_nmi").len(), 1);
    assert_eq!(r.nmis.instances, 2);
}

#[test]
fn two_sources_no_follower_is_one_lost() {
    let r = analyze(
        "4.19",
        &[
            ev::nmi(100_000, 0, A, PERF, 3_000, 1),
            ev::nmi(100_100, 0, A, "nmi_cpu_backtrace_handler", 100, 1),
            ev::nmi(900_000, 0, A, PERF, 3_000, 1),
        ],
    );
    let lost = only(&r, "lost_nmi");
    assert_eq!(lost.len(), 1, "{:?}", kinds(&r));
    assert_eq!(lost[0].details_json()["lost"], 1);
}

#[test]
fn one_pmi_handling_two_counters_is_one_edge_not_a_loss() {
    // x86_pmu_handle_irq returns the number of overflowed counters it
    // serviced in one PMI: handled 2 from one handler is one NMI edge.
    let r = analyze(
        "4.19",
        &[
            ev::nmi(100_000, 0, A, PERF, 3_000, 2),
            ev::nmi(900_000, 0, A, PERF, 3_000, 1),
        ],
    );
    assert!(only(&r, "lost_nmi").is_empty(), "{:?}", kinds(&r));
}

#[test]
fn nested_nmi_after_fault_on_pre_3_3() {
    let vm = 0xffff_c900_0010_0000u64;
    let r = analyze(
        "2.6.35",
        &[
            ev::other(1_000, 0, A),
            // Outer NMI: perf handler starts at 10_000, faults at 12_000 ...
            ev::kfault(12_345, 0, A, vm),
            // ... a nested NMI runs 13_501..14_501 ...
            ev::nmi(14_501, 0, A, PERF, 1_000, 1),
            // ... and the outer handler returns at 20_001.
            ev::nmi(20_001, 0, A, PERF, 10_000, 1),
        ],
    );
    let n = only(&r, "nested_nmi");
    assert_eq!(n.len(), 1, "{:?}", kinds(&r));
    assert_eq!(n[0].severity, Severity::Error);
    assert_eq!(n[0].details_json()["after_fault_in_nmi"], true);
    assert!(
        n[0].evidence[0].contains("page_fault_kernel"),
        "{:?}",
        n[0].evidence
    );
    let v = only(&r, "nmi_vmalloc_fault");
    assert_eq!(v.len(), 1, "{:?}", kinds(&r));
    assert_eq!(v[0].severity, Severity::Error);
    assert_eq!(
        v[0].details_json()["nmi_context_from"],
        "nmi_handler interval"
    );
}

#[test]
fn vmalloc_fault_in_nmi_by_flags_and_era() {
    let vm = 0xffff_c900_0010_0000u64;
    let evs = [
        ev::other(1_000, 0, A).ctx(false, false, false),
        ev::kfault(12_000, 0, A, vm).ctx(true, true, true),
        ev::nmi(14_000, 0, A, PERF, 5_000, 1).ctx(true, true, true),
        ev::other(20_000, 0, A).ctx(false, false, false),
    ];
    let r = analyze("4.19", &evs);
    let v = only(&r, "nmi_vmalloc_fault");
    assert_eq!(v.len(), 1, "{:?}", kinds(&r));
    assert_eq!(v[0].severity, Severity::Warning);
    assert_eq!(v[0].details_json()["nmi_context_from"], "event flags");
    let r = analyze("6.1", &evs);
    assert_eq!(only(&r, "nmi_vmalloc_fault")[0].severity, Severity::Error);
    // A user-address fault in NMI is an nmi_page_fault (info on modern kernels).
    let evs = [
        ev::kfault(12_000, 0, A, 0x7fff_0000_1000).ctx(true, true, true),
        ev::other(20_000, 0, A).ctx(false, false, false),
    ];
    let r = analyze("6.1", &evs);
    assert_eq!(
        kinds(&r),
        vec![(Kind::NmiPageFault, Severity::Info, Confidence::Observed)]
    );
}

#[test]
fn kernel_fault_outside_nmi_is_no_finding() {
    let vm = 0xffff_c900_0010_0000u64;
    let r = analyze(
        "4.19",
        &[
            ev::other(1_000, 0, A),
            ev::kfault(12_000, 0, A, vm),
            ev::nmi(100_000, 0, A, PERF, 2_000, 1),
        ],
    );
    assert!(r.findings.is_empty(), "{:?}", kinds(&r));
}

#[test]
fn slow_handler() {
    let r = analyze("6.1", &[ev::nmi(5_000_000, 0, A, PERF, 2_500_000, 1)]);
    let s = only(&r, "slow_nmi_handler");
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].details_json()["delta_ns"], 2_500_000);
    assert_eq!(r.nmis.by_handler[PERF].max_ns, 2_500_000);
}

#[test]
fn console_unknown_line_confirms() {
    let r = analyze(
        "6.1",
        &[
            ev::nmi(100_000, 3, A, PERF, 1_000, 0),
            ev::console(
                200_000,
                3,
                A,
                "Uhhuh. NMI received for unknown reason 3d on CPU 3.",
            ),
            ev::console(
                300_000,
                1,
                A,
                "Uhhuh. NMI received for unknown reason 2c on CPU 1.",
            ),
        ],
    );
    let u = only(&r, "unknown_nmi");
    assert_eq!(u.len(), 2, "{:?}", kinds(&r));
    assert!(u
        .iter()
        .all(|f| f.details_json()["console_confirmed"] == true));
}

#[test]
fn periodic_source_missing_beats_while_busy() {
    let mut evs = vec![ev::other(0, 0, A)];
    let period = 1_000_000u64;
    for i in 1..=12u64 {
        if i == 8 || i == 9 {
            continue;
        }
        evs.push(ev::nmi(
            i * period,
            0,
            A,
            "watchdog_overflow_callback",
            2_000,
            1,
        ));
    }
    let r = analyze("6.1", &evs);
    let l = only(&r, "lost_nmi");
    assert_eq!(l.len(), 1, "{:?}", kinds(&r));
    assert_eq!(l[0].confidence, Confidence::Inferred);
    assert_eq!(l[0].severity, Severity::Warning);
    assert_eq!(l[0].details_json()["lost"], 2);
}

#[test]
fn exposure_on_old_kernel_only() {
    let base = 0xffff_c900_0000_0000u64;
    let evs = [
        ev::flush0(100, 1, ("x", 5)),
        ev::other(1_000, 1, B),
        ev::other(1_000, 0, A),
        ev::vmap(2_000, 0, A, base + 0x1000, 0x2000),
        ev::vmap(3_000, 0, A, base + (1 << 39), 0x2000),
        ev::switch(5_000, 0, A, B),
        ev::flush0(5_100, 0, A),
        ev::other(6_000, 0, B),
    ];
    let r = analyze("2.6.35", &evs);
    let x = only(&r, "vmalloc_exposure");
    assert_eq!(x.len(), 1, "{:?}", kinds(&r));
    assert_eq!(x[0].confidence, Confidence::Inferred);
    let r = analyze("6.1", &evs);
    assert!(r.findings.is_empty());
    // With page faults traced, the exposure is not reported (faults are observed instead).
    let mut evs = evs.to_vec();
    evs.push(ev::ufault(7_000, 0, B, 0x400000));
    let r = analyze("2.6.35", &evs);
    assert!(r.findings.is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.input.model.replay.vmalloc_exposures_not_reported, 1);
}

#[test]
fn text_report_has_verdict_model_and_evidence() {
    let r = analyze(
        "4.19",
        &[
            ev::flush0(100, 1, ("x", 5)),
            ev::other(1_000, 0, A),
            ev::switch(10_000, 0, A, B),
            ev::flush0(11_000, 0, A),
            ev::nmi(15_000, 0, A, PERF, 2_000, 1),
        ],
    );
    let t = r.render_text();
    assert!(
        t.lines().nth(1).unwrap().starts_with("verdict: WARNINGS"),
        "{t}"
    );
    assert!(t.contains("model: x86_64 4.19"));
    assert!(t.contains("| ") && t.contains("tlb_flush"));
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["input"]["model"]["b2b_threshold_ns"], 2000);
}

#[test]
fn lost_events_close_the_window() {
    let cfg = Config {
        kernel: Some("4.19".into()),
        arch: Some("x86_64".into()),
        ..Config::default()
    };
    let mut a = Analyzer::new(cfg);
    for e in [
        ev::flush0(100, 1, ("x", 5)),
        ev::other(1_000, 0, A),
        ev::switch(10_000, 0, A, B),
        ev::flush0(11_000, 0, A),
    ] {
        e.with(|ev| {
            let _ = a.event(ev);
        });
    }
    a.notice(&Notice::LostEvents {
        cpu: 0,
        count: Some(10),
        ts_ns: Some(50_000),
        origin: nmitrace_parser::Origin::None,
    });
    ev::nmi(60_000, 0, A, PERF, 2_000, 1).with(|ev| {
        let _ = a.event(ev);
    });
    let r = a.finish("t", &TraceInfo::default(), &ParseStats::default());
    assert_eq!(
        kinds(&r),
        vec![(Kind::TraceDataLoss, Severity::Warning, Confidence::Observed)]
    );
    // input.kernel is what the trace says (nothing); the model says what was used, and why
    assert_eq!(r.input.kernel, None);
    assert_eq!(r.input.model.kernel, "4.19");
    assert_eq!(r.input.model.source, "command line");
}

/// Random event soups (all modelled kinds, flags on and off, overlapping
/// NMIs, lost events) never panic and keep the report consistent.
#[test]
fn random_event_soup_does_not_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let tasks = [
        ("bash", 100),
        ("cc1", 200),
        ("kworker/0:1", 41),
        ("swapper/0", 0),
        ("perf", 300),
    ];
    for kernel in ["2.6.35", "4.4", "6.1"] {
        let cfg = Config {
            kernel: Some(kernel.into()),
            ..Config::default()
        };
        let mut a = Analyzer::new(cfg);
        let mut ts = 1_000u64;
        for _ in 0..5_000 {
            ts += rnd(5_000);
            let cpu = rnd(3) as u32;
            let who = tasks[rnd(tasks.len() as u64) as usize];
            let other = tasks[rnd(tasks.len() as u64) as usize];
            let vm = 0xffff_c900_0000_0000u64 + (rnd(64) << 39) + rnd(1 << 20);
            let mut e = match rnd(12) {
                0 => ev::switch(ts, cpu, who, other),
                1 => ev::flush0(ts, cpu, who),
                2 | 3 => ev::nmi(
                    ts,
                    cpu,
                    who,
                    ["perf_event_nmi_handler", "nmi_cpu_backtrace_handler"][rnd(2) as usize],
                    rnd(8_000),
                    rnd(3) as i64,
                ),
                4 => ev::kfault(ts, cpu, who, vm),
                5 => ev::kfault(ts, cpu, who, rnd(1 << 40)),
                6 => ev::exec(ts, cpu, who),
                7 => ev::newtask(
                    ts,
                    cpu,
                    who,
                    1000 + rnd(50) as i32,
                    if rnd(2) == 0 { 0x100 } else { 0x11 },
                ),
                8 => ev::fork(ts, cpu, who, 1000 + rnd(50) as i32),
                9 => ev::vmap(ts, cpu, who, vm, 4096 * (1 + rnd(600))),
                10 => ev::console(
                    ts,
                    cpu,
                    who,
                    "Uhhuh. NMI received for unknown reason 3d on CPU 1.",
                ),
                _ => ev::ufault(ts, cpu, who, 0x400000),
            };
            if rnd(2) == 0 {
                e = e.ctx(rnd(4) == 0, rnd(4) == 0, rnd(2) == 0);
            }
            e.with(|ev| {
                let _ = a.event(ev);
            });
            if rnd(500) == 0 {
                a.notice(&Notice::LostEvents {
                    cpu,
                    count: Some(3),
                    ts_ns: Some(ts),
                    origin: nmitrace_parser::Origin::None,
                });
            }
        }
        let r = a.finish("soup", &TraceInfo::default(), &ParseStats::default());
        let n: u64 = r.summary.values().sum();
        assert_eq!(n, r.findings.len() as u64);
        assert!(r.nmis.instances > 0);
        let _ = r.render_text();
        let _ = serde_json::to_string(&r).unwrap();
    }
}
