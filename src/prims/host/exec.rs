//! `Host::exec`, the one way a command runs on any host: under the gate's permit, the options'
//! timeout and Ctrl-C. Running it on this machine (a child process in its own process group) or over SSH (a
//! session of the host's multiplexed connection): feeding its input, collecting or streaming its
//! output, and stopping it, children included, when it is abandoned (a timeout, Ctrl-C).

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use rhai::Map;
use serde_json::json;

use super::command::{
    check_exit, check_output, quote, quote_all, Command, Input, Output, RunOpts, Sink,
    UNKNOWN_SIGNAL,
};
use super::handle::{Host, Transport};
use super::output::{collect, Collected, PID_MARK};
use crate::effect::{Access, Permit};
use crate::error::{Failure, Kind};
use crate::prims::ssh::{
    innermost, session_backoff, through_master, Connection, SshTarget, SESSION_REFUSALS,
};
use crate::run::Run;

impl Host {
    /// Run a command and check its exit code (unless `check: false`); an effect unless `read_only`.
    pub fn run_command(&self, run: &Run, cmd: &Command, o: &RunOpts) -> Result<Map, Failure> {
        let host = self.name();
        let shown = cmd.display();
        let action = format!("run `{shown}`");
        let access = if o.read_only {
            Access::Read
        } else {
            Access::change(&action, json!({"command": shown}))
        };
        let out = run.gate(host, access, |p| {
            let input = o.stdin.clone().map(Input::Text).unwrap_or(Input::Null);
            let out = self.exec(run, p, cmd, o, input, Sink::Capture)?;
            if o.check {
                check_exit(host, &shown, &out)?;
            }
            Ok(out)
        })?;
        Ok(out.map_or_else(Output::skipped, |out| out.to_map()))
    }

    /// Run `cmd` on the host with the given input and output, under the options' timeout and Ctrl-C.
    pub fn exec(
        &self,
        run: &Run,
        _: &Permit,
        cmd: &Command,
        o: &RunOpts,
        input: Input,
        sink: Sink,
    ) -> Result<Output, Failure> {
        let host = self.name();
        let shown = cmd.display();
        let sudo = o.privilege.resolve(self.privilege());
        let sudo = sudo.as_deref();
        let out = run.block_on(host, &format!("`{shown}`"), o.timeout, async {
            match self.transport() {
                Transport::Local => exec_local(run, host, cmd, o, sudo, &input, &sink).await,
                Transport::Ssh(target) => {
                    exec_ssh(run, host, target, cmd, o, sudo, &input, &sink).await
                }
            }
        })?;
        if let Some(user) = sudo {
            sudo_refused(host, user, &shown, &out)?;
        }
        check_output(host, &shown, &out, o.max_output)?;
        Ok(out)
    }
}

/// sudo's own refusals (a password needed, not allowed, no such user, no sudo), as a `become` failure
/// saying what to do, rather than the command's failure.
fn sudo_refused(host: &str, user: &str, shown: &str, out: &Output) -> Result<(), Failure> {
    if out.code == 0 {
        return Ok(());
    }
    let said = |s: &str| out.stderr.contains(s);
    let why = if said("a password is required") || said("a terminal is required") {
        "sudo asks for a password, and runner runs sudo -n, which never prompts: allow the user sudo without a password (NOPASSWD in sudoers), or drop become"
    } else if said("is not in the sudoers file") || said("is not allowed to") {
        "the login user may not use sudo for it"
    } else if said("unknown user") {
        "no such user"
    } else if out.code == 127
        && (said("sudo: not found")
            || said("sudo: command not found")
            || said("sudo: No such file"))
    {
        "sudo is not installed"
    } else {
        return Ok(());
    };
    Err(Failure::new(
        Kind::Become,
        host,
        format!(
            "{host}: cannot run `{shown}` as {user} with sudo: {why} (sudo said: {})",
            super::command::tail(&out.stderr, 2)
        ),
    ))
}

/// The current user's name on this machine.
fn local_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

async fn exec_local(
    run: &Run,
    host: &str,
    cmd: &Command,
    o: &RunOpts,
    sudo: Option<&str>,
    input: &Input,
    sink: &Sink,
) -> Result<Output, Failure> {
    let mut argv: Vec<String> = match cmd {
        Command::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
        Command::Argv(a) => a.clone(),
    };
    // Already that user: no sudo needed (root need not have sudo installed).
    let sudo = sudo.filter(|u| local_user().as_deref() != Some(*u));
    if let Some(user) = sudo {
        // sudo resets the environment: the command's variables go through env(1).
        let mut prefix: Vec<String> = ["sudo", "-n", "-u", user, "--", "env"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        prefix.extend(o.env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.splice(0..0, prefix);
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
                overflow: None,
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
        o.max_output,
    )
    .await?;
    let status = child
        .wait()
        .await
        .map_err(|e| Failure::new(Kind::Exec, host, format!("{host}: `{shown}`: {e}")))?;
    guard.disarm();
    use std::os::unix::process::ExitStatusExt;
    Ok(output(
        status.code().map(i64::from).unwrap_or(-1),
        status.signal(),
        stdout,
        stderr,
        o.max_output,
    ))
}

/// A finished command's result from its streams; `overflow` names the first one past `limit`.
fn output(
    code: i64,
    signal: Option<i32>,
    stdout: Collected,
    stderr: Collected,
    limit: usize,
) -> Output {
    let overflow = [("stdout", stdout.written), ("stderr", stderr.written)]
        .into_iter()
        .find(|(_, written)| *written > limit as u64);
    Output {
        code,
        signal,
        stdout: stdout.text,
        stderr: stderr.text,
        overflow,
    }
}

/// The command line the remote shell runs: options become shell syntax around the quoted command.
/// With sudo, the directory and the variables are set inside it (sudo resets the environment);
/// a login user who is already that user runs it without sudo.
fn remote_line(cmd: &Command, o: &RunOpts, sudo: Option<&str>) -> String {
    let mut line = match cmd {
        Command::Shell(s) => s.clone(),
        Command::Argv(a) => quote_all(a),
    };
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
    if let Some(user) = sudo {
        let u = quote(user);
        let inner = quote(&line);
        line = format!(
            "if [ \"$(id -un)\" = {u} ]; then sh -c {inner}; else sudo -n -u {u} -- sh -c {inner}; fi"
        );
    }
    line
}

// The command, its options and whom it runs as are one request, passed as they come.
#[allow(clippy::too_many_arguments)]
async fn exec_ssh(
    run: &Run,
    host: &str,
    target: &SshTarget,
    cmd: &Command,
    o: &RunOpts,
    sudo: Option<&str>,
    input: &Input,
    sink: &Sink,
) -> Result<Output, Failure> {
    // The login shell reports its pid first: sshd made it a session leader, so its process group
    // is the whole command, which a timeout or Ctrl-C then stops (closing the channel does not).
    let line = format!("echo {PID_MARK}$$ >&2; {}", remote_line(cmd, o, sudo));
    let shown = cmd.display();
    // A master that died since the last command (idle timeout, sshd restart) is reopened once.
    let mut reconnected = false;
    loop {
        let conn = run.ssh.connect(&run.report, host, target).await?;
        // Holds a session slot for as long as the command runs.
        let _slot = conn
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut refusals = 0;
        // The command has not started while opening its session fails: trying again cannot run it
        // twice.
        let child = loop {
            let mut c = conn.session.raw_command(&line);
            c.stdin(if matches!(input, Input::Null) {
                openssh::Stdio::null()
            } else {
                openssh::Stdio::piped()
            })
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
            let e = match c.spawn().await {
                Ok(child) => break Some(child),
                Err(e) => e,
            };
            let why = innermost(&e);
            if conn.alive().await {
                // The master works and the server refused the session: it is at its MaxSessions,
                // counting sessions it has not freed yet. One frees soon; the master stays.
                if refusals < SESSION_REFUSALS {
                    run.report.debug(&format!(
                        "{host}: a new session was refused ({why}); trying again"
                    ));
                    tokio::time::sleep(session_backoff(refusals)).await;
                    refusals += 1;
                    continue;
                }
                return Err(Failure::new(
                    Kind::Connection,
                    host,
                    format!("{host}: cannot run `{shown}`: the host refused a new session {refusals} times in a row ({why})"),
                ));
            }
            if reconnected {
                return Err(Failure::new(
                    Kind::Connection,
                    host,
                    format!("{host}: cannot run `{shown}`: the connection failed ({why})"),
                ));
            }
            run.report.debug(&format!(
                "{host}: the connection is gone ({why}); reconnecting"
            ));
            run.ssh.forget(target, &conn);
            reconnected = true;
            break None;
        };
        let Some(mut child) = child else {
            continue;
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
            o.max_output,
        )
        .await?;
        use std::os::unix::process::ExitStatusExt;
        let (code, signal) = match child.wait().await {
            Ok(status) => (status.code().map(i64::from).unwrap_or(-1), status.signal()),
            // openssh reports exit code 127 as an error of its own.
            Err(openssh::Error::Remote(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                (127, None)
            }
            // The mux protocol ends a session the same way whether a signal killed the command or
            // the connection dropped: the master's health tells which.
            Err(openssh::Error::RemoteProcessTerminated) if conn.alive().await => {
                (-1, Some(UNKNOWN_SIGNAL))
            }
            Err(e) => {
                guard.disarm();
                return Err(dropped(run, host, &shown, target, &conn, &e).await);
            }
        };
        guard.disarm();
        return Ok(output(code, signal, stdout, stderr, o.max_output));
    }
}

/// The failure of a command whose session ended without an exit status: the connection dropped
/// (the master is gone: the next command reconnects), or something else went wrong on it.
async fn dropped(
    run: &Run,
    host: &str,
    shown: &str,
    target: &SshTarget,
    conn: &std::sync::Arc<Connection>,
    e: &openssh::Error,
) -> Failure {
    if conn.alive().await {
        return Failure::new(
            Kind::Connection,
            host,
            format!("{host}: `{shown}`: the session failed: {}", innermost(e)),
        );
    }
    run.ssh.forget(target, conn);
    Failure::new(
        Kind::Connection,
        host,
        format!("{host}: `{shown}`: the connection dropped while it ran"),
    )
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
                    let _ = through_master(socket, &[])
                        .arg(format!("kill -s TERM -- -{pid} 2>/dev/null"))
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
    limit: usize,
) -> Result<(Collected, Collected), Failure>
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
            Sink::Capture => collect(stdout, limit, live.then_some((run, host)), None)
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
                Ok(Collected::empty())
            }
        }
    };
    let err = async {
        collect(stderr, limit, live.then_some((run, host)), pid)
            .await
            .map_err(|e| io("reading error output", e))
    };
    let (fed, out, err) = tokio::join!(feed, out, err);
    fed?;
    Ok((out?, err?))
}
