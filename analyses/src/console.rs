//! Console lines as ground truth: `Uhhuh. NMI received for unknown reason
//! 3d on CPU 90.` and `INFO: NMI handler (X) took too long to run: N msecs`.

/// A console line the kernel printed about NMIs.
#[derive(Clone, Debug)]
pub enum ConsoleNmi {
    Unknown { ts_ns: u64, cpu: u32, reason: Option<u8>, line: String },
    TooLong { ts_ns: u64, cpu: u32, handler: String, msecs: f64, line: String },
}

const MAX_LINES: usize = 10_000;

#[derive(Default)]
pub struct ConsoleLog {
    pub lines: Vec<ConsoleNmi>,
}

impl ConsoleLog {
    pub fn add(&mut self, ts_ns: u64, cpu: u32, msg: &str, line: String) {
        if self.lines.len() >= MAX_LINES {
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
        c.add(1, 0, "[  123.456] Uhhuh. NMI received for unknown reason 3d on CPU 90.", "l".into());
        c.add(2, 0, "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 2.345 msecs", "l".into());
        match &c.lines[0] {
            ConsoleNmi::Unknown { cpu, reason, .. } => assert_eq!((*cpu, *reason), (90, Some(0x3d))),
            x => panic!("{x:?}"),
        }
        match &c.lines[1] {
            ConsoleNmi::TooLong { handler, msecs, .. } => assert_eq!((handler.as_str(), *msecs), ("perf_event_nmi_handler", 2.345)),
            x => panic!("{x:?}"),
        }
    }
}
