//! Hosts: where commands run and files live. `local()` is this machine; the SSH issue adds remote hosts
//! of the same type, so one playbook runs against either.

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::error::Failure;
use crate::prims::Opts;
use crate::run::Run;

/// A machine commands run on: this one (`local()`), or a remote one.
#[derive(Clone)]
pub struct Host(Arc<HostInner>);

struct HostInner {
    name: String,
    vars: Map,
}

impl Host {
    pub fn local() -> Self {
        Host(Arc::new(HostInner {
            name: "local".into(),
            vars: Map::new(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.0.name
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
            Command::Argv(a) => {
                shlex::try_join(a.iter().map(String::as_str)).unwrap_or_else(|_| a.join(" "))
            }
        }
    }
}

/// The options of `run`.
pub struct RunOpts {
    pub check: bool,
    pub timeout: Option<Duration>,
    pub stdin: Option<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub sudo: bool,
    pub read_only: bool,
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
        })
    }
}

/// What a finished command returned.
pub struct Output {
    pub code: i64,
    /// The signal that killed it, if any.
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
            let out = run.block_on(
                host,
                &format!("`{shown}`"),
                o.timeout,
                exec_local(host, cmd, o),
            )?;
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
}

/// A non-zero exit, a signal, or a command that was not found, as a failure naming host and command.
pub fn check_exit(host: &str, shown: &str, out: &Output) -> Result<(), Failure> {
    let stderr = tail(&out.stderr, 5);
    let detail = if stderr.is_empty() {
        String::new()
    } else {
        format!(":\n{stderr}")
    };
    if let Some(sig) = out.signal {
        return Err(Failure::new(
            "signal",
            host,
            format!("{host}: `{shown}` was killed by signal {sig}{detail}"),
        ));
    }
    match out.code {
        0 => Ok(()),
        127 => Err(Failure::new(
            "not_found",
            host,
            format!("{host}: `{shown}`: command not found (exit code 127){detail}"),
        )),
        code => Err(Failure::new(
            "exit",
            host,
            format!("{host}: `{shown}` exited with code {code}{detail}"),
        )),
    }
}

async fn exec_local(host: &str, cmd: &Command, o: &RunOpts) -> Result<Output, Failure> {
    let mut argv: Vec<String> = match cmd {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        Command::Argv(a) => a.clone(),
    };
    if o.sudo {
        argv.splice(0..0, ["sudo".to_string(), "-n".into(), "--".into()]);
    }
    let mut c = tokio::process::Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(if o.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
                "exec",
                host,
                format!("{host}: cannot start `{shown}`: {e}"),
            ))
        }
    };
    if let (Some(input), Some(mut pipe)) = (&o.stdin, child.stdin.take()) {
        let input = input.clone();
        // Written concurrently with reading the output, so a large input cannot deadlock.
        tokio::spawn(async move {
            let _ = pipe.write_all(input.as_bytes()).await;
        });
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Failure::new("exec", host, format!("{host}: `{shown}`: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(Output {
        code: out.status.code().map(i64::from).unwrap_or(-1),
        signal: out.status.signal(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Write `data` to `path` atomically: a temporary file in the same folder, then a rename, so a reader
/// never sees half a file. An existing file keeps its permissions.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
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
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Copy a file atomically (temp + rename in the destination folder), streaming it.
fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = to
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = to
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.runner-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::copy(from, &tmp).and_then(|_| std::fs::rename(&tmp, to));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn io_failure(host: &str, what: &str, path: &str, e: std::io::Error) -> Failure {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        "not_found"
    } else {
        "io"
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

    /// The host's inventory name (`"local"` for this machine).
    #[rhai_fn(get = "name", pure)]
    pub fn get_name(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// The host's inventory variables.
    #[rhai_fn(get = "vars", pure)]
    pub fn get_vars(h: &mut Host) -> Map {
        h.0.vars.clone()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// Run a command: a string goes through `sh -c`, an array is executed directly with each element
    /// as one argument. Returns `#{code, stdout, stderr}`; a non-zero exit throws with the host, the
    /// command, the code and the end of stderr.
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
    /// `read_only` (not an effect: runs under `--dry-run` and is not journaled).
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

    /// Write `content` to `path` as a whole, atomically (temp file + rename). An effect.
    ///
    /// ```rhai
    /// local().write_file("/data/www/index.html", "v2\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(ctx: NativeCallContext, h: &mut Host, path: &str, content: &str) -> Res<()> {
        let run = Run::of(&ctx);
        let host = h.name();
        run.effect(
            host,
            &format!("write {path}"),
            json!({"path": path, "bytes": content.len()}),
            || {
                write_atomic(Path::new(path), content.as_bytes())
                    .map_err(|e| io_failure(host, "cannot write", path, e))
            },
        )?;
        Ok(())
    }

    /// The content of the file at `path`.
    #[rhai_fn(return_raw)]
    pub fn read_file(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<String> {
        Run::of(&ctx).check_cancel(h.name())?;
        std::fs::read_to_string(path)
            .map_err(|e| io_failure(h.name(), "cannot read", path, e).into())
    }

    /// Whether `path` exists.
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<bool> {
        Run::of(&ctx).check_cancel(h.name())?;
        Ok(Path::new(path).exists())
    }

    /// Copy the local file `local_path` to `remote_path` on the host (atomically). An effect.
    #[rhai_fn(return_raw)]
    pub fn upload(
        ctx: NativeCallContext,
        h: &mut Host,
        local_path: &str,
        remote_path: &str,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let host = h.name();
        run.effect(
            host,
            &format!("upload {local_path} to {remote_path}"),
            json!({"from": local_path, "to": remote_path}),
            || {
                copy_atomic(Path::new(local_path), Path::new(remote_path)).map_err(|e| {
                    io_failure(
                        host,
                        &format!("cannot copy {local_path} to"),
                        remote_path,
                        e,
                    )
                })
            },
        )?;
        Ok(())
    }

    /// Copy `remote_path` on the host to the local file `local_path` (atomically). An effect: it
    /// writes a local file.
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
            json!({"from": remote_path, "to": local_path}),
            || {
                copy_atomic(Path::new(remote_path), Path::new(local_path)).map_err(|e| {
                    io_failure(
                        host,
                        &format!("cannot copy {remote_path} to"),
                        local_path,
                        e,
                    )
                })
            },
        )?;
        Ok(())
    }
}
