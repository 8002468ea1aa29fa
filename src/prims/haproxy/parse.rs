//! HAProxy's answers as data: its error texts and their kinds, `show stat` CSV, `show info`, the
//! master CLI's `show proc`; and the names and command lines runner sends, checked before sending.

use std::collections::hash_map::{Entry, HashMap};

use rhai::{Dynamic, Map, INT};

use crate::error::{Failure, Kind};
use crate::ledger::Mark;

/// HAProxy's error answers (at the start of the answer), and the `kind` scripts see for them.
/// The texts are HAProxy 2.6's (`src/cli.c`, `src/server.c`, `src/mworker.c`).
pub(super) const ERRORS: &[(&str, Kind)] = &[
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
    // A proxy stopped: by its configuration (`disabled`), or in a process that a reload replaced.
    ("Proxy is disabled", Kind::Haproxy),
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
pub(super) fn error_kind(answer: &str) -> Option<Kind> {
    let a = answer.trim_start();
    ERRORS
        .iter()
        .find(|(text, _)| a.starts_with(text))
        .map(|(_, kind)| *kind)
}

/// HAProxy's words for a message: the first line of its answer (the rest of an "Unknown command" is
/// the list of every command).
pub(super) fn words(answer: &str) -> String {
    let first = answer.trim().lines().next().unwrap_or("").trim();
    if first.starts_with("Unknown command") {
        "Unknown command (see `help` for the commands valid at this socket's level)".into()
    } else {
        first.trim_end_matches(':').to_string()
    }
}

/// Characters HAProxy allows in proxy and server names; anything else (`;` above all, HAProxy's
/// command separator) could change the command line it is pasted into.
pub(super) fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

pub(super) fn shown_char(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        c => format!("`{c}`"),
    }
}

/// A backend name, checked before it is sent.
pub(super) fn check_backend(target: &str, name: &str) -> Result<(), Failure> {
    check_name(target, "backend", name, name)
}

pub(super) fn check_name(target: &str, what: &str, name: &str, whole: &str) -> Result<(), Failure> {
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

/// A server address for `add server`: `host:port` (an IPv4 address, a name, or `[v6]:port`),
/// checked before it is sent.
pub(super) fn check_address(target: &str, addr: &str) -> Result<(), Failure> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok()
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
            })
    });
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(
            target,
            format!("{target}: invalid server address {addr:?}: expected host:port, e.g. \"10.0.0.9:80\"; nothing was sent"),
        ))
    }
}

/// `backend/server`, checked before anything is sent.
pub(super) fn parse_server<'s>(target: &str, s: &'s str) -> Result<(&'s str, &'s str), Failure> {
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
pub(super) fn value(s: &str) -> Dynamic {
    if s.is_empty() {
        Dynamic::UNIT
    } else if let Ok(i) = s.parse::<INT>() {
        Dynamic::from_int(i)
    } else {
        Dynamic::from(s.to_string())
    }
}

/// `show stat` as one map per row, keyed by the names of its `# pxname,svname,...` header.
pub(super) fn parse_stat(target: &str, text: &str) -> Result<Vec<Map>, Failure> {
    let mut out = Vec::new();
    each_stat_row(target, text, |names, record| {
        out.push(
            names
                .iter()
                .zip(record.iter())
                .filter(|(n, _)| !n.is_empty() && n.as_str() != "-")
                .map(|(n, v)| (n.as_str().into(), value(v)))
                .collect(),
        );
    })?;
    Ok(out)
}

/// The servers of a `show stat <backend> 4 -1` answer as `servers()` describes them (all, or only
/// the one named `only`), and the names of all of them. Only the columns a server map holds become
/// script values: a 200-server backend is parsed in well under a millisecond.
pub(super) fn parse_servers(
    target: &str,
    text: &str,
    only: Option<&str>,
) -> Result<(Vec<Map>, Vec<String>), Failure> {
    let (mut maps, mut names) = (Vec::new(), Vec::new());
    let mut columns: Option<Vec<(&'static str, usize)>> = None;
    let mut sv = 0;
    each_stat_row(target, text, |header, record| {
        let cols = columns.get_or_insert_with(|| {
            sv = header.iter().position(|h| h == "svname").unwrap_or(1);
            SERVER_COLUMNS
                .iter()
                .filter_map(|(k, col)| header.iter().position(|h| h == col).map(|i| (*k, i)))
                .collect()
        });
        let name = record.get(sv).unwrap_or_default();
        names.push(name.to_string());
        if only.is_none_or(|o| o == name) {
            let mut m: Map = cols
                .iter()
                .map(|(k, i)| ((*k).into(), value(record.get(*i).unwrap_or_default())))
                .collect();
            let backup = m.get("backup").and_then(|b| b.as_int().ok()).unwrap_or(0) > 0;
            m.insert("backup".into(), backup.into());
            for (k, _) in SERVER_COLUMNS {
                m.entry((*k).into()).or_insert(Dynamic::UNIT);
            }
            maps.push(m);
        }
    })?;
    Ok((maps, names))
}

/// The keys of a server map and the `show stat` columns they come from.
const SERVER_COLUMNS: &[(&str, &str)] = &[
    ("name", "svname"),
    ("backend", "pxname"),
    ("addr", "addr"),
    ("status", "status"),
    ("weight", "weight"),
    ("scur", "scur"),
    ("qcur", "qcur"),
    ("backup", "bck"),
    ("check_status", "check_status"),
    ("smax", "smax"),
    ("stot", "stot"),
    ("lbtot", "lbtot"),
    ("chkfail", "chkfail"),
    ("lastchg", "lastchg"),
    ("downtime", "downtime"),
];

/// Call `row(header, record)` for every row of a `show stat` answer; a row shorter than the header
/// is an answer cut off (its counts would be missing): an error.
fn each_stat_row(
    target: &str,
    text: &str,
    mut row: impl FnMut(&[String], &csv::StringRecord),
) -> Result<(), Failure> {
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
    let mut record = csv::StringRecord::new();
    let mut i = 0;
    while rows.read_record(&mut record).map_err(bad)? {
        i += 1;
        if record.len() != names.len() {
            return Err(Failure::new(
                Kind::Haproxy,
                target,
                format!(
                    "{target}: `show stat` row {i} has {} field(s) where the header has {}: the answer is cut off or malformed",
                    record.len(),
                    names.len()
                ),
            ));
        }
        row(&names, &record);
    }
    Ok(())
}

/// `show info` as a map: `Name: value` lines.
pub(super) fn parse_info(text: &str) -> Map {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().into(), value(v.trim())))
        .collect()
}

/// The workers of a master CLI's `show proc`: (pid, old) for the pids under `# workers`, then those
/// under `# old workers` (the workers a reload replaced: they still carry their sessions to the
/// backends until those end).
pub(super) fn parse_workers(text: &str) -> Vec<(i64, bool)> {
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
pub(super) fn parse_reloads(text: &str) -> Option<(i64, i64)> {
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
pub(super) const SUMMED: &[&str] = &[
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
pub(super) const SERVER_SUMMED: &[&str] = &["scur", "qcur", "stot", "lbtot", "chkfail"];

/// Rows of several processes as one: counters summed, `status` joined when they disagree, every
/// other field from the first process, and each process's own row under `sockets`.
pub(super) fn merge_rows(
    per_endpoint: Vec<(String, Vec<Map>)>,
    key: &[&str],
    summed: &[&str],
) -> Vec<Map> {
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
pub(super) fn status_is(status: &str, want: &str) -> bool {
    let (s, w) = (status.trim(), want.trim());
    let prefix = s.len() >= w.len()
        && s.is_char_boundary(w.len())
        && s[..w.len()].eq_ignore_ascii_case(w)
        && (s.len() == w.len() || s[w.len()..].starts_with(' '));
    prefix || (w.eq_ignore_ascii_case("UP") && s.eq_ignore_ascii_case("no check"))
}

/// Split a command line at HAProxy's unescaped `;` separators.
pub(super) fn split_commands(line: &str) -> Vec<String> {
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
pub(super) fn read_only(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let mut first = words.next().unwrap_or("");
    if first.starts_with('@') {
        first = words.next().unwrap_or("");
    }
    matches!(first, "show" | "get" | "help")
}

/// The command without a master CLI routing prefix for the master itself (`@master`).
pub(super) fn for_master(command: &str) -> &str {
    match command.trim().strip_prefix("@master") {
        Some(rest) if rest.starts_with(char::is_whitespace) => rest.trim(),
        _ => command.trim(),
    }
}

/// Whether a command is the master CLI's `reload` (possibly as `@master reload`).
pub(super) fn is_reload(command: &str) -> bool {
    for_master(command) == "reload"
}

/// Commands only the master of a master CLI knows: sent to it, not routed to the workers.
pub(super) fn master_only(command: &str) -> bool {
    let c = for_master(command);
    c == "reload" || c.starts_with("show proc")
}

/// The server `srv` among server maps; an error listing the servers there are.
pub(super) fn find_server(
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
    Err(no_server(label, be, srv, &names))
}

/// "no server web9 in backend be (its servers: web1, web2)".
pub(super) fn no_server(label: &str, be: &str, srv: &str, names: &[String]) -> Failure {
    Failure::new(
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
    )
}

/// What a command does to the state of a server, for the run's record of what it left where:
/// `set server B/S state maint|drain` (and `disable server`) take it out of its normal state,
/// `state ready` (and `enable server`) put it back; weight 0 takes it out of rotation, any other
/// weight puts it back. `label` names the sockets.
pub(super) fn marks(label: &str, command: &str) -> Vec<Mark> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let state = |server: &str, state: &str| {
        let key = format!("{label} {server}");
        match state {
            "ready" => Mark::Back { key },
            s => Mark::Out {
                key,
                what: server.to_string(),
                state: s.to_string(),
            },
        }
    };
    let weight = |server: &str, w: &str| {
        let key = format!("{label} {server} weight");
        if w.trim_end_matches('%') == "0" {
            Mark::Out {
                key,
                what: server.to_string(),
                state: "weight 0".into(),
            }
        } else {
            Mark::Back { key }
        }
    };
    match words.as_slice() {
        ["set", "server", s, "state", st, ..] => vec![state(s, st)],
        ["disable", "server", s, ..] => vec![state(s, "maint")],
        ["enable", "server", s, ..] => vec![state(s, "ready")],
        ["set", "weight", s, w, ..] | ["set", "server", s, "weight", w, ..] => vec![weight(s, w)],
        _ => Vec::new(),
    }
}
