//! The traffic guard: a background prober of a service's public address that measures, while a run
//! works, whether users were hurt: every failed request and the latency of every answer, per step of
//! the run. Over its error budget it stops the run at the next operation boundary (as Ctrl-C does:
//! the deferred cleanups run), so a bad server is the last one touched.
//!
//! The prober must never be what breaks the service: one request in flight per URL, a new
//! connection each (it reaches whichever process accepts now), a short timeout, and bounded memory
//! (a latency histogram, not the samples). Its own cancellation is never counted as a failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::Map;

pub use crate::config::Budget;
use crate::error::Failure;
use crate::guard::Seen;
pub use crate::guard::{summary, Guard};
use crate::opts::Opts;
use crate::run::Run;

/// Time between two requests unless `interval` says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);
/// Time one request may take unless `timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Start probing `url` on the run's runtime; the run stops every guard when it ends.
pub fn start(run: &Arc<Run>, url: &str, probe: Probe) -> Result<Arc<Guard>, Failure> {
    reqwest::Url::parse(url)
        .map_err(|e| Failure::usage(url, format!("watch {url}: not a URL ({e})")))?;
    let guard = Arc::new(Guard::new(url, probe.budget));
    let (g, r) = (guard.clone(), run.clone());
    let task = run.rt.spawn(async move { probe_loop(&g, &r, probe).await });
    *guard.task.lock().unwrap() = Some(task);
    run.guards.lock().unwrap().push(guard.clone());
    Ok(guard)
}

/// One request at a time, every `interval`.
async fn probe_loop(guard: &Guard, run: &Run, p: Probe) {
    let mut tick = tokio::time::interval(p.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let step = run.report.current_step();
        let started = Instant::now();
        let outcome = request(run, guard.url(), &p).await;
        match guard.record(&step, outcome, started.elapsed()) {
            Seen::Nothing => {}
            Seen::FirstFailure(line) => run.report.warn(&line),
            Seen::Tripped(why) => {
                run.report.warn(&why);
                run.stop_by_guard(why);
            }
        }
    }
}

/// Ok, or why the request failed.
async fn request(run: &Run, url: &str, p: &Probe) -> Result<(), String> {
    let resp = run
        .http()
        .get(url)
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
        Ok(Watch(start(&run, url, probe)?))
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
