//! The fuzz targets' bodies, shared with the test suite's corpus replay
//! (`analyses/tests/fuzz_replay.rs` includes this file): any input must give
//! a report, warnings or an error, never a panic, a hang or an allocation
//! the input cannot justify. Every body runs the whole pipeline: format
//! detection, the reader, the replay and the analyses, and renders the report.
#![allow(dead_code)]

use nmitrace_analyses::{Analyzer, Config};
use nmitrace_parser::{Format, Input, Trace};
use std::io::Read;

/// Render what a user would see, so message formatting is fuzzed too.
fn render(r: &nmitrace_analyses::Report) {
    let _ = r.render_text();
    let _ = serde_json::to_vec(r);
}

/// Detect, read and analyse `data` as a user's file would be.
pub fn analyze_bytes(data: &[u8]) {
    let Ok(input) = Input::from_bytes("fuzz", data.to_vec()) else {
        return;
    };
    let Ok(mut t) = Trace::from_input("fuzz".into(), input) else {
        return;
    };
    t.threads = Some(1);
    if t.probe().is_err() {
        return;
    }
    let info = t.info.clone();
    let mut a = Analyzer::for_trace(Config::default(), &info);
    if let Ok(stats) = t.run(&mut a) {
        render(&a.finish("fuzz", &info, &stats));
    }
}

/// The text parser in the format the first byte picks (tracefs, `trace-cmd
/// report`, `perf script`), whatever the detection would say.
pub fn text_as(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let format = match sel % 3 {
        0 => Format::TracefsText,
        1 => Format::TraceCmdReport,
        _ => Format::PerfScript,
    };
    let Ok(input) = Input::from_bytes("fuzz.txt", rest.to_vec()) else {
        return;
    };
    let mut info = nmitrace_parser::TraceInfo {
        format: Some(format),
        ..Default::default()
    };
    let _ = nmitrace_parser::text::probe("fuzz.txt", input.head(), &mut info);
    let mut a = Analyzer::for_trace(Config::default(), &info);
    if let Ok(stats) = nmitrace_parser::text::run("fuzz.txt", format, input, &mut a, Some(1)) {
        render(&a.finish("fuzz.txt", &info, &stats));
    }
}

/// Format detection alone.
pub fn detect(data: &[u8]) {
    let _ = nmitrace_parser::detect::detect("fuzz", data);
    let _ = nmitrace_parser::text::detect_text("fuzz", data);
}

/// The input layer (gzip / zstd by magic): decompress, at most 64 MiB out.
pub fn input_layer(data: &[u8]) {
    let Ok(input) = Input::from_bytes("fuzz.gz", data.to_vec()) else {
        return;
    };
    let _ = input.head().len();
    let (_, rest, _) = input.into_parts();
    let mut sink = std::io::sink();
    let _ = std::io::copy(&mut rest.take(64 << 20), &mut sink);
}

/// The trace.dat reader and the analyses over it; every format's layout.
pub fn tracedat(data: &[u8]) {
    let mut a = Analyzer::new(Config::default());
    if let Ok(stats) = nmitrace_parser::tracedat::run_bytes("fuzz.dat", data, &mut a, Some(1)) {
        render(&a.finish("fuzz.dat", &Default::default(), &stats));
    }
    if let Ok(meta) = nmitrace_parser::tracedat::read_meta("fuzz.dat", data) {
        for f in &meta.formats {
            let _ = f.layout();
        }
    }
}

/// A little deterministic generator over the fuzzer's bytes.
struct Bytes<'a>(&'a [u8], usize);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.0.get(self.1)?;
        self.1 += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) | (u16::from(self.u8()?) << 8))
    }
}

/// Characters that break the line grammar where they land.
const NASTY: &[u8] = b"-[]:.=Z( \t";

/// Structure-aware line mutations of a real trace: `data` picks the base
/// (one of `bases`), a window of its lines, then a program of edits — cut a
/// line short, delete a few bytes, insert `-[]:.=Z(` and blanks, duplicate or
/// swap lines, drop a line's end — and returns the mutated text.
pub fn mutate_lines(data: &[u8], bases: &[&[u8]]) -> Vec<u8> {
    if bases.is_empty() {
        return Vec::new();
    }
    let mut g = Bytes(data, 0);
    let base = bases[g.u8().unwrap_or(0) as usize % bases.len()];
    let lines: Vec<&[u8]> = base.split(|&c| c == b'\n').collect();
    // keep the header lines (# …, cpus=) and a window of the rest
    let header: Vec<&[u8]> = lines
        .iter()
        .take_while(|l| l.first() == Some(&b'#') || l.starts_with(b"cpus="))
        .copied()
        .collect();
    let body = &lines[header.len()..];
    let start = g.u16().unwrap_or(0) as usize % body.len().max(1);
    let count = 1 + g.u8().unwrap_or(60) as usize;
    let mut out: Vec<Vec<u8>> = header.iter().map(|l| l.to_vec()).collect();
    out.extend(body.iter().skip(start).take(count).map(|l| l.to_vec()));
    let h = header.len();
    while let (Some(op), Some(li), Some(pos)) = (g.u8(), g.u8(), g.u8()) {
        let n = out.len();
        if n == 0 {
            break;
        }
        // mostly edit the event lines, sometimes the header
        let hh = h.min(n);
        let i = if op & 0x80 != 0 || n == hh {
            li as usize % n
        } else {
            hh + li as usize % (n - hh)
        };
        let l = &mut out[i];
        let p = pos as usize % (l.len() + 1);
        match op % 8 {
            0 => l.truncate(p),
            1 => {
                let k = 1 + (op as usize >> 3) % 6;
                let e = (p + k).min(l.len());
                l.drain(p..e);
            }
            2 | 3 => l.insert(p, NASTY[(op as usize >> 3) % NASTY.len()]),
            4 => {
                let dup = l.clone();
                out.insert(i, dup);
            }
            5 => {
                let j = pos as usize % n;
                out.swap(i, j);
            }
            6 => {
                let c = g.u8().unwrap_or(b'0');
                if p < l.len() {
                    l[p] = c;
                }
            }
            _ => {
                out.remove(i);
            }
        }
    }
    let mut text = out.join(&b'\n');
    if g.u8().is_none_or(|b| b & 1 == 0) {
        text.push(b'\n');
    }
    text
}

/// Structure-aware trace.dat mutations: overwrite the header's sizes,
/// offsets and option words (aligned 2/4/8-byte integers whose value could
/// be an offset or a size in the file) and the numbers of the `header_page`
/// and format texts (`offset:8;`, `size:8;`) with edge values; cut the file.
pub fn mutate_tracedat(data: &[u8], bases: &[&[u8]]) -> Vec<u8> {
    if bases.is_empty() {
        return Vec::new();
    }
    let mut g = Bytes(data, 0);
    let mut f = bases[g.u8().unwrap_or(0) as usize % bases.len()].to_vec();
    let len = f.len() as u64;
    // candidate integers: aligned words in the first 64 KiB whose value is a
    // plausible offset or size (0 < v <= file length)
    let head = f.len().min(64 << 10);
    let mut words: Vec<(usize, usize)> = Vec::new();
    for w in [4usize, 8] {
        let mut i = 0;
        while i + w <= head {
            let v = if w == 4 {
                u32::from_le_bytes(f[i..i + 4].try_into().unwrap()) as u64
            } else {
                u64::from_le_bytes(f[i..i + 8].try_into().unwrap())
            };
            if v > 0 && v <= len {
                words.push((i, w));
            }
            i += w;
        }
    }
    // numbers in the format texts: the digits after `offset:` and `size:`
    let mut nums: Vec<(usize, usize)> = Vec::new();
    for key in [&b"offset:"[..], b"size:", b"signed:"] {
        let mut i = 0;
        while let Some(k) = f[i..head].windows(key.len()).position(|w| w == key) {
            let s = i + k + key.len();
            let e = s + f[s..].iter().take_while(|c| c.is_ascii_digit()).count();
            if e > s {
                nums.push((s, e));
            }
            i = s;
            if i >= head {
                break;
            }
        }
    }
    const EDGES: [u64; 10] = [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        0xffff_ffff,
        0x7fff_ffff_ffff_ffff,
        u64::MAX,
    ];
    while let (Some(op), Some(sel)) = (g.u8(), g.u16()) {
        if op >= 0xf0 {
            let cut = (sel as usize * 64).min(f.len() / 2);
            f.truncate(f.len() - cut);
            continue;
        }
        match op % 4 {
            0 | 1 if !words.is_empty() => {
                let (at, w) = words[sel as usize % words.len()];
                // a cut may have taken the word away
                if at + w > f.len() {
                    continue;
                }
                let v = match op >> 2 & 3 {
                    0 => EDGES[(op >> 4) as usize % EDGES.len()],
                    1 => len.wrapping_add((op >> 4) as u64),
                    2 => len.wrapping_sub((op >> 4) as u64),
                    _ => g.u16().unwrap_or(0) as u64 * 4096,
                };
                f[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            2 if !nums.is_empty() => {
                let (s, e) = nums[sel as usize % nums.len()];
                let digit = b'0' + (op >> 2) % 10;
                for c in f.iter_mut().take(e).skip(s) {
                    *c = digit;
                }
            }
            3 if !nums.is_empty() => {
                // a shorter number (`offset:16;` → `offset:8;`): the text
                // shifts, the section sizes around it no longer match
                let i = sel as usize % nums.len();
                let (s, e) = nums[i];
                if e <= f.len() {
                    f.splice(s..e, [b'0' + (op >> 2) % 10]);
                    nums.truncate(i);
                    words.retain(|&(at, _)| at + 8 <= s);
                }
            }
            _ => {}
        }
    }
    f
}
