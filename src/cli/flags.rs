//! The flags of a run (`play`, `eval`) and how they become a validated `Config`: parameters,
//! inventory and `--limit`, library folders, and a project's runner.toml defaults under them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rhai::{Dynamic, Map};

use crate::config::Config;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::inventory::Shard;
use crate::libs::{Libs, Project};
use crate::report::Output;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A parameter for `param("k")` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "K=V")]
    params: Vec<String>,
    /// A TOML file of parameters (`--param` wins over it).
    #[arg(long = "params", value_name = "FILE.toml")]
    params_file: Option<PathBuf>,
    /// A folder searched by `import` (repeatable; after the script's own folder, before runner.toml's
    /// and RUNNER_PATH).
    #[arg(long, value_name = "DIR")]
    lib: Vec<PathBuf>,
    /// The inventory for hosts(group): runner's TOML, or an Ansible inventory (YAML or INI)
    /// (default: runner.toml's [defaults] inventory).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Narrow hosts(group): names, groups, globs (`web*`), comma lists, `!exclusions`, `&intersections`.
    #[arg(long, value_name = "PATTERN")]
    limit: Option<String>,
    /// Change nothing: print what each state-changing operation would do. Read-only ones still run.
    #[arg(long)]
    dry_run: bool,
    /// Answer yes to every confirm().
    #[arg(long, short = 'y')]
    yes: bool,
    /// Write the journal of effects to this file (default: $XDG_STATE_HOME/runner/runs/).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Continue the run of this journal: checkpoints (`once`) it completed are not run again.
    #[arg(long, value_name = "JOURNAL")]
    resume: Option<PathBuf>,
    /// With --resume: resume a journal of another script (or of this one before it changed).
    #[arg(long, requires = "resume")]
    force: bool,
    /// Run the whole play holding this lock (on this machine); another run holding it makes this
    /// one fail at once, naming it.
    #[arg(long, value_name = "NAME")]
    lock: Option<String>,
    /// Watch these URLs while the play runs (the traffic guard): requests, failures, latency.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    watch: Vec<String>,
    /// The guard's error budget: failed requests (N) or a rate (1%); over it, the play stops.
    #[arg(long, value_name = "N|P%", requires = "watch")]
    max_errors: Option<String>,
    /// Keep the I-th of N stable shares of every hosts(...) list (by a hash of the host name), so
    /// that N jobs split a fleet.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// More detail: every effect, debug() output.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less output: errors, warnings and print() only.
    #[arg(short, long, action = clap::ArgAction::Count)]
    quiet: u8,
    /// Refuse a runner.lock that `runner lib update` would change (implied by CI=true).
    #[arg(long)]
    frozen: bool,
}

impl RunArgs {
    fn into_config(self) -> Result<Config, Error> {
        let mut params = Map::new();
        if let Some(file) = &self.params_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
            let table: toml::Table = text
                .parse()
                .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
            for (k, v) in table {
                params.insert(k.into(), toml_to_dynamic(v));
            }
        }
        let mut param_flags = Vec::new();
        for p in &self.params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--param {p}: expected NAME=VALUE")))?;
            if k.is_empty() {
                return Err(Error::Usage(format!("--param {p}: the name is empty")));
            }
            params.insert(k.into(), v.into());
            param_flags.push(k.to_string());
        }
        let inventory = load_inventory(self.inventory.as_deref(), self.limit.as_deref())?;
        Ok(Config {
            dry_run: self.dry_run,
            yes: self.yes,
            params,
            param_flags,
            libs: Libs::folders(lib_path(self.lib)),
            journal: self.journal,
            output: self.output,
            verbosity: self.verbose as i8 - self.quiet as i8,
            inventory,
            limit: self.limit,
            resume: self.resume,
            force: self.force,
            lock: self.lock,
            shard: self.shard,
            watch: self.watch,
            max_errors: self
                .max_errors
                .map(|m| {
                    crate::prims::watch::Budget::parse(&m)
                        .map_err(|e| Error::Usage(format!("--max-errors: {e}")))
                })
                .transpose()?,
        })
    }
}

pub fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

/// The inventory of `-i FILE`, with the `--limit` pattern checked against it: a pattern that matches
/// no host is an error before anything runs.
pub fn load_inventory(
    file: Option<&std::path::Path>,
    limit: Option<&str>,
) -> Result<Option<Arc<Inventory>>, Error> {
    let Some(file) = file else {
        return match limit {
            Some(l) => Err(Error::Usage(format!(
                "--limit {l}: there is no inventory to limit; pass one with -i FILE"
            ))),
            None => Ok(None),
        };
    };
    let inv = Inventory::load(file)?;
    inv.limited(limit).map_err(Error::Usage)?;
    Ok(Some(Arc::new(inv)))
}

/// `--lib` folders, then the folders of `RUNNER_PATH` (colon-separated).
pub fn lib_path(mut libs: Vec<PathBuf>) -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os("RUNNER_PATH") {
        libs.extend(std::env::split_paths(&path).filter(|p| !p.as_os_str().is_empty()));
    }
    libs
}

/// A TOML value as a script value; a date or time becomes its text.
fn toml_to_dynamic(mut v: toml::Value) -> Dynamic {
    fn dates_as_text(v: &mut toml::Value) {
        match v {
            toml::Value::Datetime(d) => *v = toml::Value::String(d.to_string()),
            toml::Value::Array(a) => a.iter_mut().for_each(dates_as_text),
            toml::Value::Table(t) => t.iter_mut().for_each(|(_, v)| dates_as_text(v)),
            _ => {}
        }
    }
    dates_as_text(&mut v);
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// The folder of a script, for finding its runner.toml.
pub fn folder_of(script: &Path) -> PathBuf {
    match script.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `CI=true`: a CI run, where a lock that does not match runner.toml is an error (as `--frozen`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The project of `start` (runner.toml in it or above), if any.
pub fn project_of(start: &Path) -> Result<Option<Project>, Error> {
    Project::find(start).map_err(Error::Usage)
}

/// The config of `runner play` / `runner eval` run from `start`: runner.toml's defaults under the
/// flags (`-i`, `--lib` and `--param` win), and its libraries, checked against runner.lock.
pub fn project_config(mut run: RunArgs, start: &Path) -> Result<Config, Error> {
    let frozen = run.frozen || ci();
    let Some(project) = project_of(start)? else {
        return run.into_config();
    };
    let defaults = &project.manifest.defaults;
    if run.inventory.is_none() {
        run.inventory = defaults.inventory.as_ref().map(|p| project.dir.join(p));
    }
    run.lib
        .extend(defaults.lib.iter().map(|p| project.dir.join(p)));
    let mut config = run.into_config()?;
    for (k, v) in &defaults.params {
        config
            .params
            .entry(k.as_str().into())
            .or_insert_with(|| toml_to_dynamic(v.clone()));
    }
    let (installed, warnings) = project.libraries(frozen).map_err(Error::Usage)?;
    config.libs.installed = installed;
    let report = crate::report::Reporter::new(config.output, config.verbosity);
    for w in warnings {
        report.warn(&w);
    }
    Ok(config)
}
