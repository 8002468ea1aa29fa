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
use crate::secrets::Secrets;

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

/// A `defer` closure and where it was registered.
struct Deferred {
    seq: u64,
    thread: std::thread::ThreadId,
    f: FnPtr,
    store: NativeCallContextStore,
}

/// One run: everything a primitive needs besides its arguments.
pub struct Run {
    pub config: Config,
    pub rt: tokio::runtime::Handle,
    pub report: Reporter,
    pub journal: Journal,
    /// Values of `secret(...)`: masked in output, errors and the journal.
    pub secrets: Arc<Secrets>,
    /// What the run changed and left, from its journal records.
    pub ledger: Mutex<Ledger>,
    pub sources: Arc<Sources>,
    /// The run's SSH connections, closed when the run ends.
    pub ssh: crate::prims::ssh::Pool,
    cancel: Mutex<CancellationToken>,
    interrupted: AtomicBool,
    /// Deferred cleanups: (sequence number, the thread that registered it, the closure, its context).
    defers: Mutex<Vec<Deferred>>,
    defer_seq: std::sync::atomic::AtomicU64,
    /// The traffic guards probing while the run works (`watch`, `--watch`).
    pub guards: Mutex<Vec<Arc<crate::guard::Guard>>>,
    /// Why a traffic guard stopped the run, if one did.
    stopped_by_guard: Mutex<Option<String>>,
    /// Checkpoints completed (`once`), by key: in the run this one resumes, and in this run.
    checkpoints: Mutex<HashMap<String, Value>>,
    /// What the run holds (locks), last taken last: given back when the run ends, however it ends.
    holdings: Mutex<Vec<Holding>>,
    http: std::sync::OnceLock<reqwest::Client>,
}

impl Run {
    pub fn new(config: Config, rt: tokio::runtime::Handle, script_name: &str) -> Arc<Run> {
        let secrets = Arc::new(config.secrets());
        let report = Reporter::with_secrets(config.output, config.verbosity, secrets.clone());
        // Each shard of a fleet split with --shard has a journal of its own, named for it.
        let name = match config.shard {
            Some(s) => {
                let stem = std::path::Path::new(script_name)
                    .file_stem()
                    .map_or("eval".into(), |s| s.to_string_lossy());
                format!("{stem}-shard{}of{}", s.index, s.count)
            }
            None => script_name.to_string(),
        };
        let journal = Journal::new(config.journal.clone(), &name, secrets.clone());
        Arc::new(Run {
            config,
            rt,
            report,
            journal,
            secrets,
            ledger: Mutex::default(),
            sources: Arc::default(),
            ssh: Default::default(),
            cancel: Mutex::new(CancellationToken::new()),
            interrupted: AtomicBool::new(false),
            defers: Mutex::default(),
            defer_seq: Default::default(),
            checkpoints: Mutex::default(),
            holdings: Mutex::default(),
            guards: Mutex::default(),
            stopped_by_guard: Mutex::default(),
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

    /// A traffic guard's error budget is spent: stop at the next operation boundary, as Ctrl-C does
    /// (the deferred cleanups run), but as a failure of the run (exit code 1), saying `why`.
    pub fn stop_by_guard(&self, why: String) {
        self.stopped_by_guard.lock().unwrap().get_or_insert(why);
        self.interrupt();
    }

    /// Why a traffic guard stopped the run, if one did.
    pub fn stopped_by_guard(&self) -> Option<String> {
        self.stopped_by_guard.lock().unwrap().clone()
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

    /// `poll`, except under `--dry-run`, where the changes a wait waits for were skipped: the
    /// condition is checked once, and when it does not hold yet the wait is only reported ("would
    /// wait for ...") and None returned, so that a dry run goes on to the end.
    pub fn wait<T>(
        &self,
        target: &str,
        what: &str,
        timeout: Duration,
        interval: Duration,
        mut probe: impl FnMut() -> Result<Result<T, String>, Failure>,
    ) -> Result<Option<T>, Failure> {
        if !self.dry_run() {
            return self.poll(target, what, timeout, interval, probe).map(Some);
        }
        match probe()? {
            Ok(v) => Ok(Some(v)),
            Err(seen) => {
                self.report.would(
                    &format!(
                        "wait for {what} (up to {}; now: {seen})",
                        fmt_secs(timeout.as_secs_f64())
                    ),
                    target,
                );
                Ok(None)
            }
        }
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
        let seq = self.defer_seq.fetch_add(1, Ordering::SeqCst);
        self.defers.lock().unwrap().push(Deferred {
            seq,
            thread: std::thread::current().id(),
            f,
            store: ctx.store_data(),
        });
    }

    /// Where a scope (a `step(msg, || ...)`) begins: the defers registered after it, on this
    /// thread, are that scope's.
    pub fn defer_mark(&self) -> u64 {
        self.defer_seq.load(Ordering::SeqCst)
    }

    /// The deferred closures, last registered first: every one (at the end of the run), or those
    /// this thread registered since `mark` (at the end of a scope).
    pub fn take_defers(&self, since: Option<u64>) -> Vec<(FnPtr, NativeCallContextStore)> {
        let mut all = self.defers.lock().unwrap();
        let me = std::thread::current().id();
        let (mut taken, kept): (Vec<Deferred>, Vec<Deferred>) = std::mem::take(&mut *all)
            .into_iter()
            .partition(|d| since.is_none_or(|m| d.seq >= m && d.thread == me));
        *all = kept;
        taken.sort_by_key(|d| std::cmp::Reverse(d.seq));
        taken.into_iter().map(|d| (d.f, d.store)).collect()
    }

    /// Run `f` (a scope's cleanups) even though the run is interrupted, then interrupted again, so
    /// the script still stops at its next operation.
    pub fn cleaning_up<T>(&self, f: impl FnOnce() -> T) -> T {
        if !self.interrupted() {
            return f();
        }
        self.allow_cleanup();
        let r = f();
        self.cancel.lock().unwrap().cancel();
        r
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
