//! All output of a run: steps with their elapsed time, info and warnings, the script's `print`, dry-run
//! "would ..." lines, and rendered errors. Three renderings of the same events:
//! - a TTY gets a spinner for the current step and a line when it finishes;
//! - anything else (CI logs, pipes) gets plain timestamped lines;
//! - `--output json` gets one JSON object per line on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use rhai::{EvalAltResult, Position};
use serde_json::{json, Value};

use crate::error::{error_message, fmt_secs};
use crate::resolver::Sources;

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Lines for people: a spinner on a TTY, timestamped lines otherwise.
    #[default]
    Human,
    /// One JSON object per line on stdout.
    Json,
}

/// Owns every byte a run writes to the terminal.
pub struct Reporter {
    output: Output,
    /// -1 quiet, 0 normal, 1+ verbose.
    verbosity: i8,
    tty: bool,
    state: Mutex<Steps>,
}

#[derive(Default)]
struct Steps {
    open: Vec<Step>,
    spinner: Option<ProgressBar>,
}

struct Step {
    msg: String,
    target: Option<String>,
    started: Instant,
    /// Opened by `step(msg, || ...)`: it ends when its closure returns, not at the next step.
    scoped: bool,
}

impl Reporter {
    pub fn new(output: Output, verbosity: i8) -> Self {
        let tty = output == Output::Human && std::io::stderr().is_terminal();
        Reporter {
            output,
            verbosity,
            tty,
            state: Mutex::new(Steps::default()),
        }
    }

    pub fn verbosity(&self) -> i8 {
        self.verbosity
    }

    /// Start a step (about `target`, if given); the previous unscoped step at the same depth
    /// finishes.
    pub fn step(&self, msg: &str, target: Option<&str>) {
        self.open_step(msg, target, false);
    }

    /// Start a step that holds nested steps until `end_scoped_step`.
    pub fn begin_scoped_step(&self, msg: &str, target: Option<&str>) {
        self.open_step(msg, target, true);
    }

    /// Finish the innermost scoped step (and any unscoped step nested in it).
    pub fn end_scoped_step(&self, ok: bool) {
        let mut st = self.state.lock().unwrap();
        while let Some(top) = st.open.last() {
            let scoped = top.scoped;
            self.close_top(&mut st, ok || !scoped);
            if scoped {
                break;
            }
        }
    }

    /// Finish every open step: at the end of the run.
    pub fn finish_steps(&self, ok: bool) {
        let mut st = self.state.lock().unwrap();
        while !st.open.is_empty() {
            self.close_top(&mut st, ok);
        }
    }

    fn open_step(&self, msg: &str, target: Option<&str>, scoped: bool) {
        let mut st = self.state.lock().unwrap();
        if st.open.last().is_some_and(|s| !s.scoped) {
            self.close_top(&mut st, true);
        }
        let depth = st.open.len();
        st.open.push(Step {
            msg: msg.to_string(),
            target: target.map(str::to_string),
            started: Instant::now(),
            scoped,
        });
        match self.output {
            Output::Json => {
                self.event(json!({"event": "step", "msg": msg, "target": target, "depth": depth}))
            }
            Output::Human if self.verbosity < 0 => {}
            Output::Human if self.tty => {
                let pb = st.spinner.get_or_insert_with(|| {
                    let pb = ProgressBar::new_spinner();
                    pb.set_style(
                        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").unwrap(),
                    );
                    pb.enable_steady_tick(Duration::from_millis(100));
                    pb
                });
                pb.set_message(format!("{}{msg}", indent(depth)));
                pb.reset_elapsed();
            }
            Output::Human => self.line(&format!("{}▸ {msg}", indent(depth))),
        }
    }

    fn close_top(&self, st: &mut Steps, ok: bool) {
        let Some(step) = st.open.pop() else { return };
        let depth = st.open.len();
        let elapsed = step.started.elapsed().as_secs_f64();
        match self.output {
            Output::Json => self.event(json!({
                "event": "step_end", "msg": step.msg, "target": step.target, "depth": depth, "ok": ok,
                "elapsed": (elapsed * 1000.0).round() / 1000.0,
            })),
            Output::Human if self.verbosity < 0 => {}
            Output::Human => {
                let mark = if ok { "✓" } else { "✗" };
                let text = format!(
                    "{}{mark} {} ({})",
                    indent(depth),
                    step.msg,
                    fmt_elapsed(elapsed)
                );
                if self.tty {
                    if let Some(pb) = &st.spinner {
                        pb.println(&text);
                        if st.open.is_empty() {
                            pb.finish_and_clear();
                            st.spinner = None;
                        } else if let Some(parent) = st.open.last() {
                            pb.set_message(format!("{}{}", indent(depth - 1), parent.msg));
                        }
                        return;
                    }
                }
                self.line(&text);
            }
        }
    }

    pub fn info(&self, msg: &str) {
        match self.output {
            Output::Json => self.event(json!({"event": "info", "msg": msg})),
            Output::Human if self.verbosity >= 0 => self.line(msg),
            Output::Human => {}
        }
    }

    pub fn warn(&self, msg: &str) {
        match self.output {
            Output::Json => self.event(json!({"event": "warn", "msg": msg})),
            Output::Human => self.line(&format!("warning: {msg}")),
        }
    }

    /// Detail shown only with `-v`.
    pub fn debug(&self, msg: &str) {
        match self.output {
            Output::Json if self.verbosity > 0 => self.event(json!({"event": "debug", "msg": msg})),
            Output::Human if self.verbosity > 0 => self.line(msg),
            _ => {}
        }
    }

    /// The script's `print`: stdout, so that `runner eval` and scripts can be piped.
    pub fn print(&self, text: &str) {
        match self.output {
            Output::Json => self.event(json!({"event": "print", "text": text})),
            Output::Human => self.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }),
        }
    }

    /// An effect skipped by `--dry-run`.
    pub fn would(&self, action: &str, target: &str) {
        match self.output {
            Output::Json => {
                self.event(json!({"event": "would", "action": action, "target": target}))
            }
            Output::Human => self.line(&format!("would {action} on {target}")),
        }
    }

    /// What a change of a file's content does (a unified diff), shown under `--dry-run` and `-v`
    /// (not with `-q`). Printed as a block, without timestamps, so it reads as a diff.
    pub fn diff(&self, target: &str, path: &str, diff: &str) {
        match self.output {
            Output::Json => {
                self.event(json!({"event": "diff", "target": target, "path": path, "diff": diff}))
            }
            Output::Human if self.verbosity < 0 => {}
            Output::Human => self.suspend(|| {
                let _ = write!(std::io::stderr(), "{diff}");
            }),
        }
    }

    /// An effect about to be carried out.
    pub fn effect(&self, action: &str, target: &str) {
        match self.output {
            Output::Json => {
                self.event(json!({"event": "effect", "action": action, "target": target}))
            }
            Output::Human if self.verbosity > 0 => self.line(&format!("→ {action} on {target}")),
            Output::Human => {}
        }
    }

    /// The recap at the end of a run: what changed per target (hidden by `-q`), then what the run
    /// left out of its normal state (always shown). JSON output gets the `run_end` event instead.
    pub fn recap(&self, lines: &[String], left: &[String]) {
        if self.output == Output::Json {
            return;
        }
        if self.verbosity >= 0 {
            for l in lines {
                self.line(l);
            }
        }
        if !left.is_empty() {
            self.line("left out of their normal state:");
            for l in left {
                self.line(&format!("  {l}"));
            }
        }
    }

    /// The final error of a run, already rendered for people; JSON mode gets its fields.
    pub fn error(&self, rendered: &str, fields: Value) {
        match self.output {
            Output::Json => {
                let mut ev = json!({"event": "error", "message": rendered});
                if let (Value::Object(ev), Value::Object(f)) = (&mut ev, fields) {
                    ev.extend(f);
                }
                self.event(ev)
            }
            Output::Human => self.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{rendered}");
            }),
        }
    }

    /// A JSON event line (JSON mode only), with a timestamp.
    pub fn event(&self, mut ev: Value) {
        if self.output != Output::Json {
            return;
        }
        if let Value::Object(m) = &mut ev {
            m.insert(
                "time".into(),
                humantime::format_rfc3339_millis(SystemTime::now())
                    .to_string()
                    .into(),
            );
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ev}");
        let _ = out.flush();
    }

    /// A line on stderr: above the spinner on a TTY, timestamped otherwise.
    fn line(&self, text: &str) {
        // A closed stderr (`runner play x 2>&- | ...`) must not stop the run: write errors are ignored.
        if self.tty {
            self.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{text}");
            });
        } else {
            let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            let _ = writeln!(std::io::stderr(), "{} {text}", &now[11..19]);
        }
    }

    fn suspend(&self, f: impl FnOnce()) {
        let spinner = self.state.lock().unwrap().spinner.clone();
        match spinner {
            Some(pb) => pb.suspend(f),
            None => f(),
        }
    }
}

fn indent(depth: usize) -> String {
    "  ".repeat(depth)
}

fn fmt_elapsed(secs: f64) -> String {
    if secs < 10.0 {
        format!("{:.1}s", secs)
    } else {
        fmt_secs(secs.round())
    }
}

/// Render a script error the way a compiler does: message, `file:line:col`, the source line with a
/// caret, then every call and import it came through, innermost first.
pub fn render_error(err: &EvalAltResult, main_source: &str, sources: &Sources) -> String {
    // Walk from the outside in; each wrapper says where the next level was entered.
    let mut frames: Vec<(String, Position, String)> = Vec::new();
    let mut source = main_source.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let what = if name.starts_with("anon$") {
                    "in closure".to_string()
                } else {
                    format!("in call to {name}()")
                };
                frames.push((source.clone(), *pos, what));
                if !src.is_empty() {
                    source = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                frames.push((source.clone(), *pos, format!("in module \"{path}\"")));
                source = sources.resolved_name(path).unwrap_or_else(|| path.clone());
                e = inner;
            }
            _ => break,
        }
    }
    let mut out = format!("error: {}", error_message(e));
    out.push_str(&location(&source, e.position(), sources));
    for (src, pos, what) in frames.iter().rev() {
        if pos.is_none() {
            continue;
        }
        out.push_str(&format!(
            "\n  = {what}, called from {}",
            loc_text(src, *pos)
        ));
        out.push_str(&location_lines(src, *pos, sources));
    }
    out
}

/// Render a compile (parse) error with its location.
pub fn render_parse_error(err: &rhai::ParseError, source: &str, sources: &Sources) -> String {
    let mut e = err.0.to_string();
    if let Some(i) = e.find(" (line ") {
        e.truncate(i);
    }
    format!("error: {e}{}", location(source, err.1, sources))
}

fn loc_text(source: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{source}:{l}:{c}"),
        (Some(l), None) => format!("{source}:{l}"),
        _ => source.to_string(),
    }
}

fn location(source: &str, pos: Position, sources: &Sources) -> String {
    if pos.is_none() {
        return format!("\n  --> {source}");
    }
    format!(
        "\n  --> {}{}",
        loc_text(source, pos),
        location_lines(source, pos, sources)
    )
}

fn location_lines(source: &str, pos: Position, sources: &Sources) -> String {
    let (Some(line), Some(text)) = (pos.line(), sources.get(source)) else {
        return String::new();
    };
    let Some(src_line) = text.lines().nth(line - 1) else {
        return String::new();
    };
    let col = pos.position().unwrap_or(1);
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    // Keep tabs so the caret lines up under the same characters.
    let lead: String = src_line
        .chars()
        .take(col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("\n{pad} |\n{num} | {src_line}\n{pad} | {lead}^")
}
