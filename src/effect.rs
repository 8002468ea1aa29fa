//! The effect gate: every operation of every primitive passes `Run::gate`, which is the one place
//! that honours `--dry-run`, writes the journal, checks for Ctrl-C and reports the change.
//!
//! The gate hands the operation a [`Permit`], and every function that can change something (run a
//! command, write a file, talk to HAProxy or docker, signal a process) takes one. Only the gate makes
//! permits, so an operation that skips it does not compile. What the gate does with an operation is
//! decided by its [`Access`]: a read runs (also under `--dry-run`) and is not journaled; a change is
//! skipped under `--dry-run`, and journaled otherwise.

use serde_json::Value;

use crate::error::{Failure, Kind};
use crate::run::Run;

/// Proof that an operation passed the gate. It cannot be made outside this module.
pub struct Permit {
    _private: (),
}

/// How an operation passes the gate.
pub enum Access<'a> {
    /// It only reads: it runs under `--dry-run` too, and is not journaled.
    Read,
    /// It changes something: `action` on the target, with `details` for the journal.
    Change { action: &'a str, details: Value },
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
        let (action, details) = match access {
            Access::Read => return op(&permit).map(Some),
            Access::Change { action, details } => (action, details),
        };
        if self.dry_run() {
            self.report.would(action, target);
            self.journal_entry(target, action, &details, "skipped (dry run)")?;
            return Ok(None);
        }
        self.report.effect(action, target);
        let result = op(&permit);
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {}", e.message),
        };
        self.journal_entry(target, action, &details, &outcome)?;
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
        self.gate(target, Access::Change { action, details }, op)
    }

    fn journal_entry(
        &self,
        target: &str,
        action: &str,
        details: &Value,
        outcome: &str,
    ) -> Result<(), Failure> {
        self.journal
            .record(target, action, details, outcome)
            .map_err(|e| {
                Failure::new(
                    Kind::Journal,
                    self.journal.path().display().to_string(),
                    format!(
                        "cannot write the journal {}: {e}",
                        self.journal.path().display()
                    ),
                )
            })
    }
}
