//! One script run to its end: compile, the header of its record, the script thread, the deferred
//! cleanups, Ctrl-C, then the recap, the journal's end and the error, whatever way it ended.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Engine, EvalAltResult};
use serde_json::{json, Value};

use crate::error::{self, Error, Failure, Kind};
use crate::prims::watch;
use crate::report::render_error;
use crate::run::Run;
use crate::runs::{self, Past};
use crate::{engine, Runner};

/// Run `text` (the script `source`, read from `path`; None for `runner eval`, which prints the
/// script's value).
pub fn execute(
    runner: &Runner,
    source: &str,
    text: &str,
    path: Option<&Path>,
) -> Result<(), Error> {
    let started = Instant::now();
    let run = runner.new_run(source);
    let engine = engine::build(&run);
    let ast = match Runner::compile(&run, &engine, source, text).and_then(|ast| {
        if path.is_some() {
            preflight(&run, &engine, &ast, source, text)?;
        }
        Ok(ast)
    }) {
        Ok(ast) => ast,
        Err(e) => {
            run.report.error(&e.to_string(), json!({"exit_code": 2}));
            return Err(e);
        }
    };
    let resumed = match resume(&run, text) {
        Ok(r) => r,
        Err(e) => {
            run.report
                .error(&format!("error: {e}"), json!({"exit_code": 2}));
            return Err(e);
        }
    };
    if let Some(inv) = &run.config.inventory {
        for w in &inv.warnings {
            run.report.warn(w);
        }
    }
    let header = header(&run, source, text, path, resumed.as_ref());
    run.journal.set_header(header.clone());
    run.report.event(with_event("run_start", header.clone()));
    if let (Some(script), None) = (header["script"].as_str(), &resumed) {
        warn_if_last_run_incomplete(&run, script);
    }
    // `--lock NAME`: the whole run under the lock, taken before the script starts.
    if let Err(f) = take_run_lock(&run) {
        let msg = format!("error: {}", f.message);
        let end = finish(&run, "failed", started, Some(&msg));
        run.report
            .error(&msg, json!({"exit_code": 1, "kind": f.kind.as_str()}));
        run.report.event(with_event("run_end", end));
        return Err(Error::Script(msg));
    }

    if let Err(e) = start_guards(&run) {
        run.release_all();
        let e = Error::Usage(e.message);
        run.report
            .error(&format!("error: {e}"), json!({"exit_code": 2}));
        return Err(e);
    }
    // Listening from here on, before the script starts: a listener registered only when its task
    // first runs would let an early Ctrl-C kill the run without its cleanups.
    let interrupts = {
        let _in_runtime = runner.runtime().enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    };
    let signals = runner
        .runtime()
        .spawn(handle_ctrl_c(run.clone(), interrupts));
    let (result, cleanup_ok) = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("script".into())
            .stack_size(16 << 20)
            .spawn_scoped(s, || {
                // A panic in a primitive is a bug; it still must not skip the cleanups.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine.eval_ast::<Dynamic>(&ast)
                }))
                .unwrap_or_else(|panic| Err(internal_error(panic)));
                let cleanup_ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_defers(&run, &engine, None)
                }))
                .unwrap_or(false);
                // Locks last: the cleanups may need them held.
                let released =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.release_all()));
                (result, cleanup_ok && released.is_ok())
            })
            .expect("a thread for the script")
            .join()
            .expect("the script thread does not panic")
    });
    signals.abort();
    for g in run.guards.lock().unwrap().iter() {
        g.stop();
    }
    run.ssh.close_all();
    let ok = result.is_ok() && cleanup_ok && !run.interrupted();
    run.report.finish_steps(ok);

    // What went wrong, rendered, with its exit code.
    let failure: Option<(String, Value, Error)> = if let Some(why) = run.stopped_by_guard() {
        let at = match &result {
            Err(e) => format!(
                "\n  = it stopped at: {}",
                render_error(e, source, &run.sources)
            ),
            Ok(_) => String::new(),
        };
        let msg = format!("error: {why}{at}\n  = deferred cleanups ran");
        let fields = json!({"exit_code": 1, "kind": "guard"});
        Some((msg.clone(), fields, Error::Script(msg)))
    } else if run.interrupted() {
        let at = match &result {
            Err(e) => render_error(e, source, &run.sources),
            Ok(_) => "error: interrupted".to_string(),
        };
        let msg = format!("{at}\n  = deferred cleanups ran");
        Some((msg, json!({"exit_code": 130}), Error::Interrupted))
    } else {
        match &result {
            Ok(_) if cleanup_ok => None,
            Ok(_) => {
                let msg = "error: a deferred cleanup failed (see the warnings above)".to_string();
                Some((msg.clone(), json!({"exit_code": 1}), Error::Script(msg)))
            }
            Err(e) => {
                let msg = render_error(e, source, &run.sources);
                let fields = json!({"exit_code": 1, "kind": error::error_kind(e)});
                Some((msg.clone(), fields, Error::Script(msg)))
            }
        }
    };
    let outcome = match &failure {
        None => "ok",
        Some((_, _, Error::Interrupted)) => "interrupted",
        Some(_) => "failed",
    };
    let end = finish(
        &run,
        outcome,
        started,
        failure.as_ref().map(|f| f.0.as_str()),
    );
    match failure {
        None => {
            if let (None, Ok(v)) = (path, &result) {
                if !v.is_unit() {
                    run.report.print(&v.to_string());
                }
            }
            run.report.event(with_event("run_end", end));
            Ok(())
        }
        Some((msg, fields, err)) => {
            run.report.error(&msg, fields);
            run.report.event(with_event("run_end", end));
            Err(err)
        }
    }
}

/// What `runner check` finds, refused before anything runs; and a `--param` name that no
/// `param()` of the script reads (a typo would otherwise leave the default in place).
fn preflight(
    run: &Run,
    engine: &Engine,
    ast: &rhai::AST,
    source: &str,
    text: &str,
) -> Result<(), Error> {
    let report = crate::check::check(run, engine, ast, source, text);
    if !report.errors.is_empty() {
        return Err(Error::Compile(format!(
            "{}\n  = the script does not pass `runner check`: nothing was run",
            report.errors.join("\n")
        )));
    }
    if report.dynamic_params {
        return Ok(());
    }
    for name in &run.config.param_flags {
        if report.params.iter().any(|p| p == name) {
            continue;
        }
        let known: Vec<&str> = report.params.iter().map(String::as_str).collect();
        let hint = crate::opts::did_you_mean(name, &known)
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        let reads = if known.is_empty() {
            "it reads no param()".to_string()
        } else {
            format!("it reads: {}", known.join(", "))
        };
        return Err(Error::Compile(format!(
            "error: --param {name}: {source} has no param(\"{name}\"); {hint}{reads}"
        )));
    }
    Ok(())
}

/// `--lock NAME`: take the run's lock (waiting for none), held until the run ends.
fn take_run_lock(run: &Run) -> Result<(), Failure> {
    let Some(name) = &run.config.lock else {
        return Ok(());
    };
    let lock = crate::lock::Lock::local(name)?;
    if let Some(me) = lock.acquire(run, crate::lock::DEFAULT_TTL, std::time::Duration::ZERO)? {
        crate::lock::hold(run, &lock, me);
    }
    Ok(())
}

/// A run of one of runner's own operations rather than a script (`runner unlock`), recorded the
/// same way: the journal's header (`shown` as its script), the effects, the end and the recap.
/// `name` names its journal file.
pub fn execute_native(
    runner: &Runner,
    name: &str,
    shown: &str,
    op: impl FnOnce(&Run) -> Result<(), Failure>,
) -> Result<(), Error> {
    let started = Instant::now();
    let run = runner.new_run(name);
    run.journal
        .set_header(header(&run, shown, shown, None, None));
    let result = op(&run);
    run.ssh.close_all();
    let error = result
        .as_ref()
        .err()
        .map(|f| format!("error: {}", f.message));
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    finish(&run, outcome, started, error.as_deref());
    match result {
        Ok(()) => Ok(()),
        Err(f) => {
            let msg = error.unwrap_or_default();
            run.report
                .error(&msg, json!({"exit_code": 1, "kind": f.kind.as_str()}));
            Err(Error::Script(msg))
        }
    }
}

/// The end of a run: the recap for people, the journal's `run_end` record. Returns its fields.
fn finish(run: &Run, outcome: &str, started: Instant, error: Option<&str>) -> Value {
    let ledger = run.ledger.lock().unwrap();
    let mut end = ledger.to_json();
    end["outcome"] = outcome.into();
    end["duration"] = ((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0).into();
    if let Some(e) = error {
        end["error"] = e.into();
    }
    let totals = ledger.totals();
    let left = runs::describe_left(&ledger.left());
    let mut recap = Vec::new();
    if totals.changed + totals.failed + totals.skipped + totals.unknown > 0 || !left.is_empty() {
        recap = ledger.recap();
    }
    drop(ledger);
    if let Some((figures, lines)) = watch::summary(&run.guards.lock().unwrap()) {
        end["guard"] = figures;
        recap.extend(lines);
    }
    if let Some(why) = run.stopped_by_guard() {
        end["stopped_by"] = why.clone().into();
        recap.push(why);
    }
    if !recap.is_empty() || !left.is_empty() {
        run.report.recap(&recap, &left);
    }
    if run.journal.written() {
        // The end of the record: without it, the journal is of a run that died.
        if let Err(e) = run.write("run_end", end.clone()) {
            run.report.warn(&e.message);
        }
        run.report
            .info(&format!("journal: {}", run.journal.path().display()));
    }
    end
}

/// The guards of `--watch`, for the whole play.
fn start_guards(run: &Arc<Run>) -> Result<(), Failure> {
    for url in &run.config.watch {
        let probe = watch::Probe {
            budget: run.config.max_errors.unwrap_or(watch::Budget::None),
            ..Default::default()
        };
        watch::start(run, url, probe)?;
    }
    Ok(())
}

/// `{"event": name, ...fields}` for `--output json`.
fn with_event(name: &str, fields: Value) -> Value {
    let mut ev = json!({"event": name});
    if let (Value::Object(e), Value::Object(f)) = (&mut ev, fields) {
        e.extend(f);
    }
    ev
}

/// The `run_start` record: what ran, where, by whom, with what.
fn header(
    run: &Run,
    source: &str,
    text: &str,
    path: Option<&Path>,
    resumed: Option<&Past>,
) -> Value {
    use sha2::Digest;
    let script = path.map(|p| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    });
    let params: serde_json::Map<String, Value> = run
        .config
        .params
        .iter()
        .map(|(k, v)| {
            let shown = if secret_name(k) {
                "***".into()
            } else {
                rhai::serde::from_dynamic::<Value>(v).unwrap_or_else(|_| v.to_string().into())
            };
            (k.to_string(), shown)
        })
        .collect();
    json!({
        "script": script.as_deref().unwrap_or(source),
        "sha256": format!("{:x}", sha2::Sha256::digest(text.as_bytes())),
        "params": params,
        "user": user(),
        "host": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
        "dry_run": run.dry_run(),
        "resumed_from": resumed.map(|p| p.path.display().to_string()),
        "shard": run.config.shard.map(|s| s.to_string()),
        "journal": run.journal.path().display().to_string(),
    })
}

/// Whether a parameter's name says its value is a secret (its value is journaled as `***`).
fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["pass", "secret", "token", "credential", "private"]
        .iter()
        .any(|w| n.contains(w))
}

fn user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| nix::unistd::getuid().to_string())
}

/// `--resume JOURNAL`: the run it resumes, refused when that run was of another script (unless
/// `--force`); its checkpoints become this run's, and what it left is said at once.
fn resume(run: &Run, text: &str) -> Result<Option<Past>, Error> {
    use sha2::Digest;
    let Some(path) = &run.config.resume else {
        return Ok(None);
    };
    let past = Past::read(path)?;
    let sha = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
    let theirs = past.header()["sha256"].as_str().unwrap_or_default();
    if theirs != sha && !run.config.force {
        return Err(Error::Usage(format!(
            "--resume {}: that journal is of another script ({}, sha256 {theirs}), or of this one before it changed (sha256 {sha}); pass --force to resume it anyway",
            path.display(),
            past.header()["script"].as_str().unwrap_or("?")
        )));
    }
    let checkpoints = past.checkpoints();
    run.report.info(&format!(
        "resuming {} ({}): {} checkpoint(s) done there are skipped",
        path.display(),
        past.outcome(),
        checkpoints.len()
    ));
    for l in runs::describe_left(&past.ledger().left()) {
        run.report.warn(&format!("the resumed run left {l}"));
    }
    run.resume_from(checkpoints);
    Ok(Some(past))
}

/// The last run of this script did not finish (killed, or the machine went down): say so, with
/// what it left, before this run changes anything.
fn warn_if_last_run_incomplete(run: &Run, script: &str) {
    let Some(past) = runs::last_incomplete(script, run.journal.path()) else {
        return;
    };
    let left = runs::describe_left(&past.ledger().left());
    let what = if left.is_empty() {
        "nothing out of its normal state".to_string()
    } else {
        left.join("; ")
    };
    run.report.warn(&format!(
        "the last run of this script did not finish (journal {}, started {}): it left {what}; `runner journal {}` shows it, `--resume {}` continues it",
        past.path.display(),
        past.header()["time"].as_str().unwrap_or("?"),
        past.path.display(),
        past.path.display()
    ));
}

/// A panic caught from the script thread, as a script error.
fn internal_error(panic: Box<dyn std::any::Any + Send>) -> Box<EvalAltResult> {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown".into());
    Failure::new(
        Kind::Internal,
        "runner",
        format!("internal error (a bug in runner, please report it): {what}"),
    )
    .into()
}

/// Run the deferred closures, last first: every one left (at the end of the run), or those of a
/// scope (`since` its mark). Returns false if any failed (each failure is a warning).
pub fn run_defers(run: &Run, engine: &Engine, since: Option<u64>) -> bool {
    let mut ok = true;
    for (f, store) in run.take_defers(since) {
        if run.interrupted() {
            run.allow_cleanup();
        }
        let ctx = store.create_context(engine);
        if let Err(e) = f.call_within_context::<Dynamic>(&ctx, ()) {
            ok = false;
            run.report.warn(&format!(
                "deferred cleanup failed: {}",
                error::error_message(error::innermost(&e))
            ));
        }
    }
    ok
}

/// First Ctrl-C: stop at the next operation boundary and run the cleanups. Second: exit at once.
async fn handle_ctrl_c(run: Arc<Run>, interrupts: std::io::Result<tokio::signal::unix::Signal>) {
    let Ok(mut interrupts) = interrupts else {
        return;
    };
    if interrupts.recv().await.is_none() {
        return;
    }
    run.report.warn("interrupted: stopping at the next operation, then running deferred cleanups (Ctrl-C again to exit now)");
    run.interrupt();
    if interrupts.recv().await.is_some() {
        run.ssh.close_all();
        std::process::exit(130);
    }
}
