//! The fuzz targets' inputs, replayed through the same bodies
//! (`fuzz/fuzz_targets/common.rs`): every crash the fuzzers found
//! (`fuzz/regressions/TARGET/`), the seeds and the kept corpora
//! (`fuzz/seeds/TARGET/`, `fuzz/corpus/TARGET/` when present), and a fixed-seed
//! run of 1,000 line mutations of real traces in each text format. None may
//! panic (a panic fails the test); errors and warnings are fine.

#[path = "../../fuzz/fuzz_targets/bases.rs"]
mod bases;
#[path = "../../fuzz/fuzz_targets/common.rs"]
mod common;

use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn replay(target: &str, body: impl Fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for kind in ["regressions", "seeds", "corpus"] {
        for p in files(&fuzz.join(kind).join(target)) {
            let data = match std::fs::read(&p) {
                Ok(d) => d,
                // a running fuzzer replaces corpus entries as it minimises them
                Err(e) if kind == "corpus" && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", p.display()),
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(&data)));
            assert!(r.is_ok(), "{}: panicked", p.display());
            n += 1;
        }
    }
    n
}

#[test]
fn fuzz_inputs_replay_without_panics() {
    let text = bases::text();
    let dat = bases::tracedat();
    let mut n = 0;
    n += replay("text", common::text_as);
    n += replay("detect", common::detect);
    n += replay("input", common::input_layer);
    n += replay("analyze", common::analyze_bytes);
    n += replay("tracedat", common::tracedat);
    n += replay("text_mutate", |d| {
        common::analyze_bytes(&common::mutate_lines(d, &text))
    });
    n += replay("tracedat_mutate", |d| {
        common::tracedat(&common::mutate_tracedat(d, &dat))
    });
    eprintln!("{n} fuzz inputs replayed");
    assert!(n > 10);
}

/// xorshift64*: a fixed-seed stream of mutation programs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// 1,000 random line mutations (cut short, bytes deleted, `-[]:.=Z(`
/// inserted, lines duplicated, swapped, dropped) of real traces in each text
/// format (tracefs, `trace-cmd report`, `perf script`), through detection,
/// the reader and the analyses: none panics.
#[test]
fn a_thousand_line_mutations_per_format_never_panic() {
    let bases = bases::text();
    // bases 0, 1, 2 are the same recording as tracefs text, report and perf script
    for (format, base) in ["tracefs", "report", "perf"].iter().zip(0u8..) {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ base as u64);
        for i in 0..1000 {
            let mut program = vec![
                base,
                rng.next() as u8,
                rng.next() as u8,
                (rng.next() % 200) as u8,
            ];
            for _ in 0..(1 + rng.next() % 12) {
                program.extend_from_slice(&(rng.next() as u32).to_le_bytes()[..3]);
            }
            let text = common::mutate_lines(&program, &bases);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                common::analyze_bytes(&text)
            }));
            assert!(
                r.is_ok(),
                "{format} mutation {i} panicked; program {program:?}\n{}",
                String::from_utf8_lossy(&text)
            );
        }
    }
}
