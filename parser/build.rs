//! `cfg(shared_traces)` when `../shared/traces` is beside the repository and
//! `cfg(trace_cmd)` when `trace-cmd` is installed: the oracle tests that need
//! them run, and report themselves as ignored otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_traces)");
    println!("cargo::rustc-check-cfg=cfg(trace_cmd)");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    println!("cargo::rerun-if-changed={}", shared.display());
    if shared.is_dir() {
        println!("cargo::rustc-cfg=shared_traces");
    }
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("trace-cmd"))
                .find(|t| t.is_file())
        })
        .unwrap_or_default();
    if let Some(t) = found {
        println!("cargo::rerun-if-changed={}", t.display());
        println!("cargo::rustc-cfg=trace_cmd");
    }
}
