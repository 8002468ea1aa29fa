//! A project: the folder of a `runner.toml`, its `runner.lock`, and its installed libraries in
//! `.runner/lib/NAME`. Finding it from a script, and checking, without fetching anything, that every
//! library is there, untouched, and the one runner.lock pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::installed::Installed;
use super::lock::{tree_sha256, write_atomically, Lock, Locked};
use super::manifest::{LibManifest, ProjectManifest, Source, PROJECT_FILE};

/// The folder, inside the project, of what `runner lib` writes (not committed: it has its own
/// `.gitignore`).
pub const STATE_DIR: &str = ".runner";

/// A project and its manifests.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder of runner.toml.
    pub dir: PathBuf,
    pub manifest: ProjectManifest,
    pub lock: Lock,
}

/// Where a library stands, from runner.toml, runner.lock and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A path library, used as it is; whether its folder exists.
    Path { exists: bool },
    /// In runner.toml, not in runner.lock.
    NotLocked,
    /// A locked git library.
    Git {
        locked: Locked,
        /// runner.toml now asks for something else (another ref or URL) than the lock was made from.
        changed: bool,
        tree: Tree,
    },
}

/// The files of an installed git library, against the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tree {
    /// Exactly the locked files.
    Intact,
    /// `.runner/lib/NAME` does not exist.
    Missing,
    /// Installed by `runner lib` at another commit than the lock's (the lock changed since).
    Other { commit: String },
    /// Neither the locked files nor those runner installed: edited by hand.
    Modified,
}

/// What `runner lib` last wrote into `.runner/lib/NAME`: which commit, with which sum.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    pub libs: BTreeMap<String, Written>,
}

/// One library as written into `.runner/lib/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written {
    pub commit: String,
    pub sha256: String,
}

impl Project {
    /// The project of the first runner.toml in `start` (a folder) or a folder above it.
    pub fn find(start: &Path) -> Result<Option<Project>, String> {
        let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
        match start.ancestors().find(|d| d.join(PROJECT_FILE).is_file()) {
            Some(dir) => Project::load(dir).map(Some),
            None => Ok(None),
        }
    }

    /// The project of `dir`'s runner.toml (an empty one if it has none yet).
    pub fn load(dir: &Path) -> Result<Project, String> {
        let manifest_path = dir.join(PROJECT_FILE);
        let manifest = if manifest_path.exists() {
            ProjectManifest::read(&manifest_path)?
        } else {
            ProjectManifest::default()
        };
        Ok(Project {
            dir: dir.to_path_buf(),
            manifest,
            lock: Lock::read(dir)?,
        })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(PROJECT_FILE)
    }

    /// Where `runner lib` checks a git library out: `.runner/lib/NAME`.
    pub fn checkout_dir(&self, name: &str) -> PathBuf {
        self.dir.join(STATE_DIR).join("lib").join(name)
    }

    /// The folder of a library's files.
    pub fn lib_dir(&self, name: &str, source: &Source) -> PathBuf {
        match source {
            Source::Git { .. } => self.checkout_dir(name),
            Source::Path(p) => self.dir.join(p),
        }
    }

    /// A path of the project as messages show it: relative to the project when inside it.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| path.display().to_string())
    }

    fn record_path(&self) -> PathBuf {
        self.dir.join(STATE_DIR).join("installed.toml")
    }

    /// What `runner lib` last wrote into `.runner/lib/`.
    pub fn record(&self) -> Record {
        std::fs::read_to_string(self.record_path())
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn write_record(&self, record: &Record) -> Result<(), String> {
        write_atomically(
            &self.record_path(),
            &toml::to_string(record).expect("plain TOML"),
        )
    }

    /// Where the library `name` of runner.toml stands.
    pub fn status(&self, name: &str, source: &Source) -> Status {
        let (url, reference) = match source {
            Source::Path(_) => {
                return Status::Path {
                    exists: self.lib_dir(name, source).is_dir(),
                }
            }
            Source::Git { url, reference } => (url, reference),
        };
        let Some(locked) = self.lock.libs.get(name) else {
            return Status::NotLocked;
        };
        let changed = &locked.git != url || &locked.reference != reference;
        let dir = self.checkout_dir(name);
        let tree = if !dir.is_dir() {
            Tree::Missing
        } else {
            match tree_sha256(&dir) {
                Ok(sum) if sum == locked.sha256 => Tree::Intact,
                Ok(sum) => match self.record().libs.get(name) {
                    Some(w) if w.sha256 == sum && w.commit != locked.commit => Tree::Other {
                        commit: w.commit.clone(),
                    },
                    _ => Tree::Modified,
                },
                Err(_) => Tree::Modified,
            }
        };
        Status::Git {
            locked: locked.clone(),
            changed,
            tree,
        }
    }

    /// Every library of runner.toml, checked: each must be installed, untouched, and the commit
    /// runner.lock pins. With `frozen`, runner.lock must also be what `runner lib update` would
    /// leave: made from runner.toml as it is now. Nothing is fetched. Returns the libraries and the
    /// warnings to show; the error names each library that is not ready and the command that fixes it.
    pub fn libraries(&self, frozen: bool) -> Result<(Vec<Installed>, Vec<String>), String> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut out = Vec::new();
        let why_frozen =
            "--frozen, and CI=true, refuse a runner.lock that `runner lib update` would change";
        for (name, source) in self.manifest.sources() {
            let dir = self.lib_dir(&name, &source);
            match self.status(&name, &source) {
                Status::Path { exists: false } => problems.push(format!(
                    "library `{name}`: its folder {} (`path` in runner.toml) does not exist",
                    dir.display()
                )),
                Status::Path { exists: true } => {}
                Status::NotLocked => problems.push(format!(
                    "library `{name}` is in runner.toml but not in runner.lock: run `runner lib install`{}",
                    if frozen { " and commit runner.lock" } else { "" }
                )),
                Status::Git {
                    locked,
                    changed,
                    tree,
                } => {
                    let short = &locked.commit[..locked.commit.len().min(12)];
                    if changed {
                        let (now, then) = match &source {
                            Source::Git { url, reference } if *url == locked.git => (
                                format!("ref {}", reference.as_deref().unwrap_or("(default branch)")),
                                format!("ref {}", locked.reference.as_deref().unwrap_or("(default branch)")),
                            ),
                            _ => (
                                source.describe(),
                                Source::Git {
                                    url: locked.git.clone(),
                                    reference: locked.reference.clone(),
                                }
                                .describe(),
                            ),
                        };
                        if frozen {
                            problems.push(format!(
                                "library `{name}`: runner.toml asks for {now}, runner.lock was made from {then}: run `runner lib update {name}` and commit runner.lock; {why_frozen}"
                            ));
                        } else {
                            warnings.push(format!(
                                "library `{name}`: runner.toml asks for {now}, runner.lock pins {then} (commit {short}); running the locked one: `runner lib update {name}` moves it"
                            ));
                        }
                    }
                    match tree {
                        Tree::Intact => {}
                        Tree::Missing => problems.push(format!(
                            "library `{name}` is not installed ({} is missing): run `runner lib install`",
                            self.show(&dir)
                        )),
                        Tree::Other { commit } => problems.push(format!(
                            "library `{name}` is installed at commit {}, runner.lock pins {short}: run `runner lib install`",
                            &commit[..commit.len().min(12)]
                        )),
                        Tree::Modified => problems.push(format!(
                            "library `{name}` was edited by hand: the files of {} are not those runner.lock pins (commit {short}); `runner lib install --force` puts the locked files back (make the change in the library's repository, or use a path library)",
                            self.show(&dir)
                        )),
                    }
                }
            }
            match LibManifest::read(&dir) {
                Ok(manifest) => out.push(Installed {
                    name,
                    dir,
                    declared_in: self.manifest_path(),
                    manifest,
                }),
                Err(e) if dir.is_dir() => problems.push(format!("library `{name}`: {e}")),
                Err(_) => {}
            }
        }
        let declared = self.manifest.sources();
        for name in self.lock.libs.keys().filter(|n| !declared.contains_key(*n)) {
            let msg = format!(
                "runner.lock pins `{name}`, which runner.toml no longer has: `runner lib update` drops it"
            );
            if frozen {
                problems.push(format!("{msg}; {why_frozen}"));
            } else {
                warnings.push(msg);
            }
        }
        match problems.len() {
            0 => Ok((out, warnings)),
            1 => Err(format!("{}: {}", self.show_manifest(), problems.remove(0))),
            _ => Err(format!(
                "{}: libraries not ready:\n  - {}",
                self.show_manifest(),
                problems.join("\n  - ")
            )),
        }
    }

    fn show_manifest(&self) -> String {
        self.manifest_path().display().to_string()
    }

    /// Every library of runner.toml whose files are there, checked or not (for editor definitions).
    pub fn present(&self) -> Vec<Installed> {
        self.manifest
            .sources()
            .into_iter()
            .map(|(name, source)| (self.lib_dir(&name, &source), name))
            .filter(|(dir, _)| dir.is_dir())
            .map(|(dir, name)| Installed {
                manifest: LibManifest::read(&dir).ok().flatten(),
                name,
                dir,
                declared_in: self.manifest_path(),
            })
            .collect()
    }
}
