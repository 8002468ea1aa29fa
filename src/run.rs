//! The state of one run of a playbook, shared by every primitive: the configuration, the tokio runtime,
//! the cancel signal, the reporter, the journal, deferred cleanups. Primitives reach it through the
//! engine's tag (`Run::of(&ctx)`), so they can be plain `#[export_module]` functions with doc comments.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::{Dynamic, FnPtr, NativeCallContext, NativeCallContextStore};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{fmt_secs, Failure, Kind};
use crate::journal::Journal;
use crate::ledger::Ledger;
use crate::report::Reporter;
use crate::resolver::Sources;

thread_local! {
    /// The deadline of the innermost `poll` running on this thread.
    static WAIT_DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// Something a run holds until it gives it back (a lock), by a key that names it.
pub struct Holding {
    pub key: String,
    /// Gives it back; reports its own failure (the run is ending or moving on).
    pub release: Box<dyn FnOnce(&Run) + Send>,
}

/// One run: everything a primitive needs besides its arguments.
pub struct Run {
    pub config: Config,
    pub rt: tokio::runtime::Handle,
    pub report: Reporter,
    pub journal: Journal,
    /// What the run changed and left, from its journal records.
    pub ledger: Mutex<Ledger>,
    pub sources: Arc<Sources>,
    /// The run's SSH connections, closed when the run ends.
    pub ssh: crate::prims::ssh::Pool,
    cancel: Mutex<CancellationToken>,
    interrupted: AtomicBool,
    defers: Mutex<Vec<(FnPtr, NativeCallContextStore)>>,
    /// Checkpoints completed (`once`), by key: in the run this one resumes, and in this run.
    checkpoints: Mutex<HashMap<String, Value>>,
    /// What the run holds (locks), last taken last: given back when the run ends, however it ends.
    holdings: Mutex<Vec<Holding>>,
    http: std::sync::OnceLock<reqwest::Client>,
}

impl Run {
    pub fn new(config: Config, rt: tokio::runtime::Handle, script_name: &str) -> Arc<Run> {
        let report = Reporter::new(config.output, config.verbosity);
        let journal = Journal::new(config.journal.clone(), script_name);
        Arc::new(Run {
            config,
            rt,
            report,
            journal,
            ledger: Mutex::default(),
            sources: Arc::default(),
            ssh: Default::default(),
            cancel: Mutex::new(CancellationToken::new()),
            interrupted: AtomicBool::new(false),
            defers: Mutex::default(),
            checkpoints: Mutex::default(),
            holdings: Mutex::default(),
            http: Default::default(),
        })
    }

    /// The run a script function is called in.
    pub fn of(ctx: &NativeCallContext) -> Arc<Run> {
        ctx.tag()
            .and_then(|t| t.read_lock::<Arc<Run>>().map(|r| r.clone()))
            .expect("the runner engine always carries its Run as the tag")
    }

    pub fn dry_run(&self) -> bool {
        self.config.dry_run
    }

    /// Ctrl-C: every blocked operation returns at once and the script stops at the next boundary.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.cancel.lock().unwrap().cancel();
    }

    pub fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Whether operations must stop now (interrupted, and not yet running the cleanups).
    pub fn cancelled(&self) -> bool {
        self.cancel.lock().unwrap().is_cancelled()
    }

    /// After an interruption, let the deferred cleanups run their operations (a second Ctrl-C exits).
    pub fn allow_cleanup(&self) {
        *self.cancel.lock().unwrap() = CancellationToken::new();
    }

    pub fn check_cancel(&self, target: &str) -> Result<(), Failure> {
        if self.cancelled() {
            Err(Failure::interrupted(target))
        } else {
            Ok(())
        }
    }

    /// The one bridge from a script function into async code: runs `fut` on the run's runtime,
    /// gives up after `timeout` (naming `target` and `what`), and returns at once on Ctrl-C.
    pub fn block_on<T>(
        &self,
        target: &str,
        what: &str,
        timeout: Option<Duration>,
        fut: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let token = self.cancel.lock().unwrap().clone();
        if token.is_cancelled() {
            return Err(Failure::interrupted(target));
        }
        // Inside a wait (`poll`), an operation gets at most the time the wait has left; cut short by
        // it, it fails with kind "deadline", which the wait turns into its own timeout.
        let (timeout, by_wait) = match WAIT_DEADLINE.get() {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match timeout {
                    Some(t) if t <= left => (Some(t), false),
                    _ => (Some(left), true),
                }
            }
            None => (timeout, false),
        };
        self.rt.block_on(async {
            let limited = async {
                match timeout {
                    Some(t) => tokio::time::timeout(t, fut)
                        .await
                        .unwrap_or_else(|_| {
                        Err(if by_wait {
                            Failure::new(Kind::Deadline, target, format!("{target}: {what} cut short: the wait around it ran out of time"))
                        } else {
                            Failure::timeout(target, what, t.as_secs_f64())
                        })
                    }),
                    None => fut.await,
                }
            };
            tokio::select! {
                r = limited => r,
                _ = token.cancelled() => Err(Failure::interrupted(target)),
            }
        })
    }

    /// Sleep, interruptible by Ctrl-C.
    pub fn sleep(&self, d: Duration) -> Result<(), Failure> {
        self.block_on("sleep", "sleep", None, async {
            tokio::time::sleep(d).await;
            Ok(())
        })
    }

    /// Poll `probe` every `interval` until it returns Ok(Ok(value)), or fail after `timeout` with the
    /// description of the last observation (`probe` returns Ok(Err(observation)) while waiting).
    /// Operations inside `probe` get at most the time left (see `block_on`); a probe that treats
    /// errors as observations must pass kind "deadline" (and "interrupted") through as errors.
    pub fn poll<T>(
        &self,
        target: &str,
        what: &str,
        timeout: Duration,
        interval: Duration,
        mut probe: impl FnMut() -> Result<Result<T, String>, Failure>,
    ) -> Result<T, Failure> {
        let deadline = std::time::Instant::now() + timeout;
        let mut last = String::from("nothing yet");
        loop {
            // Probes run under the wait's deadline (see block_on); an outer wait's deadline stays
            // if it is earlier.
            let outer = WAIT_DEADLINE.get();
            WAIT_DEADLINE.set(Some(outer.map_or(deadline, |o| o.min(deadline))));
            let observed = probe();
            WAIT_DEADLINE.set(outer);
            match observed {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(seen)) => last = seen,
                // A probe cut short by this wait's deadline: the wait itself timed out.
                Err(e) if e.kind == Kind::Deadline && std::time::Instant::now() >= deadline => {}
                Err(e) => return Err(e),
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(Failure::new(
                    Kind::Timeout,
                    target,
                    format!(
                        "{target}: {what}: still not done after {}; last seen: {last}",
                        fmt_secs(timeout.as_secs_f64())
                    ),
                ));
            }
            self.sleep(interval.min(deadline - now))?;
        }
    }

    /// Take over the checkpoints of a resumed run.
    pub fn resume_from(&self, checkpoints: HashMap<String, Value>) {
        self.checkpoints.lock().unwrap().extend(checkpoints);
    }

    /// The recorded value of checkpoint `key`, if it was completed (here or in the resumed run).
    pub fn checkpoint(&self, key: &str) -> Option<Value> {
        self.checkpoints.lock().unwrap().get(key).cloned()
    }

    /// Checkpoint `key` completed with `value`: recorded in the journal (not under `--dry-run`,
    /// where nothing was really done).
    pub fn complete(&self, key: &str, value: Value) -> Result<(), Failure> {
        self.checkpoints
            .lock()
            .unwrap()
            .insert(key.to_string(), value.clone());
        if self.dry_run() {
            return Ok(());
        }
        self.write("once", serde_json::json!({"key": key, "value": value}))
    }

    pub fn defer(&self, f: FnPtr, ctx: &NativeCallContext) {
        self.defers.lock().unwrap().push((f, ctx.store_data()));
    }

    /// The deferred closures, last registered first.
    pub fn take_defers(&self) -> Vec<(FnPtr, NativeCallContextStore)> {
        let mut d = std::mem::take(&mut *self.defers.lock().unwrap());
        d.reverse();
        d
    }

    /// Hold `key` until `release` or the end of the run (`release_all`).
    pub fn hold(&self, key: &str, release: impl FnOnce(&Run) + Send + 'static) {
        self.holdings.lock().unwrap().push(Holding {
            key: key.to_string(),
            release: Box::new(release),
        });
    }

    /// Whether the run holds `key`.
    pub fn holds(&self, key: &str) -> bool {
        self.holdings.lock().unwrap().iter().any(|h| h.key == key)
    }

    /// Give `key` back now, if the run holds it.
    pub fn release(&self, key: &str) {
        let holding = {
            let mut held = self.holdings.lock().unwrap();
            let i = held.iter().rposition(|h| h.key == key);
            i.map(|i| held.remove(i))
        };
        if let Some(h) = holding {
            (h.release)(self);
        }
    }

    /// Give back everything still held, last taken first: at the end of the run, after the
    /// deferred cleanups (which may need what is held), also after Ctrl-C.
    pub fn release_all(&self) {
        loop {
            let Some(h) = self.holdings.lock().unwrap().pop() else {
                return;
            };
            if self.interrupted() {
                self.allow_cleanup();
            }
            (h.release)(self);
        }
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(5))
                // A fresh connection per request: a health check must reach whichever process
                // accepts now, and an idle keep-alive connection to a worker that is shutting down
                // (nginx after WINCH/QUIT) fails the request that reuses it.
                .pool_max_idle_per_host(0)
                .build()
                .expect("an HTTP client with default TLS settings")
        })
    }
}

/// A Rhai value for the run, carried as the engine's tag.
pub fn tag(run: &Arc<Run>) -> Dynamic {
    Dynamic::from(run.clone())
}
