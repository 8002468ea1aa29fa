//! The figures of a traffic guard (`watch`, `--watch`): requests, failures and latencies of a
//! service's public address while a run works, in total and per step of the run, in bounded memory
//! (a latency histogram, not the samples), and the error budget that stops the run. The probing
//! itself is the `watch` primitive's (`prims/watch.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::config::Budget;

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
    /// The budget was exceeded (the run was told to stop once).
    tripped: bool,
}

/// A running guard: `watch(url, ...)` in a script, or one of `--watch URL,...`.
pub struct Guard {
    url: String,
    budget: Budget,
    tally: Mutex<Tally>,
    /// The prober, stopped with the guard.
    pub task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What one observation means for the run.
pub enum Seen {
    Nothing,
    /// The first failure during this step: worth a line.
    FirstFailure(String),
    /// The budget is exceeded (said once): the run must stop, saying this.
    Tripped(String),
}

impl Guard {
    pub fn new(url: &str, budget: Budget) -> Guard {
        Guard {
            url: url.to_string(),
            budget,
            tally: Mutex::default(),
            task: Mutex::default(),
        }
    }

    /// One request to the URL, sent during `step`: ok, or why it failed; and how long it took.
    pub fn record(&self, step: &str, outcome: Result<(), String>, took: Duration) -> Seen {
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
        let Err(why) = outcome else {
            return Seen::Nothing;
        };
        let during = if step.is_empty() {
            String::new()
        } else {
            format!(" during `{step}`")
        };
        if !t.tripped && self.budget.exceeded(t.total.failed, t.total.requests) {
            t.tripped = true;
            return Seen::Tripped(format!(
                "the traffic guard stopped the run: {} of {} request(s) to {} failed, over the budget of {}{during} (last: {why})",
                t.total.failed,
                t.total.requests,
                self.url,
                self.budget.describe(),
            ));
        }
        // The first failure of a step is worth a line; the rest go into the figures.
        if t.steps.iter().find(|(s, _)| s == step).unwrap().1.failed == 1 {
            return Seen::FirstFailure(format!(
                "traffic guard: GET {} failed{during}: {why}",
                self.url
            ));
        }
        Seen::Nothing
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
