//! v7 compression: whole compressed sections and the chunked per-CPU
//! trace data (`<count> { <comp size> <uncomp size> <data> }*`).

use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Zlib,
}

/// Largest decompressed metadata section we accept.
pub const MAX_SECTION: usize = 1 << 30;
/// Largest decompressed trace-data chunk we accept (trace-cmd writes 10 pages).
pub const MAX_CHUNK: usize = 64 << 20;

/// Decompress `data`, which claims to expand to `uncomp` bytes. The output
/// buffer grows with the data actually produced, never with the claim
/// alone, and stops at `uncomp` (capped at `max`).
pub fn decompress(
    c: Compression,
    data: &[u8],
    uncomp: usize,
    max: usize,
) -> Result<Vec<u8>, String> {
    if uncomp > max {
        return Err(format!(
            "claims {uncomp} uncompressed bytes, more than the {max} accepted"
        ));
    }
    let mut out = Vec::with_capacity(uncomp.min(data.len().saturating_mul(8).max(4096)));
    let res = match c {
        Compression::None => {
            out.extend_from_slice(&data[..uncomp.min(data.len())]);
            Ok(())
        }
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(data) {
            Ok(d) => d.take(uncomp as u64).read_to_end(&mut out).map(|_| ()),
            Err(e) => Err(e),
        },
        Compression::Zlib => flate2::read::ZlibDecoder::new(data)
            .take(uncomp as u64)
            .read_to_end(&mut out)
            .map(|_| ()),
    };
    res.map_err(|e| format!("compressed data is corrupt ({e}); expected a valid {c:?} stream"))?;
    if out.len() != uncomp {
        return Err(format!(
            "decompressed to {} bytes, expected {uncomp}",
            out.len()
        ));
    }
    Ok(out)
}

/// Reusing variant for the hot path: decompress a chunk and append it to
/// `out`, whose first `base` bytes (its length) are kept.
pub fn decompress_into(
    c: Compression,
    dctx: &mut Option<zstd::bulk::Decompressor<'static>>,
    data: &[u8],
    uncomp: usize,
    out: &mut Vec<u8>,
    base: usize,
) -> Result<(), String> {
    if uncomp > MAX_CHUNK {
        return Err(format!(
            "a chunk claims {uncomp} uncompressed bytes, more than the {MAX_CHUNK} accepted"
        ));
    }
    // zstd expands at most ~32768x (RLE blocks); a larger claim is a lie
    if uncomp > data.len().saturating_mul(32768).saturating_add(4096) {
        return Err(format!("a chunk of {} compressed bytes claims {uncomp} uncompressed bytes, more than it can hold", data.len()));
    }
    out.truncate(base);
    match c {
        Compression::Zstd => {
            // A frame that records its content size must agree with the claim.
            if let Ok(Some(fs)) = zstd::zstd_safe::get_frame_content_size(data) {
                if fs != uncomp as u64 {
                    return Err(format!(
                        "chunk frame holds {fs} bytes but the header claims {uncomp}"
                    ));
                }
            }
            if dctx.is_none() {
                *dctx = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
            }
            // The claim is capped (MAX_CHUNK) and page-aligned by trace-cmd.
            out.reserve(uncomp);
            // Written after `base` (a cursor there), into the spare capacity.
            let mut at = std::io::Cursor::new(&mut *out);
            at.set_position(base as u64);
            let n = dctx
                .as_mut()
                .unwrap()
                .decompress_to_buffer(data, &mut at)
                .map_err(|e| format!("compressed chunk is corrupt ({e}); expected a valid zstd frame of {uncomp} bytes"))?;
            if n != uncomp || out.len() != base + n {
                out.truncate(base);
                return Err(format!(
                    "chunk decompressed to {n} bytes, expected {uncomp}"
                ));
            }
            Ok(())
        }
        _ => {
            let v = decompress(c, data, uncomp, MAX_CHUNK)?;
            out.extend_from_slice(&v);
            Ok(())
        }
    }
}
