//! The command line: clap types, turned into a validated [`Config`], dispatched to the library.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rhai::{Dynamic, Map};

use std::sync::Arc;

use crate::config::Config;
use crate::error::Error;
use crate::inventory::Inventory;
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
    /// Compile scripts, resolve their imports and report unknown functions; runs nothing.
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
        /// The inventory: TOML, or an Ansible YAML inventory.
        #[arg(short = 'i', long = "inventory", value_name = "FILE")]
        inventory: PathBuf,
        /// Narrow the hosts: names, groups, globs (`web*`), comma lists, `!exclusions`.
        #[arg(long, value_name = "PATTERN")]
        limit: Option<String>,
        /// Only this group (default: all).
        #[arg(default_value = "all")]
        group: String,
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
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// A parameter for `param("k")` (repeatable).
    #[arg(short = 'p', long = "param", value_name = "K=V")]
    params: Vec<String>,
    /// A TOML file of parameters (`--param` wins over it).
    #[arg(long = "params", value_name = "FILE.toml")]
    params_file: Option<PathBuf>,
    /// A folder searched by `import` (repeatable; after the script's own folder, before RUNNER_PATH).
    #[arg(long, value_name = "DIR")]
    lib: Vec<PathBuf>,
    /// The inventory for hosts(group): TOML, or an Ansible YAML inventory.
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    inventory: Option<PathBuf>,
    /// Narrow hosts(group): names, groups, globs (`web*`), comma lists, `!exclusions`.
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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// More detail: every effect, debug() output.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Less output: errors, warnings and print() only.
    #[arg(short, long, action = clap::ArgAction::Count)]
    quiet: u8,
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
        for p in &self.params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--param {p}: expected NAME=VALUE")))?;
            if k.is_empty() {
                return Err(Error::Usage(format!("--param {p}: the name is empty")));
            }
            params.insert(k.into(), v.into());
        }
        Ok(Config {
            dry_run: self.dry_run,
            yes: self.yes,
            params,
            libs: lib_path(self.lib),
            journal: self.journal,
            output: self.output,
            verbosity: self.verbose as i8 - self.quiet as i8,
            inventory: self
                .inventory
                .as_deref()
                .map(Inventory::load)
                .transpose()?
                .map(Arc::new),
            limit: self.limit,
            resume: self.resume,
            force: self.force,
            lock: self.lock,
        })
    }
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
        Command::Play { script, run } => Runner::new(run.into_config()?)?.play(&script),
        Command::Eval { code, run } => Runner::new(run.into_config()?)?.eval(&code),
        Command::Check { scripts, lib } => Runner::new(Config {
            libs: lib_path(lib),
            ..Config::default()
        })?
        .check_all(&scripts),
        Command::Hosts {
            inventory,
            limit,
            group,
        } => Runner::new(Config {
            inventory: Some(Arc::new(Inventory::load(&inventory)?)),
            limit,
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
        Command::Doc { module, markdown } => {
            print!(
                "{}",
                crate::doc::render(module.as_deref(), markdown)
                    .map_err(|e| Error::Usage(e.to_string()))?
            );
            Ok(())
        }
    }
}
