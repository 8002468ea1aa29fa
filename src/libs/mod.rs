//! Shared playbook libraries: a project's `runner.toml` declares them (git + ref, or a path),
//! `runner lib` fetches them with the system git into a user-wide cache and checks them out into
//! `.runner/lib/NAME`, and `runner.lock` pins each to a commit and a sha256 of its files. `runner
//! play` only checks: it never fetches.
//!
//! - `manifest.rs`: runner.toml and a library's runner-lib.toml;
//! - `lock.rs`: runner.lock and the sha256 of a library's files;
//! - `git.rs`: the system git and the cache of mirror clones;
//! - `project.rs`: finding the project of a script, and the state of each library against the lock;
//! - `installed.rs`: the folders and libraries an import resolves in;
//! - `commands.rs`: `runner lib add | list | update | install | remove`.

pub mod commands;
pub mod git;
pub mod installed;
pub mod lock;
pub mod manifest;
pub mod project;

pub use installed::{Installed, Libs};
pub use manifest::{Defaults, LibManifest, ProjectManifest, Source};
pub use project::Project;
