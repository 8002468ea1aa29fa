//! The two manifests: a project's `runner.toml` (the libraries its playbooks import, and defaults
//! for `runner play`) and a library's own `runner-lib.toml` (its name, version, description, and the
//! oldest runner it works with).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The project's manifest, found by walking up from the script.
pub const PROJECT_FILE: &str = "runner.toml";
/// A library's own manifest, at the root of the library.
pub const LIB_FILE: &str = "runner-lib.toml";

/// `runner.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectManifest {
    /// The libraries, by the name scripts import them under (`import "web/rolling"`).
    #[serde(default)]
    pub libs: BTreeMap<String, LibEntry>,
    /// What `runner play` uses when the command line does not say.
    #[serde(default)]
    pub defaults: Defaults,
}

/// One entry of `[libs]` as written: `{ git, ref }` or `{ path }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibEntry {
    git: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<String>,
    path: Option<PathBuf>,
}

/// Where a library comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A git repository (any URL git takes) at a tag, branch or commit; None: its default branch.
    Git {
        url: String,
        reference: Option<String>,
    },
    /// A folder, relative to runner.toml's folder: used as it is, never locked.
    Path(PathBuf),
}

impl Source {
    /// `URL@REF` or `URL`, as `runner lib add` takes it and `runner lib list` shows it.
    pub fn describe(&self) -> String {
        match self {
            Source::Git {
                url,
                reference: Some(r),
            } => format!("{url}@{r}"),
            Source::Git { url, .. } => url.clone(),
            Source::Path(p) => p.display().to_string(),
        }
    }
}

/// `[defaults]`: the values `runner play` takes when no flag gives them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// The inventory (`-i`), relative to runner.toml's folder.
    pub inventory: Option<PathBuf>,
    /// Folders searched by `import` (after `--lib`), relative to runner.toml's folder.
    #[serde(default)]
    pub lib: Vec<PathBuf>,
    /// Parameters (`--params` and `--param` win over them).
    #[serde(default)]
    pub params: toml::Table,
}

impl ProjectManifest {
    /// Read and check `path`.
    pub fn read(path: &Path) -> Result<ProjectManifest, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: ProjectManifest =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (name, entry) in &manifest.libs {
            check_name(name).map_err(|e| format!("{}: [libs] {e}", path.display()))?;
            entry
                .source()
                .map_err(|e| format!("{}: [libs] {name}: {e}", path.display()))?;
        }
        Ok(manifest)
    }

    /// The source of every library, by name.
    pub fn sources(&self) -> BTreeMap<String, Source> {
        self.libs
            .iter()
            .filter_map(|(n, e)| e.source().ok().map(|s| (n.clone(), s)))
            .collect()
    }
}

impl LibEntry {
    fn source(&self) -> Result<Source, String> {
        match (&self.git, &self.path, &self.reference) {
            (Some(url), None, reference) => {
                check_url(url)?;
                if let Some(r) = reference {
                    check_ref(r)?;
                }
                Ok(Source::Git {
                    url: url.clone(),
                    reference: reference.clone(),
                })
            }
            (None, Some(path), None) => Ok(Source::Path(path.clone())),
            (None, Some(_), Some(_)) => Err("`ref` goes with `git`, not with `path`".into()),
            (Some(_), Some(_), _) => Err("either `git` or `path`, not both".into()),
            (None, None, _) => Err("needs `git` (with `ref`) or `path`".into()),
        }
    }
}

/// A library name: what scripts write before the `/` of an import, and a folder name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a library name: letters, digits, `-` and `_`, starting with a letter or digit"
        ))
    }
}

/// A URL handed to git: never something git would read as an option.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.is_empty() || url.starts_with('-') {
        Err(format!("`{url}` is not a git URL"))
    } else {
        Ok(())
    }
}

/// A tag, branch or commit handed to git: never something git would read as an option.
pub fn check_ref(reference: &str) -> Result<(), String> {
    if reference.is_empty() || reference.starts_with('-') || reference.contains("..") {
        Err(format!("`{reference}` is not a tag, branch or commit"))
    } else {
        Ok(())
    }
}

/// `runner-lib.toml`: what a library says of itself. Keys this runner does not know are allowed,
/// so that a library written for a newer runner still says which runner it needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LibManifest {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// The oldest runner this library works with (`"0.2"`, `"0.2.1"`).
    #[serde(rename = "runner-version")]
    pub runner_version: Option<String>,
}

impl LibManifest {
    /// The manifest of the library in `dir`, if it has one.
    pub fn read(dir: &Path) -> Result<Option<LibManifest>, String> {
        let path = dir.join(LIB_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        LibManifest::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<LibManifest, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Why this runner is too old for the library, if it is.
    pub fn too_old(&self, library: &str) -> Option<String> {
        let wanted = self.runner_version.as_deref()?;
        let running = env!("CARGO_PKG_VERSION");
        let ok = semver::VersionReq::parse(&format!(">={wanted}")).map(|req| {
            req.matches(&semver::Version::parse(running).expect("our own version is semver"))
        });
        match ok {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "library `{library}`{} needs runner {wanted} or newer; this is runner {running}: upgrade runner, or pin an older version of the library",
                self.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default()
            )),
            Err(e) => Some(format!(
                "library `{library}`: {LIB_FILE}: runner-version = \"{wanted}\" is not a version: {e}"
            )),
        }
    }
}

/// `URL@REF` split into the URL and the ref. The ref is what follows the last `@`, when that `@`
/// comes after the repository's path: `git@host:ops/lib.git` and `https://user@host/lib.git` have
/// no ref, `git@host:ops/lib.git@v1` and `file:///srv/lib.git@release/1.0` have one.
pub fn split_ref(spec: &str) -> (&str, Option<&str>) {
    if let Some(at) = spec.rfind('@') {
        let (before, after) = (&spec[..at], &spec[at + 1..]);
        let path = before.split_once("://").map_or(before, |(_, rest)| rest);
        if !after.is_empty() && !after.contains(':') && (path.contains('/') || path.contains(':')) {
            return (before, Some(after));
        }
    }
    (spec, None)
}

/// The name a library gets when `--name` and its manifest do not give one: the last part of the
/// URL, without `.git`.
pub fn name_from_url(url: &str) -> String {
    let last = url
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or(url);
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_follows_the_last_at_after_the_path() {
        assert_eq!(
            split_ref("file:///srv/lib.git@v1"),
            ("file:///srv/lib.git", Some("v1"))
        );
        assert_eq!(
            split_ref("git@host:ops/lib.git"),
            ("git@host:ops/lib.git", None)
        );
        assert_eq!(
            split_ref("git@host:ops/lib.git@v1"),
            ("git@host:ops/lib.git", Some("v1"))
        );
        assert_eq!(
            split_ref("https://user@host/lib.git"),
            ("https://user@host/lib.git", None)
        );
        assert_eq!(
            split_ref("https://host/lib.git@release/1.0"),
            ("https://host/lib.git", Some("release/1.0"))
        );
        assert_eq!(split_ref("/srv/lib.git@v2"), ("/srv/lib.git", Some("v2")));
    }

    #[test]
    fn a_name_comes_from_the_last_part_of_the_url() {
        assert_eq!(name_from_url("file:///srv/git/web-lib.git"), "web-lib");
        assert_eq!(name_from_url("git@host:ops/haproxy.git/"), "haproxy");
        assert_eq!(name_from_url("git@host:checks"), "checks");
    }

    #[test]
    fn a_library_for_a_newer_runner_says_which_version_it_needs() {
        let m = LibManifest::parse(
            "name = \"web\"\nversion = \"2.0.0\"\nrunner-version = \"99.1\"\nfuture-key = 1\n",
        )
        .unwrap();
        let msg = m.too_old("web").unwrap();
        assert!(msg.contains("needs runner 99.1 or newer"), "{msg}");
        let m = LibManifest::parse("runner-version = \"0.1\"").unwrap();
        assert_eq!(m.too_old("web"), None);
    }
}
