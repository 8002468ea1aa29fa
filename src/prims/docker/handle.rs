//! The `Docker` handle: the docker engine of one host and how its CLI is called.

use std::fmt;
use std::time::Duration;

use rhai::Map;

use super::spec::Args;
use crate::error::Failure;
use crate::opts::Opts;
use crate::prims::host::{Command, Host};
use crate::prims::privilege::BecomeOpts;

/// How long one docker command may take, unless the handle says otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a command that may download an image (`pull`, `run`) may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// The options of `docker(#{...})` and `h.docker(#{...})`.
pub const DOCKER_KEYS: &[&str] = &[
    "become",
    "become_user",
    "sudo",
    "context",
    "timeout",
    "pull_timeout",
];

/// The docker engine of one host, driven through that host's docker CLI.
#[derive(Clone)]
pub struct Docker {
    host: Host,
    /// `docker --context NAME`.
    context: Option<String>,
    /// Run docker through `sudo -n` (`become`; the host's default unless given).
    pub(super) privilege: BecomeOpts,
    /// How long one docker command may take.
    pub(super) timeout: Duration,
    /// How long a command that may download an image may take.
    pub(super) pull_timeout: Duration,
}

impl fmt::Debug for Docker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Docker({})", self.host.name())
    }
}

impl Docker {
    /// The docker engine of `host`, with default options.
    pub fn new(host: Host) -> Self {
        Docker {
            host,
            context: None,
            privilege: BecomeOpts::default(),
            timeout: COMMAND_TIMEOUT,
            pull_timeout: PULL_TIMEOUT,
        }
    }

    /// The docker engine of `host`, with the options of `docker(#{...})`.
    pub(super) fn with_options(host: Host, options: Map) -> Result<Self, Failure> {
        let target = format!("docker on {}", host.name());
        let o = Opts::new(options, DOCKER_KEYS, &target)?;
        Ok(Docker {
            context: o.string("context")?,
            privilege: BecomeOpts::parse(&o)?,
            timeout: o.secs("timeout")?.unwrap_or(COMMAND_TIMEOUT),
            pull_timeout: o.secs("pull_timeout")?.unwrap_or(PULL_TIMEOUT),
            host,
        })
    }

    /// The host this docker engine is on.
    pub fn host(&self) -> &Host {
        &self.host
    }

    pub(super) fn host_name(&self) -> &str {
        self.host.name()
    }

    /// `docker [--context NAME] ARGS...`.
    pub(super) fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = vec!["docker".to_string()];
        if let Some(c) = &self.context {
            argv.extend(["--context".into(), c.clone()]);
        }
        argv.extend(args.iter().cloned());
        argv
    }

    /// `args` as messages, the journal and `--dry-run` show the command: `docker ...` with the values
    /// of environment variables masked.
    pub(super) fn shown(&self, args: &Args) -> String {
        Command::Argv(self.argv(&args.shown)).display()
    }
}
