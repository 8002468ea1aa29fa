//! SSH failures as scripts see them: what ssh said, classified into a `Kind`.

use crate::error::{Failure, Kind};

use super::target::SshTarget;

/// The innermost cause of an error, trimmed: what ssh or its master actually said.
pub fn innermost(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text = s.to_string();
        src = s.source();
    }
    text.trim().to_string()
}

/// A connection error, classified from what ssh said.
pub(super) fn connect_failure(name: &str, target: &SshTarget, e: &openssh::Error) -> Failure {
    let text = innermost(e);
    let text = text.trim_start_matches("ssh: ").to_string();
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
    // Through jump hosts, a hop may be the one that failed. What a hop's own ssh says is lost (it
    // writes to the master's standard error, which is closed); what the master says when the
    // stream through the hop closes before the target's greeting is `Connection closed by UNKNOWN
    // port 65535`.
    let (kind, what) = match target.jump.as_slice() {
        [] => (kind, what),
        hops if text.contains("UNKNOWN port 65535") => (
            Kind::Connection,
            format!(
                "the connection through jump host {} closed before the target answered: a jump host refused or is unreachable, refused the login, or could not reach the target ({})",
                hops.join(", "),
                text.replace(['\r', '\n'], " ")
            ),
        ),
        hops => (kind, format!("{what} (through jump host {})", hops.join(", "))),
    };
    Failure::new(kind, name, format!("{}: ssh: {what}", target.label(name)))
}
