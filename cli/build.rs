//! `cfg(shared_traces)` when `../shared/traces` is beside the repository,
//! `cfg(root)` when the tests run as root (they may mount a small tmpfs to
//! fill a disk): tests that need them run, and report themselves as ignored
//! otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_traces)");
    println!("cargo::rustc-check-cfg=cfg(root)");
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    println!("cargo::rerun-if-changed={}", shared.display());
    if shared.is_dir() {
        println!("cargo::rustc-cfg=shared_traces");
    }
    let uid = std::process::Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    if uid == "0" {
        println!("cargo::rustc-cfg=root");
    }
}
