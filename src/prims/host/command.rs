//! A command as a script gives it, its options, and its result.

use std::path::PathBuf;
use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use crate::error::{Failure, Kind};
use crate::opts::Opts;
use crate::prims::privilege::BecomeOpts;

/// A command as the script gave it: a string for the shell, or an argument vector run directly.
#[derive(Debug, Clone)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

impl Command {
    pub fn from_script(v: &Dynamic, host: &str) -> Result<Self, Failure> {
        if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
            if s.trim().is_empty() {
                return Err(Failure::usage(
                    host,
                    format!("{host}: run: the command is empty"),
                ));
            }
            return Ok(Command::Shell(s.to_string()));
        }
        if let Some(a) = v.read_lock::<Array>() {
            let argv: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            if argv.is_empty() {
                return Err(Failure::usage(
                    host,
                    format!("{host}: run: the command array is empty"),
                ));
            }
            return Ok(Command::Argv(argv));
        }
        Err(Failure::usage(
            host,
            format!(
                "{host}: run: the command must be a string or an array, not {}",
                v.type_name()
            ),
        ))
    }

    /// The command as a user would type it in a shell (array arguments quoted).
    pub fn display(&self) -> String {
        match self {
            Command::Shell(s) => s.clone(),
            Command::Argv(a) => quote_all(a),
        }
    }
}

/// Arguments quoted for a POSIX shell.
pub fn quote_all<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One argument quoted for a POSIX shell (a NUL byte, which no argument can hold, is dropped).
pub fn quote(arg: &str) -> String {
    let clean: String = arg.chars().filter(|c| *c != '\0').collect();
    shlex::try_quote(&clean)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("'{}'", clean.replace('\'', "'\\''")))
}

/// How much of each output stream a command keeps unless `max_output` says otherwise: 64 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

/// The option keys of `run`.
pub const RUN_KEYS: &[&str] = &[
    "check",
    "timeout",
    "stdin",
    "env",
    "cwd",
    "become",
    "become_user",
    "sudo",
    "read_only",
    "max_output",
];

/// The options of `run`.
pub struct RunOpts {
    pub check: bool,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// `become`, `become_user`, `sudo`.
    pub privilege: BecomeOpts,
    pub read_only: bool,
    /// Show the output live under `-v`: a user's command, not runner's own probes (whose output,
    /// e.g. `docker inspect` JSON with environment values, is nobody's business on a terminal).
    pub stream: bool,
    /// Bytes kept of stdout and of stderr each; a command that writes more fails with
    /// `output_limit`.
    pub max_output: usize,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            check: false,
            timeout: None,
            stdin: None,
            env: Vec::new(),
            cwd: None,
            privilege: BecomeOpts::default(),
            read_only: false,
            stream: false,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

impl RunOpts {
    pub fn parse(opts: Map, host: &str) -> Result<Self, Failure> {
        let o = Opts::new(opts, RUN_KEYS, host)?;
        let max_output = match o.int("max_output")? {
            None => DEFAULT_MAX_OUTPUT,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(Failure::usage(
                    host,
                    format!("{host}: run: max_output must be at least 1 (bytes), not {n}"),
                ))
            }
        };
        Ok(RunOpts {
            check: o.bool("check", true)?,
            timeout: o.secs("timeout")?,
            stdin: o.string("stdin")?,
            env: o.string_map("env")?,
            cwd: o.string("cwd")?,
            privilege: BecomeOpts::parse(&o)?,
            read_only: o.bool("read_only", false)?,
            stream: true,
            max_output,
        })
    }

    /// Options for an internal, read-only command whose exit code the caller interprets.
    pub fn probe() -> Self {
        RunOpts {
            read_only: true,
            ..Default::default()
        }
    }
}

/// The "signal number" of a remote command killed by a signal SSH did not name.
pub(super) const UNKNOWN_SIGNAL: i32 = 0;

/// What a finished command returned.
pub struct Output {
    pub code: i64,
    /// The signal that killed it, if any (`UNKNOWN_SIGNAL` when SSH did not say which).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The first stream that carried more than `max_output` bytes: its name and how many.
    pub overflow: Option<(&'static str, u64)>,
}

impl Output {
    /// `#{code, stdout, stderr}` as scripts see it.
    pub fn to_map(self) -> Map {
        let mut m = Map::new();
        m.insert("code".into(), self.code.into());
        m.insert("stdout".into(), self.stdout.into());
        m.insert("stderr".into(), self.stderr.into());
        m
    }

    /// What a command skipped by `--dry-run` returns: code 0, no output, and `dry_run: true`.
    pub fn skipped() -> Map {
        let mut m = Output {
            code: 0,
            signal: None,
            stdout: String::new(),
            stderr: String::new(),
            overflow: None,
        }
        .to_map();
        m.insert("dry_run".into(), true.into());
        m
    }
}

/// Where a command's standard input comes from.
pub enum Input {
    Null,
    Text(String),
    /// Streamed from a local file (uploads: nothing large goes through memory).
    File(PathBuf),
}

/// Where a command's standard output goes.
pub enum Sink {
    Capture,
    /// Streamed into a local file (downloads).
    File(PathBuf),
}

/// The most of a command's error output that a message (and so the journal) carries.
const TAIL_MAX: usize = 2048;

/// The last lines of a command's error output, at most `TAIL_MAX` bytes of them, for a message.
pub(super) fn tail(s: &str, lines: usize) -> String {
    let s = s.trim_end();
    let mut start = s.len();
    for _ in 0..lines {
        match s[..start].rfind('\n') {
            Some(i) => start = i,
            None => {
                start = 0;
                break;
            }
        }
    }
    let mut tail = s[start..].trim_start_matches('\n');
    if tail.len() > TAIL_MAX {
        let mut cut = tail.len() - TAIL_MAX;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = &tail[cut..];
        return format!("…{tail}");
    }
    tail.to_string()
}

/// Bytes as a person reads them: `512 bytes`, `976.6 KiB`, `64 MiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let shown = format!("{value:.1}");
    let shown = shown.strip_suffix(".0").unwrap_or(&shown);
    format!("{shown} {}", UNITS[unit])
}

/// A command that wrote more than `max_output` bytes to a stream, as a failure naming host, command,
/// how much it wrote and how it ended.
pub fn check_output(host: &str, shown: &str, out: &Output, limit: usize) -> Result<(), Failure> {
    let Some((stream, written)) = out.overflow else {
        return Ok(());
    };
    let ended = match out.signal {
        Some(UNKNOWN_SIGNAL) => "was killed by a signal".to_string(),
        Some(sig) => format!("was killed by signal {sig}"),
        None => format!("exited with code {}", out.code),
    };
    let limit = fmt_bytes(limit as u64);
    Err(Failure::new(
        Kind::OutputLimit,
        host,
        format!(
            "{host}: `{shown}` wrote {} to {stream}, more than max_output ({limit}): what came past {limit} was discarded; the command {ended}",
            fmt_bytes(written)
        ),
    ))
}

/// A non-zero exit, a signal, or a command that was not found, as a failure naming host and command.
pub fn check_exit(host: &str, shown: &str, out: &Output) -> Result<(), Failure> {
    let stderr = tail(&out.stderr, 5);
    let detail = if stderr.is_empty() {
        String::new()
    } else {
        format!(":\n{stderr}")
    };
    match out.signal {
        Some(UNKNOWN_SIGNAL) => {
            return Err(Failure::new(
                Kind::Signal,
                host,
                format!("{host}: `{shown}` was killed by a signal{detail}"),
            ))
        }
        Some(sig) => {
            return Err(Failure::new(
                Kind::Signal,
                host,
                format!("{host}: `{shown}` was killed by signal {sig}{detail}"),
            ))
        }
        None => {}
    }
    match out.code {
        0 => Ok(()),
        127 => Err(Failure::new(
            Kind::NotFound,
            host,
            format!("{host}: `{shown}`: command not found (exit code 127){detail}"),
        )),
        code => Err(Failure::new(
            Kind::Exit,
            host,
            format!("{host}: `{shown}` exited with code {code}{detail}"),
        )),
    }
}
