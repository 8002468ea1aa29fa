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
    /// `--lib` folders, then `RUNNER_PATH`, searched by `import`.
    pub libs: Vec<PathBuf>,
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
}
