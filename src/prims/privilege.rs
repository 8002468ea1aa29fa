//! Running as another user (`become`, as Ansible calls it): through `sudo -n`, which never asks for
//! a password. A host's default (from its inventory) and what a call says.

use crate::error::Failure;
use crate::opts::Opts;

/// Running as another user through `sudo -n` (it never asks for a password): a host's default
/// (`ansible_become`, `become = true` in an inventory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Become {
    pub enabled: bool,
    /// As whom (default root).
    pub user: Option<String>,
}

/// The option keys of every call that can run as another user.
pub const BECOME_KEYS: &[&str] = &["become", "become_user", "sudo"];

/// What a call says of `become`: `become` (`sudo` is the same), `become_user` (which implies
/// `become`); None for what it does not say, left to the host's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BecomeOpts {
    pub enabled: Option<bool>,
    pub user: Option<String>,
}

impl BecomeOpts {
    pub fn parse(o: &Opts) -> Result<Self, Failure> {
        let enabled = match (o.get("become"), o.get("sudo")) {
            (Some(_), _) => Some(o.bool("become", false)?),
            (None, Some(_)) => Some(o.bool("sudo", false)?),
            (None, None) => None,
        };
        let user = o.string("become_user")?;
        Ok(BecomeOpts {
            enabled: enabled.or(user.as_ref().map(|_| true)),
            user,
        })
    }

    /// As whom a command runs through sudo, given the host's default; None: as the login user.
    pub fn resolve(&self, host: &Become) -> Option<String> {
        let enabled = self.enabled.unwrap_or(host.enabled);
        enabled.then(|| {
            self.user
                .clone()
                .or_else(|| host.user.clone())
                .unwrap_or_else(|| "root".into())
        })
    }
}
