//! The trace.dat file header and metadata: the v6 fixed layout, the v7
//! sections and option chains, saved cmdlines, buffers (instances) and the
//! per-CPU data locations.
//!
//! Everything here reads from one in-memory byte slice (an mmap or a
//! decompressed buffer) through [`Cursor`], whose every read is bounds
//! checked and turns a short read into an error that names the offset and
//! what was expected there.

use super::compress::{self, Compression};
use super::format::{EventFormat, HeaderPage};
use crate::error::{Error, Result};
use std::collections::HashMap;

pub const MAGIC: &[u8] = b"\x17\x08\x44tracing";

/// Hard caps on what sizes read from the file may make us allocate or walk.
const MAX_FORMATS: u32 = 1 << 16;
const MAX_SYSTEMS: u32 = 1 << 14;
const MAX_OPTIONS_SECTIONS: usize = 4096;
const MAX_CPUS: u32 = 1 << 16;

/// Byte order of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

impl Endian {
    #[inline]
    pub fn u16(self, b: [u8; 2]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        }
    }
    #[inline]
    pub fn u32(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }
    #[inline]
    pub fn u64(self, b: [u8; 8]) -> u64 {
        match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }
    /// Read an unsigned number of 1, 2, 4 or 8 bytes from the start of `b`
    /// (which the caller has checked is long enough).
    #[inline(always)]
    pub fn read_uint(self, b: &[u8], size: usize) -> u64 {
        match size {
            1 => b[0] as u64,
            2 => self.u16([b[0], b[1]]) as u64,
            4 => self.u32([b[0], b[1], b[2], b[3]]) as u64,
            8 => self.u64([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            _ => 0,
        }
    }
}

/// A bounds-checked reader over a byte slice. `base` is the file offset of
/// `buf[0]` (differs from 0 for decompressed sections, where it is the
/// section's offset), used only for error messages.
pub struct Cursor<'a> {
    pub name: &'a str,
    pub buf: &'a [u8],
    pub pos: usize,
    pub base: u64,
    pub endian: Endian,
}

impl<'a> Cursor<'a> {
    pub fn new(name: &'a str, buf: &'a [u8], base: u64, endian: Endian) -> Cursor<'a> {
        Cursor {
            name,
            buf,
            pos: 0,
            base,
            endian,
        }
    }

    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub fn err(&self, what: impl Into<String>) -> Error {
        Error::at(self.name, self.offset(), what.into())
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn seek(&mut self, pos: u64, what: &str) -> Result<()> {
        if pos > self.buf.len() as u64 {
            return Err(Error::at(
                self.name,
                self.base + pos,
                format!("{what} lies beyond the end of the data ({} bytes); the file is truncated or corrupt", self.buf.len()),
            ));
        }
        self.pos = pos as usize;
        Ok(())
    }

    pub fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(self.err(format!(
                "expected {what} ({n} bytes), but only {} bytes are left; the file is truncated or the size is corrupt",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.bytes(2, what)?;
        Ok(self.endian.u16([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.bytes(4, what)?;
        Ok(self.endian.u32([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.bytes(8, what)?;
        Ok(self
            .endian
            .u64([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A NUL-terminated string (the NUL is consumed, not returned).
    pub fn cstr(&mut self, what: &str) -> Result<&'a str> {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let Some(end) = memchr::memchr(0, rest) else {
            return Err(self.err(format!(
                "expected {what} (a NUL-terminated string), found no NUL before the end"
            )));
        };
        let s = std::str::from_utf8(&rest[..end])
            .map_err(|_| self.err(format!("expected {what}, found bytes that are not UTF-8")))?;
        self.pos += end + 1;
        Ok(s)
    }

    pub fn expect(&mut self, lit: &[u8], what: &str) -> Result<()> {
        let at = self.offset();
        let b = self.bytes(lit.len() as u64, what)?;
        if b != lit {
            return Err(Error::at(
                self.name,
                at,
                format!(
                    "expected {what} {:?}, found {:?}",
                    String::from_utf8_lossy(lit),
                    String::from_utf8_lossy(b)
                ),
            ));
        }
        Ok(())
    }
}

/// A cheap hasher for pid keys (multiplicative; pids are not hostile input
/// that could hurt us beyond a slower map).
#[derive(Clone, Copy, Default)]
pub struct PidHash;
pub struct PidHasher(u64);
impl std::hash::BuildHasher for PidHash {
    type Hasher = PidHasher;
    fn build_hasher(&self) -> PidHasher {
        PidHasher(0)
    }
}
impl std::hash::Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i32(&mut self, i: i32) {
        self.0 = (i as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Where one CPU's ring-buffer pages are in the file.
#[derive(Clone, Debug)]
pub struct CpuData {
    pub cpu: u32,
    pub offset: u64,
    pub size: u64,
}

/// One trace buffer: the top-level one (`name == ""`) or an instance.
#[derive(Clone, Debug)]
pub struct Buffer {
    pub name: String,
    pub clock: Option<String>,
    pub page_size: u32,
    /// Per-CPU data is stored as compressed chunks (v7 with compression).
    pub compressed: bool,
    pub cpus: Vec<CpuData>,
    /// Latency (text) buffers are not decoded.
    pub latency: bool,
}

/// Everything read from the file before the event data.
pub struct Meta {
    pub version: u32,
    pub endian: Endian,
    pub long_size: u8,
    pub page_size: u32,
    pub compression: Compression,
    pub header_page: HeaderPage,
    /// Shared, so that evidence kept past an event can hold its format.
    pub formats: Vec<std::sync::Arc<EventFormat>>,
    /// common_type → index in `formats`.
    pub by_id: HashMap<u32, usize>,
    pub cmdlines: HashMap<i32, String, PidHash>,
    pub uname: Option<String>,
    pub clock: Option<String>,
    pub cpus: u32,
    pub buffers: Vec<Buffer>,
    /// OFFSET option: added to each timestamp.
    pub ts_offset: i64,
    /// TSC2NSEC option: (mult, shift, offset).
    pub tsc2nsec: Option<(u32, u32, u64)>,
    pub warnings: Vec<(u64, String)>,
    pub file_len: u64,
    /// kallsyms and printk formats, kept only by [`parse_full`] (for copying).
    pub kallsyms: Option<Vec<u8>>,
    /// Where the kallsyms are: v6 the file offset of their size field, v7
    /// the offset of their section ([`read_kallsyms`]).
    pub kallsyms_at: Option<u64>,
    pub printk: Option<Vec<u8>>,
    keep_extras: bool,
}

impl Meta {
    /// Kernel release from the UNAME option (`Linux host 6.18.44 ... x86_64`).
    pub fn kernel(&self) -> Option<String> {
        self.uname
            .as_deref()
            .and_then(|u| u.split_whitespace().nth(2))
            .map(str::to_string)
    }
    pub fn arch(&self) -> Option<String> {
        let u = self.uname.as_deref()?;
        let toks: Vec<&str> = u.split_whitespace().collect();
        if toks.len() >= 4 {
            toks.last().map(|s| s.to_string())
        } else {
            None
        }
    }

    /// The machine, when UNAME is missing (v6 files have no options): from
    /// the event systems the kernel had (`irq_vectors`, `x86_fpu`,
    /// `exceptions`, `nmi` exist only on x86), else from kallsyms markers
    /// (`el0_svc` arm64, `vector_swi` arm, `entry_SYSCALL_64` x86_64,
    /// `entry_INT80_32` x86_32).
    pub fn arch_guess(&self, name: &str, buf: &[u8]) -> Option<(&'static str, &'static str)> {
        const X86_SYSTEMS: &[&str] = &["irq_vectors", "x86_fpu", "exceptions", "nmi"];
        if self
            .formats
            .iter()
            .any(|f| X86_SYSTEMS.contains(&f.system.as_str()))
        {
            let a = if self.long_size == 4 {
                "i686"
            } else {
                "x86_64"
            };
            return Some((a, "trace.dat event formats (x86-only tracepoint systems)"));
        }
        let syms = read_kallsyms(name, buf, self)?;
        const MARKS: &[(&str, &str)] = &[
            (" el0_svc\n", "aarch64"),
            (" __arm64_sys_read\n", "aarch64"),
            (" entry_SYSCALL_64\n", "x86_64"),
            (" entry_INT80_32\n", "i686"),
            (" vector_swi\n", "arm"),
            (" handle_exception\n", "riscv64"),
        ];
        MARKS
            .iter()
            .find(|(m, _)| memchr::memmem::find(&syms, m.as_bytes()).is_some())
            .map(|(_, a)| (*a, "trace.dat kallsyms"))
    }

    pub fn format_for(&self, id: u32) -> Option<&EventFormat> {
        self.by_id.get(&id).map(|&i| &*self.formats[i])
    }
}

/// Parse the header and metadata of a trace.dat held in `buf`.
pub fn parse(name: &str, buf: &[u8]) -> Result<Meta> {
    parse_opts(name, buf, false)
}

/// [`parse`], also keeping the kallsyms and printk formats.
pub fn parse_full(name: &str, buf: &[u8]) -> Result<Meta> {
    parse_opts(name, buf, true)
}

fn parse_opts(name: &str, buf: &[u8], keep_extras: bool) -> Result<Meta> {
    let mut c = Cursor::new(name, buf, 0, Endian::Little);
    c.expect(MAGIC, "trace.dat magic")?;
    let ver = c.cstr("the file version string")?;
    let version: u32 = ver.trim().parse().map_err(|_| {
        Error::at(
            name,
            10,
            format!("expected a file version number, found {ver:?}"),
        )
    })?;
    if version != 6 && version != 7 {
        return Err(Error::at(
            name,
            10,
            format!("trace.dat file version {version} is not supported, expected 6 or 7"),
        ));
    }
    let e = c.u8("the endianness byte")?;
    c.endian = match e {
        0 => Endian::Little,
        1 => Endian::Big,
        x => return Err(c.err(format!("expected endianness 0 or 1, found {x}"))),
    };
    let long_size = c.u8("the long size byte")?;
    if long_size != 4 && long_size != 8 {
        return Err(c.err(format!("expected a long size of 4 or 8, found {long_size}")));
    }
    let page_size = c.u32("the page size")?;
    if !(256..=(1 << 24)).contains(&page_size) {
        return Err(c.err(format!(
            "expected a page size between 256 bytes and 16 MiB, found {page_size}"
        )));
    }
    let mut meta = Meta {
        version,
        endian: c.endian,
        long_size,
        page_size,
        compression: Compression::None,
        header_page: HeaderPage::default_for(long_size),
        formats: Vec::new(),
        by_id: HashMap::new(),
        cmdlines: HashMap::default(),
        uname: None,
        clock: None,
        cpus: 0,
        buffers: Vec::new(),
        ts_offset: 0,
        tsc2nsec: None,
        warnings: Vec::new(),
        file_len: buf.len() as u64,
        kallsyms: None,
        kallsyms_at: None,
        printk: None,
        keep_extras,
    };
    if version == 6 {
        parse_v6(&mut c, &mut meta)?;
    } else {
        parse_v7(&mut c, &mut meta)?;
    }
    for (i, f) in meta.formats.iter().enumerate() {
        meta.by_id.entry(f.id).or_insert(i);
    }
    if meta.cpus == 0 {
        meta.cpus = meta
            .buffers
            .iter()
            .flat_map(|b| b.cpus.iter().map(|c| c.cpu + 1))
            .max()
            .unwrap_or(0);
    }
    Ok(meta)
}

fn parse_header_info(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    c.expect(b"header_page\0", "the \"header_page\" marker")?;
    let n = c.u64("the header_page size")?;
    let hp = c.bytes(n, "the header_page format")?;
    meta.header_page = HeaderPage::parse(&utf8_text(hp), meta.long_size);
    c.expect(b"header_event\0", "the \"header_event\" marker")?;
    let n = c.u64("the header_event size")?;
    c.bytes(n, "the header_event format")?;
    Ok(())
}

fn parse_one_format(c: &mut Cursor, meta: &mut Meta, system: &str) -> Result<()> {
    let at = c.offset();
    let n = c.u64("an event format file size")?;
    let text = c.bytes(n, "an event format file")?;
    match EventFormat::parse_lazy(system, &utf8_text(text)) {
        Ok(f) => meta.formats.push(std::sync::Arc::new(f)),
        Err(msg) => meta.warnings.push((
            at,
            format!(
                "event format in system {system} not understood ({msg}); its events are skipped"
            ),
        )),
    }
    Ok(())
}

fn parse_ftrace_formats(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    let count = c.u32("the number of ftrace event formats")?;
    if count > MAX_FORMATS {
        return Err(c.err(format!(
            "expected at most {MAX_FORMATS} ftrace formats, found {count}"
        )));
    }
    for _ in 0..count {
        parse_one_format(c, meta, "ftrace")?;
    }
    Ok(())
}

fn parse_event_formats(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    let systems = c.u32("the number of event systems")?;
    if systems > MAX_SYSTEMS {
        return Err(c.err(format!(
            "expected at most {MAX_SYSTEMS} event systems, found {systems}"
        )));
    }
    for _ in 0..systems {
        let sys = c.cstr("an event system name")?.to_string();
        let count = c.u32("the number of events in a system")?;
        if count > MAX_FORMATS {
            return Err(c.err(format!(
                "expected at most {MAX_FORMATS} events in system {sys}, found {count}"
            )));
        }
        for _ in 0..count {
            parse_one_format(c, meta, &sys)?;
        }
    }
    Ok(())
}

fn parse_cmdlines(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    let n = c.u64("the saved cmdlines size")?;
    let text = c.bytes(n, "the saved cmdlines")?;
    for line in text.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\0');
        let Some((pid, comm)) = line.trim_start().split_once(' ') else {
            continue;
        };
        if let Ok(pid) = pid.parse::<i32>() {
            meta.cmdlines.insert(pid, comm.to_string());
        }
    }
    Ok(())
}

fn parse_v6(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    parse_header_info(c, meta)?;
    parse_ftrace_formats(c, meta)?;
    parse_event_formats(c, meta)?;
    meta.kallsyms_at = Some(c.offset());
    let n = c.u32("the kallsyms size")?;
    let k = c.bytes(n as u64, "the kallsyms")?;
    let n = c.u32("the printk formats size")?;
    let p = c.bytes(n as u64, "the printk formats")?;
    if meta.keep_extras {
        meta.kallsyms = Some(k.to_vec());
        meta.printk = Some(p.to_vec());
    }
    parse_cmdlines(c, meta)?;
    let cpus = c.u32("the number of CPUs")?;
    if cpus > MAX_CPUS {
        return Err(c.err(format!("expected at most {MAX_CPUS} CPUs, found {cpus}")));
    }
    meta.cpus = cpus;
    let mut kind = c.bytes(10, "\"options\", \"flyrecord\" or \"latency\"")?;
    let mut instances: Vec<(String, u64)> = Vec::new();
    if kind.starts_with(b"options") {
        loop {
            let id = c.u16("an option id")?;
            if id == 0 {
                break;
            }
            let size = c.u32("an option size")?;
            let data = c.bytes(size as u64, "option data")?;
            handle_option(c, meta, id, data, &mut instances, false)?;
        }
        kind = c.bytes(10, "\"flyrecord\" or \"latency\"")?;
    }
    if kind.starts_with(b"latency") {
        meta.warnings.push((
            c.offset(),
            "latency (text) trace data is not decoded".into(),
        ));
        return Ok(());
    }
    if !kind.starts_with(b"flyrecord") {
        return Err(Error::at(
            c.name,
            c.offset() - 10,
            format!(
                "expected \"flyrecord\" or \"latency\", found {:?}",
                String::from_utf8_lossy(kind)
            ),
        ));
    }
    let top = read_v6_cpus(c, meta, cpus)?;
    meta.buffers.push(Buffer {
        name: String::new(),
        clock: meta.clock.clone(),
        page_size: meta.page_size,
        compressed: false,
        cpus: top,
        latency: false,
    });
    for (name, off) in instances {
        let mut ic = Cursor::new(c.name, c.buf, 0, c.endian);
        let r = (|| -> Result<Vec<CpuData>> {
            ic.seek(off, "a buffer instance")?;
            // as after the CPU count: optional options, then "flyrecord"
            let mut kind = ic.bytes(10, "\"options\" or \"flyrecord\" of a buffer instance")?;
            if kind.starts_with(b"options") {
                loop {
                    let id = ic.u16("an option id")?;
                    if id == 0 {
                        break;
                    }
                    let size = ic.u32("an option size")?;
                    ic.bytes(size as u64, "option data")?;
                }
                kind = ic.bytes(10, "\"flyrecord\" of a buffer instance")?;
            }
            if !kind.starts_with(b"flyrecord") {
                return Err(ic.err("expected \"flyrecord\" at a buffer instance"));
            }
            read_v6_cpus(&mut ic, meta, cpus)
        })();
        match r {
            Ok(cpus) => meta.buffers.push(Buffer {
                name,
                clock: meta.clock.clone(),
                page_size: meta.page_size,
                compressed: false,
                cpus,
                latency: false,
            }),
            Err(e) => meta.warnings.push((
                off,
                format!("buffer instance {name:?} unreadable: {}", e.message),
            )),
        }
    }
    Ok(())
}

fn read_v6_cpus(c: &mut Cursor, meta: &mut Meta, cpus: u32) -> Result<Vec<CpuData>> {
    let mut v = Vec::with_capacity(cpus.min(1024) as usize);
    for cpu in 0..cpus {
        let offset = c.u64("a CPU data offset")?;
        let size = c.u64("a CPU data size")?;
        v.push(clip_cpu(meta, CpuData { cpu, offset, size }));
    }
    Ok(v)
}

/// Truncated files: keep the part of a CPU's data that is present, warn.
fn clip_cpu(meta: &mut Meta, mut d: CpuData) -> CpuData {
    let end = d.offset.saturating_add(d.size);
    if d.size > 0 && end > meta.file_len {
        meta.warnings.push((
            d.offset,
            format!(
                "CPU {} data needs {} bytes up to offset {end} but the file has {} bytes: file truncated, reading the events present",
                d.cpu, d.size, meta.file_len
            ),
        ));
        d.size = meta.file_len.saturating_sub(d.offset);
    }
    d
}

/// Handle one option (v6 options list or v7 options section).
fn handle_option(
    c: &Cursor,
    meta: &mut Meta,
    id: u16,
    data: &[u8],
    instances: &mut Vec<(String, u64)>,
    v7: bool,
) -> Result<()> {
    let e = c.endian;
    let cstr = |d: &[u8]| -> String {
        let end = memchr::memchr(0, d).unwrap_or(d.len());
        String::from_utf8_lossy(&d[..end]).into_owned()
    };
    match id {
        // OFFSET
        7 => {
            let s = cstr(data);
            let s = s.trim();
            let v = if let Some(h) = s.strip_prefix("0x") {
                i64::from_str_radix(h, 16).ok()
            } else {
                s.parse::<i64>().ok()
            };
            if let Some(v) = v {
                meta.ts_offset = meta.ts_offset.wrapping_add(v);
            }
        }
        // BUFFER
        3 if !v7 && data.len() >= 8 => {
            let off = e.u64(data[..8].try_into().unwrap());
            instances.push((cstr(&data[8..]), off));
        }
        // TRACECLOCK
        4 => {
            let s = cstr(data);
            if let (Some(a), Some(b)) = (s.find('['), s.find(']')) {
                if a < b {
                    meta.clock = Some(s[a + 1..b].to_string());
                }
            }
        }
        // UNAME
        5 => meta.uname = Some(cstr(data)),
        // CPUCOUNT
        8 if data.len() >= 4 => {
            let n = e.u32(data[..4].try_into().unwrap());
            if n <= MAX_CPUS {
                meta.cpus = n;
            }
        }
        // TSC2NSEC
        14 if data.len() >= 16 => {
            meta.tsc2nsec = Some((
                e.u32(data[0..4].try_into().unwrap()),
                e.u32(data[4..8].try_into().unwrap()),
                e.u64(data[8..16].try_into().unwrap()),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// A v7 section header: id, flags, description string id, size.
struct Section {
    id: u16,
    flags: u16,
    /// Offset of the data right after the header.
    data_off: u64,
    size: u64,
}

fn read_section_header(c: &mut Cursor, off: u64, what: &str) -> Result<Section> {
    c.seek(off, what)?;
    let id = c.u16("a section id")?;
    let flags = c.u16("section flags")?;
    c.u32("a section description string id")?;
    let size = c.u64("a section size")?;
    Ok(Section {
        id,
        flags,
        data_off: c.offset(),
        size,
    })
}

/// The content of a v7 section, decompressed if it is compressed.
fn section_body<'a>(
    c: &mut Cursor<'a>,
    meta: &Meta,
    off: u64,
    want_id: u16,
    what: &str,
) -> Result<(std::borrow::Cow<'a, [u8]>, u64)> {
    let s = read_section_header(c, off, what)?;
    if s.id != want_id {
        return Err(Error::at(
            c.name,
            off,
            format!(
                "expected {what} (section id {want_id}), found section id {}",
                s.id
            ),
        ));
    }
    if s.flags & 1 != 0 {
        let comp = c.u32("a compressed section's compressed size")?;
        let uncomp = c.u32("a compressed section's uncompressed size")?;
        let at = c.offset();
        let data = c.bytes(comp as u64, "compressed section data")?;
        let out = compress::decompress(
            meta.compression,
            data,
            uncomp as usize,
            compress::MAX_SECTION,
        )
        .map_err(|m| Error::at(c.name, at, format!("{what}: {m}")))?;
        Ok((std::borrow::Cow::Owned(out), s.data_off))
    } else {
        let data = c.bytes(s.size, what)?;
        Ok((std::borrow::Cow::Borrowed(data), s.data_off))
    }
}

/// The kallsyms text of the file `buf` that `meta` describes (decompressed
/// for v7); `None` when the file has none or they cannot be read.
pub fn read_kallsyms(name: &str, buf: &[u8], meta: &Meta) -> Option<Vec<u8>> {
    let at = meta.kallsyms_at?;
    let mut c = Cursor::new(name, buf, 0, meta.endian);
    if meta.version == 6 {
        c.seek(at, "the kallsyms").ok()?;
        let n = c.u32("the kallsyms size").ok()?;
        return c.bytes(n as u64, "the kallsyms").ok().map(<[u8]>::to_vec);
    }
    sized_section(&mut c, meta, at, 19, "the kallsyms section")
}

/// The `<u32 size><data>` content of v7 section `id` at `off` (kallsyms,
/// printk formats); `None` when it cannot be read.
fn sized_section(c: &mut Cursor, meta: &Meta, off: u64, id: u16, what: &str) -> Option<Vec<u8>> {
    let (b, base) = section_body(c, meta, off, id, what).ok()?;
    let mut sc = Cursor::new(c.name, &b, base, c.endian);
    let n = sc.u32("a size").ok()?;
    sc.bytes(n as u64, what).ok().map(<[u8]>::to_vec)
}

fn parse_v7(c: &mut Cursor, meta: &mut Meta) -> Result<()> {
    let comp_name = c.cstr("the compression algorithm name")?;
    c.cstr("the compression algorithm version")?;
    meta.compression = match comp_name {
        "none" | "" => Compression::None,
        "zstd" => Compression::Zstd,
        "zlib" => Compression::Zlib,
        other => {
            return Err(c.err(format!(
                "compression {other:?} is not supported; expected none, zstd or zlib"
            )))
        }
    };
    let mut next = c.u64("the offset of the first options section")?;
    let first_opts = next;
    let mut sections: HashMap<u16, u64> = HashMap::new();
    // (offset of the buffer section, name, clock, page size, cpus, latency)
    let mut bufs: Vec<(u64, String, String, u32, Vec<CpuData>, bool)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while next != 0 {
        if !seen.insert(next) || seen.len() > MAX_OPTIONS_SECTIONS {
            return Err(Error::at(
                c.name,
                next,
                "options sections form a loop; expected a chain ending with offset 0",
            ));
        }
        let (body, base) = match section_body(c, meta, next, 0, "an options section") {
            Ok(b) => b,
            // trace-cmd writes the last options section (with the BUFFER
            // option) at the end of the file: a cut file loses it
            Err(e) if next != first_opts => {
                meta.warnings.push((next, format!("options section unreadable, the file is truncated or corrupt ({}); reading what is left", e.message)));
                break;
            }
            Err(e) => return Err(e),
        };
        next = 0;
        let mut oc = Cursor::new(c.name, &body, base, c.endian);
        loop {
            if oc.remaining() == 0 {
                break;
            }
            let id = oc.u16("an option id")?;
            let size = oc.u32("an option size")?;
            let data = oc.bytes(size as u64, "option data")?;
            let e = c.endian;
            let u64_at = |d: &[u8]| {
                if d.len() >= 8 {
                    Some(e.u64(d[..8].try_into().unwrap()))
                } else {
                    None
                }
            };
            match id {
                0 => {
                    next = u64_at(data).unwrap_or(0);
                    break;
                }
                16..=21 => {
                    if let Some(o) = u64_at(data) {
                        sections.insert(id, o);
                    }
                }
                3 | 22 => match parse_buffer_option(c.endian, data, id == 22) {
                    Some(b) => bufs.push(b),
                    None => meta.warnings.push((
                        oc.offset(),
                        "a BUFFER option is malformed; its buffer is skipped".into(),
                    )),
                },
                _ => handle_option(&oc, meta, id, data, &mut Vec::new(), true)?,
            }
        }
    }
    let need = |id: u16, what: &str| -> Result<u64> {
        sections.get(&id).copied().ok_or_else(|| {
            Error::at(
                c.name,
                0,
                format!("no {what} section in the options; expected one"),
            )
        })
    };
    let off = need(16, "header info")?;
    let (b, base) = section_body(c, meta, off, 16, "the header info section")?;
    parse_header_info(&mut Cursor::new(c.name, &b, base, c.endian), meta)?;
    if let Some(&off) = sections.get(&17) {
        let (b, base) = section_body(c, meta, off, 17, "the ftrace event formats section")?;
        parse_ftrace_formats(&mut Cursor::new(c.name, &b, base, c.endian), meta)?;
    }
    let off = need(18, "event formats")?;
    let (b, base) = section_body(c, meta, off, 18, "the event formats section")?;
    parse_event_formats(&mut Cursor::new(c.name, &b, base, c.endian), meta)?;
    meta.kallsyms_at = sections.get(&19).copied();
    if meta.keep_extras {
        meta.kallsyms = sections
            .get(&19)
            .and_then(|&off| sized_section(c, meta, off, 19, "the kallsyms section"));
        meta.printk = sections
            .get(&20)
            .and_then(|&off| sized_section(c, meta, off, 20, "the printk formats section"));
    }
    if let Some(&off) = sections.get(&21) {
        let (b, base) = section_body(c, meta, off, 21, "the saved cmdlines section")?;
        parse_cmdlines(&mut Cursor::new(c.name, &b, base, c.endian), meta)?;
    }
    if bufs.is_empty() && meta.compression != Compression::None {
        if let Some(b) = recover_buffer(c, meta, first_opts) {
            bufs.push(b);
        }
    }
    for (off, name, clock, page_size, cpus, latency) in bufs {
        if latency {
            meta.warnings.push((
                off,
                format!("latency (text) buffer {name:?} is not decoded"),
            ));
            continue;
        }
        let s = match read_section_header(c, off, "a buffer's flyrecord section") {
            Ok(s) => s,
            Err(e) => {
                meta.warnings
                    .push((off, format!("buffer {name:?}: {}", e.message)));
                continue;
            }
        };
        let _ = s.size;
        let compressed = s.flags & 1 != 0 && meta.compression != Compression::None;
        let cpus = cpus.into_iter().map(|d| clip_cpu(meta, d)).collect();
        if name.is_empty() && meta.clock.is_none() {
            meta.clock = Some(clock.clone());
        }
        let page_size = if page_size == 0 {
            meta.page_size
        } else {
            page_size
        };
        meta.buffers.push(Buffer {
            name,
            clock: Some(clock),
            page_size,
            compressed,
            cpus,
            latency: false,
        });
    }
    // top buffer first
    meta.buffers.sort_by_key(|b| !b.name.is_empty());
    Ok(())
}

/// A v7 file cut before its BUFFER option: find the top buffer's
/// flyrecord section (trace-cmd writes it right after the first options
/// section) and each CPU's chunked data in it (page-aligned streams that
/// start with a chunk count and a zstd frame).
#[allow(clippy::type_complexity)]
fn recover_buffer(
    c: &mut Cursor,
    meta: &mut Meta,
    first_opts: u64,
) -> Option<(u64, String, String, u32, Vec<CpuData>, bool)> {
    let opts = read_section_header(c, first_opts, "the first options section").ok()?;
    let fly = opts.data_off.checked_add(opts.size)?;
    let s = read_section_header(c, fly, "a flyrecord section").ok()?;
    if s.id != 3 {
        return None;
    }
    let ps = meta.page_size as u64;
    let align = |x: u64| x.div_ceil(ps) * ps;
    let e = c.endian;
    let buf = c.buf;
    let rd4 = |o: u64| -> Option<u32> {
        let o = usize::try_from(o).ok()?;
        buf.get(o..o + 4).map(|b| e.u32([b[0], b[1], b[2], b[3]]))
    };
    let looks_like_stream = |o: u64| -> bool {
        matches!(rd4(o), Some(n) if n > 0 && n < (1 << 24))
            && matches!(rd4(o + 12), Some(m) if m == 0xFD2F_B528 || m.swap_bytes() == 0xFD2F_B528)
    };
    let ncpus = if meta.cpus > 0 { meta.cpus } else { 1024 };
    let mut pos = align(s.data_off);
    let mut cpus = Vec::new();
    for cpu in 0..ncpus {
        // the next CPU's data starts at one of the next few pages
        let start = (0..64)
            .map(|k| pos + k * ps)
            .find(|&o| looks_like_stream(o))?;
        let n = rd4(start)?;
        let mut p = start + 4;
        for _ in 0..n {
            let (Some(cs), Some(_)) = (rd4(p), rd4(p + 4)) else {
                break;
            };
            let q = p + 8 + cs as u64;
            if q > buf.len() as u64 {
                p = buf.len() as u64;
                break;
            }
            p = q;
        }
        cpus.push(CpuData {
            cpu,
            offset: start,
            size: (p - start).saturating_sub(4),
        });
        pos = align(p);
        if p >= buf.len() as u64 {
            break;
        }
    }
    meta.warnings.push((
        fly,
        format!("the buffer description (at the end of the file) is missing: file truncated; {} CPU data streams located by scanning", cpus.len()),
    ));
    let clock = meta.clock.clone().unwrap_or_default();
    Some((fly, String::new(), clock, meta.page_size, cpus, false))
}

/// BUFFER / BUFFER_TEXT option data. Newer trace-cmd writes the page size
/// after the clock; tell the two layouts apart by the option's size.
#[allow(clippy::type_complexity)]
fn parse_buffer_option(
    e: Endian,
    data: &[u8],
    latency: bool,
) -> Option<(u64, String, String, u32, Vec<CpuData>, bool)> {
    let mut c = Cursor::new("", data, 0, e);
    let off = c.u64("").ok()?;
    let name = c.cstr("").ok()?.to_string();
    let clock = c.cstr("").ok()?.to_string();
    if latency {
        return Some((off, name, clock, 0, Vec::new(), true));
    }
    let rest = c.remaining();
    let mut page_size = 0;
    // with page size: 4 + 4 + 20n ; without: 4 + 20n
    #[allow(clippy::manual_is_multiple_of)] // keeps the workspace's rust-version
    let with_page_size = rest >= 8 && (rest - 8) % 20 == 0 && (rest - 4) % 20 != 0;
    if with_page_size {
        page_size = c.u32("").ok()?;
    }
    let n = c.u32("").ok()?;
    if n as usize > c.remaining() / 20 {
        return None;
    }
    let mut cpus = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let cpu = c.u32("").ok()?;
        let offset = c.u64("").ok()?;
        let size = c.u64("").ok()?;
        cpus.push(CpuData { cpu, offset, size });
    }
    if page_size != 0 && !(256..=(1 << 24)).contains(&page_size) {
        return None;
    }
    Some((off, name, clock, page_size, cpus, false))
}

/// Text of a format file: `str::from_utf8` (fast on ASCII, which format
/// files are), `from_utf8_lossy` only when that fails. The lossy conversion
/// walks every byte: a tenth of a small trace's reading, over its ~2,000
/// formats.
fn utf8_text(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}
