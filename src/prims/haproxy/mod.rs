//! HAProxy's runtime API: the stats socket (unix or TCP) and the master CLI, as `haproxy(...)` handles.
//!
//! One connection per socket is kept open in HAProxy's interactive mode (`prompt`): every answer then
//! ends with a prompt line (`> `, or `master> ` on the master CLI), so one connection carries any number
//! of commands and a 1000-command loop costs 1000 round trips, not 1000 connects. HAProxy closes idle
//! CLI connections (`stats timeout`, 10 s by default) and restarts close them too: a connection found
//! closed before a command is opened again, transparently. An answer is complete only with its
//! prompt: one cut off is sent again once when the command only reads (`show`, `get`, `help`); a
//! change is never sent twice, and one whose answer was cut off fails with kind "unknown_outcome"
//! (it may have been applied). A socket that does not answer `prompt` with a prompt is used one
//! connection per command instead.
//!
//! A reload does not close a connection to the stats socket: the old process keeps answering it,
//! stale, refusing changes, until it exits. A connection is dropped when the socket's file was
//! replaced (`haproxy -sf`: looked at with a `stat` before each command), or when its process says
//! it is stopping (asked after a pause, and when it refuses a change with `Proxy is disabled.`: a
//! worker's own socket under a master stays the same file); the command then goes to the new
//! process. A change answered by the process a reload replaced is of unknown outcome.
//!
//! On a master CLI (`haproxy -W -S`), commands go to every worker `show proc` lists, the old workers
//! of a reload included: they keep carrying their sessions to the backends until those end. A
//! worker that exits in between is skipped, and so is an old worker's refusal of a change (its
//! proxies stopped at the reload: there is nothing to change there). `reload`, which the 2.6
//! master answers by closing the connection, is confirmed with the reload counters of `show proc`.
//!
//! The files: `conn.rs` the connection and its prompt protocol; `parse.rs` HAProxy's answers
//! (`show stat`, `show info`, `show proc`, error texts) and the names sent; `fanout.rs` several
//! sockets and the master CLI's workers; `handle.rs` the handle and its operations; `api.rs` the
//! script functions.
//!
//! HAProxy answers errors as plain text, never as a status: the known error texts become script errors
//! with a `kind`, and the answers of `set` commands, empty on success, are errors whenever they are not.

mod api;
mod conn;
mod fanout;
mod handle;
mod parse;
#[cfg(test)]
mod tests;

pub use api::haproxy_api;
pub use handle::{Haproxy, ADD_SERVER_KEYS, DEL_SERVER_KEYS, HAPROXY_KEYS};
