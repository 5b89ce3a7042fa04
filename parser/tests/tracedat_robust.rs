//! Hostile input for the trace.dat reader: files written by the writer
//! (v7 zstd, v7 none, v6) cut at many offsets, with flipped bytes and with
//! size fields set to huge values. The reader must never panic and never
//! make a single allocation above 256 MiB; a file cut inside the event data
//! gives a warning and the events before the cut. Also checks the writer →
//! reader round trip of context flags (NMI, hardirq, softirq, irqs-off),
//! time extends and lost-event markers without needing trace-cmd.

use nmitrace_parser::tracedat::{compress::Compression, run_bytes, TraceDatWriter, WriterOptions};
use nmitrace_parser::{Context, Event, Field, Fields, Notice, Origin, Sink, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Guard;
static LARGEST: AtomicUsize = AtomicUsize::new(0);
unsafe impl GlobalAlloc for Guard {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}
#[global_allocator]
static A: Guard = Guard;

#[derive(Default)]
struct Count {
    events: u64,
    lost: u64,
    warnings: u64,
    nmi: u64,
    names: Vec<(u64, u32, String, u8, Vec<String>)>,
    /// Each lost-events marker: cpu, count, time, events delivered before it.
    losses: Vec<(u32, Option<u64>, Option<u64>, usize)>,
}
impl Sink for Count {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.events += 1;
        if ev.ctx.nmi {
            self.nmi += 1;
        }
        if self.names.len() < 100_000 {
            self.names.push((
                ev.ts_ns,
                ev.cpu,
                ev.name.to_string(),
                ev.ctx.to_common_flags(),
                ev.fields
                    .iter()
                    .map(|f| format!("{}={}", f.name, f.value))
                    .collect(),
            ));
        }
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, n: &Notice) {
        match n {
            Notice::LostEvents {
                cpu, count, ts_ns, ..
            } => {
                self.lost += 1;
                self.losses.push((*cpu, *count, *ts_ns, self.names.len()));
            }
            Notice::Warning { .. } => self.warnings += 1,
            _ => {}
        }
    }
}

fn ev<'a>(
    ts: u64,
    cpu: u32,
    pid: i32,
    name: &'a str,
    ctx: Context,
    fields: &'a [Field<'a>],
) -> Event<'a> {
    Event {
        ts_ns: ts,
        cpu,
        pid,
        comm: Some("task"),
        ctx,
        system: None,
        name,
        kind: nmitrace_parser::EventKind::of(name),
        fields: Fields::List(fields),
        origin: Origin::None,
        instance: None,
        raw: None,
    }
}

/// A synthetic trace: switches, NMIs, page faults on 2 CPUs, gaps that
/// need time extends, a lost-events marker.
fn synth(opts: WriterOptions) -> Vec<u8> {
    synth_n(opts, 3000)
}

fn synth_n(opts: WriterOptions, n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = TraceDatWriter::new(&mut out, opts);
    let mut ts = 1_000_000_000u64;
    for i in 0..n {
        let cpu = (i % 2) as u32;
        ts += if i % 500 == 0 {
            5_000_000_000
        } else {
            1000 + i
        };
        let task = Context {
            known: true,
            preempt_depth: Some(0),
            ..Context::UNKNOWN
        };
        let nmi = Context {
            known: true,
            nmi: true,
            hardirq: true,
            irqs_off: true,
            preempt_depth: Some(1),
            ..Context::UNKNOWN
        };
        match i % 3 {
            0 => {
                let f = [
                    Field {
                        name: "prev_comm",
                        value: Value::Str("bash"),
                    },
                    Field {
                        name: "prev_pid",
                        value: Value::Int(100 + i as i64),
                    },
                    Field {
                        name: "prev_prio",
                        value: Value::Int(120),
                    },
                    Field {
                        name: "prev_state",
                        value: Value::Str("S"),
                    },
                    Field {
                        name: "next_comm",
                        value: Value::Str("swapper/0"),
                    },
                    Field {
                        name: "next_pid",
                        value: Value::Int(0),
                    },
                    Field {
                        name: "next_prio",
                        value: Value::Int(120),
                    },
                ];
                let _ = w.event(&ev(ts, cpu, 100 + i as i32, "sched_switch", task, &f));
            }
            1 => {
                let f = [
                    Field {
                        name: "handler",
                        value: Value::Uint(0xffffffff81000000 + i),
                    },
                    Field {
                        name: "delta_ns",
                        value: Value::Int(1234),
                    },
                    Field {
                        name: "handled",
                        value: Value::Int(1),
                    },
                ];
                let _ = w.event(&ev(ts, cpu, 7, "nmi_handler", nmi, &f));
            }
            _ => {
                let f = [
                    Field {
                        name: "address",
                        value: Value::Uint(0xdead000 + i),
                    },
                    Field {
                        name: "ip",
                        value: Value::Uint(0xffffffff81234567),
                    },
                    Field {
                        name: "error_code",
                        value: Value::Uint(2),
                    },
                ];
                let _ = w.event(&ev(ts, cpu, 7, "page_fault_kernel", task, &f));
            }
        }
        if i == 1500 {
            w.notice(&Notice::LostEvents {
                cpu: 1,
                count: Some(42),
                ts_ns: None,
                origin: Origin::None,
            });
        }
    }
    // an event nmitrace has no format for is counted as skipped
    let _ = w.event(&ev(ts + 1, 0, 1, "no_such_event", Context::UNKNOWN, &[]));
    let st = w.finish().unwrap();
    assert_eq!(st.events, n);
    assert_eq!(st.skipped.values().sum::<u64>(), 1);
    out
}

fn decode(b: &[u8]) -> (Result<(), String>, Count) {
    let mut c = Count::default();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_bytes("t.dat", b, &mut c, Some(1))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    match r {
        Ok(r) => (r, c),
        Err(_) => panic!("reader panicked"),
    }
}

fn variants() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "v7-zstd-big-endian",
            synth(WriterOptions {
                big_endian: true,
                ..Default::default()
            }),
        ),
        (
            "v6-big-endian",
            synth(WriterOptions {
                version: 6,
                big_endian: true,
                ..Default::default()
            }),
        ),
        ("v7-zstd", synth(WriterOptions::default())),
        (
            "v7-none",
            synth(WriterOptions {
                compression: Compression::None,
                ..Default::default()
            }),
        ),
        (
            "v6",
            synth(WriterOptions {
                version: 6,
                ..Default::default()
            }),
        ),
    ]
}

#[test]
fn writer_reader_round_trip_keeps_context_and_losses() {
    for (name, b) in variants() {
        let (r, c) = decode(&b);
        r.unwrap();
        assert_eq!(c.events, 3000, "{name}");
        assert_eq!(c.nmi, 1000, "{name}: NMI context from common_flags");
        assert_eq!(c.lost, 1, "{name}: lost-events marker");
        // the marker comes just before the CPU's first event after the loss,
        // with its time (kbuffer: the missed-events page flag)
        let (cpu, count, ts, before) = c.losses[0];
        assert_eq!((cpu, count), (1, Some(42)), "{name}");
        let next = c.names[before..].iter().find(|e| e.1 == cpu).unwrap();
        assert_eq!(ts, Some(next.0), "{name}: marker time");
        assert!(
            c.names[..before].iter().all(|e| e.0 <= next.0),
            "{name}: merged in order"
        );
        let nmi = c.names.iter().find(|e| e.2 == "nmi_handler").unwrap();
        assert_eq!(nmi.3, 0x01 | 0x08 | 0x40, "{name}");
        assert_eq!(
            nmi.4,
            vec!["handler=18446744071578845185", "delta_ns=1234", "handled=1"]
        );
        let sw = c.names.iter().find(|e| e.2 == "sched_switch").unwrap();
        assert!(
            sw.4.contains(&"prev_state=1".to_string())
                && sw.4.contains(&"prev_comm=bash".to_string()),
            "{:?}",
            sw.4
        );
        assert!(
            c.names.windows(2).all(|w| w[0].0 <= w[1].0),
            "{name}: merged in time order"
        );
        // timestamps with >2^27 ns gaps (time extends) survive exactly
        assert_eq!(c.names[0].0, 1_000_000_000 + 5_000_000_000);
    }
}

#[test]
fn truncation_never_panics_and_keeps_events_before_the_cut() {
    for (name, b) in variants() {
        let full = decode(&b).1.events;
        let mut cuts: Vec<usize> = (0..600.min(b.len())).collect();
        cuts.extend((600..b.len()).step_by(97));
        let mut partial = 0;
        for &cut in &cuts {
            let (r, c) = decode(&b[..cut]);
            match r {
                Ok(()) => {
                    assert!(c.events <= full);
                    if c.events < full {
                        assert!(
                            c.warnings > 0,
                            "{name}: cut at {cut}: fewer events but no warning"
                        );
                        partial += 1;
                    }
                }
                Err(m) => assert!(
                    m.contains("byte ") || m.contains("expected"),
                    "{name}: cut at {cut}: unclear error {m}"
                ),
            }
        }
        assert!(
            partial > 10,
            "{name}: cuts in the data should keep the events before them"
        );
    }
    assert!(LARGEST.load(Ordering::Relaxed) < 256 << 20);
}

#[test]
fn flipped_bytes_and_hostile_sizes_never_panic() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (_, b) in variants() {
        for _ in 0..400 {
            let mut m = b.clone();
            let n = 1 + rnd() % 4;
            for _ in 0..n {
                // bias towards the metadata, where sizes live
                let pos = if rnd() % 2 == 0 {
                    (rnd() % 4096) as usize
                } else {
                    (rnd() as usize) % m.len()
                };
                let pos = pos.min(m.len() - 1);
                match rnd() % 3 {
                    0 => m[pos] ^= 1 << (rnd() % 8),
                    1 => m[pos] = 0xff,
                    _ => {
                        let end = (pos + 8).min(m.len());
                        m[pos..end].iter_mut().for_each(|x| *x = 0xff);
                    }
                }
            }
            let _ = decode(&m);
        }
    }
    assert!(
        LARGEST.load(Ordering::Relaxed) < 256 << 20,
        "largest allocation {}",
        LARGEST.load(Ordering::Relaxed)
    );
}

/// Seeds for the cargo-fuzz target (fuzz/fuzz_targets/tracedat.rs).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/tracedat");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("v7-zstd.dat"),
        synth_n(WriterOptions::default(), 60),
    )
    .unwrap();
    std::fs::write(
        dir.join("v7-none.dat"),
        synth_n(
            WriterOptions {
                compression: Compression::None,
                ..Default::default()
            },
            60,
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("v6.dat"),
        synth_n(
            WriterOptions {
                version: 6,
                ..Default::default()
            },
            60,
        ),
    )
    .unwrap();
}

/// Inputs the fuzzer once crashed on (fuzz/fuzz_targets/tracedat.rs; the
/// whole-pipeline replay of every fuzz regression is analyses/tests/fuzz_replay.rs).
#[test]
fn fuzz_regressions() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tracedat_fuzz");
    for e in std::fs::read_dir(dir).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        let _ = decode(&b);
        let _ = std::panic::catch_unwind(|| nmitrace_parser::tracedat::read_meta("x", &b))
            .expect("no panic");
    }
}

/// Several buffers (trace-cmd instances): written by the writer, read back
/// with their instance names, merged by time with the top buffer; and read
/// by trace-cmd when it is installed.
#[test]
fn instances_round_trip() {
    for opts in [
        WriterOptions::default(),
        WriterOptions {
            compression: Compression::None,
            ..Default::default()
        },
        WriterOptions {
            version: 6,
            ..Default::default()
        },
    ] {
        let mut out = Vec::new();
        let mut w = TraceDatWriter::new(&mut out, opts.clone());
        let task = Context {
            known: true,
            preempt_depth: Some(0),
            ..Context::UNKNOWN
        };
        for i in 0..400u64 {
            let f = [
                Field {
                    name: "reason",
                    value: Value::Int((i % 4) as i64),
                },
                Field {
                    name: "pages",
                    value: Value::Int(i as i64),
                },
            ];
            let mut e = ev(1000 + i * 10, (i % 2) as u32, 5, "tlb_flush", task, &f);
            if i % 3 == 0 {
                e.instance = Some("nmi-inst");
            }
            let _ = w.event(&e);
        }
        w.finish().unwrap();
        let mut got = Vec::new();
        struct S<'x>(&'x mut Vec<(u64, Option<String>)>);
        impl Sink for S<'_> {
            fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
                self.0.push((ev.ts_ns, ev.instance.map(str::to_string)));
                nmitrace_parser::CONTINUE
            }
            fn notice(&mut self, _: &Notice) {}
        }
        run_bytes("inst.dat", &out, &mut S(&mut got), None).unwrap();
        assert_eq!(got.len(), 400, "v{} {:?}", opts.version, opts.compression);
        assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(
            got.iter()
                .filter(|g| g.1.as_deref() == Some("nmi-inst"))
                .count(),
            134
        );
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, g)| (g.1.is_some()) == (i % 3 == 0)));
        let have_tc = std::process::Command::new("trace-cmd")
            .arg("--help")
            .output()
            .is_ok();
        if have_tc {
            let p = std::env::temp_dir().join(format!(
                "nmitrace-inst-{}-{}.dat",
                std::process::id(),
                opts.version
            ));
            std::fs::write(&p, &out).unwrap();
            let o = std::process::Command::new("trace-cmd")
                .args(["report", "-R", "-t", "-i"])
                .arg(&p)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            let n = text.lines().filter(|l| l.contains("tlb_flush:")).count();
            assert_eq!(
                n,
                400,
                "trace-cmd reads the top buffer and the instance:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// A big-endian file (as written on a big-endian machine) is read by
/// trace-cmd and by nmitrace with the same events.
#[cfg_attr(
    not(trace_cmd),
    ignore = "trace-cmd is not installed (scripts/setup.sh installs it)"
)]
#[test]
fn big_endian_matches_trace_cmd() {
    if std::process::Command::new("trace-cmd")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("trace-cmd absent: skipped");
        return;
    }
    for opts in [
        WriterOptions {
            big_endian: true,
            ..Default::default()
        },
        WriterOptions {
            big_endian: true,
            version: 6,
            ..Default::default()
        },
    ] {
        let b = synth(opts.clone());
        let p = std::env::temp_dir().join(format!(
            "nmitrace-be-{}-{}.dat",
            std::process::id(),
            opts.version
        ));
        std::fs::write(&p, &b).unwrap();
        let o = std::process::Command::new("trace-cmd")
            .args(["report", "-R", "-t", "-i"])
            .arg(&p)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(": ") && l.contains('['))
            .collect();
        let (_, c) = decode(&b);
        assert_eq!(
            lines.len(),
            c.names.len(),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        for (l, e) in lines.iter().zip(&c.names) {
            let ts = format!("{}.{:09}:", e.0 / 1_000_000_000, e.0 % 1_000_000_000);
            assert!(
                l.contains(&ts)
                    && l.contains(&format!("[{:03}]", e.1))
                    && l.contains(&format!(" {}:", e.2)),
                "{l} vs {e:?}"
            );
            for f in &e.4 {
                let (k, v) = f.split_once('=').unwrap();
                if matches!(
                    k,
                    "prev_comm" | "next_comm" | "handler" | "ip" | "address" | "error_code"
                ) {
                    continue;
                }
                assert!(l.contains(&format!("{k}={v}")), "{l} lacks {k}={v}");
            }
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// A trace-cmd v7 zstd file cut anywhere in its data keeps the events
/// before the cut (trace-cmd puts the buffer description at the end of the
/// file, so the reader locates the per-CPU streams itself), with a warning.
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
#[test]
fn truncated_trace_cmd_v7_keeps_events() {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/real/shell-python/trace.dat");
    let Ok(b) = std::fs::read(&p) else {
        eprintln!("../shared absent: skipped");
        return;
    };
    let (r, full) = decode(&b);
    r.unwrap();
    let mut last = 0;
    for frac in [0.80, 0.85, 0.9, 0.95, 0.99] {
        let cut = (b.len() as f64 * frac) as usize;
        let (r, c) = decode(&b[..cut]);
        r.unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert!(c.warnings > 0, "cut at {cut}: no warning");
        assert!(
            c.events > 0 && c.events < full.events,
            "cut at {cut}: {} events of {}",
            c.events,
            full.events
        );
        assert!(c.events >= last, "more data, more events");
        last = c.events;
        // the events kept are the source's own
        let all: std::collections::HashSet<(u64, u32, &str)> = full
            .names
            .iter()
            .map(|e| (e.0, e.1, e.2.as_str()))
            .collect();
        assert!(c
            .names
            .iter()
            .all(|e| all.contains(&(e.0, e.1, e.2.as_str()))));
    }
}
