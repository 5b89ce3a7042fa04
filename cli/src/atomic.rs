//! Outputs appear whole or not at all. Everything a command writes goes
//! first into a staging directory beside the target (same filesystem, so a
//! rename moves it); only when all of it is written is each file renamed
//! into place, replacing its previous version. A run that is killed, or that
//! fills the disk, leaves the previous outputs as they were (and no staging
//! directory behind, except after a kill, where it is a hidden
//! `.nmitrace-staging-*` directory beside the target). Other files in a
//! target directory are never touched.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// A staging area for one target: a directory (`--plot DIR`, `batch --out
/// DIR`) or a file (`--report FILE.html`, `convert -o FILE`).
pub struct Staged {
    target: PathBuf,
    dir: tempfile::TempDir,
    is_file: bool,
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Staged {
    fn new(target: &Path, is_file: bool) -> Result<Staged> {
        // Stage beside the target: inside it for a directory target that
        // exists (its own filesystem), else beside it.
        let base = if !is_file && target.is_dir() {
            target.to_path_buf()
        } else {
            parent_of(target)
        };
        std::fs::create_dir_all(&base)
            .with_context(|| format!("{}: cannot create the directory", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(".nmitrace-staging-")
            .tempdir_in(&base)
            .with_context(|| format!("{}: cannot create a staging directory", base.display()))?;
        Ok(Staged {
            target: target.to_path_buf(),
            dir,
            is_file,
        })
    }

    /// Stage a directory target.
    pub fn dir(target: &Path) -> Result<Staged> {
        Staged::new(target, false)
    }

    /// Stage a file target.
    pub fn file(target: &Path) -> Result<Staged> {
        Staged::new(target, true)
    }

    /// Where to write: the staging directory (for a directory target), or
    /// the file's staged path.
    pub fn path(&self) -> PathBuf {
        if self.is_file {
            self.dir
                .path()
                .join(self.target.file_name().unwrap_or_else(|| "out".as_ref()))
        } else {
            self.dir.path().to_path_buf()
        }
    }

    /// Move everything staged into place: each file renamed over its
    /// previous version, directories created as needed.
    pub fn commit(self) -> Result<()> {
        if self.is_file {
            let from = self.path();
            std::fs::rename(&from, &self.target).with_context(|| {
                format!(
                    "{}: cannot move the finished file into place",
                    self.target.display()
                )
            })?;
            return Ok(());
        }
        std::fs::create_dir_all(&self.target)
            .with_context(|| format!("{}: cannot create", self.target.display()))?;
        move_tree(self.dir.path(), &self.target)
    }
}

/// Rename every file under `from` to the same place under `to`.
fn move_tree(from: &Path, to: &Path) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(from)
        .with_context(|| format!("{}", from.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let src = e.path();
        let dst = to.join(e.file_name());
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::create_dir_all(&dst)
                .with_context(|| format!("{}: cannot create", dst.display()))?;
            move_tree(&src, &dst)?;
        } else {
            std::fs::rename(&src, &dst).with_context(|| {
                format!(
                    "{}: cannot move the finished file into place",
                    dst.display()
                )
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_replace_their_previous_version_only_on_commit() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("plots");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a.svg"), "old").unwrap();
        std::fs::write(out.join("mine.txt"), "keep").unwrap();
        let s = Staged::dir(&out).unwrap();
        std::fs::write(s.path().join("a.svg"), "new").unwrap();
        std::fs::create_dir(s.path().join("sub")).unwrap();
        std::fs::write(s.path().join("sub/b.png"), "png").unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("a.svg")).unwrap(),
            "old",
            "nothing moves before the commit"
        );
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.svg")).unwrap(), "new");
        assert_eq!(
            std::fs::read_to_string(out.join("sub/b.png")).unwrap(),
            "png"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("mine.txt")).unwrap(),
            "keep"
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".nmitrace"))
            .collect();
        assert!(left.is_empty(), "the staging directory is gone");
    }

    #[test]
    fn an_abandoned_stage_leaves_the_target_alone() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("report.html");
        std::fs::write(&f, "old").unwrap();
        {
            let s = Staged::file(&f).unwrap();
            std::fs::write(s.path(), "half").unwrap();
            // dropped without commit: a failure midway
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "old");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
