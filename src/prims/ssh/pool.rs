//! The run's SSH connections: one OpenSSH ControlMaster per target, opened on first use and shared
//! by every command. Handshakes to different hosts run at the same time (at most `HANDSHAKES` at
//! once); two commands to the same new host share one. Control sockets live in a private directory
//! of the run, and every master is told to exit when the run ends, however it ends (by the run's
//! reaper, in the background).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssh::Session;
use tokio::sync::{OnceCell, Semaphore};

use super::failure::connect_failure;
use super::target::{HostKeyCheck, SshTarget, DEFAULT_CONNECT_TIMEOUT};
use crate::error::{Failure, Kind};
use crate::report::Reporter;

/// Concurrent commands per connection: below sshd's default MaxSessions (10), which also counts
/// sessions that have finished on our side and that sshd has not freed yet.
pub const SESSIONS_PER_HOST: usize = 8;

/// Handshakes in flight at once, over all hosts: enough to fan out fast, few enough that sshd's
/// MaxStartups, a NAT or a jump host does not start resetting connections.
pub const HANDSHAKES: usize = 30;

/// How long to wait before asking again for a session the server refused (`attempt` from 0): a
/// refusal means the server is at its MaxSessions, and a slot frees as soon as a session ends.
pub fn session_backoff(attempt: u32) -> Duration {
    Duration::from_millis((10u64 << attempt.min(6)).min(500))
}

/// Sessions refused in a row on a working connection before the command fails (about 7 s).
pub const SESSION_REFUSALS: u32 = 20;

/// One live connection.
pub struct Connection {
    pub session: Session,
    /// Bounds concurrent commands on this connection.
    pub slots: Semaphore,
}

impl Connection {
    /// Whether the master still answers on its control socket.
    pub async fn alive(&self) -> bool {
        self.session.check().await.is_ok()
    }
}

/// The handshake of one target: every command that asks while it runs gets its outcome.
type Cell = Arc<OnceCell<Result<Arc<Connection>, Failure>>>;

/// The run's connections, by target.
pub struct Pool {
    control_dir: OnceLock<tempfile::TempDir>,
    /// Taken while the control directory and its reaper are created.
    control_init: Mutex<()>,
    /// A process that closes this run's masters when the run dies, however it dies (see `reaper`).
    reaper: Mutex<Option<std::process::Child>>,
    /// The reaper was told to close the masters (`close_all`): the control directory is its now.
    reaping: AtomicBool,
    /// Held only to look a target up: a handshake never holds it.
    conns: Mutex<HashMap<String, Cell>>,
    handshakes: Semaphore,
    /// Targets already warned about `known_hosts: "off"`.
    warned: Mutex<HashSet<String>>,
    /// Control sockets of every master opened, for closing them even while commands hold a connection.
    sockets: Mutex<Vec<PathBuf>>,
    /// Handshakes started ahead of any command (`connect_ahead`): waited for before closing, as
    /// one cut short would leave its ssh process behind.
    ahead: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            control_dir: OnceLock::new(),
            control_init: Mutex::new(()),
            reaper: Mutex::new(None),
            reaping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            handshakes: Semaphore::new(HANDSHAKES),
            warned: Mutex::new(HashSet::new()),
            sockets: Mutex::new(Vec::new()),
            ahead: Mutex::new(Vec::new()),
        }
    }
}

impl Pool {
    /// A private, short control directory (mode 0700: tempfile's default) for this run's sockets.
    fn control_dir(&self) -> Result<PathBuf, Failure> {
        let _init = self.control_init.lock().unwrap();
        if self.control_dir.get().is_none() {
            clean_dead_runs();
            let dir = tempfile::Builder::new()
                .prefix(&format!("{CONTROL_PREFIX}{}-", std::process::id()))
                .tempdir_in("/tmp")
                .map_err(|e| {
                    Failure::new(
                        Kind::Ssh,
                        "ssh",
                        format!("cannot create the ssh control directory: {e}"),
                    )
                })?;
            *self.reaper.lock().unwrap() = reaper(dir.path());
            let _ = self.control_dir.set(dir);
        }
        Ok(self.control_dir.get().unwrap().path().to_path_buf())
    }

    /// The connection for `target`, opening it on first use. Commands that ask while its handshake
    /// runs wait for that one; a failed handshake fails them all, and the next command tries anew.
    pub async fn connect(
        &self,
        report: &Reporter,
        name: &str,
        target: &SshTarget,
    ) -> Result<Arc<Connection>, Failure> {
        let key = format!("{target:?}");
        let cell = self
            .conns
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone();
        let outcome = cell.get_or_init(|| self.open(report, name, target)).await;
        if outcome.is_err() {
            let mut conns = self.conns.lock().unwrap();
            if conns.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                conns.remove(&key);
            }
        }
        outcome.clone()
    }

    /// One handshake: a new master for `target`.
    async fn open(
        &self,
        report: &Reporter,
        name: &str,
        target: &SshTarget,
    ) -> Result<Arc<Connection>, Failure> {
        target.check_key(name)?;
        let dir = self.control_dir()?;
        if target.known_hosts == HostKeyCheck::Off
            && self.warned.lock().unwrap().insert(format!("{target:?}"))
        {
            report.warn(&format!(
                "{}: host key checking is off (known_hosts: \"off\"): whoever answers at this address is trusted, and its key is recorded nowhere",
                target.label(name)
            ));
        }
        let _turn = self
            .handshakes
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // ssh's ConnectTimeout covers the TCP connect and the banner; this also bounds a key
        // exchange or an authentication that stalls.
        let limit =
            target.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT) + Duration::from_secs(10);
        let session =
            match tokio::time::timeout(limit, target.builder(&dir)?.connect_mux(&target.address))
                .await
            {
                Ok(r) => r.map_err(|e| connect_failure(name, target, &e))?,
                Err(_) => {
                    return Err(Failure::new(
                        Kind::ConnectTimeout,
                        name,
                        format!(
                            "{}: ssh: no working connection after {}",
                            target.label(name),
                            crate::error::fmt_secs(limit.as_secs_f64())
                        ),
                    ))
                }
            };
        self.sockets
            .lock()
            .unwrap()
            .push(session.control_socket().to_path_buf());
        Ok(Arc::new(Connection {
            session,
            slots: Semaphore::new(SESSIONS_PER_HOST),
        }))
    }

    /// Forget `conn`, a connection whose master is gone, so that the next command opens a new one
    /// (a newer connection of the same target is kept).
    pub fn forget(&self, target: &SshTarget, conn: &Arc<Connection>) {
        let key = format!("{target:?}");
        let mut conns = self.conns.lock().unwrap();
        let same = conns
            .get(&key)
            .and_then(|cell| cell.get())
            .is_some_and(|held| matches!(held, Ok(c) if Arc::ptr_eq(c, conn)));
        if same {
            conns.remove(&key);
        }
    }

    /// Remember a handshake started ahead (see `ahead`).
    pub fn started_ahead(&self, handshake: tokio::task::JoinHandle<()>) {
        let mut ahead = self.ahead.lock().unwrap();
        ahead.retain(|h| !h.is_finished());
        ahead.push(handshake);
    }

    /// Tell every master to exit, all at once, and remove the control directory. Safe to call more
    /// than once. Handshakes started ahead and still running are waited for first (each is bounded
    /// by its connect timeout), so that none opens a master after this.
    ///
    /// The run's reaper does it, in the background: the run is over when its commands are, and
    /// its recap and exit need not wait for the masters' goodbyes (tens of milliseconds, more on a
    /// loaded machine). They are gone moments after runner exits. Without a reaper, here.
    pub fn close_all(&self) {
        let ahead = std::mem::take(&mut *self.ahead.lock().unwrap());
        while ahead.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap());
        // Its input closed, the reaper closes every master of the control directory and removes it.
        if let Some(mut r) = self.reaper.lock().unwrap().take() {
            drop(r.stdin.take());
            self.reaping.store(true, Ordering::SeqCst);
        }
        if self.reaping.load(Ordering::SeqCst) {
            return;
        }
        let exits: Vec<_> = sockets
            .iter()
            .filter_map(|sock| through_master(sock, &["-O", "exit"]).spawn().ok())
            .collect();
        for mut exit in exits {
            let _ = exit.wait();
        }
        if let Some(dir) = self.control_dir.get() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
    }
}

/// Raise this process's soft limit of open files to its hard limit: every session of every host
/// holds a socket and three pipes, which a fan-out over a few hundred hosts takes past the usual
/// soft limit of 1024.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The control directories of runs: `/tmp/runner-ssh-<pid>-XXXXXX`.
const CONTROL_PREFIX: &str = "runner-ssh-";

/// What closes the masters of a control directory and removes it (`$0`: the directory), all at
/// once. The `openssh` crate names each master's folder `.ssh-connectionXXXXXX`: a plain `*` would
/// not match it.
const CLOSE_MASTERS: &str = "for s in \"$0\"/.ssh-connection*/master; do [ -S \"$s\" ] && ssh -S \"$s\" -o BatchMode=yes -O exit runner-master >/dev/null 2>&1 & done; wait; rm -rf \"$0\"";

/// A shell that waits for the end of its standard input, a pipe only this run holds open, then
/// closes the masters of `dir` and removes it: `close_all` closes the pipe at the end of a run, and
/// when runner dies (even by SIGKILL) the pipe closes too, so its SSH masters go with it instead of
/// lingering until their idle timeout. In its own process group, so a Ctrl-C in the terminal does
/// not stop it before it has done its work.
fn reaper(dir: &Path) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat >/dev/null; {CLOSE_MASTERS}"))
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .ok()
}

/// Control directories of this user's runs that died without cleaning up (their reaper killed too,
/// or a runner from before reapers): their masters are closed and the directories removed.
fn clean_dead_runs() {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(CONTROL_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i64>().ok())
        else {
            continue;
        };
        let mine = e.metadata().is_ok_and(|m| m.uid() == uid && m.is_dir());
        if mine && !crate::runs::pid_alive(pid) {
            let _ = std::process::Command::new("sh")
                .arg("-c")
                .arg(CLOSE_MASTERS)
                .arg(e.path())
                .stdin(std::process::Stdio::null())
                .status();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_all();
        // Removed by `close_all` or by the reaper, which still needs its sockets.
        if let Some(dir) = self.control_dir.take() {
            let _ = dir.keep();
        }
    }
}

/// `ssh -S SOCKET ARGS... runner-master`: an `ssh` that talks to a running master (a control
/// command, or a command on a new channel of its connection), never opening a connection itself,
/// with no terminal input and no output.
pub fn through_master(socket: &Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new("ssh");
    c.arg("-S")
        .arg(socket)
        .args(["-o", "BatchMode=yes"])
        .args(args)
        .arg("runner-master")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}
