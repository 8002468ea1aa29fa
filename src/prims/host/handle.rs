//! The host handle: a name, inventory vars, and how commands reach it.

use std::fmt;
use std::sync::Arc;

use rhai::Map;

use crate::inventory::Entry;
use crate::prims::privilege::Become;
use crate::prims::ssh::SshTarget;

/// A machine commands run on: this one (`local()`), or a remote one over SSH.
#[derive(Clone)]
pub struct Host(Arc<HostInner>);

struct HostInner {
    name: String,
    vars: Map,
    transport: Transport,
    /// Whether its commands and file operations run through `sudo -n` unless a call says.
    privilege: Become,
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
            privilege: Become::default(),
        }))
    }

    /// The same host, running as another user by default.
    pub fn with_privilege(self, privilege: Become) -> Self {
        let inner = &self.0;
        Host(Arc::new(HostInner {
            name: inner.name.clone(),
            vars: inner.vars.clone(),
            transport: inner.transport.clone(),
            privilege,
        }))
    }

    /// Whether commands run through `sudo -n` unless a call says otherwise.
    pub fn privilege(&self) -> &Become {
        &self.0.privilege
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
        Host::new(&e.name, e.vars.clone(), transport).with_privilege(e.privilege.clone())
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({})", self.0.name)
    }
}
