//! Flow and output: parameters, environment, sleeping, retrying, waiting, fan-out, steps, confirmation
//! and deferred cleanup.

use rhai::plugin::*;

/// Call a condition closure that must return a bool.
fn f_bool(
    ctx: &rhai::NativeCallContext,
    f: &rhai::FnPtr,
) -> Result<bool, Box<rhai::EvalAltResult>> {
    let v = f.call_within_context::<rhai::Dynamic>(ctx, ())?;
    v.as_bool().map_err(|t| {
        crate::error::Failure::usage(
            "wait_until",
            format!("wait_until: the condition must return true or false, not {t}"),
        )
        .into()
    })
}

/// A copy of `v` that shares no lock with the original: captured variables of a closure are shared
/// values, and Rhai refuses (data race) to call a method on one that another thread is using. Each
/// `parallel` thread gets its own copies; handles hold their connections behind an `Arc`, so the
/// copies still share them. Nested closures, arrays and maps are copied the same way.
fn unshare(v: &rhai::Dynamic, depth: usize) -> rhai::Dynamic {
    let v = v.flatten_clone();
    if depth == 0 {
        return v;
    }
    if let Some(f) = v.read_lock::<rhai::FnPtr>().map(|f| f.clone()) {
        let mut f = f;
        let curry: Vec<rhai::Dynamic> = f.curry().iter().map(|c| unshare(c, depth - 1)).collect();
        f.set_curry(curry);
        return rhai::Dynamic::from(f);
    }
    if let Some(a) = v.read_lock::<rhai::Array>().map(|a| {
        a.iter()
            .map(|x| unshare(x, depth - 1))
            .collect::<rhai::Array>()
    }) {
        return rhai::Dynamic::from_array(a);
    }
    if let Some(m) = v.read_lock::<rhai::Map>().map(|m| {
        m.iter()
            .map(|(k, x)| (k.clone(), unshare(x, depth - 1)))
            .collect::<rhai::Map>()
    }) {
        return rhai::Dynamic::from_map(m);
    }
    v
}

/// `step(message, || ...)`: `f` as a step; the `defer`s it registers run when it ends (done,
/// failed or interrupted), and a failed cleanup fails the step.
fn scoped_step(
    ctx: &rhai::NativeCallContext,
    message: &str,
    target: Option<&str>,
    f: &rhai::FnPtr,
) -> Result<rhai::Dynamic, Box<rhai::EvalAltResult>> {
    let run = crate::run::Run::of(ctx);
    let mark = run.defer_mark();
    run.report.begin_scoped_step(message, target);
    let r = f.call_within_context::<rhai::Dynamic>(ctx, ());
    let cleaned = run.cleaning_up(|| crate::script::run_defers(&run, ctx.engine(), Some(mark)));
    run.report.end_scoped_step(r.is_ok() && cleaned);
    match r {
        Ok(_) if !cleaned => Err(crate::error::Failure::new(
            crate::error::Kind::Script,
            "step",
            format!("step `{message}`: a deferred cleanup failed (see the warnings above)"),
        )
        .into()),
        r => r,
    }
}

/// How an item is named in messages: a host by its name, anything else as printed.
fn label(item: &rhai::Dynamic) -> String {
    match item.read_lock::<crate::prims::host::Host>() {
        Some(h) => h.name().to_string(),
        None => item.to_string(),
    }
}

#[export_module]
pub mod flow_api {
    use std::io::{BufRead, IsTerminal, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use rhai::{Array, Dynamic, EvalAltResult, FnPtr, NativeCallContext, INT};

    use crate::error::{error_message, fmt_secs, Failure, Kind};
    use crate::opts::{seconds, Opts};
    use crate::run::Run;

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// The value of `--param name=...` (or of `--params FILE.toml`). A missing parameter is an error.
    ///
    /// ```rhai
    /// let backend = param("backend");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn param(ctx: NativeCallContext, name: &str) -> Res<Dynamic> {
        let run = Run::of(&ctx);
        run.config.params.get(name).cloned().ok_or_else(|| {
            Failure::usage(format!("param {name}"), format!("missing parameter `{name}`: pass it with --param {name}=VALUE or --params FILE.toml")).into()
        })
    }

    /// The value of a parameter, or `default` when it is not given. When `default` is a number or a
    /// bool, a value from `--param` is converted to that type (an unconvertible value is an error).
    ///
    /// ```rhai
    /// let timeout = param("drain_timeout", 60);
    /// ```
    #[rhai_fn(name = "param", return_raw)]
    pub fn param_or(ctx: NativeCallContext, name: &str, default: Dynamic) -> Res<Dynamic> {
        let run = Run::of(&ctx);
        let Some(v) = run.config.params.get(name).cloned() else {
            return Ok(default);
        };
        let Some(s) = v
            .read_lock::<rhai::ImmutableString>()
            .map(|s| s.trim().to_string())
        else {
            return Ok(v);
        };
        let bad = |ty: &str| -> Box<EvalAltResult> {
            Failure::usage(
                format!("param {name}"),
                format!("parameter `{name}` must be {ty}, not \"{s}\""),
            )
            .into()
        };
        if default.is_int() {
            s.parse::<INT>()
                .map(Dynamic::from)
                .map_err(|_| bad("an integer"))
        } else if default.is_float() {
            s.parse::<f64>()
                .map(Dynamic::from)
                .map_err(|_| bad("a number"))
        } else if default.is_bool() {
            s.parse::<bool>()
                .map(Dynamic::from)
                .map_err(|_| bad("true or false"))
        } else {
            Ok(v)
        }
    }

    /// The environment variable `name`; an error when it is not set.
    #[rhai_fn(return_raw)]
    pub fn env(name: &str) -> Res<String> {
        std::env::var(name).map_err(|_| {
            Failure::usage(
                format!("env {name}"),
                format!("environment variable {name} is not set"),
            )
            .into()
        })
    }

    /// The environment variable `name`, or `default` when it is not set.
    #[rhai_fn(name = "env")]
    pub fn env_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_string())
    }

    /// A secret from the environment variable `name`: its value is masked as `***` wherever runner
    /// shows or records it (command lines under `-v`, errors, the journal, JSON events, `print`),
    /// wherever it is embedded; the script itself gets the real value. Unset: an error.
    ///
    /// ```rhai
    /// let token = secret("DEPLOY_TOKEN");
    /// http_get(url, #{headers: #{Authorization: `Bearer ${token}`}});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn secret(ctx: NativeCallContext, name: &str) -> Res<String> {
        secret_with(ctx, name, rhai::Map::new())
    }

    /// `secret` with options: `file` (read the value from this file instead, e.g. a mounted secret;
    /// a trailing newline is dropped; `name` then only names it in messages).
    ///
    /// ```rhai
    /// let pw = secret("db", #{file: "/run/secrets/db_password"});
    /// ```
    #[rhai_fn(name = "secret", return_raw)]
    pub fn secret_with(ctx: NativeCallContext, name: &str, options: rhai::Map) -> Res<String> {
        let run = Run::of(&ctx);
        let target = format!("secret {name}");
        let o = Opts::new(options, &["file"], &target)?;
        let value = match o.string("file")? {
            Some(file) => std::fs::read_to_string(&file)
                .map(|s| s.strip_suffix('\n').unwrap_or(&s).to_string())
                .map_err(|e| {
                    Failure::new(
                        Kind::NotFound,
                        &target,
                        format!("secret {name}: cannot read {file}: {e}"),
                    )
                })?,
            None => std::env::var(name).map_err(|_| {
                Failure::usage(
                    &target,
                    format!("secret {name}: the environment variable {name} is not set (export it, or read the secret from a file with #{{file: PATH}})"),
                )
            })?,
        };
        if value.is_empty() {
            return Err(Failure::usage(&target, format!("secret {name} is empty")).into());
        }
        run.secrets.add(&value);
        Ok(value)
    }

    /// Sleep for `seconds`. Ctrl-C interrupts it. (Replaces Rhai's built-in `sleep`, which cannot be
    /// interrupted.)
    ///
    /// ```rhai
    /// sleep(0.5);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sleep(ctx: NativeCallContext, seconds: rhai::FLOAT) -> Res<()> {
        let d = crate::opts::seconds(&Dynamic::from(seconds), "sleep", "the duration")?;
        Ok(Run::of(&ctx).sleep(d)?)
    }

    /// Sleep for a whole number of seconds. Ctrl-C interrupts it.
    #[rhai_fn(name = "sleep", return_raw)]
    pub fn sleep_int(ctx: NativeCallContext, seconds: INT) -> Res<()> {
        sleep(ctx, seconds as rhai::FLOAT)
    }

    /// Call `f` until it succeeds, at most `times` times, sleeping `delay` seconds between attempts.
    /// Returns the closure's value; after the last failed attempt, throws its error.
    ///
    /// ```rhai
    /// let page = retry(5, 1, || http_get("http://127.0.0.1:8080/"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn retry(ctx: NativeCallContext, times: INT, delay: Dynamic, f: FnPtr) -> Res<Dynamic> {
        let run = Run::of(&ctx);
        let delay = seconds(&delay, "retry", "the delay")?;
        if times < 1 {
            return Err(Failure::usage(
                "retry",
                format!("retry: times must be at least 1, not {times}"),
            )
            .into());
        }
        let mut attempt = 1;
        loop {
            match f.call_within_context::<Dynamic>(&ctx, ()) {
                Ok(v) => return Ok(v),
                Err(e) if attempt >= times || run.cancelled() => return Err(e),
                Err(e) => {
                    run.report.warn(&format!(
                        "attempt {attempt}/{times} failed: {}; retrying in {}",
                        error_message(crate::error::innermost(&e)),
                        fmt_secs(delay.as_secs_f64())
                    ));
                    run.sleep(delay)?;
                    attempt += 1;
                }
            }
        }
    }

    /// Call `condition` every 0.2 s until it returns true; throw after `timeout` seconds.
    ///
    /// ```rhai
    /// wait_until(30, || local().exists("/tmp/ready"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_until(ctx: NativeCallContext, timeout: Dynamic, condition: FnPtr) -> Res<()> {
        wait_until_with(ctx, timeout, condition, rhai::Map::new())
    }

    /// `wait_until` with options: `interval` (seconds between checks, default 0.2), `what` (the text
    /// of the timeout message). Under `--dry-run` the condition is checked once; if it does not hold
    /// yet, the wait is reported ("would wait for ...") instead of waited for.
    #[rhai_fn(name = "wait_until", return_raw)]
    pub fn wait_until_with(
        ctx: NativeCallContext,
        timeout: Dynamic,
        condition: FnPtr,
        options: rhai::Map,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let opts = Opts::new(options, &["interval", "what"], "wait_until")?;
        let timeout = seconds(&timeout, "wait_until", "the timeout")?;
        let interval = opts.secs("interval")?.unwrap_or(Duration::from_millis(200));
        let what = opts.string("what")?.unwrap_or_else(|| "condition".into());
        let mut failure: Option<Box<EvalAltResult>> = None;
        let r = run.wait(
            "wait_until",
            &what,
            timeout,
            interval,
            || match super::f_bool(&ctx, &condition) {
                Ok(true) => Ok(Ok(())),
                Ok(false) => Ok(Err("false".into())),
                // An operation of the condition cut short by this wait's deadline: the wait timed out.
                Err(e) if crate::error::error_kind(&e).as_deref() == Some("deadline") => {
                    Err(Failure::new(Kind::Deadline, "wait_until", ""))
                }
                Err(e) => {
                    failure = Some(e);
                    Err(Failure::new(Kind::Script, "wait_until", ""))
                }
            },
        );
        match (r, failure) {
            (_, Some(e)) => Err(e),
            (r, None) => r.map(drop).map_err(Into::into),
        }
    }

    /// Call `f(item)` for every item, at most `limit` at a time, each on its own thread. Returns the
    /// results in input order. When an item fails, no new item starts; once the running ones have
    /// finished, the call throws naming every failed item.
    ///
    /// Each call gets its own copy of the variables the closure captures (handles still share their
    /// connections): return results rather than changing a captured variable.
    ///
    /// ```rhai
    /// let codes = parallel(hosts("web"), 5, |h| h.run("systemctl is-active nginx").stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parallel(ctx: NativeCallContext, items: Array, limit: INT, f: FnPtr) -> Res<Array> {
        let run = Run::of(&ctx);
        if limit < 1 {
            return Err(Failure::usage(
                "parallel",
                format!("parallel: limit must be at least 1, not {limit}"),
            )
            .into());
        }
        let n = items.len();
        let workers = (limit as usize).min(n);
        let store = ctx.store_data();
        let engine = ctx.engine();
        let mut f = f;
        let captured: Vec<Dynamic> = f.curry().iter().map(|c| super::unshare(c, 8)).collect();
        f.set_curry(captured);
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Vec<Mutex<Option<Res<Dynamic>>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let report = &run.report;
        if n > 0 {
            report.begin_progress(
                &format!("parallel over {n} item(s), {workers} at a time"),
                n,
            );
        }
        std::thread::scope(|s| {
            for _ in 0..workers {
                let (store, next, failed, results, items, f) =
                    (&store, &next, &failed, &results, &items, &f);
                std::thread::Builder::new()
                    .stack_size(8 << 20)
                    .spawn_scoped(s, move || loop {
                        if failed.load(Ordering::SeqCst) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        let c = store.create_context(engine);
                        let label = super::label(&items[i]);
                        report.progress(&label, None);
                        let r = report.in_lane(&label, || {
                            f.call_within_context::<Dynamic>(&c, (items[i].clone(),))
                        });
                        report.progress(&label, Some(r.is_ok()));
                        if r.is_err() {
                            failed.store(true, Ordering::SeqCst);
                        }
                        *results[i].lock().unwrap() = Some(r);
                    })
                    .expect("a thread for parallel");
            }
        });
        let mut out = Array::with_capacity(n);
        let mut errors = Vec::new();
        for (i, r) in results.into_iter().enumerate() {
            match r.into_inner().unwrap() {
                Some(Ok(v)) => out.push(v),
                Some(Err(e)) => errors.push(format!(
                    "{}: {}",
                    super::label(&items[i]),
                    error_message(crate::error::innermost(&e))
                )),
                None => {}
            }
        }
        if n > 0 {
            report.end_scoped_step(errors.is_empty() && !run.interrupted());
        }
        if run.interrupted() {
            return Err(Failure::interrupted("parallel").into());
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            let skipped = n - out.len() - errors.len();
            let mut msg = format!(
                "parallel: {} of {n} item(s) failed: {}",
                errors.len(),
                errors.join("; ")
            );
            if skipped > 0 {
                msg.push_str(&format!(" ({skipped} not started after the failure)"));
            }
            Err(Failure::new(Kind::Parallel, "parallel", msg).into())
        }
    }

    /// Start a step: a progress line (a spinner on a TTY) that shows its elapsed time when the next
    /// step starts or the script ends.
    ///
    /// ```rhai
    /// step("Draining web1");
    /// ```
    pub fn step(ctx: NativeCallContext, message: &str) {
        Run::of(&ctx).report.step(message, None);
    }

    /// Start a step about `target` (a server, a host: what JSON events and the journal name).
    ///
    /// ```rhai
    /// step("Draining", "web_servers/web1");
    /// ```
    #[rhai_fn(name = "step")]
    pub fn step_on(ctx: NativeCallContext, message: &str, target: &str) {
        Run::of(&ctx).report.step(message, Some(target));
    }

    /// Run `f` as a step: steps started inside it nest under it; it ends when `f` returns, marked
    /// failed if `f` throws. Returns `f`'s value.
    ///
    /// ```rhai
    /// for s in servers { step(`Upgrading ${s}`, || { step("drain"); /* ... */ }); }
    /// ```
    #[rhai_fn(name = "step", return_raw)]
    pub fn step_with(ctx: NativeCallContext, message: &str, f: FnPtr) -> Res<Dynamic> {
        super::scoped_step(&ctx, message, None, &f)
    }

    /// `step(message, || ...)` about `target`.
    ///
    /// ```rhai
    /// step("Upgrading", "web_servers/web1", || { /* ... */ });
    /// ```
    #[rhai_fn(name = "step", return_raw)]
    pub fn step_on_with(
        ctx: NativeCallContext,
        message: &str,
        target: &str,
        f: FnPtr,
    ) -> Res<Dynamic> {
        super::scoped_step(&ctx, message, Some(target), &f)
    }

    /// A checkpoint: run `f` once and return its value. Under `--resume JOURNAL`, a `key` that
    /// was completed in that journal's run returns the value recorded there without running `f`
    /// again; a key completed earlier in this run does the same. A completion is recorded (in the
    /// journal) only when `f` returns; a failure in `f` is thrown as it is and records nothing.
    /// The value is kept as JSON: numbers, strings, bools, arrays and maps come back as they were;
    /// handles (hosts, sockets) come back as `()`.
    ///
    /// ```rhai
    /// for s in servers { once(`upgrade ${s}`, || upgrade(s)); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn once(ctx: NativeCallContext, key: &str, f: FnPtr) -> Res<Dynamic> {
        let run = Run::of(&ctx);
        if let Some(v) = run.checkpoint(key) {
            run.report
                .info(&format!("{key}: done already (checkpoint), skipped"));
            return Ok(rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT));
        }
        let v = f.call_within_context::<Dynamic>(&ctx, ())?;
        let recorded =
            rhai::serde::from_dynamic::<serde_json::Value>(&v).unwrap_or(serde_json::Value::Null);
        run.complete(key, recorded)?;
        Ok(v)
    }

    /// Whether this is a `--dry-run`: playbooks use it to skip waits that only make sense when the
    /// changes before them really happened.
    ///
    /// ```rhai
    /// lb.drain(s);
    /// if !dry_run() { lb.wait_drained(s, 60) }
    /// ```
    pub fn dry_run(ctx: NativeCallContext) -> bool {
        Run::of(&ctx).dry_run()
    }

    /// Print an informational line (hidden by `-q`).
    pub fn info(ctx: NativeCallContext, message: &str) {
        Run::of(&ctx).report.info(message);
    }

    /// Print a warning.
    pub fn warn(ctx: NativeCallContext, message: &str) {
        Run::of(&ctx).report.warn(message);
    }

    /// Whether the caught error `e` is an interruption: the run was interrupted (`kind`
    /// "interrupted": Ctrl-C), or the wait around the operation ran out of time (`kind` "deadline").
    /// A `catch` that treats errors as a failed attempt must throw these on, or Ctrl-C and the
    /// wait's own timeout would be swallowed.
    ///
    /// ```rhai
    /// wait_until(30, || { try { http_get(url).status == 200 } catch (e) { if is_interruption(e) { throw e; } false } });
    /// ```
    pub fn is_interruption(e: Dynamic) -> bool {
        let kind = match e.read_lock::<rhai::Map>() {
            Some(m) => m.get("kind").map(|k| k.to_string()),
            None => e
                .read_lock::<rhai::ImmutableString>()
                .map(|s| s.to_string()),
        };
        kind.as_deref()
            .and_then(crate::error::Kind::parse)
            .is_some_and(crate::error::Kind::is_interruption)
    }

    /// Stop the script with an error (`kind` "fail"), catchable with `try`/`catch`.
    #[rhai_fn(return_raw)]
    pub fn fail(message: &str) -> Res<()> {
        Err(Failure::new(Kind::Fail, "script", message).into())
    }

    /// Ask a yes/no question on the terminal. `--yes` answers yes; with no terminal and no `--yes` it
    /// is an error (a playbook in CI must not hang waiting for input). Under `--dry-run` it answers
    /// yes. Answered no, it stops the run (`kind` "refused"): nothing after it runs, and the deferred
    /// cleanups run. Returns true when answered yes.
    ///
    /// ```rhai
    /// confirm(`Upgrade ${servers.len()} servers?`);   // "no" stops here
    /// ```
    #[rhai_fn(return_raw)]
    pub fn confirm(ctx: NativeCallContext, question: &str) -> Res<bool> {
        confirm_with(ctx, question, rhai::Map::new())
    }

    /// `confirm` with options: `stop` (default true; false: a "no" returns false instead of
    /// stopping the run).
    ///
    /// ```rhai
    /// if confirm("Also restart the workers?", #{stop: false}) { restart_workers() }
    /// ```
    #[rhai_fn(name = "confirm", return_raw)]
    pub fn confirm_with(ctx: NativeCallContext, question: &str, options: rhai::Map) -> Res<bool> {
        let run = Run::of(&ctx);
        let stop = Opts::new(options, &["stop"], "confirm")?.bool("stop", true)?;
        if run.config.yes {
            run.report.info(&format!("{question} yes (--yes)"));
            return Ok(true);
        }
        if run.dry_run() {
            run.report.info(&format!("{question} yes (dry run)"));
            return Ok(true);
        }
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                Kind::Confirm,
                "confirm",
                format!("confirm: \"{question}\" needs an answer, but standard input is not a terminal; pass --yes to answer yes"),
            )
            .into());
        }
        eprint!("{question} [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Failure::new(Kind::Confirm, "confirm", format!("confirm: {e}")))?;
        let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
        if !yes && stop {
            return Err(Failure::new(
                Kind::Refused,
                "confirm",
                format!("confirm: \"{question}\" was answered no: stopped here"),
            )
            .into());
        }
        Ok(yes)
    }

    /// Run `f` when the script ends: normally, on an error, or on Ctrl-C. Deferred closures run last
    /// registered first; an error in one is reported and makes the run fail, but the others still run.
    ///
    /// ```rhai
    /// lb.disable("be/web1");
    /// defer(|| lb.enable("be/web1"));
    /// ```
    pub fn defer(ctx: NativeCallContext, f: FnPtr) {
        Run::of(&ctx).defer(f, &ctx);
    }
}
