//! The connection to one stats socket or master CLI, kept open in HAProxy's interactive mode
//! (`prompt`): every complete answer ends with a prompt line, so one connection carries any number of
//! commands. A connection HAProxy closed while idle is reopened before the next command; an answer
//! cut off is sent again only when the command only reads.
//!
//! A reload (`haproxy -sf OLDPID`) does not close the connection: the new process binds a new
//! socket file at the same path, and the old one keeps answering on connections made before, with
//! its stale values, refusing every change (`Proxy is disabled.`) until its last session ends. So
//! before each command the path is looked at (a `stat`, about a microsecond): when it names
//! another file than the one the connection was made to, the connection is dropped and a new one
//! made, to the process that serves the path now. Where there is no file to look at (a TCP socket),
//! or the file stays the same (a worker's stats socket under a master: the new worker inherits its
//! listener), the process itself is asked (`show info`: `Stopping: 1`) before a command on a
//! connection that was idle for `RECHECK_IDLE` or more, and when a reused connection answers
//! `Proxy is disabled.`; a stopping process was replaced, and the command goes to a new connection.
//! Commands in a burst (a loop of reads) are not asked about: they cost one round trip each.
//!
//! Between the old process and the new one the path may refuse connections or name nothing (a
//! master re-executing itself, the gap of a restart): a socket that answered before is waited for,
//! up to `RELOAD_GRACE`, before a connect fails.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::parse::{error_kind, words};
use crate::error::{Failure, Kind};

/// Where a stats socket listens.
#[derive(Debug, Clone)]
pub(super) enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

impl Addr {
    /// `/path.sock` (or `unix@/path.sock`), `host:port` (or `tcp@host:port`, `ipv4@host:port`).
    pub(super) fn parse(s: &str) -> Result<Addr, Failure> {
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

/// A connection idle this long is checked for a process that a reload replaced (see above): long
/// against the commands of a burst, short against the waits and pauses of a playbook.
const RECHECK_IDLE: Duration = Duration::from_millis(50);

/// Which socket a connection was made to: a reload puts a new file at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Served {
    /// The file at a unix socket's path: (device, inode).
    File(u64, u64),
    /// The path names nothing (HAProxy stopped or is starting).
    Missing,
    /// A TCP socket: no file to look at.
    Tcp,
}

impl Served {
    /// Whether a connection made to `self` reaches what serves `now`. A path that names nothing
    /// is served by no process: a connection made before reaches one that is going away.
    pub(super) fn same(self, now: Served) -> bool {
        self == now && self != Served::Missing
    }
}

/// What a connection is: a unix or TCP stream, and its descriptor for `read_soon`.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + AsRawFd {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + AsRawFd> Stream for T {}

/// How long `exchange` reads an answer straight from the socket before it waits through the
/// runtime. HAProxy answers a command in tens of microseconds; waiting through the runtime costs
/// two thread wake-ups (its I/O driver's, then the script thread's), several times the answer's
/// own time on a small VM. A short poll of the socket on the script thread saves them; a slow
/// answer then waits as any other.
const READ_SOON: Duration = Duration::from_micros(300);

/// What is already there or arrives within `READ_SOON`, read without the runtime (the socket is
/// non-blocking): Some(n) bytes (0: closed), None when nothing came in time or on an error, which
/// the runtime's read then sees and reports.
fn read_soon(conn: &Conn, buf: &mut Vec<u8>) -> Option<usize> {
    use nix::sys::socket::{recv, MsgFlags};
    let start = Instant::now();
    let len = buf.len();
    buf.resize(buf.capacity(), 0);
    let got = loop {
        match recv(conn.as_raw_fd(), &mut buf[len..], MsgFlags::MSG_DONTWAIT) {
            Ok(n) => break Some(n),
            Err(nix::errno::Errno::EAGAIN) if start.elapsed() < READ_SOON => std::hint::spin_loop(),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break None,
        }
    };
    buf.truncate(len + got.unwrap_or(0));
    got
}

pub(super) type Conn = Box<dyn Stream>;

/// An open connection and the socket it was made to.
pub(super) struct Open {
    conn: Conn,
    made_to: Served,
    /// When its last answer came.
    used: Instant,
}

/// How an exchange on a connection ended.
pub(super) enum Answer {
    /// The whole answer, ended by the prompt: the connection is ready for the next command.
    Prompt(String),
    /// Writing the command failed: the connection was already closed and HAProxy never read it.
    Unsent(std::io::Error),
    /// The command was written, then the connection ended before the prompt: after this text
    /// (possibly empty), with the read error if there was one.
    Ended(String, Option<std::io::Error>),
}

/// One stats socket or master CLI, and the connection kept open on it.
pub(super) struct Socket {
    /// The address as the script gave it: what messages name.
    pub(super) label: String,
    addr: Addr,
    /// None between commands when no connection is open. Taken out while a command runs, so a
    /// command abandoned half-way (timeout, Ctrl-C) drops its connection instead of leaving an
    /// unread answer for the next command.
    conn: tokio::sync::Mutex<Option<Open>>,
    /// This socket did not answer `prompt` with a prompt: one connection per command.
    oneshot: AtomicBool,
    /// A master CLI: it closes its connections when it reloads, and has no `Stopping` to ask.
    master: bool,
    /// A reload was seen since `take_replaced` was last called: the run says so.
    replaced: AtomicBool,
    /// A connection was made once: a socket that answered before and now refuses or is missing
    /// is being replaced by a reload, and is waited for (`RELOAD_GRACE`).
    answered: AtomicBool,
}

/// How long a socket that answered before may refuse connections or be missing before the
/// error: a reload re-executes the master and binds a new socket file, and a command sent in
/// between waits for the new process instead of failing.
const RELOAD_GRACE: Duration = Duration::from_secs(3);

impl Socket {
    pub(super) fn new(label: &str, master: bool) -> Result<Socket, Failure> {
        Ok(Socket {
            label: label.trim().to_string(),
            addr: Addr::parse(label)?,
            conn: tokio::sync::Mutex::new(None),
            oneshot: AtomicBool::new(false),
            master,
            replaced: AtomicBool::new(false),
            answered: AtomicBool::new(false),
        })
    }

    /// What serves the address now.
    pub(super) fn served(&self) -> Served {
        use std::os::unix::fs::MetadataExt;
        match &self.addr {
            Addr::Unix(p) => match std::fs::metadata(p) {
                Ok(m) => Served::File(m.dev(), m.ino()),
                Err(_) => Served::Missing,
            },
            Addr::Tcp(_) => Served::Tcp,
        }
    }

    /// Whether a reload was seen since the last call.
    pub(super) fn take_replaced(&self) -> bool {
        self.replaced.swap(false, Ordering::SeqCst)
    }

    /// A new connection, and what served the address just before it was made. A socket that
    /// answered before and now refuses or is missing is being replaced by a reload: tried again
    /// until `deadline` (`RELOAD_GRACE` from the first try) before the error.
    pub(super) async fn connect(&self, deadline: Instant) -> Result<(Conn, Served), Failure> {
        let r = loop {
            // Looked at before connecting: a reload in between makes the next command reconnect
            // once more, never keep a connection to the old process.
            let made_to = self.served();
            let r = self.connect_once().await.map(|c| (c, made_to));
            let reloading = matches!(&r, Err(e) if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ));
            if !reloading || !self.answered.load(Ordering::SeqCst) || Instant::now() >= deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let answered = self.answered.swap(r.is_ok(), Ordering::SeqCst);
        r.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    if answered =>
                {
                    format!(
                        " (it answered before; no HAProxy took its place within {} s)",
                        RELOAD_GRACE.as_secs()
                    )
                }
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    " (is HAProxy running with a `stats socket` there?)".to_string()
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (the socket's mode or owner excludes this user)".to_string()
                }
                _ => String::new(),
            };
            Failure::new(
                Kind::Connect,
                &self.label,
                format!("{}: cannot connect: {e}{hint}", self.label),
            )
        })
    }

    async fn connect_once(&self) -> std::io::Result<Conn> {
        match &self.addr {
            Addr::Unix(p) => tokio::net::UnixStream::connect(p)
                .await
                .map(|s| Box::new(s) as Conn),
            Addr::Tcp(a) => tokio::net::TcpStream::connect(a.as_str()).await.map(|s| {
                let _ = s.set_nodelay(true);
                Box::new(s) as Conn
            }),
        }
    }

    /// A new connection in interactive mode, or None when the socket does not speak it (it
    /// answered `prompt` with something else than a prompt, and closed).
    ///
    /// A socket that answered before and now closes or resets a new connection without a word is
    /// being replaced by a reload (a connection queued on the listener the reload closes): tried
    /// again, as a refused connection is, within one `RELOAD_GRACE` for both.
    pub(super) async fn open(&self) -> Result<Option<Open>, Failure> {
        let deadline = Instant::now() + RELOAD_GRACE;
        loop {
            let answered = self.answered.load(Ordering::SeqCst);
            let (mut conn, made_to) = self.connect(deadline).await?;
            let e = match exchange(&mut conn, "prompt").await {
                Answer::Prompt(_) => {
                    return Ok(Some(Open {
                        conn,
                        made_to,
                        used: Instant::now(),
                    }))
                }
                Answer::Ended(text, None) if !text.is_empty() => {
                    self.oneshot.store(true, Ordering::SeqCst);
                    return Ok(None);
                }
                Answer::Ended(_, e) => e.unwrap_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "HAProxy closed a new connection without answering",
                    )
                }),
                Answer::Unsent(e) => e,
            };
            if !answered || Instant::now() >= deadline {
                return Err(self.io_failure(e));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send one command line and return HAProxy's answer, exactly as `socat` would print it.
    ///
    /// In interactive mode every complete answer ends with the prompt: an answer without it was cut
    /// off. A command is sent again (once, on a new connection) only when HAProxy cannot have read
    /// it (writing it failed), or when it only reads (`read_only`). A change whose connection ended
    /// after it was written may have been applied: it fails with kind "unknown_outcome", never sent
    /// twice.
    ///
    /// The same holds for a reload seen only after the command was written (the socket's file
    /// changed meanwhile): its answer came from the process being replaced. A read is asked again,
    /// of the new process; a change that process refused (a known error answer) is sent to the new
    /// one; a change it accepted is of unknown outcome: the live process may not have it.
    pub(super) async fn send(&self, line: &str, read_only: bool) -> Result<String, Failure> {
        let mut slot = self.conn.lock().await;
        let mut resent = false;
        loop {
            if self.oneshot.load(Ordering::SeqCst) {
                return self.send_oneshot(line).await;
            }
            // A connection HAProxy closed while idle (`stats timeout`, a restart), or made to a
            // process a reload replaced, is replaced before the command is written.
            let now = self.served();
            let idle = match slot.take() {
                Some(open) if !open.made_to.same(now) => {
                    self.replaced.store(true, Ordering::SeqCst);
                    None
                }
                Some(mut open) => {
                    if closed(&mut open.conn).await {
                        None
                    } else if !self.master
                        && open.used.elapsed() >= RECHECK_IDLE
                        && stopping(&mut open.conn).await
                    {
                        self.replaced.store(true, Ordering::SeqCst);
                        None
                    } else {
                        Some(open)
                    }
                }
                None => None,
            };
            let (mut open, reused) = match idle {
                Some(open) => (open, true),
                None => match self.open().await? {
                    Some(open) => (open, false),
                    None => return self.send_oneshot(line).await,
                },
            };
            match exchange(&mut open.conn, line).await {
                Answer::Prompt(text) => {
                    let refused = error_kind(&text).is_some();
                    if !open.made_to.same(self.served()) {
                        self.replaced.store(true, Ordering::SeqCst);
                        if !resent && (read_only || refused) {
                            resent = true;
                            continue;
                        }
                        if !refused {
                            return Err(self.replaced_in_flight(line, &text, read_only));
                        }
                    } else if reused
                        && !resent
                        && !self.master
                        && text.trim() == "Proxy is disabled."
                        && stopping(&mut open.conn).await
                    {
                        self.replaced.store(true, Ordering::SeqCst);
                        resent = true;
                        continue;
                    }
                    open.used = Instant::now();
                    *slot = Some(open);
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

    /// The socket's file changed between writing `line` and its answer `text` (for a read: on its
    /// second try).
    pub(super) fn replaced_in_flight(&self, line: &str, text: &str, read_only: bool) -> Failure {
        let label = &self.label;
        if read_only {
            return Failure::new(
                Kind::Io,
                label,
                format!("{label}: `{line}`: HAProxy was reloaded while the command was answered, and it had been sent again once already (tried twice)"),
            );
        }
        let answer = if text.trim().is_empty() {
            "accepted it".to_string()
        } else {
            format!("answered {:?}", words(text))
        };
        Failure::new(
            Kind::UnknownOutcome,
            label,
            format!(
                "{label}: `{line}`: HAProxy was reloaded while the command was in flight: the process that {answer} is the one being replaced, so the live process may not have the change (not sent again: check the state before retrying)"
            ),
        )
    }

    /// One connection for one command: HAProxy answers and closes.
    pub(super) async fn send_oneshot(&self, line: &str) -> Result<String, Failure> {
        let (mut conn, _) = self.connect(Instant::now() + RELOAD_GRACE).await?;
        let r = async {
            conn.write_all(format!("{line}\n").as_bytes()).await?;
            // As socat does: the end of the input is what makes a master CLI answer and close.
            conn.shutdown().await?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf).await?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        };
        r.await.map_err(|e| self.io_failure(e))
    }

    pub(super) fn io_failure(&self, e: std::io::Error) -> Failure {
        Failure::new(Kind::Io, &self.label, format!("{}: {e}", self.label))
    }

    /// The connection ended after `line` was written and before the prompt that ends an answer.
    pub(super) fn cut_off(
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

/// Whether the process at the other end of a connection is stopping (`show info`: `Stopping: 1`):
/// a reload replaced it. A connection that fails to answer is of no use either.
pub(super) async fn stopping(conn: &mut Conn) -> bool {
    match exchange(conn, "show info").await {
        Answer::Prompt(info) => info.lines().any(|l| l.trim() == "Stopping: 1"),
        _ => true,
    }
}

/// Whether a connection's last words are one whole known error line.
pub(super) fn complete_error(text: &str) -> bool {
    text.ends_with('\n') && text.trim().lines().count() == 1 && error_kind(text).is_some()
}

/// Whether an idle connection was closed by the other end (or holds stray bytes, which would
/// desynchronise answers): checked without waiting.
pub(super) async fn closed(conn: &mut Conn) -> bool {
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
pub(super) async fn exchange(conn: &mut Conn, line: &str) -> Answer {
    if let Err(e) = conn.write_all(format!("{line}\n").as_bytes()).await {
        return Answer::Unsent(e);
    }
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(buf.capacity());
        }
        let read = match read_soon(conn, &mut buf) {
            Some(n) => Ok(n),
            None => conn.read_buf(&mut buf).await,
        };
        match read {
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
pub(super) fn prompt_start(buf: &[u8]) -> Option<usize> {
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
