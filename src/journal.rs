//! The run journal: JSON lines written ahead of what they describe, so that however a run ends
//! (finished, failed, Ctrl-C, SIGKILL) the file says what it changed and what it left where.
//!
//! Records, each a JSON object with a `type` and a `time`:
//! - `run_start`: the script (path, sha256), params, user, control host, pid, runner version, dry
//!   run, the journal it resumes;
//! - `effect_start`: an effect about to be carried out (id, target, action, details, marks);
//! - `effect`: its outcome, with the same fields (`outcome`: "ok", "failed: ...", "skipped (dry
//!   run)"); an `effect_start` without one is an effect whose outcome is unknown (the run died);
//! - `once`: a checkpoint completed (`key`, `value`);
//! - `step`: a step that ended (`msg`, `target`, `ok`, `elapsed`);
//! - `run_end`: outcome, duration, changes per target, and `left`: what the run left out of its
//!   normal state. A journal without `run_end` is an incomplete run.
//!
//! The file is created on the first record, so runs that change nothing leave nothing behind. It is
//! private (0600 in a 0700 directory): commands, paths and hosts of a run are nobody else's business.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::secrets::Secrets;

/// runner's state folder: `$XDG_STATE_HOME/runner` (`~/.local/state/runner`).
pub fn state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("runner")
}

/// The folder of the run journals: `$XDG_STATE_HOME/runner/runs` (`~/.local/state/runner/runs`).
pub fn runs_dir() -> PathBuf {
    state_dir().join("runs")
}

/// Now, as journals and JSON events write it.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

pub struct Journal {
    path: PathBuf,
    /// Masked as `***` in every record written.
    secrets: Arc<Secrets>,
    file: Mutex<Option<File>>,
    /// The `run_start` record, written before the first other record (and kept: see `header`).
    header: Mutex<Option<Value>>,
    next_id: AtomicU64,
}

impl Journal {
    /// `explicit` from `--journal`; otherwise `runs_dir()/<time>-<script>-<pid>.jsonl`.
    pub fn new(explicit: Option<PathBuf>, script_name: &str, secrets: Arc<Secrets>) -> Self {
        let path = explicit.unwrap_or_else(|| {
            let stamp = now().replace(':', "");
            let stem = std::path::Path::new(script_name)
                .file_stem()
                .map(|s| s.to_string_lossy().to_string());
            runs_dir().join(format!(
                "{stamp}-{}-{}.jsonl",
                stem.unwrap_or_else(|| "eval".into()),
                std::process::id()
            ))
        });
        Journal {
            path,
            secrets,
            file: Mutex::new(None),
            header: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    pub fn path(&self) -> &PathBuf {
        &self.path
    }

    /// Whether anything was written.
    pub fn written(&self) -> bool {
        self.file.lock().unwrap().is_some()
    }

    /// The `run_start` record, written with the first record of the run.
    pub fn set_header(&self, header: Value) {
        *self.header.lock().unwrap() = Some(header);
    }

    /// The `run_start` record's fields (script, user, host, pid...), once set.
    pub fn header(&self) -> Option<Value> {
        self.header.lock().unwrap().clone()
    }

    /// A new effect id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Append one record of `kind` with `fields` (and the time). A journal that cannot be written
    /// is an error: a run that changes things without a record is exactly what runner exists to
    /// prevent. Returns the record as written.
    pub fn record(&self, kind: &str, fields: Value) -> std::io::Result<Value> {
        let mut guard = self.file.lock().unwrap();
        if guard.is_none() {
            use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            if let Some(header) = self.header.lock().unwrap().clone() {
                let header = with_type("run_start", header).to_string();
                writeln!(f, "{}", self.secrets.mask(&header))?;
            }
            *guard = Some(f);
        }
        let line = with_type(kind, fields);
        let f = guard.as_mut().unwrap();
        writeln!(f, "{}", self.secrets.mask(&line.to_string()))?;
        f.flush()?;
        Ok(line)
    }
}

/// `{"type": kind, "time": now, ...fields}`.
fn with_type(kind: &str, fields: Value) -> Value {
    let mut line = json!({"type": kind, "time": now()});
    if let (Value::Object(l), Value::Object(f)) = (&mut line, fields) {
        for (k, v) in f {
            l.entry(k).or_insert(v);
        }
    }
    line
}

/// Every record of a journal file; lines that are not JSON (a line cut short by a crash) are
/// skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect())
}

/// The first line of a journal: its `run_start`, without reading the whole file.
pub fn header(path: &Path) -> Option<Value> {
    use std::io::BufRead;
    let f = File::open(path).ok()?;
    let mut line = String::new();
    std::io::BufReader::new(f).read_line(&mut line).ok()?;
    serde_json::from_str::<Value>(&line)
        .ok()
        .filter(|v| v["type"] == "run_start")
}
