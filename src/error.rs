//! Errors: the one `Error` enum the CLI turns into an exit code, and `Failure`, the error a primitive
//! throws into a script.

use std::fmt;

use rhai::{Dynamic, EvalAltResult, Map, Position};

/// Everything that can stop a run, each with its documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line, unreadable script or parameter file.
    #[error("{0}")]
    Usage(String),
    /// The script (or a module it imports) does not compile or an import cannot be resolved.
    /// The text is already rendered with file:line:col and the source line.
    #[error("{0}")]
    Compile(String),
    /// The script ran and failed. The text is already rendered.
    #[error("{0}")]
    Script(String),
    /// Ctrl-C: the run stopped at an operation boundary.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// The process exit code for this error: 2 usage/compile/import, 1 script failure, 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Compile(_) => 2,
            Error::Script(_) => 1,
            Error::Interrupted => 130,
        }
    }
}

/// What kind of failure a script sees in `e.kind`: one documented word per cause, so scripts branch
/// on it (`if e.kind == "timeout" { ... }`). `runner doc` lists them all.
macro_rules! kinds {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $(#[doc = $doc] $variant,)*
        }

        impl Kind {
            /// Every kind, in the order `runner doc` lists them.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The word scripts see in `e.kind`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            /// What it means, for `runner doc`.
            pub fn doc(self) -> &'static str {
                match self {
                    $(Kind::$variant => $doc,)*
                }
            }
        }
    };
}

kinds! {
    Usage = "usage": "a bad argument or option in the script (a typo, a wrong type, a value out of range); nothing was done",
    Timeout = "timeout": "an operation or a wait did not finish in time; the message says what was seen last",
    Interrupted = "interrupted": "the run was interrupted (Ctrl-C, or the traffic guard): the script stops at this operation",
    Deadline = "deadline": "an operation cut short because the wait around it ran out of time (the wait then fails with `timeout`)",
    Fail = "fail": "`fail(message)` in a script",
    Script = "script": "an error thrown by a script closure inside a primitive",
    Parallel = "parallel": "items of `parallel` failed; the message names each one",
    Confirm = "confirm": "`confirm` could not ask: no terminal and no `--yes`",
    Refused = "refused": "`confirm` was answered no: the run stops there",
    Io = "io": "reading or writing a file, socket or pipe failed",
    Journal = "journal": "the run journal could not be written (the run stops: no change goes unrecorded)",
    Internal = "internal": "a bug in runner (please report it)",
    Exec = "exec": "a command could not be started",
    Exit = "exit": "a command exited with a non-zero code",
    Signal = "signal": "a command was killed by a signal",
    OutputLimit = "output_limit": "a command wrote more than `max_output` bytes (64 MiB unless `run` says otherwise) to stdout or stderr; the rest was discarded",
    NotFound = "not_found": "no such file, command (exit code 127), process or container",
    Permission = "permission": "not permitted: a file, a process of another user, or an HAProxy socket below level admin",
    Become = "become": "running as another user (`become`, `sudo`) was refused: sudo asks for a password (runner runs `sudo -n`, never prompting), the user may not use sudo, or sudo is missing",
    Template = "template": "a template does not render: a syntax error, or a variable it uses is not defined (the message names it and the line)",
    Connect = "connect": "cannot connect to a socket (is the program running there?)",
    ConnectionRefused = "connection_refused": "SSH: the host refused the connection",
    ConnectTimeout = "connect_timeout": "SSH: no working connection within the connect timeout",
    Auth = "auth": "SSH: authentication failed",
    HostKey = "host_key": "SSH: the host's key is unknown or has changed",
    Resolve = "resolve": "SSH: the host name does not resolve",
    Connection = "connection": "SSH: the connection failed or dropped",
    Ssh = "ssh": "SSH: runner could not prepare its connection (control directory)",
    Http = "http": "an HTTP request failed (connection refused, reset, bad URL)",
    Haproxy = "haproxy": "HAProxy refused a command or answered something unexpected; the message quotes it",
    NoSuchServer = "no_such_server": "HAProxy has no such server",
    NoSuchBackend = "no_such_backend": "HAProxy has no such backend",
    NoSuchFrontend = "no_such_frontend": "HAProxy has no such frontend",
    UnknownCommand = "unknown_command": "HAProxy does not know the command at this socket's level",
    StaticAlgorithm = "static_algorithm": "the backend's algorithm is static: only weights 0 and 100% are accepted",
    NotConfigured = "not_configured": "the server has no health check or agent to change",
    NoSuchProcess = "no_such_process": "a master CLI worker that is gone, or no worker left",
    ReloadFailed = "reload_failed": "a master CLI reload failed: the previous workers keep running",
    UnknownOutcome = "unknown_outcome": "a change was sent and its answer lost: it may have been applied",
    Locked = "locked": "a lock is held by another run (the message names its owner: pid, user, host, script, since), or was left by a run that is gone (stale: `runner unlock` breaks it)",
    PidFile = "pid_file": "a pid file is empty or holds no pid",
    Docker = "docker": "a docker command failed; the message quotes docker",
    DockerMissing = "docker_missing": "the docker command is not installed on the host",
    DockerUnreachable = "docker_unreachable": "the docker engine of the host does not answer (or this user may not use it)",
    NameConflict = "name_conflict": "a container of that name exists already",
    PortConflict = "port_conflict": "a published port is in use on the host",
    ImageMissing = "image_missing": "the image is not on the host and cannot be pulled",
    NotRunning = "not_running": "the container is not running",
    ContainerExited = "container_exited": "the container exited (or restarted) while it was waited for",
    Unhealthy = "unhealthy": "the container's health check failed",
}

impl Kind {
    /// Whether an error of this kind stops a wait or a retry instead of counting as one failed
    /// observation: the run was interrupted, or the wait around the operation ran out of time.
    /// A probe that treats errors as "not yet" must pass these on.
    pub fn is_interruption(self) -> bool {
        matches!(self, Kind::Interrupted | Kind::Deadline)
    }

    /// The kind named by `word`, if it is one of runner's.
    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == word)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed operation, as thrown into the script: a map `#{kind, target, message}`.
///
/// `kind` lets scripts branch (`if e.kind == "timeout"`), `target` names what was acted on (a socket,
/// a host, a URL, a pid), `message` is a whole sentence that reads well when printed as is.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub target: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, target: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind,
            target: target.into(),
            message: message.into(),
        }
    }

    /// A bad argument or option given by the script.
    pub fn usage(target: impl Into<String>, message: impl Into<String>) -> Self {
        Failure::new(Kind::Usage, target, message)
    }

    pub fn timeout(target: &str, what: &str, secs: f64) -> Self {
        Failure::new(
            Kind::Timeout,
            target,
            format!("{target}: {what} timed out after {}", fmt_secs(secs)),
        )
    }

    pub fn interrupted(target: &str) -> Self {
        Failure::new(Kind::Interrupted, target, format!("{target}: interrupted"))
    }

    /// The map thrown into the script.
    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("kind".into(), self.kind.as_str().into());
        m.insert("target".into(), self.target.clone().into());
        m.insert("message".into(), self.message.clone().into());
        m
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Failure> for Box<EvalAltResult> {
    fn from(f: Failure) -> Self {
        EvalAltResult::ErrorRuntime(Dynamic::from_map(f.to_map()), Position::NONE).into()
    }
}

/// The kind of a script error: `kind` of a thrown map, "interrupted" for a terminated run.
pub fn error_kind(err: &EvalAltResult) -> Option<String> {
    match innermost(err) {
        EvalAltResult::ErrorRuntime(v, _) => v
            .read_lock::<Map>()
            .and_then(|m| m.get("kind").map(|k| k.to_string())),
        EvalAltResult::ErrorTerminated(..) => Some("interrupted".into()),
        _ => None,
    }
}

/// The error at the bottom of a chain of function calls and module imports.
pub fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => innermost(inner),
        e => e,
    }
}

/// The message of one error, without Rhai's " (line x, position y)" suffix: a thrown map shows its
/// `message`, a thrown string shows itself.
pub fn error_message(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(v, _) => {
            if let Some(m) = v.read_lock::<Map>() {
                if let Some(msg) = m.get("message") {
                    return msg.to_string();
                }
            }
            v.to_string()
        }
        EvalAltResult::ErrorTerminated(..) => "interrupted".into(),
        EvalAltResult::ErrorModuleNotFound(msg, _) => msg.clone(),
        e => {
            let mut s = e.to_string();
            if let Some(i) = s.rfind(" (line ").filter(|_| s.ends_with(')')) {
                s.truncate(i);
            }
            s
        }
    }
}

/// Seconds as a user reads them: `3s`, `0.5s`, `1.25s`.
pub fn fmt_secs(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}s", secs as i64)
    } else {
        format!("{}s", (secs * 1000.0).round() / 1000.0)
    }
}
