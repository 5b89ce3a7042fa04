//! Kernel symbols from a trace.dat's kallsyms (the `/proc/kallsyms` text
//! `trace-cmd record` saves), to name the addresses events print with `%ps`
//! (`nmi:nmi_handler`'s handler), as `trace-cmd report` does.

/// A function this far past the nearest symbol below it is not named (a
/// stray address, or kallsyms from another kernel).
const MAX_DISTANCE: u64 = 1 << 20;

/// Symbols sorted by address; names point into the kallsyms text.
pub struct Symbols {
    text: Vec<u8>,
    /// (address, start of the name in `text`, its length), sorted by address.
    index: Vec<(u64, u32, u16)>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Symbols({} entries)", self.index.len())
    }
}

impl Symbols {
    /// Parse kallsyms text: `ffffffff81000000 T _text` lines, optionally
    /// with `\t[module]`. Lines that do not parse and zero addresses (what
    /// an unprivileged reader of kallsyms sees) are skipped.
    pub fn parse(text: Vec<u8>) -> Symbols {
        let mut index = Vec::new();
        let mut pos = 0usize;
        while pos < text.len() {
            let end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |k| pos + k);
            let line = &text[pos..end];
            if let Some(e) = Self::entry(line) {
                let (addr, ns, nl) = e;
                if addr != 0 && pos + ns <= u32::MAX as usize {
                    index.push((addr, (pos + ns) as u32, nl as u16));
                }
            }
            pos = end + 1;
        }
        // stable: of symbols at one address the first listed is kept first
        index.sort_by_key(|e| e.0);
        Symbols { text, index }
    }

    /// (address, name start within the line, name length).
    fn entry(line: &[u8]) -> Option<(u64, usize, usize)> {
        let sp = memchr::memchr(b' ', line)?;
        let addr = u64::from_str_radix(std::str::from_utf8(&line[..sp]).ok()?, 16).ok()?;
        // one type letter, then a space, then the name up to a tab or the end
        let ns = sp + 3;
        if line.len() <= ns || line[sp + 2] != b' ' {
            return None;
        }
        let ne = memchr::memchr(b'\t', &line[ns..]).map_or(line.len(), |k| ns + k);
        let name = std::str::from_utf8(&line[ns..ne]).ok()?.trim_end();
        if name.is_empty() || name.len() > u16::MAX as usize {
            return None;
        }
        Some((addr, ns, name.len()))
    }

    /// The function at `addr`: the symbol there, else the nearest one below
    /// it (within 1 MiB).
    pub fn name(&self, addr: u64) -> Option<&str> {
        let i = self.index.partition_point(|e| e.0 <= addr);
        let &(a, s, l) = self.index.get(i.checked_sub(1)?)?;
        if addr - a > MAX_DISTANCE {
            return None;
        }
        // the first symbol listed at that address
        let first = self.index[..i].partition_point(|e| e.0 < a);
        let (_, s, l) = if first < i {
            self.index[first]
        } else {
            (a, s, l)
        };
        std::str::from_utf8(self.text.get(s as usize..s as usize + l as usize)?).ok()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_exact_and_inside_functions() {
        let text = b"0000000000000000 T zero_is_skipped\nffffffff81000000 T _text\nffffffff81012340 t perf_event_nmi_handler\nffffffff81012400 t nmi_cpu_backtrace_handler\nffffffffc0a01000 t ghes_notify_nmi\t[ghes]\nnot a line\n".to_vec();
        let s = Symbols::parse(text);
        assert_eq!(s.len(), 4);
        assert_eq!(s.name(0xffffffff81012340), Some("perf_event_nmi_handler"));
        assert_eq!(s.name(0xffffffff81012344), Some("perf_event_nmi_handler"));
        assert_eq!(
            s.name(0xffffffff81012400),
            Some("nmi_cpu_backtrace_handler")
        );
        assert_eq!(s.name(0xffffffffc0a01000), Some("ghes_notify_nmi"));
        assert_eq!(s.name(0xffffffff80000000), None);
        assert_eq!(s.name(0xffffffffc0a01000 + (2 << 20)), None);
        assert_eq!(s.name(0), None);
    }
}
