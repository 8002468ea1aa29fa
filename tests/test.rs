//! The integration suite: drives the real `runner` binary against real programs.

mod harness;

mod cli;
mod docker;
mod fleet;
mod flow;
mod guard;
mod haproxy;
mod haproxy_reload;
mod host;
mod http;
mod inventory;
mod layout;
mod libs;
mod lock;
mod nginx;
mod process;
mod record;
mod safety;
mod scenario;
mod snapshots;
mod ssh;
mod ssh_ahead;
mod steps;
