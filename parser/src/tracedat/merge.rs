//! Per-CPU streams: each CPU's pages (plain or compressed chunks) are
//! decoded into batches of located records, in parallel (one worker per
//! stream, bounded channels), and merged by timestamp on the caller's
//! thread. Memory is a few batches per CPU whatever the trace length.

use super::compress::{self, Compression};
use super::format::{EventFormat, HeaderPage};
use super::header::{CpuData, Endian};
use super::page::{Hdr, PageRecords, Rec, RecKind};
use std::sync::mpsc;

/// Pages decoded per batch for uncompressed data.
const PLAIN_BATCH_PAGES: usize = 16;
/// Compressed chunks are decompressed into one batch until it holds
/// [`CpuStream::batch_bytes`]: this much at most, less with many CPUs, so
/// that the batches in flight (channel depth + 2 per CPU) stay within
/// [`CHUNKED_IN_FLIGHT`] bytes.
const CHUNKED_BATCH_BYTES: usize = 1 << 20;
const CHUNKED_IN_FLIGHT: usize = 32 << 20;
/// Room reserved in a batch beyond [`CpuStream::batch_bytes`] for the chunk
/// that crosses it (trace-cmd's chunks are 10 pages).
const CHUNK_SLACK: usize = 64 << 10;
/// Batches in flight per CPU between a worker and the merger (fewer when
/// there are many CPUs, so memory stays bounded: ~64 batches in all).
const CHANNEL_DEPTH: usize = 2;
/// Above this many CPU streams, decode on the merging thread (two batches per
/// CPU in memory) rather than one thread per CPU.
const MAX_THREADS: usize = 64;

pub enum BatchBuf<'a> {
    File(&'a [u8]),
    Owned(Vec<u8>),
}

/// A run of decoded records of one CPU and the bytes they point into.
pub struct Batch<'a> {
    pub buf: BatchBuf<'a>,
    pub recs: Vec<Rec>,
    pub warnings: Vec<(u64, String)>,
    /// Records counted instead of delivered (see `Sink::countable`):
    /// (format id, number, first and last raw timestamp).
    pub counted: Vec<(u32, u64, u64, u64)>,
    /// With a line format ([`CpuStream::lines`]): the records' lines, one
    /// after the other, and where each record's line ends (a record without
    /// a line has an empty one).
    pub lines: String,
    pub line_ends: Vec<u32>,
}

/// Pages of a mapped file are given back this many bytes at a time (one
/// `madvise`, one TLB shootdown, per stride, not per batch).
const RELEASE_STRIDE: usize = 2 << 20;
/// Uncompressed data is given back this far behind the batch being read:
/// the batches decoded ahead and not yet merged stay mapped.
const RELEASE_LAG: usize = 8 << 20;

use crate::input::release_pages;

/// Release `data[*released..upto]` once it spans a stride, and move
/// `released` up to `upto`.
fn release_behind(data: &[u8], released: &mut usize, upto: usize) {
    if upto >= *released + RELEASE_STRIDE {
        release_pages(&data[*released..upto.min(data.len())]);
        *released = upto;
    }
}

impl Batch<'_> {
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            BatchBuf::File(b) => b,
            BatchBuf::Owned(v) => v,
        }
    }
}

enum Src<'a> {
    Plain {
        data: &'a [u8],
        file_off: u64,
        pos: usize,
    },
    Chunked {
        data: &'a [u8],
        file_off: u64,
        pos: usize,
        left: u32,
        started: bool,
        dctx: Option<zstd::bulk::Decompressor<'static>>,
    },
    Done,
}

/// One CPU of one buffer, producing batches on demand.
pub struct CpuStream<'a> {
    pub cpu: u32,
    /// Index of the buffer (instance) this CPU belongs to.
    pub buffer: usize,
    src: Src<'a>,
    endian: Endian,
    hp: HeaderPage,
    page_size: usize,
    comp: Compression,
    /// common_type → format.
    table: &'a [Option<&'a std::sync::Arc<EventFormat>>],
    /// common_type → where its common fields lie, filled when the first
    /// record of that type is seen (formats are parsed lazily).
    commons: Vec<CommonAt>,
    /// common_type → [`Class`] of its records: a byte looked up for every
    /// record, so that the usual one takes the short way.
    class: Vec<Class>,
    /// pid → index of its comm (see [`Rec::comm`]).
    comms: &'a std::collections::HashMap<i32, u32, super::header::PidHash>,
    /// The file is a read-only mapping: release the pages read (see [`release_pages`]).
    pub reclaim: bool,
    /// Offset into this CPU's data up to which pages were released.
    released: usize,
    /// Format id → its events may be counted instead of delivered (the
    /// sink's `countable`); `None`: every event is delivered.
    pub countable: Option<&'a [bool]>,
    /// The pid of the previous record when it was a countable event in
    /// plain (task or softirq) context.
    last_plain: Option<i32>,
    /// Format each event as a line of this format here, on the decoding
    /// thread (the sink's `line_format`), with what makes records events.
    pub lines: Option<(crate::LineFormat, &'a super::EventOf<'a>)>,
    /// Batches the merger has finished with, given back for reuse.
    spare: Option<mpsc::Receiver<Batch<'a>>>,
    /// Decompressed bytes per batch (see [`CHUNKED_BATCH_BYTES`]); less
    /// when lines are formatted (a batch's lines are ~4 times its bytes).
    pub batch_bytes: usize,
}

impl<'a> CpuStream<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        file: &'a [u8],
        d: &CpuData,
        buffer: usize,
        endian: Endian,
        hp: HeaderPage,
        page_size: u32,
        compressed: bool,
        comp: Compression,
        table: &'a [Option<&'a std::sync::Arc<EventFormat>>],
        comms: &'a std::collections::HashMap<i32, u32, super::header::PidHash>,
    ) -> CpuStream<'a> {
        let start = (d.offset.min(file.len() as u64)) as usize;
        // compressed data: the size leaves out the 4-byte chunk count
        let size = if compressed {
            d.size.saturating_add(4)
        } else {
            d.size
        };
        let end = (d.offset.saturating_add(size).min(file.len() as u64)) as usize;
        let data = &file[start..end.max(start)];
        let src = if data.is_empty() {
            Src::Done
        } else if compressed {
            Src::Chunked {
                data,
                file_off: d.offset,
                pos: 0,
                left: 0,
                started: false,
                dctx: None,
            }
        } else {
            Src::Plain {
                data,
                file_off: d.offset,
                pos: 0,
            }
        };
        let commons = vec![CommonAt::Unseen; table.len()];
        let class = vec![Class::Other; table.len()];
        CpuStream {
            cpu: d.cpu,
            buffer,
            src,
            endian,
            hp,
            page_size: page_size as usize,
            comp,
            table,
            commons,
            class,
            comms,
            reclaim: false,
            released: 0,
            countable: None,
            last_plain: None,
            lines: None,
            spare: None,
            batch_bytes: CHUNKED_BATCH_BYTES,
        }
    }

    /// Locate an event's format and decode its common fields (worker
    /// side); with [`CpuStream::countable`], count instead of keep an event
    /// that tells the sink nothing new: a countable event in plain (task or
    /// softirq) context whose pid is the previous record's, itself such an
    /// event. Returns the record to keep (`None`: it was counted), built in
    /// one piece from its fields.
    #[inline(always)]
    fn decode_one(
        &mut self,
        e: Endian,
        st: &mut HeaderRun,
        h: Hdr,
        bytes: &[u8],
        counted: &mut Vec<(u32, u64, u64, u64)>,
    ) -> Option<Rec> {
        // the event with its id and no common fields yet
        let plain = |id: u32| Rec {
            id,
            ..Rec::new(h.ts, h.start, h.len, RecKind::Event, 0, h.off)
        };
        let data = match bytes.get(h.start as usize..(h.start + h.len) as usize) {
            Some(d) if h.len >= 2 => d,
            _ => {
                st.last = None;
                return Some(plain(0));
            }
        };
        let id = e.u16([data[0], data[1]]) as u32;
        // The kernel's own layout of the common fields (nearly every
        // record): type, flags, preempt count, pid in the first 8 bytes.
        if let (Some(&class), Some(b)) = (self.class.get(id as usize), data.first_chunk::<8>()) {
            if class != Class::Other {
                let pid = e.u32([b[4], b[5], b[6], b[7]]) as i32;
                let countable = class == Class::Countable;
                return self.count_or_keep(
                    st,
                    h,
                    id,
                    countable,
                    0x100 | b[2] as u16,
                    b[3],
                    true,
                    pid,
                    counted,
                );
            }
        }
        let at = match self.commons.get(id as usize) {
            Some(CommonAt::Unseen) => self.first_of_format(id),
            Some(c) => *c,
            None => CommonAt::Unknown,
        };
        let (flags, preempt, has_preempt, pid) = match (at, data.first_chunk::<8>()) {
            // a format whose field lines are not understood leaves its events unknown
            (CommonAt::Unknown | CommonAt::Unseen, _) => {
                st.last = None;
                return Some(plain(id));
            }
            (CommonAt::Standard { .. }, Some(b)) => (
                0x100 | b[2] as u16,
                b[3],
                true,
                e.u32([b[4], b[5], b[6], b[7]]) as i32,
            ),
            (
                CommonAt::Plain {
                    need,
                    flags,
                    preempt,
                    pid,
                    ..
                },
                _,
            ) if data.len() >= need as usize => {
                let p = pid as usize;
                (
                    0x100 | data[flags as usize] as u16,
                    data[preempt as usize],
                    true,
                    e.u32([data[p], data[p + 1], data[p + 2], data[p + 3]]) as i32,
                )
            }
            _ => {
                let mut r = plain(id);
                if let Some(l) = self.layout_of(id) {
                    l.decode_common(e, data, &mut r);
                }
                (r.flags, r.preempt, r.has_preempt, r.pid)
            }
        };
        let countable = self.countable.is_some() && at.countable();
        self.count_or_keep(
            st,
            h,
            id,
            countable,
            flags,
            preempt,
            has_preempt,
            pid,
            counted,
        )
    }

    /// An event with its common fields decoded (`flags` bit 8: known):
    /// counted, when `countable` and in plain (task or softirq) context
    /// after a record of the same pid that was itself such an event (the
    /// sink learns nothing new from it); otherwise the record to keep.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn count_or_keep(
        &self,
        st: &mut HeaderRun,
        h: Hdr,
        id: u32,
        countable: bool,
        flags: u16,
        preempt: u8,
        has_preempt: bool,
        pid: i32,
        counted: &mut Vec<(u32, u64, u64, u64)>,
    ) -> Option<Rec> {
        // plain context: flags known (bit 8), neither NMI (0x40) nor hardirq (0x08)
        if countable && flags & 0x148 == 0x100 {
            if st.last == Some(pid) {
                if counted.get(st.slot).is_none_or(|c| c.0 != id) {
                    st.slot = match counted.iter().position(|c| c.0 == id) {
                        Some(k) => k,
                        None => {
                            counted.push((id, 0, h.ts, h.ts));
                            counted.len() - 1
                        }
                    };
                }
                let c = &mut counted[st.slot];
                c.1 += 1;
                c.2 = c.2.min(h.ts);
                c.3 = c.3.max(h.ts);
                return None;
            }
            st.last = Some(pid);
        } else {
            st.last = None;
        }
        if st.comm_of.0 != pid {
            st.comm_of = (pid, self.comms.get(&pid).copied().unwrap_or(u32::MAX));
        }
        Some(Rec {
            ts: h.ts,
            start: h.start,
            len: h.len,
            kind: RecKind::Event,
            off: h.off,
            id,
            known: true,
            pid,
            flags,
            preempt,
            has_preempt,
            comm: st.comm_of.1,
        })
    }

    /// Decode the event `h` ([`CpuStream::decode_one`]) and keep it in `b`
    /// unless it was counted.
    #[inline(always)]
    fn keep(&mut self, e: Endian, st: &mut HeaderRun, h: Hdr, bytes: &[u8], b: &mut Batch<'a>) {
        if let Some(r) = self.decode_one(e, st, h, bytes, &mut b.counted) {
            b.recs.push(r);
        }
    }

    /// The understood field layout of format `id`, if any.
    fn layout_of(&self, id: u32) -> Option<&'a super::format::Layout> {
        self.table
            .get(id as usize)
            .copied()
            .flatten()
            .and_then(|f| f.layout().ok())
    }

    /// The first record of format `id`: parse its layout (once) and note
    /// where its common fields lie.
    #[cold]
    fn first_of_format(&mut self, id: u32) -> CommonAt {
        let countable = self
            .countable
            .is_some_and(|c| c.get(id as usize).copied().unwrap_or(false));
        let at = match self.layout_of(id) {
            None => CommonAt::Unknown,
            Some(l) => CommonAt::of(l, countable),
        };
        if let Some(slot) = self.commons.get_mut(id as usize) {
            *slot = at;
        }
        if let Some(slot) = self.class.get_mut(id as usize) {
            *slot = match at {
                CommonAt::Standard { countable: true } => Class::Countable,
                CommonAt::Standard { countable: false } => Class::Standard,
                _ => Class::Other,
            };
        }
        at
    }

    /// Where a run of [`CpuStream::decode_one`] calls starts.
    fn header_run(&self) -> HeaderRun {
        HeaderRun {
            last: self.last_plain,
            comm_of: (i32::MIN, u32::MAX),
            slot: usize::MAX,
        }
    }

    /// The next batch with its records' common fields decoded.
    pub fn next_decoded(&mut self) -> Option<Batch<'a>> {
        let mut b = self.next_batch()?;
        if let Some((f, ev_of)) = self.lines {
            self.format_lines(&mut b, f, ev_of);
        }
        Some(b)
    }

    /// Format every event of the batch as a line of `f` (see
    /// [`CpuStream::lines`]).
    fn format_lines(&self, b: &mut Batch<'a>, f: crate::LineFormat, ev_of: &super::EventOf<'_>) {
        let bytes: &[u8] = match &b.buf {
            BatchBuf::File(f) => f,
            BatchBuf::Owned(v) => v,
        };
        let mut lines = std::mem::take(&mut b.lines);
        lines.clear();
        lines.reserve(b.recs.len() * 160);
        b.line_ends.clear();
        b.line_ends.reserve(b.recs.len());
        for r in &b.recs {
            if r.kind == super::page::RecKind::Event && r.known && r.len >= 2 {
                if let Some(fmt) = self.table.get(r.id as usize).copied().flatten() {
                    f.write(
                        &mut lines,
                        &ev_of.event(self.cpu, self.buffer, r, fmt, bytes),
                    );
                }
            }
            b.line_ends.push(lines.len() as u32);
        }
        b.lines = lines;
    }

    /// The next batch, its records' common fields decoded (or `None` at the
    /// end, or after an unrecoverable problem, reported as a warning in the
    /// last batch).
    fn next_batch(&mut self) -> Option<Batch<'a>> {
        let (data, file_off, start) = match &mut self.src {
            Src::Done => return None,
            Src::Chunked { .. } => return self.next_chunked(),
            Src::Plain {
                data,
                file_off,
                pos,
            } => (*data, *file_off, *pos),
        };
        if self.reclaim {
            release_behind(data, &mut self.released, start.saturating_sub(RELEASE_LAG));
        }
        let end = (start + self.page_size * PLAIN_BATCH_PAGES).min(data.len());
        match &mut self.src {
            Src::Plain { pos, .. } if end < data.len() => *pos = end,
            _ => self.src = Src::Done,
        }
        let slice = &data[start..end];
        let mut b = self.fresh_batch();
        let mut st = self.header_run();
        self.decode_pages(&mut st, &mut b, slice, 0, true, |p| {
            file_off + (start + p) as u64
        });
        self.last_plain = st.last;
        b.buf = BatchBuf::File(slice);
        Some(b)
    }

    /// A batch to fill: one the merger gave back, its vectors emptied for
    /// reuse, or a new one.
    fn fresh_batch(&self) -> Batch<'a> {
        match self.spare.as_ref().and_then(|r| r.try_recv().ok()) {
            Some(mut b) => {
                if let BatchBuf::Owned(v) = &mut b.buf {
                    v.clear();
                }
                b.recs.clear();
                b.warnings.clear();
                b.counted.clear();
                b
            }
            None => Batch {
                buf: BatchBuf::Owned(Vec::new()),
                // records are 8 bytes or more; a few in ten are kept in analyze
                recs: Vec::with_capacity(self.batch_bytes / 64),
                warnings: Vec::new(),
                counted: Vec::new(),
                lines: String::new(),
                line_ends: Vec::new(),
            },
        }
    }

    /// Walk the pages of `bytes[from..]` (the batch's buffer), each record's
    /// header decoded and the record counted or kept in `b` as its page is
    /// read, while it is in cache. `page_off`: the file offset of the page
    /// at `bytes[p]` (`exact`), or of its compressed chunk.
    fn decode_pages(
        &mut self,
        st: &mut HeaderRun,
        b: &mut Batch<'a>,
        bytes: &[u8],
        from: usize,
        exact: bool,
        page_off: impl Fn(usize) -> u64,
    ) {
        // One walk per byte order, each with its order a constant.
        match self.endian {
            Endian::Little => self.decode_pages_in::<false>(st, b, bytes, from, exact, page_off),
            Endian::Big => self.decode_pages_in::<true>(st, b, bytes, from, exact, page_off),
        }
    }

    /// [`CpuStream::decode_pages`] for big-endian data (`BIG`) or little.
    #[inline(always)]
    fn decode_pages_in<const BIG: bool>(
        &mut self,
        st: &mut HeaderRun,
        b: &mut Batch<'a>,
        bytes: &[u8],
        from: usize,
        exact: bool,
        page_off: impl Fn(usize) -> u64,
    ) {
        let e = if BIG { Endian::Big } else { Endian::Little };
        let (hp, cpu, ps) = (self.hp, self.cpu, self.page_size);
        let mut p = from;
        while p < bytes.len() {
            let pe = (p + ps).min(bytes.len());
            let fo = page_off(p);
            match PageRecords::new(&bytes[p..pe], e, hp, p as u32, fo, exact) {
                Ok(mut page) => {
                    if let Some(mut l) = page.lost() {
                        // the marker goes before the first event after the
                        // loss, with its time (alone: with the page's)
                        let first = page.next();
                        if let Some(r) = &first {
                            l.ts = r.ts;
                        }
                        // a marker ends a run of countable events
                        st.last = None;
                        b.recs.push(l);
                        if let Some(r) = first {
                            self.keep(e, st, r, bytes, b);
                        }
                    }
                    for r in page.by_ref() {
                        self.keep(e, st, r, bytes, b);
                    }
                    if let Some(w) = page.warning() {
                        b.warnings.push((fo, format!("CPU {cpu}: {w}")));
                    }
                }
                Err(w) => b.warnings.push((fo, format!("CPU {cpu}: {w}"))),
            }
            p = pe;
        }
    }

    /// [`CpuStream::next_batch`] for compressed data: chunks are
    /// decompressed into one batch (trace-cmd writes 10 pages a chunk) until
    /// it holds [`CpuStream::batch_bytes`], fewer hand-overs to the merging
    /// thread; each chunk's records are decoded while it is in cache. A
    /// spare batch the merger gave back is reused, buffers and all.
    fn next_chunked(&mut self) -> Option<Batch<'a>> {
        let e = self.endian;
        // The source is taken out while the batch is made (so the headers
        // can be decoded meanwhile) and put back unless it ended.
        let Src::Chunked {
            data,
            file_off,
            mut pos,
            mut left,
            started,
            mut dctx,
        } = std::mem::replace(&mut self.src, Src::Done)
        else {
            return None;
        };
        let rd4 = |p: usize| data.get(p..p + 4).map(|b| e.u32([b[0], b[1], b[2], b[3]]));
        if !started {
            (left, pos) = (rd4(0)?, 4);
        }
        if left == 0 {
            return None;
        }
        let mut b = self.fresh_batch();
        let mut out = match std::mem::replace(&mut b.buf, BatchBuf::Owned(Vec::new())) {
            BatchBuf::Owned(v) => v,
            BatchBuf::File(_) => Vec::new(),
        };
        // A new buffer gets its full size at once (reserved, touched only as
        // it fills): no doubling and copying as chunks are added.
        out.reserve(self.batch_bytes + CHUNK_SLACK);
        // a chunk that cannot be read ends the stream (its warning says why)
        let mut done = false;
        let mut st = self.header_run();
        while left > 0 && out.len() < self.batch_bytes {
            let at = file_off + pos as u64;
            let (Some(csize), Some(usize_)) = (rd4(pos), rd4(pos + 4)) else {
                b.warnings.push((at, format!("CPU {}: compressed chunk header cut off; file truncated, the events before are kept", self.cpu)));
                done = true;
                break;
            };
            let cstart = pos + 8;
            let Some(cdata) = cstart
                .checked_add(csize as usize)
                .and_then(|ce| data.get(cstart..ce))
            else {
                b.warnings.push((at, format!("CPU {}: compressed chunk of {csize} bytes runs past the end of the data; file truncated, the events before are kept", self.cpu)));
                done = true;
                break;
            };
            let base = out.len();
            if let Err(m) = compress::decompress_into(
                self.comp,
                &mut dctx,
                cdata,
                usize_ as usize,
                &mut out,
                base,
            ) {
                b.warnings.push((at, format!("CPU {}: {m}", self.cpu)));
                done = true;
                break;
            }
            pos = cstart + csize as usize;
            left -= 1;
            self.decode_pages(&mut st, &mut b, &out, base, false, |_| at);
        }
        self.last_plain = st.last;
        // The chunks are decompressed: their compressed bytes are not needed again.
        if self.reclaim {
            release_behind(data, &mut self.released, pos);
        }
        if !done {
            self.src = Src::Chunked {
                data,
                file_off,
                pos,
                left,
                started: true,
                dctx,
            };
        }
        b.buf = BatchBuf::Owned(out);
        Some(b)
    }
}

/// Where one format's common fields lie, for [`CpuStream::decode_one`]:
/// a few bytes per format id, looked up for every record.
#[derive(Clone, Copy, Debug)]
enum CommonAt {
    /// No record of the format seen yet (formats are parsed lazily).
    Unseen,
    /// The format's field lines are not understood: its events are unknown.
    Unknown,
    /// One-byte flags and preempt count and a four-byte pid at the kernel's
    /// own offsets (`struct trace_entry`: 2, 3 and 4).
    Standard { countable: bool },
    /// The same fields at other offsets; a record shorter than `need`
    /// bytes is decoded by the layout.
    Plain {
        countable: bool,
        need: u16,
        flags: u16,
        preempt: u16,
        pid: u16,
    },
    /// Any other common fields: decoded by the layout.
    Other { countable: bool },
}

impl CommonAt {
    fn of(l: &super::format::Layout, countable: bool) -> CommonAt {
        let small = |o: u32| u16::try_from(o).ok().filter(|&o| o < u16::MAX - 8);
        match (
            l.flags_off.and_then(small),
            l.preempt_off.and_then(small),
            l.pid_off.and_then(|(o, n)| small(o).filter(|_| n == 4)),
        ) {
            (Some(2), Some(3), Some(4)) => CommonAt::Standard { countable },
            (Some(flags), Some(preempt), Some(pid)) => CommonAt::Plain {
                countable,
                need: (flags + 1).max(preempt + 1).max(pid + 4),
                flags,
                preempt,
                pid,
            },
            _ => CommonAt::Other { countable },
        }
    }

    /// The sink may count the format's events instead of taking them.
    #[inline]
    fn countable(self) -> bool {
        match self {
            CommonAt::Standard { countable }
            | CommonAt::Plain { countable, .. }
            | CommonAt::Other { countable } => countable,
            CommonAt::Unseen | CommonAt::Unknown => false,
        }
    }
}

/// What [`CpuStream::decode_one`] needs to know of a format first, a byte
/// per format id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Not seen yet, not understood, or common fields not where the kernel
    /// puts them: see its [`CommonAt`].
    Other,
    /// The kernel's own layout (`CommonAt::Standard`), not countable.
    Standard,
    /// The kernel's own layout, and the sink may count its events.
    Countable,
}

/// The state a run of [`CpuStream::decode_one`] carries from record to record.
struct HeaderRun {
    /// The pid of the previous record when it was a countable event in
    /// plain context.
    last: Option<i32>,
    /// Consecutive records are mostly of one task: its comm index, cached.
    comm_of: (i32, u32),
    /// The counted entry the previous counted record went to.
    slot: usize,
}

/// A source of batches for the merger: a stream pulled in place, or a
/// worker thread's channel.
pub enum Lane<'a> {
    Local(Box<CpuStream<'a>>),
    Remote(mpsc::Receiver<Result<Batch<'a>, (u64, String)>>),
}

impl<'a> Lane<'a> {
    fn next(&mut self) -> Option<Result<Batch<'a>, (u64, String)>> {
        match self {
            Lane::Local(s) => s.next_decoded_caught(),
            Lane::Remote(rx) => rx.recv().ok(),
        }
    }
}

impl<'a> CpuStream<'a> {
    /// [`CpuStream::next_decoded`], with a panic (a decoder bug) turned into
    /// an error at the stream's position; the stream ends there.
    fn next_decoded_caught(&mut self) -> Option<Result<Batch<'a>, (u64, String)>> {
        let at = self.position();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.next_decoded())) {
            Ok(b) => b.map(Ok),
            Err(p) => {
                self.src = Src::Done;
                Some(Err((at, crate::text::panic_message(&p))))
            }
        }
    }

    /// The file offset the stream will read next.
    fn position(&self) -> u64 {
        match &self.src {
            Src::Plain { file_off, pos, .. } | Src::Chunked { file_off, pos, .. } => {
                *file_off + *pos as u64
            }
            Src::Done => 0,
        }
    }
}

/// How a merge ended.
#[derive(Default)]
pub struct MergeEnd {
    /// The consumer said stop.
    pub stopped: bool,
    /// A decoder panicked (a bug): where and why.
    pub panic: Option<(u64, String)>,
    /// Records counted instead of delivered: (cpu, format id) → (number,
    /// first and last raw timestamp).
    pub counted: std::collections::BTreeMap<(u32, u32), (u64, u64, u64)>,
}

/// Merge state for one lane.
struct Head<'a> {
    lane: Lane<'a>,
    cpu: u32,
    buffer: usize,
    batch: Option<Batch<'a>>,
    idx: usize,
    /// Where a finished batch goes back to its worker, for reuse.
    give_back: Option<mpsc::Sender<Batch<'a>>>,
}

/// Something the merger hands out: a record with its batch bytes.
pub struct Item<'b> {
    pub cpu: u32,
    pub buffer: usize,
    pub rec: Rec,
    pub bytes: &'b [u8],
    /// Its line, when the stream formats lines (else empty).
    pub line: &'b str,
}

/// Run the merge: decode `streams` (in parallel when `parallel`), and call
/// `f` for every record in timestamp order (ties: lower stream index first,
/// as trace-cmd does) and `w` for every warning.
pub fn merge<'a, F: FnMut(Item<'_>) -> crate::Flow, G: FnMut(u64, String)>(
    streams: Vec<CpuStream<'a>>,
    parallel: bool,
    f: &mut F,
    w: &mut G,
) -> MergeEnd {
    if parallel && streams.len() > 1 && streams.len() <= MAX_THREADS {
        let depth = (MAX_THREADS / streams.len()).clamp(1, CHANNEL_DEPTH);
        let batch_bytes = (CHUNKED_IN_FLIGHT / (streams.len() * (depth + 2)))
            .clamp(64 << 10, CHUNKED_BATCH_BYTES);
        std::thread::scope(|scope| {
            let mut heads = Vec::with_capacity(streams.len());
            for mut s in streams {
                let (tx, rx) = mpsc::sync_channel::<Result<Batch<'a>, (u64, String)>>(depth);
                // the merger gives finished batches back for reuse
                let (give_back, spare) = mpsc::channel::<Batch<'a>>();
                s.spare = Some(spare);
                s.batch_bytes = s.batch_bytes.min(batch_bytes);
                let (cpu, buffer) = (s.cpu, s.buffer);
                std::thread::Builder::new()
                    .name(format!("tracedat-cpu{cpu}"))
                    .spawn_scoped(scope, move || {
                        // A closed channel (the merger stopped or failed) ends the worker.
                        while let Some(b) = s.next_decoded_caught() {
                            if tx.send(b).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("spawn decoder thread");
                heads.push(Head {
                    lane: Lane::Remote(rx),
                    cpu,
                    buffer,
                    batch: None,
                    idx: 0,
                    give_back: Some(give_back),
                });
            }
            run_merge(heads, f, w)
        })
    } else {
        // two batches per CPU in memory: the one merged and the one made
        // (reused from the one before)
        let batch_bytes =
            (CHUNKED_IN_FLIGHT / (2 * streams.len().max(1))).clamp(64 << 10, CHUNKED_BATCH_BYTES);
        let heads = streams
            .into_iter()
            .map(|mut s| {
                s.batch_bytes = s.batch_bytes.min(batch_bytes);
                // the stream reuses the batch the merger has finished with
                let (give_back, spare) = mpsc::channel::<Batch<'a>>();
                s.spare = Some(spare);
                Head {
                    cpu: s.cpu,
                    buffer: s.buffer,
                    lane: Lane::Local(Box::new(s)),
                    batch: None,
                    idx: 0,
                    give_back: Some(give_back),
                }
            })
            .collect();
        run_merge(heads, f, w)
    }
}

fn run_merge<F: FnMut(Item<'_>) -> crate::Flow, G: FnMut(u64, String)>(
    mut heads: Vec<Head<'_>>,
    f: &mut F,
    w: &mut G,
) -> MergeEnd {
    let mut end = MergeEnd::default();
    // refill: make sure each head has a current record, drop finished ones
    fn refill<G: FnMut(u64, String)>(h: &mut Head<'_>, w: &mut G, end: &mut MergeEnd) -> bool {
        loop {
            if let Some(b) = &h.batch {
                if h.idx < b.recs.len() {
                    return true;
                }
            }
            match h.lane.next() {
                Some(Ok(mut b)) => {
                    for (o, m) in b.warnings.drain(..) {
                        w(o, m);
                    }
                    for &(id, n, lo, hi) in &b.counted {
                        let c = end.counted.entry((h.cpu, id)).or_insert((0, u64::MAX, 0));
                        c.0 += n;
                        c.1 = c.1.min(lo);
                        c.2 = c.2.max(hi);
                    }
                    if let (Some(old), Some(g)) = (h.batch.replace(b), &h.give_back) {
                        // a worker that has ended has no use for it
                        let _ = g.send(old);
                    }
                    h.idx = 0;
                }
                Some(Err(p)) => {
                    end.panic.get_or_insert(p);
                    h.batch = None;
                    return false;
                }
                None => {
                    h.batch = None;
                    return false;
                }
            }
        }
    }
    heads.retain_mut(|h| refill(h, w, &mut end));
    while !heads.is_empty() && end.panic.is_none() {
        // pick the smallest timestamp; ties go to the earlier lane
        let (mut best, mut best_ts) = (0, u64::MAX);
        for (i, h) in heads.iter().enumerate() {
            let ts = h.batch.as_ref().unwrap().recs[h.idx].ts;
            if ts < best_ts {
                best_ts = ts;
                best = i;
            }
        }
        // the lane that comes next: its timestamp bounds the run emitted
        // from the best lane (lanes before `best` win ties, lanes after lose)
        let mut limit = u64::MAX;
        let mut limit_inclusive = true;
        for (i, h) in heads.iter().enumerate() {
            if i == best {
                continue;
            }
            let ts = h.batch.as_ref().unwrap().recs[h.idx].ts;
            if ts < limit || (ts == limit && i < best) {
                limit = ts;
                limit_inclusive = i > best;
            }
        }
        // emit every record of this lane up to the next-best timestamp
        let h = &mut heads[best];
        loop {
            let b = h.batch.as_ref().unwrap();
            let rec = b.recs[h.idx];
            if rec.ts > limit || (rec.ts == limit && !limit_inclusive) {
                break;
            }
            let line = match b.line_ends.get(h.idx) {
                Some(&e) => b
                    .lines
                    .get(
                        if h.idx == 0 {
                            0
                        } else {
                            b.line_ends[h.idx - 1] as usize
                        }..e as usize,
                    )
                    .unwrap_or(""),
                None => "",
            };
            if f(Item {
                cpu: h.cpu,
                buffer: h.buffer,
                rec,
                bytes: b.bytes(),
                line,
            })
            .is_break()
            {
                end.stopped = true;
                return end;
            }
            h.idx += 1;
            if h.idx >= b.recs.len() {
                break;
            }
        }
        if !refill(&mut heads[best], w, &mut end) {
            heads.remove(best);
        }
    }
    end
}

#[cfg(test)]
mod release_tests {
    /// Pages given back are read again from the file, byte for byte.
    #[test]
    fn released_pages_of_a_file_mapping_read_back_the_same() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let m = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        assert_eq!(&m[..], &data[..]);
        super::release_pages(&m[100..40 * 4096 + 5]);
        assert_eq!(&m[..], &data[..]);
    }
}

#[cfg(test)]
mod page_walk_tests {
    use super::super::format::HeaderPage;
    use super::super::header::{CpuData, Endian, PidHash};
    use super::super::page::RecKind;
    use super::*;

    /// A lost-events marker goes out just before the first event after the
    /// loss, with that event's time (libtraceevent's kbuffer reports the
    /// missed events when it reads that page's first record).
    #[test]
    fn the_lost_marker_goes_before_the_first_event_with_its_time() {
        // page: time 1000, commit = missed events (bit 31) + 16 data bytes
        let mut p = 1000u64.to_le_bytes().to_vec();
        p.extend_from_slice(&((1u64 << 31) | 16).to_le_bytes());
        for w in [1u32 | (50 << 5), 0x11, 1 | (7 << 5), 0x22] {
            p.extend_from_slice(&w.to_le_bytes());
        }
        p.resize(4096, 0);
        let d = CpuData {
            cpu: 3,
            offset: 0,
            size: p.len() as u64,
        };
        let comms = std::collections::HashMap::with_hasher(PidHash);
        let hp = HeaderPage::default_for(8);
        let mut s = CpuStream::new(
            &p,
            &d,
            0,
            Endian::Little,
            hp,
            4096,
            false,
            Compression::None,
            &[],
            &comms,
        );
        let b = s.next_decoded().unwrap();
        let got: Vec<(RecKind, u64)> = b.recs.iter().map(|r| (r.kind, r.ts)).collect();
        assert_eq!(
            got,
            [
                (RecKind::Lost, 1050),
                (RecKind::Event, 1050),
                (RecKind::Event, 1057)
            ]
        );
        assert!(s.next_decoded().is_none());
    }
}
