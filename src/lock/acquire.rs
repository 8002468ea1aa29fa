//! Taking a lock for a run: looked at, waited for while another run holds it (`Run::poll`), a
//! stale one reported and refused, the one of a resumed run taken over; and holding it around a
//! closure.

use std::time::Duration;

use super::folder::{resumes, Lock};
use super::owner::{Found, Owner, Stale};
use crate::error::{Failure, Kind};
use crate::run::Run;

/// How long a lock is taken for unless `ttl` says otherwise: past it, the lock is reported as
/// stale (and still not broken: a run that takes longer keeps it).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Time between two looks at a held lock while waiting for it.
const POLL: Duration = Duration::from_millis(250);
/// A lock folder without an owner file is being taken; after this many seconds, its taker died in
/// between.
const TAKING_SECS: u64 = 10;

impl Lock {
    /// Take the lock for `run`, waiting up to `wait` while another run holds it. Returns this
    /// run's owner record, or None under `--dry-run` (the lock is only looked at).
    pub fn acquire(
        &self,
        run: &Run,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Owner>, Failure> {
        let me = Owner::of(run, &self.name, ttl);
        if run.dry_run() {
            let state = match self.inspect(run)? {
                Found::Free => "free".to_string(),
                Found::Held(o) if resumes(run, &o) && o.gone() == Some(true) => format!(
                    "held by pid {}, the run this one resumes, gone: a real run would take it over",
                    o.pid
                ),
                Found::Held(o) => format!(
                    "held by pid {}, user {} on {}, since {}{}: a real run would stop here",
                    o.pid,
                    o.user,
                    o.host,
                    o.since_shown(),
                    o.stale_reason()
                        .map(|why| format!(", stale: {why}"))
                        .unwrap_or_default()
                ),
                found => format!("{}: a real run would stop here", self.describe(&found)),
            };
            self.change(
                run,
                &format!("take {} ({state})", self.shown()),
                Vec::new(),
                |_| Ok(()),
            )?;
            return Ok(None);
        }
        let deadline = std::time::Instant::now() + wait;
        let mut watch = Watch {
            waiting: !wait.is_zero(),
            ..Watch::default()
        };
        let mut took_over = false;
        loop {
            // Looked at first (a read), and waited for while held; taken (a journaled change) only
            // when seen free, outside the wait's deadline: a take cut short could leave a folder
            // without its owner file.
            let found = self.inspect(run)?;
            if let Found::Held(old) = &found {
                if !took_over && resumes(run, old) && old.gone() == Some(true) {
                    took_over = true;
                    match self.take_over(run, old, &me) {
                        Ok(()) => {
                            run.report.info(&format!(
                                "took over {} from the run this one resumes (pid {}, gone)",
                                self.shown(),
                                old.pid
                            ));
                            return Ok(Some(me));
                        }
                        // Broken or taken meanwhile: looked at again.
                        Err(e) if e.kind == Kind::Locked => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            if let Err(seen) = watch.observe(self, run, &found)? {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(self.held_failure(&seen, wait));
                }
                let what = format!("waiting for {}", self.shown());
                let waited = run.poll(self.target(), &what, left, POLL, || {
                    let found = self.inspect(run)?;
                    watch.observe(self, run, &found)
                });
                match waited {
                    Ok(()) => {}
                    Err(e) if e.kind == Kind::Timeout => {
                        let last = watch.last.clone().unwrap_or(seen);
                        return Err(self.held_failure(&last, wait));
                    }
                    Err(e) => return Err(e),
                }
            }
            match self.take(run, &me) {
                Ok(()) => return Ok(Some(me)),
                // Another run took it between the look and the take: looked at again, and
                // waited for if there is time left.
                Err(e) if e.kind == Kind::Locked && std::time::Instant::now() < deadline => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What waiting for a lock has seen, so that a stale lock is warned about once.
#[derive(Default)]
struct Watch {
    last: Option<String>,
    warned: bool,
    /// Waiting (`wait` > 0): each new holder seen is reported.
    waiting: bool,
}

impl Watch {
    /// Ok(Ok) when free; Ok(Err(what holds it)) to wait on; Err for a lock that will never be
    /// released (its owner is gone).
    fn observe(
        &mut self,
        lock: &Lock,
        run: &Run,
        found: &Found,
    ) -> Result<Result<(), String>, Failure> {
        let seen = lock.describe(found);
        let stale = match found {
            Found::Free => return Ok(Ok(())),
            Found::Held(o) => o.stale(),
            Found::Unowned(age) if *age > TAKING_SECS => Some(Stale {
                gone: true,
                why: "its taker died before writing it".into(),
            }),
            Found::Unowned(_) => None,
        };
        if let Some(s) = stale {
            if s.gone {
                run.report
                    .warn(&format!("{} is stale: {seen}, and {}", lock.shown(), s.why));
                return Err(lock.stale_failure(found, &s.why));
            }
            if !self.warned {
                self.warned = true;
                run.report.warn(&format!(
                    "{} is stale: {seen}, and {}; it is not broken: `{}` breaks it",
                    lock.shown(),
                    s.why,
                    lock.unlock_command()
                ));
            }
        }
        if self.waiting && self.last.as_ref() != Some(&seen) {
            run.report
                .info(&format!("{}: {seen}; waiting for it", lock.shown()));
        }
        self.last = Some(seen.clone());
        Ok(Err(seen))
    }
}

/// Run `f` holding `lock` (taken with `ttl`, waited for up to `wait`), and release it when `f`
/// returns or fails. A lock the run holds already is not taken again: `f` just runs. Interrupted
/// (Ctrl-C), the lock stays held until the run's deferred cleanups have run; the run's end
/// releases it (`Run::release_all`).
pub fn holding<T, E: From<Failure>>(
    run: &Run,
    lock: &Lock,
    ttl: Duration,
    wait: Duration,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let key = lock.key();
    if run.holds(&key) {
        return f();
    }
    let Some(me) = lock.acquire(run, ttl, wait)? else {
        return f();
    };
    hold(run, lock, me);
    let r = f();
    if r.is_ok() || !run.cancelled() {
        run.release(&key);
    }
    r
}

/// Hand a taken lock to the run: it is released by `Run::release` or at the run's end.
pub fn hold(run: &Run, lock: &Lock, me: Owner) {
    let l = lock.clone();
    run.hold(&lock.key(), move |run| l.release(run, &me));
}
