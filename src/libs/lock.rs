//! `runner.lock`: each git library pinned to the commit it resolved to and a sha256 of its files, so
//! that every machine runs the same code and a library edited in place is seen (Deno's `deno.lock`,
//! Nix's `{rev, narHash}`). Path libraries are not locked: they are the project's own folders.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The lock file, beside runner.toml.
pub const LOCK_FILE: &str = "runner.lock";

const HEADER: &str = "# runner.lock: the commit and sha256 of every git library of runner.toml.\n\
                      # Written by `runner lib`; commit it with runner.toml, do not edit it.\n\n";

/// `runner.lock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    #[serde(default)]
    pub libs: BTreeMap<String, Locked>,
}

/// One library as locked: what runner.toml asked for when the lock was made, and what that was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    pub git: String,
    /// runner.toml's `ref` when this was locked (none: the default branch).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The commit it resolved to.
    pub commit: String,
    /// [`tree_sha256`] of the library's files at that commit.
    pub sha256: String,
}

impl Lock {
    /// The lock in `dir`, or an empty one if there is none.
    pub fn read(dir: &Path) -> Result<Lock, String> {
        let path = dir.join(LOCK_FILE);
        if !path.exists() {
            return Ok(Lock {
                version: 1,
                ..Lock::default()
            });
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let anew = "it is written by `runner lib`; `runner lib update` writes it anew";
        let lock: Lock =
            toml::from_str(&text).map_err(|e| format!("{}: {e}({anew})", path.display()))?;
        for (name, l) in &lock.libs {
            let hex = |s: &str, lens: &[usize]| {
                lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
            };
            if !hex(&l.commit, &[40, 64]) || !hex(&l.sha256, &[64]) {
                return Err(format!(
                    "{}: `{name}` has no valid commit and sha256 ({anew})",
                    path.display()
                ));
            }
        }
        Ok(lock)
    }

    /// Write the lock into `dir` (atomically: a reader never sees half a lock).
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let text = format!(
            "{HEADER}{}",
            toml::to_string(self).expect("a lock is plain TOML")
        );
        write_atomically(&dir.join(LOCK_FILE), &text)
    }
}

/// Write `text` to `path` through a temporary file in the same folder and a rename, keeping the
/// file's mode (a new file is 0644, as an editor would make it: these files are committed).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode());
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(fail)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// The sha256 of a library's files: every file and symlink under `dir` except `.git`, in the order
/// of their paths (relative, `/`-separated, compared as bytes), each hashed as its path, a NUL, its
/// kind and length as text, a NUL, then its contents (a symlink: its target). The same files give
/// the same sum on every machine, whatever their times and the order the file system lists them.
pub fn tree_sha256(dir: &Path) -> std::io::Result<String> {
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    files.sort();
    let mut sum = Sha256::new();
    for rel in files {
        let path = dir.join(&rel);
        let meta = std::fs::symlink_metadata(&path)?;
        let (kind, contents) = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            ("symlink", target.as_os_str().as_encoded_bytes().to_vec())
        } else {
            ("file", std::fs::read(&path)?)
        };
        sum.update(rel.as_bytes());
        sum.update(format!("\0{kind} {}\0", contents.len()).as_bytes());
        sum.update(&contents);
    }
    Ok(format!("{:x}", sum.finalize()))
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if entry.file_type()?.is_dir() {
            collect(&entry.path(), &format!("{rel}/"), out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_depends_on_paths_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
        }
        std::fs::write(a.path().join("x.rhai"), "1").unwrap();
        std::fs::write(a.path().join("sub/y.rhai"), "2").unwrap();
        // Written in the other order, with a .git folder that does not count.
        std::fs::write(b.path().join("sub/y.rhai"), "2").unwrap();
        std::fs::write(b.path().join("x.rhai"), "1").unwrap();
        std::fs::create_dir_all(b.path().join(".git")).unwrap();
        std::fs::write(b.path().join(".git/HEAD"), "ref").unwrap();
        let sum = tree_sha256(a.path()).unwrap();
        assert_eq!(sum, tree_sha256(b.path()).unwrap());
        std::fs::write(b.path().join("x.rhai"), "1 ").unwrap();
        assert_ne!(sum, tree_sha256(b.path()).unwrap());
        std::fs::rename(b.path().join("x.rhai"), b.path().join("z.rhai")).unwrap();
        std::fs::write(b.path().join("z.rhai"), "1").unwrap();
        assert_ne!(sum, tree_sha256(b.path()).unwrap());
    }
}
