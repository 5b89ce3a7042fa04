//! Ring-buffer page decoding, following libtraceevent's `kbuffer-parse.c`:
//! page header (timestamp, commit + missed-events flags), event headers
//! (5-bit type_len, 27-bit time delta), time extends, absolute time stamps,
//! padding, and the stored lost-event count.

use super::format::HeaderPage;
use super::header::Endian;

const TYPE_PADDING: u32 = 29;
const TYPE_TIME_EXTEND: u32 = 30;
const TYPE_TIME_STAMP: u32 = 31;
const TS_SHIFT: u32 = 27;
const TS_MASK: u32 = (1 << TS_SHIFT) - 1;
const COMMIT_MASK: u64 = (1 << 27) - 1;
const MISSING_EVENTS: u64 = 1 << 31;
const MISSING_STORED: u64 = 1 << 30;
/// Upper bits an absolute time stamp does not carry (kernel `TS_MSB`).
const TS_MSB: u64 = 0xf8 << 56;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecKind {
    Event,
    /// The ring buffer dropped events before this page; [`Rec::lost`] is
    /// the count, `u64::MAX` when unknown.
    Lost,
}

/// One record located in a batch buffer.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub ts: u64,
    /// Start and length of the event payload within the batch buffer (of
    /// a lost-events marker, which has none: its count, see [`Rec::lost`]).
    pub start: u32,
    pub len: u32,
    pub kind: RecKind,
    /// File offset (the event header for plain data; the chunk for compressed).
    pub off: u64,
    /// Filled by the decoding worker ([`super::merge`]): the event's
    /// `common_type`, whether a format was found, pid, flags (bit 8 = known)
    /// and preempt count.
    pub id: u32,
    pub known: bool,
    pub pid: i32,
    pub flags: u16,
    pub preempt: u8,
    pub has_preempt: bool,
    /// Index of the task's comm in the saved cmdlines, `u32::MAX` if none.
    pub comm: u32,
}

impl Rec {
    /// The context its `common_flags` give (bit 8 of `flags`: the format
    /// had them), or unknown.
    #[inline]
    pub fn context(&self) -> crate::Context {
        if self.flags & 0x100 != 0 {
            crate::Context::from_common_flags(
                self.flags as u8,
                if self.has_preempt {
                    Some(self.preempt)
                } else {
                    None
                },
            )
        } else {
            crate::Context::UNKNOWN
        }
    }

    /// The number of events a lost-events marker stands for (`u64::MAX`:
    /// unknown); 0 for an event.
    #[inline]
    pub fn lost(&self) -> u64 {
        match self.kind {
            RecKind::Lost => (self.len as u64) << 32 | self.start as u64,
            RecKind::Event => 0,
        }
    }

    /// A record; `lost` is a marker's count (ignored for an event), kept
    /// where a marker's payload would be, which it does not have.
    pub fn new(ts: u64, start: u32, len: u32, kind: RecKind, lost: u64, off: u64) -> Rec {
        let (start, len) = match kind {
            RecKind::Event => (start, len),
            RecKind::Lost => (lost as u32, (lost >> 32) as u32),
        };
        Rec {
            ts,
            start,
            len,
            kind,
            off,
            id: 0,
            known: false,
            pid: -1,
            flags: 0,
            preempt: 0,
            has_preempt: false,
            comm: u32::MAX,
        }
    }
}

/// The events of one page, in page order, decoded as they are asked for.
/// [`PageRecords::lost`] is the page's lost-events marker, if it has one
/// (it goes just before the page's first event, with that event's time).
/// After the last event, [`PageRecords::warning`] says whether the page was
/// malformed (the events before the problem are kept).
pub struct PageRecords<'p> {
    /// The page's data after its header, and how much of it is committed.
    data: &'p [u8],
    size: usize,
    e: Endian,
    ts: u64,
    curr: usize,
    /// Offset of the data within the batch buffer, and its file offset
    /// (exact, or the compressed chunk's).
    buf_data: u32,
    file_off: u64,
    dstart: usize,
    exact: bool,
    /// The page's lost-events marker (with the page's time).
    lost: Option<Rec>,
    done: bool,
    warn: Option<String>,
}

impl<'p> PageRecords<'p> {
    /// Read the page header of `page` (exactly the page's bytes). `buf_off`
    /// is the offset of `page[0]` within the batch buffer; `file_off` the
    /// file offset of `page[0]` (or of its compressed chunk when `exact` is
    /// false). A page too short for its header is a warning, and no records.
    /// Inlined, so that a caller's constant byte order stays one.
    #[inline(always)]
    pub fn new(
        page: &'p [u8],
        e: Endian,
        hp: HeaderPage,
        buf_off: u32,
        file_off: u64,
        exact: bool,
    ) -> Result<PageRecords<'p>, String> {
        let dstart = hp.data_offset as usize;
        // The header is the 8-byte timestamp and the commit word, whatever
        // `header_page` says the data offset is (a file may claim `data
        // offset:8` right after an 8-byte commit field).
        let header = dstart.max(8 + hp.commit_size as usize);
        if page.len() < header {
            return Err(format!(
                "page of {} bytes is shorter than its {header}-byte header",
                page.len()
            ));
        }
        let ts = e.read_uint(page, 8);
        let flags = e.read_uint(&page[8..], hp.commit_size as usize);
        let data = &page[dstart..];
        let mut size = (flags & COMMIT_MASK) as usize;
        let mut warn = None;
        if size > data.len() {
            warn = Some(format!(
                "page commit size {size} exceeds the page ({} data bytes); page truncated",
                data.len()
            ));
            size = data.len();
        }
        // The lost-events marker (the caller gives it the time of the
        // first event after the loss).
        let lost = (flags & MISSING_EVENTS != 0).then(|| {
            let n = if flags & MISSING_STORED != 0 {
                let ls = hp.commit_size as usize;
                data.get(size..size + ls)
                    .map(|b| e.read_uint(b, ls))
                    .unwrap_or(u64::MAX)
            } else {
                u64::MAX
            };
            Rec::new(ts, 0, 0, RecKind::Lost, n, file_off)
        });
        Ok(PageRecords {
            data,
            size,
            e,
            ts,
            curr: 0,
            buf_data: buf_off + dstart as u32,
            file_off,
            dstart,
            exact,
            lost,
            done: false,
            warn,
        })
    }

    /// The lost-events marker of a page whose ring buffer dropped events
    /// before it (the count, `u64::MAX` when unknown), with the page's time:
    /// the caller hands it out before the page's first event, with that
    /// event's time, or alone when the page has none.
    pub fn lost(&self) -> Option<Rec> {
        self.lost
    }

    /// Why the page was cut short, once every record was read.
    pub fn warning(self) -> Option<String> {
        self.warn
    }

    #[inline]
    fn read4(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        Some(self.e.u32([b[0], b[1], b[2], b[3]]))
    }

    /// The page is malformed at data byte `curr`: say how, and end.
    #[cold]
    #[inline(never)]
    fn cut(&mut self, how: Cut, curr: usize, len: u32) -> Option<Hdr> {
        let at = self.dstart + curr;
        let w = match how {
            Cut::TimeExtend => "time extend cut off at the end of the page".to_string(),
            Cut::Length => "event length cut off at the end of the page".to_string(),
            Cut::Short => {
                format!("event at page byte {at} has length {len}, expected at least 4")
            }
            Cut::PastCommit => {
                format!("event at page byte {at} runs past the page's committed data")
            }
        };
        self.end(Some(w))
    }

    /// The page has no more events.
    #[cold]
    fn end(&mut self, warn: Option<String>) -> Option<Hdr> {
        self.done = true;
        if warn.is_some() {
            self.warn = warn;
        }
        None
    }
}

/// How a page was malformed.
#[derive(Clone, Copy)]
enum Cut {
    TimeExtend,
    Length,
    Short,
    PastCommit,
}

/// An event's place in a page, as the page walk finds it: its time, its
/// payload within the batch buffer and its file offset. Small and of
/// uniform width, so that it stays in registers (a `Rec` built here and
/// copied on stalled the walk on store-to-load forwarding).
#[derive(Clone, Copy, Debug)]
pub struct Hdr {
    pub ts: u64,
    pub start: u32,
    pub len: u32,
    pub off: u64,
}

impl Iterator for PageRecords<'_> {
    type Item = Hdr;

    // Inlined into the caller's loop, so that each record stays in registers.
    #[inline(always)]
    fn next(&mut self) -> Option<Hdr> {
        if self.done {
            return None;
        }
        loop {
            let curr = self.curr;
            if curr + 4 > self.size {
                return self.end(None);
            }
            let w = self.read4(curr).unwrap();
            let (type_len, delta) = match self.e {
                Endian::Little => (w & 0x1f, w >> 5),
                Endian::Big => (w >> 27, w & TS_MASK),
            };
            // an event's payload (start, length) in `data`; other records only move on
            let (start, len) = match type_len {
                TYPE_PADDING => {
                    self.ts = self.ts.wrapping_add(delta as u64);
                    let Some(len) = self.read4(curr + 4) else {
                        return self.end(None);
                    };
                    if delta == 0 {
                        // null padding: the rest of the page is empty
                        return self.end(None);
                    }
                    self.curr = curr + 4 + len as usize;
                    continue;
                }
                TYPE_TIME_EXTEND | TYPE_TIME_STAMP => {
                    let Some(hi) = self.read4(curr + 4) else {
                        return self.cut(Cut::TimeExtend, curr, 0);
                    };
                    let v = ((hi as u64) << TS_SHIFT) + delta as u64;
                    if type_len == TYPE_TIME_EXTEND {
                        self.ts = self.ts.wrapping_add(v);
                    } else {
                        self.ts = v | (self.ts & TS_MSB);
                    }
                    self.curr = curr + 8;
                    continue;
                }
                0 => {
                    self.ts = self.ts.wrapping_add(delta as u64);
                    let Some(l) = self.read4(curr + 4) else {
                        return self.cut(Cut::Length, curr, 0);
                    };
                    if l < 4 {
                        return self.cut(Cut::Short, curr, l);
                    }
                    (curr + 8, ((l - 4) as usize + 3) & !3)
                }
                _ => {
                    self.ts = self.ts.wrapping_add(delta as u64);
                    (curr + 4, type_len as usize * 4)
                }
            };
            if start + len > self.size {
                return self.cut(Cut::PastCommit, curr, 0);
            }
            let off = if self.exact {
                self.file_off + (self.dstart + curr) as u64
            } else {
                self.file_off
            };
            self.curr = start + len;
            return Some(Hdr {
                ts: self.ts,
                start: self.buf_data + start as u32,
                len: len as u32,
                off,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_48_bytes() {
        // the decoding threads write one per kept record, the merger reads it
        assert_eq!(std::mem::size_of::<Rec>(), 48);
    }

    /// A little-endian page: timestamp, commit word (`flags` | data size),
    /// then `data` and `tail` (bytes past the committed size).
    fn page(ts: u64, flags: u64, data: &[u32], tail: &[u8]) -> Vec<u8> {
        let mut p = ts.to_le_bytes().to_vec();
        p.extend_from_slice(&(flags | (data.len() as u64 * 4)).to_le_bytes());
        for w in data {
            p.extend_from_slice(&w.to_le_bytes());
        }
        p.extend_from_slice(tail);
        p.resize(4096, 0);
        p
    }

    /// The page's lost-events marker, its events, and its warning.
    fn records(p: &[u8]) -> (Option<Rec>, Vec<Hdr>, Option<String>) {
        let hp = HeaderPage::default_for(8);
        let mut page = PageRecords::new(p, Endian::Little, hp, 100, 5000, true).unwrap();
        let recs: Vec<Hdr> = page.by_ref().collect();
        (page.lost(), recs, page.warning())
    }

    #[test]
    fn a_stored_loss_count_is_read_and_time_extends_add_up() {
        let words = [
            2 | (5 << 5), // an 8-byte event, 5 ns after the page's time
            0xaaaa_aaaa,
            0xbbbb_bbbb,
            30 | (7 << 5), // time extend: 7 + (2 << 27)
            2,
            1 | (3 << 5), // a 4-byte event, 3 ns later
            0xcccc_cccc,
        ];
        let p = page(
            1000,
            MISSING_EVENTS | MISSING_STORED,
            &words,
            &42u64.to_le_bytes(),
        );
        let (lost, recs, warn) = records(&p);
        assert_eq!(warn, None);
        let lost = lost.unwrap();
        assert_eq!((lost.kind, lost.ts, lost.lost()), (RecKind::Lost, 1000, 42));
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].ts, recs[0].start, recs[0].len),
            (1005, 100 + 16 + 4, 8)
        );
        assert_eq!(recs[0].off, 5000 + 16);
        assert_eq!(recs[1].ts, 1005 + 7 + (2 << 27) + 3);
        assert_eq!((recs[1].start, recs[1].len), (100 + 16 + 24, 4));
    }

    #[test]
    fn a_loss_without_a_stored_count_is_unknown() {
        let (lost, recs, warn) = records(&page(777, MISSING_EVENTS, &[], &[]));
        assert_eq!(warn, None);
        assert!(recs.is_empty());
        let lost = lost.unwrap();
        assert_eq!(
            (lost.kind, lost.ts, lost.lost()),
            (RecKind::Lost, 777, u64::MAX)
        );
        // no loss flagged: no marker
        assert!(records(&page(777, 0, &[], &[])).0.is_none());
    }

    #[test]
    fn a_malformed_event_ends_the_page_with_a_warning_and_keeps_what_came_before() {
        // an event, then a type-0 event whose length word says 2 (< 4)
        let words = [1 | (1 << 5), 0x1111_1111, 1 << 5, 2];
        let (_, recs, warn) = records(&page(10, 0, &words, &[]));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].ts, 11);
        let w = warn.unwrap();
        assert!(w.contains("page byte 24 has length 2"), "{w}");
    }

    #[test]
    fn an_event_past_the_commit_and_a_short_page_are_warnings() {
        // type_len 3 (12 bytes) but only 8 committed after the header word
        let (_, recs, warn) = records(&page(10, 0, &[3 | (1 << 5), 1, 2], &[]));
        assert!(recs.is_empty());
        assert!(warn
            .unwrap()
            .contains("runs past the page's committed data"));
        let hp = HeaderPage::default_for(8);
        let e = PageRecords::new(&[0u8; 12], Endian::Little, hp, 0, 0, true)
            .err()
            .unwrap();
        assert!(e.contains("shorter than its 16-byte header"), "{e}");
    }
}
