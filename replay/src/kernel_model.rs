//! The kernel-era model (SPEC §3.4): which kernel and architecture the replay
//! assumes, and what that era implies for vmalloc faults and NMI nesting.

use crate::pgd_model::{PgdKind, PgdModel};

/// Architecture variants the page-directory model distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    /// x86_64 with 5-level paging (LA57).
    X86_64La57,
    X86_32,
    X86_32Pae,
}

impl Arch {
    /// Parse `--arch` / the trace's UNAME machine. `None` for non-x86 names.
    pub fn parse(s: &str) -> Option<Arch> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Some(match s.as_str() {
            "x86-64" | "amd64" | "x64" | "x86-64-4level" => Arch::X86_64,
            "x86-64-la57" | "x86-64-5level" | "la57" => Arch::X86_64La57,
            "x86-32" | "x86" | "i386" | "i486" | "i586" | "i686" | "x86-32-nonpae" => Arch::X86_32,
            "x86-32-pae" | "pae" | "i686-pae" => Arch::X86_32Pae,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::X86_64La57 => "x86_64-la57",
            Arch::X86_32 => "x86_32",
            Arch::X86_32Pae => "x86_32-pae",
        }
    }

    pub fn is_64(&self) -> bool {
        matches!(self, Arch::X86_64 | Arch::X86_64La57)
    }
}

/// Where the model's kernel version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// `--kernel` / `--arch` on the command line.
    CommandLine,
    /// The trace said (trace.dat UNAME option).
    Trace,
    /// Nothing said: a current kernel is assumed.
    Default,
}

impl ModelSource {
    /// How outputs label an assumption's source.
    pub fn name(&self) -> &'static str {
        match self {
            ModelSource::CommandLine => "command line",
            ModelSource::Trace => "trace",
            ModelSource::Default => "default",
        }
    }
}

/// The accepted forms of `--kernel`, for usage errors.
pub const KERNEL_FORMS: &str =
    "a kernel release: MAJOR.MINOR[.PATCH][-suffix], e.g. 2.6.35, 5.8, 6.18.44-1-default";

/// Check a `--kernel` value.
pub fn check_kernel(s: &str) -> Result<(), String> {
    match parse_version(s) {
        Some(_) => Ok(()),
        None => Err(format!("{s:?} is not {KERNEL_FORMS}")),
    }
}

/// A kernel release as `(major, minor, patch)`.
pub type Version = (u32, u32, u32);

/// Parse `2.6.35`, `6.18.44-1-default`, `5.8.0-rc3+` → `(major, minor, patch)`.
pub fn parse_version(s: &str) -> Option<Version> {
    let mut parts = [0u32; 3];
    let mut n = 0;
    for p in s.trim().split('.') {
        if n == 3 {
            break;
        }
        let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            break;
        }
        parts[n] = digits.parse().ok()?;
        n += 1;
        if digits.len() != p.len() {
            break;
        }
    }
    if n < 2 {
        return None;
    }
    Some((parts[0], parts[1], parts[2]))
}

/// The kernel assumed when neither the trace nor the user says.
pub const DEFAULT_KERNEL: &str = "6.18";

/// The model the replay runs under.
#[derive(Clone, Debug)]
pub struct KernelModel {
    pub version: Version,
    pub version_text: String,
    pub arch: Arch,
    /// Where the kernel version came from.
    pub source: ModelSource,
    /// Where the architecture came from.
    pub arch_source: ModelSource,
    /// The trace is from a non-x86 machine (`aarch64`, `arm`…) and no
    /// `--arch` was given: the x86 NMI model does not apply.
    pub foreign_arch: Option<String>,
    /// The kernel the trace says it came from, when it says.
    pub trace_kernel: Option<String>,
    /// Replaying under a different kernel than the trace came from.
    pub what_if: bool,
    pub pgd: PgdModel,
    /// Kernel-mode faults on vmalloc addresses lazily sync top-level entries.
    pub lazy_vmalloc_faults: bool,
    /// x86_64 before 3.3: a fault's IRET inside an NMI re-enables NMIs and a
    /// nested NMI corrupts the NMI stack.
    pub nested_nmi_corrupts_stack: bool,
    /// `vmalloc_fault` resolves through `current->active_mm` (x86_64 up to
    /// 4.7) instead of cr3: in a switch window it fills the wrong directory.
    pub vmalloc_fault_uses_active_mm: bool,
    /// A kernel-mode fault on a vmalloc address is handled by `vmalloc_fault()`
    /// (not a bug): everywhere lazy syncs happen, and on x86_32 from 5.9
    /// (5.8.y) where it came back for a race with the eager sync.
    pub vmalloc_fault_handled: bool,
    /// ftrace records NMI context (`TRACE_FLAG_NMI`, printed `Z`/`z`, from
    /// 4.6); before, an NMI's events print `h` (nmi_enter adds HARDIRQ_OFFSET).
    pub ftrace_nmi_flag: bool,
    /// Notes on what was assumed.
    pub notes: Vec<String>,
}

fn at_least(v: Version, major: u32, minor: u32) -> bool {
    (v.0, v.1) >= (major, minor)
}

impl KernelModel {
    /// Choose the model: the command line wins over the trace, the trace over the default.
    pub fn choose(
        trace_kernel: Option<&str>,
        trace_arch: Option<&str>,
        cli_kernel: Option<&str>,
        cli_arch: Option<&str>,
    ) -> KernelModel {
        let mut notes = Vec::new();
        let trace_v = trace_kernel.and_then(parse_version);
        let cli_v = cli_kernel.and_then(|k| {
            let v = parse_version(k);
            if v.is_none() {
                notes.push(format!("--kernel {k:?} is not a kernel version; ignored"));
            }
            v
        });
        let (version, version_text, source) = match (cli_v, trace_v) {
            (Some(v), _) => (
                v,
                cli_kernel.unwrap().trim().to_string(),
                ModelSource::CommandLine,
            ),
            (None, Some(v)) => (
                v,
                trace_kernel.unwrap().trim().to_string(),
                ModelSource::Trace,
            ),
            (None, None) => {
                notes.push(format!(
                    "kernel version unknown (the trace does not say; use --kernel): assuming a current kernel ({DEFAULT_KERNEL})"
                ));
                (
                    parse_version(DEFAULT_KERNEL).unwrap(),
                    DEFAULT_KERNEL.to_string(),
                    ModelSource::Default,
                )
            }
        };
        let mut foreign_arch = None;
        let (arch, arch_source) = match (cli_arch.and_then(Arch::parse), trace_arch) {
            (Some(a), _) => (a, ModelSource::CommandLine),
            (None, Some(t)) => match Arch::parse(t) {
                Some(a) => (a, ModelSource::Trace),
                None => {
                    notes.push(format!(
                        "the trace comes from a {t} machine: nmitrace's NMI model is x86's (the nmi_handler tracepoint, default_do_nmi, page directories), so only event counts and the time span are reported"
                    ));
                    foreign_arch = Some(t.to_string());
                    (Arch::X86_64, ModelSource::Trace)
                }
            },
            (None, None) => {
                notes.push("architecture unknown (the trace does not say; use --arch): x86_64 (4-level paging) assumed".into());
                (Arch::X86_64, ModelSource::Default)
            }
        };
        let what_if = match (cli_v, trace_v) {
            (Some(c), Some(t)) => (c.0, c.1) != (t.0, t.1),
            _ => false,
        } || matches!((cli_arch.and_then(Arch::parse), trace_arch.and_then(Arch::parse)), (Some(a), Some(b)) if a != b);
        if what_if {
            notes.push(format!(
                "what-if: the trace came from {} {} but is replayed as {} {}",
                trace_kernel.unwrap_or("?"),
                trace_arch.unwrap_or(""),
                version_text,
                arch.name()
            ));
        }
        let kind = match arch {
            Arch::X86_64 => PgdKind::X86_64FourLevel,
            Arch::X86_64La57 => PgdKind::X86_64FiveLevel,
            Arch::X86_32 => PgdKind::X86_32,
            Arch::X86_32Pae => PgdKind::X86_32Pae,
        };
        // 5.8 moved every x86 to eager sync (ARCH_PAGE_TABLE_SYNC_MASK,
        // arch_sync_kernel_mappings; "x86/mm: remove vmalloc faulting",
        // 7f0a002b5a21): x86_64 4- and 5-level alike. x86_32 got
        // vmalloc_fault back in 5.9 (and 5.8.y) for a race, not for laziness.
        // PAE with a shared kernel PMD (SHARED_KERNEL_PMD: no PTI, not Xen PV)
        // shares the kernel's vmalloc PMDs in every pgd: nothing to sync.
        let lazy = match arch {
            Arch::X86_64 | Arch::X86_64La57 | Arch::X86_32 => !at_least(version, 5, 8),
            Arch::X86_32Pae => false,
        };
        // 5.8.0–5.8.7 had no vmalloc_fault at all; 5.8.8 (the backport of
        // 4819e15f740e) brought it back, by the 5.8.18 source for x86_64 too.
        let v58_fixed = version.0 == 5 && version.1 == 8 && version.2 >= 8;
        let handled = match arch {
            Arch::X86_64 | Arch::X86_64La57 => lazy || v58_fixed,
            Arch::X86_32 => lazy || v58_fixed || at_least(version, 5, 9),
            // A shared kernel PMD maps every vmalloc page in every pgd at once:
            // a not-present fault means the address is not mapped.
            Arch::X86_32Pae => false,
        };
        if arch == Arch::X86_32Pae {
            notes.push(
                "x86_32 PAE: a shared kernel PMD (SHARED_KERNEL_PMD, no PTI, not Xen PV) is assumed, so vmalloc entries never sync lazily"
                    .into(),
            );
        }
        KernelModel {
            version,
            version_text,
            arch,
            source,
            arch_source,
            foreign_arch,
            trace_kernel: trace_kernel.map(|s| s.to_string()),
            what_if,
            pgd: PgdModel::new(kind),
            lazy_vmalloc_faults: lazy,
            nested_nmi_corrupts_stack: arch.is_64() && !at_least(version, 3, 3),
            vmalloc_fault_uses_active_mm: arch.is_64() && !at_least(version, 4, 8),
            vmalloc_fault_handled: handled,
            ftrace_nmi_flag: at_least(version, 4, 6),
            notes,
        }
    }

    /// One-line era description, printed in every report.
    pub fn era(&self) -> &'static str {
        if self.arch.is_64() {
            if self.nested_nmi_corrupts_stack {
                "x86_64 < 3.3: a fault in NMI re-enables NMIs at IRET; a nested NMI corrupts the NMI stack"
            } else if self.vmalloc_fault_uses_active_mm {
                "x86_64 3.3-4.7: nested NMIs are deferred safely; vmalloc faults in NMI are legal but costly and resolve through current->active_mm"
            } else if self.lazy_vmalloc_faults {
                "x86_64 4.8-5.7: nested NMIs are deferred safely; vmalloc faults in NMI are legal but costly and resolve through cr3"
            } else {
                "x86_64 >= 5.8: vmalloc mappings are synced eagerly; any vmalloc fault is a bug"
            }
        } else if self.arch == Arch::X86_32Pae {
            "x86_32 PAE: the kernel PMD is shared, so vmalloc entries never sync lazily"
        } else if self.lazy_vmalloc_faults {
            "x86_32 < 5.8: vmalloc entries (4 MiB each) sync lazily through cr3"
        } else {
            "x86_32 >= 5.8: vmalloc mappings are synced eagerly; vmalloc_fault remains (5.9, 5.8.y) only for a race"
        }
    }

    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// Short human label: `x86_64 2.6.35 (4-level) [what-if]`.
    pub fn label(&self) -> String {
        format!(
            "{} {} ({}){}",
            self.arch.name(),
            self.version_text,
            self.pgd.kind.name(),
            if self.what_if { " [what-if]" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.6.35"), Some((2, 6, 35)));
        assert_eq!(parse_version("6.18.44-1-default"), Some((6, 18, 44)));
        assert_eq!(parse_version("5.8.0-rc3+"), Some((5, 8, 0)));
        assert_eq!(parse_version("5.8-rc3"), Some((5, 8, 0)));
        assert_eq!(parse_version("six"), None);
    }

    #[test]
    fn eras() {
        let m = KernelModel::choose(None, None, Some("2.6.35"), Some("x86_64"));
        assert!(
            m.nested_nmi_corrupts_stack && m.lazy_vmalloc_faults && m.vmalloc_fault_uses_active_mm
        );
        let m = KernelModel::choose(None, None, Some("4.19"), None);
        assert!(
            !m.nested_nmi_corrupts_stack
                && m.lazy_vmalloc_faults
                && !m.vmalloc_fault_uses_active_mm
        );
        let m = KernelModel::choose(Some("6.18.4"), Some("x86_64"), None, None);
        assert!(!m.lazy_vmalloc_faults && !m.what_if && m.source == ModelSource::Trace);
        let m = KernelModel::choose(Some("6.18.4"), Some("x86_64"), Some("2.6.35"), None);
        assert!(m.what_if && m.lazy_vmalloc_faults);
        let m = KernelModel::choose(None, None, None, None);
        assert_eq!(m.source, ModelSource::Default);
        assert!(!m.notes.is_empty());
        // PAE with a shared kernel PMD never syncs lazily (pgd_ctor clones the
        // kernel PGD entries, which all point at the one kernel PMD page).
        let m = KernelModel::choose(None, None, Some("4.4"), Some("x86_32-pae"));
        assert!(!m.lazy_vmalloc_faults && !m.vmalloc_fault_handled && !m.nested_nmi_corrupts_stack);
        // vmalloc_fault via current->active_mm up to 4.7 (4.7.4 fault.c:442), via cr3 from 4.8.
        assert!(
            KernelModel::choose(None, None, Some("4.7.4"), Some("x86_64"))
                .vmalloc_fault_uses_active_mm
        );
        assert!(
            !KernelModel::choose(None, None, Some("4.8"), Some("x86_64"))
                .vmalloc_fault_uses_active_mm
        );
        // 5.8 removed vmalloc faulting for every x86, 5-level included.
        for a in ["x86_64", "x86_64-la57", "x86_32"] {
            let m = KernelModel::choose(None, None, Some("5.8"), Some(a));
            assert!(!m.lazy_vmalloc_faults && !m.vmalloc_fault_handled, "{a}");
            assert!(
                KernelModel::choose(None, None, Some("5.7"), Some(a)).lazy_vmalloc_faults,
                "{a}"
            );
        }
        // x86_32 got vmalloc_fault back for a race in 5.9 (4819e15f740e) and 5.8.8.
        let m = KernelModel::choose(None, None, Some("5.9"), Some("x86_32"));
        assert!(!m.lazy_vmalloc_faults && m.vmalloc_fault_handled);
        assert!(
            !KernelModel::choose(None, None, Some("5.9"), Some("x86_64")).vmalloc_fault_handled
        );
        // The ftrace NMI flag (TRACE_FLAG_NMI) from 4.6.
        assert!(!KernelModel::choose(None, None, Some("4.5"), None).ftrace_nmi_flag);
        assert!(KernelModel::choose(None, None, Some("4.6"), None).ftrace_nmi_flag);
    }
}
