//! Waiting for a container to become healthy: running, and healthy when it has a health check. A
//! container that exits, restarts or turns unhealthy fails at once, quoting its last log lines.

use std::time::{Duration, Instant};

use super::handle::Docker;
use super::spec::check_name;
use crate::error::{fmt_secs, Failure, Kind};
use crate::run::Run;

/// How many log lines a failure of `wait_healthy` quotes.
const LOG_LINES: usize = 20;

impl Docker {
    /// The container's last log lines, stdout then stderr, indented for a message.
    fn last_logs(&self, run: &Run, name: &str) -> String {
        let target = match self.target(run, name) {
            Ok(Some(t)) => t,
            Ok(None) => return "; it no longer exists".into(),
            Err(e) => return format!("; its logs are not available: {}", e.message),
        };
        let args = [
            "logs".to_string(),
            "--tail".into(),
            LOG_LINES.to_string(),
            target,
        ];
        match run.read(self.host_name(), |p| {
            self.cli(run, p, &args, self.timeout, None)
        }) {
            Ok(r) if r.ok() => {
                let text = format!("{}{}", r.out.stdout, r.out.stderr);
                let lines: Vec<&str> = text.trim_end().lines().collect();
                if lines.is_empty() {
                    "; it logged nothing".into()
                } else {
                    format!("; its last log lines:\n    {}", lines.join("\n    "))
                }
            }
            Ok(r) => format!("; its logs are not available: {}", r.said()),
            Err(e) => format!("; its logs are not available: {}", e.message),
        }
    }

    /// Wait until the container runs and, when it has a health check, reports healthy; without one,
    /// until it has been seen running for `min_uptime`. A container that exits, restarts or turns
    /// unhealthy fails at once, with its last log lines.
    pub(super) fn wait_healthy(
        &self,
        run: &Run,
        name: &str,
        timeout: Duration,
        min_uptime: Duration,
        interval: Duration,
    ) -> Result<(), Failure> {
        check_name(name, "wait_healthy")?;
        let host = self.host_name();
        let began = Instant::now();
        // The start of the run being watched, the restart count then, and when it was first seen.
        let mut first: Option<(String, i64, Instant)> = None;
        let fail = |kind: Kind, why: String| {
            Failure::new(
                kind,
                name,
                format!(
                    "{host}: container {name} {why}{}",
                    self.last_logs(run, name)
                ),
            )
        };
        let waited = run.wait(
            host,
            &format!("waiting for container {name} to become healthy"),
            timeout,
            interval,
            || {
                let Some(c) = self.inspect_json(run, name)? else {
                    // Under --dry-run the `run` that would create it was skipped.
                    if run.dry_run() {
                        return Ok(Err(format!("no container {name} yet")));
                    }
                    return Err(self.not_found(&format!("wait_healthy {name}"), name));
                };
                let state = &c["State"];
                let status = state["Status"].as_str().unwrap_or("unknown");
                let started = state["StartedAt"].as_str().unwrap_or("").to_string();
                let restarts = c["RestartCount"].as_i64().unwrap_or(0);
                let waited = fmt_secs((began.elapsed().as_secs_f64() * 10.0).round() / 10.0);
                match status {
                    "running" => {}
                    "exited" | "dead" | "restarting" => {
                        let code = state["ExitCode"].as_i64().unwrap_or(-1);
                        let mut why = format!("exited with code {code}");
                        if state["OOMKilled"].as_bool() == Some(true) {
                            why.push_str(" (killed: out of memory)");
                        }
                        if let Some(err) = state["Error"].as_str().filter(|e| !e.is_empty()) {
                            why.push_str(&format!(" ({err})"));
                        }
                        if status == "restarting" {
                            why.push_str(" and is restarting under its restart policy");
                        }
                        return Err(fail(
                            Kind::ContainerExited,
                            format!("{why} while waiting for it to become healthy ({waited} into the wait)"),
                        ));
                    }
                    "created" => {
                        return Err(fail(
                            Kind::NotRunning,
                            "was created but never started (start it first)".into(),
                        ))
                    }
                    other => {
                        return Err(fail(
                            Kind::NotRunning,
                            format!("is {other}, not running, while waiting for it to become healthy"),
                        ))
                    }
                }
                let (first_start, first_restarts, seen) =
                    first.get_or_insert_with(|| (started.clone(), restarts, Instant::now()));
                if restarts > *first_restarts {
                    return Err(fail(
                        Kind::ContainerExited,
                        format!(
                            "restarted {} time(s) while waiting for it to become healthy",
                            restarts - *first_restarts
                        ),
                    ));
                }
                if started != *first_start {
                    *first_start = started;
                    *seen = Instant::now();
                }
                let health = &state["Health"];
                let last_check = health["Log"]
                    .as_array()
                    .and_then(|l| l.last())
                    .map(|c| {
                        format!(
                            "exit code {}: {}",
                            c["ExitCode"].as_i64().unwrap_or(-1),
                            c["Output"].as_str().unwrap_or("").trim()
                        )
                    });
                match health["Status"].as_str() {
                    Some("healthy") => Ok(Ok(())),
                    Some("unhealthy") => Err(fail(
                        Kind::Unhealthy,
                        format!(
                            "is unhealthy: its health check failed {} time(s) in a row; last check: {}",
                            health["FailingStreak"].as_i64().unwrap_or(0),
                            last_check.unwrap_or_else(|| "none recorded".into())
                        ),
                    )),
                    Some(s) => Ok(Err(match last_check {
                        Some(c) => format!("running, health {s}, last check: {c}"),
                        None => format!("running, health {s}"),
                    })),
                    None if seen.elapsed() >= min_uptime => Ok(Ok(())),
                    None => Ok(Err(format!(
                        "running (no health check) for less than {}",
                        fmt_secs(min_uptime.as_secs_f64())
                    ))),
                }
            },
        );
        waited.map(drop).map_err(|e| match e.kind {
            Kind::Timeout => Failure::new(
                Kind::Timeout,
                name,
                format!("{}{}", e.message, self.last_logs(run, name)),
            ),
            _ => e,
        })
    }
}
