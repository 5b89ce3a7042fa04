//! Input format detection from content (never from the file name).

use crate::error::{Error, Result};
use crate::Origin;
use std::fmt;

/// The trace.dat file magic: `\x17\x08\x44` then `tracing`.
pub const TRACE_DAT_MAGIC: &[u8] = b"\x17\x08\x44tracing";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `/sys/kernel/tracing/trace` or `trace_pipe` text.
    TracefsText,
    /// `trace-cmd report` text.
    TraceCmdReport,
    /// `perf script` text.
    PerfScript,
    /// trace-cmd `trace.dat`, with its file version (6 or 7).
    TraceDat { version: u32 },
}

impl Format {
    /// Stable machine name, as printed in `input.format`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::TracefsText => "tracefs-text",
            Format::TraceCmdReport => "trace-cmd-report",
            Format::PerfScript => "perf-script",
            Format::TraceDat { version: 6 } => "trace.dat-v6",
            Format::TraceDat { version: 7 } => "trace.dat-v7",
            Format::TraceDat { .. } => "trace.dat",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Detect the format from the first bytes of the (decompressed) input.
pub fn detect(name: &str, head: &[u8]) -> Result<Format> {
    if head.is_empty() {
        return Err(Error::new(name, Origin::Offset(0), "empty input, expected a kernel trace (tracefs text, trace-cmd report, perf script or trace.dat)"));
    }
    if head.starts_with(TRACE_DAT_MAGIC) {
        let rest = &head[TRACE_DAT_MAGIC.len()..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(rest.len())
            .min(8);
        let version = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        return match version {
            Some(v @ (6 | 7)) => Ok(Format::TraceDat { version: v }),
            Some(v) => Err(Error::at(
                name,
                10,
                format!("trace.dat file version {v} is not supported, expected 6 or 7"),
            )),
            None => Err(Error::at(
                name,
                10,
                "trace.dat magic without a version string, expected \"6\" or \"7\"",
            )),
        };
    }
    crate::text::detect_text(name, head)
}
