//! Hosts: where commands run and files live. `local()` is this machine, `ssh(...)` and `hosts(group)`
//! are remote ones; both are the same `Host` type with the same methods, so one playbook runs against
//! either.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::{Failure, Kind};
use crate::inventory::Entry;
use crate::opts::Opts;
use crate::prims::ssh::SshTarget;
use crate::run::Run;

/// A machine commands run on: this one (`local()`), or a remote one over SSH.
#[derive(Clone)]
pub struct Host(Arc<HostInner>);

struct HostInner {
    name: String,
    vars: Map,
    transport: Transport,
}

/// How commands reach a host.
#[derive(Debug, Clone)]
pub enum Transport {
    Local,
    Ssh(SshTarget),
}

impl Host {
    pub fn local() -> Self {
        Host::new("local", Map::new(), Transport::Local)
    }

    pub fn new(name: &str, vars: Map, transport: Transport) -> Self {
        Host(Arc::new(HostInner {
            name: name.to_string(),
            vars,
            transport,
        }))
    }

    /// The name messages and the journal use: the inventory name, or the address as given.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn vars(&self) -> &Map {
        &self.0.vars
    }

    pub fn transport(&self) -> &Transport {
        &self.0.transport
    }

    /// Whether commands run on this machine (no SSH).
    pub fn is_local(&self) -> bool {
        matches!(self.0.transport, Transport::Local)
    }
}

/// An inventory entry's handle: its name, its vars, and SSH unless it is `connection = "local"`.
impl From<&Entry> for Host {
    fn from(e: &Entry) -> Self {
        let transport = match &e.ssh {
            Some(t) => Transport::Ssh(t.clone()),
            None => Transport::Local,
        };
        Host::new(&e.name, e.vars.clone(), transport)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({})", self.0.name)
    }
}

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

/// The options of `run`.
#[derive(Default)]
pub struct RunOpts {
    pub check: bool,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub sudo: bool,
    pub read_only: bool,
    /// Show the output live under `-v`: a user's command, not runner's own probes (whose output,
    /// e.g. `docker inspect` JSON with environment values, is nobody's business on a terminal).
    pub stream: bool,
}

impl RunOpts {
    pub fn parse(opts: Map, host: &str) -> Result<Self, Failure> {
        let o = Opts::new(
            opts,
            &[
                "check",
                "timeout",
                "stdin",
                "env",
                "cwd",
                "sudo",
                "read_only",
            ],
            host,
        )?;
        Ok(RunOpts {
            check: o.bool("check", true)?,
            timeout: o.secs("timeout")?,
            stdin: o.string("stdin")?,
            env: o.string_map("env")?,
            cwd: o.string("cwd")?,
            sudo: o.bool("sudo", false)?,
            read_only: o.bool("read_only", false)?,
            stream: true,
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
const UNKNOWN_SIGNAL: i32 = 0;

/// What a finished command returned.
pub struct Output {
    pub code: i64,
    /// The signal that killed it, if any (`UNKNOWN_SIGNAL` when SSH did not say which).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("code".into(), self.code.into());
        m.insert("stdout".into(), self.stdout.clone().into());
        m.insert("stderr".into(), self.stderr.clone().into());
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

/// The last lines of a command's error output, for a message.
fn tail(s: &str, lines: usize) -> String {
    let all: Vec<&str> = s.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Host {
    /// Run a command and check its exit code (unless `check: false`); an effect unless `read_only`.
    pub fn run_command(&self, run: &Run, cmd: &Command, o: &RunOpts) -> Result<Map, Failure> {
        let host = self.name();
        let shown = cmd.display();
        let op = || -> Result<Output, Failure> {
            let input = o.stdin.clone().map(Input::Text).unwrap_or(Input::Null);
            let out = self.exec(run, cmd, o, input, Sink::Capture)?;
            if o.check {
                check_exit(host, &shown, &out)?;
            }
            Ok(out)
        };
        let out = if o.read_only {
            run.check_cancel(host)?;
            Some(op()?)
        } else {
            run.effect(
                host,
                &format!("run `{shown}`"),
                json!({"command": shown}),
                op,
            )?
        };
        Ok(match out {
            Some(out) => out.to_map(),
            None => {
                let mut m = Output {
                    code: 0,
                    signal: None,
                    stdout: String::new(),
                    stderr: String::new(),
                }
                .to_map();
                m.insert("dry_run".into(), true.into());
                m
            }
        })
    }

    /// Run `cmd` on the host with the given input and output, under the options' timeout and Ctrl-C.
    pub fn exec(
        &self,
        run: &Run,
        cmd: &Command,
        o: &RunOpts,
        input: Input,
        sink: Sink,
    ) -> Result<Output, Failure> {
        let host = self.name();
        let what = format!("`{}`", cmd.display());
        run.block_on(host, &what, o.timeout, async {
            match self.transport() {
                Transport::Local => exec_local(run, host, cmd, o, &input, &sink).await,
                Transport::Ssh(target) => exec_ssh(run, host, target, cmd, o, &input, &sink).await,
            }
        })
    }

    /// A read-only shell command for the host's own primitives (file checks and the like).
    fn probe(&self, run: &Run, script: &str, input: Input, sink: Sink) -> Result<Output, Failure> {
        self.exec(
            run,
            &Command::Shell(script.to_string()),
            &RunOpts::probe(),
            input,
            sink,
        )
    }

    /// Write a file on the host atomically (temp file in the same folder + rename; an existing
    /// file keeps its mode).
    fn put(&self, run: &Run, path: &str, input: Input) -> Result<(), Failure> {
        let host = self.name();
        match (self.transport(), &input) {
            (Transport::Local, Input::Text(t)) => write_atomic(Path::new(path), t.as_bytes())
                .map_err(|e| io_failure(host, "cannot write", path, e)),
            (Transport::Local, Input::File(src)) => {
                copy_atomic(src, Path::new(path)).map_err(|e| {
                    io_failure(host, &format!("cannot copy {} to", src.display()), path, e)
                })
            }
            _ => {
                let p = quote(path);
                let script = format!(
                    "set -e; d=$(dirname -- {p}); b=$(basename -- {p}); t=\"$d/.$b.runner-$$\"; trap 'rm -f \"$t\"' EXIT; \
                     cat > \"$t\"; if [ -e {p} ]; then chmod --reference={p} \"$t\" 2>/dev/null || true; fi; mv -f \"$t\" {p}; trap - EXIT"
                );
                let out = self.probe(run, &script, input, Sink::Capture)?;
                check_file_op(host, "cannot write", path, &out)
            }
        }
    }
}

/// A file operation's shell command failed: say what and where, with the shell's words.
fn check_file_op(host: &str, what: &str, path: &str, out: &Output) -> Result<(), Failure> {
    if out.code == 0 {
        return Ok(());
    }
    let err = tail(&out.stderr, 3);
    let kind = if err.contains("No such file") {
        Kind::NotFound
    } else {
        Kind::Io
    };
    Err(Failure::new(
        kind,
        host,
        format!(
            "{host}: {what} {path}: {}",
            if err.is_empty() {
                format!("exit code {}", out.code)
            } else {
                err
            }
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

async fn exec_local(
    run: &Run,
    host: &str,
    cmd: &Command,
    o: &RunOpts,
    input: &Input,
    sink: &Sink,
) -> Result<Output, Failure> {
    let mut argv: Vec<String> = match cmd {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        Command::Argv(a) => a.clone(),
    };
    if o.sudo {
        argv.splice(0..0, ["sudo".to_string(), "-n".into(), "--".into()]);
    }
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(if matches!(input, Input::Null) {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout or Ctrl-C stops the command's children too.
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in &o.env {
        c.env(k, v);
    }
    if let Some(dir) = &o.cwd {
        c.current_dir(dir);
    }
    let shown = cmd.display();
    let mut child = match c.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Output {
                code: 127,
                signal: None,
                stdout: String::new(),
                stderr: format!("{}: {e}", argv[0]),
            })
        }
        Err(e) => {
            return Err(Failure::new(
                Kind::Exec,
                host,
                format!("{host}: cannot start `{shown}`: {e}"),
            ))
        }
    };
    let mut guard = StopOnDrop::new(StopTarget::Local(child.id()));
    let (stdout, stderr) = drive(
        run,
        host,
        Pipes {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            stderr: child.stderr.take().unwrap(),
            live: o.stream,
            pid: None,
        },
        input,
        sink,
    )
    .await?;
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::new(Kind::Exec, host, format!("{host}: `{shown}`: {e}")))?;
    guard.disarm();
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        code: status.code().map(i64::from).unwrap_or(-1),
        signal: status.signal(),
        stdout,
        stderr,
    })
}

/// The command line the remote shell runs: options become shell syntax around the quoted command.
fn remote_line(cmd: &Command, o: &RunOpts) -> String {
    let mut line = match cmd {
        Command::Shell(s) => s.clone(),
        Command::Argv(a) => quote_all(a),
    };
    if o.sudo {
        line = format!("sudo -n -- sh -c {}", quote(&line));
    }
    if let Some(dir) = &o.cwd {
        line = format!("cd {} && {line}", quote(dir));
    }
    if !o.env.is_empty() {
        let exports: Vec<String> = o
            .env
            .iter()
            .map(|(k, v)| format!("export {}={};", k, quote(v)))
            .collect();
        line = format!("{} {line}", exports.join(" "));
    }
    line
}

async fn exec_ssh(
    run: &Run,
    host: &str,
    target: &SshTarget,
    cmd: &Command,
    o: &RunOpts,
    input: &Input,
    sink: &Sink,
) -> Result<Output, Failure> {
    // The login shell reports its pid first: sshd made it a session leader, so its process group
    // is the whole command, which a timeout or Ctrl-C then stops (closing the channel does not).
    let line = format!("echo {PID_MARK}$$ >&2; {}", remote_line(cmd, o));
    let shown = cmd.display();
    // A master that died since the last command (idle timeout, sshd restart) is reopened once; the
    // command has not started when spawning fails, so trying again cannot run it twice.
    let mut attempt = 0;
    loop {
        let conn = run.ssh.connect(host, target).await?;
        // Holds a session slot for as long as the command runs.
        let _slot = conn
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut c = conn.session.raw_command(&line);
        c.stdin(if matches!(input, Input::Null) {
            openssh::Stdio::null()
        } else {
            openssh::Stdio::piped()
        })
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped());
        let mut child = match c.spawn().await {
            Ok(child) => child,
            Err(e) if attempt == 0 => {
                run.report
                    .debug(&format!("{host}: reconnecting after: {e}"));
                run.ssh.forget(target).await;
                attempt += 1;
                continue;
            }
            Err(e) => {
                return Err(Failure::new(
                    Kind::Connection,
                    host,
                    format!("{host}: cannot run `{shown}`: {e}"),
                ))
            }
        };
        let pid = std::sync::Mutex::new(None);
        let mut guard = StopOnDrop::new(StopTarget::Remote(
            conn.session.control_socket().to_path_buf(),
            &pid,
        ));
        let (stdout, stderr) = drive(
            run,
            host,
            Pipes {
                stdin: child.stdin().take(),
                stdout: child.stdout().take().unwrap(),
                stderr: child.stderr().take().unwrap(),
                live: o.stream,
                pid: Some(&pid),
            },
            input,
            sink,
        )
        .await?;
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match child.wait().await {
            Ok(status) => (status.code().map(i64::from).unwrap_or(-1), status.signal()),
            // openssh reports exit code 127 as an error of its own, and a signal without its number.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                (127, None)
            }
            Err(openssh::Error::RemoteProcessTerminated) => (-1, Some(UNKNOWN_SIGNAL)),
            Err(e) => {
                return Err(Failure::new(
                    Kind::Connection,
                    host,
                    format!("{host}: `{shown}`: the connection failed: {e}"),
                ))
            }
        };
        guard.disarm();
        return Ok(Output {
            code,
            signal,
            stdout,
            stderr,
        });
    }
}

/// A running command's pipes; `pid` receives the remote shell's pid from its stderr.
struct Pipes<'p, W, R1, R2> {
    stdin: Option<W>,
    stdout: R1,
    stderr: R2,
    pid: Option<&'p std::sync::Mutex<Option<u32>>>,
    /// Show each line live under `-v`.
    live: bool,
}

/// What the remote shell prints first on stderr, followed by its pid.
const PID_MARK: &str = "runner-pid:";

/// Stops a command that did not finish (its future was dropped: a timeout or Ctrl-C): TERM to its
/// whole process group. Disarmed once the command has exited.
struct StopOnDrop<'a> {
    target: StopTarget<'a>,
    armed: bool,
}

enum StopTarget<'a> {
    /// The pid of a local child that leads its own process group.
    Local(Option<u32>),
    /// The control socket of the connection, and the pid of the remote session leader once known.
    Remote(PathBuf, &'a std::sync::Mutex<Option<u32>>),
}

impl<'a> StopOnDrop<'a> {
    fn new(target: StopTarget<'a>) -> Self {
        StopOnDrop {
            target,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.target {
            StopTarget::Local(Some(pid)) => {
                use nix::sys::signal::{killpg, Signal};
                let _ = killpg(nix::unistd::Pid::from_raw(*pid as i32), Signal::SIGTERM);
            }
            StopTarget::Local(None) => {}
            StopTarget::Remote(socket, pid) => {
                if let Some(pid) = *pid.lock().unwrap() {
                    // Through the same master: a new channel, no new connection.
                    let _ = std::process::Command::new("ssh")
                        .arg("-S")
                        .arg(socket)
                        .args([
                            "-o",
                            "BatchMode=yes",
                            "runner-master",
                            &format!("kill -s TERM -- -{pid} 2>/dev/null"),
                        ])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
    }
}

/// Feed the input, collect or stream the output, and with `-v` show each line live, prefixed with
/// the host name.
async fn drive<W, R1, R2>(
    run: &Run,
    host: &str,
    pipes: Pipes<'_, W, R1, R2>,
    input: &Input,
    sink: &Sink,
) -> Result<(String, String), Failure>
where
    W: AsyncWrite + Unpin + Send,
    R1: AsyncRead + Unpin + Send,
    R2: AsyncRead + Unpin + Send,
{
    let Pipes {
        stdin,
        stdout,
        stderr,
        pid,
        live,
    } = pipes;
    let io = |what: &str, e: std::io::Error| {
        Failure::new(Kind::Io, host, format!("{host}: {what}: {e}"))
    };
    let live = live && run.report.verbosity() > 0;
    let feed = async {
        if let Some(mut w) = stdin {
            match input {
                Input::Null => {}
                // A command that does not read its input closes the pipe: not an error.
                Input::Text(t) => {
                    let _ = w.write_all(t.as_bytes()).await;
                }
                Input::File(p) => {
                    let mut f = tokio::fs::File::open(p)
                        .await
                        .map_err(|e| io(&format!("cannot open {}", p.display()), e))?;
                    tokio::io::copy(&mut f, &mut w)
                        .await
                        .map_err(|e| io(&format!("cannot send {}", p.display()), e))?;
                }
            }
            let _ = w.shutdown().await;
        }
        Ok::<(), Failure>(())
    };
    let out = async {
        match sink {
            Sink::Capture => collect(stdout, live.then_some((run, host)), None)
                .await
                .map_err(|e| io("reading output", e)),
            Sink::File(p) => {
                let mut f = tokio::fs::File::create(p)
                    .await
                    .map_err(|e| io(&format!("cannot create {}", p.display()), e))?;
                let mut r = stdout;
                tokio::io::copy(&mut r, &mut f)
                    .await
                    .map_err(|e| io(&format!("cannot write {}", p.display()), e))?;
                f.sync_all()
                    .await
                    .map_err(|e| io(&format!("cannot write {}", p.display()), e))?;
                Ok(String::new())
            }
        }
    };
    let err = async {
        collect(stderr, live.then_some((run, host)), pid)
            .await
            .map_err(|e| io("reading error output", e))
    };
    let (fed, out, err) = tokio::join!(feed, out, err);
    fed?;
    Ok((out?, err?))
}

/// Read a stream to the end as text, showing each line as it comes when `live` is set.
/// With `pid`, the line that carries the remote shell's pid is taken out and its pid stored.
async fn collect<R: AsyncRead + Unpin>(
    r: R,
    live: Option<(&Run, &str)>,
    pid: Option<&std::sync::Mutex<Option<u32>>>,
) -> std::io::Result<String> {
    let mut reader = BufReader::new(r);
    let mut all = Vec::new();
    loop {
        let start = all.len();
        if reader.read_until(b'\n', &mut all).await? == 0 {
            break;
        }
        if let Some(slot) = pid.filter(|p| p.lock().unwrap().is_none()) {
            let line = String::from_utf8_lossy(&all[start..]);
            if let Some(n) = line
                .trim_end()
                .strip_prefix(PID_MARK)
                .and_then(|n| n.parse().ok())
            {
                *slot.lock().unwrap() = Some(n);
                all.truncate(start);
                continue;
            }
        }
        if let Some((run, host)) = live {
            let line = String::from_utf8_lossy(&all[start..]);
            run.report
                .debug(&format!("{host}: {}", line.trim_end_matches('\n')));
        }
    }
    Ok(String::from_utf8_lossy(&all).into_owned())
}

/// Write `data` to `path` atomically: a temporary file in the same folder, then a rename, so a reader
/// never sees half a file. An existing file keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    with_temp_beside(path, |tmp| {
        use std::io::Write;
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })
}

/// Copy a file atomically (temp + rename in the destination folder), streaming it.
fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    with_temp_beside(to, |tmp| std::fs::copy(from, tmp).map(|_| ()))
}

/// Fill a temporary file next to `path` with `fill`, give it the mode of the file it replaces, and
/// rename it over `path`; the temporary file never outlives a failure.
fn with_temp_beside(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.runner-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = fill(&tmp).and_then(|_| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn io_failure(host: &str, what: &str, path: &str, e: std::io::Error) -> Failure {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        Kind::NotFound
    } else {
        Kind::Io
    };
    Failure::new(kind, host, format!("{host}: {what} {path}: {e}"))
}

#[export_module]
pub mod host_api {
    use super::*;
    use rhai::{EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// A handle on this machine, with the same methods as an SSH host.
    ///
    /// ```rhai
    /// let l = local();
    /// print(l.run("uname -r").stdout);
    /// ```
    pub fn local() -> Host {
        Host::local()
    }

    /// A remote host over SSH: `"[user@]host[:port]"`. The connection (one multiplexed OpenSSH
    /// master) opens on the first command and is shared by every command of the run; host keys are
    /// checked strictly against your known_hosts.
    ///
    /// ```rhai
    /// let h = ssh("root@10.0.0.5:2222");
    /// h.run("docker ps");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssh(spec: &str) -> Res<Host> {
        ssh_with(spec, Map::new())
    }

    /// `ssh` with options: `user`, `port`, `key` (private key file), `known_hosts` ("strict",
    /// "accept-new" or "off"), `known_hosts_file`, `connect_timeout` (seconds, default 10), `jump`
    /// (a jump host, or an array of them).
    ///
    /// ```rhai
    /// let h = ssh("10.0.0.5", #{user: "deploy", port: 2222, key: "~/.ssh/deploy", known_hosts: "accept-new"});
    /// ```
    #[rhai_fn(name = "ssh", return_raw)]
    pub fn ssh_with(spec: &str, options: Map) -> Res<Host> {
        let target = SshTarget::with_options(spec, options)?;
        Ok(Host::new(spec, Map::new(), Transport::Ssh(target)))
    }

    /// The host's inventory name (`"local"` for this machine, the address as given to `ssh`).
    #[rhai_fn(get = "name", pure)]
    pub fn get_name(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// The host's inventory variables.
    #[rhai_fn(get = "vars", pure)]
    pub fn get_vars(h: &mut Host) -> Map {
        h.vars().clone()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// Run a command: a string goes through the host's shell as you would type it, an array is
    /// executed with each element as one argument (quoted safely on remote hosts). Returns
    /// `#{code, stdout, stderr}`; a non-zero exit throws with the host, the command, the code and
    /// the end of stderr.
    ///
    /// ```rhai
    /// local().run("docker ps");
    /// local().run(["rm", "-f", name]);
    /// ```
    #[rhai_fn(name = "run", return_raw)]
    pub fn run(ctx: NativeCallContext, h: &mut Host, command: Dynamic) -> Res<Map> {
        run_with(ctx, h, command, Map::new())
    }

    /// `run` with options: `check` (default true: throw on non-zero exit), `timeout` (seconds),
    /// `stdin` (a string fed to the command), `env` (a map), `cwd`, `sudo` (run through `sudo -n`),
    /// `read_only` (not an effect: runs under `--dry-run` and is not journaled). With `-v` the output
    /// is shown live, each line prefixed with the host name.
    ///
    /// ```rhai
    /// let r = local().run("grep -c x /etc/hosts", #{check: false, timeout: 10});
    /// ```
    #[rhai_fn(name = "run", return_raw)]
    pub fn run_with(
        ctx: NativeCallContext,
        h: &mut Host,
        command: Dynamic,
        options: Map,
    ) -> Res<Map> {
        let run = Run::of(&ctx);
        let cmd = Command::from_script(&command, h.name())?;
        let o = RunOpts::parse(options, h.name())?;
        Ok(h.run_command(&run, &cmd, &o)?)
    }

    /// Write `content` to `path` as a whole, atomically (temp file + rename; an existing file keeps
    /// its mode). An effect.
    ///
    /// ```rhai
    /// h.write_file("/data/www/index.html", "v2\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(ctx: NativeCallContext, h: &mut Host, path: &str, content: &str) -> Res<()> {
        let run = Run::of(&ctx);
        run.effect(
            h.name(),
            &format!("write {path}"),
            json!({"path": path, "bytes": content.len()}),
            || h.put(&run, path, Input::Text(content.to_string())),
        )?;
        Ok(())
    }

    /// The content of the file at `path`.
    #[rhai_fn(return_raw)]
    pub fn read_file(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<String> {
        let run = Run::of(&ctx);
        run.check_cancel(h.name())?;
        match h.transport() {
            Transport::Local => std::fs::read_to_string(path)
                .map_err(|e| io_failure(h.name(), "cannot read", path, e).into()),
            Transport::Ssh(_) => {
                let out = h.probe(
                    &run,
                    &format!("cat -- {}", quote(path)),
                    Input::Null,
                    Sink::Capture,
                )?;
                check_file_op(h.name(), "cannot read", path, &out)?;
                Ok(out.stdout)
            }
        }
    }

    /// Whether `path` exists.
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<bool> {
        let run = Run::of(&ctx);
        run.check_cancel(h.name())?;
        match h.transport() {
            Transport::Local => Ok(Path::new(path).exists()),
            Transport::Ssh(_) => {
                let out = h.probe(
                    &run,
                    &format!("test -e {}", quote(path)),
                    Input::Null,
                    Sink::Capture,
                )?;
                match out.code {
                    0 => Ok(true),
                    1 => Ok(false),
                    _ => Err(check_file_op(h.name(), "cannot check", path, &out)
                        .unwrap_err()
                        .into()),
                }
            }
        }
    }

    /// Copy the local file `local_path` to `remote_path` on the host, streamed (large files do not
    /// go through memory) and written atomically. An effect.
    ///
    /// ```rhai
    /// h.upload("build/nginx", "/usr/sbin/nginx.new");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn upload(
        ctx: NativeCallContext,
        h: &mut Host,
        local_path: &str,
        remote_path: &str,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        if !Path::new(local_path).is_file() {
            return Err(Failure::new(
                Kind::NotFound,
                "local",
                format!("upload to {}: no local file {local_path}", h.name()),
            )
            .into());
        }
        run.effect(
            h.name(),
            &format!("upload {local_path} to {remote_path}"),
            json!({"from": local_path, "to": remote_path}),
            || h.put(&run, remote_path, Input::File(PathBuf::from(local_path))),
        )?;
        Ok(())
    }

    /// Copy `remote_path` on the host to the local file `local_path`, streamed and written
    /// atomically. An effect: it writes a local file.
    #[rhai_fn(return_raw)]
    pub fn download(
        ctx: NativeCallContext,
        h: &mut Host,
        remote_path: &str,
        local_path: &str,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let host = h.name();
        run.effect(
            "local",
            &format!("download {host}:{remote_path} to {local_path}"),
            json!({"host": host, "from": remote_path, "to": local_path}),
            || {
                with_temp_beside(Path::new(local_path), |tmp| match h.transport() {
                    Transport::Local => std::fs::copy(remote_path, tmp).map(|_| ()),
                    Transport::Ssh(_) => {
                        let out = h
                            .probe(
                                &run,
                                &format!("cat -- {}", quote(remote_path)),
                                Input::Null,
                                Sink::File(tmp.to_path_buf()),
                            )
                            .map_err(|f| std::io::Error::other(f.message))?;
                        check_file_op(host, "cannot read", remote_path, &out)
                            .map_err(|f| std::io::Error::other(f.message))
                    }
                })
                .map_err(|e| {
                    io_failure(
                        host,
                        &format!("cannot download {remote_path} to"),
                        local_path,
                        e,
                    )
                })
            },
        )?;
        Ok(())
    }

    /// The hosts of an inventory group (or the one host of that name) from `-i FILE`, filtered by
    /// `--limit`. Each is a host handle with `.name` and `.vars`.
    ///
    /// ```rhai
    /// parallel(hosts("web"), 5, |h| h.run("uptime").stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn hosts(ctx: NativeCallContext, group: &str) -> Res<Array> {
        let run = Run::of(&ctx);
        let inv = run.config.inventory.as_ref().ok_or_else(|| {
            Failure::usage(
                format!("hosts {group}"),
                format!("hosts(\"{group}\"): no inventory; pass one with -i FILE"),
            )
        })?;
        Ok(inv
            .select(group, run.config.limit.as_deref())?
            .into_iter()
            .map(|e| Dynamic::from(Host::from(e)))
            .collect())
    }

    /// Every host of the inventory, filtered by `--limit`.
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn all_hosts(ctx: NativeCallContext) -> Res<Array> {
        hosts(ctx, "all")
    }
}
