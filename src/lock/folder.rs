//! A lock's folder on its host, and the shell commands that look at it, take it (an atomic
//! `mkdir`, then the owner file), take it over, release and break it, each through the gate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::owner::{first_word, folder_name, owner_json, parse_found, token_text, Found, Owner};
use crate::effect::{Access, Permit};
use crate::error::{fmt_secs, Failure, Kind};
use crate::ledger::Mark;
use crate::prims::host::{check_exit, quote, Command, Host, Input, RunOpts, Sink};
use crate::run::Run;

/// Time one lock command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Where locks on a host live: shared by every user there (sticky, as /tmp).
const HOST_DIR: &str = "/tmp/runner-locks";

/// What is done to a lock's folder (`Lock::apply`); a token names the taking of the lock that must
/// still hold it.
pub(super) enum Op {
    Look,
    Take,
    TakeOver(String),
    Release(String),
    Break,
}

/// One lock: its name, and where it lives.
#[derive(Clone)]
pub struct Lock {
    pub name: String,
    host: Host,
    /// On a host (`host: h`), not in this user's state folder.
    on_host: bool,
    /// The folder of the locks there, its mode when it is made, and this lock's folder in it.
    parent: String,
    mode: &'static str,
    path: String,
}

impl Lock {
    /// A lock on this machine, in this user's state folder.
    pub fn local(name: &str) -> Result<Lock, Failure> {
        let parent = crate::journal::state_dir().join("locks");
        Lock::new(
            name,
            Host::local(),
            false,
            &parent.display().to_string(),
            "700",
        )
    }

    /// A lock on `host`, shared by every user there.
    pub fn on(host: Host, name: &str) -> Result<Lock, Failure> {
        Lock::new(name, host, true, HOST_DIR, "1777")
    }

    fn new(
        name: &str,
        host: Host,
        on_host: bool,
        parent: &str,
        mode: &'static str,
    ) -> Result<Lock, Failure> {
        if name.trim().is_empty() {
            return Err(Failure::usage("lock", "lock: the lock name is empty"));
        }
        Ok(Lock {
            name: name.to_string(),
            path: format!("{parent}/{}", folder_name(name)),
            parent: parent.to_string(),
            host,
            on_host,
            mode,
        })
    }

    /// What the journal records it on: the host.
    pub fn target(&self) -> &str {
        self.host.name()
    }

    /// What messages call it: `lock "deploy"`, `lock "deploy" on web1`.
    pub fn shown(&self) -> String {
        if self.on_host {
            format!("lock {:?} on {}", self.name, self.host.name())
        } else {
            format!("lock {:?}", self.name)
        }
    }

    /// What names it in the run's holdings and the ledger: where it lives.
    pub fn key(&self) -> String {
        format!("lock {}:{}", self.host.name(), self.path)
    }

    /// The command that breaks it.
    pub fn unlock_command(&self) -> String {
        let mut c = format!("runner unlock {}", quote(&self.name));
        if self.on_host {
            c.push_str(&format!(" --host {}", quote(self.host.name())));
        }
        c
    }

    /// Do `op` on the lock's folder and return its answer: `taken`, `released`, or what was
    /// found there (`parse_found`). On a host, as a shell command; a lock of this machine's state
    /// folder, natively (the same steps, without spawning a shell and its `mkdir`, `cat`, `mv`).
    pub(super) fn apply(
        &self,
        run: &Run,
        p: &Permit,
        what: &str,
        op: Op,
        input: Option<String>,
    ) -> Result<String, Failure> {
        if !self.on_host {
            return self.native(&op, input.as_deref()).map_err(|e| {
                Failure::new(
                    Kind::Io,
                    self.host.name(),
                    format!(
                        "{}: {what} {} ({}): {e}",
                        self.host.name(),
                        self.shown(),
                        self.path
                    ),
                )
            });
        }
        let script = format!(
            "L={}\nfound() {{ if [ -d \"$L\" ]; then echo held; stat -c %Y \"$L\"; date +%s; cat \"$L/owner\" 2>/dev/null; else echo free; fi; }}\n{}",
            quote(&self.path),
            self.script(&op)
        );
        let o = RunOpts {
            timeout: Some(COMMAND_TIMEOUT),
            ..Default::default()
        };
        let input = input.map_or(Input::Null, Input::Text);
        let out = self
            .host
            .exec(run, p, &Command::Shell(script), &o, input, Sink::Capture)?;
        check_exit(self.host.name(), &format!("{what} {}", self.shown()), &out)?;
        Ok(out.stdout)
    }

    /// The shell command of `op`, after the prelude that sets `L` and defines `found`.
    fn script(&self, op: &Op) -> String {
        let owned = |token: &str| format!("grep -qF {} \"$L/owner\" 2>/dev/null", quote(token));
        let write = "cat > \"$L/owner.tmp\" && mv \"$L/owner.tmp\" \"$L/owner\" && echo taken";
        match op {
            Op::Look => "found".into(),
            Op::Take => format!(
                "mkdir -p -m {mode} {parent} 2>/dev/null\n\
                 if mkdir \"$L\" 2>/dev/null; then {write}\n\
                 elif [ -d \"$L\" ]; then found\n\
                 else mkdir \"$L\"; fi",
                mode = self.mode,
                parent = quote(&self.parent),
            ),
            Op::TakeOver(token) => format!("if {}; then {write}\nelse found; fi", owned(token)),
            Op::Release(token) => format!(
                "if {}; then rm -rf \"$L\" && echo released\nelse found; fi",
                owned(token)
            ),
            Op::Break => "found\nif [ -d \"$L\" ]; then rm -rf \"$L\"; fi".into(),
        }
    }

    /// `script(op)` done here with the file system calls of the shell's commands.
    fn native(&self, op: &Op, input: Option<&str>) -> std::io::Result<String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = Path::new(&self.path);
        let owner = dir.join("owner");
        let found = || -> std::io::Result<String> {
            let Ok(meta) = std::fs::metadata(dir) else {
                return Ok("free\n".into());
            };
            let secs = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            let text = std::fs::read_to_string(&owner).unwrap_or_default();
            Ok(format!(
                "held\n{}\n{}\n{text}",
                secs(meta.modified()?),
                secs(std::time::SystemTime::now())
            ))
        };
        let owned = |token: &str| std::fs::read_to_string(&owner).is_ok_and(|t| t.contains(token));
        let write = || -> std::io::Result<String> {
            let tmp = dir.join("owner.tmp");
            std::fs::write(&tmp, input.unwrap_or_default())?;
            std::fs::rename(&tmp, &owner)?;
            Ok("taken\n".into())
        };
        match op {
            Op::Look => found(),
            Op::Take => {
                let parent = Path::new(&self.parent);
                if let Some(up) = parent.parent() {
                    std::fs::create_dir_all(up)?;
                }
                let mode = u32::from_str_radix(self.mode, 8).unwrap_or(0o700);
                match std::fs::DirBuilder::new().mode(mode).create(parent) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                match std::fs::create_dir(dir) {
                    Ok(()) => write(),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
                        found()
                    }
                    Err(e) => Err(e),
                }
            }
            Op::TakeOver(token) if owned(token) => write(),
            Op::Release(token) if owned(token) => {
                std::fs::remove_dir_all(dir)?;
                Ok("released\n".into())
            }
            Op::TakeOver(_) | Op::Release(_) => found(),
            Op::Break => {
                let seen = found()?;
                match std::fs::remove_dir_all(dir) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(seen),
                }
            }
        }
    }

    /// Look at the lock (a read: also under `--dry-run`).
    pub fn inspect(&self, run: &Run) -> Result<Found, Failure> {
        run.read(self.target(), |p| {
            let out = self.apply(run, p, "look at", Op::Look, None)?;
            Ok(parse_found(&out))
        })
    }

    /// Make the folder and the owner file. Fails with kind `locked` when another run was faster
    /// since the lock was seen free.
    pub(super) fn take(&self, run: &Run, me: &Owner) -> Result<(), Failure> {
        self.change(run, &format!("take {}", self.shown()), held(self), |p| {
            let out = self.apply(run, p, "take", Op::Take, Some(owner_json(me)))?;
            self.taken(&out)
        })?;
        Ok(())
    }

    /// Write this run into the owner file of a lock held by `old` (the run this one resumes).
    pub(super) fn take_over(&self, run: &Run, old: &Owner, me: &Owner) -> Result<(), Failure> {
        let action = format!(
            "take over {} from pid {} (the run this one resumes)",
            self.shown(),
            old.pid
        );
        self.change(run, &action, held(self), |p| {
            let op = Op::TakeOver(token_text(&old.token));
            let out = self.apply(run, p, "take over", op, Some(owner_json(me)))?;
            self.taken(&out)
        })?;
        Ok(())
    }

    /// The answer of a take: `taken`, or what holds the lock instead.
    pub(super) fn taken(&self, out: &str) -> Result<(), Failure> {
        if first_word(out) == "taken" {
            return Ok(());
        }
        Err(Failure::new(
            Kind::Locked,
            self.shown(),
            format!(
                "{} was taken by another run meanwhile: {}",
                self.shown(),
                self.describe(&parse_found(out))
            ),
        ))
    }

    /// Remove the lock if `me` still holds it. A lock broken meanwhile (`runner unlock`) is not
    /// this run's any more: it is left alone, with a warning.
    pub fn release(&self, run: &Run, me: &Owner) {
        let back = vec![Mark::Back { key: self.key() }];
        let r = self.change(run, &format!("release {}", self.shown()), back, |p| {
            let op = Op::Release(token_text(&me.token));
            let out = self.apply(run, p, "release", op, None)?;
            match (first_word(&out), parse_found(&out)) {
                ("released", _) => {}
                (_, Found::Held(other)) => run.report.warn(&format!(
                    "{} was broken while this run held it, and is now held by {}: left to it",
                    self.shown(),
                    other.describe()
                )),
                _ => run.report.warn(&format!(
                    "{} was broken while this run held it (runner unlock?): nothing to release",
                    self.shown()
                )),
            }
            Ok(())
        });
        if let Err(e) = r {
            run.report.warn(&format!(
                "{} was not released: {}; `{}` breaks it",
                self.shown(),
                e.message,
                self.unlock_command()
            ));
        }
    }

    /// `runner unlock`: remove the lock, whoever holds it. Returns what held it.
    pub fn break_it(&self, run: &Run) -> Result<Found, Failure> {
        let back = vec![Mark::Back { key: self.key() }];
        let found = self.change(run, &format!("break {}", self.shown()), back, |p| {
            let out = self.apply(run, p, "break", Op::Break, None)?;
            Ok(parse_found(&out))
        })?;
        Ok(found.unwrap_or(Found::Free))
    }

    /// A change of the lock through the gate, journaled with the lock's name and folder.
    pub(super) fn change<T>(
        &self,
        run: &Run,
        action: &str,
        marks: Vec<Mark>,
        op: impl FnOnce(&Permit) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        let access = Access::Change {
            action,
            details: json!({"lock": self.name, "path": self.path}),
            marks,
        };
        run.gate(self.target(), access, op)
    }

    /// `held by pid 123 (user ...)`, or what else was found.
    pub fn describe(&self, found: &Found) -> String {
        match found {
            Found::Free => "free".into(),
            Found::Held(o) => format!("held by {}", o.describe()),
            Found::Unowned(age) => format!(
                "held, but its folder {} has no owner file (made {age}s ago)",
                self.path
            ),
        }
    }

    pub(super) fn held_failure(&self, seen: &str, wait: Duration) -> Failure {
        let waited = if wait.is_zero() {
            String::new()
        } else {
            format!(" (waited {})", fmt_secs(wait.as_secs_f64()))
        };
        Failure::new(
            Kind::Locked,
            self.shown(),
            format!("{} is {seen}{waited}", self.shown()),
        )
    }

    /// A stale lock: warned about and refused, never broken.
    pub(super) fn stale_failure(&self, found: &Found, why: &str) -> Failure {
        let journal = match found {
            Found::Held(o) => format!(" {}", quote(&o.journal)),
            _ => String::new(),
        };
        Failure::new(
            Kind::Locked,
            self.shown(),
            format!(
                "{} is stale: {}, and {why}. It is not broken automatically: check what that run left (`runner journal{journal}`), then `{}` breaks it",
                self.shown(),
                self.describe(found),
                self.unlock_command()
            ),
        )
    }
}

/// Whether `run` resumes the run that holds a lock (`--resume` names that run's journal).
pub(super) fn resumes(run: &Run, owner: &Owner) -> bool {
    let Some(resumed) = &run.config.resume else {
        return false;
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canonical(resumed) == canonical(&PathBuf::from(&owner.journal))
}

/// The mark of a held lock: out of its normal state (free) until released.
pub(super) fn held(lock: &Lock) -> Vec<Mark> {
    vec![Mark::Out {
        key: lock.key(),
        what: lock.shown(),
        state: "held".into(),
    }]
}
