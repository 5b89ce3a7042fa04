//! Console lines as ground truth: `Uhhuh. NMI received for unknown reason
//! 3d on CPU 90.` (arch/x86/kernel/nmi.c `unknown_nmi_error`), `INFO: NMI
//! handler (X) took too long to run: N msecs` (`nmi_check_duration`, 5.6+;
//! `nmi_max_handler` from irq_work 3.15–5.5), the `WARN_ON_ONCE(in_nmi())`
//! of x86 `vmalloc_fault()` (2.6.37 ebc8827f75954 until 5.2 a65c88e16f32 on
//! x86_64, 4.19 6863ea0cda87 on x86_32), and page-fault oopses
//! (`BUG: unable to handle …`, arch/x86/mm/fault.c `show_fault_oops`).

/// A console line the kernel printed about NMIs.
#[derive(Clone, Debug)]
pub enum ConsoleNmi {
    Unknown { ts_ns: u64, cpu: u32, reason: Option<u8>, line: String },
    TooLong { ts_ns: u64, cpu: u32, handler: String, msecs: f64, line: String },
    /// `WARNING: CPU: N PID: P at arch/x86/mm/fault.c:L vmalloc_fault+…`:
    /// the kernel caught itself syncing a vmalloc entry inside an NMI.
    VmallocWarn { ts_ns: u64, cpu: u32, line: String },
    /// `BUG: unable to handle kernel paging request at …` /
    /// `BUG: unable to handle page fault for address: …` (4.20+).
    Oops { ts_ns: u64, cpu: u32, nmi: bool, address: Option<u64>, line: String },
}

const MAX_LINES: usize = 10_000;

#[derive(Default)]
pub struct ConsoleLog {
    pub lines: Vec<ConsoleNmi>,
}

impl ConsoleLog {
    /// `nmi`: the flags say the line was printed in NMI context.
    pub fn add(&mut self, ts_ns: u64, cpu: u32, nmi: bool, msg: &str, line: String) {
        if self.lines.len() >= MAX_LINES {
            return;
        }
        if msg.contains("WARNING:") && msg.contains("vmalloc_fault") {
            let on_cpu = msg
                .find("CPU: ")
                .and_then(|i| msg[i + 5..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
            self.lines.push(ConsoleNmi::VmallocWarn { ts_ns, cpu: on_cpu.unwrap_or(cpu), line });
            return;
        }
        if let Some(p) = msg.find("BUG: unable to handle") {
            let rest = &msg[p..];
            let address = rest
                .rsplit([' ', ':'])
                .next()
                .map(|a| a.trim().trim_start_matches("0x"))
                .and_then(|a| u64::from_str_radix(a, 16).ok());
            self.lines.push(ConsoleNmi::Oops { ts_ns, cpu, nmi, address, line });
            return;
        }
        if let Some(p) = msg.find("NMI received for unknown reason") {
            let rest = &msg[p + "NMI received for unknown reason".len()..];
            let mut words = rest.split_whitespace();
            let reason = words.next().and_then(|w| u8::from_str_radix(w, 16).ok());
            let on_cpu = rest
                .find("on CPU")
                .and_then(|i| rest[i + 6..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok());
            self.lines.push(ConsoleNmi::Unknown { ts_ns, cpu: on_cpu.unwrap_or(cpu), reason, line });
        } else if let Some(p) = msg.find("NMI handler (") {
            let rest = &msg[p + "NMI handler (".len()..];
            let Some(close) = rest.find(')') else { return };
            let handler = rest[..close].to_string();
            let Some(t) = rest.find("took too long to run:") else { return };
            let num: String = rest[t + 21..].trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let msecs = num.parse().unwrap_or(0.0);
            self.lines.push(ConsoleNmi::TooLong { ts_ns, cpu, handler, msecs, line });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_lines() {
        let mut c = ConsoleLog::default();
        c.add(1, 0, true, "[  123.456] Uhhuh. NMI received for unknown reason 3d on CPU 90.", "l".into());
        c.add(2, 0, true, "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 2.345 msecs", "l".into());
        c.add(3, 1, true, "WARNING: CPU: 3 PID: 1 at arch/x86/mm/fault.c:442 vmalloc_fault+0x1c7/0x1e0", "l".into());
        c.add(4, 1, true, "BUG: unable to handle kernel paging request at ffffc90000123000", "l".into());
        c.add(5, 1, false, "BUG: unable to handle page fault for address: ffffc90000456000", "l".into());
        match &c.lines[0] {
            ConsoleNmi::Unknown { cpu, reason, .. } => assert_eq!((*cpu, *reason), (90, Some(0x3d))),
            x => panic!("{x:?}"),
        }
        match &c.lines[1] {
            ConsoleNmi::TooLong { handler, msecs, .. } => assert_eq!((handler.as_str(), *msecs), ("perf_event_nmi_handler", 2.345)),
            x => panic!("{x:?}"),
        }
        assert!(matches!(c.lines[2], ConsoleNmi::VmallocWarn { cpu: 3, .. }));
        assert!(matches!(c.lines[3], ConsoleNmi::Oops { nmi: true, address: Some(0xffffc90000123000), .. }));
        assert!(matches!(c.lines[4], ConsoleNmi::Oops { nmi: false, address: Some(0xffffc90000456000), .. }));
    }
}
