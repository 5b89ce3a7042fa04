//! Parser throughput on real traces: the bundled samples always, and the
//! shared gcc-medium trace (205k events) when `../shared` is present.
//! Whole-process timings against `wc -l` and `trace-cmd report` are in
//! `scripts/bench.sh`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nmitrace_parser::{Event, Input, Notice, Sink, Trace};
use std::io::Read;
use std::path::Path;

struct Count(u64);
impl Sink for Count {
    fn event(&mut self, e: &Event<'_>) -> nmitrace_parser::Flow {
        self.0 += e.ts_ns & 1;
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, _n: &Notice) {}
}

fn load(p: &Path) -> Option<Vec<u8>> {
    let raw = std::fs::read(p).ok()?;
    let mut out = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .ok()?;
        Some(out)
    } else {
        Some(raw)
    }
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let inputs = [
        (
            "sample tracefs text",
            root.join("sample-traces/real/shell-python.trace.txt.gz"),
        ),
        (
            "sample trace-cmd report",
            root.join("sample-traces/real/shell-python.report.txt.gz"),
        ),
        (
            "gcc-medium tracefs text",
            root.join("../shared/traces/real/gcc-medium/trace.txt.gz"),
        ),
        (
            "gcc-medium trace-cmd report",
            root.join("../shared/traces/real/gcc-medium/report.txt.gz"),
        ),
    ];
    let mut g = c.benchmark_group("text_parse");
    g.sample_size(20);
    for (name, path) in inputs {
        let Some(bytes) = load(&path) else { continue };
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let t =
                    Trace::from_input(name.into(), Input::from_bytes(name, bytes.clone()).unwrap())
                        .unwrap();
                let mut s = Count(0);
                t.run(&mut s).unwrap();
                s.0
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
