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

/// A failed operation, as thrown into the script: a map `#{kind, target, message}`.
///
/// `kind` lets scripts branch (`if e.kind == "timeout"`), `target` names what was acted on (a socket,
/// a host, a URL, a pid), `message` is a whole sentence that reads well when printed as is.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: String,
    pub target: String,
    pub message: String,
}

impl Failure {
    pub fn new(kind: &str, target: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            kind: kind.to_string(),
            target: target.into(),
            message: message.into(),
        }
    }

    /// A bad argument or option given by the script.
    pub fn usage(target: impl Into<String>, message: impl Into<String>) -> Self {
        Failure::new("usage", target, message)
    }

    pub fn timeout(target: &str, what: &str, secs: f64) -> Self {
        Failure::new(
            "timeout",
            target,
            format!("{target}: {what} timed out after {}", fmt_secs(secs)),
        )
    }

    pub fn interrupted(target: &str) -> Self {
        Failure::new("interrupted", target, format!("{target}: interrupted"))
    }

    /// The map thrown into the script.
    pub fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("kind".into(), self.kind.clone().into());
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
