//! Docker on any host: containers as script objects. A `Docker` handle drives the docker CLI of its
//! host (`local()` or an SSH host) through `Host::exec`, so `sudo`, remote engines and docker
//! contexts work as ops teams already use them. Output is read as JSON (`docker inspect`,
//! `--format '{{json .}}'`), never scraped from tables; docker's error text is sorted into kinds a
//! script can branch on (`docker_unreachable`, `image_missing`, `port_conflict`, `name_conflict`,
//! `not_found`, `container_exited`, `unhealthy`).
//!
//! - `handle.rs`: the `Docker` handle;
//! - `operations.rs`: what it does (run, rm, stop/start/restart, exec, pull, ps, logs, inspect, ...);
//! - `cli.rs`: invoking the docker CLI on the host, sorting its errors into kinds, and finding the
//!   container a name means;
//! - `spec.rs`: the specs of `run` and `exec` and their options, with the values of environment
//!   variables masked wherever a command is shown;
//! - `health.rs`: waiting for a container to become healthy;
//! - `api.rs`: the script functions.

mod api;
mod cli;
mod handle;
mod health;
mod operations;
mod spec;

pub use api::{docker_api, GRACE_KEYS, HEALTHY_KEYS, PS_KEYS};
pub use handle::{Docker, DOCKER_KEYS};
pub use operations::LOGS_KEYS;
pub use spec::{EXEC_KEYS, RUN_KEYS};
