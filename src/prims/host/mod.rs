//! Hosts: where commands run and files live. `local()` is this machine, `ssh(...)` and `hosts(group)`
//! are remote ones; both are the same `Host` type with the same methods, so one playbook runs against
//! either.
//!
//! - `handle.rs`: the `Host` handle;
//! - `command.rs`: a command as scripts give it, its options and its result;
//! - `exec.rs`: `Host::exec`, through which every command on every host runs, locally or over SSH:
//!   pipes, live output, stopping it when abandoned;
//! - `files.rs`: reading, checking and writing files atomically, uploads and downloads;
//! - `api.rs`: the script functions.

mod api;
mod command;
mod exec;
mod files;
mod handle;

pub use api::host_api;
pub use command::{
    check_exit, quote, quote_all, Become, BecomeOpts, Command, Input, Output, RunOpts, Sink,
    BECOME_KEYS, RUN_KEYS,
};
pub use handle::{Host, Transport};
