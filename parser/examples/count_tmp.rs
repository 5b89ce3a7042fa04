use nmitrace_parser::{Event, Notice, Sink, Trace};
struct Count(u64);
impl Sink for Count {
    fn event(&mut self, e: &Event<'_>) -> nmitrace_parser::Flow {
        self.0 += e.ts_ns & 1;
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, _n: &Notice) {}
    fn countable(&self, k: nmitrace_parser::EventKind) -> bool {
        matches!(
            k,
            nmitrace_parser::EventKind::PageFaultUser | nmitrace_parser::EventKind::Other
        )
    }
}
fn main() {
    let p = std::env::args().nth(1).unwrap();
    let mut t = Trace::open(&p).unwrap();
    t.threads = Some(1);
    let mut c = Count(0);
    let s = t.run(&mut c).unwrap();
    println!("{} {}", c.0, s.events);
}
