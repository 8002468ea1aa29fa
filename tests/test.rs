//! The integration suite: drives the real `runner` binary against real programs.

mod harness;

mod cli;
mod docker;
mod flow;
mod haproxy;
mod haproxy_reload;
mod host;
mod http;
mod layout;
mod lock;
mod nginx;
mod process;
mod scenario;
mod snapshots;
mod ssh;
