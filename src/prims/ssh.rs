//! SSH transport: one multiplexed connection (an OpenSSH ControlMaster, driven by the `openssh`
//! crate's native mux client) per host and option set, shared by every command of the run, with a
//! bounded number of concurrent sessions. Control sockets live in a private directory of the run;
//! every master is told to exit when the run ends, however it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use rhai::{Array, Map};
use tokio::sync::Semaphore;

use crate::error::{Failure, Kind};
use crate::opts::Opts;

/// How long the TCP connect and the SSH banner may take, unless `connect_timeout` says otherwise.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Concurrent commands per connection: below sshd's default MaxSessions (10).
pub const SESSIONS_PER_HOST: usize = 8;

/// The connection options of `ssh(host, #{...})` and of inventory entries.
pub const OPTIONS: &[&str] = &[
    "user",
    "port",
    "key",
    "known_hosts",
    "known_hosts_file",
    "connect_timeout",
    "jump",
    "ssh_args",
    "ssh_options",
    "ssh_config",
];

/// How the server's host key is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyCheck {
    /// The key must already be in known_hosts (the default).
    #[default]
    Strict,
    /// Unknown hosts are added; a changed key is still refused.
    AcceptNew,
    /// No check at all.
    Off,
}

impl HostKeyCheck {
    pub fn parse(s: &str, target: &str) -> Result<Self, Failure> {
        match s {
            "strict" | "yes" => Ok(HostKeyCheck::Strict),
            "accept-new" => Ok(HostKeyCheck::AcceptNew),
            "off" | "no" => Ok(HostKeyCheck::Off),
            other => Err(Failure::usage(target, format!("{target}: known_hosts must be \"strict\", \"accept-new\" or \"off\", not \"{other}\""))),
        }
    }
}

/// Where and how to connect: everything that makes two connections different.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshTarget {
    pub address: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<PathBuf>,
    pub known_hosts: HostKeyCheck,
    pub known_hosts_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    pub jump: Vec<String>,
    /// The user's ssh_config file (`ssh -F`) instead of ~/.ssh/config.
    pub ssh_config: Option<PathBuf>,
    /// Other ssh_config options, (keyword, value) in order: `ssh_options`, and `-o` of `ssh_args`.
    pub ssh_options: Vec<(String, String)>,
}

impl SshTarget {
    /// Parse `user@host:port` (`[v6]:port` for IPv6 literals).
    pub fn parse(spec: &str) -> Result<Self, Failure> {
        let bad = || {
            Failure::usage(
                spec,
                format!("ssh: cannot parse host \"{spec}\"; expected [user@]host[:port]"),
            )
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
            Some(_) => return Err(bad()),
            None => (None, spec),
        };
        let (address, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (addr.to_string(), port)
        } else if rest.matches(':').count() == 1 {
            let (a, p) = rest.split_once(':').unwrap();
            (a.to_string(), Some(p.parse::<u16>().map_err(|_| bad())?))
        } else {
            (rest.to_string(), None)
        };
        if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad());
        }
        Ok(SshTarget {
            address,
            user,
            port,
            ..Default::default()
        })
    }

    /// `spec` (`[user@]host[:port]`) with the options of `ssh(host, #{...})` or of an inventory entry.
    pub fn with_options(spec: &str, options: Map) -> Result<Self, Failure> {
        let mut target = SshTarget::parse(spec)?;
        target.apply(options, spec)?;
        Ok(target)
    }

    /// Apply connection options (`OPTIONS`); an unknown key is an error naming `spec`.
    fn apply(&mut self, options: Map, spec: &str) -> Result<(), Failure> {
        let o = Opts::new(options, OPTIONS, spec)?;
        // Command-line options fill what the address leaves open; the named options below win
        // over both.
        if let Some(args) = o.string("ssh_args")? {
            let a = crate::prims::ssh_config::SshArgs::parse(&args)
                .map_err(|e| Failure::usage(spec, format!("{spec}: ssh_args: {e}")))?;
            self.user = self.user.take().or(a.user);
            self.port = self.port.or(a.port);
            self.key = self.key.take().or(a.key.map(PathBuf::from));
            if let Some(k) = a.known_hosts {
                self.known_hosts = HostKeyCheck::parse(k, spec)?;
            }
            self.known_hosts_file = self
                .known_hosts_file
                .take()
                .or(a.known_hosts_file.map(PathBuf::from));
            self.connect_timeout = self
                .connect_timeout
                .or(a.connect_timeout.map(Duration::from_secs_f64));
            self.ssh_config = self.ssh_config.take().or(a.config.map(PathBuf::from));
            self.jump.extend(a.jump);
            self.ssh_options.extend(a.options);
        }
        for (k, v) in o.string_map("ssh_options")? {
            self.ssh_options.push((k, v));
        }
        if let Some(c) = o.string("ssh_config")? {
            self.ssh_config = Some(PathBuf::from(c));
        }

        if let Some(u) = o.string("user")? {
            self.user = Some(u);
        }
        if let Some(p) = o.int("port")? {
            self.port =
                Some(u16::try_from(p).map_err(|_| {
                    Failure::usage(spec, format!("{spec}: port {p} is out of range"))
                })?);
        }
        if let Some(k) = o.string("key")? {
            self.key = Some(PathBuf::from(k));
        }
        if let Some(k) = o.string("known_hosts")? {
            self.known_hosts = HostKeyCheck::parse(&k, spec)?;
        }
        if let Some(f) = o.string("known_hosts_file")? {
            self.known_hosts_file = Some(PathBuf::from(f));
        }
        self.connect_timeout = o.secs("connect_timeout")?.or(self.connect_timeout);
        if let Some(j) = o.get("jump") {
            self.jump = match j.read_lock::<Array>() {
                Some(a) => a.iter().map(|x| x.to_string()).collect(),
                None => vec![j.to_string()],
            };
        }
        Ok(())
    }

    /// `user@address:port` as shown in messages.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.address);
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// The session builder of this target. A connection with jump hosts, ssh options or an
    /// ssh_config file gets an ssh_config of its own in `control_dir` (see `ssh_config`), so that
    /// every hop gets the key, the host key checking and the options.
    fn builder(&self, control_dir: &std::path::Path) -> Result<SessionBuilder, Failure> {
        let mut b = SessionBuilder::default();
        b.control_directory(control_dir)
            // A safety net if runner is killed outright: an idle master exits by itself.
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(60).unwrap(),
            ))
            .known_hosts_check(match self.known_hosts {
                HostKeyCheck::Strict => KnownHosts::Strict,
                HostKeyCheck::AcceptNew => KnownHosts::Add,
                HostKeyCheck::Off => KnownHosts::Accept,
            })
            .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .server_alive_interval(Duration::from_secs(15));
        if let Some(u) = &self.user {
            b.user(u.clone());
        }
        if let Some(p) = self.port {
            b.port(p);
        }
        if let Some(k) = &self.key {
            b.keyfile(expand_home(k));
        }
        if let Some(f) = &self.known_hosts_file {
            b.user_known_hosts_file(expand_home(f));
        } else if self.known_hosts == HostKeyCheck::Off {
            b.user_known_hosts_file("/dev/null");
        }
        if !self.jump.is_empty() {
            b.jump_hosts(&self.jump);
        }
        if !self.jump.is_empty() || !self.ssh_options.is_empty() || self.ssh_config.is_some() {
            let key = self.key.as_deref().map(expand_home);
            let known_hosts_file = self.known_hosts_file.as_deref().map(expand_home);
            let config = self.ssh_config.as_deref().map(expand_home);
            let hops = crate::prims::ssh_config::Hops {
                strict: match self.known_hosts {
                    HostKeyCheck::Strict => "yes",
                    HostKeyCheck::AcceptNew => "accept-new",
                    HostKeyCheck::Off => "no",
                },
                known_hosts_file: known_hosts_file.as_deref(),
                key: key.as_deref(),
                options: &self.ssh_options,
                config: config.as_deref(),
            };
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            format!("{self:?}").hash(&mut h);
            let file = crate::prims::ssh_config::write(
                control_dir,
                &format!("config-{:x}", h.finish()),
                &hops,
            )
            .map_err(|e| {
                Failure::new(
                    Kind::Ssh,
                    &self.address,
                    format!(
                        "{}: cannot write the ssh_config of the connection: {e}",
                        self.display()
                    ),
                )
            })?;
            b.config_file(file);
        }
        Ok(b)
    }
}

/// `~/x` -> `$HOME/x`.
pub fn expand_home(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// One live connection.
pub struct Connection {
    pub session: Session,
    /// Bounds concurrent commands on this connection.
    pub slots: Semaphore,
}

/// The run's connections, by target.
#[derive(Default)]
pub struct Pool {
    control_dir: OnceLock<tempfile::TempDir>,
    /// A process that closes this run's masters when the run dies, however it dies (see `reaper`).
    reaper: Mutex<Option<std::process::Child>>,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    /// Control sockets of every master opened, for closing them even while commands hold a connection.
    sockets: Mutex<Vec<PathBuf>>,
}

impl Pool {
    /// A private, short control directory (mode 0700: tempfile's default) for this run's sockets.
    fn control_dir(&self) -> Result<&std::path::Path, Failure> {
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
        Ok(self.control_dir.get().unwrap().path())
    }

    /// The connection for `target`, opening it on first use.
    pub async fn connect(
        &self,
        name: &str,
        target: &SshTarget,
    ) -> Result<Arc<Connection>, Failure> {
        let key = format!("{target:?}");
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&key) {
            return Ok(c.clone());
        }
        let dir = self.control_dir()?.to_path_buf();
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
                            target.display(),
                            crate::error::fmt_secs(limit.as_secs_f64())
                        ),
                    ))
                }
            };
        self.sockets
            .lock()
            .unwrap()
            .push(session.control_socket().to_path_buf());
        let conn = Arc::new(Connection {
            session,
            slots: Semaphore::new(SESSIONS_PER_HOST),
        });
        conns.insert(key, conn.clone());
        Ok(conn)
    }

    /// Forget a connection that failed, so the next command opens a new one.
    pub async fn forget(&self, target: &SshTarget) {
        self.conns.lock().await.remove(&format!("{target:?}"));
    }

    /// Tell every master to exit and remove the control directory. Safe to call more than once.
    pub fn close_all(&self) {
        let sockets = std::mem::take(&mut *self.sockets.lock().unwrap());
        for sock in sockets {
            let _ = through_master(&sock, &["-O", "exit"]).status();
        }
        if let Some(dir) = self.control_dir.get() {
            let _ = std::fs::remove_dir_all(dir.path());
        }
        // Its input closed, the reaper finds nothing left to close and exits.
        if let Some(mut r) = self.reaper.lock().unwrap().take() {
            drop(r.stdin.take());
            let _ = r.wait();
        }
    }
}

/// The control directories of runs: `/tmp/runner-ssh-<pid>-XXXXXX`.
const CONTROL_PREFIX: &str = "runner-ssh-";

/// What closes the masters of a control directory and removes it (`$0`: the directory).
const CLOSE_MASTERS: &str = "for s in \"$0\"/*/master; do [ -S \"$s\" ] && ssh -S \"$s\" -o BatchMode=yes -O exit runner-master >/dev/null 2>&1; done; rm -rf \"$0\"";

/// A shell that waits for the end of its standard input, a pipe only this run holds open, then
/// closes the masters of `dir`: when runner dies (even by SIGKILL) the pipe closes and its SSH
/// masters go with it, instead of lingering until their idle timeout. In its own process group, so
/// a Ctrl-C in the terminal does not stop it before it has done its work.
fn reaper(dir: &std::path::Path) -> Option<std::process::Child> {
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
    }
}

/// `ssh -S SOCKET ARGS... runner-master`: an `ssh` that talks to a running master (a control
/// command, or a command on a new channel of its connection), never opening a connection itself,
/// with no terminal input and no output.
pub fn through_master(socket: &std::path::Path, args: &[&str]) -> std::process::Command {
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

/// A connection error, classified from what ssh said.
fn connect_failure(name: &str, target: &SshTarget, e: &openssh::Error) -> Failure {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        text = s.to_string();
        src = s.source();
    }
    let text = text.trim().trim_start_matches("ssh: ").to_string();
    let dest = target.display();
    let (kind, what) = if text.contains("Connection refused") {
        (Kind::ConnectionRefused, "connection refused".to_string())
    } else if text.contains("timed out") {
        (Kind::ConnectTimeout, "connection timed out".to_string())
    } else if text.contains("Permission denied")
        || text.contains("Too many authentication failures")
    {
        (Kind::Auth, format!("authentication failed ({text})"))
    } else if text.contains("Host key verification failed")
        || text.contains("IDENTIFICATION HAS CHANGED")
        || text.contains("host key")
    {
        (
            Kind::HostKey,
            format!(
                "host key verification failed: the host's key is unknown or has changed ({text})"
            ),
        )
    } else if text.contains("Could not resolve") {
        (
            Kind::Resolve,
            format!("cannot resolve the host name ({text})"),
        )
    } else {
        (Kind::Connection, text.clone())
    };
    let label = if name == dest {
        dest.clone()
    } else {
        format!("{name} ({dest})")
    };
    Failure::new(kind, name, format!("{label}: ssh: {what}"))
}
