//! What the command line (or an embedding program) decided for a run, validated: the CLI turns its
//! flags into a `Config`, and nothing after that reads flags.

use std::path::PathBuf;
use std::sync::Arc;

use rhai::Map;

/// What the command line decided for this run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `--dry-run`: skip every effect, print what would be done.
    pub dry_run: bool,
    /// `--yes`: answer yes to every `confirm`.
    pub yes: bool,
    /// `--param` and `--params`: values for `param(name)`.
    pub params: Map,
    /// What `import` searches besides the script's folder: `--lib` folders, runner.toml's
    /// `[defaults] lib`, `RUNNER_PATH`, and the project's libraries (`import "NAME/module"`).
    pub libs: crate::libs::Libs,
    /// The names given with `--param`: each must be one the script reads with `param()`.
    pub param_flags: Vec<String>,
    /// `--journal FILE`; None: a new file under `$XDG_STATE_HOME/runner/runs/`.
    pub journal: Option<PathBuf>,
    pub output: crate::report::Output,
    pub verbosity: i8,
    /// `-i FILE`: the hosts `hosts(group)` returns.
    pub inventory: Option<Arc<crate::inventory::Inventory>>,
    /// `--limit PATTERN`: narrows `hosts(group)`.
    pub limit: Option<String>,
    /// `--resume JOURNAL`: checkpoints (`once`) completed in that run are not run again.
    pub resume: Option<PathBuf>,
    /// `--force`: resume a journal of another script (or of this one before it changed).
    pub force: bool,
    /// `--lock NAME`: the whole run holds this lock (on this machine), taken before the script runs.
    pub lock: Option<String>,
    /// `--watch URL,...`: traffic guards for the whole play.
    pub watch: Vec<String>,
    /// `--shard I/N`: this run's share of every `hosts(...)` list.
    pub shard: Option<crate::inventory::Shard>,
    /// `--max-errors N|P%`: the error budget of the `--watch` guards.
    pub max_errors: Option<Budget>,
}

impl Config {
    /// What is masked from the start of a run or a command: the inventory's secret variables
    /// (`Inventory::secret_values`).
    pub fn secrets(&self) -> crate::secrets::Secrets {
        crate::secrets::Secrets::of(self.inventory.iter().flat_map(|i| i.secret_values()))
    }
}

/// How many failed requests a guard tolerates before it stops the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// No limit: the guard only measures.
    None,
    /// More than this many failures stops the run.
    Count(u64),
    /// More than this fraction of the requests (at least one failure) stops the run.
    Rate(f64),
}

impl Budget {
    /// `3`, or `"1%"`, as `--max-errors` and `max_errors` take it.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(|p| Budget::Rate(p / 100.0))
                .ok_or_else(|| format!("the error budget {s:?} is not a percentage from 0% to 100%")),
            None => s
                .parse::<u64>()
                .map(Budget::Count)
                .map_err(|_| format!("the error budget {s:?} is not a number of failed requests or a percentage such as \"1%\"")),
        }
    }

    pub fn exceeded(self, failed: u64, requests: u64) -> bool {
        match self {
            Budget::None => false,
            Budget::Count(n) => failed > n,
            Budget::Rate(r) => failed > ((r * requests as f64).floor() as u64).max(1),
        }
    }

    pub fn describe(self) -> String {
        match self {
            Budget::None => "none".into(),
            Budget::Count(n) => format!("{n} failed request(s)"),
            Budget::Rate(r) => format!("{}% of the requests", r * 100.0),
        }
    }
}
