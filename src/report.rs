//! All output of a run: steps with their elapsed time, info and warnings, the script's `print`, dry-run
//! "would ..." lines, and rendered errors. Three renderings of the same events:
//! - a TTY gets a spinner for the current step and a line when it finishes;
//! - anything else (CI logs, pipes) gets plain timestamped lines;
//! - `--output json` gets one JSON object per line on stdout.
//!
//! Rendered errors (file:line:col, the source line, a caret) come from `render.rs`.

pub use crate::render::{render_error, render_parse_error};

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::error::fmt_secs;
use crate::secrets::Secrets;

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
    /// Masked as `***` in every byte written.
    secrets: Arc<Secrets>,
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
    /// Items worked on concurrently, for a `parallel` step.
    progress: Option<Progress>,
}

impl Step {
    /// `✓ msg (1.2s)`, or `✗ ...` when it failed; a `parallel` step with its counts.
    fn ended(&self, ok: bool, elapsed: f64) -> String {
        let mark = if ok { "✓" } else { "✗" };
        match &self.progress {
            Some(p) => format!(
                "{mark} {} {} ({})",
                self.msg,
                p.describe(),
                fmt_elapsed(elapsed)
            ),
            None => format!("{mark} {} ({})", self.msg, fmt_elapsed(elapsed)),
        }
    }
}

/// How far a `parallel` step is.
#[derive(Clone, Default)]
struct Progress {
    done: usize,
    failed: usize,
    total: usize,
    in_flight: Vec<String>,
    /// When a plain line (off a TTY) last said so.
    last_line: Option<Instant>,
}

impl Progress {
    /// `3/10` with the failures and the items in flight: `3/10, 1 failed (web4, web5)`.
    fn describe(&self) -> String {
        let mut s = format!("{}/{}", self.done, self.total);
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if !self.in_flight.is_empty() {
            let shown: Vec<&str> = self.in_flight.iter().take(5).map(String::as_str).collect();
            let more = self.in_flight.len().saturating_sub(5);
            s.push_str(&format!(" ({}", shown.join(", ")));
            if more > 0 {
                s.push_str(&format!(" +{more}"));
            }
            s.push(')');
        }
        s
    }

    /// Off a TTY, a line at most every second, and the last one.
    fn line_due(&mut self) -> bool {
        let due = self.done == self.total
            || self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.last_line = Some(Instant::now());
        }
        due
    }
}

/// The steps of one `parallel` item, on its own thread: reported as lines labelled with the item.
struct Lane {
    label: String,
    /// The depth of the steps around the `parallel` call.
    base: usize,
    open: Vec<Step>,
}

thread_local! {
    static LANE: std::cell::RefCell<Option<Lane>> = const { std::cell::RefCell::new(None) };
}

impl Reporter {
    pub fn new(output: Output, verbosity: i8) -> Self {
        Reporter::with_secrets(output, verbosity, Arc::default())
    }

    /// A reporter that masks the run's `secrets` in everything it writes.
    pub fn with_secrets(output: Output, verbosity: i8, secrets: Arc<Secrets>) -> Self {
        let tty = output == Output::Human && std::io::stderr().is_terminal();
        Reporter {
            output,
            verbosity,
            tty,
            state: Mutex::new(Steps::default()),
            secrets,
        }
    }

    pub fn verbosity(&self) -> i8 {
        self.verbosity
    }

    /// Start a step (about `target`, if given); the previous unscoped step at the same depth
    /// finishes.
    pub fn step(&self, msg: &str, target: Option<&str>) {
        self.open_step(msg, target, false, None);
    }

    /// Start a step that holds nested steps until `end_scoped_step`.
    pub fn begin_scoped_step(&self, msg: &str, target: Option<&str>) {
        self.open_step(msg, target, true, None);
    }

    /// Start a scoped step over `total` items worked on concurrently (`parallel`): it shows how
    /// many are done and which are in flight; `progress` reports each item.
    pub fn begin_progress(&self, msg: &str, total: usize) {
        let p = Progress {
            total,
            ..Progress::default()
        };
        self.open_step(msg, None, true, Some(p));
    }

    /// An item of the innermost `begin_progress` step started (`ok` None) or finished.
    pub fn progress(&self, item: &str, ok: Option<bool>) {
        let mut st = self.state.lock().unwrap();
        let Some(step) = st.open.iter_mut().rev().find(|s| s.progress.is_some()) else {
            return;
        };
        let p = step.progress.as_mut().unwrap();
        match ok {
            None => p.in_flight.push(item.to_string()),
            Some(ok) => {
                if let Some(i) = p.in_flight.iter().position(|x| x == item) {
                    p.in_flight.remove(i);
                }
                p.done += 1;
                if !ok {
                    p.failed += 1;
                }
            }
        }
        let (msg, line_due) = (step.msg.clone(), ok.is_some() && p.line_due());
        let p = p.clone();
        match self.output {
            Output::Json if ok.is_some() => self.event(json!({
                "event": "progress", "msg": msg, "done": p.done, "failed": p.failed,
                "total": p.total, "in_flight": p.in_flight,
            })),
            Output::Json => {}
            Output::Human if self.verbosity < 0 => {}
            Output::Human if self.tty => self.show_path(&st),
            Output::Human if line_due => {
                let depth = st.open.len();
                drop(st);
                self.line(&format!("{}  {msg}: {}", indent(depth - 1), p.describe()));
            }
            Output::Human => {}
        }
    }

    /// Report the steps a `parallel` item's closure opens as its own lines, labelled `label`,
    /// beside the other items' (they would otherwise nest into each other).
    pub fn in_lane<T, E>(&self, label: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let base = self.state.lock().unwrap().open.len();
        LANE.with(|l| {
            *l.borrow_mut() = Some(Lane {
                label: label.to_string(),
                base,
                open: Vec::new(),
            })
        });
        let r = f();
        // The item's last steps end with it.
        while LANE.with(|l| {
            l.borrow()
                .as_ref()
                .is_some_and(|lane| !lane.open.is_empty())
        }) {
            self.close_lane_top(r.is_ok());
        }
        LANE.with(|l| l.borrow_mut().take());
        r
    }

    /// The step running now, as the traffic guard keeps its figures: the innermost step about a
    /// target (a server of a rolling upgrade, whose phases are its own steps), else the innermost
    /// step; "" outside any step.
    pub fn current_step(&self) -> String {
        let st = self.state.lock().unwrap();
        st.open
            .iter()
            .rev()
            .find(|s| s.target.is_some())
            .or(st.open.last())
            .map(|s| s.msg.clone())
            .unwrap_or_default()
    }

    /// Finish the innermost scoped step and the unscoped steps nested in it: marked failed (✗) when
    /// `ok` is false, the step that was running when it failed included.
    pub fn end_scoped_step(&self, ok: bool) {
        if self.in_a_lane() {
            while let Some(scoped) = LANE.with(|l| {
                l.borrow()
                    .as_ref()
                    .and_then(|lane| lane.open.last().map(|s| s.scoped))
            }) {
                self.close_lane_top(ok);
                if scoped {
                    break;
                }
            }
            return;
        }
        let mut st = self.state.lock().unwrap();
        while let Some(top) = st.open.last() {
            let scoped = top.scoped;
            st = self.close_top(st, ok);
            if scoped {
                break;
            }
        }
    }

    /// Finish every open step: at the end of the run.
    pub fn finish_steps(&self, ok: bool) {
        let mut st = self.state.lock().unwrap();
        while !st.open.is_empty() {
            st = self.close_top(st, ok);
        }
    }

    fn in_a_lane(&self) -> bool {
        LANE.with(|l| l.borrow().is_some())
    }

    fn open_step(&self, msg: &str, target: Option<&str>, scoped: bool, progress: Option<Progress>) {
        let step = Step {
            msg: msg.to_string(),
            target: target.map(str::to_string),
            started: Instant::now(),
            scoped,
            progress,
        };
        if self.in_a_lane() {
            self.open_lane_step(step);
            return;
        }
        let mut st = self.state.lock().unwrap();
        if st.open.last().is_some_and(|s| !s.scoped) {
            st = self.close_top(st, true);
        }
        let depth = st.open.len();
        st.open.push(step);
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
                pb.reset_elapsed();
                self.show_path(&st);
            }
            Output::Human => {
                drop(st);
                self.line(&format!("{}▸ {msg}", indent(depth)));
            }
        }
    }

    /// The spinner shows the open steps as a path: the parent stays on the line, with its child.
    fn show_path(&self, st: &Steps) {
        let Some(pb) = &st.spinner else { return };
        let path: Vec<String> = st
            .open
            .iter()
            .map(|s| match &s.progress {
                Some(p) => format!("{} {}", s.msg, p.describe()),
                None => s.msg.clone(),
            })
            .collect();
        pb.set_message(self.secrets.mask(&path.join(" › ")).into_owned());
    }

    fn close_top<'a>(
        &'a self,
        mut st: std::sync::MutexGuard<'a, Steps>,
        ok: bool,
    ) -> std::sync::MutexGuard<'a, Steps> {
        let Some(step) = st.open.pop() else { return st };
        let depth = st.open.len();
        let elapsed = step.started.elapsed().as_secs_f64();
        match self.output {
            Output::Json => self.event(json!({
                "event": "step_end", "msg": step.msg, "target": step.target, "depth": depth, "ok": ok,
                "elapsed": (elapsed * 1000.0).round() / 1000.0,
            })),
            Output::Human if self.verbosity < 0 => {}
            Output::Human => {
                let text = format!("{}{}", indent(depth), step.ended(ok, elapsed));
                match &st.spinner {
                    Some(pb) if self.tty => {
                        pb.println(self.secrets.mask(&text));
                        if st.open.is_empty() {
                            pb.finish_and_clear();
                            st.spinner = None;
                        } else {
                            self.show_path(&st);
                        }
                    }
                    _ => {
                        drop(st);
                        self.line(&text);
                        st = self.state.lock().unwrap();
                    }
                }
            }
        }
        st
    }

    fn open_lane_step(&self, step: Step) {
        let (label, depth, msg, target) = LANE.with(|l| {
            let mut l = l.borrow_mut();
            let lane = l.as_mut().unwrap();
            let mut closed = None;
            if lane.open.last().is_some_and(|s| !s.scoped) {
                closed = lane.open.pop();
            }
            let (msg, target) = (step.msg.clone(), step.target.clone());
            lane.open.push(step);
            let depth = lane.base + lane.open.len() - 1;
            ((lane.label.clone(), closed), depth, msg, target)
        });
        let (label, closed) = label;
        if let Some(c) = closed {
            self.lane_line(&label, depth, &c, true);
        }
        match self.output {
            Output::Json => self.event(
                json!({"event": "step", "msg": msg, "target": target, "depth": depth, "lane": label}),
            ),
            Output::Human if self.verbosity < 0 => {}
            Output::Human => self.line(&format!("{}{label}: ▸ {msg}", indent(depth))),
        }
    }

    fn close_lane_top(&self, ok: bool) {
        let closed = LANE.with(|l| {
            let mut l = l.borrow_mut();
            let lane = l.as_mut()?;
            let step = lane.open.pop()?;
            Some((lane.label.clone(), lane.base + lane.open.len(), step))
        });
        if let Some((label, depth, step)) = closed {
            self.lane_line(&label, depth, &step, ok);
        }
    }

    fn lane_line(&self, label: &str, depth: usize, step: &Step, ok: bool) {
        let elapsed = step.started.elapsed().as_secs_f64();
        match self.output {
            Output::Json => self.event(json!({
                "event": "step_end", "msg": step.msg, "target": step.target, "depth": depth,
                "ok": ok, "lane": label, "elapsed": (elapsed * 1000.0).round() / 1000.0,
            })),
            Output::Human if self.verbosity < 0 => {}
            Output::Human => self.line(&format!(
                "{}{label}: {}",
                indent(depth),
                step.ended(ok, elapsed)
            )),
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
                let _ = writeln!(out, "{}", self.secrets.mask(text));
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
                let _ = writeln!(std::io::stderr(), "{}", self.secrets.mask(rendered));
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
        let _ = writeln!(out, "{}", self.secrets.mask(&ev.to_string()));
        let _ = out.flush();
    }

    /// A line on stderr: above the spinner on a TTY, timestamped otherwise.
    fn line(&self, text: &str) {
        // A closed stderr (`runner play x 2>&- | ...`) must not stop the run: write errors are ignored.
        if self.tty {
            self.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{}", self.secrets.mask(text));
            });
        } else {
            let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            let _ = writeln!(
                std::io::stderr(),
                "{} {}",
                &now[11..19],
                self.secrets.mask(text)
            );
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
