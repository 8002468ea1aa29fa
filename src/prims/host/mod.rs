//! Hosts: where commands run and files live. `local()` is this machine, `ssh(...)` and `hosts(group)`
//! are remote ones; both are the same `Host` type with the same methods, so one playbook runs against
//! either.
//!
//! - `handle.rs`: the `Host` handle;
//! - `command.rs`: a command as scripts give it, its options and its result;
//! - `exec.rs`: `Host::exec`, through which every command on every host runs, locally or over SSH:
//!   pipes, live output, stopping it when abandoned;
//! - `output.rs`: reading a command's output, bounded by `max_output`;
//! - `files.rs`: reading, checking and writing files atomically, uploads and downloads;
//! - `files.rs`: reading, checking and writing files atomically (mode, owner, `become`; unchanged
//!   files are not rewritten), uploads and downloads; `diff.rs`: the diff a write shows;
//! - `template.rs`: Jinja templates (`template`, `h.template`);
//! - `api.rs`: the script functions.

mod api;
mod command;
mod diff;
mod exec;
mod files;
mod handle;
mod output;
mod template;

pub use api::host_api;
pub use command::{check_exit, quote, quote_all, Command, Input, Output, RunOpts, Sink, RUN_KEYS};
pub use files::{WriteOpts, WRITE_KEYS};
pub use handle::{Host, Transport};
pub use template::render;
