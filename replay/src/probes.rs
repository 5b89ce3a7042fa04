//! Kernels before the `vmalloc:*` tracepoints (6.x) say nothing of their
//! vmalloc areas; `scripts/qemu` records kprobe events instead (group `nmt`,
//! `scripts/qemu/kprobes/*.kprobes`), which stand in for them:
//!
//! | event | probe | replay |
//! |---|---|---|
//! | `alloc_vmap_area_ret` | kretprobe on `alloc_vmap_area`: `va_start`, `va_end` of the returned area | a bottom-up area (vmalloc, vmap, ioremap, modules) |
//! | `pcpu_get_vm_areas_ret` | kretprobe on `pcpu_get_vm_areas`: `addr`, `size` of the first vm_struct | a per-cpu chunk (top-down, not through `alloc_vmap_area`) |
//! | `vmalloc_sync_mappings`, `vmalloc_sync_unmappings` | kprobes | an eager sync of every pgd (x86_32; x86_64: mappings only) |
//!
//! Payloads as tracefs prints them:
//! `alloc_vmap_area_ret: (__get_vm_area_node.isra.0+0xa6/0xf2 <- alloc_vmap_area.constprop.0) va_start=3745583104 va_end=3745599488`,
//! `pcpu_get_vm_areas_ret: (pcpu_create_chunk+0xa8/0xef <- pcpu_get_vm_areas) addr=0xff3c2000 size=245760`,
//! `vmalloc_sync_unmappings: (vmalloc_sync_unmappings+0x0/0x5)`.

use nmitrace_parser::Event;

/// A vmalloc kprobe event the replay understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmallocProbe {
    /// `[start, end)` from `alloc_vmap_area`.
    Area {
        start: u64,
        end: u64,
    },
    /// `[start, end)` of a per-cpu chunk's area from `pcpu_get_vm_areas`.
    PercpuArea {
        start: u64,
        end: u64,
    },
    SyncMappings,
    SyncUnmappings,
}

impl VmallocProbe {
    /// Event names the replay reads as probes (for the analyses' filter).
    pub const NAMES: [&'static str; 4] = [
        "alloc_vmap_area_ret",
        "pcpu_get_vm_areas_ret",
        "vmalloc_sync_mappings",
        "vmalloc_sync_unmappings",
    ];

    pub fn is_name(name: &str) -> bool {
        Self::NAMES.iter().any(|n| crate::name_eq(n, name))
    }

    /// Read one; `None` for other events and malformed ones.
    pub fn from_event(ev: &Event<'_>) -> Option<VmallocProbe> {
        let f = &ev.fields;
        match ev.name {
            "alloc_vmap_area_ret" => {
                let (start, end) = (f.u64("va_start")?, f.u64("va_end")?);
                (end > start).then_some(VmallocProbe::Area { start, end })
            }
            "pcpu_get_vm_areas_ret" => {
                // a failed pcpu_get_vm_areas returns NULL: the probe reads garbage
                let (start, size) = (f.u64("addr")?, f.u64("size")?);
                (start != 0 && size != 0).then_some(VmallocProbe::PercpuArea {
                    start,
                    end: start.saturating_add(size),
                })
            }
            "vmalloc_sync_mappings" => Some(VmallocProbe::SyncMappings),
            "vmalloc_sync_unmappings" => Some(VmallocProbe::SyncUnmappings),
            _ => None,
        }
    }
}
