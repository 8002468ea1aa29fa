//! `lock(name, #{host, ttl, wait}, || ...)`: the script function of locks (`crate::lock`).

use rhai::plugin::*;

/// The options of `lock`.
pub const LOCK_KEYS: &[&str] = &["host", "ttl", "wait"];

#[export_module]
pub mod lock_api {
    use rhai::{Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext};

    use crate::error::Failure;
    use crate::lock::{holding, Lock, DEFAULT_TTL};
    use crate::opts::Opts;
    use crate::prims::host::Host;
    use crate::run::Run;

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// Run `f` holding the lock `name` on this machine, and release it when `f` returns or fails
    /// (also on Ctrl-C, after the deferred cleanups). Returns `f`'s value. Another run holding
    /// it makes this fail at once with kind "locked", naming its owner (pid, user, host, script,
    /// since).
    ///
    /// ```rhai
    /// lock("deploy-web", || rolling::upgrade(lb, "web", servers, #{}, redeploy));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn lock(ctx: NativeCallContext, name: &str, f: FnPtr) -> Res<Dynamic> {
        lock_with(ctx, name, Map::new(), f)
    }

    /// `lock` with options: `host` (a host handle: the lock lives on that host, in
    /// `/tmp/runner-locks/`, shared by every user and control machine that reaches it; without
    /// it, in `$XDG_STATE_HOME/runner/locks/` on this machine, this user's), `wait` (seconds to
    /// wait for another run to release it, default 0), `ttl` (seconds, default 3600: past it, the
    /// lock is reported as stale; it is still never broken silently).
    ///
    /// A lock is stale when its ttl has passed or its owner ran on this machine and is gone (a
    /// killed run): it is reported, with why, and refused; `runner unlock NAME [--host H]` breaks
    /// it. A run started with `--resume JOURNAL` takes over the locks of the run it resumes once
    /// that run's process is gone. Taking and releasing are effects (journaled); under `--dry-run`
    /// the lock is only looked at: "would take lock X (free)" or "(held by ...)". A lock the run
    /// holds already is not taken again.
    ///
    /// ```rhai
    /// let lb_host = ssh("lb1");
    /// lock("web_servers", #{host: lb_host, ttl: 600, wait: 30}, || { /* ... */ });
    /// ```
    #[rhai_fn(name = "lock", return_raw)]
    pub fn lock_with(ctx: NativeCallContext, name: &str, options: Map, f: FnPtr) -> Res<Dynamic> {
        let run = Run::of(&ctx);
        let label = format!("lock {name:?}");
        let o = Opts::new(options, LOCK_KEYS, &label)?;
        let lock = match o.get("host") {
            None => Lock::local(name)?,
            Some(h) => match h.clone().try_cast::<Host>() {
                Some(h) => Lock::on(h, name)?,
                None => {
                    return Err(Failure::usage(
                        &label,
                        format!(
                            "{label}: option `host` must be a host handle (ssh(...), local(), hosts(...)[i]), not {}",
                            h.type_name()
                        ),
                    )
                    .into())
                }
            },
        };
        let ttl = o.secs("ttl")?.unwrap_or(DEFAULT_TTL);
        let wait = o.secs("wait")?.unwrap_or_default();
        holding(&run, &lock, ttl, wait, || {
            f.call_within_context::<Dynamic>(&ctx, ())
        })
    }
}
