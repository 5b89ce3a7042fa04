//! Opening inputs: files, stdin, gzip and zstd (detected by magic bytes, not
//! by file name). The first bytes are decompressed and kept for format
//! detection; the rest is streamed.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// How many decompressed bytes are kept for format detection.
pub const HEAD_LEN: usize = 64 * 1024;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// An input stream with its first bytes already read.
pub struct Input {
    name: String,
    head: Vec<u8>,
    rest: Box<dyn Read + Send>,
    compression: Option<&'static str>,
    /// The uncompressed file itself, when the input is one (mmap-able).
    plain_file: Option<File>,
}

/// Decompressed (or piped) input up to this size is read into memory;
/// beyond it, into a temporary file that is mapped.
pub const IN_MEMORY: usize = 16 << 20;

/// The whole input in memory: a mapping of a plain file or decompressed bytes.
pub enum Bytes {
    Mmap(memmap2::Mmap),
    Vec(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mmap(m) => m,
            Bytes::Vec(v) => v,
        }
    }
}

impl Input {
    /// Open a path; `-` is standard input. Directories and unreadable files are errors.
    pub fn open(path: &Path) -> Result<Input> {
        let name = path.display().to_string();
        if name == "-" {
            return Input::from_reader(name, Box::new(io::stdin()), None);
        }
        let meta = std::fs::metadata(path).map_err(|e| Error::io(&name, e))?;
        if meta.is_dir() {
            return Err(Error::new(&name, crate::Origin::None, "is a directory, expected a trace file (to analyse every trace under it: nmitrace batch DIR --out OUT_DIR)"));
        }
        let file = File::open(path).map_err(|e| Error::io(&name, e))?;
        let dup = file.try_clone().map_err(|e| Error::io(&name, e))?;
        Input::from_reader(name, Box::new(file), Some(dup))
    }

    /// Wrap in-memory bytes (tests, fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Input> {
        Input::from_reader(name.to_string(), Box::new(io::Cursor::new(bytes)), None)
    }

    fn from_reader(
        name: String,
        mut raw: Box<dyn Read + Send>,
        file: Option<File>,
    ) -> Result<Input> {
        let mut magic = Vec::with_capacity(4);
        (&mut raw)
            .take(4)
            .read_to_end(&mut magic)
            .map_err(|e| Error::io(&name, e))?;
        let chained: Box<dyn Read + Send> = Box::new(io::Cursor::new(magic.clone()).chain(raw));
        let (mut rest, compression, plain_file): (Box<dyn Read + Send>, _, _) = if magic
            .starts_with(GZIP_MAGIC)
        {
            (
                Box::new(flate2::read::MultiGzDecoder::new(
                    io::BufReader::with_capacity(1 << 16, chained),
                )),
                Some("gzip"),
                None,
            )
        } else if magic.starts_with(ZSTD_MAGIC) {
            let dec = zstd::stream::read::Decoder::new(chained).map_err(|e| Error::io(&name, e))?;
            (Box::new(dec), Some("zstd"), None)
        } else {
            (chained, None, file)
        };
        let mut head = Vec::with_capacity(HEAD_LEN);
        if let Err(e) = (&mut rest).take(HEAD_LEN as u64).read_to_end(&mut head) {
            if head.is_empty() {
                return Err(decompress_error(&name, compression, e));
            }
            // A short stream that breaks early: what was read is still
            // analysed; the error surfaces (as a warning) where it happened.
            rest = Box::new(FailingReader(Some(e)));
        }
        Ok(Input {
            name,
            head,
            rest,
            compression,
            plain_file,
        })
    }

    /// The first (decompressed) bytes, for format detection.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Outer compression, if any.
    pub fn compression(&self) -> Option<&'static str> {
        self.compression
    }

    /// The plain file mapped, for a reader that walks it in place (text
    /// chunks are then slices of the mapping: no copy per read); the input
    /// back when it is not a regular file that maps to what was read of it
    /// (a pipe, a compressed file, a tracefs file whose size reads as 0).
    pub fn into_map(self) -> std::result::Result<memmap2::Mmap, Input> {
        let Some(file) = &self.plain_file else {
            return Err(self);
        };
        if !file.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
            return Err(self);
        }
        // SAFETY: as in `into_bytes`: read-only. The contract of every
        // mmap reader holds: the file is not truncated or rewritten in
        // place while it is read (a file that grows, a trace still being
        // appended to, is read as far as it reached when it was mapped).
        match unsafe { memmap2::Mmap::map(file) } {
            Ok(m) if m.starts_with(&self.head) => Ok(m),
            _ => Err(self),
        }
    }

    /// Split into the already-read head and the reader for the rest.
    pub fn into_parts(self) -> (Vec<u8>, Box<dyn Read + Send>, Option<&'static str>) {
        (self.head, self.rest, self.compression)
    }

    /// The whole input in memory: mmap for a plain file, otherwise read fully.
    pub fn into_bytes(self) -> Result<Bytes> {
        if let Some(file) = &self.plain_file {
            // SAFETY: the mapping is read-only; a file truncated underneath us
            // would fault, which is the same contract every mmap reader has.
            if let Ok(m) = unsafe { memmap2::Mmap::map(file) } {
                return Ok(Bytes::Mmap(m));
            }
        }
        let Input {
            name,
            mut head,
            mut rest,
            compression,
            ..
        } = self;
        // A compressed file or a pipe: up to IN_MEMORY bytes are kept in
        // memory; a longer one goes to an unlinked temporary file, mapped,
        // so that its pages too are given back as they are read (flat memory
        // whatever the size).
        let want = IN_MEMORY.saturating_sub(head.len()) as u64 + 1;
        (&mut rest)
            .take(want)
            .read_to_end(&mut head)
            .map_err(|e| decompress_error(&name, compression, e))?;
        if head.len() <= IN_MEMORY {
            return Ok(Bytes::Vec(head));
        }
        match tempfile::tempfile() {
            Ok(mut f) => {
                let cannot_write = |e: io::Error| {
                    Error::new(&name, crate::Origin::None, format!("cannot write the decompressed trace to a temporary file in {} ({e}); set TMPDIR to a directory with room", std::env::temp_dir().display()))
                };
                f.write_all(&head).map_err(cannot_write)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = match rest.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(decompress_error(&name, compression, e)),
                    };
                    f.write_all(&buf[..n]).map_err(cannot_write)?;
                }
                f.flush().map_err(cannot_write)?;
                drop(head);
                // SAFETY: our own unlinked file, never written again.
                let m = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(&name, e))?;
                Ok(Bytes::Mmap(m))
            }
            // No temporary directory: the rest in memory, as before.
            Err(_) => {
                rest.read_to_end(&mut head)
                    .map_err(|e| decompress_error(&name, compression, e))?;
                Ok(Bytes::Vec(head))
            }
        }
    }
}

/// Turn a read error inside a decompressor into a message that says so.
pub fn decompress_error(name: &str, compression: Option<&str>, e: io::Error) -> Error {
    match compression {
        Some(c) => Error::new(
            name,
            crate::Origin::None,
            format!("{c} stream is corrupt or truncated ({e}); expected a complete {c} file"),
        ),
        None => Error::io(name, e),
    }
}

/// A reader that fails once with a stored error (an error met while reading ahead).
struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(0),
        }
    }
}

/// Tell the kernel the whole pages inside `b` are not needed any more
/// (`MADV_DONTNEED`), so that the resident set stays flat however large the
/// file: a long trace is read once, front to back.
///
/// Only for slices of a read-only mapping of a file (the readers of this
/// crate call it on nothing else): such pages are never written, so
/// dropping them loses nothing and a later read of the same bytes faults
/// them in again from the file. On anonymous memory (a `Vec`) it would zero
/// the pages, which is why it is not public.
pub(crate) fn release_pages(b: &[u8]) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = if page > 0 { page as usize } else { 4096 };
        let start = b.as_ptr() as usize;
        let first = start.div_ceil(page) * page;
        let last = (start + b.len()) / page * page;
        if last > first {
            // SAFETY: [first, last) lies inside `b`, a read-only file
            // mapping that stays mapped; MADV_DONTNEED on it only drops
            // clean page-cache pages, which read back from the file.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = b;
}
