//! The crate's modules import each other one way only: no cycles, the
//! finding types a leaf, and the detectors blind to the outputs (report,
//! timeline, text, HTML, plots, tables). Read from the sources: every
//! `crate::a::b` and `super::x` path names the module it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `src/detect/latch.rs` → `detect::latch`; `src/detect/mod.rs` → `detect`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = parts
        .iter()
        .map(|s| s.as_str())
        .filter(|p| *p != "mod" && *p != "lib")
        .collect();
    if parts.is_empty() {
        "crate".into()
    } else {
        parts.join("::")
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The longest known module that `path` (`a::b::c`, after `crate::`) starts with.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → modules it names, outside its own `#[cfg(test)]` items.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut fs = Vec::new();
    files(&src, &mut fs);
    fs.retain(|f| !f.ends_with("tests.rs"));
    let modules: BTreeSet<String> = fs.iter().map(|f| module_of(&src, f)).collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut g = BTreeMap::new();
    for f in &fs {
        let me = module_of(&src, f);
        let text = std::fs::read_to_string(f).unwrap();
        // Test modules may reach anywhere.
        let text = match text.find("#[cfg(test)]\nmod ") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let parent = me
            .rsplit_once("::")
            .map(|(p, _)| p.to_string())
            .unwrap_or_else(|| "crate".into());
        let mut uses = BTreeSet::new();
        for (prefix, base) in [
            ("crate::", String::new()),
            (
                "super::",
                if parent == "crate" {
                    String::new()
                } else {
                    format!("{parent}::")
                },
            ),
        ] {
            let mut rest = text;
            while let Some(i) = rest.find(prefix) {
                let after = &rest[i + prefix.len()..];
                let end = after.find(|c: char| !ident(c)).unwrap_or(after.len());
                let path = format!("{base}{}", after[..end].trim_end_matches(':'));
                // `crate::{a, b}`: each item.
                let paths: Vec<String> = if after[end..].starts_with('{') {
                    let close = after[end..].find('}').map_or(after.len(), |c| end + c);
                    after[end + 1..close]
                        .split(',')
                        .map(|p| format!("{path}::{}", p.trim().split("::").next().unwrap_or("")))
                        .collect()
                } else {
                    vec![path]
                };
                for p in paths {
                    let p = p.trim_start_matches("::").to_string();
                    if let Some(m) = resolve(&p, &modules) {
                        if m != me {
                            uses.insert(m);
                        }
                    }
                }
                rest = &after[end..];
            }
        }
        g.insert(me, uses);
    }
    g
}

#[test]
fn modules_import_one_way() {
    let g = graph();
    // Depth-first search for a cycle.
    fn visit<'a>(
        m: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| *p == m) {
            panic!("import cycle: {} -> {m}", path[i..].join(" -> "));
        }
        path.push(m);
        for n in g.get(m).into_iter().flatten() {
            visit(n, g, path, done);
        }
        path.pop();
        done.insert(m);
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(m, &g, &mut Vec::new(), &mut done);
    }
    assert!(
        g.len() > 20,
        "modules found: {:?}",
        g.keys().collect::<Vec<_>>()
    );
}

#[test]
fn findings_are_a_leaf_and_detectors_do_not_see_the_outputs() {
    let g = graph();
    assert_eq!(
        g["finding"],
        BTreeSet::new(),
        "finding.rs imports nothing of the crate"
    );
    let outputs = [
        "report",
        "timeline",
        "text_report",
        "html_report",
        "plots",
        "tables",
        "analyzer",
    ];
    for (m, uses) in &g {
        if m.starts_with("detect") || m.starts_with("nmi") {
            for u in uses {
                assert!(
                    !outputs
                        .iter()
                        .any(|o| u == o || u.starts_with(&format!("{o}::"))),
                    "{m} uses {u}"
                );
            }
        }
    }
    assert!(
        g["detect::switch_window"].contains("nmi::instance"),
        "{:?}",
        g["detect::switch_window"]
    );
}
