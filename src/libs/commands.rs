//! `runner lib add | list | update | install | remove`: the only commands that fetch. Each returns the
//! lines to print; runner.toml is edited in place (its comments and layout kept), runner.lock and
//! `.runner/` are written whole.

use std::path::{Path, PathBuf};

use super::git;
use super::lock::{tree_sha256, write_atomically, Locked};
use super::manifest::{
    check_name, check_ref, check_url, name_from_url, split_ref, LibManifest, Source, LIB_FILE,
    PROJECT_FILE,
};
use super::project::{Project, Status, Tree, Written, STATE_DIR};
use crate::resolver::STDLIB;

const NEW_MANIFEST: &str = "# runner.toml: the libraries of these playbooks (`runner lib add URL@REF`), and what\n\
     # `runner play` uses when the command line does not say ([defaults] inventory, lib, params).\n\n[libs]\n";

/// `runner lib add URL[@REF] [--name NAME]`: fetch, check out into `.runner/lib/NAME`, and record it
/// in runner.toml (created in `cwd` if there is none in it or above) and runner.lock.
pub fn add(cwd: &Path, spec: &str, name: Option<&str>) -> Result<Vec<String>, String> {
    let (url, reference) = split_ref(spec);
    check_url(url)?;
    if let Some(r) = reference {
        check_ref(r)?;
    }
    let project = match Project::find(cwd)? {
        Some(p) => p,
        None => Project::load(cwd)?,
    };
    // A relative folder is written as an absolute path: runner.toml may be in a folder above.
    let url = git::absolute_url(url, cwd);
    let mirror = git::fetch(&url)?;
    let commit = git::resolve(&mirror, &url, reference)?;
    let reference = match reference {
        Some(r) => r.to_string(),
        None => git::default_branch(&mirror).ok_or_else(|| {
            format!("{url} has no default branch: give a tag, branch or commit (URL@REF)")
        })?,
    };
    let manifest = git::show(&mirror, &commit, LIB_FILE)
        .and_then(|t| LibManifest::parse(&t).ok())
        .unwrap_or_default();
    let name = name
        .map(str::to_string)
        .or_else(|| manifest.name.clone())
        .unwrap_or_else(|| name_from_url(&url));
    check_name(&name).map_err(|e| format!("{e}; choose one with --name"))?;
    if let Some((m, _)) = STDLIB.iter().find(|(m, _)| *m == name) {
        return Err(format!(
            "library `{name}` would have the name of the standard library module `{m}` (import \"{m}\"): choose another with --name"
        ));
    }
    if let Some(entry) = project.manifest.sources().get(&name) {
        return Err(format!(
            "library `{name}` is already in {} ({}): `runner lib update {name}@REF` moves it, `runner lib remove {name}` drops it",
            project.manifest_path().display(),
            entry.describe()
        ));
    }
    let sha256 = check_out(&project, &name, &mirror, &commit)?;
    edit_libs(&project, |libs| {
        let mut entry = toml_edit::InlineTable::new();
        entry.insert("git", url.as_str().into());
        entry.insert("ref", reference.as_str().into());
        libs.insert(&name, toml_edit::value(entry));
    })?;
    let mut project = Project::load(&project.dir)?;
    project.lock.libs.insert(
        name.clone(),
        Locked {
            git: url.clone(),
            reference: Some(reference.clone()),
            commit: commit.clone(),
            sha256,
        },
    );
    project.lock.write(&project.dir)?;
    let mut lines = vec![format!(
        "added {name}: {url}@{reference}, commit {} -> {}",
        short(&commit),
        project.show(&project.checkout_dir(&name))
    )];
    lines.extend(about(&project, &name));
    Ok(lines)
}

/// `runner lib update [NAME[@REF]]`: fetch, resolve runner.toml's ref again (moved to REF first
/// if given), check out and lock. Without a name, every git library, and what runner.lock has that
/// runner.toml no longer declares is dropped.
pub fn update(cwd: &Path, target: Option<&str>, force: bool) -> Result<Vec<String>, String> {
    let mut project = existing(cwd)?;
    let only = match target {
        Some(t) => {
            let (name, reference) = t.split_once('@').map_or((t, None), |(n, r)| (n, Some(r)));
            declared(&project, name)?;
            if let Some(r) = reference {
                check_ref(r)?;
                edit_libs(&project, |libs| {
                    if let Some(entry) = libs.get_mut(name).and_then(|e| e.as_table_like_mut()) {
                        entry.insert("ref", toml_edit::value(r));
                    }
                })?;
                project = Project::load(&project.dir)?;
            }
            Some(name.to_string())
        }
        None => None,
    };
    let mut lines = Vec::new();
    for (name, source) in project.manifest.sources() {
        if only.as_ref().is_some_and(|o| *o != name) {
            continue;
        }
        let Source::Git { .. } = &source else {
            lines.push(format!(
                "{name}: a path library ({}), used as it is",
                source.describe()
            ));
            continue;
        };
        lines.push(fetch_and_lock(&mut project, &name, &source, force)?);
    }
    if only.is_none() {
        lines.extend(drop_undeclared(&mut project, force)?);
    }
    project.lock.write(&project.dir)?;
    Ok(lines)
}

/// `runner lib install [--frozen] [--force]`: make `.runner/lib/` what runner.lock pins, fetching
/// only a commit the cache lacks. A library runner.lock does not have yet (or has for another ref
/// than runner.toml's) is resolved and locked, unless `frozen`: then that is an error and nothing is
/// written. A library edited by hand is kept, and is an error, unless `force`.
pub fn install(cwd: &Path, frozen: bool, force: bool) -> Result<Vec<String>, String> {
    let mut project = existing(cwd)?;
    let statuses: Vec<(String, Source, Status)> = project
        .manifest
        .sources()
        .into_iter()
        .map(|(n, s)| {
            let st = project.status(&n, &s);
            (n, s, st)
        })
        .collect();
    if frozen {
        let mut would = Vec::new();
        for (name, source, status) in &statuses {
            match status {
                Status::NotLocked => would.push(format!("lock `{name}` ({})", source.describe())),
                Status::Git { changed: true, .. } => {
                    would.push(format!("move `{name}` to {}", source.describe()))
                }
                _ => {}
            }
        }
        let declared = project.manifest.sources();
        for name in project
            .lock
            .libs
            .keys()
            .filter(|n| !declared.contains_key(*n))
        {
            would.push(format!("drop `{name}`"));
        }
        if !would.is_empty() {
            return Err(format!(
                "--frozen: runner.lock does not match runner.toml; `runner lib install` would {}: run it without --frozen (outside CI) and commit runner.lock",
                would.join(", ")
            ));
        }
    }
    let mut lines = Vec::new();
    for (name, source, status) in statuses {
        match (&source, status) {
            (_, Status::Path { exists: true }) => {
                lines.push(format!("{name}: a path library ({})", source.describe()))
            }
            (_, Status::Path { exists: false }) => {
                return Err(format!(
                    "library `{name}`: its folder {} (`path` in runner.toml) does not exist",
                    source.describe()
                ))
            }
            (
                _,
                Status::Git {
                    tree: Tree::Intact,
                    changed: false,
                    locked,
                },
            ) => lines.push(format!(
                "{name}: {} at commit {}, installed",
                source.describe(),
                short(&locked.commit)
            )),
            (
                Source::Git { url, .. },
                Status::Git {
                    tree,
                    changed: false,
                    locked,
                },
            ) => {
                if tree == Tree::Modified {
                    refuse_modified(&project, &name, &source, force)?;
                }
                let abs = git::absolute_url(url, &project.dir);
                let mut mirror = git::mirror_of(&abs);
                if !git::has_commit(&mirror, &locked.commit) {
                    mirror = git::fetch(&abs)?;
                }
                let sha256 = check_out(&project, &name, &mirror, &locked.commit)?;
                if sha256 != locked.sha256 {
                    return Err(format!(
                        "library `{name}`: commit {} of {url} has sha256 {sha256}, runner.lock says {}: the lock was not made from this repository's commit (rewritten history?); `runner lib update {name}` locks what the repository has now",
                        short(&locked.commit),
                        locked.sha256
                    ));
                }
                lines.push(format!(
                    "{name}: {} at commit {}, checked out",
                    source.describe(),
                    short(&locked.commit)
                ));
            }
            (Source::Git { .. }, _) => {
                lines.push(fetch_and_lock(&mut project, &name, &source, force)?);
            }
            (Source::Path(_), _) => unreachable!("a path library has a path status"),
        }
    }
    lines.extend(drop_undeclared(&mut project, force)?);
    project.lock.write(&project.dir)?;
    Ok(lines)
}

/// `runner lib remove NAME`: out of runner.toml and runner.lock, and its checkout deleted (a path
/// library's folder is the project's own, and is left alone).
pub fn remove(cwd: &Path, name: &str, force: bool) -> Result<Vec<String>, String> {
    let project = existing(cwd)?;
    let source = declared(&project, name)?;
    refuse_modified(&project, name, &source, force)?;
    edit_libs(&project, |libs| {
        libs.remove(name);
    })?;
    let mut project = Project::load(&project.dir)?;
    project.lock.libs.remove(name);
    project.lock.write(&project.dir)?;
    forget(&project, name)?;
    Ok(vec![format!("removed {name} ({})", source.describe())])
}

/// `runner lib list`: each library of runner.toml, its source, the commit it is locked at, and
/// whether its files are what the lock says (`ok`, `modified`, `missing`, ...).
pub fn list(cwd: &Path) -> Result<Vec<String>, String> {
    let project = existing(cwd)?;
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (name, source) in project.manifest.sources() {
        let (state, commit) = match project.status(&name, &source) {
            Status::Path { exists } => {
                let s = if exists { "path" } else { "missing" };
                (s.to_string(), "-".to_string())
            }
            Status::NotLocked => ("not locked".into(), "-".into()),
            Status::Git {
                locked,
                changed,
                tree,
            } => {
                let mut s = match tree {
                    Tree::Intact => "ok".to_string(),
                    Tree::Missing => "missing".into(),
                    Tree::Modified => "modified".into(),
                    Tree::Other { commit } => format!("installed at {}", short(&commit)),
                };
                if changed {
                    s.push_str(&format!(
                        ", locked at {}",
                        locked.reference.as_deref().unwrap_or("the default branch")
                    ));
                }
                (s, short(&locked.commit).to_string())
            }
        };
        let dir = project.lib_dir(&name, &source);
        let what = LibManifest::read(&dir)
            .ok()
            .flatten()
            .map(|m| {
                let v = m.version.map(|v| format!(" {v}")).unwrap_or_default();
                let d = m.description.map(|d| format!(": {d}")).unwrap_or_default();
                format!("  {}{v}{d}", m.name.unwrap_or_else(|| name.clone()))
            })
            .unwrap_or_default();
        rows.push([name, state, commit, format!("{}{what}", source.describe())]);
    }
    let declared = project.manifest.sources();
    for (name, l) in &project.lock.libs {
        if !declared.contains_key(name) {
            rows.push([
                name.clone(),
                "not in runner.toml".into(),
                short(&l.commit).into(),
                "`runner lib update` drops it".into(),
            ]);
        }
    }
    if rows.is_empty() {
        return Ok(vec![format!(
            "no libraries in {}: `runner lib add URL@REF` adds one",
            project.manifest_path().display()
        )]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    Ok(rows
        .iter()
        .map(|r| format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]))
        .collect())
}

/// The project of `cwd`, which must have a runner.toml.
fn existing(cwd: &Path) -> Result<Project, String> {
    Project::find(cwd)?.ok_or_else(|| {
        format!(
            "no {PROJECT_FILE} in {} or a folder above it: `runner lib add URL@REF` creates one",
            cwd.display()
        )
    })
}

fn declared(project: &Project, name: &str) -> Result<Source, String> {
    project.manifest.sources().remove(name).ok_or_else(|| {
        let names: Vec<String> = project.manifest.sources().into_keys().collect();
        format!(
            "no library `{name}` in {} (it has: {})",
            project.manifest_path().display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )
    })
}

/// An error if the checkout of `name` was edited by hand and `force` is not given: `runner lib`
/// does not throw away someone's change.
fn refuse_modified(
    project: &Project,
    name: &str,
    source: &Source,
    force: bool,
) -> Result<(), String> {
    if force {
        return Ok(());
    }
    if let Status::Git {
        tree: Tree::Modified,
        ..
    } = project.status(name, source)
    {
        return Err(format!(
            "library `{name}` was edited by hand ({} is not what runner.lock pins): --force overwrites it",
            project.show(&project.checkout_dir(name))
        ));
    }
    Ok(())
}

/// Fetch the git library `name` (`source`), check out the commit its ref names and lock it (a
/// library edited by hand is refused unless `force`); the line saying what changed.
fn fetch_and_lock(
    project: &mut Project,
    name: &str,
    source: &Source,
    force: bool,
) -> Result<String, String> {
    let Source::Git { url, reference } = source else {
        return Err(format!("library `{name}` is a path, not a git library"));
    };
    refuse_modified(project, name, source, force)?;
    let mirror = git::fetch(&git::absolute_url(url, &project.dir))?;
    let commit = git::resolve(&mirror, url, reference.as_deref())?;
    lock_commit(project, name, url, reference, &mirror, &commit)
}

/// Check `commit` out as `name` and lock it; the line saying what changed.
fn lock_commit(
    project: &mut Project,
    name: &str,
    url: &str,
    reference: &Option<String>,
    mirror: &Path,
    commit: &str,
) -> Result<String, String> {
    let before = project.lock.libs.get(name).cloned();
    let intact = matches!(
        project.status(
            name,
            &Source::Git {
                url: url.into(),
                reference: reference.clone()
            }
        ),
        Status::Git {
            tree: Tree::Intact,
            ..
        }
    );
    let shown = Source::Git {
        url: url.into(),
        reference: reference.clone(),
    }
    .describe();
    let sha256 = match &before {
        Some(b) if b.commit == commit && intact => b.sha256.clone(),
        _ => check_out(project, name, mirror, commit)?,
    };
    project.lock.libs.insert(
        name.to_string(),
        Locked {
            git: url.to_string(),
            reference: reference.clone(),
            commit: commit.to_string(),
            sha256,
        },
    );
    Ok(match before {
        Some(b) if b.commit == commit => {
            format!("{name}: {shown} at commit {}, up to date", short(commit))
        }
        Some(b) => format!(
            "{name}: {shown}, commit {} -> {}",
            short(&b.commit),
            short(commit)
        ),
        None => format!("{name}: {shown} locked at commit {}", short(commit)),
    })
}

/// Drop what runner.lock has that runner.toml no longer declares, with its checkout.
fn drop_undeclared(project: &mut Project, force: bool) -> Result<Vec<String>, String> {
    let declared = project.manifest.sources();
    let stale: Vec<String> = project
        .lock
        .libs
        .keys()
        .filter(|n| !declared.contains_key(*n))
        .cloned()
        .collect();
    let mut lines = Vec::new();
    for name in stale {
        let locked = project.lock.libs[&name].clone();
        let dir = project.checkout_dir(&name);
        if !force && dir.is_dir() && tree_sha256(&dir).ok().as_deref() != Some(&locked.sha256) {
            return Err(format!(
                "`{name}` is no longer in runner.toml, but its checkout {} was edited by hand: --force deletes it",
                project.show(&dir)
            ));
        }
        project.lock.libs.remove(&name);
        forget(project, &name)?;
        lines.push(format!("{name}: no longer in runner.toml, dropped"));
    }
    Ok(lines)
}

/// Write the files of `commit` into `.runner/lib/NAME` (replacing what was there) and record it;
/// returns their sha256.
fn check_out(project: &Project, name: &str, mirror: &Path, commit: &str) -> Result<String, String> {
    let dest = project.checkout_dir(name);
    let parent = dest.parent().expect(".runner/lib");
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    ignore_state_dir(project)?;
    // Written beside, then swapped in: a failed checkout leaves the old one whole.
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-"))
        .tempdir_in(parent)
        .map_err(|e| format!("cannot create a folder in {}: {e}", parent.display()))?;
    let files = tmp.path().join("files");
    git::export(mirror, commit, &files)?;
    let sha256 =
        tree_sha256(&files).map_err(|e| format!("cannot read {}: {e}", files.display()))?;
    remove_dir(&dest)?;
    std::fs::rename(&files, &dest)
        .map_err(|e| format!("cannot move the checkout to {}: {e}", dest.display()))?;
    let mut record = project.record();
    record.libs.insert(
        name.to_string(),
        Written {
            commit: commit.to_string(),
            sha256: sha256.clone(),
        },
    );
    project.write_record(&record)?;
    Ok(sha256)
}

/// Delete the checkout of `name` and its record.
fn forget(project: &Project, name: &str) -> Result<(), String> {
    remove_dir(&project.checkout_dir(name))?;
    let mut record = project.record();
    if record.libs.remove(name).is_some() {
        project.write_record(&record)?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot delete {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// `.runner/` is what `runner lib` installs from runner.lock: not for the project's repository.
fn ignore_state_dir(project: &Project) -> Result<(), String> {
    let ignore: PathBuf = project.dir.join(STATE_DIR).join(".gitignore");
    if ignore.exists() {
        return Ok(());
    }
    write_atomically(
        &ignore,
        "# Written by runner: `runner lib install` makes this folder from runner.lock.\n*\n",
    )
}

/// Edit runner.toml's `[libs]` table in place (created, with the file, if missing).
fn edit_libs(project: &Project, edit: impl FnOnce(&mut toml_edit::Table)) -> Result<(), String> {
    let path = project.manifest_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => NEW_MANIFEST.to_string(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !doc.contains_key("libs") {
        doc.insert("libs", toml_edit::table());
    }
    let libs = doc["libs"]
        .as_table_mut()
        .ok_or_else(|| format!("{}: `libs` is not a table", path.display()))?;
    edit(libs);
    write_atomically(&path, &doc.to_string())
}

/// What a library says of itself, and how to import it, after it was added.
fn about(project: &Project, name: &str) -> Vec<String> {
    let Some(lib) = project.present().into_iter().find(|l| l.name == name) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    if let Some(m) = &lib.manifest {
        if let Some(d) = &m.description {
            lines.push(format!(
                "  {}{}: {d}",
                m.name.as_deref().unwrap_or(name),
                m.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(why) = m.too_old(name) {
            lines.push(format!("  warning: {why}"));
        }
    }
    let modules = lib.modules();
    if let Some(first) = modules.first() {
        lines.push(format!(
            "  import \"{name}/{first}\" as {}; (modules: {})",
            first.rsplit('/').next().unwrap_or(first),
            modules.join(", ")
        ));
    }
    lines
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
