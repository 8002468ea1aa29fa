//! Past runs, from their journals: `runner runs` (the history), `runner journal` (one run,
//! readable), the warning that the last run of a script did not finish, and what `--resume` takes
//! over from the run it resumes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::Error;
use crate::journal;
use crate::ledger::{clock, Ledger, Left};

/// One past run, as its journal tells it.
pub struct Past {
    pub path: PathBuf,
    pub records: Vec<Value>,
}

impl Past {
    pub fn read(path: &Path) -> Result<Past, Error> {
        let records = journal::read(path)
            .map_err(|e| Error::Usage(format!("cannot read journal {}: {e}", path.display())))?;
        if records.first().is_none_or(|r| r["type"] != "run_start") {
            return Err(Error::Usage(format!(
                "{} is not a runner journal (it does not begin with a run_start record)",
                path.display()
            )));
        }
        Ok(Past {
            path: path.to_path_buf(),
            records,
        })
    }

    pub fn header(&self) -> &Value {
        &self.records[0]
    }

    pub fn end(&self) -> Option<&Value> {
        self.records.iter().rev().find(|r| r["type"] == "run_end")
    }

    /// ok, failed, interrupted; incomplete when the journal has no end and its process is gone;
    /// running when that process still runs.
    pub fn outcome(&self) -> String {
        match self.end() {
            Some(end) => end["outcome"].as_str().unwrap_or("unknown").to_string(),
            None if pid_alive(self.header()["pid"].as_i64().unwrap_or(0)) => "running".into(),
            None => "incomplete".into(),
        }
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::from_records(&self.records)
    }

    /// The checkpoints `once` completed, by key (checkpoints of a dry run never count).
    pub fn checkpoints(&self) -> HashMap<String, Value> {
        if self.header()["dry_run"] == true {
            return HashMap::new();
        }
        self.records
            .iter()
            .filter(|r| r["type"] == "once")
            .filter_map(|r| Some((r["key"].as_str()?.to_string(), r["value"].clone())))
            .collect()
    }

    /// `2026-12-01 07:18:23 scripts/x.rhai by root: incomplete`.
    fn summary(&self) -> String {
        let h = self.header();
        format!(
            "{} {} by {}: {}",
            h["time"]
                .as_str()
                .map(|t| t.replace('T', " "))
                .unwrap_or_default()
                .get(..19)
                .unwrap_or(""),
            h["script"].as_str().unwrap_or("?"),
            h["user"].as_str().unwrap_or("?"),
            self.outcome()
        )
    }
}

/// Whether a process runs (a zombie does not: it has exited).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X" | "x")),
        Err(_) => false,
    }
}

/// The journals of the runs folder, newest first (their names begin with their start time).
pub fn journals() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(journal::runs_dir())
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.reverse();
    files
}

/// The latest run of `script` (its canonical path) other than `except`, if it did not finish and
/// its process is gone.
pub fn last_incomplete(script: &str, except: &Path) -> Option<Past> {
    let path = journals()
        .into_iter()
        .filter(|p| p != except)
        .find(|p| journal::header(p).is_some_and(|h| h["script"].as_str() == Some(script)))?;
    let past = Past::read(&path).ok()?;
    (past.outcome() == "incomplete").then_some(past)
}

/// What a past run left, one line each: `target: what: state since HH:MM:SS`.
pub fn describe_left(left: &[Left]) -> Vec<String> {
    left.iter()
        .map(|l| format!("{}: {}", l.target, l.describe()))
        .collect()
}

/// `runner runs`: the last `n` runs, newest first, one line each.
pub fn history(n: usize, json_out: bool) -> Vec<String> {
    journals()
        .into_iter()
        .filter_map(|p| Past::read(&p).ok())
        .take(n)
        .map(|past| {
            if json_out {
                let h = past.header();
                json!({
                    "time": h["time"], "script": h["script"], "user": h["user"],
                    "outcome": past.outcome(), "journal": past.path,
                })
                .to_string()
            } else {
                format!("{}  {}", past.summary(), past.path.display())
            }
        })
        .collect()
}

/// `runner journal`: one run, readable (or its records, for `--output json`).
pub fn render(past: &Past, json_out: bool) -> Vec<String> {
    if json_out {
        return past.records.iter().map(Value::to_string).collect();
    }
    let h = past.header();
    let mut out = vec![format!("run of {}", past.summary())];
    out.push(format!(
        "  script sha256 {}, pid {} on {}, runner {}{}{}",
        h["sha256"].as_str().unwrap_or("?"),
        h["pid"],
        h["host"].as_str().unwrap_or("?"),
        h["version"].as_str().unwrap_or("?"),
        if h["dry_run"] == true {
            ", dry run"
        } else {
            ""
        },
        h["resumed_from"]
            .as_str()
            .map(|r| format!(", resuming {r}"))
            .unwrap_or_default()
    ));
    if let Some(params) = h["params"].as_object().filter(|p| !p.is_empty()) {
        let p: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(format!("  params {}", p.join(" ")));
    }
    let mut finished: HashMap<u64, &Value> = HashMap::new();
    for r in past.records.iter().filter(|r| r["type"] == "effect") {
        finished.insert(r["id"].as_u64().unwrap_or(0), r);
    }
    out.push("changes:".into());
    for r in &past.records {
        let time = clock(r["time"].as_str().unwrap_or(""));
        let line = match r["type"].as_str() {
            Some("effect_start") => {
                let id = r["id"].as_u64().unwrap_or(0);
                let outcome = match finished.get(&id) {
                    Some(done) => done["outcome"].as_str().unwrap_or("").to_string(),
                    None => "started, outcome unknown (the run ended during it)".into(),
                };
                format!(
                    "  {time}  {}: {}: {outcome}",
                    r["target"].as_str().unwrap_or("?"),
                    r["action"].as_str().unwrap_or("?")
                )
            }
            // Dry-run effects have no start record.
            Some("effect")
                if r["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("skipped")) =>
            {
                format!(
                    "  {time}  {}: {}: {}",
                    r["target"].as_str().unwrap_or("?"),
                    r["action"].as_str().unwrap_or("?"),
                    r["outcome"].as_str().unwrap_or("")
                )
            }
            Some("once") => format!(
                "  {time}  checkpoint {}{}",
                r["key"].as_str().unwrap_or("?"),
                if r["resumed"] == true {
                    " (done in the resumed run)"
                } else {
                    ""
                }
            ),
            _ => continue,
        };
        out.push(line);
    }
    match past.end() {
        Some(end) => out.push(format!(
            "ended {}: {} after {}s{}",
            clock(end["time"].as_str().unwrap_or("")),
            end["outcome"].as_str().unwrap_or("?"),
            end["duration"],
            end["error"]
                .as_str()
                .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        )),
        None => out.push(format!("no end: the run is {}", past.outcome())),
    }
    let left = describe_left(&past.ledger().left());
    if left.is_empty() {
        out.push("left: nothing out of its normal state".into());
    } else {
        out.push("left:".into());
        out.extend(left.into_iter().map(|l| format!("  {l}")));
    }
    out
}
