//! The run journal: one JSON line per effect that passed the gate, written as it happens, so that after a
//! failure or a Ctrl-C it says what was changed and what was left where.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

pub struct Journal {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Journal {
    /// `explicit` from `--journal`; otherwise `$XDG_STATE_HOME/runner/runs/<time>-<script>.jsonl`.
    /// The file is created on the first effect, so read-only runs leave nothing behind.
    pub fn new(explicit: Option<PathBuf>, script_name: &str) -> Self {
        let path = explicit.unwrap_or_else(|| {
            let base = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .unwrap_or_else(std::env::temp_dir);
            let stamp = humantime::format_rfc3339_millis(SystemTime::now())
                .to_string()
                .replace(':', "");
            let stem = std::path::Path::new(script_name)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string());
            base.join("runner/runs").join(format!(
                "{stamp}-{}-{}.jsonl",
                stem.unwrap_or_else(|| "eval".into()),
                std::process::id()
            ))
        });
        Journal {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Whether anything was written.
    pub fn written(&self) -> bool {
        self.file.lock().unwrap().is_some()
    }

    /// Append one entry. A journal that cannot be written is an error: a run that changes things
    /// without a record is exactly what runner exists to prevent.
    pub fn record(
        &self,
        target: &str,
        action: &str,
        details: &Value,
        outcome: &str,
    ) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap();
        if guard.is_none() {
            // Private: commands, paths and hosts of a run are nobody else's business.
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        let line = json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "target": target,
            "action": action,
            "details": details,
            "outcome": outcome,
        });
        let f = guard.as_mut().unwrap();
        writeln!(f, "{line}")?;
        f.flush()
    }
}
