//! The command line: clap types, turned into a validated [`Config`], dispatched to the library.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use rhai::{Dynamic, Map};

use std::sync::Arc;

use crate::config::{Config, Shard};
use crate::error::Error;
use crate::inventory::Inventory;
use crate::libs::{commands, Libs, Project};
use crate::report::Output;
use crate::Runner;

/// Run Rhai playbooks for operations work: HAProxy, SSH, docker, signals, HTTP checks.
#[derive(Parser, Debug)]
#[command(name = "runner", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the script failed; 2 usage, compile or import error; 130 interrupted.";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a playbook.
    Play {
        /// The script to run.
        script: PathBuf,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check scripts for what would fail at run time; runs nothing.
    ///
    /// Compiles them, resolves their imports, and reports unknown functions and methods, wrong
    /// arity, literal arguments of the wrong type, unknown option keys, and Rhai's surprises.
    Check {
        #[arg(required = true)]
        scripts: Vec<PathBuf>,
        /// A folder searched by `import` (repeatable; after the script's own folder).
        #[arg(long, value_name = "DIR")]
        lib: Vec<PathBuf>,
    },
    /// Run a one-liner and print its value, e.g. runner eval 'local().run("uname").stdout'
    Eval {
        code: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Print the hosts an inventory and a --limit pattern select.
    Hosts {
        /// The inventory: runner's TOML, or an Ansible inventory (YAML or INI).
        #[arg(short = 'i', long = "inventory", value_name = "FILE")]
        inventory: PathBuf,
        /// Narrow the hosts: names, groups, globs (`web*`), comma lists, `!exclusions`, `&intersections`.
        #[arg(long, value_name = "PATTERN")]
        limit: Option<String>,
        /// Only this group (default: all).
        #[arg(default_value = "all")]
        group: String,
        /// Output format (json: one object per host, with its connection, groups and vars).
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
        /// Only the I-th of N stable shares of the hosts (as `play --shard`).
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<Shard>,
    },
    /// Show one run: its header, every change with its outcome, what it left where
    ///
    /// From the run's journal; by default the latest run.
    Journal {
        /// The journal (default: the latest of $XDG_STATE_HOME/runner/runs/).
        file: Option<PathBuf>,
        /// Output format (json: the journal's records).
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// List past runs, newest first, with their outcome and journal
    ///
    /// Each run: its start, script, user, outcome (ok, failed, interrupted, incomplete, running)
    /// and journal.
    Runs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// Output format (json: one object per run).
        #[arg(long, value_enum, default_value_t = Output::Human)]
        output: Output,
    },
    /// Break a lock, printing who held it since when
    ///
    /// A lock a run took with `lock(NAME, ...)` or `--lock NAME`: on this machine, or with --host
    /// on that host. For a lock that is stale (its run was killed) or that you know is not needed.
    Unlock {
        /// The lock's name, as the run gave it.
        name: String,
        /// The host the lock is on: [user@]host[:port], a host of the inventory (-i), or `local`
        /// (this machine's /tmp/runner-locks, for locks taken with `host: local()`).
        #[arg(long, value_name = "SPEC")]
        host: Option<String>,
        /// An inventory that names the host (with its address, user, key...).
        #[arg(
            short = 'i',
            long = "inventory",
            value_name = "FILE",
            requires = "host"
        )]
        inventory: Option<PathBuf>,
    },
    /// Print every function with its signature and doc comment.
    Doc {
        /// Only this module (flow, host, http, or a standard library module).
        module: Option<String>,
        /// Write a Markdown reference page.
        #[arg(long)]
        markdown: bool,
        /// Write .d.rhai definition files for editors (runner's functions, the standard library,
        /// the project's libraries) into DIR.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["module", "markdown"])]
        definitions: Option<PathBuf>,
    },
    /// Libraries shared through git: runner.toml declares them, runner.lock pins them
    ///
    /// `runner lib` is the only command that fetches: into a user-wide cache
    /// ($XDG_CACHE_HOME/runner/git/), checked out into the project's .runner/lib/NAME.
    /// `import "NAME/module"` loads module.rhai of the library NAME.
    Lib {
        #[command(subcommand)]
        command: LibCommand,
    },
    /// Start a playbook or a library from a skeleton that runs and passes `runner check`.
    New {
        #[command(subcommand)]
        what: NewCommand,
    },
}

#[derive(Subcommand, Debug)]
enum LibCommand {
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
enum NewCommand {
    /// A playbook folder: NAME/NAME.rhai with params, runner.toml, an inventory example, a README.
    Playbook { name: String },
    /// A library folder: a module, runner-lib.toml, a test playbook, a README.
    Lib { name: String },
}

#[derive(Args, Debug)]
struct RunArgs {
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

fn parse_shard(s: &str) -> Result<Shard, String> {
    Shard::parse(s)
}

/// The inventory of `-i FILE`, with the `--limit` pattern checked against it: a pattern that matches
/// no host is an error before anything runs.
fn load_inventory(
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
fn lib_path(mut libs: Vec<PathBuf>) -> Vec<PathBuf> {
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

/// Parse the command line, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            // Script and compile errors were already reported (JSON or text) by the run.
            if let Error::Usage(msg) = &e {
                eprintln!("error: {msg}");
            }
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Play { script, run } => {
            let config = project_config(run, &folder_of(&script))?;
            Runner::new(config)?.play(&script)
        }
        Command::Eval { code, run } => {
            Runner::new(project_config(run, Path::new("."))?)?.eval(&code)
        }
        Command::Check { scripts, lib } => check(&scripts, lib),
        Command::Hosts {
            inventory,
            limit,
            group,
            output,
            shard,
        } => Runner::new(Config {
            inventory: load_inventory(Some(&inventory), limit.as_deref())?,
            limit,
            output,
            shard,
            ..Config::default()
        })?
        .hosts(&group),
        Command::Journal { file, output } => {
            let path = match file {
                Some(f) => f,
                None => crate::runs::journals().into_iter().next().ok_or_else(|| {
                    Error::Usage(format!(
                        "no run journals in {}",
                        crate::journal::runs_dir().display()
                    ))
                })?,
            };
            let past = crate::runs::Past::read(&path)?;
            for line in crate::runs::render(&past, output == Output::Json) {
                println!("{line}");
            }
            Ok(())
        }
        Command::Runs { last, output } => {
            for line in crate::runs::history(last, output == Output::Json) {
                println!("{line}");
            }
            Ok(())
        }
        Command::Unlock {
            name,
            host,
            inventory,
        } => {
            let inventory = inventory
                .as_deref()
                .map(Inventory::load)
                .transpose()?
                .map(Arc::new);
            Runner::new(Config {
                inventory,
                ..Config::default()
            })?
            .unlock(&name, host.as_deref())
        }
        Command::Doc {
            definitions: Some(dir),
            ..
        } => definitions(&dir),
        Command::Lib { command } => lib(command),
        Command::New { what } => new(what),
        Command::Doc {
            module, markdown, ..
        } => {
            print!(
                "{}",
                crate::doc::render(module.as_deref(), markdown)
                    .map_err(|e| Error::Usage(e.to_string()))?
            );
            Ok(())
        }
    }
}

/// The folder of a script, for finding its runner.toml.
fn folder_of(script: &Path) -> PathBuf {
    match script.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `CI=true`: a CI run, where a lock that does not match runner.toml is an error (as `--frozen`).
fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The project of `start` (runner.toml in it or above), if any.
fn project_of(start: &Path) -> Result<Option<Project>, Error> {
    Project::find(start).map_err(Error::Usage)
}

/// The config of `runner play` / `runner eval` run from `start`: runner.toml's defaults under the
/// flags (`-i`, `--lib` and `--param` win), and its libraries, checked against runner.lock.
fn project_config(mut run: RunArgs, start: &Path) -> Result<Config, Error> {
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

/// `runner check`: the scripts of each project checked with its libraries and `[defaults] lib`.
fn check(scripts: &[PathBuf], lib: Vec<PathBuf>) -> Result<(), Error> {
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
fn lib(command: LibCommand) -> Result<(), Error> {
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
fn new(what: NewCommand) -> Result<(), Error> {
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
fn definitions(dir: &Path) -> Result<(), Error> {
    let libs = project_of(Path::new("."))?
        .map(|p| p.present())
        .unwrap_or_default();
    for file in crate::doc::write_definitions(dir, &libs)? {
        println!("{}", file.display());
    }
    Ok(())
}
