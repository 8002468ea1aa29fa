//! The command line: clap types and dispatch; `flags.rs` turns a run's flags into a validated
//! `Config`, `commands.rs` runs the commands that are not a run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::error::Error;
use crate::inventory::Inventory;
use crate::inventory::Shard;
use crate::report::Output;
use crate::Runner;

mod commands;
mod flags;

use commands::{check, definitions, lib, new, LibCommand, NewCommand};
use flags::{folder_of, load_inventory, parse_shard, project_config, RunArgs};

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
