//! `Sink::line_format`: the lines a trace.dat reader formats on its decoding
//! threads are, in order, the lines the sink would have formatted itself
//! from each event (gcc-medium, two CPUs, 205,519 events), with one decoding
//! thread per CPU and with none; and a stop ends the reading at once.

use nmitrace_parser::json::json_line;
use nmitrace_parser::{Event, Flow, LineFormat, Notice, Sink, Trace, CONTINUE, STOP};
use std::path::PathBuf;

#[derive(Default)]
struct Lines {
    by_reader: bool,
    out: String,
    events: u64,
    stop_after: Option<u64>,
}

impl Sink for Lines {
    fn event(&mut self, ev: &Event<'_>) -> Flow {
        assert!(!self.by_reader, "an event given to a sink that takes lines");
        json_line(&mut self.out, ev);
        self.events += 1;
        CONTINUE
    }
    fn notice(&mut self, _: &Notice) {}
    fn line_format(&self) -> Option<LineFormat> {
        self.by_reader.then_some(LineFormat::Jsonl)
    }
    fn line(&mut self, line: &str) -> Flow {
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        self.out.push_str(line);
        self.events += 1;
        if self.stop_after == Some(self.events) {
            return STOP;
        }
        CONTINUE
    }
}

fn read(path: &PathBuf, by_reader: bool, threads: usize, stop_after: Option<u64>) -> Lines {
    let mut s = Lines {
        by_reader,
        stop_after,
        ..Default::default()
    };
    let mut t = Trace::open(path).unwrap();
    t.threads = Some(threads);
    let stats = t.run(&mut s).unwrap();
    assert_eq!(stats.stopped, stop_after.is_some());
    s
}

#[test]
#[cfg_attr(not(shared_traces), ignore = "../shared/traces is absent")]
fn lines_formatted_by_the_reader_are_the_sinks_own() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/real/gcc-medium/trace.dat");
    let own = read(&path, false, 2, None);
    assert_eq!(own.events, 205_519);
    for threads in [2, 1] {
        let by_reader = read(&path, true, threads, None);
        assert_eq!(by_reader.events, own.events, "threads {threads}");
        assert!(
            by_reader.out == own.out,
            "threads {threads}: the lines differ"
        );
    }
    let first = read(&path, true, 2, Some(3));
    assert_eq!(first.events, 3);
    assert!(own.out.starts_with(&first.out));
}
