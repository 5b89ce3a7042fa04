//! `cfg(shared_traces)` when `../shared/traces` is beside the repository,
//! `cfg(root)` when the tests run as root (they may mount a small tmpfs to
//! fill a disk), `cfg(chromium)` when a headless browser is installed: tests
//! that need them run, and report themselves as ignored otherwise.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_traces)");
    println!("cargo::rustc-check-cfg=cfg(root)");
    println!("cargo::rustc-check-cfg=cfg(chromium)");
    let has = |b: &str| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .any(|b| has(b))
    {
        println!("cargo::rustc-cfg=chromium");
    }
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    println!("cargo::rerun-if-changed={}", shared.display());
    if shared.is_dir() {
        println!("cargo::rustc-cfg=shared_traces");
    }
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid == "0" {
        println!("cargo::rustc-cfg=root");
    }
}
