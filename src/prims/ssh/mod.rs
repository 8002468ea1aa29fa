//! SSH transport: one multiplexed connection (an OpenSSH ControlMaster, driven by the `openssh`
//! crate's native mux client) per host and option set, shared by every command of the run, with a
//! bounded number of concurrent sessions.
//!
//! - `target.rs`: where and how to connect (`SshTarget`, its options, host key checking);
//! - `pool.rs`: the run's connections, their handshakes, sessions and closing;
//! - `failure.rs`: what ssh said, classified into the `Kind` scripts see.

mod failure;
mod pool;
mod target;

pub use failure::innermost;
pub use pool::{
    raise_open_files_limit, session_backoff, through_master, Connection, Pool, HANDSHAKES,
    SESSIONS_PER_HOST, SESSION_REFUSALS,
};
pub use target::{expand_home, HostKeyCheck, SshTarget, OPTIONS};
