//! Decode a trace.dat and print its events, one a line, or only count them.
//!
//! `cargo run --release -p nmitrace-parser --example tracedat_dump -- FILE [--count] [--threads N]`
//!
//! Line format: `ts_ns cpu pid name field=value...` (numbers in decimal).
use nmitrace_parser::{Event, Notice, Sink, Trace, Value};
use std::io::Write;

struct Print<W: Write> {
    out: W,
    count_only: bool,
    n: u64,
    lost: u64,
    notices: u64,
}

impl<W: Write> Sink for Print<W> {
    fn event(&mut self, ev: &Event<'_>) -> nmitrace_parser::Flow {
        self.n += 1;
        if self.count_only {
            return nmitrace_parser::CONTINUE;
        }
        let _ = write!(self.out, "{} {} {} {}", ev.ts_ns, ev.cpu, ev.pid, ev.name);
        for f in ev.fields.iter() {
            let _ = match f.value {
                Value::Bytes(b) => write!(self.out, " {}=[{}B]", f.name, b.len()),
                v => write!(self.out, " {}={}", f.name, v),
            };
        }
        let _ = writeln!(self.out);
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, n: &Notice) {
        self.notices += 1;
        if let Notice::LostEvents { .. } = n {
            self.lost += 1;
        }
        eprintln!("notice: {n:?}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = &args[1];
    let count_only = args.iter().any(|a| a == "--count");
    if let Some(i) = args.iter().position(|a| a == "--convert") {
        // convert FILE (any input) to a trace.dat: --convert OUT [v6|none]
        let out = std::io::BufWriter::new(std::fs::File::create(&args[i + 1]).expect("create"));
        let mut opts = nmitrace_parser::tracedat::WriterOptions::default();
        if args.iter().any(|a| a == "v6") {
            opts.version = 6;
        }
        if args.iter().any(|a| a == "none") {
            opts.compression = nmitrace_parser::tracedat::compress::Compression::None;
        }
        let st = nmitrace_parser::tracedat::convert(std::path::Path::new(file), out, opts)
            .expect("convert");
        eprintln!("{st:?}");
        return;
    }
    if args.iter().any(|a| a == "--formats") {
        // print every embedded event format file, each preceded by `system: S`
        let bytes = std::fs::read(file).expect("read");
        let meta = nmitrace_parser::tracedat::read_meta(file, &bytes).expect("meta");
        for f in &meta.formats {
            print!("system: {}\n{}", f.system, f.text);
            if !f.text.ends_with('\n') {
                println!();
            }
        }
        return;
    }
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .map(|i| args[i + 1].parse().unwrap());
    let t0 = std::time::Instant::now();
    let mut trace = Trace::open(file).expect("open");
    trace.threads = threads;
    trace.probe().expect("probe");
    eprintln!("info: {:?}", trace.info);
    let stdout = std::io::stdout();
    let mut sink = Print {
        out: std::io::BufWriter::new(stdout.lock()),
        count_only,
        n: 0,
        lost: 0,
        notices: 0,
    };
    let stats = trace.run(&mut sink).expect("run");
    let _ = sink.out.flush();
    eprintln!(
        "{} events, {} lost-event notices, {} notices, stats {:?}, {:.3} s",
        sink.n,
        sink.lost,
        sink.notices,
        stats,
        t0.elapsed().as_secs_f64()
    );
}
