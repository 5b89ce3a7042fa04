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
    /// The ring buffer dropped events before this page; `lost` is the
    /// count, `u64::MAX` when unknown.
    Lost,
}

/// One record located in a batch buffer.
#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub ts: u64,
    /// Start and length of the event payload within the batch buffer.
    pub start: u32,
    pub len: u32,
    pub kind: RecKind,
    pub lost: u64,
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

    pub fn new(ts: u64, start: u32, len: u32, kind: RecKind, lost: u64, off: u64) -> Rec {
        Rec {
            ts,
            start,
            len,
            kind,
            lost,
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

/// Decode one page, handing each record to `emit` in page order (a
/// lost-events marker just before the first event after the loss, with that
/// event's time). `page` is exactly the page bytes; `buf_off` is the offset
/// of `page[0]` within the batch buffer; `file_off` the file offset of
/// `page[0]` (or of its compressed chunk when `exact` is false). Returns a
/// warning when the page is malformed (records before the problem are kept).
pub fn decode_page_with(
    page: &[u8],
    e: Endian,
    hp: HeaderPage,
    buf_off: u32,
    file_off: u64,
    exact: bool,
    emit: &mut impl FnMut(Rec),
) -> Option<String> {
    let dstart = hp.data_offset as usize;
    // The header is the 8-byte timestamp and the commit word, whatever
    // `header_page` says the data offset is (a file may claim `data offset:8`
    // right after an 8-byte commit field).
    let header = dstart.max(8 + hp.commit_size as usize);
    if page.len() < header {
        return Some(format!(
            "page of {} bytes is shorter than its {header}-byte header",
            page.len()
        ));
    }
    let mut ts = e.read_uint(page, 8);
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
    let read4 = |at: usize| -> Option<u32> {
        let b = data.get(at..at + 4)?;
        Some(e.u32([b[0], b[1], b[2], b[3]]))
    };
    // The lost-events marker carries the time of the first event after the
    // loss: it waits for that event.
    let mut lost_rec: Option<Rec> = None;
    if flags & MISSING_EVENTS != 0 {
        let lost = if flags & MISSING_STORED != 0 {
            let ls = hp.commit_size as usize;
            data.get(size..size + ls)
                .map(|b| e.read_uint(b, ls))
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        lost_rec = Some(Rec::new(ts, 0, 0, RecKind::Lost, lost, file_off));
    }
    let pos_of = |at: usize| {
        if exact {
            file_off + (dstart + at) as u64
        } else {
            file_off
        }
    };
    let mut curr = 0usize;
    while curr + 4 <= size {
        let w = read4(curr).unwrap();
        let (type_len, delta) = match e {
            Endian::Little => (w & 0x1f, w >> 5),
            Endian::Big => (w >> 27, w & TS_MASK),
        };
        // an event's payload (start, length) in `data`; other records only move on
        let (start, len) = match type_len {
            TYPE_PADDING => {
                ts = ts.wrapping_add(delta as u64);
                let Some(len) = read4(curr + 4) else { break };
                if delta == 0 {
                    // null padding: the rest of the page is empty
                    break;
                }
                curr += 4 + len as usize;
                continue;
            }
            TYPE_TIME_EXTEND | TYPE_TIME_STAMP => {
                let Some(hi) = read4(curr + 4) else {
                    warn = Some("time extend cut off at the end of the page".into());
                    break;
                };
                let v = ((hi as u64) << TS_SHIFT) + delta as u64;
                if type_len == TYPE_TIME_EXTEND {
                    ts = ts.wrapping_add(v);
                } else {
                    ts = v | (ts & TS_MSB);
                }
                curr += 8;
                continue;
            }
            0 => {
                ts = ts.wrapping_add(delta as u64);
                let Some(l) = read4(curr + 4) else {
                    warn = Some("event length cut off at the end of the page".into());
                    break;
                };
                if l < 4 {
                    warn = Some(format!(
                        "event at page byte {} has length {l}, expected at least 4",
                        dstart + curr
                    ));
                    break;
                }
                (curr + 8, ((l - 4) as usize + 3) & !3)
            }
            _ => {
                ts = ts.wrapping_add(delta as u64);
                (curr + 4, type_len as usize * 4)
            }
        };
        if start + len > size {
            warn = Some(format!(
                "event at page byte {} runs past the page's committed data",
                dstart + curr
            ));
            break;
        }
        let r = Rec::new(
            ts,
            buf_off + (dstart + start) as u32,
            len as u32,
            RecKind::Event,
            0,
            pos_of(curr),
        );
        if let Some(mut l) = lost_rec.take() {
            l.ts = r.ts;
            emit(l);
        }
        emit(r);
        curr = start + len;
    }
    // No event after the loss on this page: the marker keeps the page's time.
    if let Some(l) = lost_rec {
        emit(l);
    }
    warn
}
