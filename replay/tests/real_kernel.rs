//! The page-directory replay checked against a kernel that really faults
//! lazily: Linux 5.4.59 x86_32 non-PAE (4 MiB PGD entries, lazy vmalloc
//! syncs up to 5.7), recorded in QEMU by `scripts/qemu/run.sh linux-5.4-i386`
//! (provenance: `tests/data/linux-5.4.59-i386/PROVENANCE.md`).
//!
//! Asserted, with the counts printed:
//! - the replay's vmalloc range holds exactly the faults in the kernel's own
//!   (0xdf3fe000-0xff3fe000, not the 896 MiB-lowmem default 0xf8800000-);
//! - every kernel-mode, not-present fault the kernel took on a vmalloc
//!   address is one the replay expected: the mm in cr3 lacked that entry
//!   (observed = expected, unexpected = 0);
//! - the kernel never faulted twice on one (mm, entry), and the replay never
//!   expects a fault (a cr3 load exposing the entry) for an (mm, entry) the
//!   kernel already synced, by a fault or by an eager `vmalloc_sync()`;
//! - every fault was on an (mm, entry) the replay could name beforehand:
//!   exposed at a cr3 load, or in some CPU's cr3 when the entry opened.
//!
//! Without the vmalloc kprobe events the replay expects almost none of them.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use nmitrace_parser::model::Modelled;
use nmitrace_parser::{Event, Flow, Notice, Sink, Trace, CONTINUE};
use nmitrace_replay::{KernelModel, MmBirth, Outcome, Replay, VmallocProbe};

/// The kernel's own range, from the guest's boot log (`virtual kernel memory
/// layout: vmalloc : 0xdf3fe000 - 0xff3fe000`): `VMALLOC_START` =
/// `high_memory + 8 MiB` with 1 GiB of RAM and `vmalloc=512M`.
const KERNEL_VMALLOC: (u64, u64) = (0xdf3f_e000, 0xff3f_e000);

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/linux-5.4.59-i386")
        .join(name)
}

#[derive(Default, Debug)]
struct Counts {
    /// Kernel-mode, not-present faults on vmalloc addresses (lazy syncs the kernel did).
    observed: u64,
    /// Of those, the replay's mm in cr3 lacked the entry.
    expected: u64,
    unexpected: Vec<String>,
    /// Faults on an (mm, entry) the kernel had already synced by a fault.
    second_faults: u64,
    /// cr3 loads where the replay said the mm lacks an entry the kernel had
    /// already synced into it (a fault or an eager sync).
    re_expected: u64,
    /// Distinct (mm, entry) pairs the replay said were exposed at a cr3 load…
    exposed_pairs: u64,
    /// …and those the kernel then faulted on.
    exposed_then_faulted: u64,
    /// (mm, entry) pairs the replay knew were exposed when the entry opened:
    /// the mm was in some CPU's cr3 then (a kernel thread on a borrowed mm
    /// touches the new memory without any cr3 load in between)…
    exposed_at_open: u64,
    /// …and those the kernel then faulted on (not exposed at a load before).
    exposed_at_open_then_faulted: u64,
    /// Faults on a pair exposed neither at a load nor at the opening.
    faulted_unexposed: u64,
    /// Entries with an exposed load (one `vmalloc_exposure` each, where the
    /// trace has no fault events), and entries the kernel faulted on.
    entries_exposed_at_load: u64,
    entries_faulted: u64,
    /// Faults in the replay's vmalloc range / in the kernel's.
    in_model_range: u64,
    in_kernel_range: u64,
    kernel_faults: u64,
    eager_syncs: u64,
    entries_opened: usize,
    events: u64,
    unparsed: u64,
}

struct Check {
    r: Replay,
    probes: bool,
    c: Counts,
    /// (mm serial, entry) pairs a fault synced.
    synced: HashSet<(u64, u16)>,
    /// (mm serial, entry) → the replay called it exposed at a load.
    exposed: HashMap<(u64, u16), bool>,
    /// (mm serial, entry) in a CPU's cr3 when the entry opened → faulted since.
    at_open: HashMap<(u64, u16), bool>,
    entries_loaded: HashSet<u16>,
    entries_faulted: HashSet<u16>,
    last_eager_sync_ns: Option<u64>,
}

impl Sink for Check {
    fn event(&mut self, ev: &Event<'_>) -> Flow {
        self.c.events += 1;
        self.r.touch(ev);
        let m = Modelled::from_event(ev);
        if !self.probes && matches!(m, Modelled::Other) && VmallocProbe::from_event(ev).is_some() {
            return CONTINUE;
        }
        let eager_before = self.r.stats.eager_syncs;
        let opened_before = self.r.vmalloc.opened.len();
        let outcome = self.r.apply(ev, &m);
        for i in opened_before..self.r.vmalloc.opened.len() {
            let e = self.r.vmalloc.opened[i].entry;
            for (_, mm) in self.r.loaded_lacking(e) {
                if self
                    .at_open
                    .insert((self.r.mms.get(mm).serial, e), false)
                    .is_none()
                {
                    self.c.exposed_at_open += 1;
                }
            }
        }
        match outcome {
            Outcome::KernelFault(fi) => {
                self.c.kernel_faults += 1;
                let addr = fi.address.unwrap_or(0);
                let kernel_vmalloc = addr >= KERNEL_VMALLOC.0 && addr < KERNEL_VMALLOC.1;
                self.c.in_kernel_range += kernel_vmalloc as u64;
                self.c.in_model_range += fi.in_vmalloc as u64;
                let (Some(e), Some(mm)) = (fi.entry, fi.cr3_mm) else {
                    if kernel_vmalloc && fi.error_code & 0b1001 == 0 {
                        self.c
                            .unexpected
                            .push(format!("not a sync by the model: {}", line(ev)));
                    }
                    return CONTINUE;
                };
                self.c.observed += 1;
                let serial = self.r.mms.get(mm).serial;
                if !self.synced.insert((serial, e)) {
                    self.c.second_faults += 1;
                }
                self.entries_faulted.insert(e);
                let at_load = self
                    .exposed
                    .get_mut(&(serial, e))
                    .map(|hit| !std::mem::replace(hit, true));
                let at_open = self
                    .at_open
                    .get_mut(&(serial, e))
                    .map(|hit| !std::mem::replace(hit, true));
                match (at_load, at_open) {
                    (Some(first), _) => self.c.exposed_then_faulted += first as u64,
                    (None, Some(first)) => self.c.exposed_at_open_then_faulted += first as u64,
                    (None, None) => self.c.faulted_unexposed += 1,
                }
                if fi.lacked {
                    self.c.expected += 1;
                } else {
                    let d = self.r.mms.get(mm).describe();
                    self.c
                        .unexpected
                        .push(format!("{d} had entry {e} by the model: {}", line(ev)));
                }
            }
            Outcome::ExposedLoad { mm, lacking } => {
                let serial = self.r.mms.get(mm).serial;
                let born = match self.r.mms.get(mm).birth {
                    MmBirth::Fork { ts_ns } | MmBirth::Exec { ts_ns } => ts_ns,
                    _ => 0,
                };
                for e in lacking.iter() {
                    self.entries_loaded.insert(e);
                    let opened = self
                        .r
                        .vmalloc
                        .opened
                        .iter()
                        .find(|o| o.entry == e)
                        .map_or(u64::MAX, |o| o.ts_ns);
                    let eager = self
                        .last_eager_sync_ns
                        .is_some_and(|t| opened < t && born < t);
                    if self.synced.contains(&(serial, e)) || eager {
                        self.c.re_expected += 1;
                    }
                    if self.exposed.insert((serial, e), false).is_none() {
                        self.c.exposed_pairs += 1;
                    }
                }
            }
            _ => {}
        }
        if self.r.stats.eager_syncs > eager_before {
            self.last_eager_sync_ns = Some(ev.ts_ns);
            // the kernel synced every (mm, entry) init_mm had: none may be expected again
            for m in self.exposed.values_mut().chain(self.at_open.values_mut()) {
                *m = true;
            }
        }
        CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        match n {
            // The rest of a multi-line console message (a show_mem report
            // after a failed vmalloc): printk text, not an event.
            Notice::Unparsed { text, .. } if text.starts_with('[') => self.c.unparsed += 1,
            n => panic!("{n:?}"),
        }
    }
}

fn line(ev: &Event<'_>) -> String {
    ev.raw
        .map(str::to_string)
        .unwrap_or_else(|| format!("{} {}", ev.ts_ns, ev.name))
}

fn replay(file: &str, probes: bool) -> Counts {
    // NMITRACE_REAL_5_4_TRACE=…/record/trace.txt replays another recording of
    // the same kernel and boot (the whole one, untrimmed) instead.
    let path = std::env::var_os("NMITRACE_REAL_5_4_TRACE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data(file));
    let t = Trace::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The text says neither kernel nor arch: given, as `--kernel 5.4.59 --arch x86_32` would.
    let model = KernelModel::choose(None, None, Some("5.4.59"), Some("x86_32"));
    assert!(model.lazy_vmalloc_faults);
    let mut ck = Check {
        r: Replay::new(model),
        probes,
        c: Counts::default(),
        synced: HashSet::new(),
        exposed: HashMap::new(),
        at_open: HashMap::new(),
        entries_loaded: HashSet::new(),
        entries_faulted: HashSet::new(),
        last_eager_sync_ns: None,
    };
    t.run(&mut ck).unwrap();
    ck.c.entries_exposed_at_load = ck.entries_loaded.len() as u64;
    ck.c.entries_faulted = ck.entries_faulted.len() as u64;
    ck.c.eager_syncs = ck.r.stats.eager_syncs;
    ck.c.entries_opened = ck.r.vmalloc.opened.len();
    ck.c
}

#[test]
fn every_lazy_vmalloc_fault_of_5_4_x86_32_is_one_the_replay_expected() {
    let c = replay("trace.txt.gz", true);
    println!(
        "linux 5.4.59 x86_32: {} events, {} kernel-mode faults; vmalloc faults observed {}, expected {}, unexpected {}; \
         second faults on a synced (mm, entry) {}; re-expected after a sync {}; \
         (mm, entry) pairs exposed at a cr3 load {} (faulted {}), in a cr3 when the entry opened {} (faulted, not exposed at a load {}), faulted unexposed {}; \
         entries with an exposed load {}, entries faulted {}; eager syncs {}; entries opened {}",
        c.events,
        c.kernel_faults,
        c.observed,
        c.expected,
        c.unexpected.len(),
        c.second_faults,
        c.re_expected,
        c.exposed_pairs,
        c.exposed_then_faulted,
        c.exposed_at_open,
        c.exposed_at_open_then_faulted,
        c.faulted_unexposed,
        c.entries_exposed_at_load,
        c.entries_faulted,
        c.eager_syncs,
        c.entries_opened
    );
    for u in c.unexpected.iter().take(20) {
        println!("unexpected: {u}");
    }
    // The replay's vmalloc range holds every fault the kernel's does, and no other.
    assert_eq!(c.in_model_range, c.in_kernel_range, "{c:?}");
    assert!(c.observed >= 100, "the trace holds real lazy syncs: {c:?}");
    assert!(
        c.unexpected.is_empty(),
        "{} unexpected faults: {:#?}",
        c.unexpected.len(),
        c.unexpected
    );
    assert_eq!(c.expected, c.observed);
    assert_eq!(
        c.second_faults, 0,
        "the kernel never faults twice on one (mm, entry)"
    );
    assert_eq!(c.re_expected, 0);
    // Every fault was on a pair the replay could name beforehand: exposed at
    // a cr3 load, or in a cr3 when its entry opened.
    assert_eq!(c.faulted_unexposed, 0, "{c:?}");
    assert_eq!(
        c.exposed_then_faulted + c.exposed_at_open_then_faulted,
        c.observed,
        "{c:?}"
    );
    assert!(
        c.eager_syncs > 0,
        "5.4.59 purges sync every pgd (vmalloc_sync_unmappings)"
    );
}

/// What the replay sees without the kprobe events (the analyses' filter passes
/// only the modelled tracepoints, and 5.4 has no `vmalloc:*` ones): per-cpu
/// chunks as hashed `percpu_create_chunk` pointers, no vmalloc areas at all.
/// It cannot expect the faults then; the probes are what makes it agree.
#[test]
fn without_the_vmalloc_probes_the_replay_expects_few_of_them() {
    let c = replay("trace.txt.gz", false);
    println!(
        "linux 5.4.59 x86_32 without probes: vmalloc faults observed {}, expected {}, unexpected {}; entries opened {}",
        c.observed,
        c.expected,
        c.unexpected.len(),
        c.entries_opened
    );
    assert_eq!(c.in_model_range, c.in_kernel_range);
    assert!(c.unexpected.len() as u64 > c.observed / 2, "{c:?}");
}
