//! Reading a command's output streams: at most `max_output` bytes of each are kept (what comes past
//! it is read and discarded, so the command is never blocked on a full pipe), lines are shown live
//! under `-v`, and the remote shell's pid is taken out of its stderr.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::run::Run;

/// What the remote shell prints first on stderr, followed by its pid.
pub(super) const PID_MARK: &str = "runner-pid:";

/// The longest line shown live under `-v`; the rest of a longer line is left out of the display
/// (not out of the output).
const LIVE_LINE_MAX: usize = 4096;

/// A stream read to its end.
pub struct Collected {
    /// The first `max_output` bytes, as text (invalid UTF-8 replaced).
    pub text: String,
    /// How many bytes the stream carried, kept or not.
    pub written: u64,
}

impl Collected {
    pub fn empty() -> Self {
        Collected {
            text: String::new(),
            written: 0,
        }
    }
}

/// A stream being read: what is kept, and the line being shown live.
struct Capture<'r> {
    kept: Vec<u8>,
    limit: usize,
    written: u64,
    live: Option<(&'r Run, &'r str)>,
    line: Vec<u8>,
}

impl Capture<'_> {
    fn push(&mut self, piece: &[u8], ends_line: bool) {
        self.written += piece.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&piece[..piece.len().min(room)]);
        if self.live.is_some() {
            let room = LIVE_LINE_MAX.saturating_sub(self.line.len());
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            if ends_line {
                self.show_line();
            }
        }
    }

    fn show_line(&mut self) {
        if let Some((run, host)) = self.live {
            let line = String::from_utf8_lossy(&self.line);
            run.report
                .debug(&format!("{host}: {}", line.trim_end_matches('\n')));
        }
        self.line.clear();
    }

    fn finish(mut self) -> Collected {
        if !self.line.is_empty() {
            self.show_line();
        }
        // Valid UTF-8, the usual case, becomes the string without a copy.
        let text = String::from_utf8(self.kept)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Collected {
            text,
            written: self.written,
        }
    }
}

/// Read a stream to the end, keeping at most `limit` bytes, showing each line as it comes when
/// `live` is set. With `pid`, the first line, which carries the remote shell's pid, is taken out
/// and its pid stored.
pub async fn collect<R: AsyncRead + Unpin>(
    r: R,
    limit: usize,
    live: Option<(&Run, &str)>,
    pid: Option<&std::sync::Mutex<Option<u32>>>,
) -> std::io::Result<Collected> {
    let mut reader = BufReader::new(r);
    let mut capture = Capture {
        kept: Vec::new(),
        limit,
        written: 0,
        live,
        line: Vec::new(),
    };
    // The first line while it may still be the pid mark.
    let mut first: Option<Vec<u8>> = pid.map(|_| Vec::new());
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let ends_line = piece.ends_with(b"\n");
            let Some(line) = first.as_mut() else {
                capture.push(piece, ends_line);
                continue;
            };
            line.extend_from_slice(piece);
            if !ends_line && line.len() <= PID_MARK.len() + 12 {
                continue;
            }
            let line = first.take().unwrap();
            let n = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| l.trim_end().strip_prefix(PID_MARK))
                .and_then(|n| n.parse().ok());
            match (n, pid) {
                (Some(n), Some(slot)) => *slot.lock().unwrap() = Some(n),
                _ => capture.push(&line, ends_line),
            }
        }
        reader.consume(len);
    }
    if let Some(line) = first.filter(|l| !l.is_empty()) {
        capture.push(&line, false);
    }
    Ok(capture.finish())
}
