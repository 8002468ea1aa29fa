//! The connection to one stats socket or master CLI, kept open in HAProxy's interactive mode
//! (`prompt`): every complete answer ends with a prompt line, so one connection carries any number of
//! commands. A connection HAProxy closed while idle is reopened before the next command; an answer
//! cut off is sent again only when the command only reads.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::parse::error_kind;
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

/// What a connection is: a unix or TCP stream.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(super) type Conn = Box<dyn Stream>;

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
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// This socket did not answer `prompt` with a prompt: one connection per command.
    oneshot: AtomicBool,
}

impl Socket {
    pub(super) fn new(label: &str) -> Result<Socket, Failure> {
        Ok(Socket {
            label: label.trim().to_string(),
            addr: Addr::parse(label)?,
            conn: tokio::sync::Mutex::new(None),
            oneshot: AtomicBool::new(false),
        })
    }

    pub(super) async fn connect(&self) -> Result<Conn, Failure> {
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
    pub(super) async fn open(&self) -> Result<Option<Conn>, Failure> {
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
    pub(super) async fn send(&self, line: &str, read_only: bool) -> Result<String, Failure> {
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
    pub(super) async fn send_oneshot(&self, line: &str) -> Result<String, Failure> {
        let mut conn = self.connect().await?;
        let r = async {
            conn.write_all(format!("{line}\n").as_bytes()).await?;
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
