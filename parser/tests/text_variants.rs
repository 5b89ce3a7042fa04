//! Every text variant of SPEC §2.1–2.3, through the public API.

use nmitrace_parser::{Event, Format, Input, Notice, Origin, Sink, Trace};

#[derive(Debug, Clone, PartialEq)]
struct Ev {
    ts: u64,
    cpu: u32,
    pid: i32,
    comm: Option<String>,
    ctx: &'static str,
    irqs_off: bool,
    depth: Option<u8>,
    system: Option<String>,
    name: String,
    fields: Vec<(String, String)>,
    instance: Option<String>,
    line: Origin,
}

#[derive(Default)]
struct Collect {
    evs: Vec<Ev>,
    notices: Vec<Notice>,
}

impl Sink for Collect {
    fn event(&mut self, e: &Event<'_>) -> nmitrace_parser::Flow {
        self.evs.push(Ev {
            ts: e.ts_ns,
            cpu: e.cpu,
            pid: e.pid,
            comm: e.comm.map(String::from),
            ctx: e.ctx.label(),
            irqs_off: e.ctx.irqs_off,
            depth: e.ctx.preempt_depth,
            system: e.system.map(String::from),
            name: e.name.to_string(),
            fields: e
                .fields
                .iter()
                .map(|f| (f.name.to_string(), f.value.to_string()))
                .collect(),
            instance: e.instance.map(String::from),
            line: e.origin,
        });
        nmitrace_parser::CONTINUE
    }
    fn notice(&mut self, n: &Notice) {
        self.notices.push(n.clone());
    }
}

/// Parse `text` as a stream (a pipe, a decompressor) and, written to a
/// file, in place (a plain file is mapped and read without copies): both
/// ways give the same events and notices.
fn parse(text: &str) -> (Format, Collect) {
    let (f, streamed) = parse_bytes(text.as_bytes());
    let (g, mapped) = parse_file(text.as_bytes());
    assert_eq!(f, g);
    assert_eq!(
        streamed.evs, mapped.evs,
        "streamed and mapped events differ"
    );
    assert_eq!(streamed.notices, mapped.notices);
    (f, streamed)
}

fn parse_bytes(bytes: &[u8]) -> (Format, Collect) {
    let t = Trace::from_input(
        "test".into(),
        Input::from_bytes("test", bytes.to_vec()).unwrap(),
    )
    .unwrap();
    let f = t.format();
    let mut c = Collect::default();
    t.run(&mut c).unwrap();
    (f, c)
}

fn parse_file(bytes: &[u8]) -> (Format, Collect) {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    let t = Trace::open(file.path()).unwrap();
    let f = t.format();
    let mut c = Collect::default();
    t.run(&mut c).unwrap();
    (f, c)
}

fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn tracefs_five_char_flags_with_nmi_context() {
    let (fmt, c) = parse(
        "# tracer: nop\n\
         #\n\
         \x20           perf-4242    [003] d.Z1.   608.685794: nmi_handler: perf_event_nmi_handler() delta_ns: 4521 handled: 1\n\
         \x20           perf-4242    [003] d.z2.   608.685795: page_fault_kernel: address=0xffffe8ffffc01000 ip=__put_user_4 error_code=0x2\n\
         \x20         <idle>-0       [000] dNh1.   608.685939: reschedule_entry: vector=253\n\
         \x20          <...>-123     [001] .Ns3.   608.685940: softirq_entry: vec=1 [action=TIMER]\n",
    );
    assert_eq!(fmt, Format::TracefsText);
    assert_eq!(c.evs.len(), 4);
    let e = &c.evs[0];
    assert_eq!(
        (e.ts, e.cpu, e.pid, e.comm.as_deref()),
        (608_685_794_000, 3, 4242, Some("perf"))
    );
    assert_eq!((e.ctx, e.irqs_off, e.depth), ("nmi", true, Some(1)));
    assert_eq!(
        e.fields,
        f(&[
            ("handler", "perf_event_nmi_handler"),
            ("delta_ns", "4521"),
            ("handled", "1")
        ])
    );
    assert_eq!(c.evs[1].ctx, "nmi");
    assert_eq!(c.evs[1].fields[1], ("ip".into(), "__put_user_4".into()));
    assert_eq!(
        (c.evs[2].ctx, c.evs[2].comm.as_deref()),
        ("hardirq", Some("<idle>"))
    );
    // `<...>`: comm unknown
    assert_eq!(
        (c.evs[3].ctx, c.evs[3].comm.as_deref(), c.evs[3].depth),
        ("softirq", None, Some(3))
    );
    assert_eq!(c.evs[0].line, Origin::Line(3));
}

#[test]
fn tracefs_four_char_flags_and_no_flags_and_tgid() {
    let (fmt, c) = parse(
        "# tracer: nop\n\
         \x20    Web Content-2711  [003] d.h. 26186.336632: sched_waking: comm=Timer pid=2745 prio=120 target_cpu=001\n\
         \x20  kworker/0:1-41    [000] dnH2 26186.336633: irq_handler_entry: irq=28 name=radeon\n\
         \x20           bash-1234  (  1234) [000] d..2. 100.000001: sched_switch: prev_comm=bash prev_pid=1234 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120\n\
         \x20           bash-1234  (-------) [001]   100.000002: tlb_flush: pages:-1 reason:flush on task switch (0)\n",
    );
    assert_eq!(fmt, Format::TracefsText);
    assert_eq!(c.evs[0].comm.as_deref(), Some("Web Content"));
    assert_eq!(c.evs[0].ctx, "hardirq");
    assert_eq!(
        (c.evs[1].comm.as_deref(), c.evs[1].pid, c.evs[1].ctx),
        (Some("kworker/0:1"), 41, "hardirq")
    );
    assert_eq!((c.evs[2].pid, c.evs[2].cpu), (1234, 0));
    assert_eq!(
        c.evs[2]
            .fields
            .iter()
            .find(|x| x.0 == "next_pid")
            .unwrap()
            .1,
        "0"
    );
    // no flags column: context unknown
    assert_eq!((c.evs[3].ctx, c.evs[3].cpu), ("unknown", 1));
    assert_eq!(c.evs[3].fields, f(&[("pages", "-1"), ("reason", "0")]));
}

#[test]
fn timestamps_microseconds_nanoseconds_and_counters() {
    let (_, c) = parse(
        "# tracer: nop\n\
         \x20 a-1 [000] ..... 1.000001: x: a=1\n\
         \x20 a-1 [000] ..... 1.000000002: x: a=1\n\
         \x20 a-1 [000] ..... 123456789: x: a=1\n",
    );
    let ts: Vec<u64> = c.evs.iter().map(|e| e.ts).collect();
    assert_eq!(ts, vec![1_000_001_000, 1_000_000_002, 123_456_789]);
}

#[test]
fn markers_buffer_started_and_lost_events() {
    let (_, c) = parse(
        "# tracer: nop\n\
         ##### CPU 2 buffer started ####\n\
         \x20 a-1 [002] ..... 1.000001: x: a=1\n\
         CPU:2 [LOST 1234 EVENTS]\n\
         \x20 a-1 [002] ..... 1.000009: x: a=1\n",
    );
    assert_eq!(c.evs.len(), 2);
    assert_eq!(
        c.notices[0],
        Notice::BufferStarted {
            cpu: 2,
            origin: Origin::Line(2)
        }
    );
    assert_eq!(
        c.notices[1],
        Notice::LostEvents {
            cpu: 2,
            count: Some(1234),
            ts_ns: None,
            origin: Origin::Line(4)
        }
    );
}

#[test]
fn trace_cmd_report_plugins_and_dropped_events() {
    let (fmt, c) = parse(
        "cpus=2\n\
         CPU 1 is empty\n\
         \x20record-real-tra-12894 [001]   608.685841: sched_switch:         record-real-tra:12894 [120] D ==> record-real-tra:12897 [120]\n\
         \x20             sh-12897 [001]   608.685905: sched_wakeup:         migration/1:21 [0] CPU:001\n\
         \x20         <idle>-0     [000]   608.685944: tlb_flush:            pages=0 reason=flush on task switch (0)\n\
         CPU:0 [1234 EVENTS DROPPED]\n\
         CPU:1 [EVENTS DROPPED]\n\
         \x20             sh-12897 [001]   608.685864: percpu_alloc_percpu:  call_site=mm_init+0x2bf reserved=0 is_atomic=0 size=16 align=8 base_addr=0xffffe8ffffc00000 off=28384 ptr=0x60795baffee0 bytes_alloc=64 gfp_flags=GFP_KERNEL\n",
    );
    assert_eq!(fmt, Format::TraceCmdReport);
    assert_eq!(c.evs.len(), 4);
    assert_eq!(
        c.evs[0].fields,
        f(&[
            ("prev_comm", "record-real-tra"),
            ("prev_pid", "12894"),
            ("prev_prio", "120"),
            ("prev_state", "D"),
            ("next_comm", "record-real-tra"),
            ("next_pid", "12897"),
            ("next_prio", "120")
        ])
    );
    assert_eq!(
        c.evs[1].fields,
        f(&[
            ("comm", "migration/1"),
            ("pid", "21"),
            ("prio", "0"),
            ("target_cpu", "001")
        ])
    );
    assert_eq!(c.evs[2].fields, f(&[("pages", "0"), ("reason", "0")]));
    assert_eq!(
        c.evs[3].fields[5],
        ("base_addr".into(), "0xffffe8ffffc00000".into())
    );
    assert!(matches!(
        c.notices[0],
        Notice::LostEvents {
            cpu: 0,
            count: Some(1234),
            ..
        }
    ));
    assert!(matches!(
        c.notices[1],
        Notice::LostEvents {
            cpu: 1,
            count: None,
            ..
        }
    ));
}

#[test]
fn trace_cmd_report_latency_ns_raw_and_instances() {
    let (fmt, c) = parse(
        "cpus=4\n\
         \x20           bash-1102   0d..1.  123.456789123: sched_switch: prev_comm=bash prev_pid=1102 prev_prio=120 prev_state=1 next_comm=swapper/0 next_pid=0 next_prio=120\n\
         \x20           bash-1102   3dNh2  123.456789124: tlb_flush: reason=0 pages=-1\n\
         \x20 foo:           bash-1102  [002]   123.456789125: page_fault_user: address=0x1000 ip=0x2000 error_code=0x6\n",
    );
    assert_eq!(fmt, Format::TraceCmdReport);
    assert_eq!(c.evs.len(), 3);
    assert_eq!(
        (c.evs[0].cpu, c.evs[0].ctx, c.evs[0].ts),
        (0, "task", 123_456_789_123)
    );
    assert_eq!((c.evs[1].cpu, c.evs[1].ctx), (3, "hardirq"));
    assert_eq!(c.evs[1].fields, f(&[("reason", "0"), ("pages", "-1")]));
    assert_eq!(
        (
            c.evs[2].instance.as_deref(),
            c.evs[2].comm.as_deref(),
            c.evs[2].cpu
        ),
        (Some("foo"), Some("bash"), 2)
    );
}

#[test]
fn perf_script_with_and_without_tid() {
    let (fmt, c) = parse(
        "            perf 13099 [000]   610.695073:             sched:sched_wakeup: comm=migration/0 pid=18 prio=0 target_cpu=000\n\
         \x20    Web Content  2711/2712 [001]   610.695074:     exceptions:page_fault_user: address=0x7f34e74e5408 ip=0x55f74c9e143d error_code=0x7\n\
         \x20        swapper     0 [000]   610.695276:                  tlb:tlb_flush: pages:0 reason:flush on task switch (0)\n\
         \x20        swapper     0 [000]   610.695277:                  nmi:nmi_handler: perf_event_nmi_handler() delta_ns: 1234 handled: 1\n",
    );
    assert_eq!(fmt, Format::PerfScript);
    assert_eq!(c.evs.len(), 4);
    assert_eq!(
        (
            c.evs[0].system.as_deref(),
            c.evs[0].name.as_str(),
            c.evs[0].pid
        ),
        (Some("sched"), "sched_wakeup", 13099)
    );
    // PID/TID: the tracer's pid is the thread
    assert_eq!(
        (c.evs[1].comm.as_deref(), c.evs[1].pid),
        (Some("Web Content"), 2712)
    );
    assert_eq!(c.evs[2].fields, f(&[("pages", "0"), ("reason", "0")]));
    assert_eq!(c.evs[3].fields[1], ("delta_ns".into(), "1234".into()));
    assert!(c.evs.iter().all(|e| e.ctx == "unknown"));
}

#[test]
fn syscall_and_function_tracer_lines() {
    let (_, c) = parse(
        "# tracer: nop\n\
         \x20  <...>-4083  [004] ....   395.705679: sys_ioctl(fd: ff, cmd: 5410, arg: 7ffe0babe8fc)\n\
         \x20  <...>-4083  [004] ....   395.705681: sys_ioctl -> 0x0\n\
         \x20  bash-1  [000] ....   395.705682: do_sys_open <-sys_open\n",
    );
    assert_eq!(c.evs[0].name, "sys_enter_ioctl");
    assert_eq!(
        c.evs[0].fields,
        f(&[("fd", "0xff"), ("cmd", "0x5410"), ("arg", "0x7ffe0babe8fc")])
    );
    assert_eq!(
        (c.evs[1].name.as_str(), c.evs[1].fields.clone()),
        ("sys_exit_ioctl", f(&[("ret", "0x0")]))
    );
    assert_eq!(c.evs[2].name, "function");
    assert_eq!(
        c.evs[2].fields,
        f(&[("ip", "do_sys_open"), ("parent_ip", "sys_open")])
    );
}

#[test]
fn events_span_many_chunks_in_file_order() {
    // > 1 MiB so that several chunks are parsed in parallel and reassembled.
    let mut s = String::from("# tracer: nop\n");
    let n = 40_000;
    for i in 0..n {
        s.push_str(&format!(
            "  t-{} [{:03}] ..... {}.{:06}: x: seq={}\n",
            i % 50,
            i % 3,
            1 + i / 1_000_000,
            i % 1_000_000,
            i
        ));
    }
    let (_, c) = parse(&s);
    assert_eq!(c.evs.len(), n);
    for (i, e) in c.evs.iter().enumerate() {
        assert_eq!(e.fields[0].1, i.to_string());
        assert_eq!(e.line, Origin::Line(i as u64 + 2));
    }
}

#[test]
fn crlf_and_tabs() {
    let (_, c) = parse("version = 6\r\ncpus=8\r\n\t  <idle>-0     [006]  7115.449624: cpu_idle:             state=0 cpu_id=6\r\n");
    assert_eq!(c.evs.len(), 1);
    assert_eq!(c.evs[0].fields, f(&[("state", "0"), ("cpu_id", "6")]));
}

#[test]
fn a_mapped_file_reads_as_the_stream_across_chunks_long_lines_and_a_torn_tail() {
    // Several 1 MiB chunks; a line of 1.5 MiB that crosses a chunk and has
    // no newline in a whole chunk; invalid UTF-8 in one chunk; a last line
    // without its newline.
    let mut s = String::from("# tracer: nop\n");
    for i in 0..30_000 {
        s.push_str(&format!(
            "  t-{} [{:03}] d..1. {}.{:06}: page_fault_user: address=0x{i:x} ip=0x1 error_code=0x6\n",
            i % 7,
            i % 2,
            1 + i / 1_000_000,
            i % 1_000_000
        ));
    }
    s.push_str("  long-9 [000] ..... 2.000000: console: msg=");
    s.push_str(&"x".repeat(1_500_000));
    s.push('\n');
    let mut bytes = s.into_bytes();
    bytes.extend_from_slice(b"  bad-9 [001] ..... 2.000001: console: msg=\xff\xfe\n");
    bytes.extend_from_slice(
        b"  t-1 [000] d..1. 2.000002: page_fault_user: address=0x1 ip=0x1 error_code=0x6",
    );
    let (f, streamed) = parse_bytes(&bytes);
    let (g, mapped) = parse_file(&bytes);
    assert_eq!(f, g);
    assert_eq!(streamed.evs.len(), 30_003);
    assert_eq!(streamed.evs, mapped.evs);
    assert_eq!(streamed.notices, mapped.notices);
    let warned = |c: &Collect, what: &str| {
        c.notices
            .iter()
            .any(|n| matches!(n, Notice::Warning { message, .. } if message.contains(what)))
    };
    assert!(warned(&mapped, "invalid UTF-8"));
    // the line of the invalid bytes, whatever the chunk
    assert!(mapped.notices.iter().any(|n| matches!(n,
        Notice::Warning { origin: Origin::Line(30003), message } if message.contains("invalid UTF-8"))));
    assert!(warned(&mapped, "last line has no newline"));
}

#[test]
fn the_line_limit_is_the_same_mapped_and_streamed() {
    // a line of exactly 16 MiB (its newline aside) is read, one byte more
    // is an error, whether the file is mapped or streamed; so is a torn
    // last line of that length
    let limit = 16 << 20;
    for (extra, newline, ok) in [
        (0, true, true),
        (1, true, false),
        (0, false, true),
        (1, false, false),
    ] {
        let mut bytes = b"# tracer: nop\n".to_vec();
        let head = b"  t-1 [000] ..... 1.000000: console: msg=";
        bytes.extend_from_slice(head);
        bytes.resize(bytes.len() + limit + extra - head.len(), b'x');
        if newline {
            bytes.push(b'\n');
        }
        let run = |t: Trace| {
            let mut c = Collect::default();
            let r = t.run(&mut c);
            let failed = r.is_err()
                || c.notices.iter().any(|n| {
                    matches!(n, Notice::Warning { message, .. } if message.contains("longer than"))
                });
            (failed, c.evs.len(), c.notices)
        };
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        let mapped = run(Trace::open(file.path()).unwrap());
        let streamed = run(Trace::from_input(
            "test".into(),
            Input::from_bytes("test", bytes).unwrap(),
        )
        .unwrap());
        assert_eq!(mapped.0, !ok, "mapped, {extra} over, newline {newline}");
        assert_eq!(mapped.1, ok as usize, "mapped events, {extra} over");
        assert_eq!(mapped, streamed, "{extra} over, newline {newline}");
    }
}
