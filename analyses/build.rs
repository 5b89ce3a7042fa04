//! `cfg(shared_traces)` when `../shared/traces` is beside the repository:
//! the tests that need it run, and report themselves as ignored without it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_traces)");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    println!("cargo::rerun-if-changed={}", shared.display());
    if shared.is_dir() {
        println!("cargo::rustc-cfg=shared_traces");
    }
}
