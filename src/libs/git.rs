//! The system `git`, for libraries: a user-wide cache of mirror clones, content-addressed by URL
//! (`$XDG_CACHE_HOME/runner/git/<sha256 of the URL>`), refs resolved to commits there, and a commit's
//! files written out into a project's `.runner/lib/NAME` without a `.git` of their own.
//!
//! Only `runner lib` calls into this file: `runner play` never fetches.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The folder of the mirror clones.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("runner").join("git")
}

/// A URL as git will read it from `base` (runner.toml's folder): a relative local path made
/// absolute, anything else as written.
pub fn absolute_url(url: &str, base: &Path) -> String {
    let local = !url.contains("://") && !scp_like(url);
    if local && Path::new(url).is_relative() {
        base.join(url).display().to_string()
    } else {
        url.to_string()
    }
}

/// `user@host:path` or `host:path`, git's scp-like syntax (a `:` before any `/`).
fn scp_like(url: &str) -> bool {
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// The mirror of `url` in the cache (it may not exist yet).
pub fn mirror_of(url: &str) -> PathBuf {
    cache_root().join(format!("{:x}", Sha256::digest(url.as_bytes())))
}

/// Bring the mirror of `url` up to date with the remote: clone it if it is not in the cache, fetch
/// otherwise. Returns the mirror's folder.
pub fn fetch(url: &str) -> Result<PathBuf, String> {
    let mirror = mirror_of(url);
    if mirror.join("HEAD").is_file() {
        git(Some(&mirror), &["fetch", "--prune", "--quiet", "origin"])
            .map_err(|e| format!("cannot fetch {url}: {e}"))?;
        return Ok(mirror);
    }
    let root = cache_root();
    std::fs::create_dir_all(&root)
        .map_err(|e| format!("cannot create the cache {}: {e}", root.display()))?;
    // Cloned beside, then renamed: a clone that fails half-way leaves nothing in the cache.
    let tmp = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(&root)
        .map_err(|e| format!("cannot create a folder in {}: {e}", root.display()))?;
    let into = tmp.path().join("mirror");
    git(
        None,
        &[
            "clone",
            "--mirror",
            "--quiet",
            "--",
            url,
            &into.display().to_string(),
        ],
    )
    .map_err(|e| format!("cannot clone {url}: {e}"))?;
    if let Err(e) = std::fs::rename(&into, &mirror) {
        // Another runner cloned it at the same time: theirs is as good.
        if !mirror.join("HEAD").is_file() {
            return Err(format!(
                "cannot move the clone to {}: {e}",
                mirror.display()
            ));
        }
    }
    Ok(mirror)
}

/// The commit `reference` (a tag, branch or commit; None: the default branch) names in `mirror`.
pub fn resolve(mirror: &Path, url: &str, reference: Option<&str>) -> Result<String, String> {
    let what = reference.unwrap_or("HEAD");
    git(
        Some(mirror),
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{what}^{{commit}}"),
        ],
    )
    .map(|out| out.trim().to_string())
    .map_err(|_| match reference {
        Some(r) => format!("{url} has no tag, branch or commit `{r}`"),
        None => format!("{url} has no default branch"),
    })
}

/// The name of the default branch of `mirror` (`main`), to record in runner.toml.
pub fn default_branch(mirror: &Path) -> Option<String> {
    git(Some(mirror), &["symbolic-ref", "--quiet", "HEAD"])
        .ok()
        .map(|r| r.trim().trim_start_matches("refs/heads/").to_string())
        .filter(|r| !r.is_empty())
}

/// Whether `mirror` has `commit` (so a locked library can be installed without fetching).
pub fn has_commit(mirror: &Path, commit: &str) -> bool {
    mirror.join("HEAD").is_file()
        && git(
            Some(mirror),
            &[
                "cat-file",
                "-e",
                "--end-of-options",
                &format!("{commit}^{{commit}}"),
            ],
        )
        .is_ok()
}

/// The text of the file `path` at `commit`, if there is one.
pub fn show(mirror: &Path, commit: &str, path: &str) -> Option<String> {
    git(
        Some(mirror),
        &["show", "--end-of-options", &format!("{commit}:{path}")],
    )
    .ok()
}

/// Write the files of `commit` into the new folder `dest` (no `.git`). Uses an index file of its
/// own, so that the mirror, shared by every project of the user, is only read.
pub fn export(mirror: &Path, commit: &str, dest: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let index = tempfile::NamedTempFile::new()
        .map_err(|e| format!("cannot create a temporary index: {e}"))?;
    // git wants to create the index itself.
    let index_path = index.path().to_path_buf();
    drop(index);
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(mirror)
        .arg("--work-tree")
        .arg(dest)
        .args(["read-tree", "--reset", "-u", commit])
        .env("GIT_INDEX_FILE", &index_path)
        .stdin(Stdio::null())
        .output();
    let _ = std::fs::remove_file(&index_path);
    checked(out).map(|_| ())
}

/// Run git (in `mirror` as its git dir, if given); its stdout, or its stderr as the error.
fn git(mirror: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(m) = mirror {
        cmd.arg("--git-dir").arg(m);
    }
    // Never ask for a password on a terminal: a playbook library needs credentials git already has.
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    checked(cmd.output())
}

fn checked(out: std::io::Result<std::process::Output>) -> Result<String, String> {
    let out = out.map_err(|e| format!("cannot run git: {e} (is git installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if err.is_empty() {
            format!("git exited with {}", out.status)
        } else {
            err
        })
    }
}
