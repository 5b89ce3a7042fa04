//! Analyze a trace and compare with parse-only time:
//! `cargo run --release -p nmitrace-analyses --example bench_analyze -- TRACE [--kernel V] [--json|--text] [--threads N]`

use nmitrace_analyses::{Analyzer, Config};
use nmitrace_parser::{Event, Notice, Sink, Trace};
use std::time::Instant;

struct Count(u64);
impl Sink for Count {
    fn event(&mut self, _ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.0 += 1;
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, _n: &Notice) {}
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = &args[0];
    let mut cfg = Config::default();
    let mut out = "";
    let mut threads = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--kernel" => {
                cfg.kernel = Some(args[i + 1].clone());
                i += 1;
            }
            "--arch" => {
                cfg.arch = Some(args[i + 1].clone());
                i += 1;
            }
            "--threads" => {
                threads = args[i + 1].parse().ok();
                i += 1;
            }
            "--json" => out = "json",
            "--text" => out = "text",
            "--bench" => out = "bench",
            "--dump" => out = "dump",
            "--count" => out = "count",
            "--by-name" => out = "by-name",
            _ => {}
        }
        i += 1;
    }
    if out == "count" {
        let mut tr = Trace::open(path).unwrap();
        tr.threads = threads;
        tr.probe().unwrap();
        let mut c = Count(0);
        tr.run(&mut c).unwrap();
        println!("{}", c.0);
        return;
    }
    if out == "by-name" {
        // Analyzer time per event name (rdtsc around each call), best of 3.
        struct ByName<S: Sink>(S, std::collections::BTreeMap<String, (u64, u64)>);
        impl<S: Sink> Sink for ByName<S> {
            fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
                let t = unsafe { core::arch::x86_64::_rdtsc() };
                let flow = self.0.event(ev);
                let d = unsafe { core::arch::x86_64::_rdtsc() } - t;
                match self.1.get_mut(ev.name) {
                    Some(e) => {
                        e.0 += 1;
                        e.1 += d;
                    }
                    None => {
                        self.1.insert(ev.name.to_string(), (1, d));
                    }
                }
                flow
            }
            fn notice(&mut self, n: &Notice) {
                self.0.notice(n)
            }
        }
        let mut tr = Trace::open(path).unwrap();
        tr.threads = threads;
        tr.probe().unwrap();
        let info = tr.info.clone();
        let mut a = ByName(Analyzer::for_trace(cfg.clone(), &info), Default::default());
        tr.run(&mut a).unwrap();
        let mut v: Vec<_> = a.1.into_iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1 .1));
        let total: u64 = v.iter().map(|x| x.1 .1).sum();
        for (name, (n, t)) in v.iter().take(25) {
            println!(
                "{name:32} {n:>9} events {:>8.1} Mtsc ({:5.1} %) {:>8.1} tsc/event",
                *t as f64 / 1e6,
                *t as f64 * 100.0 / total as f64,
                *t as f64 / *n as f64
            );
        }
        return;
    }
    if out == "dump" {
        struct Dump;
        impl Sink for Dump {
            fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
                let m = nmitrace_parser::model::Modelled::from_event(ev);
                let f: Vec<String> = ev
                    .fields
                    .iter()
                    .map(|f| format!("{}={:?}", f.name, f.value))
                    .collect();
                println!(
                    "{} {} {} {:?} {:?}",
                    ev.ts_ns,
                    ev.name,
                    f.join(" "),
                    ev.ctx,
                    m
                );
                nmitrace_parser::CONTINUE
            }
            fn notice(&mut self, _n: &Notice) {}
        }
        let tr = Trace::open(path).unwrap();
        tr.run(&mut Dump).unwrap();
        return;
    }
    if out == "bench" {
        // Alternate the two runs and keep each one's best time: robust to a
        // machine shared with other builds.
        let (mut best_parse, mut best_full, mut n, mut nf) = (f64::MAX, f64::MAX, 0, 0);
        for _ in 0..5 {
            let t = Instant::now();
            let mut tr = Trace::open(path).unwrap();
            tr.threads = threads;
            tr.probe().unwrap();
            let mut c = Count(0);
            tr.run(&mut c).unwrap();
            best_parse = best_parse.min(t.elapsed().as_secs_f64());
            n = c.0;
            let t = Instant::now();
            let mut tr = Trace::open(path).unwrap();
            tr.threads = threads;
            tr.probe().unwrap();
            let info = tr.info.clone();
            let mut a = Analyzer::for_trace(cfg.clone(), &info);
            let stats = tr.run(&mut a).unwrap();
            let r = a.finish(path, &info, &stats);
            best_full = best_full.min(t.elapsed().as_secs_f64());
            nf = r.findings.len();
        }
        // Time spent inside the sink itself (rdtsc around each call).
        struct Timed<S: Sink>(S, u64);
        impl<S: Sink> Sink for Timed<S> {
            fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
                let t = unsafe { core::arch::x86_64::_rdtsc() };
                let flow = self.0.event(ev);
                self.1 += unsafe { core::arch::x86_64::_rdtsc() } - t;
                flow
            }
            fn notice(&mut self, n: &Notice) {
                self.0.notice(n)
            }
        }
        let tsc_per_ns = {
            let (t0, c0) = (Instant::now(), unsafe { core::arch::x86_64::_rdtsc() });
            std::thread::sleep(std::time::Duration::from_millis(200));
            (unsafe { core::arch::x86_64::_rdtsc() } - c0) as f64 / t0.elapsed().as_nanos() as f64
        };
        let mut sink_ns = [f64::MAX; 2];
        for _ in 0..3 {
            let mut tr = Trace::open(path).unwrap();
            tr.threads = threads;
            let mut c = Timed(Count(0), 0);
            tr.run(&mut c).unwrap();
            sink_ns[0] = sink_ns[0].min(c.1 as f64 / tsc_per_ns);
            let mut tr = Trace::open(path).unwrap();
            tr.threads = threads;
            tr.probe().unwrap();
            let info = tr.info.clone();
            let mut a = Timed(Analyzer::for_trace(cfg.clone(), &info), 0);
            tr.run(&mut a).unwrap();
            sink_ns[1] = sink_ns[1].min(a.1 as f64 / tsc_per_ns);
        }
        eprintln!(
            "sink time: counting {:.1} ms ({:.1} ns/event), analyzer {:.1} ms ({:.1} ns/event): analyzer adds {:.1} ms = {:.1} % of parse-only",
            sink_ns[0] / 1e6,
            sink_ns[0] / n as f64,
            sink_ns[1] / 1e6,
            sink_ns[1] / n as f64,
            (sink_ns[1] - sink_ns[0]) / 1e6,
            (sink_ns[1] - sink_ns[0]) / 1e9 / best_parse * 100.0
        );
        eprintln!(
            "{n} events: parse-only {best_parse:.3}s, parse+replay+analyses {best_full:.3}s (+{:.1} %), findings {nf} (best of 5)",
            (best_full / best_parse - 1.0) * 100.0
        );
        return;
    }
    let mut tr = Trace::open(path).unwrap();
    tr.threads = threads;
    tr.probe().unwrap();
    let info = tr.info.clone();
    let mut a = Analyzer::for_trace(cfg, &info);
    let stats = tr.run(&mut a).unwrap();
    let r = a.finish(path, &info, &stats);
    match out {
        "json" => println!("{}", serde_json::to_string_pretty(&r).unwrap()),
        _ => print!("{}", r.render_text()),
    }
}
