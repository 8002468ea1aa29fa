//! What `import` searches besides the script's own folder: the `--lib` folders and the installed
//! libraries of the project, by name.

use std::path::PathBuf;

use super::manifest::LibManifest;

/// The folders and libraries a run's imports resolve in.
#[derive(Debug, Clone, Default)]
pub struct Libs {
    /// `--lib` folders, runner.toml's `[defaults] lib`, then `RUNNER_PATH`, in that order.
    pub folders: Vec<PathBuf>,
    /// The libraries of runner.toml: `import "NAME/module"` loads `module.rhai` of `NAME`.
    pub installed: Vec<Installed>,
}

impl Libs {
    /// Only folders, no libraries.
    pub fn folders(folders: Vec<PathBuf>) -> Libs {
        Libs {
            folders,
            installed: Vec::new(),
        }
    }

    /// The library of that name.
    pub fn library(&self, name: &str) -> Option<&Installed> {
        self.installed.iter().find(|l| l.name == name)
    }
}

/// One library of the project, checked against runner.lock.
#[derive(Debug, Clone)]
pub struct Installed {
    pub name: String,
    /// Its files: `.runner/lib/NAME`, or a path library's folder.
    pub dir: PathBuf,
    /// The runner.toml that declares it, for messages.
    pub declared_in: PathBuf,
    /// Its `runner-lib.toml`, if it has one.
    pub manifest: Option<LibManifest>,
}

impl Installed {
    /// The modules it offers: every `.rhai` file under its folder, as `import "NAME/..."` names them
    /// (its `tests/` folder holds test playbooks, not modules).
    pub fn modules(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || (prefix.is_empty() && name == "tests") {
                    continue;
                }
                let path = e.path();
                if path.is_dir() {
                    walk(&path, &format!("{prefix}{name}/"), out);
                } else if let Some(stem) = name.strip_suffix(".rhai") {
                    out.push(format!("{prefix}{stem}"));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, "", &mut out);
        out.sort();
        out
    }
}
