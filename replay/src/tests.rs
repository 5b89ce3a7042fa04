use super::*;
use crate::testkit::ev;
use nmitrace_parser::model::Modelled;

fn run(r: &mut Replay, evs: &[testkit::OwnedEvent]) -> Vec<Outcome> {
    evs.iter()
        .map(|e| {
            e.with(|ev| {
                r.touch(ev);
                let m = Modelled::from_event(ev);
                r.apply(ev, &m)
            })
        })
        .collect()
}

fn model(k: &str) -> KernelModel {
    KernelModel::choose(None, None, Some(k), Some("x86_64"))
}

#[test]
fn reason0_flush_after_switch_opens_window_until_next_runs() {
    let mut r = Replay::new(model("4.19"));
    let a = ("bash", 100);
    let b = ("cc1", 200);
    run(
        &mut r,
        &[
            ev::flush0(500, 1, ("x", 5)),
            ev::other(1_000, 0, a),
            ev::switch(2_000, 0, a, b),
        ],
    );
    assert_eq!(r.cpu(0).unwrap().window.phase, Phase::Switched);
    let o = run(&mut r, &[ev::flush0(3_000, 0, a)]);
    assert!(matches!(o[0], Outcome::WindowOpened));
    assert!(r.cpu(0).unwrap().window.is_open());
    run(&mut r, &[ev::other(4_000, 0, b)]);
    let c = r.cpu(0).unwrap();
    assert_eq!(c.window.phase, Phase::Idle);
    assert_eq!(c.last_window.start_ts, 3_000);
    assert_eq!(c.last_window.end_ts, Some(4_000));
    assert_eq!(r.stats.windows, 1);
}

#[test]
fn exec_flush_is_not_a_window() {
    let mut r = Replay::new(model("4.19"));
    let a = ("sh", 100);
    let o = run(
        &mut r,
        &[
            ev::other(1_000, 0, a),
            ev::flush0(2_000, 0, a),
            ev::exec(3_000, 0, a),
        ],
    );
    assert!(matches!(o[1], Outcome::NonSwitchFlush));
    assert_eq!(r.cpu(0).unwrap().window.phase, Phase::Idle);
    assert_eq!(r.stats.windows, 0);
    assert_eq!(r.stats.exec_flushes, 1);
}

#[test]
fn kthread_next_writes_no_cr3() {
    let mut r = Replay::new(model("4.19"));
    let a = ("bash", 100);
    let k = ("kworker/0:1", 41);
    run(
        &mut r,
        &[
            ev::flush0(500, 1, ("x", 5)),
            ev::other(1_000, 0, a),
            ev::switch(2_000, 0, a, k),
            ev::other(3_000, 0, k),
        ],
    );
    let c = r.cpu(0).unwrap();
    assert_eq!(c.window.phase, Phase::Idle);
    assert_eq!(c.last_window.phase, Phase::Idle);
    // cr3 still holds bash's mm (lazy TLB).
    assert_eq!(c.loaded_mm, r.tasks.get(100).unwrap().mm);
}

#[test]
fn fallback_window_without_tlb_flush_events() {
    let mut r = Replay::new(model("4.19"));
    let a = ("bash", 100);
    let b = ("cc1", 200);
    let o = run(
        &mut r,
        &[ev::other(1_000, 0, a), ev::switch(2_000, 0, a, b)],
    );
    assert!(matches!(o[1], Outcome::WindowOpened));
    let w = &r.cpu(0).unwrap().window;
    assert!(w.is_open() && w.fallback);
}

#[test]
fn lazy_vmalloc_sync_and_exposure() {
    let mut r = Replay::new(model("2.6.35"));
    let a = ("bash", 100);
    let b = ("perf", 200);
    let base = 0xffff_c900_0000_0000u64;
    // b exists before the entry opens; vmalloc grows from entry 0 into entry 1.
    let o = run(
        &mut r,
        &[
            ev::other(1_000, 1, b),
            ev::other(1_000, 0, a),
            ev::vmap(2_000, 0, a, base + 0x1000, 0x2000),
            ev::vmap(3_000, 0, a, base + (1 << 39), 0x2000),
        ],
    );
    assert!(matches!(o[3], Outcome::EntryOpened(0)));
    // A fork now copies init_mm: the child has entry 1.
    run(
        &mut r,
        &[
            ev::newtask(4_000, 0, a, 300, 0x1200011),
            ev::fork(4_001, 0, a, 300),
        ],
    );
    let child_mm = r.tasks.get(300).unwrap().mm.unwrap();
    assert!(r.mms.get(child_mm).has.contains(1));
    // Switching to b (created before) loads an mm lacking entry 1.
    let o = run(
        &mut r,
        &[ev::switch(5_000, 0, a, b), ev::flush0(5_100, 0, a)],
    );
    assert!(matches!(o[1], Outcome::ExposedLoad { .. }), "{:?}", o[1]);
    // A kernel fault on entry 1 syncs it into b's mm.
    let o = run(
        &mut r,
        &[
            ev::other(6_000, 0, b),
            ev::kfault(7_000, 0, b, base + (1 << 39) + 0x10),
        ],
    );
    match o[1] {
        Outcome::KernelFault(f) => assert!(f.lacked && f.entry == Some(1) && !f.wrong_pgd),
        ref x => panic!("{x:?}"),
    }
    let bm = r.tasks.get(200).unwrap().mm.unwrap();
    assert!(r.mms.get(bm).has.contains(1));
}

#[test]
fn clone_vm_shares_mm() {
    let mut r = Replay::new(model("4.19"));
    let a = ("java", 100);
    run(
        &mut r,
        &[
            ev::other(1, 0, a),
            ev::newtask(2, 0, a, 101, 0x3d0f00),
            ev::fork(3, 0, a, 101),
        ],
    );
    assert_eq!(r.tasks.get(101).unwrap().mm, r.tasks.get(100).unwrap().mm);
}

#[test]
fn captured_line_renders_binary_events() {
    let mut e = ev::switch(608_705_844_123, 0, ("uniq", 12910), ("cat", 12908));
    e.raw = None;
    let mut c = CapturedLine::default();
    assert!(c.render().is_none());
    e.with(|ev| c.capture(ev));
    let l = c.render().unwrap();
    assert!(
        l.contains("uniq-12910")
            && l.contains("[000]")
            && l.contains("608.705844123: sched_switch: prev_comm=uniq"),
        "{l}"
    );
    let raw = ev::flush0(1_000, 1, ("a", 1));
    raw.with(|ev| c.capture(ev));
    assert_eq!(c.render().unwrap(), raw.raw.clone().unwrap());
}

#[test]
fn name_eq_matches_str_eq() {
    let names = [
        "",
        "a",
        "tlb_flush",
        "sched_switch",
        "page_fault_user",
        "page_fault_kernel",
        "page_fault_usex",
        "xage_fault_user",
        "nmi_handler",
    ];
    for a in names {
        for b in names {
            assert_eq!(crate::name_eq(a, b), a == b, "{a} {b}");
        }
    }
}

/// The `nmt` kprobe events of scripts/qemu stand in for the vmalloc
/// tracepoints on 5.4: areas open every entry first seen (but the first
/// area's), per-cpu chunks come with their real addresses, and an eager
/// `vmalloc_sync_unmappings` gives every mm every entry.
#[test]
fn vmalloc_probes_open_entries_and_eager_syncs_close_them() {
    use testkit::OwnedEvent;
    let mut r = Replay::new(KernelModel::choose(
        None,
        None,
        Some("5.4.59"),
        Some("x86_32"),
    ));
    let (a, b) = (("sh", 100), ("pingpong", 200));
    let area = |ts, s: u64, e: u64| {
        OwnedEvent::new(
            ts,
            0,
            "insmod",
            300,
            "alloc_vmap_area_ret",
            &format!("(__get_vm_area_node+0xa6/0xf2 <- alloc_vmap_area) va_start={s} va_end={e}"),
        )
    };
    let o = run(
        &mut r,
        &[
            // b's mm predates the entries opened below
            ev::switch(1_000, 1, ("swapper/1", 0), b),
            ev::other(1_000, 0, a),
            // the first area: mapped since boot
            area(2_000, 0xdf41_1000, 0xdf41_5000),
            // an aligned area far above, then one spanning two entries in between
            area(3_000, 0xe800_0000, 0xe800_2000),
            area(4_000, 0xe6fd_0000, 0xe703_5000),
            OwnedEvent::new(
                5_000,
                0,
                "kworker/0:1",
                12,
                "pcpu_get_vm_areas_ret",
                "(pcpu_create_chunk+0xa8/0xef <- pcpu_get_vm_areas) addr=0xff3c2000 size=245760",
            ),
            OwnedEvent::new(
                5_001,
                0,
                "kworker/0:1",
                12,
                "percpu_create_chunk",
                "base_addr=(ptrval)",
            ),
        ],
    );
    assert!(matches!(o[2], Outcome::Nothing), "{:?}", o[2]);
    assert!(matches!(o[3], Outcome::EntryOpened(0)), "{:?}", o[3]);
    assert!(matches!(o[4], Outcome::EntryOpened(1)), "{:?}", o[4]);
    assert!(
        matches!(o[6], Outcome::Nothing),
        "a hashed chunk assumes nothing once the probe gave its address"
    );
    let bases: Vec<u64> = r.vmalloc.opened.iter().map(|o| o.base).collect();
    assert_eq!(
        bases,
        vec![0xe800_0000, 0xe6c0_0000, 0xe700_0000, 0xff00_0000]
    );
    assert!(r.vmalloc.opened[3].percpu);
    let bm = r.tasks.get(200).unwrap().mm.unwrap();
    let pgd = r.model.pgd;
    assert!(!r.mms.get(bm).has.contains(pgd.entry(0xe703_0000).unwrap()));
    assert_eq!(r.mms.out_of_sync(), 1);
    let o = run(
        &mut r,
        &[OwnedEvent::new(
            6_000,
            0,
            "kworker/0:1",
            12,
            "vmalloc_sync_unmappings",
            "(vmalloc_sync_unmappings+0x0/0x5)",
        )],
    );
    assert!(matches!(o[0], Outcome::Nothing));
    assert_eq!((r.stats.eager_syncs, r.mms.out_of_sync()), (1, 0));
    assert!(r.mms.get(bm).has.contains(pgd.entry(0xe703_0000).unwrap()));
    // A task first seen now predates the trace: the sync reached its pgd too.
    run(&mut r, &[ev::switch(7_000, 1, b, ("late", 400))]);
    let lm = r.tasks.get(400).unwrap().mm.unwrap();
    assert!(r.mms.get(lm).has.contains(pgd.entry(0xe703_0000).unwrap()));
    // x86_64 5.4: vmalloc_sync_unmappings does nothing (fault.c:340).
    let mut r64 = Replay::new(KernelModel::choose(
        None,
        None,
        Some("5.4.59"),
        Some("x86_64"),
    ));
    run(
        &mut r64,
        &[OwnedEvent::new(
            1,
            0,
            "k",
            12,
            "vmalloc_sync_unmappings",
            "(x)",
        )],
    );
    assert_eq!(r64.stats.eager_syncs, 0);
}
