//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `../shared` beside the repository, when it is there (CI and developer
/// machines); tests that need it skip cleanly without it.
pub fn shared() -> Option<PathBuf> {
    let p = repo().join("../shared/traces");
    p.is_dir().then_some(p)
}

pub fn nmitrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nmitrace"))
        .args(args)
        .output()
        .expect("run nmitrace")
}

/// Run `nmitrace analyze --format json FILE` and parse the document.
pub fn analyze_json(path: &Path, extra: &[&str]) -> serde_json::Value {
    let p = path.to_str().unwrap();
    let mut args = vec!["analyze", "--format", "json", p];
    args.extend_from_slice(extra);
    let out = nmitrace(&args);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{p}: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{p}: bad JSON: {e}"))
}

/// Read a file, decompressing gzip or zstd by magic bytes.
pub fn read_decompressed(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
    } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(&raw[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = raw;
    }
    out
}

/// A text file's contents, decompressed.
#[allow(dead_code)]
pub fn read_text(p: &Path) -> String {
    String::from_utf8(read_decompressed(p)).unwrap()
}
