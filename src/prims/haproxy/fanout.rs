//! Where a command goes and how the answers come back: every socket of a handle, and on a master
//! CLI every worker behind it (the old workers of a reload included); a change tried everywhere and
//! its failures named; the master CLI's `reload`, confirmed with `show proc`.

use std::time::Duration;

use super::conn::Socket;
use super::parse::{error_kind, is_reload, parse_reloads, parse_workers, read_only, words};
use crate::effect::Permit;
use crate::error::{fmt_secs, Failure, Kind};
use crate::run::Run;

/// Where one command goes: a socket, and on a master CLI the worker prefix (`@!<pid>`).
pub(super) struct Endpoint<'a> {
    socket: &'a Socket,
    prefix: Option<String>,
    /// An old worker of a reload: it only finishes the sessions it holds.
    old: bool,
}

impl<'a> Endpoint<'a> {
    /// The socket itself (on a master CLI: the master).
    pub(super) fn direct(socket: &'a Socket) -> Self {
        Endpoint {
            socket,
            prefix: None,
            old: false,
        }
    }

    /// What messages name: the socket, and the worker on a master CLI.
    pub(super) fn label(&self) -> String {
        match (&self.prefix, self.old) {
            (Some(p), false) => format!("{} {p}", self.socket.label),
            (Some(p), true) => format!("{} {p} (old worker)", self.socket.label),
            (None, _) => self.socket.label.clone(),
        }
    }
}

/// How each endpoint's answer to a command is judged.
pub(super) type Check<'c> = &'c dyn Fn(&Endpoint, &str, &str) -> Result<(), Failure>;

/// The sockets of a handle, and how a command reaches them.
pub(super) struct Sockets {
    pub(super) list: Vec<Socket>,
    /// The sockets are master CLIs: commands go to every worker with an `@!<pid>` prefix.
    pub(super) master: bool,
    /// Time one command may take, connecting included.
    pub(super) timeout: Duration,
}

impl Sockets {
    /// The sockets, as messages name them.
    pub(super) fn label(&self) -> String {
        let labels: Vec<&str> = self.list.iter().map(|s| s.label.as_str()).collect();
        labels.join(", ")
    }

    /// The sockets as given.
    pub(super) fn labels(&self) -> Vec<String> {
        self.list.iter().map(|s| s.label.clone()).collect()
    }

    /// Send one command to one endpoint and return the raw answer (timeout and Ctrl-C applied).
    pub(super) fn ask(
        &self,
        run: &Run,
        _: &Permit,
        ep: &Endpoint,
        command: &str,
    ) -> Result<String, Failure> {
        let line = match &ep.prefix {
            Some(p) => format!("{p} {command}"),
            None => command.to_string(),
        };
        let answer = run.block_on(
            &ep.label(),
            &format!("`{command}`"),
            Some(self.timeout),
            ep.socket.send(&line, read_only(command)),
        );
        if ep.socket.take_replaced() {
            run.report.info(&format!(
                "{}: HAProxy was reloaded: a new process serves the socket, commands go to it",
                ep.socket.label
            ));
        }
        answer
    }

    /// `ask`, except the master CLI's `reload`, which is confirmed with `show proc`.
    pub(super) fn exec(
        &self,
        run: &Run,
        p: &Permit,
        ep: &Endpoint,
        command: &str,
    ) -> Result<String, Failure> {
        if self.master && ep.prefix.is_none() && is_reload(command) {
            self.reload(run, p, ep, command)
        } else {
            self.ask(run, p, ep, command)
        }
    }

    /// The sockets themselves (on master CLIs: the masters).
    pub(super) fn direct(&self) -> Vec<Endpoint<'_>> {
        self.list.iter().map(Endpoint::direct).collect()
    }

    /// Where commands go: every socket, or on master CLIs every worker behind them, the old
    /// workers of a reload included (they still send their sessions to the backends).
    pub(super) fn endpoints(&self, run: &Run, p: &Permit) -> Result<Vec<Endpoint<'_>>, Failure> {
        if !self.master {
            return Ok(self.direct());
        }
        let mut eps = Vec::new();
        for socket in &self.list {
            eps.extend(self.worker_endpoints(run, p, socket)?);
        }
        Ok(eps)
    }

    /// The workers behind one master CLI socket (asked with `show proc` each time: a reload
    /// replaces them).
    pub(super) fn worker_endpoints<'a>(
        &'a self,
        run: &Run,
        p: &Permit,
        socket: &'a Socket,
    ) -> Result<Vec<Endpoint<'a>>, Failure> {
        let master = Endpoint::direct(socket);
        let answer = self.ask(run, p, &master, "show proc")?;
        known_error(&master, "show proc", &answer)?;
        let pids = parse_workers(&answer);
        if !pids.iter().any(|(_, old)| !old) {
            return Err(Failure::new(
                Kind::Haproxy,
                &socket.label,
                format!(
                    "{}: `show proc` lists no worker (is this a master CLI socket, `haproxy -W -S`?): {:?}",
                    socket.label,
                    words(&answer)
                ),
            ));
        }
        Ok(pids
            .into_iter()
            .map(|(pid, old)| Endpoint {
                socket,
                prefix: Some(format!("@!{pid}")),
                old,
            })
            .collect())
    }

    /// Run `command` on each endpoint and judge each answer with `check`: (endpoint label, answer)
    /// for each. A worker that exited since `show proc` listed it is skipped. A read stops at the
    /// first failure; a change (`change`) is tried on every endpoint, and its failure names the
    /// endpoints that failed and the ones where it was applied.
    pub(super) fn each(
        &self,
        run: &Run,
        p: &Permit,
        eps: &[Endpoint],
        command: &str,
        change: bool,
        check: Check,
    ) -> Result<Vec<(String, String)>, Failure> {
        let mut out = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        let mut gone = Vec::new();
        for ep in eps {
            let r = self.exec(run, p, ep, command);
            // An old worker of a reload has stopped its proxies: it refuses every change while it
            // finishes the sessions it holds, and takes no new one. There is nothing to change.
            if ep.old && change && matches!(&r, Ok(a) if a.trim() == "Proxy is disabled.") {
                run.report.debug(&format!(
                    "{}: refuses `{command}` (its proxies stopped at the reload); skipped",
                    ep.label()
                ));
                gone.push(ep.label());
                continue;
            }
            let r = r.and_then(|answer| check(ep, command, &answer).map(|()| answer));
            match r {
                // An old worker that exits (its last session ended) between `show proc` and this
                // command gets an empty answer from the master instead of `Can't find the target
                // PID`: gone too. Every read command has a non-empty answer.
                Ok(answer) if ep.old && !change && answer.trim().is_empty() => {
                    run.report.debug(&format!(
                        "{}: exited since `show proc` listed it; skipped",
                        ep.label()
                    ));
                    gone.push(ep.label());
                }
                Ok(answer) => out.push((ep.label(), answer)),
                Err(e) if ep.prefix.is_some() && e.kind == Kind::NoSuchProcess => {
                    run.report.debug(&format!(
                        "{}: exited since `show proc` listed it; skipped",
                        ep.label()
                    ));
                    gone.push(ep.label());
                }
                Err(e) if !change || e.kind.is_interruption() => return Err(e),
                Err(e) => failures.push(e),
            }
        }
        if let Some(first) = failures.first() {
            let targets: Vec<&str> = failures.iter().map(|f| f.target.as_str()).collect();
            let mut message = failures
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            if !out.is_empty() {
                let applied: Vec<&str> = out.iter().map(|(l, _)| l.as_str()).collect();
                message.push_str(&format!(" (applied on {})", applied.join(", ")));
            }
            return Err(Failure::new(first.kind, targets.join(", "), message));
        }
        if out.is_empty() {
            let label = self.label();
            return Err(Failure::new(
                Kind::NoSuchProcess,
                &label,
                format!(
                    "{label}: `{command}`: no worker left to answer ({} exited or stopped meanwhile)",
                    gone.join(", ")
                ),
            ));
        }
        Ok(out)
    }

    /// A read-only command on every endpoint: (endpoint label, answer) for each.
    pub(super) fn read(&self, run: &Run, command: &str) -> Result<Vec<(String, String)>, Failure> {
        run.read(&self.label(), |p| {
            self.each(
                run,
                p,
                &self.endpoints(run, p)?,
                command,
                false,
                &known_error,
            )
        })
    }

    /// A `set` command on every endpoint (called inside the effect gate). Their answer is empty on
    /// success: anything else is HAProxy refusing.
    pub(super) fn write(&self, run: &Run, p: &Permit, command: &str) -> Result<(), Failure> {
        self.write_answered(run, p, command, None)
    }

    /// A change on every endpoint whose success answer starts with `ok` (`add server` says "New
    /// server registered."); None: an empty answer. Anything else is HAProxy refusing.
    pub(super) fn write_answered(
        &self,
        run: &Run,
        p: &Permit,
        command: &str,
        ok: Option<&str>,
    ) -> Result<(), Failure> {
        let check = |ep: &Endpoint, command: &str, answer: &str| match ok {
            Some(ok) if answer.trim_start().starts_with(ok) => Ok(()),
            Some(_) => {
                let kind = error_kind(answer).unwrap_or(Kind::Haproxy);
                Err(refused(ep, command, kind, answer))
            }
            None => empty_answer(ep, command, answer),
        };
        let eps = self.endpoints(run, p)?;
        self.each(run, p, &eps, command, true, &check)?;
        Ok(())
    }

    /// The master CLI's `reload`. HAProxy 2.6's master re-executes itself and closes the
    /// connection without a word, so the outcome is read from `show proc`'s reload counters, and
    /// `reload` is never sent twice.
    pub(super) fn reload(
        &self,
        run: &Run,
        p: &Permit,
        ep: &Endpoint,
        command: &str,
    ) -> Result<String, Failure> {
        let label = ep.label();
        let counters = |answer: &str| {
            parse_reloads(answer).ok_or_else(|| {
                Failure::new(
                    Kind::Haproxy,
                    &label,
                    format!(
                        "{label}: `show proc` shows no master line with its reload count: {:?}",
                        words(answer)
                    ),
                )
            })
        };
        let (before, failed_before) = counters(&self.ask(run, p, ep, "show proc")?)?;
        match self.ask(run, p, ep, command) {
            // A version that answers `reload` (with its startup logs).
            Ok(answer) => return Ok(answer),
            Err(e) if e.kind == Kind::UnknownOutcome => {}
            Err(e) => return Err(e),
        }
        let deadline = std::time::Instant::now() + self.timeout;
        let mut last = format!("{before} reload(s)");
        loop {
            match self.ask(run, p, ep, "show proc").and_then(|a| counters(&a)) {
                Ok((reloads, failed)) if reloads > before => {
                    if failed > failed_before {
                        return Err(Failure::new(
                            Kind::ReloadFailed,
                            &label,
                            format!(
                                "{label}: `{command}`: the reload failed (`show proc`: {failed} failed reload(s) in a row): the previous workers keep running; HAProxy's log says why"
                            ),
                        ));
                    }
                    return Ok(String::new());
                }
                Ok((reloads, _)) => last = format!("{reloads} reload(s)"),
                Err(e) if e.kind.is_interruption() => return Err(e),
                // The master is re-executing itself: not answering yet.
                Err(e) => last = e.message,
            }
            if std::time::Instant::now() >= deadline {
                return Err(Failure::new(
                    Kind::UnknownOutcome,
                    &label,
                    format!(
                        "{label}: `{command}`: the master closed the connection without answering and `show proc` still shows no new reload after {} (last: {last}); it may or may not reload",
                        fmt_secs(self.timeout.as_secs_f64())
                    ),
                ));
            }
            run.sleep(Duration::from_millis(50))?;
        }
    }
}

/// A known error answer as a failure naming the endpoint, the command and HAProxy's words.
pub(super) fn known_error(ep: &Endpoint, command: &str, answer: &str) -> Result<(), Failure> {
    match error_kind(answer) {
        None => Ok(()),
        Some(kind) => Err(refused(ep, command, kind, answer)),
    }
}

/// The answer of a `set` command: empty on success, anything else is HAProxy refusing.
pub(super) fn empty_answer(ep: &Endpoint, command: &str, answer: &str) -> Result<(), Failure> {
    if answer.trim().is_empty() {
        Ok(())
    } else {
        let kind = error_kind(answer).unwrap_or(Kind::Haproxy);
        Err(refused(ep, command, kind, answer))
    }
}

pub(super) fn refused(ep: &Endpoint, command: &str, kind: Kind, answer: &str) -> Failure {
    let label = ep.label();
    Failure::new(
        kind,
        &label,
        format!("{label}: `{command}`: {}", words(answer)),
    )
}
