//! Docker on any host: containers as script objects. A `Docker` handle drives the docker CLI of its
//! host (`local()` or an SSH host) through `Host::exec`, so `sudo`, remote engines and docker
//! contexts work as ops teams already use them. Output is read as JSON (`docker inspect`,
//! `--format '{{json .}}'`), never scraped from tables; docker's error text is sorted into kinds a
//! script can branch on (`docker_unreachable`, `image_missing`, `port_conflict`, `name_conflict`,
//! `not_found`, `container_exited`, `unhealthy`).

use std::fmt;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use serde_json::{json, Value};

use crate::effect::{Access, Permit};
use crate::error::{fmt_secs, Failure, Kind};
use crate::opts::Opts;
use crate::prims::host::{check_exit, Command, Host, Input, Output, RunOpts, Sink};
use crate::run::Run;

/// How long one docker command may take, unless the handle says otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a command that may download an image (`pull`, `run`) may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// How many log lines a failure of `wait_healthy` quotes.
const LOG_LINES: usize = 20;

/// The docker engine of one host, driven through that host's docker CLI.
#[derive(Clone)]
pub struct Docker {
    host: Host,
    /// `docker --context NAME`.
    context: Option<String>,
    /// Run docker through `sudo -n`.
    sudo: bool,
    timeout: Duration,
    pull_timeout: Duration,
}

impl fmt::Debug for Docker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Docker({})", self.host.name())
    }
}

/// What one docker command printed.
struct Reply {
    out: Output,
    /// The command as a user would type it, with the values of environment variables masked.
    shown: String,
}

impl Reply {
    fn ok(&self) -> bool {
        self.out.code == 0 && self.out.signal.is_none()
    }

    /// Whether docker's error output contains `text` (given in lower case; matched ignoring case).
    fn says(&self, text: &str) -> bool {
        self.out.stderr.to_ascii_lowercase().contains(text)
    }

    /// Docker's error in a few words: the meaningful lines of stderr, without the CLI's prefixes and
    /// its "Run 'docker run --help'" hint.
    fn said(&self) -> String {
        let lines: Vec<&str> = self
            .out
            .stderr
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty() && !l.starts_with("Run 'docker") && !l.starts_with("See 'docker")
            })
            .map(|l| l.strip_prefix("docker: ").unwrap_or(l))
            .map(|l| l.strip_prefix("Error response from daemon: ").unwrap_or(l))
            .collect();
        let lines = &lines[lines.len().saturating_sub(4)..];
        if !lines.is_empty() {
            lines.join("; ")
        } else if let Some(sig) = self.out.signal {
            format!("killed by signal {sig}, no error output")
        } else {
            format!("exit code {}, no error output", self.out.code)
        }
    }
}

/// The docker operation a failure belongs to, for its message: `what` reads like
/// "docker run web (image nginx:1.27)", `target` is the container (or image) acted on.
struct Op {
    what: String,
    target: String,
    /// The image the operation needs, when a missing image is a possible cause.
    image: Option<String>,
}

impl Op {
    fn container(what: impl Into<String>, name: &str) -> Self {
        Op {
            what: what.into(),
            target: name.to_string(),
            image: None,
        }
    }
}

/// Text docker prints when the registry cannot be reached at all.
const NETWORK_TROUBLE: &[&str] = &[
    "dial tcp",
    "no such host",
    "i/o timeout",
    "connection refused",
    "network is unreachable",
    "tls handshake timeout",
    "server misbehaving",
    "temporary failure in name resolution",
    "request canceled while waiting for connection",
];

/// Text docker prints when an image is neither on the host nor obtainable from the registry.
const IMAGE_TROUBLE: &[&str] = &[
    "no such image",
    "unable to find image",
    "pull access denied",
    "manifest unknown",
    "repository does not exist",
    "not found: manifest",
    "failed to resolve reference",
];

/// How docker's own errors begin (any case), as the first line of its error output: text a
/// command run by `docker exec` prints is not docker's, even when it says "is not running".
const DOCKER_ERRORS: &[&str] = &[
    "Error response from daemon:",
    "Error: No such container",
    "Cannot connect to the Docker daemon",
    "error during connect:",
    "permission denied while trying to connect to the Docker daemon",
    "Got permission denied while trying to connect to the Docker daemon",
];

/// The address in docker's "port in use" error: "Bind for 0.0.0.0:80 failed: port is already
/// allocated" or "listen tcp4 127.0.0.1:80: bind: address already in use".
fn port_in(stderr: &str) -> Option<String> {
    if let Some(i) = stderr.find("Bind for ") {
        let rest = &stderr[i + "Bind for ".len()..];
        return rest.find(" failed").map(|j| rest[..j].to_string());
    }
    for prefix in ["listen tcp4 ", "listen tcp6 ", "listen tcp "] {
        if let Some(i) = stderr.find(prefix) {
            let rest = &stderr[i + prefix.len()..];
            return rest.find(": bind").map(|j| rest[..j].to_string());
        }
    }
    None
}

/// The container holding a name, from "... is already in use by container \"9f3e...\"".
fn holder_in(stderr: &str) -> Option<String> {
    let marker = "in use by container \"";
    let i = stderr.find(marker)?;
    let id: String = stderr[i + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .take(12)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// A container name or id as docker accepts it; anything else (a leading `-` above all, which the
/// CLI would read as an option) is refused before it is sent.
fn check_name(name: &str, what: &str) -> Result<(), Failure> {
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

fn check_image(image: &str, what: &str) -> Result<(), Failure> {
    if image.is_empty() || image.starts_with('-') || image.chars().any(char::is_whitespace) {
        Err(Failure::usage(
            image,
            format!("{what}: \"{image}\" is not a valid image reference"),
        ))
    } else {
        Ok(())
    }
}

/// Whether docker could take `name` for the prefix of another container's id. Docker looks a
/// container up as a full id, then as an exact name, then as an id PREFIX: `db` or `cafe`, naming no
/// container, would silently mean whichever container's id starts with it. Only lowercase hex
/// shorter than a full id (64 characters) can be such a prefix; any other name is looked up exactly.
fn may_be_id_prefix(name: &str) -> bool {
    name.len() < 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `c` (from `docker container inspect NAME`) is the container `name` means exactly: the
/// container of that name, or of that full id; not one whose id merely starts with `name`.
fn is_exactly(c: &Value, name: &str) -> bool {
    c["Name"].as_str().and_then(|n| n.strip_prefix('/')) == Some(name)
        || c["Id"].as_str() == Some(name)
}

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
struct Args {
    real: Vec<String>,
    shown: Vec<String>,
}

impl Args {
    fn of<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        let mut a = Args::default();
        for x in args {
            a.push(x);
        }
        a
    }

    fn push(&mut self, arg: impl Into<String>) {
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
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis().max(1))
    }
}

/// A JSON value from docker as a script value: objects are maps, arrays are arrays.
fn to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n.as_f64().unwrap_or(f64::NAN).into(),
        },
        Value::String(s) => s.into(),
        Value::Array(a) => Dynamic::from_array(a.into_iter().map(to_dynamic).collect()),
        Value::Object(o) => Dynamic::from_map(
            o.into_iter()
                .map(|(k, v)| (k.into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

/// A list option: an array (each element as a string) or a single string.
fn list(o: &Opts, key: &str, target: &str) -> Result<Vec<String>, Failure> {
    match o.get(key) {
        None => Ok(Vec::new()),
        Some(v) => {
            if let Some(a) = v.read_lock::<Array>() {
                Ok(a.iter().map(|x| x.to_string()).collect())
            } else if v.is_string() || v.is_int() {
                Ok(vec![v.to_string()])
            } else {
                Err(wrong(target, key, "an array of strings", v.type_name()))
            }
        }
    }
}

/// `KEY=VALUE` pairs: a map, or an array of `"KEY=VALUE"` strings.
fn pairs(o: &Opts, key: &str, target: &str) -> Result<Vec<String>, Failure> {
    match o.get(key) {
        Some(v) if v.is_map() => {
            let m = v.read_lock::<Map>().expect("a map");
            Ok(m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        }
        Some(v) if !v.is_array() => Err(wrong(target, key, "a map", v.type_name())),
        _ => list(o, key, target),
    }
}

fn wrong(target: &str, key: &str, expected: &str, got: &str) -> Failure {
    Failure::usage(
        target,
        format!("{target}: option `{key}` must be {expected}, not {got}"),
    )
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
struct RunSpec {
    name: Option<String>,
    image: String,
    args: Args,
}

const RUN_KEYS: &[&str] = &[
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
    fn parse(spec: Map) -> Result<Self, Failure> {
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
        args.flag("--publish", list(&o, "ports", target)?);
        args.flag("--volume", list(&o, "volumes", target)?);
        args.env(pairs(&o, "env", target)?);
        args.flag("--label", pairs(&o, "labels", target)?);
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
        args.options(list(&o, "args", target)?);
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
            _ => list(&o, "cmd", target)?,
        };
        for c in cmd {
            args.push(c);
        }
        Ok(RunSpec { name, image, args })
    }

    /// "docker run web (image nginx:1.27)": the action journaled and shown.
    fn action(&self) -> String {
        match &self.name {
            Some(n) => format!("docker run {n} (image {})", self.image),
            None => format!("docker run (image {})", self.image),
        }
    }
}

impl Docker {
    /// The docker engine of `host`, with default options.
    pub fn new(host: Host) -> Self {
        Docker {
            host,
            context: None,
            sudo: false,
            timeout: COMMAND_TIMEOUT,
            pull_timeout: PULL_TIMEOUT,
        }
    }

    /// The docker engine of `host`, with the options of `docker(#{...})`.
    fn with_options(host: Host, options: Map) -> Result<Self, Failure> {
        let target = format!("docker on {}", host.name());
        let o = Opts::new(
            options,
            &["sudo", "context", "timeout", "pull_timeout"],
            &target,
        )?;
        Ok(Docker {
            context: o.string("context")?,
            sudo: o.bool("sudo", false)?,
            timeout: o.secs("timeout")?.unwrap_or(COMMAND_TIMEOUT),
            pull_timeout: o.secs("pull_timeout")?.unwrap_or(PULL_TIMEOUT),
            host,
        })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    fn host_name(&self) -> &str {
        self.host.name()
    }

    /// `docker [--context NAME] ARGS...`.
    fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = vec!["docker".to_string()];
        if let Some(c) = &self.context {
            argv.extend(["--context".into(), c.clone()]);
        }
        argv.extend(args.iter().cloned());
        argv
    }

    /// Run `docker ARGS...` on the host and return what it printed, whatever its exit code. Not an
    /// effect by itself: read-only commands call it directly, changes call it inside `change`, so
    /// each docker change is journaled once, as a docker action.
    fn cli(
        &self,
        run: &Run,
        p: &Permit,
        args: &[String],
        timeout: Duration,
        stdin: Option<String>,
    ) -> Result<Reply, Failure> {
        self.cli_args(run, p, &Args::of(args.iter().cloned()), timeout, stdin)
    }

    /// `cli` for arguments that may hold secrets: messages show `args.shown`.
    fn cli_args(
        &self,
        run: &Run,
        p: &Permit,
        args: &Args,
        timeout: Duration,
        stdin: Option<String>,
    ) -> Result<Reply, Failure> {
        let cmd = Command::Argv(self.argv(&args.real));
        let shown = Command::Argv(self.argv(&args.shown)).display();
        let o = RunOpts {
            timeout: Some(timeout),
            sudo: self.sudo,
            ..RunOpts::probe()
        };
        let input = stdin.map(Input::Text).unwrap_or(Input::Null);
        let out = self
            .host
            .exec(run, p, &cmd, &o, input, Sink::Capture)
            .map_err(|mut f| {
                // A timeout names the command: as shown, never with the secrets.
                f.message = f.message.replace(&cmd.display(), &shown);
                f
            })?;
        Ok(Reply { out, shown })
    }

    /// `cli` for a command that must succeed; a failure is classified.
    fn cli_ok(&self, run: &Run, p: &Permit, args: &[String], op: &Op) -> Result<Reply, Failure> {
        let r = self.cli(run, p, args, self.timeout, None)?;
        if r.ok() {
            Ok(r)
        } else {
            Err(self.failure(op, &r))
        }
    }

    /// A change on this host, through the effect gate: skipped under `--dry-run`, journaled once.
    fn change<T>(
        &self,
        run: &Run,
        action: &str,
        details: Value,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        run.effect(self.host_name(), action, details, op)
    }

    /// Docker's error output, sorted into a failure a script can branch on (`kind`) and a message
    /// naming the host, the operation and what to do about it.
    fn failure(&self, op: &Op, r: &Reply) -> Failure {
        let host = self.host_name();
        let said = r.said();
        let (kind, why) = if r.out.code == 127 && !r.says("docker daemon") {
            (
                Kind::DockerMissing,
                format!(
                    "the docker command is not installed on {host} (or not on its PATH): {said}"
                ),
            )
        } else if r.says("cannot connect to the docker daemon")
            || r.says("is the docker daemon running")
            || r.says("error during connect")
            || (r.says("permission denied") && r.says("docker") && r.says(".sock"))
        {
            (
                Kind::DockerUnreachable,
                format!("the docker engine on {host} is not reachable ({said}); start dockerd, or check that this user may use it (docker(#{{sudo: true}}))"),
            )
        } else if r.says("is already in use by container") {
            let holder = holder_in(&r.out.stderr)
                .map(|id| format!(" by container {id}"))
                .unwrap_or_default();
            (
                Kind::NameConflict,
                format!(
                    "the name {} is already in use on {host}{holder}; remove that container first (rm) or choose another name",
                    op.target
                ),
            )
        } else if r.says("port is already allocated") || r.says("address already in use") {
            let port = match port_in(&r.out.stderr) {
                Some(p) => format!("port {p}"),
                None => format!("a published port ({said})"),
            };
            (
                Kind::PortConflict,
                format!("{port} is already in use on {host} (another container publishes it, or another program listens on it)"),
            )
        } else if let Some(image) = op.image.as_deref().filter(|_| {
            IMAGE_TROUBLE
                .iter()
                .chain(NETWORK_TROUBLE)
                .any(|t| r.says(t))
        }) {
            let why = if NETWORK_TROUBLE.iter().any(|t| r.says(t)) {
                "no registry is reachable to pull it from"
            } else if r.says("no such image") && !r.says("unable to find image") {
                "pulling is off"
            } else {
                "the registry does not have it or refuses access"
            };
            (
                Kind::ImageMissing,
                format!("image {image} is not present on {host}, and {why} ({said})"),
            )
        } else if r.says("no such container") {
            (Kind::NotFound, "no such container".to_string())
        } else if r.says("is not running") {
            (
                Kind::NotRunning,
                "the container is not running (start it first)".to_string(),
            )
        } else {
            let ended = match r.out.signal {
                Some(sig) => format!("was killed by signal {sig}"),
                None => format!("exited with code {}", r.out.code),
            };
            (Kind::Docker, format!("`{}` {ended}: {said}", r.shown))
        };
        Failure::new(kind, &op.target, format!("{host}: {}: {why}", op.what))
    }

    /// Whether a `docker exec` that failed (`r`) failed in docker rather than in the command it ran:
    /// docker's own error (`DOCKER_ERRORS`) is the first line of its error output, or exit code 127
    /// came from a missing docker command rather than from a command missing in the container. The
    /// command's own output and exit code ("nginx is not running", exit 3) are never docker's.
    fn exec_failed(&self, run: &Run, name: &str, what: &str, r: &Reply) -> Result<bool, Failure> {
        let first = r.out.stderr.lines().map(str::trim).find(|l| !l.is_empty());
        let said = |prefix: &str| {
            first.is_some_and(|l| {
                l.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
        };
        if DOCKER_ERRORS.iter().any(|p| said(p)) || (self.sudo && said("sudo: ")) {
            return Ok(true);
        }
        if r.out.code != 127 || r.says("oci runtime") {
            return Ok(false);
        }
        // 127: "command not found" from the shell in the container, or from the host's shell about
        // docker itself. Whether docker answers about the container tells which.
        match self.inspect_json(run, name) {
            Ok(Some(_)) => Ok(false),
            Ok(None) => Err(self.not_found(what, name)),
            Err(_) => Ok(true),
        }
    }

    /// "HOST: WHAT: no such container".
    fn not_found(&self, what: &str, name: &str) -> Failure {
        Failure::new(
            Kind::NotFound,
            name,
            format!("{}: {what}: no such container", self.host_name()),
        )
    }

    /// `docker container inspect NAME` as JSON, when NAME is exactly a container's name or full id;
    /// None when no container has that name or id, even if docker would take NAME for the prefix of
    /// some container's id (see `may_be_id_prefix`).
    fn inspect_json(&self, run: &Run, name: &str) -> Result<Option<Value>, Failure> {
        check_name(name, "docker inspect")?;
        let op = Op::container(format!("docker inspect {name}"), name);
        let args = ["container".into(), "inspect".into(), name.into()];
        let r = run.read(self.host_name(), |p| {
            self.cli(run, p, &args, self.timeout, None)
        })?;
        if !r.ok() {
            // An id prefix that several containers share is an error ("Multiple IDs found with
            // provided prefix"); docker tried the exact name first, so no container has that name.
            return if r.says("no such container")
                || (may_be_id_prefix(name) && r.says("multiple ids found"))
            {
                Ok(None)
            } else {
                Err(self.failure(&op, &r))
            };
        }
        let parsed: Value = serde_json::from_str(&r.out.stdout).map_err(|e| {
            Failure::new(
                Kind::Docker,
                name,
                format!(
                    "{}: {}: docker printed something that is not JSON ({e})",
                    self.host_name(),
                    op.what
                ),
            )
        })?;
        Ok(match parsed {
            Value::Array(mut a) if !a.is_empty() => Some(a.swap_remove(0)),
            _ => None,
        }
        .filter(|c| is_exactly(c, name)))
    }

    fn inspect(&self, run: &Run, name: &str) -> Result<Value, Failure> {
        self.inspect_json(run, name)?
            .ok_or_else(|| self.not_found(&format!("docker inspect {name}"), name))
    }

    /// The container `name` means, as docker is to be given it: `name` itself when docker can only
    /// read it exactly, else the id of the container named exactly so. None: there is no such
    /// container (whatever container ids start with `name`).
    fn target(&self, run: &Run, name: &str) -> Result<Option<String>, Failure> {
        if !may_be_id_prefix(name) {
            return Ok(Some(name.to_string()));
        }
        Ok(self
            .inspect_json(run, name)?
            .and_then(|c| c["Id"].as_str().map(str::to_string)))
    }

    /// Create and start a container. `docker create` + `docker start` rather than `docker run -d`:
    /// the id is known before the start, so a container that cannot start (a port in use) is
    /// removed instead of being left behind in the "created" state, holding its name.
    fn run(&self, run: &Run, spec: RunSpec) -> Result<String, Failure> {
        let op = Op {
            what: spec.action(),
            target: spec.name.clone().unwrap_or_else(|| spec.image.clone()),
            image: Some(spec.image.clone()),
        };
        let details = json!({
            "image": spec.image,
            "name": spec.name,
            "command": Command::Argv(self.argv(&spec.args.shown)).display(),
        });
        let id = self.change(run, &spec.action(), details, |p| {
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
            match self.cli(
                run,
                p,
                &["rm".into(), "-f".into(), id.clone()],
                self.timeout,
                None,
            ) {
                Ok(r) if r.ok() => f
                    .message
                    .push_str("; the container could not start and was removed"),
                Ok(r) => f.message.push_str(&format!(
                    "; the container {} could not start, and removing it failed: {}",
                    &id[..id.len().min(12)],
                    r.said()
                )),
                Err(e) => f.message.push_str(&format!(
                    "; the container {} could not start, and removing it failed: {}",
                    &id[..id.len().min(12)],
                    e.message
                )),
            }
            Err(f)
        })?;
        Ok(id.unwrap_or_default())
    }

    /// `docker stop|start|restart NAME`, an effect. `grace`: seconds between SIGTERM and SIGKILL.
    fn lifecycle(
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
        self.change(run, &action, details, |p| {
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
    fn wait_healthy(
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
        let waited = run.poll(
            host,
            &format!("waiting for container {name} to become healthy"),
            timeout,
            interval,
            || {
                let Some(c) = self.inspect_json(run, name)? else {
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
        waited.map_err(|e| match e.kind {
            Kind::Timeout => Failure::new(
                Kind::Timeout,
                name,
                format!("{}{}", e.message, self.last_logs(run, name)),
            ),
            _ => e,
        })
    }
}

#[export_module]
pub mod docker_api {
    use super::*;
    use rhai::{EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// The docker engine of this machine, driven through its `docker` command.
    ///
    /// ```rhai
    /// let d = docker();
    /// print(d.running("web"));
    /// ```
    #[rhai_fn(name = "docker")]
    pub fn docker_local() -> Docker {
        Docker::new(Host::local())
    }

    /// The docker engine of this machine, with options: `sudo` (run docker through `sudo -n`),
    /// `context` (`docker --context NAME`), `timeout` (seconds one docker command may take, default
    /// 120), `pull_timeout` (for commands that may download an image, default 600).
    ///
    /// ```rhai
    /// let d = docker(#{sudo: true});
    /// ```
    #[rhai_fn(name = "docker", return_raw)]
    pub fn docker_local_with(options: Map) -> Res<Docker> {
        Ok(Docker::with_options(Host::local(), options)?)
    }

    /// The docker engine of host `h`, driven through the docker command on that host.
    ///
    /// ```rhai
    /// let d = ssh("root@10.0.0.5").docker();
    /// d.restart("web");
    /// ```
    #[rhai_fn(name = "docker", pure)]
    pub fn docker_on(h: &mut Host) -> Docker {
        Docker::new(h.clone())
    }

    /// The docker engine of host `h`, with the options of `docker(#{...})`.
    ///
    /// ```rhai
    /// let d = ssh("10.0.0.5").docker(#{sudo: true, timeout: 60});
    /// ```
    #[rhai_fn(name = "docker", pure, return_raw)]
    pub fn docker_on_with(h: &mut Host, options: Map) -> Res<Docker> {
        Ok(Docker::with_options(h.clone(), options)?)
    }

    /// The host this docker engine is on.
    #[rhai_fn(get = "host", pure)]
    pub fn get_host(d: &mut Docker) -> Host {
        d.host().clone()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(d: &mut Docker) -> String {
        format!("docker on {}", d.host_name())
    }

    /// Create and start a container (detached); returns its id ("" under `--dry-run`). The spec:
    /// `image` (required), `name`, `ports` (`["127.0.0.1:8080:80"]`), `volumes`
    /// (`["/data/www:/usr/share/nginx/html:ro"]`), `env` and `labels` (maps), `network`, `restart`
    /// (`"unless-stopped"`), `health_cmd` with `health_interval`, `health_timeout`,
    /// `health_start_period` (seconds) and `health_retries`, `pull` (true: when missing, docker's
    /// default; false: never; "always"), `cmd` (the container's command: an array, or a string split
    /// into words), `args` (extra `docker run` options, e.g. `["--memory", "512m"]`). An effect.
    ///
    /// Fails with `kind` `image_missing` (not on the host and not pullable), `port_conflict`,
    /// `name_conflict` or `docker_unreachable`; a container that was created but could not start
    /// is removed again, so it does not hold the name.
    ///
    /// ```rhai
    /// let id = docker().run(#{image: "nginx:1.27", name: "web", ports: ["80:80"],
    ///                         volumes: ["/data/www:/usr/share/nginx/html:ro"],
    ///                         restart: "unless-stopped"});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run(ctx: NativeCallContext, d: &mut Docker, spec: Map) -> Res<String> {
        let run = Run::of(&ctx);
        Ok(d.run(&run, RunSpec::parse(spec)?)?)
    }

    /// The `docker create` command line `run(spec)` executes (then `docker start`), without running
    /// anything: checks a spec before acting on it. The values of environment variables are masked
    /// (`--env DB_PASSWORD=***`), as in messages and the journal.
    ///
    /// ```rhai
    /// print(docker().run_command(#{image: "nginx:1.27", name: "web", ports: ["80:80"]}));
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn run_command(d: &mut Docker, spec: Map) -> Res<String> {
        let spec = RunSpec::parse(spec)?;
        Ok(Command::Argv(d.argv(&spec.args.shown)).display())
    }

    /// Remove a container, running or not (`docker rm -f`). A container that does not exist is not
    /// an error (and a name that no container has removes nothing, even when it starts some
    /// container's id). An effect.
    ///
    /// ```rhai
    /// docker().rm("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn rm(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        let run = Run::of(&ctx);
        check_name(name, "docker rm")?;
        let action = format!("docker rm {name}");
        let op = Op::container(action.clone(), name);
        d.change(&run, &action, json!({"container": name}), |p| {
            let Some(target) = d.target(&run, name)? else {
                return Ok(());
            };
            let r = d.cli(
                &run,
                p,
                &["rm".into(), "-f".into(), target],
                d.timeout,
                None,
            )?;
            if r.ok() || r.says("no such container") {
                Ok(())
            } else {
                Err(d.failure(&op, &r))
            }
        })?;
        Ok(())
    }

    /// Whether a container of that name (or full id) exists, running or not.
    ///
    /// ```rhai
    /// if docker().exists("web") { print("web is there") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<bool> {
        Ok(d.inspect_json(&Run::of(&ctx), name)?.is_some())
    }

    /// Whether the container exists and is running.
    ///
    /// ```rhai
    /// if !docker().running("web") { docker().start("web") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn running(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<bool> {
        Ok(d.inspect_json(&Run::of(&ctx), name)?
            .is_some_and(|c| c["State"]["Running"].as_bool() == Some(true)))
    }

    /// `docker container inspect` of one container, as a map with docker's keys (`Id`, `Name`,
    /// `State`, `Config`, `NetworkSettings`, ...). A missing container is an error (`not_found`).
    ///
    /// ```rhai
    /// let c = docker().inspect("web");
    /// print(`${c.Config.Image} ${c.State.Status}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn inspect(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<Map> {
        let v = d.inspect(&Run::of(&ctx), name)?;
        Ok(to_dynamic(v).try_cast::<Map>().unwrap_or_default())
    }

    /// Every container, running or not: one map per container with docker's `ps` keys (`ID`,
    /// `Names`, `Image`, `State`, `Status`, `Ports`, `Labels`, ...).
    ///
    /// ```rhai
    /// for c in docker().ps() { print(`${c.Names}: ${c.State}`) }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ps(ctx: NativeCallContext, d: &mut Docker) -> Res<Array> {
        ps_with(ctx, d, Map::new())
    }

    /// `ps` with options: `all` (default true: stopped containers too), `filter` (a docker filter
    /// or an array of them, e.g. `"label=app=web"`, `"status=running"`).
    ///
    /// ```rhai
    /// let web = docker().ps(#{filter: "label=app=web"});
    /// ```
    #[rhai_fn(name = "ps", return_raw)]
    pub fn ps_with(ctx: NativeCallContext, d: &mut Docker, options: Map) -> Res<Array> {
        let run = Run::of(&ctx);
        let o = Opts::new(options, &["all", "filter"], "docker ps")?;
        let mut args = vec!["ps".to_string(), "--no-trunc".into()];
        if o.bool("all", true)? {
            args.push("--all".into());
        }
        for f in list(&o, "filter", "docker ps")? {
            args.extend(["--filter".into(), f]);
        }
        args.extend(["--format".into(), "{{json .}}".into()]);
        let op = Op::container("docker ps", d.host_name());
        let r = run.read(d.host_name(), |p| d.cli_ok(&run, p, &args, &op))?;
        let mut out = Array::new();
        for line in r.out.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).map_err(|e| {
                Failure::new(
                    Kind::Docker,
                    d.host_name(),
                    format!(
                        "{}: docker ps printed a line that is not JSON ({e}): {line}",
                        d.host_name()
                    ),
                )
            })?;
            out.push(to_dynamic(v));
        }
        Ok(out)
    }

    /// Stop a running container (`docker stop`: SIGTERM, then SIGKILL after the container's grace
    /// period, 10 s unless it was created with `--stop-timeout`). An effect; a missing container is
    /// an error (`not_found`).
    ///
    /// ```rhai
    /// docker().stop("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stop(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        stop_with(ctx, d, name, Map::new())
    }

    /// `stop` with options: `grace` (seconds between SIGTERM and SIGKILL, `docker stop --time`).
    ///
    /// ```rhai
    /// docker().stop("worker", #{grace: 60});
    /// ```
    #[rhai_fn(name = "stop", return_raw)]
    pub fn stop_with(ctx: NativeCallContext, d: &mut Docker, name: &str, options: Map) -> Res<()> {
        let grace = Opts::new(options, &["grace"], name)?.secs("grace")?;
        Ok(d.lifecycle(&Run::of(&ctx), "stop", name, grace)?)
    }

    /// Start a stopped container. An effect.
    ///
    /// ```rhai
    /// docker().start("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn start(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        Ok(d.lifecycle(&Run::of(&ctx), "start", name, None)?)
    }

    /// Restart a container (stop as `stop` does, then start). An effect.
    ///
    /// ```rhai
    /// docker().restart("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn restart(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        restart_with(ctx, d, name, Map::new())
    }

    /// `restart` with options: `grace` (seconds between SIGTERM and SIGKILL).
    ///
    /// ```rhai
    /// docker().restart("web", #{grace: 2});
    /// ```
    #[rhai_fn(name = "restart", return_raw)]
    pub fn restart_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        options: Map,
    ) -> Res<()> {
        let grace = Opts::new(options, &["grace"], name)?.secs("grace")?;
        Ok(d.lifecycle(&Run::of(&ctx), "restart", name, grace)?)
    }

    /// The container's whole log (its stdout, then its stderr).
    ///
    /// ```rhai
    /// print(docker().logs("web"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn logs(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<String> {
        logs_with(ctx, d, name, Map::new())
    }

    /// `logs` with options: `tail` (the last N lines), `since` (seconds ago, or anything
    /// `docker logs --since` takes, e.g. `"2024-05-01T10:00:00"`).
    ///
    /// ```rhai
    /// print(docker().logs("web", #{tail: 50}));
    /// ```
    #[rhai_fn(name = "logs", return_raw)]
    pub fn logs_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        options: Map,
    ) -> Res<String> {
        let run = Run::of(&ctx);
        check_name(name, "docker logs")?;
        let o = Opts::new(options, &["tail", "since"], name)?;
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
        let target = d
            .target(&run, name)?
            .ok_or_else(|| d.not_found(&what, name))?;
        args.push(target);
        let op = Op::container(what, name);
        let r = run.read(d.host_name(), |p| d.cli_ok(&run, p, &args, &op))?;
        Ok(format!("{}{}", r.out.stdout, r.out.stderr))
    }

    /// Run a command in a running container: a string goes through `sh -c`, an array is executed
    /// directly. Returns `#{code, stdout, stderr}`; a non-zero exit throws. Docker's own failures
    /// (`not_found`, `not_running`, `docker_unreachable`, `docker_missing`) throw even with
    /// `check: false`; the command's own exit code and output never count as docker's. An effect.
    ///
    /// ```rhai
    /// docker().exec("web", ["nginx", "-s", "reload"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exec(ctx: NativeCallContext, d: &mut Docker, name: &str, command: Dynamic) -> Res<Map> {
        exec_with(ctx, d, name, command, Map::new())
    }

    /// `exec` with options: `check` (default true: throw on a non-zero exit), `user`, `workdir`,
    /// `env` (a map), `stdin` (a string fed to the command), `read_only` (not an effect: runs under
    /// `--dry-run` and is not journaled).
    ///
    /// ```rhai
    /// let r = docker().exec("web", "nginx -t", #{check: false, read_only: true});
    /// if r.code != 0 { fail(r.stderr) }
    /// ```
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        command: Dynamic,
        options: Map,
    ) -> Res<Map> {
        let run = Run::of(&ctx);
        check_name(name, "docker exec")?;
        let o = Opts::new(
            options,
            &["check", "user", "workdir", "env", "stdin", "read_only"],
            name,
        )?;
        let cmd = exec_argv(&command, name)?;
        let stdin = o.string("stdin")?;
        let mut head = Args::of(["exec"]);
        if stdin.is_some() {
            head.push("--interactive");
        }
        head.flag("--user", o.string("user")?.into_iter().collect());
        head.flag("--workdir", o.string("workdir")?.into_iter().collect());
        head.env(pairs(&o, "env", name)?);
        let shown = Command::Argv(cmd.clone()).display();
        let check = o.bool("check", true)?;
        let action = format!("docker exec {name} `{shown}`");
        let op = Op::container(action.clone(), name);
        let exec = |p: &Permit| -> Result<Output, Failure> {
            let target = d
                .target(&run, name)?
                .ok_or_else(|| d.not_found(&action, name))?;
            let mut args = head.clone();
            args.push(target);
            for c in &cmd {
                args.push(c.clone());
            }
            let r = d.cli_args(&run, p, &args, d.timeout, stdin.clone())?;
            // docker's own failures (no such container, not running, engine unreachable, no docker
            // command) are not the command's exit code: they throw even with `check: false`.
            if !r.ok() && d.exec_failed(&run, name, &action, &r)? {
                return Err(d.failure(&op, &r));
            }
            if check {
                check_exit(d.host_name(), &r.shown, &r.out).map_err(|mut f| {
                    f.target = name.to_string();
                    f
                })?;
            }
            Ok(r.out)
        };
        let access = if o.bool("read_only", false)? {
            Access::Read
        } else {
            Access::Change {
                action: &action,
                details: json!({"container": name, "command": shown}),
            }
        };
        let out = run.gate(d.host_name(), access, exec)?;
        Ok(out.map_or_else(Output::skipped, |out| out.to_map()))
    }

    /// Pull an image from its registry. An effect; fails with `kind` `image_missing` when no
    /// registry is reachable or the registry does not have the image.
    ///
    /// ```rhai
    /// docker().pull("nginx:1.27");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn pull(ctx: NativeCallContext, d: &mut Docker, image: &str) -> Res<()> {
        let run = Run::of(&ctx);
        check_image(image, "docker pull")?;
        let action = format!("docker pull {image}");
        let op = Op {
            what: action.clone(),
            target: image.to_string(),
            image: Some(image.to_string()),
        };
        d.change(&run, &action, json!({"image": image}), |p| {
            let r = d.cli(
                &run,
                p,
                &["pull".into(), "--quiet".into(), image.into()],
                d.pull_timeout,
                None,
            )?;
            if r.ok() {
                Ok(())
            } else {
                Err(d.failure(&op, &r))
            }
        })?;
        Ok(())
    }

    /// Whether the image is present on the host (no registry is asked).
    ///
    /// ```rhai
    /// if !docker().image_exists("nginx:1.27") { docker().pull("nginx:1.27") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn image_exists(ctx: NativeCallContext, d: &mut Docker, image: &str) -> Res<bool> {
        let run = Run::of(&ctx);
        check_image(image, "docker image inspect")?;
        let args = [
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            image.into(),
        ];
        let r = run.read(d.host_name(), |p| d.cli(&run, p, &args, d.timeout, None))?;
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
            Err(d.failure(&op, &r).into())
        }
    }

    /// Wait until the container is running and, when it has a health check, healthy; without a
    /// health check, until it has been seen running for a second. A container that exits, restarts
    /// or turns unhealthy fails at once (`kind` `container_exited` or `unhealthy`) with its last log
    /// lines in the message; after `timeout` seconds, `kind` `timeout`.
    ///
    /// ```rhai
    /// docker().wait_healthy("web", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_healthy(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        wait_healthy_with(ctx, d, name, timeout, Map::new())
    }

    /// `wait_healthy` with options: `min_uptime` (seconds a container without a health check must
    /// be seen running, default 1), `interval` (seconds between checks, default 0.25).
    ///
    /// ```rhai
    /// docker().wait_healthy("worker", 60, #{min_uptime: 5});
    /// ```
    #[rhai_fn(name = "wait_healthy", return_raw)]
    pub fn wait_healthy_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        timeout: Dynamic,
        options: Map,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let timeout = crate::opts::seconds(&timeout, name, "the timeout")?;
        let o = Opts::new(options, &["min_uptime", "interval"], name)?;
        let min_uptime = o.secs("min_uptime")?.unwrap_or(Duration::from_secs(1));
        let interval = o
            .secs("interval")?
            .unwrap_or(Duration::from_millis(250))
            .max(Duration::from_millis(10));
        Ok(d.wait_healthy(&run, name, timeout, min_uptime, interval)?)
    }
}
