//! Hand-built events for tests (here and in the analyses crate).

use nmitrace_parser::{Context, Event, Field, Fields, Origin, Value};

/// An owned event; [`OwnedEvent::with`] lends it as an [`Event`].
#[derive(Clone, Debug)]
pub struct OwnedEvent {
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: i32,
    pub comm: String,
    pub ctx: Context,
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub raw: Option<String>,
    pub line: u64,
}

impl OwnedEvent {
    /// `payload` is `k=v k=v` (values without spaces).
    pub fn new(
        ts_ns: u64,
        cpu: u32,
        comm: &str,
        pid: i32,
        name: &str,
        payload: &str,
    ) -> OwnedEvent {
        let fields = payload
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OwnedEvent {
            ts_ns,
            cpu,
            pid,
            comm: comm.into(),
            ctx: Context::UNKNOWN,
            name: name.into(),
            fields,
            raw: Some(format!(
                "{:>16}-{:<7} [{:03}] {}.{:06}: {}: {}",
                comm,
                pid,
                cpu,
                ts_ns / 1_000_000_000,
                ts_ns % 1_000_000_000 / 1000,
                name,
                payload
            )),
            line: 0,
        }
    }

    /// Mark the event as carrying context flags (`nmi` → the `Z` flag).
    pub fn ctx(mut self, nmi: bool, hardirq: bool, irqs_off: bool) -> OwnedEvent {
        self.ctx = Context {
            known: true,
            irqs_off,
            hardirq,
            nmi,
            ..Context::UNKNOWN
        };
        self
    }

    pub fn with<R>(&self, f: impl FnOnce(&Event<'_>) -> R) -> R {
        let fields: Vec<Field<'_>> = self
            .fields
            .iter()
            .map(|(k, v)| Field {
                name: k.as_str(),
                value: Value::Str(v.as_str()),
            })
            .collect();
        let ev = Event {
            ts_ns: self.ts_ns,
            cpu: self.cpu,
            pid: self.pid,
            comm: Some(&self.comm),
            ctx: self.ctx,
            system: None,
            name: &self.name,
            kind: nmitrace_parser::EventKind::of(&self.name),
            fields: Fields::List(&fields),
            origin: if self.line > 0 {
                Origin::Line(self.line)
            } else {
                Origin::None
            },
            instance: None,
            raw: self.raw.as_deref(),
        };
        f(&ev)
    }
}

/// Shorthands for the modelled events.
pub mod ev {
    use super::OwnedEvent;

    pub fn switch(ts: u64, cpu: u32, prev: (&str, i32), next: (&str, i32)) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            prev.0,
            prev.1,
            "sched_switch",
            &format!(
                "prev_comm={} prev_pid={} prev_prio=120 prev_state=S ==> next_comm={} next_pid={} next_prio=120",
                prev.0, prev.1, next.0, next.1
            ),
        )
    }
    pub fn flush0(ts: u64, cpu: u32, who: (&str, i32)) -> OwnedEvent {
        OwnedEvent::new(ts, cpu, who.0, who.1, "tlb_flush", "pages=-1 reason=0")
    }
    pub fn nmi(
        ts: u64,
        cpu: u32,
        who: (&str, i32),
        handler: &str,
        delta_ns: u64,
        handled: i64,
    ) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "nmi_handler",
            &format!("handler={handler} delta_ns={delta_ns} handled={handled}"),
        )
    }
    pub fn kfault(ts: u64, cpu: u32, who: (&str, i32), addr: u64) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "page_fault_kernel",
            &format!("address=0x{addr:x} ip=0xffffffff81000000 error_code=0x0"),
        )
    }
    pub fn ufault(ts: u64, cpu: u32, who: (&str, i32), addr: u64) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "page_fault_user",
            &format!("address=0x{addr:x} ip=0x400000 error_code=0x6"),
        )
    }
    pub fn other(ts: u64, cpu: u32, who: (&str, i32)) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "sched_wakeup",
            "comm=x pid=1 prio=120 target_cpu=000",
        )
    }
    pub fn exec(ts: u64, cpu: u32, who: (&str, i32)) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "sched_process_exec",
            &format!("filename=/bin/{} pid={} old_pid={}", who.0, who.1, who.1),
        )
    }
    pub fn newtask(ts: u64, cpu: u32, parent: (&str, i32), child: i32, flags: u64) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            parent.0,
            parent.1,
            "task_newtask",
            &format!(
                "pid={child} comm={} clone_flags={flags:x} oom_score_adj=0",
                parent.0
            ),
        )
    }
    pub fn fork(ts: u64, cpu: u32, parent: (&str, i32), child: i32) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            parent.0,
            parent.1,
            "sched_process_fork",
            &format!(
                "comm={} pid={} child_comm={} child_pid={child}",
                parent.0, parent.1, parent.0
            ),
        )
    }
    pub fn vmap(ts: u64, cpu: u32, who: (&str, i32), addr: u64, size: u64) -> OwnedEvent {
        OwnedEvent::new(
            ts,
            cpu,
            who.0,
            who.1,
            "alloc_vmap_area",
            &format!("va_start={addr} size={size} align=4096 vstart=18446683600570023936 vend=18446718784942112768 failed=0 addr={addr}"),
        )
    }
    pub fn console(ts: u64, cpu: u32, who: (&str, i32), msg: &str) -> OwnedEvent {
        let mut e = OwnedEvent::new(ts, cpu, who.0, who.1, "console", "");
        e.fields = vec![("msg".into(), msg.into())];
        e.raw = Some(format!(
            "{:>16}-{:<7} [{:03}] {}.{:06}: console: {}",
            who.0,
            who.1,
            cpu,
            ts / 1_000_000_000,
            ts % 1_000_000_000 / 1000,
            msg
        ));
        e
    }
}
