//! The `Haproxy` handle and its operations: servers, weights, states, waits, raw commands.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, Map};
use serde_json::{json, Value};

use crate::effect::{Access, Permit};
use crate::error::{fmt_secs, Failure, Kind};
use crate::ledger::Mark;
use crate::opts::Opts;
use crate::run::Run;

use super::conn::Socket;
use super::fanout::{known_error, Endpoint, Sockets};
use super::parse::*;

/// Time one command may take (connecting included) unless the handle's `timeout` option says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two observations of `wait_drained` and `wait_status`.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// An endpoint's label, the servers it was asked for, and the names of all its servers.
type PerEndpoint = (String, Vec<Map>, Vec<String>);

/// The options of `haproxy(socket, #{...})`.
pub const HAPROXY_KEYS: &[&str] = &["timeout", "master", "interval"];
/// The options of `add_server`.
pub const ADD_SERVER_KEYS: &[&str] = &["weight", "check", "enable"];
/// The options of `del_server`.
pub const DEL_SERVER_KEYS: &[&str] = &["timeout"];

/// A handle on one or more HAProxy processes, through their stats sockets or master CLIs.
/// Cloning it shares the open connections.
#[derive(Clone)]
pub struct Haproxy(Arc<Inner>);

struct Inner {
    sockets: Sockets,
    /// Time between two observations of a wait.
    interval: Duration,
}

impl fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Haproxy({})", self.label())
    }
}

impl Haproxy {
    pub(super) fn open(addrs: &[String], options: Map) -> Result<Haproxy, Failure> {
        let label = addrs.join(", ");
        let o = Opts::new(options, HAPROXY_KEYS, &label)?;
        if addrs.is_empty() {
            return Err(Failure::usage(
                "haproxy",
                "haproxy: the list of sockets is empty",
            ));
        }
        let interval = o.secs("interval")?.unwrap_or(DEFAULT_INTERVAL);
        let master = o.bool("master", false)?;
        Ok(Haproxy(Arc::new(Inner {
            sockets: Sockets {
                list: addrs
                    .iter()
                    .map(|a| Socket::new(a, master))
                    .collect::<Result<_, _>>()?,
                master,
                timeout: o.secs("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            },
            interval: interval.max(Duration::from_millis(10)),
        })))
    }

    /// The sockets, as messages name them.
    pub(super) fn label(&self) -> String {
        self.0.sockets.label()
    }

    pub(super) fn sockets(&self) -> Vec<String> {
        self.0.sockets.labels()
    }

    /// `show info` as a map; on several sockets the first one's, with every socket's under `sockets`.
    pub(super) fn info(&self, run: &Run) -> Result<Map, Failure> {
        let mut maps: Vec<(String, Map)> = self
            .0
            .sockets
            .read(run, "show info")?
            .into_iter()
            .map(|(l, a)| (l, parse_info(&a)))
            .collect();
        let mut first = maps[0].1.clone();
        if maps.len() > 1 {
            let sockets: Map = maps.drain(..).map(|(l, m)| (l.into(), m.into())).collect();
            first.insert("sockets".into(), sockets.into());
        }
        Ok(first)
    }

    /// `show stat` as maps, the rows of several sockets merged.
    pub(super) fn stat(&self, run: &Run) -> Result<Array, Failure> {
        let per = self
            .0
            .sockets
            .read(run, "show stat")?
            .into_iter()
            .map(|(l, a)| Ok((l.clone(), parse_stat(&l, &a)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(merge_rows(per, &["pxname", "svname"], SUMMED)
            .into_iter()
            .map(Dynamic::from_map)
            .collect())
    }

    /// `get weight`: the first socket's, with a warning when the sockets disagree.
    pub(super) fn weight(&self, run: &Run, server: &str) -> Result<i64, Failure> {
        parse_server(&self.label(), server)?;
        let command = format!("get weight {server}");
        let mut weights: Vec<(String, i64)> = Vec::new();
        for (label, answer) in self.0.sockets.read(run, &command)? {
            let w = answer
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<i64>().ok())
                .ok_or_else(|| {
                    Failure::new(
                        Kind::Haproxy,
                        &label,
                        format!(
                            "{label}: `{command}`: unexpected answer {:?}",
                            words(&answer)
                        ),
                    )
                })?;
            weights.push((label, w));
        }
        if weights.iter().any(|(_, w)| *w != weights[0].1) {
            let per: Vec<String> = weights.iter().map(|(l, w)| format!("{l}: {w}")).collect();
            run.report.warn(&format!(
                "{server} has different weights: {}",
                per.join(", ")
            ));
        }
        Ok(weights[0].1)
    }

    /// The servers of `backend` as `servers()` describes them, per endpoint.
    pub(super) fn servers_each(
        &self,
        run: &Run,
        backend: &str,
    ) -> Result<Vec<(String, Vec<Map>)>, Failure> {
        self.servers_named(run, backend, None)?
            .into_iter()
            .map(|(label, maps, _)| Ok((label, maps)))
            .collect()
    }

    /// The servers of `backend` per endpoint (its label, the servers, every server name there):
    /// all of them, or only `only`.
    fn servers_named(
        &self,
        run: &Run,
        backend: &str,
        only: Option<&str>,
    ) -> Result<Vec<PerEndpoint>, Failure> {
        check_backend(&self.label(), backend)?;
        let command = format!("show stat {backend} 4 -1");
        self.0
            .sockets
            .read(run, &command)?
            .into_iter()
            .map(|(label, answer)| {
                let (maps, names) = parse_servers(&label, &answer, only)?;
                Ok((label, maps, names))
            })
            .collect()
    }

    pub(super) fn servers(&self, run: &Run, backend: &str) -> Result<Array, Failure> {
        Ok(
            merge_rows(self.servers_each(run, backend)?, &["name"], SERVER_SUMMED)
                .into_iter()
                .map(Dynamic::from_map)
                .collect(),
        )
    }

    /// One server of `servers()`.
    pub(super) fn server(&self, run: &Run, server: &str) -> Result<Map, Failure> {
        let (be, srv) = parse_server(&self.label(), server)?;
        let per = self
            .server_each(run, server)?
            .into_iter()
            .map(|(label, m)| (label, vec![m]))
            .collect();
        let merged = merge_rows(per, &["name"], SERVER_SUMMED);
        find_server(&self.label(), be, srv, merged)
    }

    /// One server as each endpoint sees it; an error when an endpoint does not have it.
    pub(super) fn server_each(
        &self,
        run: &Run,
        server: &str,
    ) -> Result<Vec<(String, Map)>, Failure> {
        let (be, srv) = parse_server(&self.label(), server)?;
        self.servers_named(run, be, Some(srv))?
            .into_iter()
            .map(|(label, maps, names)| match maps.into_iter().next() {
                Some(m) => Ok((label, m)),
                None => Err(no_server(&label, be, srv, &names)),
            })
            .collect()
    }

    /// Under `--dry-run` a change is skipped, but a typo in its server name still fails.
    pub(super) fn dry_run_check(&self, run: &Run, server: &str) -> Result<(), Failure> {
        if run.dry_run() {
            self.0.sockets.read(run, &format!("get weight {server}"))?;
        }
        Ok(())
    }

    pub(super) fn set_weight(&self, run: &Run, server: &str, weight: &str) -> Result<(), Failure> {
        parse_server(&self.label(), server)?;
        let command = format!("set weight {server} {weight}");
        self.set(run, server, &command, json!({"weight": weight}), false)
    }

    pub(super) fn set_state(&self, run: &Run, server: &str, state: &str) -> Result<(), Failure> {
        let label = self.label();
        parse_server(&label, server)?;
        if !matches!(state, "ready" | "drain" | "maint") {
            return Err(Failure::usage(
                &label,
                format!("{label}: set_state {server}: the state must be \"maint\", \"drain\" or \"ready\", not {state:?}"),
            ));
        }
        let command = format!("set server {server} state {state}");
        self.set(run, server, &command, json!({"state": state}), false)
    }

    /// `add server be/name addr [weight W] [check]` on every socket (HAProxy 2.4+ dynamic
    /// servers): the new server starts in maintenance; with `check`, its health checks are turned
    /// on; with `enable`, it is then set ready. Marked as added at runtime: it is not in the
    /// configuration file, and a reload drops it.
    pub(super) fn add_server(
        &self,
        run: &Run,
        server: &str,
        addr: &str,
        weight: Option<i64>,
        check: bool,
        enable: bool,
    ) -> Result<(), Failure> {
        let label = self.label();
        let (be, _) = parse_server(&label, server)?;
        check_address(&label, addr)?;
        let mut command = format!("add server {server} {addr}");
        if let Some(w) = weight {
            command.push_str(&format!(" weight {w}"));
        }
        if check {
            command.push_str(" check");
        }
        if run.dry_run() {
            // A typo in the backend still fails.
            self.servers(run, be)?;
        }
        let access = Access::Change {
            action: &command,
            details: json!({"sockets": self.sockets(), "server": server, "addr": addr, "weight": weight, "check": check}),
            marks: vec![Mark::Out {
                key: format!("{label} {server} runtime"),
                what: server.to_string(),
                state: "added at runtime: not in the configuration file, gone after a reload"
                    .into(),
            }],
        };
        run.gate(&label, access, |p| {
            self.0
                .sockets
                .write_answered(run, p, &command, Some("New server registered"))
        })?;
        if check {
            self.set(
                run,
                server,
                &format!("enable health {server}"),
                json!({}),
                true,
            )?;
        }
        if enable {
            let ready = format!("set server {server} state ready");
            self.set(run, server, &ready, json!({"state": "ready"}), true)?;
        }
        Ok(())
    }

    /// `del server be/name` on every socket. HAProxy deletes only a server in maintenance with no
    /// session left: it is put in maintenance first, and its sessions are waited for (at most
    /// `timeout`, saying so), then deleted.
    pub(super) fn del_server(
        &self,
        run: &Run,
        server: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let label = self.label();
        parse_server(&label, server)?;
        let rows = self.server_each(run, server)?;
        if rows.iter().any(|(_, m)| {
            !status_is(
                &m.get("status").map(|s| s.to_string()).unwrap_or_default(),
                "MAINT",
            )
        }) {
            self.set_state(run, server, "maint")?;
        }
        let sessions: i64 = rows
            .iter()
            .map(|(_, m)| m.get("scur").and_then(|v| v.as_int().ok()).unwrap_or(0))
            .sum();
        if sessions > 0 && !run.dry_run() {
            run.report.info(&format!(
                "{label}: {server}: waiting for its {sessions} session(s) to end: HAProxy deletes only a server without sessions"
            ));
        }
        self.wait_drained(run, server, timeout)?;
        let command = format!("del server {server}");
        let runtime = format!("{label} {server} runtime");
        let mut marks = vec![
            Mark::Back {
                key: format!("{label} {server}"),
            },
            Mark::Back {
                key: format!("{label} {server} weight"),
            },
        ];
        // A server this run added is simply gone again; one of the configuration comes back on
        // the next reload.
        if run.ledger.lock().unwrap().is_out(&runtime) {
            marks.push(Mark::Back { key: runtime });
        } else {
            marks.push(Mark::Out {
                key: runtime,
                what: server.to_string(),
                state: "deleted at runtime: still in the configuration file, back after a reload"
                    .into(),
            });
        }
        let access = Access::Change {
            action: &command,
            details: json!({"sockets": self.sockets(), "server": server}),
            marks,
        };
        run.gate(&label, access, |p| {
            self.0
                .sockets
                .write_answered(run, p, &command, Some("Server deleted"))
        })?;
        Ok(())
    }

    /// A `set` command for one (checked) server on every socket, through the gate; journaled with
    /// the sockets, the server and `details`.
    fn set(
        &self,
        run: &Run,
        server: &str,
        command: &str,
        details: Value,
        just_added: bool,
    ) -> Result<(), Failure> {
        // Under --dry-run a server that `add_server` would have added does not exist yet.
        if !just_added {
            self.dry_run_check(run, server)?;
        }
        let mut journaled = json!({"sockets": self.sockets(), "server": server});
        if let (Value::Object(j), Value::Object(d)) = (&mut journaled, details) {
            j.extend(d);
        }
        let label = self.label();
        let access = Access::Change {
            action: command,
            details: journaled,
            marks: marks(&label, command),
        };
        run.gate(&label, access, |p| self.0.sockets.write(run, p, command))?;
        Ok(())
    }

    /// Poll the server's rows until `observe` says so. Each new observation is reported as
    /// progress; on timeout, the message tells what was seen last. Under `--dry-run` the changes
    /// waited for were skipped: the server is looked up and the wait is only reported.
    pub(super) fn wait(
        &self,
        run: &Run,
        server: &str,
        timeout: Duration,
        (what, until): (&str, &str),
        mut observe: impl FnMut(&[(String, Map)]) -> Result<(), String>,
    ) -> Result<(), Failure> {
        let label = self.label();
        parse_server(&label, server)?;
        if run.dry_run() {
            self.server(run, server)?;
            run.report.would(
                &format!(
                    "wait until {server} is {} (up to {})",
                    until,
                    fmt_secs(timeout.as_secs_f64())
                ),
                &label,
            );
            return Ok(());
        }
        let mut last: Option<String> = None;
        // Whether the wait ended on the probe's own failure (a socket timing out, an unknown
        // server), which is passed on as it is.
        let mut failed = false;
        let r = run.poll(
            &label,
            &format!("{server}: {what}"),
            timeout,
            self.0.interval,
            || {
                let rows = self.server_each(run, server).inspect_err(|e| {
                    failed = e.kind != Kind::Deadline;
                })?;
                match observe(&rows) {
                    Ok(()) => Ok(Ok(())),
                    Err(seen) => {
                        if last.as_ref() != Some(&seen) {
                            run.report.info(&format!("{label}: {server}: {seen}"));
                            last = Some(seen.clone());
                        }
                        Ok(Err(seen))
                    }
                }
            },
        );
        match r {
            Err(e) if e.kind == Kind::Timeout && !failed => Err(Failure::new(
                Kind::Timeout,
                &label,
                format!(
                    "{label}: {server}: {} after {} ({what})",
                    last.as_deref().unwrap_or("no answer from HAProxy yet"),
                    fmt_secs(timeout.as_secs_f64())
                ),
            )),
            r => r,
        }
    }

    pub(super) fn wait_drained(
        &self,
        run: &Run,
        server: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let mut warned = false;
        let what = ("waiting until drained", "drained");
        self.wait(run, server, timeout, what, |rows| {
            let count = |m: &Map, k: &str| m.get(k).and_then(|v| v.as_int().ok());
            let int = |m: &Map, k: &str| count(m, k).unwrap_or(0);
            // A count HAProxy did not give is not a zero.
            if let Some((l, m)) = rows
                .iter()
                .find(|(_, m)| count(m, "scur").is_none() || count(m, "qcur").is_none())
            {
                let shown = |k: &str| m.get(k).map_or("missing".into(), |v| format!("{v:?}"));
                return Err(format!(
                    "session count unknown on {l} (scur {}, qcur {})",
                    shown("scur"),
                    shown("qcur")
                ));
            }
            let scur: i64 = rows.iter().map(|(_, m)| int(m, "scur")).sum();
            let qcur: i64 = rows.iter().map(|(_, m)| int(m, "qcur")).sum();
            if scur == 0 && qcur == 0 {
                return Ok(());
            }
            let in_rotation = rows.iter().find(|(_, m)| {
                let st = m.get("status").map(|s| s.to_string()).unwrap_or_default();
                int(m, "weight") > 0 && (status_is(&st, "UP") || status_is(&st, "DOWN"))
            });
            if let (false, Some((label, m))) = (warned, in_rotation) {
                warned = true;
                run.report.warn(&format!(
                    "{label}: {server} is still in rotation (status {}, weight {}): new sessions keep arriving; drain or disable it first",
                    m.get("status").map(|s| s.to_string()).unwrap_or_default(),
                    int(m, "weight")
                ));
            }
            let mut seen = format!("still {scur} session(s), {qcur} queued");
            if rows.len() > 1 {
                let per: Vec<String> = rows
                    .iter()
                    .map(|(l, m)| format!("{l}: {}+{}", int(m, "scur"), int(m, "qcur")))
                    .collect();
                seen.push_str(&format!(" ({})", per.join(", ")));
            }
            Err(seen)
        })
    }

    pub(super) fn wait_status(
        &self,
        run: &Run,
        server: &str,
        want: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let label = self.label();
        if want.trim().is_empty() {
            return Err(Failure::usage(
                &label,
                format!("{label}: wait_status {server}: the wanted status is empty (e.g. \"UP\")"),
            ));
        }
        let what = format!("waiting for status {want}");
        let until = want.to_uppercase();
        self.wait(run, server, timeout, (&what, &until), |rows| {
            let statuses: Vec<(String, String)> = rows
                .iter()
                .map(|(l, m)| {
                    (
                        l.clone(),
                        m.get("status").map(|s| s.to_string()).unwrap_or_default(),
                    )
                })
                .collect();
            if statuses.iter().all(|(_, s)| status_is(s, want)) {
                return Ok(());
            }
            Err(if statuses.len() == 1 {
                format!("status still {}", statuses[0].1)
            } else {
                let per: Vec<String> = statuses.iter().map(|(l, s)| format!("{l}: {s}")).collect();
                format!("status still {}", per.join(", "))
            })
        })
    }

    /// `cmd`: a raw command line, `;`-separated commands sent one at a time.
    pub(super) fn cmd(&self, run: &Run, line: &str) -> Result<String, Failure> {
        let label = self.label();
        if line.contains(['\n', '\r']) {
            return Err(Failure::usage(
                &label,
                format!("{label}: cmd: one command line only (separate commands with `;`), not {line:?}"),
            ));
        }
        let commands = split_commands(line);
        if commands.is_empty() {
            return Err(Failure::usage(
                &label,
                format!("{label}: cmd: the command is empty"),
            ));
        }
        if let Some(c) = commands.iter().find(|c| {
            let w = for_master(c).split_whitespace().next().unwrap_or("");
            matches!(w, "prompt" | "quit")
        }) {
            return Err(Failure::usage(
                &label,
                format!("{label}: cmd: `{c}` is not for scripts: runner keeps the connection in interactive mode itself"),
            ));
        }
        let go = |p: &Permit| -> Result<String, Failure> {
            let direct = self.0.sockets.direct();
            // Resolved once (on a master CLI, one `show proc`), again after a reload.
            let mut workers: Option<Vec<Endpoint>> = None;
            let mut out = Vec::new();
            for c in &commands {
                // On a master CLI, a command routed by the script itself (`@1 ...`, `@master
                // ...`) and the master's own commands go to the master; any other to every worker.
                let eps: &[Endpoint] =
                    if !self.0.sockets.master || c.starts_with('@') || master_only(c) {
                        &direct
                    } else {
                        match &mut workers {
                            Some(w) => w,
                            none => none.insert(self.0.sockets.endpoints(run, p)?),
                        }
                    };
                out.extend(
                    self.0
                        .sockets
                        .each(run, p, eps, c, !read_only(c), &known_error)?,
                );
                if is_reload(c) {
                    workers = None;
                }
            }
            if out.len() == 1 {
                return Ok(out.pop().unwrap().1);
            }
            let mut text = String::new();
            let mut previous: Option<String> = None;
            for (l, a) in out {
                if self.0.sockets.list.len() > 1 || self.0.sockets.master {
                    if previous.as_deref() != Some(l.as_str()) {
                        text.push_str(&format!("==> {l} <==\n"));
                    }
                    previous = Some(l);
                }
                text.push_str(&a);
            }
            Ok(text)
        };
        let action = format!("run `{line}`");
        let access = if commands.iter().all(|c| read_only(c)) {
            Access::Read
        } else {
            Access::Change {
                action: &action,
                details: json!({"sockets": self.sockets(), "command": line}),
                marks: commands.iter().flat_map(|c| marks(&label, c)).collect(),
            }
        };
        Ok(run.gate(&label, access, go)?.unwrap_or_default())
    }
}
