//! The NMI's own register dump, read back from the trace: ground truth for
//! where the CPU was when the NMI hit.
//!
//! `nmi_cpu_backtrace()` (lib/nmi_backtrace.c, the all-CPU backtrace NMI
//! handler since 3.19; arch/x86 `arch_trigger_cpumask_backtrace`) prints
//! `NMI backtrace for cpu N`, then `show_regs(regs)` (arch/x86/kernel/dumpstack.c
//! `show_regs` → `__show_regs`): `CPU: N UID: U PID: P Comm: C …` (`UID:` since
//! 6.11), `RIP: CS:func+off/len` (or `RIP: 0033:0x7f…` for user mode),
//! `Code: … <xx> …` (the instruction bytes around RIP, `<>` marks RIP), and for
//! a kernel-mode interruption `CR2: … CR3: … CR4: …` and the `Call Trace:`.
//! With the `printk:console` tracepoint enabled, each of those lines is an
//! event inside the NMI, stamped with the interrupted task's pid.

use nmitrace_parser::Event;

/// Frames of the call trace kept per dump.
const MAX_FRAMES: usize = 48;
/// Console lines kept per dump as evidence.
const MAX_LINES: usize = 12;

/// Page-directory address bits of a CR3 value: the PCID (bits 0–11) and
/// the PTI user/kernel pair bit (bit 12, `PTI_USER_PGTABLE_BIT`) dropped.
pub const CR3_PGD_MASK: u64 = 0x000f_ffff_ffff_e000;

/// One NMI backtrace, as far as the console lines went.
#[derive(Clone, Debug, Default)]
pub struct NmiDump {
    pub cpu: u32,
    /// First and last console line of the dump.
    pub start_ns: u64,
    pub end_ns: u64,
    /// The pid the tracer stamped on the dump's lines (`current`).
    pub stamp_pid: i32,
    /// `CPU: N … PID: P Comm: C`.
    pub pid: Option<i32>,
    pub comm: Option<String>,
    /// `RIP:` as printed after the colon (`0010:switch_mm_irqs_off+0x23c/0x3d0`).
    pub rip: Option<String>,
    /// The NMI interrupted user mode (`RIP: 0033:…`, or a user CS).
    pub user_mode: bool,
    /// The interrupted function and offset, for a kernel RIP.
    pub rip_func: Option<String>,
    pub rip_off: Option<u64>,
    /// `Code:` bytes and the index of the byte at RIP.
    pub code: Option<(Vec<u8>, usize)>,
    pub cr3: Option<u64>,
    /// Reliable call-trace frames (function names; `?` guesses left out), innermost first.
    pub frames: Vec<String>,
    in_call_trace: bool,
    /// The first console lines, as the trace printed them.
    pub lines: Vec<String>,
}

impl NmiDump {
    /// The interrupted function followed by the reliable callers.
    pub fn stack(&self) -> impl Iterator<Item = &str> {
        self.rip_func
            .as_deref()
            .into_iter()
            .chain(self.frames.iter().map(|s| s.as_str()))
    }

    /// Any frame (or the RIP) is one of `names`.
    pub fn in_any(&self, names: &[&str]) -> bool {
        self.stack().any(|f| names.contains(&f))
    }

    /// The page directory CR3 held (PCID and PTI bit dropped).
    pub fn pgd(&self) -> Option<u64> {
        self.cr3.map(|c| c & CR3_PGD_MASK)
    }

    /// `RIP …, CR3 …` for messages.
    pub fn describe(&self) -> String {
        let mut s = format!("RIP {}", self.rip.as_deref().unwrap_or("?"));
        if let Some(c) = self.cr3 {
            s.push_str(&format!(", CR3 {c:#x}"));
        }
        s
    }

    /// A dump from console messages (tests).
    #[cfg(test)]
    pub(crate) fn from_lines(lines: &[impl AsRef<str>]) -> NmiDump {
        let mut d = NmiDump::default();
        for (i, l) in lines.iter().enumerate() {
            d.add(i as u64, l.as_ref(), l.as_ref().to_string());
        }
        d
    }

    /// Feed one console message of this dump.
    fn add(&mut self, ts_ns: u64, msg: &str, line: String) {
        self.end_ns = ts_ns;
        let m = msg.trim_end();
        let t = m.trim_start();
        // Evidence: the head (CPU/PID, RIP, Code), the CR3 line, and the
        // first frames of the call trace.
        let keep = self.lines.len() < 4
            || t.contains("CR3: ")
            || t.starts_with("Call Trace:")
            || (self.in_call_trace && !t.starts_with('<'));
        if keep && self.lines.len() < MAX_LINES {
            self.lines.push(line);
        }
        if self.pid.is_none() {
            if let Some(p) = t.find("PID: ") {
                let rest = &t[p + 5..];
                let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(pid) = pid.parse() {
                    self.pid = Some(pid);
                    self.comm = rest
                        .find("Comm: ")
                        .and_then(|c| rest[c + 6..].split_whitespace().next())
                        .map(String::from);
                    return;
                }
            }
        }
        if self.rip.is_none() {
            if let Some(r) = t.strip_prefix("RIP: ") {
                self.set_rip(r.trim());
                return;
            }
        }
        if self.code.is_none() {
            if let Some(c) = t.strip_prefix("Code: ") {
                self.code = parse_code(c);
                return;
            }
        }
        if self.cr3.is_none() {
            if let Some(p) = t.find("CR3: ") {
                let hex: String = t[p + 5..]
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit())
                    .collect();
                self.cr3 = u64::from_str_radix(&hex, 16).ok();
                return;
            }
        }
        if t.starts_with("Call Trace:") {
            self.in_call_trace = true;
            return;
        }
        if self.in_call_trace && self.frames.len() < MAX_FRAMES {
            // ` func+0x1f/0x70`, ` ? func+0x1f/0x70` (unreliable), ` <TASK>`, ` </NMI>`.
            if t.starts_with('<') || t.starts_with('?') || t.is_empty() {
                return;
            }
            // Old kernels: ` [<ffffffff8100a0b5>] func+0x55/0x70`.
            let t = match t.strip_prefix("[<") {
                Some(r) => match r.find("] ") {
                    Some(i) => r[i + 2..].trim_start(),
                    None => return,
                },
                None => t,
            };
            if t.starts_with('?') {
                return;
            }
            if let Some(f) = func_name(t) {
                self.frames.push(f.to_string());
            }
        }
    }

    fn set_rip(&mut self, r: &str) {
        self.rip = Some(r.to_string());
        // `0033:0x7f54b31da011` (user) / `0010:func+0x23c/0x3d0` (kernel);
        // before 4.9: `0010:[<ffffffff81012345>]  [<ffffffff81012345>] func+0x23c/0x3d0`.
        let (cs, rest) = match r.split_once(':') {
            Some((cs, rest)) if cs.len() == 4 && cs.bytes().all(|b| b.is_ascii_hexdigit()) => {
                (Some(cs), rest)
            }
            _ => (None, r),
        };
        let cs = cs.and_then(|c| u16::from_str_radix(c, 16).ok());
        // The CPL is CS's low two bits: 3 = user mode.
        self.user_mode = cs.is_some_and(|c| c & 3 == 3);
        if self.user_mode {
            return;
        }
        let sym = rest.rsplit("] ").next().unwrap_or(rest).trim();
        if sym.starts_with("0x") || sym.is_empty() {
            return;
        }
        if let Some(f) = func_name(sym) {
            self.rip_func = Some(f.to_string());
            self.rip_off = sym
                .split_once('+')
                .and_then(|(_, o)| o.split('/').next())
                .and_then(|o| u64::from_str_radix(o.trim_start_matches("0x"), 16).ok());
        }
    }
}

/// `func+0x1f/0x70 [module]` → `func` (a `.constprop.0`/`.isra.0`/`.cold` suffix dropped).
fn func_name(s: &str) -> Option<&str> {
    let f = s.split(['+', ' ']).next()?.trim();
    if f.is_empty() {
        return None;
    }
    Some(f.split('.').next().unwrap_or(f))
}

/// `Code: 0f 22 df <0f> 1f 00` → the bytes and the index of the one at RIP.
fn parse_code(s: &str) -> Option<(Vec<u8>, usize)> {
    let mut bytes = Vec::with_capacity(64);
    let mut at = None;
    for w in s.split_whitespace() {
        let (w, marked) = match w.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
            Some(inner) => (inner, true),
            None => (w.trim_matches(|c| c == '(' || c == ')'), false),
        };
        if w.len() != 2 {
            return None;
        }
        let b = u8::from_str_radix(w, 16).ok()?;
        if marked {
            at = Some(bytes.len());
        }
        bytes.push(b);
        if bytes.len() > 128 {
            return None;
        }
    }
    Some((bytes, at?))
}

/// Where a `mov %reg,%cr3` (`0f 22 d8+r`) lies relative to RIP in the dumped bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cr3Write {
    /// The bytes just before RIP end a cr3 write: it has executed.
    Behind,
    /// A cr3 write is at or after RIP: it has not executed yet.
    Ahead,
    None,
}

pub fn cr3_write(code: &(Vec<u8>, usize)) -> Cr3Write {
    let (b, at) = (&code.0, code.1);
    let is_write =
        |i: usize| i + 2 < b.len() && b[i] == 0x0f && b[i + 1] == 0x22 && (b[i + 2] & 0xf8) == 0xd8;
    // A write that ended at RIP or at most a few bytes before it (a short
    // instruction or two in between) has executed.
    if (at.saturating_sub(11)..=at.saturating_sub(3)).any(|i| i + 3 <= at && is_write(i)) {
        return Cr3Write::Behind;
    }
    if (at..b.len()).any(is_write) {
        return Cr3Write::Ahead;
    }
    Cr3Write::None
}

/// Collects dumps per CPU as their console lines stream in.
#[derive(Default)]
pub struct DumpCollector {
    open: Vec<Option<NmiDump>>,
}

impl DumpCollector {
    /// A `console` event. `nmi`: the event is (or may be) in NMI context.
    pub fn console(&mut self, ev: &Event<'_>, msg: &str, nmi: bool, line: impl FnOnce() -> String) {
        let cpu = ev.cpu as usize;
        if cpu >= nmitrace_replay::MAX_CPUS {
            return;
        }
        if let Some(n) = msg.trim().strip_prefix("NMI backtrace for cpu ") {
            // The CPU that sends the IPIs prints its own backtrace outside NMI,
            // as "NMI backtrace for cpu N" too: only a dump in NMI context counts.
            if !nmi || n.trim().parse::<u32>().ok() != Some(ev.cpu) {
                if let Some(s) = self.open.get_mut(cpu) {
                    *s = None;
                }
                return;
            }
            if cpu >= self.open.len() {
                self.open.resize_with(cpu + 1, || None);
            }
            let l = line();
            self.open[cpu] = Some(NmiDump {
                cpu: ev.cpu,
                start_ns: ev.ts_ns,
                end_ns: ev.ts_ns,
                stamp_pid: ev.pid,
                lines: vec![l],
                ..Default::default()
            });
            return;
        }
        let Some(Some(d)) = self.open.get_mut(cpu) else {
            return;
        };
        // `current` cannot change inside an NMI: a line under another pid, or
        // outside NMI context, is not part of this dump.
        if !nmi || ev.pid != d.stamp_pid {
            return;
        }
        d.add(ev.ts_ns, msg, line());
    }

    /// The dump printed inside an NMI on `cpu` that ran over `[start, end]`.
    /// `start` is the handler's end minus its `delta_ns` (sched_clock): the
    /// event clock can run a few µs apart from it (perf's timestamps on a
    /// paravirt clock were seen 8 µs early), hence the slack before `start`.
    pub fn take(&mut self, cpu: u32, start: u64, end: u64, tol: u64) -> Option<NmiDump> {
        const SLACK_NS: u64 = 20_000;
        let slot = self.open.get_mut(cpu as usize)?;
        let d = slot.as_ref()?;
        if d.start_ns + tol.max(SLACK_NS) >= start && d.start_ns <= end + tol {
            return slot.take();
        }
        if d.start_ns > end + tol {
            return None;
        }
        // An older dump that no NMI claimed.
        *slot = None;
        None
    }

    pub fn forget_cpu(&mut self, cpu: u32) {
        if let Some(s) = self.open.get_mut(cpu as usize) {
            *s = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(lines: &[&str]) -> NmiDump {
        NmiDump::from_lines(lines)
    }

    #[test]
    fn reads_a_6_18_kernel_mode_dump() {
        // pingpong-b capture-005 (Linux 6.18.44), as printk:console traced it.
        let d = dump(&[
            "CPU: 1 UID: 0 PID: 15781 Comm: pingpong Not tainted 6.18.44-fc-v1045 #1 PREEMPT(none) ",
            "RIP: 0010:switch_mm_irqs_off+0x23c/0x3d0",
            "Code: 00 00 48 c7 c0 00 00 00 80 48 2b 05 06 a7 51 01 48 01 c7 0f 1f 44 00 00 41 8d 46 01 0f b7 c0 48 09 c7 48 0f ba ef 3f 0f 22 df <0f> 1f 00 eb 05 e9 17 ff ff ff 65 8b 05 a7 13 7c 02 48 0f a3 05 cb",
            "RSP: 0018:ffffc90001247cb0 EFLAGS: 00000046",
            "CR2: 00007ff6de2313e8 CR3: 00000001dd2fd003 CR4: 0000000000370eb0",
            "Call Trace:",
            " <TASK>",
            " ? __traceiter_sched_switch+0x41/0x70",
            " __schedule+0x397/0xf60",
            " schedule+0x23/0xa0",
            " </TASK>",
        ]);
        assert_eq!((d.pid, d.comm.as_deref()), (Some(15781), Some("pingpong")));
        assert_eq!(d.rip_func.as_deref(), Some("switch_mm_irqs_off"));
        assert_eq!(d.rip_off, Some(0x23c));
        assert!(!d.user_mode);
        assert_eq!(d.cr3, Some(0x1dd2fd003));
        assert_eq!(d.pgd(), Some(0x1dd2fc000));
        assert_eq!(d.frames, vec!["__schedule", "schedule"]);
        // `0f 22 df` = mov %rdi,%cr3, right before RIP.
        assert_eq!(cr3_write(d.code.as_ref().unwrap()), Cr3Write::Behind);
    }

    #[test]
    fn reads_user_mode_and_old_formats() {
        let d = dump(&[
            "CPU: 0 PID: 13298 Comm: pingpong Not tainted 4.19.0 #1",
            "RIP: 0033:0x7fc56b2cb350",
        ]);
        assert!(d.user_mode && d.rip_func.is_none() && d.pid == Some(13298));
        // 4.4-era RIP line and call-trace frames.
        let d = dump(&[
            "RIP: 0010:[<ffffffff8101e4c6>]  [<ffffffff8101e4c6>] __switch_to+0x1c6/0x5b0",
            "Call Trace:",
            " [<ffffffff817a3c9c>] __schedule+0x2bc/0x8f0",
            " [<ffffffff817a4305>] ? schedule+0x35/0x80",
        ]);
        assert_eq!(d.rip_func.as_deref(), Some("__switch_to"));
        assert_eq!(d.frames, vec!["__schedule"]);
        let d = dump(&["RIP: 0010:__rb_reserve_next.constprop.0+0x13d/0x470"]);
        assert_eq!(d.rip_func.as_deref(), Some("__rb_reserve_next"));
    }

    #[test]
    fn cr3_write_ahead_of_rip() {
        let code = parse_code("90 90 <48> 89 c7 0f 22 df 90").unwrap();
        assert_eq!(cr3_write(&code), Cr3Write::Ahead);
        let code = parse_code("90 90 <48> 89 c7 90").unwrap();
        assert_eq!(cr3_write(&code), Cr3Write::None);
        assert!(parse_code("Unable to access opcode bytes at 0x7ff576a003df.").is_none());
    }
}
