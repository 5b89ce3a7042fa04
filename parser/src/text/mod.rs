//! Text trace formats: raw tracefs text, `trace-cmd report`, `perf script`.
//!
//! Streaming and parallel: a reader thread cuts the input into chunks at line
//! boundaries, the rayon pool parses chunks into span records, and the calling
//! thread hands events to the sink strictly in file order. A fixed number of
//! chunk buffers circulate, so memory is bounded by
//! `IN_FLIGHT × CHUNK_BYTES` whatever the trace length.

pub mod fields;
pub mod hex_fields;
pub mod line;

use crate::detect::Format;
use crate::error::{Error, Result};
use crate::event::{Context, Event, Fields, Origin};
use crate::input::{decompress_error, Input};
use crate::{Notice, ParseStats, Sink, TraceInfo};
use fields::{FieldSpan, Span, TextFields};
use line::{EvRec, Out, Parsed, Style};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::mpsc;
use std::sync::Arc;

/// Bytes per chunk handed to one parse task.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks allocated at once (reading, parsing or waiting to be consumed).
pub const IN_FLIGHT: usize = 8;
/// Pages of a mapped text file are given back this many bytes at a time,
/// behind the chunk delivered.
const RELEASE_STRIDE: usize = 4 << 20;
/// A single line longer than this is an error (a text trace line is < 4 KiB;
/// this bounds what one line can make us allocate).
pub const MAX_LINE: usize = 16 << 20;

/// A chunk of whole lines and what parsing found in it.
#[derive(Default)]
struct Chunk {
    seq: u64,
    /// The bytes read from a stream; only `buf[..len]` is this chunk's
    /// (a chunk of a mapped file has its bytes in [`Chunk::map`] instead).
    /// `buf` keeps its length between chunks (it grows, zeroed, only for a
    /// longer line), so that reading into it does not zero a MiB per chunk.
    buf: Vec<u8>,
    /// The chunk's length in bytes (in `buf` or in the mapping).
    len: usize,
    /// The chunk's bytes with invalid UTF-8 replaced by U+FFFD, when they
    /// had any.
    lossy_text: Option<String>,
    extra: String,
    items: Vec<Item>,
    fields: Vec<FieldSpan>,
    lines: u64,
    /// The input ended inside this chunk's last line (no newline).
    torn_tail: bool,
    /// The chunk held invalid UTF-8 (replaced with U+FFFD): the index of
    /// the line of the first invalid byte within the chunk.
    lossy: Option<u32>,
    /// A read error after this chunk: reported once its events are delivered.
    read_error: Option<String>,
    /// Parsing the chunk panicked (a bug): the message.
    panic: Option<String>,
    last: bool,
    /// Events counted instead of delivered (see [`Sink::countable`]).
    counted: Vec<TextCounted>,
    /// A chunk of a mapped file: its bytes are `map[at..at + len]`, not
    /// `buf` (see [`fill_mapped`]).
    map: Option<(Arc<memmap2::Mmap>, usize)>,
}

/// Events of one name on one CPU of a chunk, counted instead of delivered.
#[derive(Clone, Copy, Debug)]
struct TextCounted {
    cpu: u32,
    /// Context known (task or softirq) or not said (no flags column).
    known: bool,
    system: Span,
    name: Span,
    kind: crate::EventKind,
    count: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
}

/// Which lines a chunk's parse may count instead of delivering (the sink's
/// [`Sink::countable`], by [`crate::EventKind`]): none for perf script,
/// whose lines carry no context flags.
#[derive(Clone, Copy)]
struct Counting {
    kinds: [bool; 32],
    /// perf script: whatever a line looks like, its context is unknown.
    perf: bool,
}

/// A CPU's previous event line in a chunk, when it was a countable event
/// that the next may repeat: its pid, whether its context was known (task
/// or softirq) or unknown (no flags column), and, for unknown context, its
/// kind and name (see [`parse_chunk`]).
#[derive(Clone, Copy)]
struct Prev {
    pid: i32,
    known: bool,
    kind: crate::EventKind,
    name: Span,
}

/// CPUs up to this number have their previous event tracked for counting;
/// events of higher CPUs are always delivered.
const COUNT_CPUS: usize = 1024;

/// The text of a caught panic.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

#[derive(Debug)]
enum Item {
    Ev(EvRec),
    Lost {
        cpu: u32,
        count: Option<u64>,
        line_no: u32,
    },
    Started {
        cpu: u32,
        line_no: u32,
    },
    Unparsed {
        line_no: u32,
        line: Span,
        why: &'static str,
    },
    Meta,
}

/// The text of a chunk: `len` bytes of `buf` or of its mapped file.
fn chunk_text<'c>(
    buf: &'c [u8],
    map: &'c Option<(Arc<memmap2::Mmap>, usize)>,
    len: usize,
    lossy_text: &'c Option<String>,
) -> &'c str {
    let bytes = match map {
        Some((m, at)) => m.get(*at..at + len).unwrap_or(&[]),
        None => &buf[..len.min(buf.len())],
    };
    match lossy_text {
        Some(s) => s,
        // SAFETY: `fill_chunk` or `fill_mapped` checked exactly these bytes
        // with `simdutf8`'s `from_utf8` (a full UTF-8 validation) when it
        // set `len` and `map` (or stored the lossy copy instead), and
        // nothing writes them until the next fill, which resets `len`
        // first: a mapping is read-only, and its file is not rewritten
        // while it is read (the mmap contract, `Input::into_map`).
        None => unsafe { std::str::from_utf8_unchecked(bytes) },
    }
}

impl Chunk {
    fn text(&self) -> &str {
        chunk_text(&self.buf, &self.map, self.len, &self.lossy_text)
    }
}

/// Parse a chunk's lines into items. With `counting`, an event line is
/// counted instead of kept when it is a countable event in task or softirq
/// context (flags known, neither NMI nor hardirq, no instance prefix) whose
/// CPU's previous line in this chunk was such an event with the same pid:
/// the rule of the trace.dat reader, each chunk starting afresh (its first
/// event of each CPU is kept), and never the chunk's last line (the one a
/// torn tail warns about). A line whose context the text does not say (no
/// flags column: `trace-cmd report`, perf script) is counted when the CPU's
/// previous line was the same event, also without a context, of the same
/// pid (see `analyses/RULES.md`, "What an event says about its CPU").
fn parse_chunk(c: &mut Chunk, counting: Option<Counting>) {
    c.items.clear();
    c.fields.clear();
    c.extra.clear();
    c.counted.clear();
    // per CPU: its previous event line when that was a countable event
    let mut last: Vec<Option<Prev>> = Vec::new();
    let mut slot = usize::MAX;
    let text = chunk_text(&c.buf, &c.map, c.len, &c.lossy_text);
    let b = text.as_bytes();
    let mut start = 0usize;
    let mut n: u32 = 0;
    let mut out = Out {
        fields: &mut c.fields,
        extra: &mut c.extra,
        last: Default::default(),
    };
    let mut it = memchr::memchr_iter(b'\n', b);
    loop {
        let end = match it.next() {
            Some(e) => e,
            None if start < b.len() => b.len(),
            None => break,
        };
        let l = &text[start..end];
        // an event line the usual way, or whatever the line is by the
        // general one (an event line too, mostly)
        let r = match line::usual_event(l, start, n, &mut out.last) {
            Some(r) => r,
            None => {
                let item = match line::parse_unusual(l, start, n, &mut out) {
                    Parsed::Event(r) => Ok(r),
                    Parsed::Meta => Err(Item::Meta),
                    Parsed::Lost { cpu, count } => {
                        if let Some(l) = last.get_mut(cpu as usize) {
                            *l = None;
                        }
                        Err(Item::Lost {
                            cpu,
                            count,
                            line_no: n,
                        })
                    }
                    Parsed::BufferStarted { cpu } => {
                        last.clear();
                        Err(Item::Started { cpu, line_no: n })
                    }
                    Parsed::Unparsed(why) => {
                        last.clear();
                        Err(Item::Unparsed {
                            line_no: n,
                            line: Span::new(start, end),
                            why,
                        })
                    }
                };
                match item {
                    Ok(r) => r,
                    Err(item) => {
                        c.items.push(item);
                        n += 1;
                        start = end + 1;
                        continue;
                    }
                }
            }
        };
        if let Some(k) = counting {
            let cpu = r.cpu as usize;
            let known = r.ctx.known && !k.perf;
            // task or softirq context, or no context said at all
            let countable = (!known || (!r.ctx.nmi && !r.ctx.hardirq))
                && r.instance.len == 0
                && k.kinds.get(r.kind as usize).copied().unwrap_or(false)
                && cpu < COUNT_CPUS;
            if cpu >= last.len() && cpu < COUNT_CPUS {
                last.resize(cpu + 1, None);
            }
            // the same name (a kind of one name tells it), read only
            // where the kind does not
            let name = || r.name.get(text, out.extra);
            // the same pid after such an event; without a context,
            // the same event too
            let repeats = |p: &Prev| {
                p.pid == r.pid
                    && p.known == known
                    && (known
                        || (p.kind == r.kind
                            && (r.kind.name().is_some() || p.name.get(text, out.extra) == name())))
            };
            if countable && last[cpu].as_ref().is_some_and(repeats) && end + 1 < b.len() {
                // same CPU and name
                let same = |t: &TextCounted| {
                    t.cpu == r.cpu
                        && t.known == known
                        && t.kind == r.kind
                        && (r.kind.name().is_some() || t.name.get(text, out.extra) == name())
                };
                if !c.counted.get(slot).is_some_and(same) {
                    slot = match c.counted.iter().position(same) {
                        Some(i) => i,
                        None => {
                            c.counted.push(TextCounted {
                                cpu: r.cpu,
                                known,
                                system: r.system,
                                name: r.name,
                                kind: r.kind,
                                count: 0,
                                first_ts_ns: r.ts_ns,
                                last_ts_ns: r.ts_ns,
                            });
                            c.counted.len() - 1
                        }
                    };
                }
                let t = &mut c.counted[slot];
                t.count += 1;
                t.first_ts_ns = t.first_ts_ns.min(r.ts_ns);
                t.last_ts_ns = t.last_ts_ns.max(r.ts_ns);
                // A field list split while parsing belongs to no item now.
                if let Some((s, _)) = r.fields {
                    out.fields.truncate(s as usize);
                }
                n += 1;
                start = end + 1;
                continue;
            }
            if cpu < last.len() {
                last[cpu] = countable.then_some(Prev {
                    pid: r.pid,
                    known,
                    kind: r.kind,
                    name: r.name,
                });
            }
        }
        c.items.push(Item::Ev(r));
        n += 1;
        start = end + 1;
    }
    c.lines = n as u64;
}

/// Read the next chunk of whole lines from a stream into `c.buf`. `carry`
/// holds the partial line left from the previous read. Returns false at end
/// of input. A line of more than [`MAX_LINE`] bytes (its newline aside) is
/// an error, as in [`fill_mapped`].
fn fill_chunk(
    reader: &mut dyn Read,
    carry: &mut Vec<u8>,
    c: &mut Chunk,
    eof: &mut bool,
) -> std::io::Result<bool> {
    c.len = 0;
    c.lossy_text = None;
    c.lossy = None;
    c.map = None;
    // At least a chunk; for a line longer than that (carried whole), twice
    // what is carried, so that a long line costs its length, not its
    // length squared (one byte more per read, as it was).
    let want = (carry.len() * 2).clamp(CHUNK_BYTES, MAX_LINE + 1);
    if c.buf.len() < want {
        c.buf.resize(want, 0);
    }
    let buf = &mut c.buf;
    let mut n = carry.len();
    buf[..n].copy_from_slice(carry);
    carry.clear();
    let mut res = Ok(());
    while !*eof && n < want {
        match reader.read(&mut buf[n..want]) {
            Ok(0) => *eof = true,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                *eof = true;
                res = Err(e);
            }
        }
    }
    if n == 0 {
        res?;
        return Ok(false);
    }
    c.torn_tail = false;
    if !*eof {
        match memchr::memrchr(b'\n', &buf[..n]) {
            Some(nl) => {
                carry.extend_from_slice(&buf[nl + 1..n]);
                n = nl + 1;
            }
            None => {
                // No newline in a whole chunk: a very long line. Keep reading it.
                if n > MAX_LINE {
                    return Err(line_too_long());
                }
                carry.extend_from_slice(&buf[..n]);
                return fill_chunk(reader, carry, c, eof);
            }
        }
    } else if buf[n - 1] != b'\n' {
        c.torn_tail = true;
    }
    // The chunk is checked here, once: its lines are then read as `&str`.
    (c.lossy, c.lossy_text) = check_utf8(&buf[..n]);
    c.len = n;
    res?;
    Ok(true)
}

/// A line longer than [`MAX_LINE`] bytes: not text lines.
fn line_too_long() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a line longer than {MAX_LINE} bytes; expected text lines"),
    )
}

/// A chunk's bytes checked as UTF-8, once (its lines are then read as
/// `&str`): valid, or the line index of the first invalid byte and the
/// bytes with invalid sequences replaced by U+FFFD.
fn check_utf8(bytes: &[u8]) -> (Option<u32>, Option<String>) {
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        return (None, None);
    }
    let bad = match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        Err(e) => e.valid_up_to(),
    };
    let line = memchr::memchr_iter(b'\n', &bytes[..bad]).count() as u32;
    (
        Some(line),
        Some(String::from_utf8_lossy(bytes).into_owned()),
    )
}

/// [`fill_chunk`] for a mapped file: the next chunk of whole lines is
/// `map[*pos..]` up to [`CHUNK_BYTES`] (to the end of the line that crosses
/// it), read in place. Returns false at the end of the file.
fn fill_mapped(map: &Arc<memmap2::Mmap>, pos: &mut usize, c: &mut Chunk) -> std::io::Result<bool> {
    c.len = 0;
    c.lossy_text = None;
    c.lossy = None;
    c.map = None;
    let (start, len) = (*pos, map.len());
    if start >= len {
        return Ok(false);
    }
    let mut end = (start + CHUNK_BYTES).min(len);
    if end < len {
        end = match memchr::memrchr(b'\n', &map[start..end]) {
            Some(nl) => start + nl + 1,
            // no newline in a whole chunk: a very long line, to its end
            None => match memchr::memchr(b'\n', &map[end..len.min(start + MAX_LINE + 1)]) {
                Some(nl) => end + nl + 1,
                None if len - start <= MAX_LINE => len,
                None => return Err(line_too_long()),
            },
        };
    }
    let bytes = &map[start..end];
    c.torn_tail = end == len && bytes.last() != Some(&b'\n');
    // The chunk is checked here, once: its lines are then read as `&str`.
    (c.lossy, c.lossy_text) = check_utf8(bytes);
    c.map = Some((map.clone(), start));
    c.len = end - start;
    *pos = end;
    Ok(true)
}

/// Where the reader thread takes chunks from.
enum Feed {
    /// A stream (a pipe, a decompressor): read into each chunk's buffer,
    /// with the partial line carried to the next.
    Stream {
        rest: Box<dyn Read + Send>,
        carry: Vec<u8>,
        eof: bool,
    },
    /// A plain file, mapped: chunks are slices of it.
    Mapped { map: Arc<memmap2::Mmap>, pos: usize },
}

/// Stream a text trace into `sink`.
pub fn run(
    name: &str,
    format: Format,
    input: Input,
    sink: &mut dyn Sink,
    threads: Option<usize>,
) -> Result<ParseStats> {
    // A plain file is read in place (no copy); anything else streamed.
    let (mut feed, compression) = match input.into_map() {
        Ok(map) => (
            Feed::Mapped {
                map: Arc::new(map),
                pos: 0,
            },
            None,
        ),
        Err(input) => {
            let (head, rest, compression) = input.into_parts();
            (
                Feed::Stream {
                    rest,
                    carry: head,
                    eof: false,
                },
                compression,
            )
        }
    };
    let pool = match threads {
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| Error::new(name, Origin::None, e.to_string()))?,
        ),
        None => None,
    };
    let (done_tx, done_rx) = mpsc::channel::<Chunk>();
    let (free_tx, free_rx) = mpsc::channel::<Chunk>();
    for _ in 0..IN_FLIGHT {
        free_tx.send(Chunk::default()).expect("receiver alive");
    }
    let mut stats = ParseStats::default();
    let perf = format == Format::PerfScript;
    let counting = {
        let mut kinds = [false; 32];
        for k in crate::EventKind::ALL {
            if let Some(slot) = kinds.get_mut(k as usize) {
                *slot = sink.countable(k);
            }
        }
        Some(Counting { kinds, perf }).filter(|c| c.kinds.iter().any(|&k| k))
    };

    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        let free_tx = free_tx;
        let pool = pool.as_ref();
        let stop = &stop;
        scope.spawn(move || {
            let mut seq = 0;
            while let Ok(mut c) = free_rx.recv() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                c.seq = seq;
                seq += 1;
                c.read_error = None;
                let filled = match &mut feed {
                    Feed::Stream { rest, carry, eof } => {
                        fill_chunk(&mut **rest, carry, &mut c, eof).map(|more| (more, *eof))
                    }
                    Feed::Mapped { map, pos } => {
                        fill_mapped(map, pos, &mut c).map(|more| (more, *pos >= map.len()))
                    }
                };
                match filled {
                    Ok((true, eof)) => {
                        c.last = eof;
                    }
                    Ok((false, _)) => {
                        c.last = true;
                        c.items.clear();
                        c.lines = 0;
                    }
                    Err(e) => {
                        c.read_error = Some(decompress_error(name, compression, e).message);
                        c.last = true;
                    }
                }
                let last = c.last;
                let tx = done_tx.clone();
                let job = move || {
                    c.panic = None;
                    if c.len > 0 {
                        // A bug in the line grammar must not abort the process
                        // (a panic in a rayon job does): it becomes an error.
                        if let Err(p) =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                parse_chunk(&mut c, counting)
                            }))
                        {
                            c.panic = Some(panic_message(&p));
                            c.items.clear();
                        }
                    } else {
                        c.items.clear();
                        c.lines = 0;
                    }
                    let _ = tx.send(c);
                };
                match pool {
                    Some(p) => p.spawn(job),
                    None => rayon::spawn(job),
                }
                if last {
                    break;
                }
            }
        });

        // Consumer: deliver chunks in sequence order.
        let mut pending: BTreeMap<u64, Chunk> = BTreeMap::new();
        let mut next = 0u64;
        let mut line_base = 0u64;
        let mut released = 0usize;
        loop {
            let Some(c) = pending.remove(&next) else {
                match done_rx.recv() {
                    Ok(c) => {
                        pending.insert(c.seq, c);
                        continue;
                    }
                    Err(_) => return Ok(()),
                }
            };
            next += 1;
            if let Some(msg) = &c.panic {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(Error::internal(
                    name,
                    Origin::Line(line_base + 1),
                    "parsing the lines from here",
                    msg,
                ));
            }
            if deliver(&c, line_base, perf, sink, &mut stats).is_break() {
                // The reader thread sees the flag (or the free list closing) and ends.
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                stats.stopped = true;
                return Ok(());
            }
            line_base += c.lines;
            stats.bytes += c.text().len() as u64;
            // The pages of a mapped file read so far are given back (flat
            // memory), a few MiB at a time.
            if let Some((map, at)) = &c.map {
                let upto = at + c.len;
                if upto >= released + RELEASE_STRIDE || c.last {
                    crate::input::release_pages(&map[released..upto]);
                    released = upto;
                }
            }
            if let Some(msg) = &c.read_error {
                stats.warnings += 1;
                sink.notice(&Notice::Warning {
                    origin: Origin::Line(line_base + 1),
                    message: format!(
                        "input ends early: {msg}; the events before line {} were analysed",
                        line_base + 1
                    ),
                });
            }
            let last = c.last;
            let _ = free_tx.send(c);
            if last {
                return Ok(());
            }
        }
    })?;
    Ok(stats)
}

fn deliver(
    c: &Chunk,
    line_base: u64,
    perf: bool,
    sink: &mut dyn Sink,
    stats: &mut ParseStats,
) -> crate::Flow {
    let text = c.text();
    let extra = c.extra.as_str();
    stats.lines += c.lines;
    if let Some(at) = c.lossy {
        stats.warnings += 1;
        sink.notice(&Notice::Warning {
            origin: Origin::Line(line_base + at as u64 + 1),
            message: "invalid UTF-8 on this line (and maybe on others in the same MiB of input) was replaced with U+FFFD".into(),
        });
    }
    let n = c.items.len();
    for (k, item) in c.items.iter().enumerate() {
        let torn = c.torn_tail && k + 1 == n;
        match item {
            Item::Ev(r) => {
                if torn {
                    stats.warnings += 1;
                    sink.notice(&Notice::Warning {
                        origin: Origin::Line(line_base + r.line_no as u64 + 1),
                        message: "last line has no newline: it may have been cut while the trace was written (analysed as it stands)".into(),
                    });
                }
                let comm = r.comm.get(text, extra);
                let name = r.name.get(text, extra);
                let ev = Event {
                    ts_ns: r.ts_ns,
                    cpu: r.cpu,
                    pid: r.pid,
                    comm: if comm.is_empty() || comm == "<...>" {
                        None
                    } else {
                        Some(comm)
                    },
                    ctx: if perf { Context::UNKNOWN } else { r.ctx },
                    system: if r.system.len == 0 {
                        None
                    } else {
                        Some(r.system.get(text, extra))
                    },
                    name,
                    kind: r.kind,
                    fields: Fields::Text(match r.fields {
                        Some((s, n)) => TextFields::Spans {
                            event: r.name.get(text, extra),
                            buf: text,
                            extra,
                            spans: &c.fields[s as usize..(s + n) as usize],
                        },
                        None => TextFields::Payload {
                            event: r.name.get(text, extra),
                            payload: r.payload.get(text, extra),
                        },
                    }),
                    origin: Origin::Line(line_base + r.line_no as u64 + 1),
                    instance: if r.instance.len == 0 {
                        None
                    } else {
                        Some(r.instance.get(text, extra))
                    },
                    raw: Some(r.line.get(text, extra)),
                };
                stats.events += 1;
                if sink.event(&ev).is_break() {
                    return crate::STOP;
                }
            }
            Item::Lost {
                cpu,
                count,
                line_no,
            } => sink.notice(&Notice::LostEvents {
                cpu: *cpu,
                count: *count,
                ts_ns: None,
                origin: Origin::Line(line_base + *line_no as u64 + 1),
            }),
            Item::Started { cpu, line_no } => {
                stats.metadata_lines += 1;
                sink.notice(&Notice::BufferStarted {
                    cpu: *cpu,
                    origin: Origin::Line(line_base + *line_no as u64 + 1),
                })
            }
            Item::Unparsed { line_no, line, why } => {
                let origin = Origin::Line(line_base + *line_no as u64 + 1);
                let text = line.get(text, extra);
                if torn {
                    stats.warnings += 1;
                    sink.notice(&Notice::Warning {
                        origin,
                        message: format!(
                            "last line is cut off (no newline, {why}); the rest was analysed"
                        ),
                    });
                } else {
                    stats.unparsed += 1;
                    sink.notice(&Notice::Unparsed {
                        origin,
                        text: truncate(text, 200),
                        reason: (*why).to_string(),
                    });
                }
            }
            Item::Meta => stats.metadata_lines += 1,
        }
    }
    for t in &c.counted {
        stats.events += t.count;
        let flow = sink.counted(&crate::Counted {
            cpu: t.cpu,
            system: if t.system.len == 0 {
                None
            } else {
                Some(t.system.get(text, extra))
            },
            name: t.name.get(text, extra),
            kind: t.kind,
            count: t.count,
            first_ts_ns: t.first_ts_ns,
            last_ts_ns: t.last_ts_ns,
            context_known: t.known,
        });
        if flow.is_break() {
            return crate::STOP;
        }
    }
    crate::CONTINUE
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut e = max;
    while !s.is_char_boundary(e) {
        e -= 1;
    }
    format!("{}…", &s[..e])
}

/// Lines looked at to detect the text dialect.
const DETECT_LINES: usize = 400;

/// Decide which text format `head` is, or why it is not a trace.
pub fn detect_text(name: &str, head: &[u8]) -> Result<Format> {
    let sample = &head[..head.len().min(4096)];
    let binary = sample
        .iter()
        .filter(|&&c| c == 0 || (c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t')))
        .count();
    if binary > 0 {
        let at = sample
            .iter()
            .position(|&c| c == 0 || (c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t')))
            .unwrap_or(0);
        return Err(Error::at(
            name,
            at as u64,
            format!("binary data (byte 0x{:02x}); expected trace text (tracefs, trace-cmd report, perf script) or a trace.dat file", sample[at]),
        ));
    }
    let text = String::from_utf8_lossy(head);
    let mut fields = Vec::new();
    let mut extra = String::new();
    let (mut flags, mut noflags, mut perf, mut latency) = (0, 0, 0, 0);
    let mut report_header = false;
    let mut tracefs_header = false;
    let mut first_bad: Option<(usize, &'static str)> = None;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, l)) = lines.next() {
        if i >= DETECT_LINES {
            break;
        }
        // The head may end mid-line: skip the cut last line.
        if lines.peek().is_none() && head.len() >= crate::input::HEAD_LEN {
            break;
        }
        let t = l.trim_start();
        if i < 3 && (t.starts_with("cpus=") || t.starts_with("version = ")) {
            report_header = true;
        }
        if t.starts_with("# tracer:") {
            tracefs_header = true;
        }
        fields.clear();
        match line::parse_line(
            l,
            0,
            i as u32,
            &mut Out {
                fields: &mut fields,
                extra: &mut extra,
                last: Default::default(),
            },
        ) {
            Parsed::Event(r) => match r.style {
                Style::Flags => flags += 1,
                Style::NoFlags => noflags += 1,
                Style::Perf => perf += 1,
                Style::Latency => latency += 1,
            },
            Parsed::Unparsed(why) => {
                if first_bad.is_none() {
                    first_bad = Some((i + 1, why))
                }
            }
            _ => {}
        }
    }
    let events = flags + noflags + perf + latency;
    if report_header {
        return Ok(Format::TraceCmdReport);
    }
    if tracefs_header {
        return Ok(Format::TracefsText);
    }
    if events == 0 {
        return Err(match first_bad {
            Some((line, why)) => Error::new(
                name,
                Origin::Line(line as u64),
                format!("not a trace event line ({why}); expected `COMM-PID [CPU] FLAGS TIMESTAMP: EVENT: FIELDS` (tracefs), trace-cmd report or perf script text"),
            ),
            None => Error::new(name, Origin::Line(1), "no trace events in the input (only comments or blank lines)"),
        });
    }
    Ok(if perf * 2 > events {
        Format::PerfScript
    } else if latency * 2 > events || noflags > flags {
        Format::TraceCmdReport
    } else {
        Format::TracefsText
    })
}

/// Header facts from the first bytes: `cpus=N` (report), `#P:N` (tracefs),
/// and tracefs's `# entries-in-buffer/entries-written: A/B   #P:N`
/// (kernel/trace/trace.c `print_event_info`): B − A events were overwritten.
pub fn probe(_name: &str, head: &[u8], info: &mut TraceInfo) -> Result<()> {
    let text = String::from_utf8_lossy(&head[..head.len().min(8192)]);
    for l in text.lines().take(40) {
        let t = l.trim();
        if let Some(n) = t.strip_prefix("cpus=") {
            info.cpus = n.trim().parse().ok();
        } else if let Some(p) = t.find("#P:") {
            info.cpus = t[p + 3..].trim().parse().ok();
        }
        if let Some(p) = t.find("entries-in-buffer/entries-written:") {
            let nums = t[p + "entries-in-buffer/entries-written:".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            if let Some((a, b)) = nums.split_once('/') {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    info.overwritten = Some(b.saturating_sub(a));
                }
            }
        }
    }
    // The architecture, from tracepoints only one architecture has: x86's
    // irq_vectors and exceptions, the ipi_raise/ipi_entry of arm and arm64.
    if info.arch.is_none() {
        let all = String::from_utf8_lossy(head);
        // Hex digits of `key=0x…` in the line.
        let width = |t: &str, key: &str| {
            t.find(key).map(|p| {
                t[p + key.len()..]
                    .bytes()
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count()
            })
        };
        let mut short_only = false;
        for l in all.lines() {
            let t = l.trim();
            // x86's exceptions tracepoint; its addresses tell 64 from 32 bits.
            // A kernel-mode fault's ip is kernel text: 16 hex digits on
            // x86_64, 8 on x86_32; a fault address may be a short user one
            // on either, so short addresses alone decide only at the end.
            if let Some(p) = t.find(": page_fault_") {
                let rest = &t[p..];
                let (a, ip) = (width(rest, "address=0x"), width(rest, "ip=0x"));
                if a.is_some_and(|d| d > 8) || ip.is_some_and(|d| d > 8) {
                    info.arch = Some("x86_64".into());
                    info.arch_from = Some(
                        "event names and addresses: x86's exceptions tracepoint, 64-bit addresses",
                    );
                    break;
                }
                if rest.starts_with(": page_fault_kernel") && ip == Some(8) {
                    info.arch = Some("i686".into());
                    info.arch_from = Some("event names and addresses: x86's exceptions tracepoint, 32-bit kernel text addresses");
                    break;
                }
                short_only |= a.is_some();
                continue;
            }
            if t.contains(": ipi_raise:")
                || t.contains(": ipi_entry:")
                || t.contains("ipi:ipi_raise:")
            {
                info.arch = Some("arm64".into());
                info.arch_from = Some("event names: ipi_raise/ipi_entry (arm, arm64)");
                break;
            }
            // The kernel's register dump (an NMI backtrace, an oops) names the
            // instruction pointer: `EIP:` on x86_32, `RIP:` on x86_64
            // (arch/x86/kernel/process_32.c / process_64.c `__show_regs`).
            if let Some(p) = t.find(": console: ") {
                let msg = t[p + 11..].trim_start();
                let msg = msg
                    .find("] ")
                    .filter(|_| msg.starts_with('['))
                    .map_or(msg, |q| &msg[q + 2..]);
                if msg.starts_with("EIP: ") {
                    info.arch = Some("i686".into());
                    info.arch_from = Some("the kernel's register dump: EIP (x86_32)");
                    break;
                }
                if msg.starts_with("RIP: ") {
                    info.arch = Some("x86_64".into());
                    info.arch_from = Some("the kernel's register dump: RIP (x86_64)");
                    break;
                }
            }
        }
        if info.arch.is_none() && short_only {
            info.arch = Some("i686".into());
            info.arch_from =
                Some("event names and addresses: x86's exceptions tracepoint, 32-bit addresses");
        }
    }
    Ok(())
}

#[cfg(test)]
mod arch_tests {
    use super::*;

    fn arch(text: &str) -> (Option<String>, Option<&'static str>) {
        let mut info = TraceInfo::default();
        probe("t", text.as_bytes(), &mut info).unwrap();
        (info.arch, info.arch_from)
    }

    #[test]
    fn the_architecture_from_the_lines_themselves() {
        // Real lines: 5.4.59 i386 (QEMU) and this VM's 6.18 x86_64.
        let i386 = "           <...>-179   [000] d...    50.594609: page_fault_kernel: address=0xea822000 ip=0xdf415149 error_code=0x2\n";
        assert_eq!(arch(i386).0.as_deref(), Some("i686"));
        let x64 = "            bash-100   [000] d...  1.000000: page_fault_user: address=0x401000 ip=0x401000 error_code=0x14\n            bash-100   [000] d...  1.000100: page_fault_kernel: address=0x7ffd1000 ip=0xffffffff81a2b3c4 error_code=0x0\n";
        assert_eq!(
            arch(x64).0.as_deref(),
            Some("x86_64"),
            "a short user address does not make a trace 32-bit"
        );
        let only_short_user = "            bash-100   [000] d...  1.000000: page_fault_user: address=0x401000 ip=0x401000 error_code=0x14\n";
        assert_eq!(arch(only_short_user).0.as_deref(), Some("i686"));
        let eip = "          <idle>-0       [001] d.Z1.    27.230601: console: [   27.230601] EIP: default_idle+0xa/0x10\n";
        assert_eq!(
            arch(eip),
            (
                Some("i686".into()),
                Some("the kernel's register dump: EIP (x86_32)")
            )
        );
        let rip = "        pingpong-141     [000] d.Z1.   119.470513: console: RIP: 0010:__switch_to+0x10/0x20\n";
        assert_eq!(arch(rip).0.as_deref(), Some("x86_64"));
    }
}
