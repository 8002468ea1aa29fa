//! The specs of docker commands a script describes: `run(spec)` and `exec(name, command, #{...})`,
//! their option values (lists, `KEY=VALUE` pairs, the pull policy, durations as docker reads them),
//! and the arguments they become, with the value of every environment variable masked wherever the
//! command is shown.

use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use crate::error::Failure;
use crate::opts::Opts;
use crate::prims::host::Command;

/// `KEY=VALUE` with the value masked: `KEY=***` (a bare `KEY` stays as it is).
fn mask(pair: &str) -> String {
    match pair.split_once('=') {
        Some((k, _)) => format!("{k}=***"),
        None => pair.to_string(),
    }
}

/// The arguments of one docker command, and the same as messages, the journal and `--dry-run` show
/// them: the value of every environment variable masked (`--env DB_PASSWORD=***`), so secrets given
/// to a container reach neither the terminal nor the journal.
#[derive(Default, Clone)]
pub(super) struct Args {
    pub(super) real: Vec<String>,
    pub(super) shown: Vec<String>,
}

impl Args {
    pub(super) fn of<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        let mut a = Args::default();
        for x in args {
            a.push(x);
        }
        a
    }

    pub(super) fn push(&mut self, arg: impl Into<String>) {
        let arg = arg.into();
        self.shown.push(arg.clone());
        self.real.push(arg);
    }

    /// `FLAG VALUE` for each value.
    fn flag(&mut self, flag: &str, values: Vec<String>) {
        for v in values {
            self.push(flag);
            self.push(v);
        }
    }

    /// `--env KEY=VALUE` for each pair, shown as `--env KEY=***`.
    fn env(&mut self, pairs: Vec<String>) {
        for p in pairs {
            self.push("--env");
            self.shown.push(mask(&p));
            self.real.push(p);
        }
    }

    /// Docker options written by the script (`args` of `run`): the environment variables they set
    /// (`-e K=V`, `--env K=V`, `--env=K=V`, `-eK=V`) are masked as `env` masks them.
    fn options(&mut self, options: Vec<String>) {
        let mut value_next = false;
        for o in options {
            let shown = if value_next {
                mask(&o)
            } else if let Some(p) = o.strip_prefix("--env=") {
                format!("--env={}", mask(p))
            } else if let Some(p) = o.strip_prefix("-e").filter(|p| !p.is_empty()) {
                format!("-e{}", mask(p))
            } else {
                o.clone()
            };
            value_next = o == "-e" || o == "--env";
            self.shown.push(shown);
            self.real.push(o);
        }
    }
}

/// The command of `exec`: a string runs through `sh -c` in the container, an array is the argv.
fn exec_argv(command: &Dynamic, name: &str) -> Result<Vec<String>, Failure> {
    let argv: Vec<String> = if let Some(a) = command.read_lock::<Array>() {
        a.iter().map(|x| x.to_string()).collect()
    } else if command.is_string() {
        let s = command.to_string();
        if s.trim().is_empty() {
            Vec::new()
        } else {
            vec!["sh".into(), "-c".into(), s]
        }
    } else {
        return Err(Failure::usage(
            name,
            format!(
                "docker exec {name}: the command must be a string or an array, not {}",
                command.type_name()
            ),
        ));
    };
    if argv.is_empty() {
        return Err(Failure::usage(
            name,
            format!("docker exec {name}: the command is empty"),
        ));
    }
    Ok(argv)
}

/// A duration as docker's Go parser reads it.
pub(super) fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// `pull`: true / "missing" (docker's default), false / "never", or "always".
fn pull_policy(v: &Dynamic, target: &str) -> Result<&'static str, Failure> {
    if let Ok(b) = v.as_bool() {
        return Ok(if b { "missing" } else { "never" });
    }
    match v.to_string().as_str() {
        "missing" => Ok("missing"),
        "never" => Ok("never"),
        "always" => Ok("always"),
        other => Err(Failure::usage(
            target,
            format!("{target}: option `pull` must be true, false, \"missing\", \"never\" or \"always\", not {other:?}"),
        )),
    }
}

/// The container `run(spec)` creates: its name, image and `docker create` arguments.
pub(super) struct RunSpec {
    pub(super) name: Option<String>,
    pub(super) image: String,
    pub(super) args: Args,
}

pub const RUN_KEYS: &[&str] = &[
    "image",
    "name",
    "ports",
    "volumes",
    "env",
    "labels",
    "network",
    "restart",
    "health_cmd",
    "health_interval",
    "health_timeout",
    "health_retries",
    "health_start_period",
    "pull",
    "cmd",
    "args",
];

impl RunSpec {
    pub(super) fn parse(spec: Map) -> Result<Self, Failure> {
        let target = "docker run";
        let o = Opts::new(spec, RUN_KEYS, target)?;
        let image = o.string("image")?.ok_or_else(|| {
            Failure::usage(target, "docker run: the spec needs an `image`".to_string())
        })?;
        check_image(&image, target)?;
        let name = o.string("name")?;
        let mut args = Args::of(["create"]);
        if let Some(n) = &name {
            check_name(n, target)?;
            args.flag("--name", vec![n.clone()]);
        }
        args.flag("--publish", o.list("ports")?);
        args.flag("--volume", o.list("volumes")?);
        args.env(o.pairs("env")?);
        args.flag("--label", o.pairs("labels")?);
        args.flag("--network", o.string("network")?.into_iter().collect());
        args.flag("--restart", o.string("restart")?.into_iter().collect());
        args.flag(
            "--health-cmd",
            o.string("health_cmd")?.into_iter().collect(),
        );
        for (key, f) in [
            ("health_interval", "--health-interval"),
            ("health_timeout", "--health-timeout"),
            ("health_start_period", "--health-start-period"),
        ] {
            args.flag(f, o.secs(key)?.map(go_duration).into_iter().collect());
        }
        args.flag(
            "--health-retries",
            o.int("health_retries")?
                .map(|n| n.to_string())
                .into_iter()
                .collect(),
        );
        if let Some(p) = o.get("pull") {
            args.flag("--pull", vec![pull_policy(p, target)?.to_string()]);
        }
        args.options(o.list("args")?);
        args.push(image.clone());
        let cmd = match o.get("cmd") {
            Some(c) if c.is_string() => {
                let text = c.to_string();
                shlex::split(&text).ok_or_else(|| {
                    Failure::usage(
                        target,
                        format!("docker run: cannot split `cmd` {text:?} into words (unbalanced quotes?)"),
                    )
                })?
            }
            _ => o.list("cmd")?,
        };
        for c in cmd {
            args.push(c);
        }
        Ok(RunSpec { name, image, args })
    }

    /// "docker run web (image nginx:1.27)": the action journaled and shown.
    pub(super) fn action(&self) -> String {
        match &self.name {
            Some(n) => format!("docker run {n} (image {})", self.image),
            None => format!("docker run (image {})", self.image),
        }
    }
}

/// The command `exec` runs in a container: its argv, the `docker exec` options before the
/// container, and what is done with the result.
pub(super) struct ExecSpec {
    pub(super) name: String,
    /// `exec --interactive --user ... --workdir ... --env ...`: the arguments before the container.
    pub(super) head: Args,
    pub(super) command: Vec<String>,
    /// The command as messages and the journal show it.
    pub(super) shown: String,
    pub(super) stdin: Option<String>,
    /// Throw on a non-zero exit.
    pub(super) check: bool,
    /// Not an effect: runs under `--dry-run` and is not journaled.
    pub(super) read_only: bool,
}

pub const EXEC_KEYS: &[&str] = &["check", "user", "workdir", "env", "stdin", "read_only"];

impl ExecSpec {
    pub(super) fn parse(name: &str, command: &Dynamic, options: Map) -> Result<Self, Failure> {
        check_name(name, "docker exec")?;
        let o = Opts::new(options, EXEC_KEYS, name)?;
        let command = exec_argv(command, name)?;
        let stdin = o.string("stdin")?;
        let mut head = Args::of(["exec"]);
        if stdin.is_some() {
            head.push("--interactive");
        }
        head.flag("--user", o.string("user")?.into_iter().collect());
        head.flag("--workdir", o.string("workdir")?.into_iter().collect());
        head.env(o.pairs("env")?);
        let shown = Command::Argv(command.clone()).display();
        Ok(ExecSpec {
            name: name.to_string(),
            head,
            command,
            shown,
            stdin,
            check: o.bool("check", true)?,
            read_only: o.bool("read_only", false)?,
        })
    }
}

/// A container name or id as docker accepts it; anything else (a leading `-` above all, which the
/// CLI would read as an option) is refused before it is sent.
pub(super) fn check_name(name: &str, what: &str) -> Result<(), Failure> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(
            name,
            format!("{what}: \"{name}\" is not a valid container name (letters, digits, `_`, `.` and `-`, starting with a letter or digit)"),
        ))
    }
}

/// An image reference docker cannot misread: not empty, no leading `-`, no white space.
pub(super) fn check_image(image: &str, what: &str) -> Result<(), Failure> {
    if image.is_empty() || image.starts_with('-') || image.chars().any(char::is_whitespace) {
        Err(Failure::usage(
            image,
            format!("{what}: \"{image}\" is not a valid image reference"),
        ))
    } else {
        Ok(())
    }
}
