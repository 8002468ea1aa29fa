//! The commands that are not a run: `runner check` over projects, `runner lib`, `runner new`,
//! `runner doc --definitions`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::flags::{ci, folder_of, lib_path, project_of};
use crate::config::Config;
use crate::error::Error;
use crate::libs::{commands, Libs, Project};
use crate::Runner;

#[derive(Subcommand, Debug)]
pub enum LibCommand {
    /// Add a library: fetch it, check it out, record it in runner.toml and runner.lock
    ///
    /// runner.toml is the first one in this folder or above; without one, it is created here.
    Add {
        /// Any URL git takes (https://, ssh, file://, a path), then @ and a tag, branch or commit
        /// (default: the default branch).
        #[arg(value_name = "URL[@REF]")]
        source: String,
        /// The name scripts import it under (default: its runner-lib.toml's, or the URL's last part).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the libraries: source, locked commit, and whether the files are what runner.lock pins.
    List,
    /// Fetch and lock again what runner.toml asks for (every library, or NAME; NAME@REF moves it to REF).
    Update {
        #[arg(value_name = "NAME[@REF]")]
        name: Option<String>,
        /// Overwrite a library edited by hand.
        #[arg(long)]
        force: bool,
    },
    /// Check out exactly what runner.lock pins (for a fresh clone, or CI); fetches only what the
    /// cache lacks.
    Install {
        /// Refuse, and change nothing, if runner.lock does not match runner.toml (implied by CI=true).
        #[arg(long)]
        frozen: bool,
        /// Overwrite a library edited by hand.
        #[arg(long)]
        force: bool,
    },
    /// Remove a library from runner.toml and runner.lock, and delete its checkout.
    Remove {
        name: String,
        /// Delete it even if it was edited by hand.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// A playbook folder: NAME/NAME.rhai with params, runner.toml, an inventory example, a README.
    Playbook { name: String },
    /// A library folder: a module, runner-lib.toml, a test playbook, a README.
    Lib { name: String },
}

/// `runner check`: the scripts of each project checked with its libraries and `[defaults] lib`.
pub fn check(scripts: &[PathBuf], lib: Vec<PathBuf>) -> Result<(), Error> {
    let mut groups: Vec<(Option<PathBuf>, Vec<PathBuf>)> = Vec::new();
    for s in scripts {
        let dir = project_of(&folder_of(s))?.map(|p| p.dir);
        match groups.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, g)) => g.push(s.clone()),
            None => groups.push((dir, vec![s.clone()])),
        }
    }
    let mut result = Ok(());
    for (dir, group) in groups {
        let mut folders = lib.clone();
        let mut installed = Vec::new();
        if let Some(project) = dir
            .map(|d| Project::load(&d))
            .transpose()
            .map_err(Error::Usage)?
        {
            folders.extend(
                project
                    .manifest
                    .defaults
                    .lib
                    .iter()
                    .map(|p| project.dir.join(p)),
            );
            installed = project.libraries(ci()).map_err(Error::Usage)?.0;
        }
        let config = Config {
            libs: Libs {
                folders: lib_path(folders),
                installed,
            },
            ..Config::default()
        };
        if let Err(e) = Runner::new(config)?.check_all(&group) {
            result = Err(e);
        }
    }
    result
}

/// `runner lib ...`.
pub fn lib(command: LibCommand) -> Result<(), Error> {
    let cwd = Path::new(".");
    let lines = match command {
        LibCommand::Add { source, name } => commands::add(cwd, &source, name.as_deref()),
        LibCommand::List => commands::list(cwd),
        LibCommand::Update { name, force } => commands::update(cwd, name.as_deref(), force),
        LibCommand::Install { frozen, force } => commands::install(cwd, frozen || ci(), force),
        LibCommand::Remove { name, force } => commands::remove(cwd, &name, force),
    }
    .map_err(Error::Usage)?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// `runner new playbook NAME` / `runner new lib NAME`.
pub fn new(what: NewCommand) -> Result<(), Error> {
    let lines = match what {
        NewCommand::Playbook { name } => crate::skeleton::playbook(Path::new("."), &name),
        NewCommand::Lib { name } => crate::skeleton::library(Path::new("."), &name),
    }
    .map_err(Error::Usage)?;
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// `runner doc --definitions DIR`: runner's functions, the standard library and the libraries of
/// the project of this folder.
pub fn definitions(dir: &Path) -> Result<(), Error> {
    let libs = project_of(Path::new("."))?
        .map(|p| p.present())
        .unwrap_or_default();
    for file in crate::doc::write_definitions(dir, &libs)? {
        println!("{}", file.display());
    }
    Ok(())
}
