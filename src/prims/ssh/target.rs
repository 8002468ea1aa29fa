//! Where and how to connect: an SSH target, its options, and the `ssh` options of its master.

use std::path::PathBuf;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder};
use rhai::{Array, Map};

use crate::error::{Failure, Kind};
use crate::opts::Opts;

/// How long the TCP connect and the SSH banner may take, unless `connect_timeout` says otherwise.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// A key file that is not there fails here, naming it, rather than as ssh's "authentication
    /// failed" after a handshake.
    pub(super) fn check_key(&self, name: &str) -> Result<(), Failure> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let path = expand_home(key);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::usage(
                name,
                format!(
                    "{}: ssh: the key file {} does not exist",
                    self.label(name),
                    path.display()
                ),
            )),
            Err(e) => Err(Failure::usage(
                name,
                format!(
                    "{}: ssh: cannot read the key file {}: {e}",
                    self.label(name),
                    path.display()
                ),
            )),
        }
    }

    /// How messages name the host: its inventory name, with the address when that differs.
    pub fn label(&self, name: &str) -> String {
        let dest = self.display();
        if name == dest {
            dest
        } else {
            format!("{name} ({dest})")
        }
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
    pub(super) fn builder(&self, control_dir: &std::path::Path) -> Result<SessionBuilder, Failure> {
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
        // "off" neither checks nor records: with StrictHostKeyChecking=no, ssh adds an unknown key
        // to its first UserKnownHostsFile, so that file is /dev/null whatever `known_hosts_file` says.
        if self.known_hosts == HostKeyCheck::Off {
            b.user_known_hosts_file("/dev/null");
        } else if let Some(f) = &self.known_hosts_file {
            b.user_known_hosts_file(expand_home(f));
        }
        if !self.jump.is_empty() {
            b.jump_hosts(&self.jump);
        }
        if !self.jump.is_empty() || !self.ssh_options.is_empty() || self.ssh_config.is_some() {
            let key = self.key.as_deref().map(expand_home);
            let known_hosts_file = match self.known_hosts {
                HostKeyCheck::Off => Some(PathBuf::from("/dev/null")),
                _ => self.known_hosts_file.as_deref().map(expand_home),
            };
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
