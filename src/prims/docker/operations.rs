//! What a docker handle does: run, remove, stop, start and restart containers, exec in them, pull
//! and look up images, list and inspect, read logs. Reads pass the gate as reads, changes as effects.

use rhai::{Array, Map};
use serde_json::{json, Value};

use super::cli::{script_value, Op};
use super::handle::Docker;
use super::spec::{check_image, check_name, go_duration, ExecSpec, RunSpec};
use crate::effect::{Access, Permit};
use crate::error::{Failure, Kind};
use crate::ledger::Mark;
use crate::opts::Opts;
use std::time::Duration;

use crate::prims::host::{check_exit, Output};
use crate::run::Run;

/// The options of `d.logs`.
pub const LOGS_KEYS: &[&str] = &["tail", "since"];
impl Docker {
    /// A change on this host, through the effect gate: skipped under `--dry-run`, journaled once.
    pub(super) fn change<T>(
        &self,
        run: &Run,
        action: &str,
        details: Value,
        marks: Vec<Mark>,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        let access = Access::Change {
            action,
            details,
            marks,
        };
        run.gate(self.host_name(), access, op)
    }

    /// The mark a change leaves on the container `name`: out of its normal state (`state`: removed,
    /// stopped), or back in it (None: running again, or replaced by a new one).
    fn mark(&self, name: &str, state: Option<&str>) -> Mark {
        let key = format!("{} container {name}", self.host_name());
        match state {
            Some(state) => Mark::Out {
                key,
                what: format!("container {name}"),
                state: state.into(),
            },
            None => Mark::Back { key },
        }
    }

    /// The `docker create` command line `run(spec)` executes, as shown (environment values masked).
    pub(super) fn run_command(&self, spec: &RunSpec) -> String {
        self.shown(&spec.args)
    }

    /// Create and start a container. `docker create` + `docker start` rather than `docker run -d`:
    /// the id is known before the start, so a container that cannot start (a port in use) is
    /// removed instead of being left behind in the "created" state, holding its name.
    pub(super) fn run(&self, run: &Run, spec: RunSpec) -> Result<String, Failure> {
        let op = Op {
            what: spec.action(),
            target: spec.name.clone().unwrap_or_else(|| spec.image.clone()),
            image: Some(spec.image.clone()),
        };
        let details = json!({
            "image": spec.image,
            "name": spec.name,
            "command": self.run_command(&spec),
        });
        let marks = spec.name.iter().map(|n| self.mark(n, None)).collect();
        let id = self.change(run, &spec.action(), details, marks, |p| {
            let created = self.cli_args(run, p, &spec.args, self.pull_timeout, None)?;
            if !created.ok() {
                return Err(self.failure(&op, &created));
            }
            let id = created
                .out
                .stdout
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string();
            let started = self.cli(run, p, &["start".into(), id.clone()], self.timeout, None)?;
            if started.ok() {
                return Ok(id);
            }
            let mut f = self.failure(&op, &started);
            // Why the container that could not start is still there, if it is.
            let left = match self.cli(
                run,
                p,
                &["rm".into(), "-f".into(), id.clone()],
                self.timeout,
                None,
            ) {
                Ok(r) if r.ok() => None,
                Ok(r) => Some(r.said()),
                Err(e) => Some(e.message),
            };
            match left {
                None => f
                    .message
                    .push_str("; the container could not start and was removed"),
                Some(why) => f.message.push_str(&format!(
                    "; the container {} could not start, and removing it failed: {why}",
                    &id[..id.len().min(12)],
                )),
            }
            Err(f)
        })?;
        Ok(id.unwrap_or_default())
    }

    /// `docker stop|start|restart NAME`, an effect. `grace`: seconds between SIGTERM and SIGKILL.
    pub(super) fn lifecycle(
        &self,
        run: &Run,
        verb: &str,
        name: &str,
        grace: Option<Duration>,
    ) -> Result<(), Failure> {
        check_name(name, &format!("docker {verb}"))?;
        let action = format!("docker {verb} {name}");
        let op = Op::container(action.clone(), name);
        let details = json!({"container": name, "grace": grace.map(|g| g.as_secs_f64())});
        let state = (verb == "stop").then_some("stopped");
        let marks = vec![self.mark(name, state)];
        self.change(run, &action, details, marks, |p| {
            let target = self
                .target(run, name)?
                .ok_or_else(|| self.not_found(&action, name))?;
            let mut args = vec![verb.to_string()];
            if let Some(g) = grace {
                // docker takes whole seconds; round up so a grace period is never cut short.
                args.extend(["--time".into(), g.as_secs_f64().ceil().to_string()]);
            }
            args.push(target);
            self.cli_ok(run, p, &args, &op).map(drop)
        })?;
        Ok(())
    }

    /// `docker rm -f NAME`, an effect. A container that does not exist is not an error, and a name
    /// no container has removes nothing, even when it starts some container's id.
    pub(super) fn rm(&self, run: &Run, name: &str) -> Result<(), Failure> {
        check_name(name, "docker rm")?;
        let action = format!("docker rm {name}");
        let op = Op::container(action.clone(), name);
        let marks = vec![self.mark(name, Some("removed"))];
        self.change(run, &action, json!({"container": name}), marks, |p| {
            let Some(target) = self.target(run, name)? else {
                return Ok(());
            };
            let r = self.cli(
                run,
                p,
                &["rm".into(), "-f".into(), target],
                self.timeout,
                None,
            )?;
            if r.ok() || r.says("no such container") {
                Ok(())
            } else {
                Err(self.failure(&op, &r))
            }
        })?;
        Ok(())
    }

    /// Whether a container of that name (or full id) exists, running or not.
    pub(super) fn exists(&self, run: &Run, name: &str) -> Result<bool, Failure> {
        Ok(self.inspect_json(run, name)?.is_some())
    }

    /// Whether the container exists and is running.
    pub(super) fn running(&self, run: &Run, name: &str) -> Result<bool, Failure> {
        Ok(self
            .inspect_json(run, name)?
            .is_some_and(|c| c["State"]["Running"].as_bool() == Some(true)))
    }

    /// `docker container inspect NAME` as a script map; a missing container is `not_found`.
    pub(super) fn inspect(&self, run: &Run, name: &str) -> Result<Map, Failure> {
        let c = self
            .inspect_json(run, name)?
            .ok_or_else(|| self.not_found(&format!("docker inspect {name}"), name))?;
        Ok(script_value(&c).try_cast::<Map>().unwrap_or_default())
    }

    /// `docker ps`, one map per container: stopped ones too when `all`, only those matching every
    /// docker filter in `filters`.
    pub(super) fn ps(&self, run: &Run, all: bool, filters: Vec<String>) -> Result<Array, Failure> {
        let mut args = vec!["ps".to_string(), "--no-trunc".into()];
        if all {
            args.push("--all".into());
        }
        for f in filters {
            args.extend(["--filter".into(), f]);
        }
        args.extend(["--format".into(), "{{json .}}".into()]);
        let host = self.host_name();
        let op = Op::container("docker ps", host);
        let r = run.read(host, |p| self.cli_ok(run, p, &args, &op))?;
        let mut out = Array::new();
        for line in r.out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).map_err(|e| {
                Failure::new(
                    Kind::Docker,
                    host,
                    format!("{host}: docker ps printed a line that is not JSON ({e}): {line}"),
                )
            })?;
            out.push(script_value(&v));
        }
        Ok(out)
    }

    /// The container's log, stdout then stderr, with the options of `logs(name, #{...})`: `tail`
    /// (the last N lines), `since` (seconds ago, or anything `docker logs --since` takes).
    pub(super) fn logs(&self, run: &Run, name: &str, options: Map) -> Result<String, Failure> {
        check_name(name, "docker logs")?;
        let o = Opts::new(options, LOGS_KEYS, name)?;
        let mut args = vec!["logs".to_string()];
        if let Some(n) = o.int("tail")? {
            args.extend(["--tail".into(), n.to_string()]);
        }
        if let Some(since) = o.get("since") {
            let since = if since.is_int() || since.is_float() {
                go_duration(crate::opts::seconds(since, name, "since")?)
            } else {
                since.to_string()
            };
            args.extend(["--since".into(), since]);
        }
        let what = format!("docker logs {name}");
        let target = self
            .target(run, name)?
            .ok_or_else(|| self.not_found(&what, name))?;
        args.push(target);
        let op = Op::container(what, name);
        let r = run.read(self.host_name(), |p| self.cli_ok(run, p, &args, &op))?;
        Ok(format!("{}{}", r.out.stdout, r.out.stderr))
    }

    /// Run `spec`'s command in its running container: an effect unless `read_only`. Docker's own
    /// failures throw even with `check: false`; the command's exit code and output never count as
    /// docker's. Returns `#{code, stdout, stderr}` (`Output::skipped` under `--dry-run`).
    pub(super) fn exec(&self, run: &Run, spec: &ExecSpec) -> Result<Map, Failure> {
        let name = spec.name.as_str();
        let action = format!("docker exec {name} `{}`", spec.shown);
        let op = Op::container(action.clone(), name);
        let exec = |p: &Permit| -> Result<Output, Failure> {
            let target = self
                .target(run, name)?
                .ok_or_else(|| self.not_found(&action, name))?;
            let mut args = spec.head.clone();
            args.push(target);
            for c in &spec.command {
                args.push(c.clone());
            }
            let r = self.cli_args(run, p, &args, self.timeout, spec.stdin.clone())?;
            // docker's own failures (no such container, not running, engine unreachable, no docker
            // command) are not the command's exit code: they throw even with `check: false`.
            if !r.ok() && self.exec_failed(run, name, &action, &r)? {
                return Err(self.failure(&op, &r));
            }
            if spec.check {
                check_exit(self.host_name(), &r.shown, &r.out).map_err(|mut f| {
                    f.target = name.to_string();
                    f
                })?;
            }
            Ok(r.out)
        };
        let access = if spec.read_only {
            Access::Read
        } else {
            Access::change(&action, json!({"container": name, "command": spec.shown}))
        };
        let out = run.gate(self.host_name(), access, exec)?;
        Ok(out.map_or_else(Output::skipped, |out| out.to_map()))
    }

    /// `docker pull IMAGE`, an effect; `image_missing` when no registry is reachable or the registry
    /// does not have the image.
    pub(super) fn pull(&self, run: &Run, image: &str) -> Result<(), Failure> {
        check_image(image, "docker pull")?;
        let action = format!("docker pull {image}");
        let op = Op {
            what: action.clone(),
            target: image.to_string(),
            image: Some(image.to_string()),
        };
        self.change(run, &action, json!({"image": image}), Vec::new(), |p| {
            let r = self.cli(
                run,
                p,
                &["pull".into(), "--quiet".into(), image.into()],
                self.pull_timeout,
                None,
            )?;
            if r.ok() {
                Ok(())
            } else {
                Err(self.failure(&op, &r))
            }
        })?;
        Ok(())
    }

    /// Whether the image is present on the host (no registry is asked).
    pub(super) fn image_exists(&self, run: &Run, image: &str) -> Result<bool, Failure> {
        check_image(image, "docker image inspect")?;
        let args = [
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            image.into(),
        ];
        let r = run.read(self.host_name(), |p| {
            self.cli(run, p, &args, self.timeout, None)
        })?;
        if r.ok() {
            Ok(true)
        } else if r.says("no such image") {
            Ok(false)
        } else {
            let op = Op {
                what: format!("docker image inspect {image}"),
                target: image.to_string(),
                image: None,
            };
            Err(self.failure(&op, &r))
        }
    }
}
