//! Writing trace.dat files that trace-cmd and KernelShark read: v7 with
//! zstd or no compression (default v7 + zstd), v6 on request.
//!
//! Events arrive through [`Sink`] in trace order. Each is encoded with an
//! event format file: the ones carried in the code for the events nmitrace
//! models (SPEC §2.5, `builtin_formats.txt`, from a Linux 6.18 x86_64
//! kernel), or formats registered with [`TraceDatWriter::add_format`] /
//! [`TraceDatWriter::add_formats_from`] (e.g. those of a source trace.dat).
//! Events without a format are counted as skipped. `common_flags` and
//! `common_preempt_count` come from the event's context.
//!
//! Per-CPU ring-buffer pages are spooled to unlinked temporary files (zstd
//! chunks of 10 pages, as trace-cmd writes them), so memory stays bounded
//! whatever the trace length; [`TraceDatWriter::finish`] lays the file out.

use super::compress::Compression;
use super::format::{EventFormat, Kind};
use super::header::Meta;
use crate::error::{Error, Result};
use crate::event::{Event, Value};
use crate::{Notice, Origin, Sink};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};

const BUILTIN: &str = super::BUILTIN_FORMATS;

thread_local! {
    /// Byte order of the file being written, set on entry to every writer
    /// method (the writer runs on its caller's thread).
    static BIG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Numbers in the file's byte order.
trait FileEndian {
    type B;
    fn fe(self) -> Self::B;
}
macro_rules! fe_impl {
    ($t:ty, $n:expr) => {
        impl FileEndian for $t {
            type B = [u8; $n];
            fn fe(self) -> [u8; $n] {
                if BIG.with(|b| b.get()) {
                    self.to_be_bytes()
                } else {
                    self.to_le_bytes()
                }
            }
        }
    };
}
fe_impl!(u16, 2);
fe_impl!(u32, 4);
fe_impl!(u64, 8);

/// An event header word: 5-bit type_len and 27-bit time delta, laid out
/// as the kernel's bitfield is on a machine of the file's byte order.
fn ev_word(type_len: u32, delta: u32) -> u32 {
    if BIG.with(|b| b.get()) {
        (type_len << 27) | delta
    } else {
        type_len | (delta << 5)
    }
}

/// The low `n` bytes of `v` in the file's byte order.
fn fe_n(v: u64, n: usize) -> Vec<u8> {
    if BIG.with(|b| b.get()) {
        v.to_be_bytes()[8 - n..].to_vec()
    } else {
        v.to_le_bytes()[..n].to_vec()
    }
}

const HEADER_PAGE: &str = "\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n";
const HEADER_EVENT: &str = "# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n\ttime_stamp : type == 31\n\tdata max type_len  == 28\n";

const PAGE_HDR: usize = 16;
const CHUNK_PAGES: usize = 10;
const TS_MASK: u64 = (1 << 27) - 1;
const MISSING_EVENTS: u64 = 1 << 31;
const MISSING_STORED: u64 = 1 << 30;

/// What to write.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// 6 or 7.
    pub version: u32,
    /// v7 only: `None` or `Zstd` (v6 is never compressed).
    pub compression: Compression,
    /// zstd level.
    pub level: i32,
    pub page_size: u32,
    /// UNAME option text (`Linux host 6.18.44 #1 x86_64`), if known.
    pub uname: Option<String>,
    /// Trace clock name; default `local`.
    pub clock: Option<String>,
    /// Number of CPUs; default: highest CPU seen + 1.
    pub cpus: Option<u32>,
    /// Write a big-endian file (as a big-endian machine's trace-cmd would).
    pub big_endian: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            version: 7,
            compression: Compression::Zstd,
            level: 3,
            page_size: 4096,
            uname: None,
            clock: None,
            cpus: None,
            big_endian: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug, Default)]
pub struct WriteStats {
    pub events: u64,
    /// Events without a format, by `system:name`.
    pub skipped: BTreeMap<String, u64>,
    /// Field values that could not be encoded (a symbol where a number was
    /// expected…) and were written as 0, by `event.field`.
    pub unencodable: BTreeMap<String, u64>,
    pub lost_event_markers: u64,
    pub bytes: u64,
}

struct Spool {
    file: Option<BufWriter<File>>,
    len: u64,
    chunks: u32,
}

impl Spool {
    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(BufWriter::with_capacity(1 << 16, temp_file()?));
        }
        self.file.as_mut().unwrap().write_all(b)?;
        self.len += b.len() as u64;
        Ok(())
    }
}

fn temp_file() -> io::Result<File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..100 {
        let p = dir.join(format!(
            "nmitrace-spool-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&p);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no temporary file name free"))
}

/// One CPU of one buffer (a "lane").
struct CpuBuf {
    cpu: u32,
    page: Vec<u8>,
    used: usize,
    last_ts: u64,
    has_events: bool,
    pending_lost: Option<u64>,
    chunk: Vec<u8>,
    chunk_pages: usize,
    spool: Spool,
}

/// A [`Sink`] that writes a trace.dat. Call [`finish`](Self::finish) at the end.
pub struct TraceDatWriter<W: Write> {
    out: Option<W>,
    opts: WriterOptions,
    formats: Vec<EventFormat>,
    by_sys_name: HashMap<(String, String), usize>,
    by_name: HashMap<String, usize>,
    /// Lanes: one per (buffer, cpu) that has events.
    cpus: Vec<CpuBuf>,
    lanes: HashMap<(usize, u32), usize>,
    /// Buffer names; 0 is the top buffer ("").
    buf_names: Vec<String>,
    cmdlines: BTreeMap<i32, String>,
    stats: WriteStats,
    error: Option<Error>,
    started: bool,
    scratch: Vec<u8>,
    /// kallsyms and printk formats to carry (from a source trace.dat).
    kallsyms: Vec<u8>,
    printk: Vec<u8>,
    zctx: Option<zstd::bulk::Compressor<'static>>,
    /// Functions a text trace names where the format holds an address
    /// (`nmi_handler`'s `handler=perf_event_nmi_handler`): each gets a
    /// made-up address, listed in the kallsyms written, so that readers
    /// (nmitrace, trace-cmd report) print the name again.
    synthetic_symbols: BTreeMap<String, u64>,
}

/// Where made-up symbol addresses start (the top of the x86_64 kernel
/// map, above modules), one page apart.
const SYNTHETIC_SYMBOL_BASE: u64 = 0xffff_ffff_ff00_0000;

impl<W: Write> TraceDatWriter<W> {
    pub fn new(out: W, mut opts: WriterOptions) -> TraceDatWriter<W> {
        if opts.version != 7 {
            opts.version = 6;
            opts.compression = Compression::None;
        }
        if opts.compression == Compression::Zlib {
            opts.compression = Compression::Zstd;
        }
        if !opts.page_size.is_power_of_two() || opts.page_size < 1024 {
            opts.page_size = 4096;
        }
        let mut w = TraceDatWriter {
            out: Some(out),
            opts,
            formats: Vec::new(),
            by_sys_name: HashMap::new(),
            by_name: HashMap::new(),
            cpus: Vec::new(),
            lanes: HashMap::new(),
            buf_names: vec![String::new()],
            cmdlines: BTreeMap::new(),
            stats: WriteStats::default(),
            error: None,
            started: false,
            scratch: Vec::new(),
            kallsyms: Vec::new(),
            printk: Vec::new(),
            zctx: None,
            synthetic_symbols: BTreeMap::new(),
        };
        for (sys, text) in split_formats(BUILTIN) {
            let _ = w.add_format(sys, text);
        }
        w
    }

    /// Register an event format file (before the first event). A format of
    /// the same system and name replaces the carried one; a carried format
    /// whose ID collides is renumbered.
    pub fn add_format(&mut self, system: &str, text: &str) -> Result<()> {
        if self.started {
            return Err(Error::new(
                "trace.dat writer",
                Origin::None,
                "formats must be added before the first event",
            ));
        }
        let f = EventFormat::parse(system, text).map_err(|m| {
            Error::new(
                "trace.dat writer",
                Origin::None,
                format!("event format not understood: {m}"),
            )
        })?;
        if let Some(&i) = self.by_sys_name.get(&(f.system.clone(), f.name.clone())) {
            self.formats[i] = f;
        } else {
            self.formats.push(f);
        }
        self.reindex();
        Ok(())
    }

    /// Register every format of a parsed trace.dat (replacing carried ones).
    pub fn add_formats_from(&mut self, meta: &Meta) -> Result<()> {
        // the source's IDs win: drop carried formats that would collide
        let src_ids: std::collections::HashSet<u32> = meta.formats.iter().map(|f| f.id).collect();
        let src_names: std::collections::HashSet<(String, String)> = meta
            .formats
            .iter()
            .map(|f| (f.system.clone(), f.name.clone()))
            .collect();
        let mut next = meta
            .formats
            .iter()
            .map(|f| f.id)
            .max()
            .unwrap_or(0)
            .max(self.formats.iter().map(|f| f.id).max().unwrap_or(0))
            + 1;
        let mut kept = Vec::new();
        for mut f in std::mem::take(&mut self.formats) {
            if src_names.contains(&(f.system.clone(), f.name.clone())) {
                continue;
            }
            if src_ids.contains(&f.id) {
                f.text = f
                    .text
                    .replacen(&format!("ID: {}\n", f.id), &format!("ID: {next}\n"), 1);
                f.id = next;
                next += 1;
            }
            kept.push(f);
        }
        kept.extend(meta.formats.iter().map(|f| (**f).clone()));
        if let Some(k) = &meta.kallsyms {
            self.kallsyms = k.clone();
        }
        if let Some(p) = &meta.printk {
            self.printk = p.clone();
        }
        self.formats = kept;
        self.reindex();
        Ok(())
    }

    fn reindex(&mut self) {
        self.by_sys_name.clear();
        self.by_name.clear();
        for (i, f) in self.formats.iter().enumerate() {
            self.by_sys_name
                .insert((f.system.clone(), f.name.clone()), i);
            self.by_name.entry(f.name.clone()).or_insert(i);
        }
    }

    /// The lane of `cpu` in buffer `b`, created on first use.
    fn lane(&mut self, b: usize, cpu: u32) -> u32 {
        let ps = self.opts.page_size as usize;
        if let Some(&l) = self.lanes.get(&(b, cpu)) {
            return l as u32;
        }
        {
            self.lanes.insert((b, cpu), self.cpus.len());
            self.cpus.push(CpuBuf {
                cpu,
                page: vec![0; ps],
                used: 0,
                last_ts: 0,
                has_events: false,
                pending_lost: None,
                chunk: Vec::new(),
                chunk_pages: 0,
                spool: Spool {
                    file: None,
                    len: 0,
                    chunks: 0,
                },
            });
        }
        (self.cpus.len() - 1) as u32
    }

    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(Error::io("trace.dat writer", e));
        }
    }

    /// Close the current page of `cpu` and spool it.
    fn flush_page(&mut self, cpu: u32) {
        let comp = self.opts.compression;
        let level = self.opts.level;
        let ps = self.opts.page_size as usize;
        let c = &mut self.cpus[cpu as usize];
        if !c.has_events && c.pending_lost.is_none() {
            return;
        }
        let mut commit = c.used as u64;
        if let Some(n) = c.pending_lost.take() {
            commit |= MISSING_EVENTS | MISSING_STORED;
            let at = PAGE_HDR + c.used;
            if at + 8 <= ps {
                c.page[at..at + 8].copy_from_slice(&n.fe());
            }
        }
        c.page[8..16].copy_from_slice(&commit.fe());
        let r = if comp == Compression::None {
            c.spool.write(&c.page)
        } else {
            c.chunk.extend_from_slice(&c.page);
            c.chunk_pages += 1;
            Ok(())
        };
        c.page.iter_mut().for_each(|b| *b = 0);
        c.used = 0;
        c.has_events = false;
        if let Err(e) = r {
            self.fail(e);
            return;
        }
        if comp != Compression::None && self.cpus[cpu as usize].chunk_pages >= CHUNK_PAGES {
            self.flush_chunk(cpu, level);
        }
    }

    fn flush_chunk(&mut self, cpu: u32, level: i32) {
        if self.zctx.is_none() {
            match zstd::bulk::Compressor::new(level) {
                Ok(z) => self.zctx = Some(z),
                Err(e) => return self.fail(e),
            }
        }
        let c = &mut self.cpus[cpu as usize];
        if c.chunk.is_empty() {
            return;
        }
        let r = self
            .zctx
            .as_mut()
            .unwrap()
            .compress(&c.chunk)
            .and_then(|z| {
                c.spool.write(&(z.len() as u32).fe())?;
                c.spool.write(&(c.chunk.len() as u32).fe())?;
                c.spool.write(&z)?;
                c.spool.chunks += 1;
                Ok(())
            });
        c.chunk.clear();
        c.chunk_pages = 0;
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// Append an encoded payload to `cpu`'s current page.
    fn push_record(&mut self, cpu: u32, ts: u64, payload_len: usize) {
        let ps = self.opts.page_size as usize;
        let len = (payload_len + 3) & !3;
        let hdr = if len > 0 && len <= 28 * 4 { 4 } else { 8 };
        let cap = ps - PAGE_HDR - 8; // keep room for a stored lost count
        if hdr + len + 8 > cap {
            *self
                .stats
                .skipped
                .entry("(event larger than a page)".into())
                .or_default() += 1;
            return;
        }
        {
            let c = &self.cpus[cpu as usize];
            let need_new = c.has_events
                && (ts < c.last_ts || {
                    let delta = ts - c.last_ts;
                    let ext = if delta > TS_MASK { 8 } else { 0 };
                    c.used + ext + hdr + len > cap
                });
            if need_new {
                self.flush_page(cpu);
            }
        }
        let c = &mut self.cpus[cpu as usize];
        if !c.has_events {
            c.page[0..8].copy_from_slice(&ts.fe());
            c.last_ts = ts;
            c.has_events = true;
        }
        let mut delta = ts - c.last_ts;
        let mut at = PAGE_HDR + c.used;
        if delta > TS_MASK {
            let w = ev_word(30, (delta & TS_MASK) as u32);
            c.page[at..at + 4].copy_from_slice(&w.fe());
            c.page[at + 4..at + 8].copy_from_slice(&((delta >> 27) as u32).fe());
            at += 8;
            delta = 0;
        }
        if hdr == 4 {
            let w = ev_word((len / 4) as u32, delta as u32);
            c.page[at..at + 4].copy_from_slice(&w.fe());
        } else {
            let w = ev_word(0, delta as u32);
            c.page[at..at + 4].copy_from_slice(&w.fe());
            c.page[at + 4..at + 8].copy_from_slice(&((len + 4) as u32).fe());
        }
        at += hdr;
        c.page[at..at + payload_len].copy_from_slice(&self.scratch[..payload_len]);
        for b in &mut c.page[at + payload_len..at + len] {
            *b = 0;
        }
        c.used = at + len - PAGE_HDR;
        c.last_ts = ts;
        self.stats.events += 1;
    }

    /// Encode `ev` into `self.scratch` with format `fi`; returns the length.
    fn encode(&mut self, fi: usize, ev: &Event<'_>) -> usize {
        let f = &self.formats[fi];
        let fixed = f
            .common
            .iter()
            .chain(&f.fields)
            .map(|x| (x.offset + x.size) as usize)
            .max()
            .unwrap_or(8)
            .max(8);
        let buf = &mut self.scratch;
        buf.clear();
        buf.resize(fixed, 0);
        let put = |buf: &mut Vec<u8>, off: u32, size: u32, v: u64| {
            let (o, s) = (off as usize, size as usize);
            if matches!(s, 1 | 2 | 4 | 8) && o + s <= buf.len() {
                buf[o..o + s].copy_from_slice(&fe_n(v, s));
            }
        };
        for c in &f.common {
            let v = match c.name.as_str() {
                "common_type" => f.id as u64,
                "common_flags" if ev.ctx.known => ev.ctx.to_common_flags() as u64,
                "common_preempt_count" => ev.ctx.preempt_depth.unwrap_or(0) as u64,
                "common_pid" => ev.pid as i64 as u64,
                _ => 0,
            };
            put(buf, c.offset, c.size, v);
        }
        for fld in &f.fields {
            // by field name, else by the label the print fmt prints it under
            let label = f.labels.iter().find(|l| l.1 == fld.name);
            let val = ev
                .fields
                .get(&fld.name)
                .or_else(|| label.and_then(|l| ev.fields.get(&l.0)));
            let hex = label.is_some_and(|l| matches!(l.2, 'x' | 'X' | 'p'));
            match fld.kind {
                Kind::Num { .. } => {
                    let n = match val {
                        Some(Value::Int(v)) => Some(v as u64),
                        Some(Value::Uint(v)) => Some(v),
                        Some(Value::Str(s)) => text_number(s, hex, &fld.name).or_else(|| {
                            // a pointer printed as a function name (`%ps`)
                            let sym = s.trim().trim_end_matches("()");
                            let is_ident = !sym.is_empty()
                                && sym
                                    .bytes()
                                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'));
                            let pointer = fld.type_.trim_end().ends_with('*')
                                || label.is_some_and(|l| l.2 == 'p');
                            if pointer && is_ident && self.synthetic_symbols.len() < 4096 {
                                let next = SYNTHETIC_SYMBOL_BASE
                                    + 0x1000 * self.synthetic_symbols.len() as u64;
                                Some(
                                    *self
                                        .synthetic_symbols
                                        .entry(sym.to_string())
                                        .or_insert(next),
                                )
                            } else {
                                None
                            }
                        }),
                        Some(Value::Bytes(_)) | None => None,
                    };
                    match n {
                        Some(n) => put(buf, fld.offset, fld.size, n),
                        None => {
                            *self
                                .stats
                                .unencodable
                                .entry(format!("{}.{}", f.name, fld.name))
                                .or_default() += 1
                        }
                    }
                }
                Kind::Str | Kind::Bytes => {
                    let bytes: Option<std::borrow::Cow<[u8]>> = match val {
                        Some(Value::Str(s)) => Some(s.as_bytes().into()),
                        Some(Value::Bytes(b)) => Some(b.into()),
                        Some(v @ (Value::Int(_) | Value::Uint(_))) if fld.kind == Kind::Str => {
                            Some(v.to_string().into_bytes().into())
                        }
                        _ => None,
                    };
                    if let (Some(b), 0) = (&bytes, fld.size) {
                        // flexible array: the data runs to the record's end
                        let o = fld.offset as usize;
                        buf.resize(o, 0);
                        buf.extend_from_slice(b);
                        if fld.kind == Kind::Str {
                            buf.push(0);
                        }
                    } else if let Some(b) = bytes {
                        let o = fld.offset as usize;
                        let room = (fld.size as usize).saturating_sub(if fld.kind == Kind::Str {
                            1
                        } else {
                            0
                        });
                        let n = b.len().min(room);
                        if o + n <= buf.len() {
                            buf[o..o + n].copy_from_slice(&b[..n]);
                        }
                    }
                }
                Kind::Dyn { string, rel } => {
                    let mut bytes: Vec<u8> = match val {
                        Some(Value::Str(s)) => s.as_bytes().to_vec(),
                        Some(Value::Bytes(b)) => b.to_vec(),
                        Some(v @ (Value::Int(_) | Value::Uint(_))) => v.to_string().into_bytes(),
                        None => Vec::new(),
                    };
                    if string {
                        bytes.push(0);
                    }
                    bytes.truncate(0xffff);
                    let start = buf.len();
                    buf.extend_from_slice(&bytes);
                    let field_end = (fld.offset + fld.size) as usize;
                    let off = if rel {
                        start.saturating_sub(field_end)
                    } else {
                        start
                    };
                    let loc = ((bytes.len() as u64) << 16) | (off as u64 & 0xffff);
                    put(buf, fld.offset, fld.size.min(4), loc);
                }
            }
        }
        buf.len()
    }

    /// Write the file. Returns what was written.
    pub fn finish(mut self) -> Result<WriteStats> {
        BIG.with(|b| b.set(self.opts.big_endian));
        for cpu in 0..self.cpus.len() as u32 {
            self.flush_page(cpu);
            if self.opts.compression != Compression::None {
                let level = self.opts.level;
                self.flush_chunk(cpu, level);
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if !self.synthetic_symbols.is_empty() {
            let mut syms: Vec<(u64, &String)> = self
                .synthetic_symbols
                .iter()
                .map(|(n, &a)| (a, n))
                .collect();
            syms.sort();
            if !self.kallsyms.is_empty() && !self.kallsyms.ends_with(b"\n") {
                self.kallsyms.push(b'\n');
            }
            for (a, n) in syms {
                self.kallsyms
                    .extend_from_slice(format!("{a:016x} t {n}\n").as_bytes());
            }
        }
        let mut out = self.out.take().expect("finish once");
        let n = self
            .layout(&mut out)
            .map_err(|e| Error::io("trace.dat writer", e))?;
        out.flush().map_err(|e| Error::io("trace.dat writer", e))?;
        self.stats.bytes = n;
        Ok(self.stats.clone())
    }

    fn ncpus(&self) -> u32 {
        self.opts
            .cpus
            .unwrap_or(0)
            .max(self.cpus.iter().map(|c| c.cpu + 1).max().unwrap_or(0))
            .max(1)
    }

    fn header_info(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"header_page\0");
        b.extend_from_slice(&(HEADER_PAGE.len() as u64).fe());
        b.extend_from_slice(HEADER_PAGE.as_bytes());
        b.extend_from_slice(b"header_event\0");
        b.extend_from_slice(&(HEADER_EVENT.len() as u64).fe());
        b.extend_from_slice(HEADER_EVENT.as_bytes());
        b
    }

    fn ftrace_formats(&self) -> Vec<u8> {
        let fs: Vec<&EventFormat> = self
            .formats
            .iter()
            .filter(|f| f.system == "ftrace")
            .collect();
        let mut b = (fs.len() as u32).fe().to_vec();
        for f in fs {
            b.extend_from_slice(&(f.text.len() as u64).fe());
            b.extend_from_slice(f.text.as_bytes());
        }
        b
    }

    fn event_formats(&self) -> Vec<u8> {
        let mut systems: BTreeMap<&str, Vec<&EventFormat>> = BTreeMap::new();
        for f in self.formats.iter().filter(|f| f.system != "ftrace") {
            systems.entry(&f.system).or_default().push(f);
        }
        let mut b = (systems.len() as u32).fe().to_vec();
        for (s, fs) in systems {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
            b.extend_from_slice(&(fs.len() as u32).fe());
            for f in fs {
                b.extend_from_slice(&(f.text.len() as u64).fe());
                b.extend_from_slice(f.text.as_bytes());
            }
        }
        b
    }

    fn cmdlines_text(&self) -> Vec<u8> {
        let mut t = String::new();
        for (pid, comm) in &self.cmdlines {
            t.push_str(&format!("{pid} {comm}\n"));
        }
        t.into_bytes()
    }

    fn clock(&self) -> String {
        self.opts.clock.clone().unwrap_or_else(|| "local".into())
    }

    /// Simple options (id, data) common to v6 and v7.
    fn plain_options(&self) -> Vec<(u16, Vec<u8>)> {
        let mut v = Vec::new();
        v.push((4u16, format!("[{}]\n\0", self.clock()).into_bytes()));
        if let Some(u) = &self.opts.uname {
            v.push((5, format!("{u}\0").into_bytes()));
        }
        v.push((
            9,
            format!("nmitrace {}\0", env!("CARGO_PKG_VERSION")).into_bytes(),
        ));
        v.push((8, self.ncpus().fe().to_vec()));
        v
    }

    /// Per-CPU data sizes as stored (compressed: chunk count + chunks).
    fn cpu_sizes(&self, b: usize) -> Vec<u64> {
        (0..self.ncpus())
            .map(|i| {
                let len = self
                    .lanes
                    .get(&(b, i))
                    .map_or(0, |&l| self.cpus[l].spool.len);
                if self.opts.compression != Compression::None {
                    4 + len
                } else {
                    len
                }
            })
            .collect()
    }

    fn copy_cpu(&mut self, b: usize, cpu: usize, out: &mut W) -> io::Result<u64> {
        let compressed = self.opts.compression != Compression::None;
        let lane = self.lanes.get(&(b, cpu as u32)).copied();
        let mut n = 0;
        if compressed {
            let chunks = lane.map_or(0, |l| self.cpus[l].spool.chunks);
            out.write_all(&chunks.fe())?;
            n += 4;
        }
        if let Some(c) = lane.map(|l| &mut self.cpus[l]) {
            if let Some(bw) = c.spool.file.take() {
                let mut f = bw.into_inner().map_err(|e| e.into_error())?;
                f.rewind()?;
                n += io::copy(&mut (&mut f).take(c.spool.len), out)?;
            }
        }
        Ok(n)
    }

    fn layout(&mut self, out: &mut W) -> io::Result<u64> {
        let ps = self.opts.page_size as u64;
        let align = |x: u64| x.div_ceil(ps) * ps;
        let ncpus = self.ncpus();
        let nbufs = self.buf_names.len();
        let sizes: Vec<Vec<u64>> = (0..nbufs).map(|b| self.cpu_sizes(b)).collect();
        let compressed = self.opts.compression != Compression::None;
        let mut pos: u64 = 0;
        let emit = |out: &mut W, b: &[u8], pos: &mut u64| -> io::Result<()> {
            out.write_all(b)?;
            *pos += b.len() as u64;
            Ok(())
        };
        // lay out the CPU data of every buffer from `start`: (offsets per buffer, end)
        let place = |mut off: u64, per_buffer_head: u64| -> (Vec<u64>, Vec<Vec<u64>>, u64) {
            let mut heads = Vec::new();
            let mut offs = Vec::new();
            for sz in &sizes {
                heads.push(off);
                off = align(off + per_buffer_head);
                let mut o = Vec::new();
                for s in sz {
                    o.push(off);
                    off = align(off + s);
                }
                offs.push(o);
            }
            (heads, offs, off)
        };
        let mut head = Vec::new();
        head.extend_from_slice(super::header::MAGIC);
        head.extend_from_slice(if self.opts.version == 7 {
            b"7\0"
        } else {
            b"6\0"
        });
        head.push(self.opts.big_endian as u8); // endianness
        head.push(8); // long size
        head.extend_from_slice(&self.opts.page_size.fe());
        if self.opts.version == 6 {
            head.extend_from_slice(&self.header_info());
            head.extend_from_slice(&self.ftrace_formats());
            head.extend_from_slice(&self.event_formats());
            head.extend_from_slice(&(self.kallsyms.len() as u32).fe());
            head.extend_from_slice(&self.kallsyms);
            head.extend_from_slice(&(self.printk.len() as u32).fe());
            head.extend_from_slice(&self.printk);
            let cl = self.cmdlines_text();
            head.extend_from_slice(&(cl.len() as u64).fe());
            head.extend_from_slice(&cl);
            head.extend_from_slice(&ncpus.fe());
            head.extend_from_slice(b"options  \0");
            let opts_at = head.len();
            let build_opts = |inst_heads: &[u64]| -> Vec<u8> {
                let mut o = Vec::new();
                let mut add = |id: u16, d: &[u8]| {
                    o.extend_from_slice(&id.fe());
                    o.extend_from_slice(&(d.len() as u32).fe());
                    o.extend_from_slice(d);
                };
                for (id, d) in self.plain_options() {
                    add(id, &d);
                }
                // instances: BUFFER option → "flyrecord" + their CPU table
                for (b, name) in self.buf_names.iter().enumerate().skip(1) {
                    let mut d = inst_heads.get(b).copied().unwrap_or(0).fe().to_vec();
                    d.extend_from_slice(name.as_bytes());
                    d.push(0);
                    add(3, &d);
                }
                o.extend_from_slice(&0u16.fe());
                o
            };
            let opts_len = build_opts(&vec![0; nbufs]).len() as u64;
            // top: "flyrecord" + table right after the options; instances: own heads
            let top_table = opts_at as u64 + opts_len + 10;
            let table = 16 * ncpus as u64;
            let (mut heads, mut offs, _) = place(top_table, table);
            // instances' heads are placed after the top data; recompute with the
            // instance heads carrying "flyrecord\0" + table
            let top_end = offs[0].last().map_or(align(top_table + table), |&o| {
                align(o + sizes[0].last().copied().unwrap_or(0))
            });
            let mut off = top_end;
            for b in 1..nbufs {
                heads[b] = off;
                off = align(off + 10 + table);
                for (c, s) in sizes[b].iter().enumerate() {
                    offs[b][c] = off;
                    off = align(off + s);
                }
            }
            head.extend_from_slice(&build_opts(&heads));
            head.extend_from_slice(b"flyrecord\0");
            for (o, s) in offs[0].iter().zip(&sizes[0]) {
                head.extend_from_slice(&o.fe());
                head.extend_from_slice(&s.fe());
            }
            emit(out, &head, &mut pos)?;
            for b in 0..nbufs {
                if b > 0 {
                    emit(out, &vec![0; (heads[b] - pos) as usize], &mut pos)?;
                    let mut t = b"flyrecord\0".to_vec();
                    for (o, s) in offs[b].iter().zip(&sizes[b]) {
                        t.extend_from_slice(&o.fe());
                        t.extend_from_slice(&s.fe());
                    }
                    emit(out, &t, &mut pos)?;
                }
                for (c, o) in offs[b].clone().iter().enumerate() {
                    emit(out, &vec![0; (o - pos) as usize], &mut pos)?;
                    pos += self.copy_cpu(b, c, out)?;
                }
            }
            return Ok(pos);
        }
        // v7
        let (cname, cver) = if compressed {
            (
                "zstd".to_string(),
                zstd::zstd_safe::version_string().to_string(),
            )
        } else {
            ("none".to_string(), String::new())
        };
        head.extend_from_slice(cname.as_bytes());
        head.push(0);
        head.extend_from_slice(cver.as_bytes());
        head.push(0);
        let opt_ptr_at = head.len();
        head.extend_from_slice(&0u64.fe());
        let section = |id: u16, flags: u16, body: &[u8]| -> Vec<u8> {
            let mut s = Vec::with_capacity(16 + body.len());
            s.extend_from_slice(&id.fe());
            s.extend_from_slice(&flags.fe());
            s.extend_from_slice(&0u32.fe());
            s.extend_from_slice(&(body.len() as u64).fe());
            s.extend_from_slice(body);
            s
        };
        let cl = self.cmdlines_text();
        let mut clb = (cl.len() as u64).fe().to_vec();
        clb.extend_from_slice(&cl);
        let metas: Vec<(u16, Vec<u8>)> = vec![
            (16, self.header_info()),
            (17, self.ftrace_formats()),
            (18, self.event_formats()),
            (
                19,
                [&(self.kallsyms.len() as u32).fe()[..], &self.kallsyms].concat(),
            ),
            (
                20,
                [&(self.printk.len() as u32).fe()[..], &self.printk].concat(),
            ),
            (21, clb),
        ];
        let mut sec_offs = Vec::new();
        let mut body = Vec::new();
        let base = head.len() as u64;
        let level = self.opts.level;
        for (id, b) in &metas {
            sec_offs.push((*id, base + body.len() as u64));
            // big metadata (formats, kallsyms) is compressed like trace-cmd does
            let z = if compressed && b.len() > 4096 {
                zstd::bulk::compress(b, level).ok()
            } else {
                None
            };
            match z {
                Some(z) => {
                    let mut c = Vec::with_capacity(z.len() + 8);
                    c.extend_from_slice(&(z.len() as u32).fe());
                    c.extend_from_slice(&(b.len() as u32).fe());
                    c.extend_from_slice(&z);
                    body.extend_from_slice(&section(*id, 1, &c));
                }
                None => body.extend_from_slice(&section(*id, 0, b)),
            }
        }
        let opt_off = base + body.len() as u64;
        let clock = self.clock();
        let build_opts = |fly_offs: &[u64], cpu_offs: &[Vec<u64>]| -> Vec<u8> {
            let mut o = Vec::new();
            let mut add = |id: u16, d: &[u8]| {
                o.extend_from_slice(&id.fe());
                o.extend_from_slice(&(d.len() as u32).fe());
                o.extend_from_slice(d);
            };
            for (id, off) in &sec_offs {
                add(*id, &off.fe());
            }
            for (id, d) in self.plain_options() {
                add(id, &d);
            }
            for (bi, name) in self.buf_names.iter().enumerate() {
                let mut b = fly_offs[bi].fe().to_vec();
                b.extend_from_slice(name.as_bytes());
                b.push(0);
                b.extend_from_slice(clock.as_bytes());
                b.push(0);
                b.extend_from_slice(&self.opts.page_size.fe());
                b.extend_from_slice(&ncpus.fe());
                for (i, off) in cpu_offs[bi].iter().enumerate() {
                    b.extend_from_slice(&(i as u32).fe());
                    b.extend_from_slice(&off.fe());
                    // trace-cmd records compressed sizes without the 4-byte chunk count
                    let s = sizes[bi][i];
                    let s = if compressed { s.saturating_sub(4) } else { s };
                    b.extend_from_slice(&s.fe());
                }
                add(3, &b);
            }
            add(0, &0u64.fe());
            o
        };
        let zero_offs: Vec<Vec<u64>> = sizes.iter().map(|v| vec![0; v.len()]).collect();
        let opts_len = section(0, 0, &build_opts(&vec![0; nbufs], &zero_offs)).len() as u64;
        // each buffer: a flyrecord section header, padding, its CPU data
        let (fly_heads, cpu_offs, _) = place(opt_off + opts_len, 16);
        head[opt_ptr_at..opt_ptr_at + 8].copy_from_slice(&opt_off.fe());
        emit(out, &head, &mut pos)?;
        emit(out, &body, &mut pos)?;
        emit(
            out,
            &section(0, 0, &build_opts(&fly_heads, &cpu_offs)),
            &mut pos,
        )?;
        for b in 0..nbufs {
            emit(out, &vec![0; (fly_heads[b] - pos) as usize], &mut pos)?;
            let end = cpu_offs[b].last().map_or(fly_heads[b] + 16, |&o| {
                o + sizes[b].last().copied().unwrap_or(0)
            });
            // the section size covers the padding and all CPU data
            let mut fh = Vec::new();
            fh.extend_from_slice(&3u16.fe());
            fh.extend_from_slice(&(if compressed { 1u16 } else { 0 }).fe());
            fh.extend_from_slice(&0u32.fe());
            fh.extend_from_slice(&(end - (fly_heads[b] + 16)).fe());
            emit(out, &fh, &mut pos)?;
            for (c, o) in cpu_offs[b].iter().enumerate() {
                emit(out, &vec![0; (o - pos) as usize], &mut pos)?;
                pos += self.copy_cpu(b, c, out)?;
            }
        }
        Ok(pos)
    }
}

impl<W: Write> Sink for TraceDatWriter<W> {
    fn event(&mut self, ev: &Event<'_>) -> crate::Flow {
        BIG.with(|b| b.set(self.opts.big_endian));
        self.started = true;
        if self.error.is_some() {
            // The output failed (a full disk): stop reading; finish() reports it.
            return crate::STOP;
        }
        let fi = match ev.system {
            Some(s) => self
                .by_sys_name
                .get(&(s.to_string(), ev.name.to_string()))
                .copied(),
            None => None,
        }
        .or_else(|| self.by_name.get(ev.name).copied());
        let Some(fi) = fi else {
            *self
                .stats
                .skipped
                .entry(format!("{}:{}", ev.system.unwrap_or("?"), ev.name))
                .or_default() += 1;
            return crate::CONTINUE;
        };
        if let Some(c) = ev.comm {
            if ev.pid > 0 && !c.starts_with('<') && !self.cmdlines.contains_key(&ev.pid) {
                self.cmdlines.insert(ev.pid, c.to_string());
            }
        }
        let n = self.encode(fi, ev);
        if ev.cpu > 1 << 14 {
            *self
                .stats
                .skipped
                .entry("(cpu number too large)".into())
                .or_default() += 1;
            return crate::CONTINUE;
        }
        let b = match ev.instance {
            None | Some("") => 0,
            Some(name) => match self.buf_names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.buf_names.push(name.to_string());
                    self.buf_names.len() - 1
                }
            },
        };
        let lane = self.lane(b, ev.cpu);
        self.push_record(lane, ev.ts_ns, n);
        crate::CONTINUE
    }

    fn notice(&mut self, n: &Notice) {
        BIG.with(|b| b.set(self.opts.big_endian));
        if let Notice::LostEvents { cpu, count, .. } = n {
            if *cpu > 1 << 14 {
                return;
            }
            let lane = self.lane(0, *cpu);
            self.flush_page(lane);
            let c = &mut self.cpus[lane as usize];
            c.pending_lost = Some(c.pending_lost.unwrap_or(0) + count.unwrap_or(0));
            self.stats.lost_event_markers += 1;
        }
    }
}

/// A number printed as text: decimal, `0x` hex, bare hex when the print
/// fmt says `%x`/`%p` (hashed pointers), `true`/`false`, task states.
fn text_number(s: &str, hex: bool, field: &str) -> Option<u64> {
    let t = s
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(',');
    if let Some(v) = crate::event::parse_int(t) {
        if !(hex && !t.starts_with("0x") && !t.starts_with('-')) {
            return Some(v as i64 as u64);
        }
    }
    if hex {
        if let Ok(v) = u64::from_str_radix(t.trim_start_matches("0x"), 16) {
            return Some(v);
        }
    }
    match t {
        "true" => return Some(1),
        "false" => return Some(0),
        _ => {}
    }
    if field == "prev_state" {
        return task_state(t);
    }
    None
}

/// `R`, `S`, `D`, `R+`, `S|D`… → the kernel's prev_state number.
fn task_state(s: &str) -> Option<u64> {
    let s = s.trim();
    let mut v = 0u64;
    for part in s.split('|') {
        let (p, plus) = match part.strip_suffix('+') {
            Some(p) => (p, true),
            None => (part, false),
        };
        if plus {
            v |= 0x100;
        }
        for ch in p.chars() {
            v |= match ch {
                'R' => 0,
                'S' => 0x01,
                'D' => 0x02,
                'T' => 0x04,
                't' => 0x08,
                'X' => 0x10,
                'Z' => 0x20,
                'P' => 0x40,
                'I' => 0x80,
                _ => return None,
            };
        }
    }
    Some(v)
}

/// Split the carried formats file into (system, format text).
fn split_formats(all: &str) -> Vec<(&str, &str)> {
    let mut v = Vec::new();
    let mut rest = all;
    while let Some(i) = if rest.starts_with("system: ") {
        Some(0)
    } else {
        rest.find("\nsystem: ").map(|i| i + 1)
    } {
        let after = &rest[i + 8..];
        let nl = after.find('\n').unwrap_or(after.len());
        let sys = after[..nl].trim();
        let body = &after[(nl + 1).min(after.len())..];
        let end = body.find("\nsystem: ").map(|e| e + 1).unwrap_or(body.len());
        v.push((sys, &body[..end]));
        rest = &body[end..];
    }
    v
}

/// Convert any trace into a trace.dat: events go through the writer; for
/// a trace.dat source its own format files are used (every event kept),
/// otherwise the carried formats of the modelled events.
pub fn convert<W: Write>(
    path: &std::path::Path,
    out: W,
    mut opts: WriterOptions,
) -> Result<WriteStats> {
    let name = path.display().to_string();
    let input = crate::Input::open(path)?;
    let format = crate::detect::detect(&name, input.head())?;
    if !matches!(format, crate::Format::TraceDat { .. }) {
        let mut trace = crate::Trace::from_input(name, input)?;
        let _ = trace.probe();
        if opts.uname.is_none() {
            opts.uname = trace.info.kernel.as_ref().map(|k| {
                format!(
                    "Linux nmitrace {k} {}",
                    trace.info.arch.clone().unwrap_or_default()
                )
            });
        }
        if opts.clock.is_none() {
            opts.clock = trace.info.clock.clone();
        }
        let mut w = TraceDatWriter::new(out, opts);
        trace.run(&mut w)?;
        return w.finish();
    }
    // a trace.dat (file or stdin): read it once, keep its formats and cmdlines
    let bytes = input.into_bytes()?;
    let meta = super::header::parse_full(&name, &bytes)?;
    if opts.uname.is_none() {
        opts.uname = meta.uname.clone();
    }
    if opts.clock.is_none() {
        opts.clock = meta.clock.clone();
    }
    let mut w = TraceDatWriter::new(out, opts);
    w.add_formats_from(&meta)?;
    for (pid, comm) in &meta.cmdlines {
        w.cmdlines.insert(*pid, comm.clone());
    }
    drop(meta);
    super::run_bytes(&name, &bytes, &mut w, None)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_formats_parse() {
        let v = split_formats(BUILTIN);
        assert_eq!(v.len(), BUILTIN.matches("\nsystem: ").count());
        for (s, t) in v {
            EventFormat::parse(s, t).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn task_states() {
        assert_eq!(task_state("R"), Some(0));
        assert_eq!(task_state("R+"), Some(256));
        assert_eq!(task_state("S"), Some(1));
        assert_eq!(task_state("D|K"), None);
    }
}
