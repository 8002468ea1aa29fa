//! The traffic guard: a background prober of a service's public address that measures, while a run
//! works, whether users were hurt: every failed request and the latency of every answer, per step of
//! the run. Over its error budget it stops the run at the next operation boundary (as Ctrl-C does:
//! the deferred cleanups run), so a bad server is the last one touched.
//!
//! The prober must never be what breaks the service: one request in flight per URL, a new
//! connection each (it reaches whichever process accepts now), a short timeout, and bounded memory
//! (a latency histogram, not the samples). Its own cancellation is never counted as a failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rhai::plugin::*;
use rhai::Map;
use serde_json::{json, Value};

pub use crate::config::Budget;
use crate::error::Failure;
use crate::opts::Opts;
use crate::run::Run;

/// Time between two requests unless `interval` says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);
/// Time one request may take unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests, failures and latencies of one URL (or of one step).
#[derive(Clone)]
pub struct Figures {
    pub requests: u64,
    pub failed: u64,
    /// Latency of every answered request, in microseconds.
    latency: Histogram<u64>,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            requests: 0,
            failed: 0,
            // 1 µs to 10 minutes, 2 significant digits: a few KB whatever the run's length.
            latency: Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid bounds"),
        }
    }
}

impl Figures {
    fn record(&mut self, ok: bool, took: Duration) {
        self.requests += 1;
        if !ok {
            self.failed += 1;
        }
        let _ = self.latency.record((took.as_micros() as u64).max(1));
    }

    fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.failed += other.failed;
        let _ = self.latency.add(&other.latency);
    }

    fn ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            (self.latency.value_at_quantile(q) as f64 / 10.0).round() / 100.0
        }
    }

    /// `#{requests, failed, p50_ms, p99_ms}`, the keys of the recap, the journal and JSON events.
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "failed": self.failed,
            "p50_ms": self.ms(0.5),
            "p99_ms": self.ms(0.99),
        })
    }

    /// `412 requests, 0 failed, p50 1.2 ms, p99 3.4 ms`.
    pub fn describe(&self) -> String {
        format!(
            "{} requests, {} failed, p50 {} ms, p99 {} ms",
            self.requests,
            self.failed,
            self.ms(0.5),
            self.ms(0.99)
        )
    }
}

/// What a guard measured so far.
#[derive(Default)]
struct Tally {
    total: Figures,
    /// By the step that was running when the request was sent (the innermost one), in order.
    steps: Vec<(String, Figures)>,
    /// The last failure seen, for messages.
    last_failure: Option<String>,
    /// The budget was exceeded (the run was told to stop once).
    tripped: bool,
}

/// A running guard: `watch(url, ...)` in a script, or one of `--watch URL,...`.
pub struct Guard {
    url: String,
    budget: Budget,
    tally: Mutex<Tally>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A script's handle on a guard.
#[derive(Clone)]
pub struct Watch(Arc<Guard>);

/// How a guard probes.
pub struct Probe {
    pub interval: Duration,
    pub timeout: Duration,
    /// The status an answer must have; None: any 2xx or 3xx.
    pub status: Option<u16>,
    /// Text the body must contain.
    pub contains: Option<String>,
    pub budget: Budget,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            status: None,
            contains: None,
            budget: Budget::None,
        }
    }
}

impl Guard {
    /// Start probing `url` on the run's runtime; the run stops every guard when it ends.
    pub fn start(run: &Arc<Run>, url: &str, probe: Probe) -> Result<Arc<Guard>, Failure> {
        reqwest::Url::parse(url)
            .map_err(|e| Failure::usage(url, format!("watch {url}: not a URL ({e})")))?;
        let guard = Arc::new(Guard {
            url: url.to_string(),
            budget: probe.budget,
            tally: Mutex::default(),
            task: Mutex::default(),
        });
        let (g, r) = (guard.clone(), run.clone());
        let task = run.rt.spawn(async move { g.probe(&r, probe).await });
        *guard.task.lock().unwrap() = Some(task);
        run.guards.lock().unwrap().push(guard.clone());
        Ok(guard)
    }

    /// One request at a time, every `interval`.
    async fn probe(&self, run: &Run, p: Probe) {
        let mut tick = tokio::time::interval(p.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let step = run.report.current_step();
            let started = Instant::now();
            let outcome = self.request(run, &p).await;
            let took = started.elapsed();
            self.tally(run, &step, outcome, took);
        }
    }

    /// Ok, or why the request failed.
    async fn request(&self, run: &Run, p: &Probe) -> Result<(), String> {
        let resp = run
            .http()
            .get(&self.url)
            .timeout(p.timeout)
            .header("connection", "close")
            .send()
            .await
            .map_err(|e| crate::prims::http::cause(&e))?;
        let status = resp.status().as_u16();
        let good = match p.status {
            Some(want) => status == want,
            None => (200..400).contains(&status),
        };
        if !good {
            return Err(format!("status {status}"));
        }
        if let Some(c) = &p.contains {
            let body = resp
                .text()
                .await
                .map_err(|e| crate::prims::http::cause(&e))?;
            if !body.contains(c.as_str()) {
                return Err(format!("status {status} without \"{c}\" in the body"));
            }
        }
        Ok(())
    }

    fn tally(&self, run: &Run, step: &str, outcome: Result<(), String>, took: Duration) {
        let mut t = self.tally.lock().unwrap();
        let ok = outcome.is_ok();
        t.total.record(ok, took);
        match t.steps.iter_mut().find(|(s, _)| s == step) {
            Some((_, f)) => f.record(ok, took),
            None => {
                let mut f = Figures::default();
                f.record(ok, took);
                t.steps.push((step.to_string(), f));
            }
        }
        let Err(why) = outcome else { return };
        let during = if step.is_empty() {
            String::new()
        } else {
            format!(" during `{step}`")
        };
        // The first failure of a step is worth a line; the rest go into the figures.
        let first_here = t.steps.iter().find(|(s, _)| s == step).unwrap().1.failed == 1;
        if first_here {
            run.report.warn(&format!(
                "traffic guard: GET {} failed{during}: {why}",
                self.url
            ));
        }
        t.last_failure = Some(why.clone());
        if !t.tripped && self.budget.exceeded(t.total.failed, t.total.requests) {
            t.tripped = true;
            let why = format!(
                "the traffic guard stopped the run: {} of {} request(s) to {} failed, over the budget of {}{during} (last: {why})",
                t.total.failed,
                t.total.requests,
                self.url,
                self.budget.describe(),
            );
            drop(t);
            run.report.warn(&why);
            run.stop_by_guard(why);
        }
    }

    /// Stop probing (a request in flight is dropped, and not counted).
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The figures so far: everything, and per step.
    pub fn figures(&self) -> (Figures, Vec<(String, Figures)>) {
        let t = self.tally.lock().unwrap();
        (t.total.clone(), t.steps.clone())
    }
}

/// The figures of every guard of a run, for the recap and `run_end`: the totals, per URL and per
/// step (summed over the URLs). None when the run had no guard.
pub fn summary(guards: &[Arc<Guard>]) -> Option<(Value, Vec<String>)> {
    if guards.is_empty() {
        return None;
    }
    let mut total = Figures::default();
    let mut urls = serde_json::Map::new();
    let mut steps: Vec<(String, Figures)> = Vec::new();
    for g in guards {
        let (t, per_step) = g.figures();
        total.add(&t);
        urls.insert(g.url().to_string(), t.to_json());
        for (s, f) in per_step {
            match steps.iter_mut().find(|(name, _)| *name == s) {
                Some((_, sum)) => sum.add(&f),
                None => steps.push((s, f)),
            }
        }
    }
    let mut json = total.to_json();
    json["urls"] = urls.into();
    json["steps"] = steps
        .iter()
        .map(|(s, f)| {
            let mut j = f.to_json();
            j["step"] = s.clone().into();
            j
        })
        .collect::<Vec<_>>()
        .into();
    let names: Vec<&str> = guards.iter().map(|g| g.url()).collect();
    let mut lines = vec![format!(
        "traffic guard ({}): {}",
        names.join(", "),
        total.describe()
    )];
    let width = steps.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    for (s, f) in &steps {
        let name = if s.is_empty() { "(no step)" } else { s };
        lines.push(format!("  {name:<width$}  {}", f.describe()));
    }
    Some((json, lines))
}

/// The options of `watch`.
fn probe_options(url: &str, options: Map) -> Result<Probe, Failure> {
    let target = format!("watch {url}");
    let o = Opts::new(
        options,
        &["interval", "timeout", "status", "contains", "max_errors"],
        &target,
    )?;
    let budget = match o.get("max_errors") {
        None => Budget::None,
        Some(v) => Budget::parse(&v.to_string())
            .map_err(|e| Failure::usage(&target, format!("{target}: {e}")))?,
    };
    let status = o
        .int("status")?
        .map(|s| {
            u16::try_from(s).map_err(|_| {
                Failure::usage(
                    &target,
                    format!("{target}: status {s} is not an HTTP status"),
                )
            })
        })
        .transpose()?;
    Ok(Probe {
        interval: o
            .secs("interval")?
            .unwrap_or(DEFAULT_INTERVAL)
            .max(Duration::from_millis(5)),
        timeout: o.secs("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        status,
        contains: o.string("contains")?,
        budget,
    })
}

#[export_module]
pub mod watch_api {
    use super::*;
    use rhai::{EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// Watch `url` while the run works: a background prober sends a GET every 50 ms (one at a
    /// time, a new connection each, 2 s timeout) and counts failed requests (a connection error,
    /// a timeout, a status outside 2xx/3xx) and latencies, per step. The recap, the journal's
    /// `run_end` and the `run_end` JSON event carry its figures (`requests`, `failed`, `p50_ms`,
    /// `p99_ms`) in total and per step. It stops with the run, or with `g.stop()`.
    ///
    /// ```rhai
    /// let g = watch("http://127.0.0.1:8080/");
    /// rolling::upgrade(lb, "web_servers", servers, #{}, redeploy);
    /// print(g.stats());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn watch(ctx: NativeCallContext, url: &str) -> Res<Watch> {
        watch_with(ctx, url, Map::new())
    }

    /// `watch` with options: `interval` (seconds between requests, default 0.05), `timeout`
    /// (seconds per request, default 2), `status` (the status an answer must have; default any
    /// 2xx or 3xx), `contains` (text the body must hold), `max_errors` (the error budget: a number
    /// of failed requests, or a percentage such as `"1%"`; exceeding it stops the run at the next
    /// operation as Ctrl-C does: the deferred cleanups run, exit code 1; default: no budget).
    ///
    /// ```rhai
    /// let g = watch("http://127.0.0.1:8080/health", #{interval: 0.05, max_errors: 0});
    /// ```
    #[rhai_fn(name = "watch", return_raw)]
    pub fn watch_with(ctx: NativeCallContext, url: &str, options: Map) -> Res<Watch> {
        let run = Run::of(&ctx);
        let probe = probe_options(url, options)?;
        Ok(Watch(Guard::start(&run, url, probe)?))
    }

    /// What the guard measured so far: `#{requests, failed, p50_ms, p99_ms}`.
    ///
    /// ```rhai
    /// let s = g.stats();
    /// if s.failed > 0 { warn(`${s.failed} of ${s.requests} requests failed`) }
    /// ```
    #[rhai_fn(pure)]
    pub fn stats(g: &mut Watch) -> Map {
        let (total, _) = g.0.figures();
        rhai::serde::to_dynamic(total.to_json())
            .ok()
            .and_then(|d| d.try_cast::<Map>())
            .unwrap_or_default()
    }

    /// Stop probing; its figures stay in the recap.
    ///
    /// ```rhai
    /// g.stop();
    /// ```
    #[rhai_fn(pure)]
    pub fn stop(g: &mut Watch) {
        g.0.stop();
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(g: &mut Watch) -> String {
        format!("watch({})", g.0.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_counts_or_rates() {
        assert_eq!(Budget::parse("3").unwrap(), Budget::Count(3));
        assert_eq!(Budget::parse("1%").unwrap(), Budget::Rate(0.01));
        assert!(Budget::parse("x").is_err() && Budget::parse("200%").is_err());
        assert!(!Budget::Count(1).exceeded(1, 10) && Budget::Count(1).exceeded(2, 10));
        assert!(Budget::Count(0).exceeded(1, 1));
        // 1% of 50 requests rounds to under one: one failure is still allowed, two are not.
        assert!(!Budget::Rate(0.01).exceeded(1, 50) && Budget::Rate(0.01).exceeded(2, 50));
        assert!(!Budget::None.exceeded(1000, 1000));
    }

    #[test]
    fn figures_keep_quantiles_not_samples() {
        let mut f = Figures::default();
        for ms in 1..=100 {
            f.record(ms != 100, Duration::from_millis(ms));
        }
        assert_eq!((f.requests, f.failed), (100, 1));
        assert!((f.ms(0.5) - 50.0).abs() < 1.0, "{}", f.ms(0.5));
        assert!((f.ms(0.99) - 99.0).abs() < 1.5, "{}", f.ms(0.99));
    }
}
