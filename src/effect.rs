//! The effect gate: every operation that changes something, in every primitive, goes through
//! `Run::effect`. It is the one place that honours `--dry-run`, writes the journal, checks for Ctrl-C
//! and reports the change.

use serde_json::Value;

use crate::error::{Failure, Kind};
use crate::run::Run;

impl Run {
    /// Carry out `op`, the change `action` on `target` (with `details` for the journal).
    ///
    /// Returns `Ok(None)` under `--dry-run`: the operation is skipped and "would <action> on <target>"
    /// is printed. Otherwise the outcome (ok or the error's message) is journaled after `op` ran.
    pub fn effect<T>(
        &self,
        target: &str,
        action: &str,
        details: Value,
        op: impl FnOnce() -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        self.check_cancel(target)?;
        if self.dry_run() {
            self.report.would(action, target);
            self.journal_entry(target, action, &details, "skipped (dry run)")?;
            return Ok(None);
        }
        self.report.effect(action, target);
        let result = op();
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("failed: {}", e.message),
        };
        self.journal_entry(target, action, &details, &outcome)?;
        result.map(Some)
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
