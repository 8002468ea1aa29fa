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
//! On a master CLI (`haproxy -W -S`), commands go to every worker `show proc` lists, the old workers
//! of a reload included: they keep carrying their sessions to the backends until those end. A
//! worker that exits in between is skipped. `reload`, which the 2.6 master answers by closing the
//! connection, is confirmed with the reload counters of `show proc`.
//!
//! HAProxy answers errors as plain text, never as a status: the known error texts become script errors
//! with a `kind`, and the answers of `set` commands, empty on success, are errors whenever they are not.

use std::collections::hash_map::{Entry, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Map, INT};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::effect::{Access, Permit};
use crate::error::{fmt_secs, Failure, Kind};
use crate::opts::{seconds, Opts};
use crate::run::Run;

/// Time one command may take (connecting included) unless the handle's `timeout` option says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two observations of `wait_drained` and `wait_status`.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// A handle on one or more HAProxy processes, through their stats sockets or master CLIs.
/// Cloning it shares the open connections.
#[derive(Clone)]
pub struct Haproxy(Arc<Inner>);

struct Inner {
    sockets: Vec<Socket>,
    /// The sockets are master CLIs: commands go to every worker with an `@!<pid>` prefix.
    master: bool,
    timeout: Duration,
    interval: Duration,
}

impl fmt::Debug for Haproxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Haproxy({})", self.label())
    }
}

/// Where a stats socket listens.
#[derive(Debug, Clone)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

impl Addr {
    /// `/path.sock` (or `unix@/path.sock`), `host:port` (or `tcp@host:port`, `ipv4@host:port`).
    fn parse(s: &str) -> Result<Addr, Failure> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Failure::usage(
                "haproxy",
                "haproxy: the socket address is empty; give a unix socket path or host:port",
            ));
        }
        if let Some(p) = s.strip_prefix("unix@") {
            return Ok(Addr::Unix(p.into()));
        }
        for prefix in ["tcp@", "ipv4@", "ipv6@"] {
            if let Some(a) = s.strip_prefix(prefix) {
                return Ok(Addr::Tcp(a.into()));
            }
        }
        let tcp = !s.contains('/')
            && s.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        Ok(if tcp {
            Addr::Tcp(s.into())
        } else {
            Addr::Unix(s.into())
        })
    }
}

/// What a connection is: a unix or TCP stream.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Conn = Box<dyn Stream>;

/// How an exchange on a connection ended.
enum Answer {
    /// The whole answer, ended by the prompt: the connection is ready for the next command.
    Prompt(String),
    /// Writing the command failed: the connection was already closed and HAProxy never read it.
    Unsent(std::io::Error),
    /// The command was written, then the connection ended before the prompt: after this text
    /// (possibly empty), with the read error if there was one.
    Ended(String, Option<std::io::Error>),
}

/// One stats socket or master CLI, and the connection kept open on it.
struct Socket {
    /// The address as the script gave it: what messages name.
    label: String,
    addr: Addr,
    /// None between commands when no connection is open. Taken out while a command runs, so a
    /// command abandoned half-way (timeout, Ctrl-C) drops its connection instead of leaving an
    /// unread answer for the next command.
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// This socket did not answer `prompt` with a prompt: one connection per command.
    oneshot: AtomicBool,
}

impl Socket {
    fn new(label: &str) -> Result<Socket, Failure> {
        Ok(Socket {
            label: label.trim().to_string(),
            addr: Addr::parse(label)?,
            conn: tokio::sync::Mutex::new(None),
            oneshot: AtomicBool::new(false),
        })
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let r: std::io::Result<Conn> = match &self.addr {
            Addr::Unix(p) => tokio::net::UnixStream::connect(p)
                .await
                .map(|s| Box::new(s) as Conn),
            Addr::Tcp(a) => tokio::net::TcpStream::connect(a.as_str()).await.map(|s| {
                let _ = s.set_nodelay(true);
                Box::new(s) as Conn
            }),
        };
        r.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    " (is HAProxy running with a `stats socket` there?)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (the socket's mode or owner excludes this user)"
                }
                _ => "",
            };
            Failure::new(
                Kind::Connect,
                &self.label,
                format!("{}: cannot connect: {e}{hint}", self.label),
            )
        })
    }

    /// A new connection in interactive mode, or None when the socket does not speak it.
    async fn open(&self) -> Result<Option<Conn>, Failure> {
        let mut conn = self.connect().await?;
        match exchange(&mut conn, "prompt").await {
            Answer::Prompt(_) => Ok(Some(conn)),
            Answer::Ended(..) => {
                self.oneshot.store(true, Ordering::SeqCst);
                Ok(None)
            }
            Answer::Unsent(e) => Err(self.io_failure(e)),
        }
    }

    /// Send one command line and return HAProxy's answer, exactly as `socat` would print it.
    ///
    /// In interactive mode every complete answer ends with the prompt: an answer without it was cut
    /// off. A command is sent again (once, on a new connection) only when HAProxy cannot have read
    /// it (writing it failed), or when it only reads (`read_only`). A change whose connection ended
    /// after it was written may have been applied: it fails with kind "unknown_outcome", never sent
    /// twice.
    async fn send(&self, line: &str, read_only: bool) -> Result<String, Failure> {
        let mut slot = self.conn.lock().await;
        let mut resent = false;
        loop {
            if self.oneshot.load(Ordering::SeqCst) {
                return self.send_oneshot(line).await;
            }
            // A connection HAProxy closed while idle (`stats timeout`, a restart) is replaced
            // before the command is written.
            let idle = match slot.take() {
                Some(mut c) => (!closed(&mut c).await).then_some(c),
                None => None,
            };
            let mut conn = match idle {
                Some(c) => c,
                None => match self.open().await? {
                    Some(c) => c,
                    None => return self.send_oneshot(line).await,
                },
            };
            match exchange(&mut conn, line).await {
                Answer::Prompt(text) => {
                    *slot = Some(conn);
                    return Ok(text);
                }
                // A whole error line after which HAProxy closes (the master CLI does so for a
                // worker that is gone: `Can't find the target PID ...`).
                Answer::Ended(text, _) if complete_error(&text) => return Ok(text),
                Answer::Unsent(_) if !resent => resent = true,
                Answer::Ended(..) if read_only && !resent => resent = true,
                Answer::Unsent(e) => return Err(self.io_failure(e)),
                Answer::Ended(text, e) => return Err(self.cut_off(line, &text, e, read_only)),
            }
        }
    }

    /// One connection for one command: HAProxy answers and closes.
    async fn send_oneshot(&self, line: &str) -> Result<String, Failure> {
        let mut conn = self.connect().await?;
        let r = async {
            conn.write_all(format!("{line}\n").as_bytes()).await?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf).await?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        r.await.map_err(|e| self.io_failure(e))
    }

    fn io_failure(&self, e: std::io::Error) -> Failure {
        Failure::new(Kind::Io, &self.label, format!("{}: {e}", self.label))
    }

    /// The connection ended after `line` was written and before the prompt that ends an answer.
    fn cut_off(
        &self,
        line: &str,
        text: &str,
        e: Option<std::io::Error>,
        read_only: bool,
    ) -> Failure {
        let how = match (text.is_empty(), e) {
            (true, None) => "HAProxy closed the connection without answering".to_string(),
            (true, Some(e)) => format!("the connection failed before an answer ({e})"),
            (false, None) => format!(
                "HAProxy closed the connection after {} byte(s) of answer, without the prompt that ends a complete one",
                text.len()
            ),
            (false, Some(e)) => format!(
                "the connection failed after {} byte(s) of answer, before the prompt that ends a complete one ({e})",
                text.len()
            ),
        };
        if read_only {
            Failure::new(
                Kind::Io,
                &self.label,
                format!("{}: `{line}`: {how} (tried twice)", self.label),
            )
        } else {
            Failure::new(
                Kind::UnknownOutcome,
                &self.label,
                format!(
                    "{}: `{line}`: {how}; the command was sent and may have been applied (not sent again: check the state before retrying)",
                    self.label
                ),
            )
        }
    }
}

/// Whether a connection's last words are one whole known error line.
fn complete_error(text: &str) -> bool {
    text.ends_with('\n') && text.trim().lines().count() == 1 && error_kind(text).is_some()
}

/// Whether an idle connection was closed by the other end (or holds stray bytes, which would
/// desynchronise answers): checked without waiting.
async fn closed(conn: &mut Conn) -> bool {
    let mut b = [0u8; 256];
    std::future::poll_fn(|cx| {
        let mut rb = ReadBuf::new(&mut b);
        match Pin::new(&mut **conn).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Ready(false),
            Poll::Ready(_) => Poll::Ready(true),
        }
    })
    .await
}

/// Write one command line and read its answer up to the next prompt.
async fn exchange(conn: &mut Conn, line: &str) -> Answer {
    if let Err(e) = conn.write_all(format!("{line}\n").as_bytes()).await {
        return Answer::Unsent(e);
    }
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity());
        }
        match conn.read_buf(&mut buf).await {
            Ok(0) => return Answer::Ended(String::from_utf8_lossy(&buf).into_owned(), None),
            Ok(_) => {}
            Err(e) => return Answer::Ended(String::from_utf8_lossy(&buf).into_owned(), Some(e)),
        }
        if let Some(end) = prompt_start(&buf) {
            buf.truncate(end);
            return Answer::Prompt(String::from_utf8_lossy(&buf).into_owned());
        }
    }
}

/// Where the prompt starts when `buf` ends with one: a last line (no newline after it) such as `> `,
/// `master> ` or, after a failed reload, `master[ReloadFailed]> `. HAProxy writes nothing after the
/// prompt until it gets the next command, so a prompt at the end of what was read is the end of the
/// answer.
fn prompt_start(buf: &[u8]) -> Option<usize> {
    if !buf.ends_with(b"> ") {
        return None;
    }
    let start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let name = &buf[start..buf.len() - 2];
    let plausible = name.len() <= 40
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+@![]:".contains(b));
    plausible.then_some(start)
}

/// Where one command goes: a socket, and on a master CLI the worker prefix (`@!<pid>`).
struct Endpoint<'a> {
    socket: &'a Socket,
    prefix: Option<String>,
    /// An old worker of a reload: it only finishes the sessions it holds.
    old: bool,
}

impl<'a> Endpoint<'a> {
    /// The socket itself (on a master CLI: the master).
    fn direct(socket: &'a Socket) -> Self {
        Endpoint {
            socket,
            prefix: None,
            old: false,
        }
    }

    /// What messages name: the socket, and the worker on a master CLI.
    fn label(&self) -> String {
        match (&self.prefix, self.old) {
            (Some(p), false) => format!("{} {p}", self.socket.label),
            (Some(p), true) => format!("{} {p} (old worker)", self.socket.label),
            (None, _) => self.socket.label.clone(),
        }
    }
}

/// HAProxy's error answers (at the start of the answer), and the `kind` scripts see for them.
/// The texts are HAProxy 2.6's (`src/cli.c`, `src/server.c`, `src/mworker.c`).
const ERRORS: &[(&str, Kind)] = &[
    ("No such server", Kind::NoSuchServer),
    ("No such backend", Kind::NoSuchBackend),
    ("No such proxy", Kind::NoSuchBackend),
    ("No such frontend", Kind::NoSuchFrontend),
    ("Unknown command", Kind::UnknownCommand),
    ("Permission denied", Kind::Permission),
    (
        "Backend is using a static LB algorithm",
        Kind::StaticAlgorithm,
    ),
    (
        "Backend must use a dynamic load balancing",
        Kind::StaticAlgorithm,
    ),
    ("Can't find the target PID", Kind::NoSuchProcess),
    (
        "Health check was not configured on this server",
        Kind::NotConfigured,
    ),
    (
        "Agent was not configured on this server",
        Kind::NotConfigured,
    ),
    (
        "agent checks are not enabled on this server",
        Kind::NotConfigured,
    ),
    ("cannot change health on a tracking server", Kind::Haproxy),
    (
        "Only servers in maintenance mode can be deleted",
        Kind::Haproxy,
    ),
    ("Already exists a server with the same name", Kind::Haproxy),
    ("unable to find required", Kind::Haproxy),
    ("unable to use ", Kind::Haproxy),
    ("unable to track ", Kind::Haproxy),
    ("provided port is not an integer", Kind::Haproxy),
    ("can't unset 'port'", Kind::Haproxy),
    ("can't change <port>", Kind::Haproxy),
    ("Update to families other than", Kind::Haproxy),
    (
        "Update for the current server address family",
        Kind::Haproxy,
    ),
    ("MUX protocol is not usable", Kind::Haproxy),
    ("cannot allocate memory", Kind::Haproxy),
    ("usage: ", Kind::Haproxy),
    ("set server <b>/<s>", Kind::Haproxy),
    ("Require ", Kind::Haproxy),
    ("Invalid ", Kind::Haproxy),
    ("invalid addr", Kind::Haproxy),
    ("invalid fqdn", Kind::Haproxy),
    ("Absolute weight", Kind::Haproxy),
    ("Relative weight", Kind::Haproxy),
    ("'set server", Kind::Haproxy),
    ("'get weight", Kind::Haproxy),
];

/// The kind of a known error answer.
fn error_kind(answer: &str) -> Option<Kind> {
    let a = answer.trim_start();
    ERRORS
        .iter()
        .find(|(text, _)| a.starts_with(text))
        .map(|(_, kind)| *kind)
}

/// HAProxy's words for a message: the first line of its answer (the rest of an "Unknown command" is
/// the list of every command).
fn words(answer: &str) -> String {
    let first = answer.trim().lines().next().unwrap_or("").trim();
    if first.starts_with("Unknown command") {
        "Unknown command (see `help` for the commands valid at this socket's level)".into()
    } else {
        first.trim_end_matches(':').to_string()
    }
}

/// Characters HAProxy allows in proxy and server names; anything else (`;` above all, HAProxy's
/// command separator) could change the command line it is pasted into.
fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

fn shown_char(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        c => format!("`{c}`"),
    }
}

/// A backend name, checked before it is sent.
fn check_backend(target: &str, name: &str) -> Result<(), Failure> {
    check_name(target, "backend", name, name)
}

fn check_name(target: &str, what: &str, name: &str, whole: &str) -> Result<(), Failure> {
    if name.is_empty() {
        return Err(Failure::usage(
            target,
            format!("{target}: invalid {what} name {whole:?}: the {what} name is empty"),
        ));
    }
    if let Some(c) = name.chars().find(|&c| !valid_name_char(c)) {
        return Err(Failure::usage(
            target,
            format!(
                "{target}: invalid {what} name {whole:?}: {} is not allowed (names are letters, digits and . _ : -); nothing was sent",
                shown_char(c)
            ),
        ));
    }
    Ok(())
}

/// `backend/server`, checked before anything is sent.
fn parse_server<'s>(target: &str, s: &'s str) -> Result<(&'s str, &'s str), Failure> {
    match s.split_once('/') {
        Some((be, srv)) if !srv.contains('/') => {
            check_name(target, "backend", be, s)?;
            check_name(target, "server", srv, s)?;
            Ok((be, srv))
        }
        _ => Err(Failure::usage(
            target,
            format!("{target}: invalid server {s:?}: expected backend/server, e.g. \"web_servers/web1\"; nothing was sent"),
        )),
    }
}

/// A CSV field of `show stat` or a `show info` value as a script value: an integer, `()` when empty,
/// otherwise the text.
fn value(s: &str) -> Dynamic {
    if s.is_empty() {
        Dynamic::UNIT
    } else if let Ok(i) = s.parse::<INT>() {
        Dynamic::from_int(i)
    } else {
        Dynamic::from(s.to_string())
    }
}

/// `show stat` as one map per row, keyed by the names of its `# pxname,svname,...` header.
fn parse_stat(target: &str, text: &str) -> Result<Vec<Map>, Failure> {
    let body = text.strip_prefix("# ").ok_or_else(|| {
        Failure::new(
            Kind::Haproxy,
            target,
            format!(
                "{target}: `show stat` answered without its CSV header: {:?}",
                words(text)
            ),
        )
    })?;
    let bad = |e: csv::Error| {
        Failure::new(
            Kind::Haproxy,
            target,
            format!("{target}: cannot parse `show stat`: {e}"),
        )
    };
    let mut rows = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(body.as_bytes());
    let names: Vec<String> = rows
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for (i, record) in rows.records().enumerate() {
        let record = record.map_err(bad)?;
        // A row shorter than the header is an answer cut off (its counts would be missing).
        if record.len() != names.len() {
            return Err(Failure::new(
                Kind::Haproxy,
                target,
                format!(
                    "{target}: `show stat` row {} has {} field(s) where the header has {}: the answer is cut off or malformed",
                    i + 1,
                    record.len(),
                    names.len()
                ),
            ));
        }
        out.push(
            names
                .iter()
                .zip(record.iter())
                .filter(|(n, _)| !n.is_empty() && n.as_str() != "-")
                .map(|(n, v)| (n.as_str().into(), value(v)))
                .collect(),
        );
    }
    Ok(out)
}

/// `show info` as a map: `Name: value` lines.
fn parse_info(text: &str) -> Map {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().into(), value(v.trim())))
        .collect()
}

/// The workers of a master CLI's `show proc`: (pid, old) for the pids under `# workers`, then those
/// under `# old workers` (the workers a reload replaced: they still carry their sessions to the
/// backends until those end).
fn parse_workers(text: &str) -> Vec<(i64, bool)> {
    let mut section = "";
    let mut pids = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('#') {
            section = name.trim();
        } else if matches!(section, "workers" | "old workers") {
            if let Some(pid) = line.split_whitespace().next().and_then(|p| p.parse().ok()) {
                pids.push((pid, section == "old workers"));
            }
        }
    }
    pids.sort_by_key(|&(_, old)| old);
    pids
}

/// The master's reload counters in `show proc`: its line `<pid> master <reloads> [failed: <n>] ...`.
fn parse_reloads(text: &str) -> Option<(i64, i64)> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("master"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let reloads = fields.get(2)?.parse().ok()?;
    let failed = match (fields.get(3), fields.get(4)) {
        (Some(&"[failed:"), Some(n)) => n.trim_end_matches(']').parse().ok()?,
        _ => 0,
    };
    Some((reloads, failed))
}

/// `show stat` columns that count things: summed when the rows of several processes are merged.
const SUMMED: &[&str] = &[
    "qcur",
    "scur",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "lbtot",
    "rate",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "req_rate",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "conn_rate",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "eint",
];

/// The counters of `servers()`, summed over several processes.
const SERVER_SUMMED: &[&str] = &["scur", "qcur", "stot", "lbtot", "chkfail"];

/// A server as `servers()` describes it, from its `show stat` row.
fn server_map(row: &Map) -> Map {
    let get = |k: &str| row.get(k).cloned().unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("name".into(), get("svname"));
    m.insert("backend".into(), get("pxname"));
    m.insert("addr".into(), get("addr"));
    m.insert("status".into(), get("status"));
    m.insert("weight".into(), get("weight"));
    m.insert("scur".into(), get("scur"));
    m.insert("qcur".into(), get("qcur"));
    m.insert(
        "backup".into(),
        (get("bck").as_int().unwrap_or(0) > 0).into(),
    );
    m.insert("check_status".into(), get("check_status"));
    for k in ["smax", "stot", "lbtot", "chkfail", "lastchg", "downtime"] {
        m.insert(k.into(), get(k));
    }
    m
}

/// Rows of several processes as one: counters summed, `status` joined when they disagree, every
/// other field from the first process, and each process's own row under `sockets`.
fn merge_rows(per_endpoint: Vec<(String, Vec<Map>)>, key: &[&str], summed: &[&str]) -> Vec<Map> {
    if per_endpoint.len() == 1 {
        return per_endpoint.into_iter().next().unwrap().1;
    }
    let id = |m: &Map| -> Vec<String> {
        key.iter()
            .map(|k| m.get(*k).map(|v| v.to_string()).unwrap_or_default())
            .collect()
    };
    // (merged row, each process's row, the distinct statuses), in the order rows first appear.
    let mut merged: Vec<(Map, Map, Vec<String>)> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    for (label, rows) in per_endpoint {
        for row in rows {
            let status = row.get("status").map(|s| s.to_string());
            match index.entry(id(&row)) {
                Entry::Occupied(e) => {
                    let (m, sockets, statuses) = &mut merged[*e.get()];
                    for s in summed {
                        let a = m.get(*s).and_then(|v| v.as_int().ok());
                        let b = row.get(*s).and_then(|v| v.as_int().ok());
                        match (a, b) {
                            (Some(a), Some(b)) => {
                                m.insert((*s).into(), (a + b).into());
                            }
                            (None, None) => {}
                            // A count one process lacks: the total is unknown, not the others' sum.
                            _ => {
                                m.insert((*s).into(), Dynamic::UNIT);
                            }
                        }
                    }
                    if let Some(st) = status.filter(|st| !statuses.contains(st)) {
                        statuses.push(st);
                    }
                    sockets.insert(label.as_str().into(), row.into());
                }
                Entry::Vacant(e) => {
                    e.insert(merged.len());
                    let mut sockets = Map::new();
                    sockets.insert(label.as_str().into(), row.clone().into());
                    merged.push((row, sockets, status.into_iter().collect()));
                }
            }
        }
    }
    merged
        .into_iter()
        .map(|(mut m, sockets, statuses)| {
            if statuses.len() > 1 {
                m.insert("status".into(), statuses.join(" | ").into());
            }
            m.insert("sockets".into(), sockets.into());
            m
        })
        .collect()
}

/// Whether a server status (`UP`, `UP 1/3`, `MAINT (via x)`, `no check`, ...) is the wanted one:
/// its first word, ignoring case. A server without health checks (`no check`) counts as UP.
fn status_is(status: &str, want: &str) -> bool {
    let (s, w) = (status.trim(), want.trim());
    let prefix = s.len() >= w.len()
        && s.is_char_boundary(w.len())
        && s[..w.len()].eq_ignore_ascii_case(w)
        && (s.len() == w.len() || s[w.len()..].starts_with(' '));
    prefix || (w.eq_ignore_ascii_case("UP") && s.eq_ignore_ascii_case("no check"))
}

/// Split a command line at HAProxy's unescaped `;` separators.
fn split_commands(line: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in line.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ';' {
            parts.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether a command only reads (`show`, `get`, `help`), after a master CLI routing prefix.
fn read_only(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let mut first = words.next().unwrap_or("");
    if first.starts_with('@') {
        first = words.next().unwrap_or("");
    }
    matches!(first, "show" | "get" | "help")
}

/// The command without a master CLI routing prefix for the master itself (`@master`).
fn for_master(command: &str) -> &str {
    match command.trim().strip_prefix("@master") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim(),
        _ => command.trim(),
    }
}

/// Whether a command is the master CLI's `reload` (possibly as `@master reload`).
fn is_reload(command: &str) -> bool {
    for_master(command) == "reload"
}

/// Commands only the master of a master CLI knows: sent to it, not routed to the workers.
fn master_only(command: &str) -> bool {
    let c = for_master(command);
    c == "reload" || c.starts_with("show proc")
}

/// How each endpoint's answer to a command is judged.
type Check<'c> = &'c dyn Fn(&Endpoint, &str, &str) -> Result<(), Failure>;

impl Haproxy {
    fn open(addrs: &[String], options: Map) -> Result<Haproxy, Failure> {
        let label = addrs.join(", ");
        let o = Opts::new(options, &["timeout", "master", "interval"], &label)?;
        if addrs.is_empty() {
            return Err(Failure::usage(
                "haproxy",
                "haproxy: the list of sockets is empty",
            ));
        }
        let interval = o.secs("interval")?.unwrap_or(DEFAULT_INTERVAL);
        Ok(Haproxy(Arc::new(Inner {
            sockets: addrs
                .iter()
                .map(|a| Socket::new(a))
                .collect::<Result<_, _>>()?,
            master: o.bool("master", false)?,
            timeout: o.secs("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            interval: interval.max(Duration::from_millis(10)),
        })))
    }

    /// The sockets, as messages name them.
    fn label(&self) -> String {
        let labels: Vec<&str> = self.0.sockets.iter().map(|s| s.label.as_str()).collect();
        labels.join(", ")
    }

    fn sockets(&self) -> Vec<String> {
        self.0.sockets.iter().map(|s| s.label.clone()).collect()
    }

    /// Send one command to one endpoint and return the raw answer (timeout and Ctrl-C applied).
    fn ask(&self, run: &Run, _: &Permit, ep: &Endpoint, command: &str) -> Result<String, Failure> {
        let line = match &ep.prefix {
            Some(p) => format!("{p} {command}"),
            None => command.to_string(),
        };
        run.block_on(
            &ep.label(),
            &format!("`{command}`"),
            Some(self.0.timeout),
            ep.socket.send(&line, read_only(command)),
        )
    }

    /// `ask`, except the master CLI's `reload`, which is confirmed with `show proc`.
    fn exec(&self, run: &Run, p: &Permit, ep: &Endpoint, command: &str) -> Result<String, Failure> {
        if self.0.master && ep.prefix.is_none() && is_reload(command) {
            self.reload(run, p, ep, command)
        } else {
            self.ask(run, p, ep, command)
        }
    }

    /// The sockets themselves (on master CLIs: the masters).
    fn direct(&self) -> Vec<Endpoint<'_>> {
        self.0.sockets.iter().map(Endpoint::direct).collect()
    }

    /// Where commands go: every socket, or on master CLIs every worker behind them, the old
    /// workers of a reload included (they still send their sessions to the backends).
    fn endpoints(&self, run: &Run, p: &Permit) -> Result<Vec<Endpoint<'_>>, Failure> {
        if !self.0.master {
            return Ok(self.direct());
        }
        let mut eps = Vec::new();
        for socket in &self.0.sockets {
            eps.extend(self.worker_endpoints(run, p, socket)?);
        }
        Ok(eps)
    }

    /// The workers behind one master CLI socket (asked with `show proc` each time: a reload
    /// replaces them).
    fn worker_endpoints<'a>(
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
    fn each(
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
            let r = self
                .exec(run, p, ep, command)
                .and_then(|answer| check(ep, command, &answer).map(|()| answer));
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
                    "{label}: `{command}`: no worker left to answer ({} exited meanwhile)",
                    gone.join(", ")
                ),
            ));
        }
        Ok(out)
    }

    /// A read-only command on every endpoint: (endpoint label, answer) for each.
    fn read(&self, run: &Run, command: &str) -> Result<Vec<(String, String)>, Failure> {
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
    fn write(&self, run: &Run, p: &Permit, command: &str) -> Result<(), Failure> {
        self.each(
            run,
            p,
            &self.endpoints(run, p)?,
            command,
            true,
            &empty_answer,
        )?;
        Ok(())
    }

    /// The master CLI's `reload`. HAProxy 2.6's master re-executes itself and closes the
    /// connection without a word, so the outcome is read from `show proc`'s reload counters, and
    /// `reload` is never sent twice.
    fn reload(
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
        let deadline = std::time::Instant::now() + self.0.timeout;
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
                        fmt_secs(self.0.timeout.as_secs_f64())
                    ),
                ));
            }
            run.sleep(Duration::from_millis(50))?;
        }
    }

    /// The servers of `backend` as `servers()` describes them, per endpoint.
    fn servers_each(&self, run: &Run, backend: &str) -> Result<Vec<(String, Vec<Map>)>, Failure> {
        check_backend(&self.label(), backend)?;
        let command = format!("show stat {backend} 4 -1");
        self.read(run, &command)?
            .into_iter()
            .map(|(label, answer)| {
                let rows = parse_stat(&label, &answer)?;
                Ok((label, rows.iter().map(server_map).collect()))
            })
            .collect()
    }

    fn servers(&self, run: &Run, backend: &str) -> Result<Array, Failure> {
        Ok(
            merge_rows(self.servers_each(run, backend)?, &["name"], SERVER_SUMMED)
                .into_iter()
                .map(Dynamic::from_map)
                .collect(),
        )
    }

    /// One server of `servers()`.
    fn server(&self, run: &Run, server: &str) -> Result<Map, Failure> {
        let (be, srv) = parse_server(&self.label(), server)?;
        let all = self.servers(run, be)?;
        let maps = all.into_iter().filter_map(|d| d.try_cast::<Map>());
        find_server(&self.label(), be, srv, maps)
    }

    /// One server as each endpoint sees it; an error when an endpoint does not have it.
    fn server_each(&self, run: &Run, server: &str) -> Result<Vec<(String, Map)>, Failure> {
        let (be, srv) = parse_server(&self.label(), server)?;
        self.servers_each(run, be)?
            .into_iter()
            .map(|(label, rows)| Ok((label.clone(), find_server(&label, be, srv, rows)?)))
            .collect()
    }

    /// Under `--dry-run` a change is skipped, but a typo in its server name still fails.
    fn dry_run_check(&self, run: &Run, server: &str) -> Result<(), Failure> {
        if run.dry_run() {
            self.read(run, &format!("get weight {server}"))?;
        }
        Ok(())
    }

    fn set_weight(&self, run: &Run, server: &str, weight: &str) -> Result<(), Failure> {
        let label = self.label();
        parse_server(&label, server)?;
        self.dry_run_check(run, server)?;
        let command = format!("set weight {server} {weight}");
        run.effect(
            &label,
            &command,
            json!({"sockets": self.sockets(), "server": server, "weight": weight}),
            |p| self.write(run, p, &command),
        )?;
        Ok(())
    }

    fn set_state(&self, run: &Run, server: &str, state: &str) -> Result<(), Failure> {
        let label = self.label();
        parse_server(&label, server)?;
        if !matches!(state, "ready" | "drain" | "maint") {
            return Err(Failure::usage(
                &label,
                format!("{label}: set_state {server}: the state must be \"maint\", \"drain\" or \"ready\", not {state:?}"),
            ));
        }
        self.dry_run_check(run, server)?;
        let command = format!("set server {server} state {state}");
        run.effect(
            &label,
            &command,
            json!({"sockets": self.sockets(), "server": server, "state": state}),
            |p| self.write(run, p, &command),
        )?;
        Ok(())
    }

    /// Poll the server's rows until `observe` says so. Each new observation is reported as
    /// progress; on timeout, the message tells what was seen last. Under `--dry-run` the changes
    /// waited for were skipped: the server is looked up and the wait is only reported.
    fn wait(
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

    fn wait_drained(&self, run: &Run, server: &str, timeout: Duration) -> Result<(), Failure> {
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

    fn wait_status(
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
    fn cmd(&self, run: &Run, line: &str) -> Result<String, Failure> {
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
            let direct = self.direct();
            // Resolved once (on a master CLI, one `show proc`), again after a reload.
            let mut workers: Option<Vec<Endpoint>> = None;
            let mut out = Vec::new();
            for c in &commands {
                // On a master CLI, a command routed by the script itself (`@1 ...`, `@master
                // ...`) and the master's own commands go to the master; any other to every worker.
                let eps: &[Endpoint] = if !self.0.master || c.starts_with('@') || master_only(c) {
                    &direct
                } else {
                    match &mut workers {
                        Some(w) => w,
                        none => none.insert(self.endpoints(run, p)?),
                    }
                };
                out.extend(self.each(run, p, eps, c, !read_only(c), &known_error)?);
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
                if self.0.sockets.len() > 1 || self.0.master {
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
            }
        };
        Ok(run.gate(&label, access, go)?.unwrap_or_default())
    }
}

/// A known error answer as a failure naming the endpoint, the command and HAProxy's words.
fn known_error(ep: &Endpoint, command: &str, answer: &str) -> Result<(), Failure> {
    match error_kind(answer) {
        None => Ok(()),
        Some(kind) => Err(refused(ep, command, kind, answer)),
    }
}

/// The answer of a `set` command: empty on success, anything else is HAProxy refusing.
fn empty_answer(ep: &Endpoint, command: &str, answer: &str) -> Result<(), Failure> {
    if answer.trim().is_empty() {
        Ok(())
    } else {
        let kind = error_kind(answer).unwrap_or(Kind::Haproxy);
        Err(refused(ep, command, kind, answer))
    }
}

fn refused(ep: &Endpoint, command: &str, kind: Kind, answer: &str) -> Failure {
    let label = ep.label();
    Failure::new(
        kind,
        &label,
        format!("{label}: `{command}`: {}", words(answer)),
    )
}

/// The server `srv` among server maps; an error listing the servers there are.
fn find_server(
    label: &str,
    be: &str,
    srv: &str,
    rows: impl IntoIterator<Item = Map>,
) -> Result<Map, Failure> {
    let mut names = Vec::new();
    for row in rows {
        let name = row.get("name").map(|n| n.to_string()).unwrap_or_default();
        if name == srv {
            return Ok(row);
        }
        names.push(name);
    }
    Err(Failure::new(
        Kind::NoSuchServer,
        label,
        format!(
            "{label}: no server {srv} in backend {be} (its servers: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ),
    ))
}

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
    /// (seconds between two observations of `wait_drained`/`wait_status`, default 0.1), `master`
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
        let answers = lb.read(&Run::of(&ctx), "show info")?;
        let mut maps: Vec<(String, Map)> = answers
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

    /// `show stat`: one map per row (frontends, backends, servers), keyed by the CSV header's names
    /// (`pxname`, `svname`, `status`, `weight`, `scur`, ...): numbers as ints, empty fields as `()`.
    /// On several sockets rows are merged: counters summed, each socket's row under `sockets`.
    ///
    /// ```rhai
    /// for r in lb.stat() { if r.svname == "BACKEND" { print(`${r.pxname}: ${r.scur}`) } }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stat(ctx: NativeCallContext, lb: &mut Haproxy) -> Res<Array> {
        let per = lb
            .read(&Run::of(&ctx), "show stat")?
            .into_iter()
            .map(|(l, a)| Ok((l.clone(), parse_stat(&l, &a)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(merge_rows(per, &["pxname", "svname"], SUMMED)
            .into_iter()
            .map(Dynamic::from_map)
            .collect())
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
        let run = Run::of(&ctx);
        parse_server(&lb.label(), server)?;
        let command = format!("get weight {server}");
        let mut weights: Vec<(String, INT)> = Vec::new();
        for (label, answer) in lb.read(&run, &command)? {
            let w = answer
                .split_whitespace()
                .next()
                .and_then(|w| w.parse::<INT>().ok())
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_ends_an_answer() {
        assert_eq!(prompt_start(b"1 (initial 1)\n\n> "), Some(15));
        assert_eq!(prompt_start(b"\n> "), Some(1));
        assert_eq!(prompt_start(b"master> "), Some(0));
        assert_eq!(prompt_start(b"\nmaster> "), Some(1));
        assert_eq!(prompt_start(b"1 (initial 1)\n"), None);
        assert_eq!(prompt_start(b"a line that ends with> "), None);
    }

    #[test]
    fn names_with_separators_are_refused() {
        assert!(parse_server("s", "web_servers/web1").is_ok());
        assert!(parse_server("s", "be-1.x/srv:2").is_ok());
        for bad in [
            "web_servers",
            "a/b/c",
            "be/web1;shutdown",
            "be/web 1",
            "be/\n",
            "/web1",
            "be/",
        ] {
            let e = parse_server("s", bad).unwrap_err();
            assert_eq!(e.kind, Kind::Usage, "{bad:?}");
        }
    }

    #[test]
    fn show_stat_fields_honour_quotes_and_types() {
        let rows = parse_stat(
            "s",
            "# pxname,svname,scur,status,\nbe,\"a,b\",3,\"UP \"\"x\"\"\",\n\n",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["svname"].to_string(), "a,b");
        assert_eq!(rows[0]["scur"].as_int().unwrap(), 3);
        assert_eq!(rows[0]["status"].to_string(), "UP \"x\"");
    }

    #[test]
    fn commands_split_at_unescaped_semicolons() {
        assert_eq!(
            split_commands("show info; get weight a/b;"),
            ["show info", "get weight a/b"]
        );
        assert_eq!(split_commands("set var x a\\;b"), ["set var x a\\;b"]);
    }

    #[test]
    fn status_matches_its_first_word() {
        assert!(status_is("UP 1/3", "UP"));
        assert!(status_is("MAINT (via x/y)", "maint"));
        assert!(status_is("no check", "UP"));
        assert!(!status_is("UPPER", "UP"));
        assert!(!status_is("DOWN", "UP"));
    }

    #[test]
    fn show_proc_lists_current_then_old_workers_and_the_reload_counters() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
            100 master 2 [failed: 1] 0d00h00m01s 2.6\n# workers\n102 worker 1 0d 2.6\n\
            # old workers\n101 worker 0 0d 2.6\n# programs\n\n";
        assert_eq!(parse_workers(text), [(102, false), (101, true)]);
        assert_eq!(parse_reloads(text), Some((2, 1)));
        assert_eq!(parse_reloads("# workers\n102 worker 1 0d 2.6\n"), None);
    }

    #[test]
    fn a_short_show_stat_row_is_an_error_not_missing_counts() {
        let e =
            parse_stat("s", "# pxname,svname,qcur,qmax,scur,\nweb_servers,web1,0\n").unwrap_err();
        assert!(
            e.message
                .contains("row 1 has 3 field(s) where the header has 6"),
            "{e}"
        );
    }

    #[test]
    fn merged_counts_are_summed_by_key_and_unknown_when_one_is_missing() {
        let row = |name: &str, scur: Dynamic| -> Map {
            let mut m = Map::new();
            m.insert("name".into(), name.into());
            m.insert("scur".into(), scur);
            m
        };
        let merged = merge_rows(
            vec![
                (
                    "a".into(),
                    vec![row("web1", 1.into()), row("web2", 2.into())],
                ),
                (
                    "b".into(),
                    vec![row("web2", 3.into()), row("web1", Dynamic::UNIT)],
                ),
            ],
            &["name"],
            &["scur"],
        );
        let names: Vec<String> = merged.iter().map(|m| m["name"].to_string()).collect();
        assert_eq!(names, ["web1", "web2"]);
        assert!(merged[0]["scur"].is_unit());
        assert_eq!(merged[1]["scur"].as_int().unwrap(), 5);
    }

    #[test]
    fn master_prompts_and_routing() {
        assert_eq!(prompt_start(b"master[ReloadFailed]> "), Some(0));
        assert!(is_reload("reload") && is_reload("@master reload") && !is_reload("@1 reload"));
        assert!(master_only("show proc") && master_only("@master show proc"));
        assert!(!master_only("show info") && !master_only("@masterx reload"));
        assert!(complete_error(
            "Can't find the target PID matching the prefix '@!9'\n"
        ));
        assert!(!complete_error("# pxname,svname\nweb_servers,web1"));
    }
}
