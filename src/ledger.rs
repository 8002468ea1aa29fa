//! What a run changed, per target, and what it left out of its normal state, derived from the
//! effects themselves: each effect names the marks it sets (`Mark`), and the ledger reads them from
//! the journal records, live while the run goes, or from a journal file afterwards (`runner
//! journal`, `runner runs`, `--resume`). One derivation for all of them.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What an effect does to the normal state of what it acts on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// `key` (`what`, on the effect's target) is out of its normal state: `state`, e.g. a server in
    /// "maint". A later mark of the same key replaces it.
    Out {
        key: String,
        what: String,
        state: String,
    },
    /// `key` is back in its normal state.
    Back { key: String },
    /// A signal sent to a process of the effect's target: the ledger follows nginx's binary
    /// upgrade protocol from these (USR2, WINCH, HUP, QUIT: see `Ledger::signal`).
    Signal { pid: i64, signal: String },
}

/// Something a run left out of its normal state.
#[derive(Debug, Clone, Serialize)]
pub struct Left {
    pub target: String,
    pub what: String,
    pub state: String,
    /// When the effect that left it so started (RFC 3339).
    pub since: String,
}

impl Left {
    /// `web_servers/web2: maint since 07:18:23`.
    pub fn describe(&self) -> String {
        format!("{}: {} since {}", self.what, self.state, clock(&self.since))
    }
}

/// `HH:MM:SS` of an RFC 3339 time.
pub fn clock(time: &str) -> &str {
    time.get(11..19).unwrap_or(time)
}

/// What happened to one target.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub changed: u64,
    pub failed: u64,
    /// Skipped by `--dry-run`.
    pub skipped: u64,
    /// Started and never finished: the run died during them.
    pub unknown: u64,
}

impl Counts {
    fn touched(&self) -> bool {
        self.changed + self.failed + self.skipped + self.unknown > 0
    }

    /// `3 changed, 1 failed` (or `untouched`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.changed, "changed"),
            (self.failed, "failed"),
            (self.skipped, "skipped (dry run)"),
            (self.unknown, "outcome unknown (the run died during it)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            "untouched".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Default)]
pub struct Ledger {
    /// Targets in the order the run first met them.
    targets: Vec<(String, Counts)>,
    /// key -> what is left there.
    left: BTreeMap<String, Left>,
    /// Effects started and not finished yet: id -> (target, time, marks).
    pending: HashMap<u64, (String, String, Vec<Mark>)>,
    /// Keys of nginx masters being rolled back (HUP after USR2), per target: the next QUIT to
    /// another master there completes the rollback.
    rolling_back: BTreeMap<String, Vec<String>>,
}

impl Ledger {
    /// A ledger read from a journal's records; effects started and never finished are counted as
    /// of unknown outcome, their marks applied as if they had been carried out.
    pub fn from_records(records: &[Value]) -> Ledger {
        let mut l = Ledger::default();
        for r in records {
            l.apply(r);
        }
        l.settle_unknown();
        l
    }

    /// A target only read from (counted as untouched unless it is also changed).
    pub fn saw(&mut self, target: &str) {
        self.counts(target);
    }

    fn counts(&mut self, target: &str) -> &mut Counts {
        let i = match self.targets.iter().position(|(t, _)| t == target) {
            Some(i) => i,
            None => {
                self.targets.push((target.to_string(), Counts::default()));
                self.targets.len() - 1
            }
        };
        &mut self.targets[i].1
    }

    /// Take one journal record into account.
    pub fn apply(&mut self, r: &Value) {
        let target = r["target"].as_str().unwrap_or_default().to_string();
        let id = r["id"].as_u64().unwrap_or(0);
        match r["type"].as_str() {
            Some("effect_start") => {
                let marks = serde_json::from_value(r["marks"].clone()).unwrap_or_default();
                let time = r["time"].as_str().unwrap_or_default().to_string();
                self.counts(&target);
                self.pending.insert(id, (target, time, marks));
            }
            Some("effect") => {
                let outcome = r["outcome"].as_str().unwrap_or_default();
                let started = self.pending.remove(&id);
                let counts = self.counts(&target);
                if outcome == "ok" {
                    counts.changed += 1;
                } else if outcome.starts_with("skipped") {
                    counts.skipped += 1;
                } else {
                    counts.failed += 1;
                }
                // A change whose answer was lost may have been applied: count what it marks.
                let applied = outcome == "ok" || r["kind"] == "unknown_outcome";
                if let (true, Some((target, time, marks))) = (applied, started) {
                    let unknown = outcome != "ok";
                    self.mark(&target, &time, &marks, unknown);
                }
            }
            _ => {}
        }
    }

    /// Effects of a journal whose run died while they ran: outcome unknown, marks applied.
    fn settle_unknown(&mut self) {
        let mut pending: Vec<_> = self.pending.drain().collect();
        pending.sort_by_key(|(id, _)| *id);
        for (_, (target, time, marks)) in pending {
            self.counts(&target).unknown += 1;
            self.mark(&target, &time, &marks, true);
        }
    }

    fn mark(&mut self, target: &str, time: &str, marks: &[Mark], unknown: bool) {
        let suffix = if unknown { " (outcome unknown)" } else { "" };
        for m in marks {
            match m {
                Mark::Out { key, what, state } => {
                    self.put(key, target, what, &format!("{state}{suffix}"), time)
                }
                Mark::Back { key } => {
                    self.left.remove(key);
                }
                Mark::Signal { pid, signal } => self.signal(target, time, *pid, signal, suffix),
            }
        }
    }

    /// `key` (`what` on `target`) is out of its normal state, `state`, since `time`.
    fn put(&mut self, key: &str, target: &str, what: &str, state: &str, time: &str) {
        let left = Left {
            target: target.to_string(),
            what: what.to_string(),
            state: state.to_string(),
            since: time.to_string(),
        };
        self.left.insert(key.to_string(), left);
    }

    /// nginx's binary upgrade, as its signals tell it: USR2 to a master leaves it the old master
    /// (`.oldbin`) beside a new one; WINCH stops its workers; HUP after USR2 starts the rollback,
    /// which the QUIT of the new master completes; QUIT, TERM, INT or KILL to the old master ends
    /// it (the upgrade committed, or the master gone).
    fn signal(&mut self, target: &str, time: &str, pid: i64, signal: &str, suffix: &str) {
        let key = format!("{target} pid {pid}");
        let what = format!("master {pid}");
        let out = |l: &mut Ledger, state: &str| {
            l.put(&key, target, &what, &format!("{state}{suffix}"), time)
        };
        let marked = self.left.contains_key(&key);
        match signal {
            "USR2" => out(
                self,
                "sent USR2: the old master (.oldbin) beside a new one (binary upgrade in progress)",
            ),
            "WINCH" if marked => out(
                self,
                "sent WINCH after USR2: its workers stopped, only the new master serves",
            ),
            "HUP" if marked => {
                out(
                    self,
                    "sent HUP after USR2: serving again (rollback), the new master still to QUIT",
                );
                self.rolling_back
                    .entry(target.to_string())
                    .or_default()
                    .push(key.clone());
            }
            "QUIT" | "TERM" | "INT" | "KILL" => {
                self.left.remove(&key);
                if let Some(keys) = self.rolling_back.remove(target) {
                    for k in keys.iter().filter(|k| **k != key) {
                        self.left.remove(k);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `key` is out of its normal state now.
    pub fn is_out(&self, key: &str) -> bool {
        self.left.contains_key(key)
    }

    /// What is out of its normal state now, oldest first.
    pub fn left(&self) -> Vec<Left> {
        let mut v: Vec<Left> = self.left.values().cloned().collect();
        v.sort_by(|a, b| a.since.cmp(&b.since));
        v
    }

    /// Every target met, with what happened to it, in the order the run met them.
    pub fn targets(&self) -> &[(String, Counts)] {
        &self.targets
    }

    /// Changes, failures, skipped and unknown over every target.
    pub fn totals(&self) -> Counts {
        let mut t = Counts::default();
        for (_, c) in &self.targets {
            t.changed += c.changed;
            t.failed += c.failed;
            t.skipped += c.skipped;
            t.unknown += c.unknown;
        }
        t
    }

    /// The figures of `run_end`: totals, per target, and what was left where.
    pub fn to_json(&self) -> Value {
        let totals = self.totals();
        let targets: serde_json::Map<String, Value> = self
            .targets
            .iter()
            .map(|(t, c)| (t.clone(), json!(c)))
            .collect();
        json!({
            "changed": totals.changed,
            "failed": totals.failed,
            "skipped": totals.skipped,
            "unknown": totals.unknown,
            "targets": targets,
            "left": self.left(),
        })
    }

    /// The recap, as lines for people: one per target, then what was left where.
    pub fn recap(&self) -> Vec<String> {
        let totals = self.totals();
        let touched = self.targets.iter().filter(|(_, c)| c.touched()).count();
        let mut head = format!("recap: {} change(s) on {touched} target(s)", totals.changed);
        for (n, what) in [
            (totals.failed, "failed"),
            (totals.skipped, "skipped (dry run)"),
            (totals.unknown, "of unknown outcome"),
        ] {
            if n > 0 {
                head.push_str(&format!(", {n} {what}"));
            }
        }
        let mut lines = vec![head];
        let width = self.targets.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        for (t, c) in &self.targets {
            lines.push(format!("  {t:<width$}  {}", c.describe()));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(id: u64, target: &str, marks: Value) -> Value {
        json!({"type": "effect_start", "id": id, "target": target, "time": "2026-12-01T07:18:23.000Z", "marks": marks})
    }

    fn end(id: u64, target: &str, outcome: &str) -> Value {
        json!({"type": "effect", "id": id, "target": target, "outcome": outcome})
    }

    #[test]
    fn a_server_put_in_maint_and_never_back_is_left_there() {
        let out = json!([{"out": {"key": "s be/web2", "what": "be/web2", "state": "maint"}}]);
        let back = json!([{"back": {"key": "s be/web1"}}]);
        let l = Ledger::from_records(&[
            start(
                1,
                "s",
                json!([{"out": {"key": "s be/web1", "what": "be/web1", "state": "drain"}}]),
            ),
            end(1, "s", "ok"),
            start(2, "s", back),
            end(2, "s", "ok"),
            start(3, "s", out),
            end(3, "s", "ok"),
        ]);
        let left = l.left();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].describe(), "be/web2: maint since 07:18:23");
        assert_eq!(l.totals().changed, 3);
    }

    #[test]
    fn an_effect_that_never_finished_counts_as_unknown_and_marks_what_it_would_leave() {
        let l = Ledger::from_records(&[start(
            1,
            "s",
            json!([{"out": {"key": "k", "what": "be/web1", "state": "maint"}}]),
        )]);
        assert_eq!(l.totals().unknown, 1);
        assert_eq!(l.left()[0].state, "maint (outcome unknown)");
    }

    #[test]
    fn nginx_upgrade_left_half_way_and_rolled_back() {
        let sig = |s: &str, pid: i64| json!([{"signal": {"pid": pid, "signal": s}}]);
        let upgrade = Ledger::from_records(&[
            start(1, "h", sig("USR2", 10)),
            end(1, "h", "ok"),
            start(2, "h", sig("WINCH", 10)),
            end(2, "h", "ok"),
        ]);
        assert!(upgrade.left()[0].state.contains("WINCH"));
        let rolled_back = Ledger::from_records(&[
            start(1, "h", sig("USR2", 10)),
            end(1, "h", "ok"),
            start(2, "h", sig("HUP", 10)),
            end(2, "h", "ok"),
            start(3, "h", sig("QUIT", 11)),
            end(3, "h", "ok"),
        ]);
        assert!(rolled_back.left().is_empty());
        let committed = Ledger::from_records(&[
            start(1, "h", sig("USR2", 10)),
            end(1, "h", "ok"),
            start(2, "h", sig("QUIT", 10)),
            end(2, "h", "ok"),
        ]);
        assert!(committed.left().is_empty());
    }
}
