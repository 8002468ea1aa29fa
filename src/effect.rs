//! The effect gate: every operation of every primitive passes `Run::gate`, which is the one place
//! that honours `--dry-run`, writes the journal, checks for Ctrl-C and reports the change.
//!
//! The gate hands the operation a [`Permit`], and every function that can change something (run a
//! command, write a file, talk to HAProxy or docker, signal a process) takes one. Only the gate makes
//! permits, so an operation that skips it does not compile. What the gate does with an operation is
//! decided by its [`Access`]: a read runs (also under `--dry-run`) and is not journaled; a change is
//! skipped under `--dry-run`, and journaled otherwise.

use serde_json::{json, Value};

use crate::error::{Failure, Kind};
use crate::ledger::Mark;
use crate::run::Run;

/// Proof that an operation passed the gate. It cannot be made outside this module.
pub struct Permit {
    _private: (),
}

/// How an operation passes the gate.
pub enum Access<'a> {
    /// It only reads: it runs under `--dry-run` too, and is not journaled.
    Read,
    /// It changes something: `action` on the target, with `details` for the journal, and the
    /// `marks` it leaves on the state of what it acts on (see `ledger`).
    Change {
        action: &'a str,
        details: Value,
        marks: Vec<Mark>,
    },
}

impl<'a> Access<'a> {
    /// A change that leaves no mark.
    pub fn change(action: &'a str, details: Value) -> Self {
        Access::Change {
            action,
            details,
            marks: Vec::new(),
        }
    }
}

impl Run {
    /// Carry out `op` on `target` as `access` says.
    ///
    /// Returns `Ok(None)` for a change under `--dry-run`: the operation is skipped and "would
    /// <action> on <target>" is printed. Otherwise a change's outcome (ok or the error's message)
    /// is journaled after `op` ran.
    pub fn gate<T>(
        &self,
        target: &str,
        access: Access,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        self.check_cancel(target)?;
        let permit = Permit { _private: () };
        let (action, details, marks) = match access {
            Access::Read => {
                self.ledger.lock().unwrap().saw(target);
                return op(&permit).map(Some);
            }
            Access::Change {
                action,
                details,
                marks,
            } => (action, details, marks),
        };
        let id = self.journal.next_id();
        let mut fields = json!({"id": id, "target": target, "action": action, "details": details});
        if self.dry_run() {
            self.report.would(action, target);
            fields["outcome"] = "skipped (dry run)".into();
            self.write("effect", fields)?;
            return Ok(None);
        }
        // Written ahead: if the run dies while `op` runs, the journal still says it started.
        let mut start = fields.clone();
        start["marks"] = json!(marks);
        self.write("effect_start", start)?;
        self.report.effect(action, target);
        let result = op(&permit);
        match &result {
            Ok(_) => fields["outcome"] = "ok".into(),
            Err(e) => {
                fields["outcome"] = format!("failed: {}", e.message).into();
                fields["kind"] = e.kind.as_str().into();
            }
        }
        self.write("effect", fields)?;
        result.map(Some)
    }

    /// A read-only operation: it runs under `--dry-run` too and is not journaled.
    pub fn read<T>(
        &self,
        target: &str,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.check_cancel(target)?;
        op(&Permit { _private: () })
    }

    /// A change: `action` on `target`, journaled with `details`; `Ok(None)` under `--dry-run`.
    pub fn effect<T>(
        &self,
        target: &str,
        action: &str,
        details: Value,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        self.gate(target, Access::change(action, details), op)
    }

    /// Append a record to the journal and take it into the ledger.
    pub fn write(&self, kind: &str, fields: Value) -> Result<(), Failure> {
        let line = self.journal.record(kind, fields).map_err(|e| {
            let path = self.journal.path().display().to_string();
            Failure::new(
                Kind::Journal,
                &path,
                format!("cannot write the journal {path}: {e}"),
            )
        })?;
        self.ledger.lock().unwrap().apply(&line);
        Ok(())
    }
}
