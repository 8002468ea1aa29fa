//! Hosts: where commands run and files live. `local()` is this machine, `ssh(...)` and `hosts(group)`
//! are remote ones; both are the same `Host` type with the same methods, so one playbook runs against
//! either.
//!
//! - `command.rs`: a command as scripts give it, its options and its result, and `Host::exec`, through
//!   which every command on every host runs;
//! - `exec.rs`: running it locally or over SSH: pipes, live output, stopping it when abandoned;
//! - `files.rs`: reading, checking and writing files atomically, uploads and downloads;
//! - `api.rs`: the script functions.

use std::fmt;
use std::sync::Arc;

use rhai::Map;

use crate::inventory::Entry;
use crate::prims::ssh::SshTarget;

mod api;
mod command;
mod exec;
mod files;

pub use api::host_api;
pub use command::{check_exit, quote, quote_all, Command, Input, Output, RunOpts, Sink};

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
