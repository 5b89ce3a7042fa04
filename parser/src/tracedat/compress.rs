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

/// Decompress `data`, which claims to expand to `uncomp` bytes (capped at
/// `max`). A zstd claim of at most [`MAX_CHUNK`] that the data could hold
/// is decompressed in one pass into a buffer reserved for it; otherwise the
/// buffer grows with the data actually produced, never with the claim
/// alone, and stops at `uncomp`.
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
    // A claim a chunk could hold is decompressed in one pass into a buffer
    // of that size (reserved, not touched: a false claim costs no memory),
    // without the streaming decoder's window copy and the doubling growth.
    if c == Compression::Zstd && uncomp <= MAX_CHUNK {
        let mut out = Vec::new();
        zstd_into(&mut None, data, uncomp, &mut out, 0, "section")?;
        return Ok(out);
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
    match c {
        Compression::Zstd => zstd_into(dctx, data, uncomp, out, base, "chunk"),
        _ => {
            out.truncate(base);
            let v = decompress(c, data, uncomp, MAX_CHUNK)?;
            out.extend_from_slice(&v);
            Ok(())
        }
    }
}

/// Decompress one zstd frame of `uncomp` bytes (a `what`: chunk or
/// section) in one pass, appended to `out` after its first `base` bytes,
/// with `dctx` (made on first use) reused across calls. The callers have
/// capped `uncomp` at [`MAX_CHUNK`].
fn zstd_into(
    dctx: &mut Option<zstd::bulk::Decompressor<'static>>,
    data: &[u8],
    uncomp: usize,
    out: &mut Vec<u8>,
    base: usize,
    what: &str,
) -> Result<(), String> {
    debug_assert!(uncomp <= MAX_CHUNK);
    // zstd expands at most ~32768x (RLE blocks); a larger claim is a lie
    if uncomp > data.len().saturating_mul(32768).saturating_add(4096) {
        return Err(format!("a {what} of {} compressed bytes claims {uncomp} uncompressed bytes, more than it can hold", data.len()));
    }
    out.truncate(base);
    // A frame that records its content size must agree with the claim.
    if let Ok(Some(fs)) = zstd::zstd_safe::get_frame_content_size(data) {
        if fs != uncomp as u64 {
            return Err(format!(
                "{what} frame holds {fs} bytes but the header claims {uncomp}"
            ));
        }
    }
    if dctx.is_none() {
        *dctx = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
    }
    // The claim is capped (MAX_CHUNK) and plausible.
    out.reserve(uncomp);
    // Written after `base` (a cursor there), into the spare capacity.
    let mut at = std::io::Cursor::new(&mut *out);
    at.set_position(base as u64);
    let n = dctx
        .as_mut()
        .unwrap()
        .decompress_to_buffer(data, &mut at)
        .map_err(|e| {
            format!(
                "compressed {what} is corrupt ({e}); expected a valid zstd frame of {uncomp} bytes"
            )
        })?;
    if n != uncomp || out.len() != base + n {
        out.truncate(base);
        return Err(format!(
            "{what} decompressed to {n} bytes, expected {uncomp}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8]) -> Vec<u8> {
        zstd::bulk::compress(data, 3).unwrap()
    }

    #[test]
    fn a_section_decompresses_to_exactly_its_claim() {
        let text: Vec<u8> = (0..5000u32).flat_map(|i| (i % 97).to_le_bytes()).collect();
        let z = frame(&text);
        assert_eq!(
            decompress(Compression::Zstd, &z, text.len(), MAX_SECTION).unwrap(),
            text
        );
        // a claim the frame disagrees with is an error, either way
        for claim in [text.len() - 1, text.len() + 1] {
            let e = decompress(Compression::Zstd, &z, claim, MAX_SECTION).unwrap_err();
            assert!(e.contains(&claim.to_string()), "{e}");
        }
    }

    #[test]
    fn impossible_claims_are_refused_before_decompressing() {
        let z = frame(b"tiny");
        // more than 32768 times the compressed size, within a chunk's limit
        let e = decompress(Compression::Zstd, &z, 40 << 20, MAX_SECTION).unwrap_err();
        assert!(e.contains("more than it can hold"), "{e}");
        // beyond the section limit
        let e = decompress(Compression::Zstd, &z, MAX_SECTION + 1, MAX_SECTION).unwrap_err();
        assert!(e.contains("more than the"), "{e}");
        // above a chunk's size: the streaming path, which stops at the data
        let e = decompress(Compression::Zstd, &z, MAX_CHUNK + 1, MAX_SECTION).unwrap_err();
        assert!(e.contains("decompressed to 4 bytes"), "{e}");
    }
}
