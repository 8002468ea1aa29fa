//! Invoking the docker CLI on the host: one command through `Host::exec` (which needs a `Permit`),
//! docker's error text sorted into kinds a script can branch on, and the container a name means
//! (`docker inspect`, never an id prefix docker would guess).

use std::time::Duration;

use rhai::Dynamic;
use serde_json::Value;

use super::handle::Docker;
use super::spec::{check_name, Args};
use crate::effect::Permit;
use crate::error::{Failure, Kind};
use crate::prims::host::{Command, Input, Output, RunOpts, Sink};
use crate::run::Run;

/// What one docker command printed.
pub(super) struct Reply {
    pub(super) out: Output,
    /// The command as a user would type it, with the values of environment variables masked.
    pub(super) shown: String,
}

impl Reply {
    pub(super) fn ok(&self) -> bool {
        self.out.code == 0 && self.out.signal.is_none()
    }

    /// Whether docker's error output contains `text` (given in lower case; matched ignoring case).
    pub(super) fn says(&self, text: &str) -> bool {
        self.out.stderr.to_ascii_lowercase().contains(text)
    }

    /// Docker's error in a few words: the meaningful lines of stderr, without the CLI's prefixes and
    /// its "Run 'docker run --help'" hint.
    pub(super) fn said(&self) -> String {
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
pub(super) struct Op {
    pub(super) what: String,
    pub(super) target: String,
    /// The image the operation needs, when a missing image is a possible cause.
    pub(super) image: Option<String>,
}

impl Op {
    pub(super) fn container(what: impl Into<String>, name: &str) -> Self {
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

impl Docker {
    /// Run `docker ARGS...` on the host and return what it printed, whatever its exit code. Not an
    /// effect by itself: read-only commands call it directly, changes call it inside `change`, so
    /// each docker change is journaled once, as a docker action.
    pub(super) fn cli(
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
    pub(super) fn cli_args(
        &self,
        run: &Run,
        p: &Permit,
        args: &Args,
        timeout: Duration,
        stdin: Option<String>,
    ) -> Result<Reply, Failure> {
        let cmd = Command::Argv(self.argv(&args.real));
        let shown = self.shown(args);
        let o = RunOpts {
            timeout: Some(timeout),
            privilege: self.privilege.clone(),
            ..RunOpts::probe()
        };
        let input = stdin.map(Input::Text).unwrap_or(Input::Null);
        let out = self
            .host()
            .exec(run, p, &cmd, &o, input, Sink::Capture)
            .map_err(|mut f| {
                // A timeout names the command: as shown, never with the secrets.
                f.message = f.message.replace(&cmd.display(), &shown);
                f
            })?;
        Ok(Reply { out, shown })
    }

    /// `cli` for a command that must succeed; a failure is classified.
    pub(super) fn cli_ok(
        &self,
        run: &Run,
        p: &Permit,
        args: &[String],
        op: &Op,
    ) -> Result<Reply, Failure> {
        let r = self.cli(run, p, args, self.timeout, None)?;
        if r.ok() {
            Ok(r)
        } else {
            Err(self.failure(op, &r))
        }
    }

    /// Docker's error output, sorted into a failure a script can branch on (`kind`) and a message
    /// naming the host, the operation and what to do about it.
    pub(super) fn failure(&self, op: &Op, r: &Reply) -> Failure {
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
    pub(super) fn exec_failed(
        &self,
        run: &Run,
        name: &str,
        what: &str,
        r: &Reply,
    ) -> Result<bool, Failure> {
        let first = r.out.stderr.lines().map(str::trim).find(|l| !l.is_empty());
        let said = |prefix: &str| {
            first.is_some_and(|l| {
                l.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
        };
        if DOCKER_ERRORS.iter().any(|p| said(p))
            || (self.privilege.resolve(self.host().privilege()).is_some() && said("sudo: "))
        {
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
    pub(super) fn not_found(&self, what: &str, name: &str) -> Failure {
        Failure::new(
            Kind::NotFound,
            name,
            format!("{}: {what}: no such container", self.host_name()),
        )
    }

    /// `docker container inspect NAME` as JSON, when NAME is exactly a container's name or full id;
    /// None when no container has that name or id, even if docker would take NAME for the prefix of
    /// some container's id (see `may_be_id_prefix`).
    pub(super) fn inspect_json(&self, run: &Run, name: &str) -> Result<Option<Value>, Failure> {
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

    /// The container `name` means, as docker is to be given it: `name` itself when docker can only
    /// read it exactly, else the id of the container named exactly so. None: there is no such
    /// container (whatever container ids start with `name`).
    pub(super) fn target(&self, run: &Run, name: &str) -> Result<Option<String>, Failure> {
        if !may_be_id_prefix(name) {
            return Ok(Some(name.to_string()));
        }
        Ok(self
            .inspect_json(run, name)?
            .and_then(|c| c["Id"].as_str().map(str::to_string)))
    }
}

/// JSON docker printed, as a script value: objects are maps, arrays are arrays, integers `INT`,
/// other numbers `FLOAT`, null `()`.
pub(super) fn script_value(v: &Value) -> Dynamic {
    // Every JSON value has a script value (object keys are strings), so this cannot fail.
    rhai::serde::to_dynamic(v).expect("a JSON value converts to a script value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_from_docker_keeps_ints_floats_and_null_as_scripts_saw_them() {
        let v: Value = serde_json::from_str(
            r#"{"int": -3, "max": 9223372036854775807, "min": -9223372036854775808,
                "huge": 18446744073709551615, "float": 1.5, "whole": 2.0, "null": null,
                "list": [1, "x", true, {"k": null}]}"#,
        )
        .unwrap();
        let m = script_value(&v).cast::<rhai::Map>();
        assert_eq!(m["int"].as_int(), Ok(-3));
        assert_eq!(m["max"].as_int(), Ok(i64::MAX));
        assert_eq!(m["min"].as_int(), Ok(i64::MIN));
        // Beyond i64, as before: a float.
        assert_eq!(m["huge"].as_float(), Ok(u64::MAX as f64));
        assert_eq!(m["float"].as_float(), Ok(1.5));
        // Written with a point, a float even when whole.
        assert_eq!(m["whole"].as_float(), Ok(2.0));
        assert!(m["null"].is_unit());
        let list = m["list"].clone().cast::<rhai::Array>();
        assert_eq!(list[0].as_int(), Ok(1));
        assert_eq!(list[1].clone().into_string().as_deref(), Ok("x"));
        assert_eq!(list[2].as_bool(), Ok(true));
        assert!(list[3].clone().cast::<rhai::Map>()["k"].is_unit());
    }
}
