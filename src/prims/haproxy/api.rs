//! The script functions of HAProxy handles: thin conversions of their arguments to calls of
//! `Haproxy`.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Map};

use super::handle::Haproxy;
use crate::error::Failure;
use crate::opts::{seconds, Opts};
use crate::run::Run;

/// The socket list of `haproxy([...])`.
fn addresses(v: &Array) -> Result<Vec<String>, Failure> {
    v.iter()
        .map(|a| {
            a.read_lock::<rhai::ImmutableString>()
                .map(|s| s.to_string())
                .ok_or_else(|| {
                    Failure::usage(
                        "haproxy",
                        format!(
                            "haproxy: each socket must be a string (a path or host:port), not {}",
                            a.type_name()
                        ),
                    )
                })
        })
        .collect()
}

#[export_module]
pub mod haproxy_api {
    use super::*;
    use rhai::{EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// A handle on HAProxy's runtime API: a unix stats socket path, or `host:port` for a TCP stats
    /// socket. Nothing is sent until the first call; one connection is then kept open and reused.
    ///
    /// ```rhai
    /// let lb = haproxy("/var/lib/haproxy/haproxy.sock");
    /// print(lb.weight("web_servers/web1"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn haproxy(socket: &str) -> Res<Haproxy> {
        Ok(Haproxy::open(&[socket.to_string()], Map::new())?)
    }

    /// `haproxy` with options: `timeout` (seconds one command may take, default 5), `interval`
    /// (seconds between two observations of `wait_drained`/`wait_status`, default 0.05), `master`
    /// (true: the socket is a master CLI, `haproxy -W -S`; every command goes to every worker, the
    /// old workers of a reload included, so that `wait_drained` also waits for their sessions).
    ///
    /// ```rhai
    /// let lb = haproxy("127.0.0.1:9999", #{timeout: 2});
    /// let all = haproxy("/run/haproxy-master.sock", #{master: true});
    /// ```
    #[rhai_fn(name = "haproxy", return_raw)]
    pub fn haproxy_with(socket: &str, options: Map) -> Res<Haproxy> {
        Ok(Haproxy::open(&[socket.to_string()], options)?)
    }

    /// A handle on several HAProxy processes, one socket each: changes go to every socket (a
    /// failure on any is an error naming it), reads are merged (session counts summed, each
    /// socket's own values under `sockets`).
    ///
    /// ```rhai
    /// let lb = haproxy(["/run/h1.sock", "/run/h2.sock"]);
    /// lb.set_weight("web_servers/web1", 10);   // on both
    /// ```
    #[rhai_fn(name = "haproxy", return_raw)]
    pub fn haproxy_many(sockets: Array) -> Res<Haproxy> {
        Ok(Haproxy::open(&addresses(&sockets)?, Map::new())?)
    }

    /// `haproxy([...])` with options, as for one socket.
    ///
    /// ```rhai
    /// let lb = haproxy(["/run/h1.sock", "/run/h2.sock"], #{timeout: 2});
    /// ```
    #[rhai_fn(name = "haproxy", return_raw)]
    pub fn haproxy_many_with(sockets: Array, options: Map) -> Res<Haproxy> {
        Ok(Haproxy::open(&addresses(&sockets)?, options)?)
    }

    /// The handle's sockets, as given.
    #[rhai_fn(get = "sockets", pure)]
    pub fn get_sockets(lb: &mut Haproxy) -> Array {
        lb.sockets().into_iter().map(Dynamic::from).collect()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(lb: &mut Haproxy) -> String {
        format!("haproxy({})", lb.label())
    }

    /// Send a command line and return HAProxy's raw answer, as `socat` prints it. A known error
    /// answer (`No such server.`, `Unknown command`, `Permission denied`, ...) throws. Commands that
    /// do not start with `show`, `get` or `help` are changes: journaled, skipped under `--dry-run`.
    /// `;` separates commands. A change goes to every socket (worker) even when one fails; the
    /// error names the ones that failed and those where it was applied. A change whose connection
    /// closed before its answer is not sent again: it throws with kind "unknown_outcome". On several
    /// sockets each answer is headed `==> socket <==`. On a master CLI, `reload` and `show proc` go
    /// to the master (`reload` is confirmed with `show proc`; a configuration that fails to load
    /// throws with kind "reload_failed"), commands starting with `@` go as written.
    ///
    /// ```rhai
    /// print(lb.cmd("show servers state web_servers"));
    /// lb.cmd("set maxconn server web_servers/web1 100");
    /// haproxy("/run/haproxy-master.sock", #{master: true}).cmd("reload");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn cmd(ctx: NativeCallContext, lb: &mut Haproxy, command: &str) -> Res<String> {
        Ok(lb.cmd(&Run::of(&ctx), command)?)
    }

    /// `show info` as a map (`Pid`, `Version`, `CurrConns`, ...; numbers as ints). On several
    /// sockets: the first one's fields, and every socket's map under `sockets`.
    ///
    /// ```rhai
    /// let i = lb.info();
    /// print(`HAProxy ${i.Version}, ${i.CurrConns} connections`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn info(ctx: NativeCallContext, lb: &mut Haproxy) -> Res<Map> {
        Ok(lb.info(&Run::of(&ctx))?)
    }

    /// `show stat`: one map per row (frontends, backends, servers), keyed by the CSV header's names
    /// (`pxname`, `svname`, `status`, `weight`, `scur`, ...): numbers as ints, empty fields as `()`.
    /// On several sockets rows are merged: counters summed, each socket's row under `sockets`.
    ///
    /// ```rhai
    /// for r in lb.stat() { if r.svname == "BACKEND" { print(`${r.pxname}: ${r.scur}`) } }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stat(ctx: NativeCallContext, lb: &mut Haproxy) -> Res<Array> {
        Ok(lb.stat(&Run::of(&ctx))?)
    }

    /// The servers of `backend`: maps with `name`, `backend`, `addr`, `status` (`UP`, `DOWN`,
    /// `MAINT`, `DRAIN`, `no check`, ...), `weight`, `scur` (current sessions), `qcur` (queued),
    /// `backup` (bool), `check_status`, and `smax`, `stot`, `lbtot`, `chkfail`, `lastchg`,
    /// `downtime`. An unknown backend throws (`kind` "no_such_backend").
    ///
    /// ```rhai
    /// for s in lb.servers("web_servers") { print(`${s.name} ${s.status} w=${s.weight} ${s.scur}`) }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn servers(ctx: NativeCallContext, lb: &mut Haproxy, backend: &str) -> Res<Array> {
        Ok(lb.servers(&Run::of(&ctx), backend)?)
    }

    /// One server of `servers()`, named `backend/server`; an unknown one throws
    /// (`kind` "no_such_server").
    ///
    /// ```rhai
    /// if lb.server("web_servers/web1").status == "MAINT" { lb.enable("web_servers/web1") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn server(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<Map> {
        Ok(lb.server(&Run::of(&ctx), server)?)
    }

    /// The current weight of `backend/server` (`get weight`). When several sockets disagree, a
    /// warning names each one's weight and the first socket's is returned.
    ///
    /// ```rhai
    /// let w = lb.weight("web_servers/web1");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn weight(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<i64> {
        Ok(lb.weight(&Run::of(&ctx), server)?)
    }

    /// Set the weight of `backend/server` (0 to 256; 0 takes it out of rotation) on every socket.
    /// Backends with a static algorithm (`static-rr`, `first`, ...) only accept 0 and 100%:
    /// anything else throws (`kind` "static_algorithm").
    ///
    /// ```rhai
    /// lb.set_weight("web_servers/web1", 10);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_weight(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        weight: i64,
    ) -> Res<()> {
        if !(0..=256).contains(&weight) {
            let label = lb.label();
            return Err(Failure::usage(
                &label,
                format!("{label}: set_weight {server}: the weight must be 0 to 256, not {weight}"),
            )
            .into());
        }
        Ok(lb.set_weight(&Run::of(&ctx), server, &weight.to_string())?)
    }

    /// Set the weight as HAProxy's text: a number, or a percentage of the initial weight (`"50%"`).
    ///
    /// ```rhai
    /// lb.set_weight("static_servers/s1", "100%");
    /// ```
    #[rhai_fn(name = "set_weight", return_raw)]
    pub fn set_weight_text(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        weight: &str,
    ) -> Res<()> {
        let digits = weight.strip_suffix('%').unwrap_or(weight);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            let label = lb.label();
            return Err(Failure::usage(
                &label,
                format!("{label}: set_weight {server}: the weight must be a number or a percentage such as \"50%\", not {weight:?}"),
            )
            .into());
        }
        Ok(lb.set_weight(&Run::of(&ctx), server, weight)?)
    }

    /// Set the administrative state of `backend/server`: `"maint"` (out of rotation; sessions
    /// already open carry on), `"drain"` (no new sessions, the current ones finish), `"ready"`
    /// (back in rotation).
    ///
    /// ```rhai
    /// lb.set_state("web_servers/web1", "drain");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_state(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        state: &str,
    ) -> Res<()> {
        Ok(lb.set_state(&Run::of(&ctx), server, state)?)
    }

    /// `set_state(server, "drain")`: no new sessions; the current ones finish.
    ///
    /// ```rhai
    /// lb.drain("web_servers/web1");
    /// lb.wait_drained("web_servers/web1", 60);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn drain(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<()> {
        Ok(lb.set_state(&Run::of(&ctx), server, "drain")?)
    }

    /// `set_state(server, "maint")`: out of rotation. When every normal server is out, the
    /// `backup` servers take the traffic.
    ///
    /// ```rhai
    /// lb.disable("web_servers/web1");
    /// defer(|| lb.enable("web_servers/web1"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn disable(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<()> {
        Ok(lb.set_state(&Run::of(&ctx), server, "maint")?)
    }

    /// `set_state(server, "ready")`: back in rotation.
    ///
    /// ```rhai
    /// lb.enable("web_servers/web1");
    /// lb.wait_status("web_servers/web1", "UP", 10);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn enable(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<()> {
        Ok(lb.set_state(&Run::of(&ctx), server, "ready")?)
    }

    /// Wait until `backend/server` has no session and nothing queued (`scur` and `qcur` 0, summed
    /// over every socket and, on a master CLI, every worker old and new), observing every
    /// `interval`; each new count is shown as progress. A count HAProxy does not give is never taken
    /// for 0. Throws after `timeout` seconds with the counts seen last; a socket that fails or stops
    /// answering throws its own error at once. Warns when the server is still in rotation. Under
    /// `--dry-run` (where the drain was skipped) it looks the server up, says "would wait" and
    /// returns.
    ///
    /// ```rhai
    /// lb.drain("web_servers/web1");
    /// lb.wait_drained("web_servers/web1", 60);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_drained(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        let timeout = seconds(&timeout, &lb.label(), "the timeout")?;
        Ok(lb.wait_drained(&Run::of(&ctx), server, timeout)?)
    }

    /// Wait until the status of `backend/server` starts with the word `status` (`"UP"`, `"DOWN"`,
    /// `"MAINT"`, `"DRAIN"`; any case) on every socket. A server without health checks (`no check`)
    /// counts as UP. Each new status is shown as progress. Throws after `timeout` seconds with the
    /// status seen last. Under `--dry-run` it looks the server up, says "would wait" and returns.
    ///
    /// ```rhai
    /// lb.enable("web_servers/web1");
    /// lb.wait_status("web_servers/web1", "UP", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_status(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        status: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        let timeout = seconds(&timeout, &lb.label(), "the timeout")?;
        Ok(lb.wait_status(&Run::of(&ctx), server, status, timeout)?)
    }

    /// Add a server to `backend` at runtime (`add server`, HAProxy 2.4+ dynamic servers), on every
    /// socket, and put it in rotation: `lb.add_server("be/name", "10.0.0.9:80")`. The backend
    /// must use a dynamic algorithm (`roundrobin`, `leastconn`, ...). A dynamic server is not in the
    /// configuration file: a reload drops it unless the configuration gets it too (the recap lists
    /// it as added at runtime). An effect.
    ///
    /// ```rhai
    /// lb.add_server("web_servers/web1-g2", "10.0.0.9:80");
    /// lb.wait_status("web_servers/web1-g2", "UP", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn add_server(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        addr: &str,
    ) -> Res<()> {
        add_server_with(ctx, lb, server, addr, Map::new())
    }

    /// `add_server` with options: `weight` (default the backend's default, 1), `check` (default
    /// true: health checks, as the configuration's `check`; HAProxy then reports it UP once they
    /// pass), `enable` (default true: set it ready; false leaves it in maintenance, where a new
    /// server starts).
    ///
    /// ```rhai
    /// lb.add_server("web_servers/canary", "10.0.0.9:80", #{weight: 1, check: true});
    /// ```
    #[rhai_fn(name = "add_server", return_raw)]
    pub fn add_server_with(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        addr: &str,
        options: Map,
    ) -> Res<()> {
        let label = lb.label();
        let o = Opts::new(options, &["weight", "check", "enable"], &label)?;
        let weight = o.int("weight")?;
        if let Some(w) = weight.filter(|w| !(0..=256).contains(w)) {
            return Err(Failure::usage(
                &label,
                format!("{label}: add_server {server}: the weight must be 0 to 256, not {w}"),
            )
            .into());
        }
        Ok(lb.add_server(
            &Run::of(&ctx),
            server,
            addr,
            weight,
            o.bool("check", true)?,
            o.bool("enable", true)?,
        )?)
    }

    /// Delete a server from its backend at runtime (`del server`), on every socket. HAProxy
    /// deletes only a server in maintenance with no session left: it is put in maintenance, its
    /// sessions are waited for (up to 30 s; the wait is said), then it is deleted. A server of the
    /// configuration file comes back on the next reload. An effect.
    ///
    /// ```rhai
    /// lb.del_server("web_servers/web1");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn del_server(ctx: NativeCallContext, lb: &mut Haproxy, server: &str) -> Res<()> {
        del_server_with(ctx, lb, server, Map::new())
    }

    /// `del_server` with options: `timeout` (seconds to wait for its sessions to end, default 30).
    ///
    /// ```rhai
    /// lb.del_server("web_servers/web1", #{timeout: 120});
    /// ```
    #[rhai_fn(name = "del_server", return_raw)]
    pub fn del_server_with(
        ctx: NativeCallContext,
        lb: &mut Haproxy,
        server: &str,
        options: Map,
    ) -> Res<()> {
        let label = lb.label();
        let o = Opts::new(options, &["timeout"], &label)?;
        let timeout = o
            .secs("timeout")?
            .unwrap_or(std::time::Duration::from_secs(30));
        Ok(lb.del_server(&Run::of(&ctx), server, timeout)?)
    }
}
