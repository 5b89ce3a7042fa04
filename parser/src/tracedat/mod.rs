//! trace-cmd `trace.dat` reader (v6 and v7) and writer.
//!
//! * [`header`]: file header, v6 layout, v7 sections and option chains,
//!   buffers, saved cmdlines.
//! * [`format`]: event format files and field decoding.
//! * [`page`]: ring-buffer page decoding (kbuffer semantics).
//! * [`compress`]: zstd / zlib sections and chunked per-CPU data.
//! * [`merge`]: per-CPU streams decoded in parallel, merged by timestamp.
//! * [`writer`]: writing trace.dat files.

pub mod compress;
pub mod format;
pub mod header;
pub mod merge;
pub mod page;
pub mod symbols;
pub mod writer;

use crate::error::Result;
use crate::event::{Event, Fields, Origin};
use crate::input::Input;
use crate::{Notice, ParseStats, Sink, TraceInfo};
use format::RecordFields;
use header::Meta;
use page::RecKind;

pub use writer::{convert, TraceDatWriter, WriteStats, WriterOptions};

/// The event formats nmitrace carries (Linux 6.18 x86_64 format files): for
/// the writer, and for reading the print formats of text traces.
pub const BUILTIN_FORMATS: &str = include_str!("builtin_formats.txt");

/// Fill `info` from the parsed metadata (`buf`: the bytes it was read from).
fn fill_info(meta: &Meta, info: &mut TraceInfo, name: &str, buf: &[u8]) {
    if info.kernel.is_none() {
        info.kernel = meta.kernel();
    }
    if info.arch.is_none() {
        if let Some(a) = meta.arch() {
            info.arch = Some(a);
            info.arch_from = Some("trace.dat UNAME");
        } else if let Some((a, from)) = meta.arch_guess(name, buf) {
            info.arch = Some(a.to_string());
            info.arch_from = Some(from);
        }
    }
    if meta.cpus > 0 {
        info.cpus = Some(meta.cpus);
    }
    if let Some(c) = &meta.clock {
        info.clock = Some(c.clone());
    }
}

/// Read header information (UNAME → kernel/arch, cpus, clock) without decoding events.
///
/// The metadata usually lies beyond the bytes kept for detection (kallsyms
/// come first in v6); for a plain file the file is mapped again, for other
/// inputs only what the detection head holds is used. Returns the metadata
/// when it was read from the whole file, so that [`run`] need not read it again.
pub fn probe(name: &str, input: &mut Input, info: &mut TraceInfo) -> Result<Option<Meta>> {
    match header::parse(name, input.head()) {
        Ok(meta) => {
            fill_info(&meta, info, name, input.head());
            return Ok(None);
        }
        Err(_) if input.compression().is_none() && name != "-" => {}
        Err(_) => return Ok(None),
    }
    let path = std::path::Path::new(name);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = Input::open(path)?.into_bytes()?;
    let meta = header::parse(name, &bytes)?;
    fill_info(&meta, info, name, &bytes);
    Ok(Some(meta))
}

/// Parse the metadata of a whole trace.dat held in memory (formats,
/// cmdlines, buffers…). Used by tools and tests.
pub fn read_meta(name: &str, bytes: &[u8]) -> Result<Meta> {
    header::parse(name, bytes)
}

/// Decode every event and hand it to `sink`, merged by timestamp across CPUs.
/// `meta` is what [`probe`] read from the same file, if anything; it is used
/// when it describes a file of this length.
pub fn run(
    name: &str,
    input: Input,
    meta: Option<Meta>,
    sink: &mut dyn Sink,
    threads: Option<usize>,
) -> Result<ParseStats> {
    let bytes = input.into_bytes()?;
    let meta = match meta {
        Some(m) if m.file_len == bytes.len() as u64 => m,
        _ => header::parse(name, &bytes)?,
    };
    // A mapped file gives back the pages it has read: flat memory.
    let reclaim = matches!(bytes, crate::input::Bytes::Mmap(_));
    run_meta(name, &bytes, &meta, sink, threads, reclaim)
}

/// [`run`] over bytes already in memory.
pub fn run_bytes(
    name: &str,
    bytes: &[u8],
    sink: &mut dyn Sink,
    threads: Option<usize>,
) -> Result<ParseStats> {
    let meta = header::parse(name, bytes)?;
    run_meta(name, bytes, &meta, sink, threads, false)
}

fn run_meta(
    name: &str,
    bytes: &[u8],
    meta: &Meta,
    sink: &mut dyn Sink,
    threads: Option<usize>,
    reclaim: bool,
) -> Result<ParseStats> {
    let mut stats = ParseStats {
        bytes: bytes.len() as u64,
        ..Default::default()
    };
    for (off, m) in &meta.warnings {
        stats.warnings += 1;
        sink.notice(&Notice::Warning {
            origin: Origin::Offset(*off),
            message: m.clone(),
        });
    }
    // common_type → format, as a dense table
    let max_id = meta
        .formats
        .iter()
        .map(|f| f.id)
        .filter(|&i| i < 1 << 16)
        .max()
        .unwrap_or(0) as usize;
    let mut table: Vec<Option<&std::sync::Arc<format::EventFormat>>> = vec![None; max_id + 1];
    for f in meta.formats.iter().rev() {
        if (f.id as usize) <= max_id {
            table[f.id as usize] = Some(f);
        }
    }
    // pid → index of its comm in the saved cmdlines (the worker finds the index)
    let comm_idx: std::collections::HashMap<i32, u32, header::PidHash> = meta
        .cmdlines
        .keys()
        .enumerate()
        .map(|(i, &p)| (p, i as u32))
        .collect();
    let ev_of = EventOf {
        comm_list: meta.cmdlines.values().map(String::as_str).collect(),
        instances: meta
            .buffers
            .iter()
            .map(|b| {
                if b.name.is_empty() {
                    None
                } else {
                    Some(b.name.as_str())
                }
            })
            .collect(),
        ts_offset: meta.ts_offset,
        tsc: meta.tsc2nsec,
        endian: meta.endian,
    };
    // A sink that only prints lines has them formatted on the decoding threads.
    let line_format = sink.line_format();
    // Which events may be counted instead of delivered (the sink's
    // `countable`): only with one buffer, where each CPU's stream holds all
    // of that CPU's events in order.
    let buffers = meta.buffers.iter().filter(|b| !b.latency).count();
    let countable: Vec<bool> = table
        .iter()
        .map(|f| buffers == 1 && f.is_some_and(|f| sink.countable(f.kind)))
        .collect();
    let any_countable = countable.iter().any(|&c| c);
    let mut streams = Vec::new();
    for (bi, b) in meta.buffers.iter().enumerate() {
        if b.latency {
            continue;
        }
        for d in &b.cpus {
            let mut s = merge::CpuStream::new(
                bytes,
                d,
                bi,
                meta.endian,
                meta.header_page,
                b.page_size,
                b.compressed,
                meta.compression,
                &table,
                &comm_idx,
            );
            s.reclaim = reclaim;
            if any_countable {
                s.countable = Some(&countable);
            }
            s.lines = line_format.map(|f| (f, &ev_of));
            if s.lines.is_some() {
                s.batch_bytes = s.batch_bytes.min(128 << 10);
            }
            streams.push(s);
        }
    }
    let parallel = !matches!(threads, Some(t) if t <= 1);
    let mut unknown_ids: Vec<u32> = Vec::new();
    let mut events = 0u64;
    let warnings = std::cell::Cell::new(0u64);
    // kallsyms are read when the first nmi_handler event needs its handler named
    let mut symbols_offered = false;
    {
        let sink_cell = std::cell::RefCell::new(&mut *sink);
        let mut on_item = |it: merge::Item<'_>| {
            let rec = it.rec;
            let ts = ev_of.to_ns(rec.ts);
            if rec.kind == RecKind::Lost {
                sink_cell.borrow_mut().notice(&Notice::LostEvents {
                    cpu: it.cpu,
                    count: match rec.lost() {
                        u64::MAX => None,
                        n => Some(n),
                    },
                    ts_ns: Some(ts),
                    origin: Origin::Offset(rec.off),
                });
                return crate::CONTINUE;
            }
            if rec.len < 2 {
                return crate::CONTINUE;
            }
            let id = rec.id;
            let fmt = match table.get(id as usize).copied().flatten() {
                Some(f) if rec.known => f,
                _ => {
                    if unknown_ids.len() < 64 && !unknown_ids.contains(&id) {
                        unknown_ids.push(id);
                        warnings.set(warnings.get() + 1);
                        let message = match table.get(id as usize).copied().flatten() {
                            Some(f) => format!(
                                "event format {}:{} (type {id}) not understood ({}); its events are skipped",
                                f.system,
                                f.name,
                                f.layout().err().unwrap_or("unknown reason")
                            ),
                            None => format!("event type {id} has no format in the file; such events are skipped"),
                        };
                        sink_cell.borrow_mut().notice(&Notice::Warning {
                            origin: Origin::Offset(rec.off),
                            message,
                        });
                    }
                    return crate::CONTINUE;
                }
            };
            if !symbols_offered && fmt.kind == crate::EventKind::NmiHandler {
                symbols_offered = true;
                if let Some(text) = header::read_kallsyms(name, bytes, meta) {
                    let syms = symbols::Symbols::parse(text);
                    if !syms.is_empty() {
                        sink_cell.borrow_mut().symbols(&std::sync::Arc::new(syms));
                    }
                }
            }
            events += 1;
            if line_format.is_some() {
                return sink_cell.borrow_mut().line(it.line);
            }
            let ev = ev_of.event(it.cpu, it.buffer, &rec, fmt, it.bytes);
            sink_cell.borrow_mut().event(&ev)
        };
        let mut on_warn = |off: u64, m: String| {
            warnings.set(warnings.get() + 1);
            sink_cell.borrow_mut().notice(&Notice::Warning {
                origin: Origin::Offset(off),
                message: m,
            });
        };
        let end = merge::merge(streams, parallel, &mut on_item, &mut on_warn);
        stats.stopped = end.stopped;
        if let Some((off, msg)) = end.panic {
            return Err(crate::Error::internal(
                name,
                Origin::Offset(off),
                "decoding the records from here",
                &msg,
            ));
        }
        for (&(cpu, id), &(n, lo, hi)) in &end.counted {
            let Some(fmt) = table.get(id as usize).copied().flatten() else {
                continue;
            };
            events += n;
            let c = crate::Counted {
                cpu,
                system: Some(fmt.system.as_str()),
                name: fmt.name.as_str(),
                kind: fmt.kind,
                count: n,
                first_ts_ns: ev_of.to_ns(lo),
                last_ts_ns: ev_of.to_ns(hi),
                context_known: true,
            };
            // the reading is over: a stop changes nothing
            let _ = sink_cell.borrow_mut().counted(&c);
        }
    }
    stats.events = events;
    stats.warnings += warnings.get();
    Ok(stats)
}

/// What turns a located record into an [`Event`]: used by the merging
/// thread, and by the decoding threads when they format lines
/// ([`crate::Sink::line_format`]).
pub struct EventOf<'m> {
    /// The saved cmdlines, by the index [`Rec::comm`](page::Rec::comm) holds.
    comm_list: Vec<&'m str>,
    /// Buffer (instance) names by buffer index; `None` for the top one.
    instances: Vec<Option<&'m str>>,
    ts_offset: i64,
    tsc: Option<(u32, u32, u64)>,
    endian: header::Endian,
}

impl<'m> EventOf<'m> {
    /// A record's raw timestamp in ns (the TSC2NSEC option, then the offset).
    #[inline]
    pub fn to_ns(&self, raw: u64) -> u64 {
        let mut ts = raw;
        if let Some((mult, shift, off)) = self.tsc {
            ts = ((((ts as u128) * mult as u128) >> shift.min(127)) as u64).wrapping_add(off);
        }
        ts.wrapping_add(self.ts_offset as u64)
    }

    /// The event of a record whose format is `fmt`; `bytes` is its batch's buffer.
    #[inline]
    pub fn event<'b>(
        &'b self,
        cpu: u32,
        buffer: usize,
        rec: &page::Rec,
        fmt: &'b std::sync::Arc<format::EventFormat>,
        bytes: &'b [u8],
    ) -> Event<'b> {
        let pid = rec.pid;
        let data = bytes
            .get(rec.start as usize..(rec.start as usize).saturating_add(rec.len as usize))
            .unwrap_or(&[]);
        let comm = match self.comm_list.get(rec.comm as usize) {
            Some(c) => Some(*c),
            None if pid == 0 => Some("<idle>"),
            None => None,
        };
        Event {
            ts_ns: self.to_ns(rec.ts),
            cpu,
            pid,
            comm,
            ctx: rec.context(),
            system: Some(fmt.system.as_str()),
            name: fmt.name.as_str(),
            kind: fmt.kind,
            fields: Fields::Record(RecordFields {
                format: fmt,
                data,
                endian: self.endian,
            }),
            origin: Origin::Offset(rec.off),
            instance: self.instances.get(buffer).copied().flatten(),
            raw: None,
        }
    }
}
