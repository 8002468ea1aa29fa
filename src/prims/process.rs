//! Processes and signals on a host: pid files, signals (through the effect gate), liveness, waits, and
//! the children of a process. On this machine through syscalls and /proc; on an SSH host through
//! commands (`cat`, `test -e`, `kill`), so one playbook works against either.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use rhai::plugin::*;
use rhai::{Dynamic, INT};
use serde_json::json;

use crate::effect::{Access, Permit};
use crate::error::{Failure, Kind};
use crate::ledger::Mark;
use crate::opts::seconds;
use crate::prims::host::{Command, Host, Input, RunOpts, Sink};
use crate::run::Run;

/// Time between two checks of a wait: a local check is a syscall, a remote one a command over the
/// host's shared SSH connection.
const LOCAL_POLL: Duration = Duration::from_millis(100);
const REMOTE_POLL: Duration = Duration::from_millis(200);

/// Time one probe command may take on a remote host.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// A signal as a script names it: `"USR2"`, `"SIGUSR2"`, `"usr2"`, `12` or `"12"`.
pub fn parse_signal(v: &Dynamic, host: &str) -> Result<Signal, Failure> {
    let unknown = |shown: String| {
        Failure::usage(
            host,
            format!(
                "{host}: unknown signal {shown}; expected a name such as TERM, QUIT, HUP, USR1, \
                 USR2, WINCH or KILL (with or without SIG, any case) or a signal number"
            ),
        )
    };
    if let Ok(n) = v.as_int() {
        return i32::try_from(n)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .ok_or_else(|| unknown(n.to_string()));
    }
    let Some(s) = v
        .read_lock::<rhai::ImmutableString>()
        .map(|s| s.to_string())
    else {
        return Err(unknown(format!("of type {}", v.type_name())));
    };
    let name = s.trim().to_ascii_uppercase();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| unknown(format!("\"{s}\"")));
    }
    let full = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    full.parse::<Signal>()
        .map_err(|_| unknown(format!("\"{s}\"")))
}

/// The name of a signal as `kill -s` takes it and as messages show it: `USR2`.
fn signal_name(sig: Signal) -> &'static str {
    sig.as_str().trim_start_matches("SIG")
}

/// A pid given by a script. Zero and negative numbers are refused: `kill(2)` would signal a whole
/// process group, or every process the user may signal.
fn check_pid(pid: INT, host: &str) -> Result<i32, Failure> {
    i32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| {
        Failure::usage(
            host,
            format!(
                "{host}: {pid} is not a process id (zero and negative numbers would address \
                 process groups)"
            ),
        )
    })
}

/// The fields of one `/proc/<pid>/stat` line that runner uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    pid: i32,
    state: char,
    ppid: i32,
}

impl Stat {
    /// Parse `pid (comm) state ppid ...`; `comm` may hold spaces and parentheses, so the fields
    /// after it are found from its last `)`.
    fn parse(line: &str) -> Option<Stat> {
        let (head, rest) = line.rsplit_once(')')?;
        let pid = head.split_once(" (")?.0.trim().parse().ok()?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some(Stat { pid, state, ppid })
    }

    /// A zombie has exited and only waits for its parent to collect its status (daemons whose
    /// parent is a PID 1 that never reaps stay zombies forever): it counts as gone.
    fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Why a signal could not be sent.
enum KillError {
    NoSuchProcess,
    NotPermitted,
    Other(String),
    /// The remote command itself failed (connection, timeout, Ctrl-C): passed on as it is.
    Failed(Failure),
}

/// The processes of one host. Files are read through the host; the two probes at the top (the process
/// list and signals) are the only code here that differs between this machine and a remote one;
/// every operation below is written once on top of them.
struct Procs<'a> {
    run: &'a Run,
    host: &'a Host,
}

impl<'a> Procs<'a> {
    fn new(run: &'a Run, host: &'a Host) -> Self {
        Procs { run, host }
    }

    fn name(&self) -> &str {
        self.host.name()
    }

    /// A read-only command on the remote host; its exit code is the caller's to judge.
    fn remote(&self, p: &Permit, cmd: Command) -> Result<(INT, String, String), Failure> {
        let o = RunOpts {
            timeout: Some(REMOTE_TIMEOUT),
            ..RunOpts::probe()
        };
        let out = self
            .host
            .exec(self.run, p, &cmd, &o, Input::Null, Sink::Capture)?;
        Ok((out.code, out.stdout, out.stderr))
    }

    /// Every process of the host, from `/proc/*/stat`.
    fn stats(&self) -> Result<Vec<Stat>, Failure> {
        let texts = if self.host.is_local() {
            let dir = std::fs::read_dir("/proc").map_err(|e| {
                Failure::new(
                    Kind::Io,
                    self.name(),
                    format!("{}: cannot list /proc: {e}", self.name()),
                )
            })?;
            dir.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                // A process may exit between the listing and the read: it is simply not there.
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            // `cat` complains about processes that exit while it runs; what it did read is valid.
            let cat = Command::Shell("cat /proc/[0-9]*/stat 2>/dev/null".into());
            self.run.read(self.name(), |p| self.remote(p, cat))?.1
        };
        Ok(texts.lines().filter_map(Stat::parse).collect())
    }

    /// Send `sig` to `pid` (the caller is inside the effect gate).
    fn signal(&self, p: &Permit, pid: i32, sig: Signal) -> Result<(), KillError> {
        if self.host.is_local() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(|e| match e {
                Errno::ESRCH => KillError::NoSuchProcess,
                Errno::EPERM => KillError::NotPermitted,
                e => KillError::Other(e.desc().to_string()),
            })
        } else {
            // The shell's own `kill`: minimal images have no /bin/kill. Both words are validated
            // (a number and a signal name), so the line needs no quoting.
            let cmd = Command::Shell(format!("kill -s {} {pid}", signal_name(sig)));
            match self.remote(p, cmd) {
                Ok((0, _, _)) => Ok(()),
                Ok((_, _, stderr)) if stderr.contains("No such process") => {
                    Err(KillError::NoSuchProcess)
                }
                Ok((_, _, stderr)) if stderr.to_lowercase().contains("not permitted") => {
                    Err(KillError::NotPermitted)
                }
                Ok((code, _, stderr)) => Err(KillError::Other(format!(
                    "`kill` exited with code {code}: {}",
                    stderr.trim()
                ))),
                Err(f) => Err(KillError::Failed(f)),
            }
        }
    }

    // ---- the operations, written once

    fn poll_interval(&self) -> Duration {
        if self.host.is_local() {
            LOCAL_POLL
        } else {
            REMOTE_POLL
        }
    }

    fn read_pid(&self, path: &str) -> Result<i32, Failure> {
        let host = self.name();
        let text = self.host.read_optional(self.run, path)?.ok_or_else(|| {
            Failure::new(
                Kind::NotFound,
                host,
                format!("{host}: cannot read pid file {path}: it does not exist"),
            )
        })?;
        let text = text.trim();
        if text.is_empty() {
            return Err(Failure::new(
                Kind::PidFile,
                host,
                format!("{host}: pid file {path} is empty"),
            ));
        }
        text.parse::<i32>().ok().filter(|p| *p > 0).ok_or_else(|| {
            let shown: String = text.chars().take(40).collect();
            Failure::new(
                Kind::PidFile,
                host,
                format!("{host}: pid file {path} does not hold a pid: \"{shown}\""),
            )
        })
    }

    /// The process `pid`, if it exists and has not exited.
    fn stat(&self, pid: i32) -> Result<Option<Stat>, Failure> {
        Ok(self
            .host
            .read_optional(self.run, &format!("/proc/{pid}/stat"))?
            .as_deref()
            .and_then(Stat::parse)
            .filter(Stat::running))
    }

    fn alive(&self, pid: i32) -> Result<bool, Failure> {
        Ok(self.stat(pid)?.is_some())
    }

    fn kill(&self, pid: i32, sig: Signal) -> Result<(), Failure> {
        let host = self.name();
        let name = signal_name(sig);
        let action = format!("send {name} to pid {pid}");
        let access = Access::Change {
            action: &action,
            details: json!({"pid": pid, "signal": name}),
            marks: vec![Mark::Signal {
                pid: pid.into(),
                signal: name.into(),
            }],
        };
        self.run.gate(host, access, |p| {
            self.signal(p, pid, sig).map_err(|e| {
                let (kind, why) = match e {
                    KillError::Failed(f) => return f,
                    KillError::NoSuchProcess => (Kind::NotFound, "no such process".to_string()),
                    KillError::NotPermitted => (
                        Kind::Permission,
                        "operation not permitted (the process belongs to another user)".to_string(),
                    ),
                    KillError::Other(why) => (Kind::Signal, why),
                };
                Failure::new(
                    kind,
                    host,
                    format!("{host}: cannot send {name} to pid {pid}: {why}"),
                )
            })
        })?;
        Ok(())
    }

    fn children(&self, pid: i32) -> Result<Vec<i32>, Failure> {
        let mut pids: Vec<i32> = self
            .stats()?
            .into_iter()
            .filter(|s| s.ppid == pid && s.running())
            .map(|s| s.pid)
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    fn wait_file(&self, path: &str, present: bool, timeout: Duration) -> Result<(), Failure> {
        let what = if present {
            format!("wait for {path} to exist")
        } else {
            format!("wait for {path} to be removed")
        };
        self.run
            .wait(self.name(), &what, timeout, self.poll_interval(), || {
                Ok(if self.host.exists(self.run, path)? == present {
                    Ok(())
                } else if present {
                    Err(format!("{path} does not exist"))
                } else {
                    Err(format!("{path} still exists"))
                })
            })
            .map(drop)
    }

    fn wait_exit(&self, pid: i32, timeout: Duration) -> Result<(), Failure> {
        let what = format!("wait for pid {pid} to exit");
        self.run
            .wait(self.name(), &what, timeout, self.poll_interval(), || {
                Ok(match self.stat(pid)? {
                    None => Ok(()),
                    Some(s) => Err(format!("pid {pid} still running (state {})", s.state)),
                })
            })
            .map(drop)
    }
}

#[export_module]
pub mod process_api {
    use super::*;
    use rhai::{Array, EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// The pid in the pid file at `path` on the host. A pid file that is missing, empty or does not
    /// hold a number is an error naming the host and the path.
    ///
    /// ```rhai
    /// let master = local().read_pid("/run/nginx.pid");
    /// ```
    #[rhai_fn(name = "read_pid", pure, return_raw)]
    pub fn host_read_pid(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<i64> {
        let run = Run::of(&ctx);
        Ok(Procs::new(&run, h).read_pid(path)?.into())
    }

    /// `read_pid` on this machine.
    ///
    /// ```rhai
    /// let master = read_pid("/run/nginx.pid");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn read_pid(ctx: NativeCallContext, path: &str) -> Res<i64> {
        host_read_pid(ctx, &mut Host::local(), path)
    }

    /// Send a signal to `pid` on the host: a name with or without `SIG` in any case (`"USR2"`,
    /// `"SIGUSR2"`, `"usr2"`) or a number (`12`, `"12"`). An effect: skipped (and printed as
    /// "would send ...") under `--dry-run`, recorded in the journal. A pid that does not exist
    /// (`e.kind == "not_found"`) or belongs to another user (`"permission"`) is an error naming the
    /// host and the pid; zero and negative pids (process groups) are refused.
    ///
    /// ```rhai
    /// let h = local();
    /// h.kill(h.read_pid("/run/nginx.pid"), "USR1");   // nginx: reopen the log files
    /// ```
    #[rhai_fn(name = "kill", pure, return_raw)]
    pub fn host_kill(ctx: NativeCallContext, h: &mut Host, pid: INT, signal: Dynamic) -> Res<()> {
        let run = Run::of(&ctx);
        let sig = parse_signal(&signal, h.name())?;
        let pid = check_pid(pid, h.name())?;
        Ok(Procs::new(&run, h).kill(pid, sig)?)
    }

    /// `kill` on this machine.
    ///
    /// ```rhai
    /// kill(read_pid("/run/nginx.pid"), "HUP");   // nginx: reload the configuration
    /// ```
    #[rhai_fn(return_raw)]
    pub fn kill(ctx: NativeCallContext, pid: INT, signal: Dynamic) -> Res<()> {
        host_kill(ctx, &mut Host::local(), pid, signal)
    }

    /// Whether process `pid` runs on the host. A process that has exited but was not yet collected
    /// by its parent (a zombie) does not count as alive.
    ///
    /// ```rhai
    /// if !local().alive(pid) { warn(`${pid} is gone`) }
    /// ```
    #[rhai_fn(name = "alive", pure, return_raw)]
    pub fn host_alive(ctx: NativeCallContext, h: &mut Host, pid: INT) -> Res<bool> {
        let run = Run::of(&ctx);
        let pid = check_pid(pid, h.name())?;
        Ok(Procs::new(&run, h).alive(pid)?)
    }

    /// `alive` on this machine.
    ///
    /// ```rhai
    /// print(alive(read_pid("/run/nginx.pid")));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn alive(ctx: NativeCallContext, pid: INT) -> Res<bool> {
        host_alive(ctx, &mut Host::local(), pid)
    }

    /// The pids of the direct children of `pid` on the host (an nginx master's workers), from the
    /// parent pid in `/proc/*/stat`, in ascending order. Children that have exited are left out.
    ///
    /// ```rhai
    /// let h = local();
    /// let workers = h.children(h.read_pid("/run/nginx.pid"));
    /// ```
    #[rhai_fn(name = "children", pure, return_raw)]
    pub fn host_children(ctx: NativeCallContext, h: &mut Host, pid: INT) -> Res<Array> {
        let run = Run::of(&ctx);
        let pid = check_pid(pid, h.name())?;
        Ok(Procs::new(&run, h)
            .children(pid)?
            .into_iter()
            .map(|p| Dynamic::from_int(p.into()))
            .collect())
    }

    /// `children` on this machine.
    ///
    /// ```rhai
    /// print(children(read_pid("/run/nginx.pid")).len());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn children(ctx: NativeCallContext, pid: INT) -> Res<Array> {
        host_children(ctx, &mut Host::local(), pid)
    }

    /// Wait until `path` exists on the host; throw (`e.kind == "timeout"`) after `timeout` seconds.
    ///
    /// ```rhai
    /// local().wait_file("/run/nginx.pid.oldbin", 10);
    /// ```
    #[rhai_fn(name = "wait_file", pure, return_raw)]
    pub fn host_wait_file(
        ctx: NativeCallContext,
        h: &mut Host,
        path: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let timeout = seconds(&timeout, h.name(), "the timeout")?;
        Ok(Procs::new(&run, h).wait_file(path, true, timeout)?)
    }

    /// `wait_file` on this machine.
    ///
    /// ```rhai
    /// wait_file("/tmp/ready", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_file(ctx: NativeCallContext, path: &str, timeout: Dynamic) -> Res<()> {
        host_wait_file(ctx, &mut Host::local(), path, timeout)
    }

    /// Wait until `path` no longer exists on the host; throw (`e.kind == "timeout"`) after `timeout`
    /// seconds.
    ///
    /// ```rhai
    /// local().wait_no_file("/run/nginx.pid.oldbin", 60);
    /// ```
    #[rhai_fn(name = "wait_no_file", pure, return_raw)]
    pub fn host_wait_no_file(
        ctx: NativeCallContext,
        h: &mut Host,
        path: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let timeout = seconds(&timeout, h.name(), "the timeout")?;
        Ok(Procs::new(&run, h).wait_file(path, false, timeout)?)
    }

    /// `wait_no_file` on this machine.
    ///
    /// ```rhai
    /// wait_no_file("/tmp/app.lock", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_no_file(ctx: NativeCallContext, path: &str, timeout: Dynamic) -> Res<()> {
        host_wait_no_file(ctx, &mut Host::local(), path, timeout)
    }

    /// Wait until process `pid` has exited on the host (a zombie counts as exited); throw
    /// (`e.kind == "timeout"`) after `timeout` seconds. A pid that is already gone returns at once.
    ///
    /// ```rhai
    /// let h = local();
    /// let old = h.read_pid("/run/nginx.pid.oldbin");
    /// h.kill(old, "QUIT");
    /// h.wait_exit(old, 60);
    /// ```
    #[rhai_fn(name = "wait_exit", pure, return_raw)]
    pub fn host_wait_exit(
        ctx: NativeCallContext,
        h: &mut Host,
        pid: INT,
        timeout: Dynamic,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let pid = check_pid(pid, h.name())?;
        let timeout = seconds(&timeout, h.name(), "the timeout")?;
        Ok(Procs::new(&run, h).wait_exit(pid, timeout)?)
    }

    /// `wait_exit` on this machine.
    ///
    /// ```rhai
    /// wait_exit(read_pid("/run/app.pid"), 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_exit(ctx: NativeCallContext, pid: INT, timeout: Dynamic) -> Res<()> {
        host_wait_exit(ctx, &mut Host::local(), pid, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_a_command_name_with_spaces_and_parentheses() {
        let s = Stat::parse("42 (nginx: (odd) name) S 7 42 42 0 -1").unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                state: 'S',
                ppid: 7
            }
        );
    }
}
