//! Who holds a lock: the owner file (written by the run that takes it), whether that run is
//! gone or its ttl ran out (the lock is stale), and what a look at a lock's folder found.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::fmt_secs;
use crate::run::Run;

/// The owner file of a lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Which taking of the lock this is: a run releases a lock only while it holds this token.
    pub token: String,
    pub name: String,
    pub pid: i64,
    /// When that process started (clock ticks since boot): a pid used again is another process.
    #[serde(default)]
    pub pid_start: Option<u64>,
    pub user: String,
    /// The control machine the run ran on.
    pub host: String,
    pub script: String,
    pub journal: String,
    /// When it was taken (RFC 3339).
    pub since: String,
    /// Seconds after `since` when the lock counts as stale.
    #[serde(default)]
    pub ttl: Option<f64>,
}

/// What a look at a lock found.
#[derive(Debug, Clone)]
pub enum Found {
    Free,
    Held(Owner),
    /// The folder without a readable owner file, made this many seconds ago: being taken right
    /// now, or its taker died in between.
    Unowned(u64),
}

/// Why a lock is stale; `gone`: its owner cannot release it any more.
pub(super) struct Stale {
    pub(super) gone: bool,
    pub(super) why: String,
}

impl Owner {
    /// This run as the owner of lock `name`.
    pub(super) fn of(run: &Run, name: &str, ttl: Duration) -> Owner {
        use sha2::Digest;
        let header = run.journal.header().unwrap_or_default();
        let text = |k: &str| header[k].as_str().map(str::to_string);
        let pid = i64::from(std::process::id());
        let since = crate::journal::now();
        let token = format!(
            "{:x}",
            sha2::Sha256::digest(format!("{pid} {since} {name} {:?}", SystemTime::now()))
        );
        Owner {
            token: token[..16].to_string(),
            name: name.to_string(),
            pid,
            pid_start: started(pid),
            user: text("user")
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_default(),
            host: this_host(),
            script: text("script").unwrap_or_else(|| "?".into()),
            journal: std::path::absolute(run.journal.path())
                .unwrap_or_else(|_| run.journal.path().clone())
                .display()
                .to_string(),
            since,
            ttl: Some(ttl.as_secs_f64()),
        }
    }

    /// `pid 123 (user root on ctl1, script /srv/upgrade.rhai, since 2026-12-01 09:30:01, journal
    /// /root/.local/state/runner/runs/...)`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} (user {} on {}, script {}, since {}, journal {})",
            self.pid,
            self.user,
            self.host,
            self.script,
            self.since_shown(),
            self.journal
        )
    }

    /// When it was taken: `2026-12-01 09:30:01` (UTC, as the journal).
    pub fn since_shown(&self) -> String {
        let t = self.since.replace('T', " ");
        t.get(..19).unwrap_or(&t).to_string()
    }

    /// Whether its process is gone: known only when it ran on this machine.
    pub fn gone(&self) -> Option<bool> {
        if self.host != this_host() {
            return None;
        }
        let alive = crate::runs::pid_alive(self.pid)
            && (self.pid_start.is_none() || started(self.pid) == self.pid_start);
        Some(!alive)
    }

    /// Why the lock is stale, if it is: its process is gone, or its ttl ran out.
    pub fn stale_reason(&self) -> Option<String> {
        self.stale().map(|s| s.why)
    }

    /// Why the lock is stale, if it is.
    pub(super) fn stale(&self) -> Option<Stale> {
        if self.gone() == Some(true) {
            return Some(Stale {
                gone: true,
                why: format!(
                    "its process (pid {} on {}) is gone: that run was killed before it could release it",
                    self.pid, self.host
                ),
            });
        }
        let ttl = self.ttl?;
        let since = humantime::parse_rfc3339_weak(&self.since).ok()?;
        let until = since + Duration::from_secs_f64(ttl.max(0.0));
        if SystemTime::now() < until {
            return None;
        }
        let at = humantime::format_rfc3339_seconds(until).to_string();
        let running = if self.gone() == Some(false) {
            " (its process still runs)"
        } else {
            ""
        };
        Some(Stale {
            gone: false,
            why: format!(
                "its ttl of {} ran out at {}{running}",
                fmt_secs(ttl),
                at.replace('T', " ").trim_end_matches('Z')
            ),
        })
    }
}

/// The name of a lock's folder: the name with anything but letters, digits, `.`, `_` and `-`
/// replaced, and then (so that two names cannot share a folder) a hash of the name.
pub fn folder_name(name: &str) -> String {
    use sha2::Digest;
    let mut clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if clean.starts_with('.') {
        clean.replace_range(..1, "_");
    }
    if clean != name {
        let hash = format!("{:x}", sha2::Sha256::digest(name.as_bytes()));
        clean.push('-');
        clean.push_str(&hash[..8]);
    }
    clean
}

/// The owner file's text: one line of JSON, the token first.
pub(super) fn owner_json(o: &Owner) -> String {
    serde_json::to_string(o).expect("an owner record serializes") + "\n"
}

/// How the token appears in an owner file.
pub(super) fn token_text(token: &str) -> String {
    format!("\"token\":\"{token}\"")
}

pub(super) fn first_word(out: &str) -> &str {
    out.lines().next().unwrap_or("").trim()
}

/// The output of the shell's `found`: `free`, or `held`, the folder's mtime, the time now (both
/// in seconds), and the owner file.
pub(super) fn parse_found(out: &str) -> Found {
    let mut lines = out.lines();
    if lines.next().map(str::trim) != Some("held") {
        return Found::Free;
    }
    let mtime: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let now: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let owner: String = lines.collect::<Vec<_>>().join("\n");
    match serde_json::from_str::<Owner>(owner.trim()) {
        Ok(o) => Found::Held(o),
        Err(_) => Found::Unowned(now.saturating_sub(mtime)),
    }
}

/// This machine's name, as the journal's `run_start` records it.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// When process `pid` started (field 22 of /proc/PID/stat), if it runs here.
pub(super) fn started(pid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_keep_plain_names_and_never_share_a_folder() {
        assert_eq!(folder_name("deploy-web_1.x"), "deploy-web_1.x");
        let a = folder_name("rolling /run/h.sock web");
        assert!(a.starts_with("rolling__run_h.sock_web-"), "{a}");
        assert_ne!(folder_name("a/b"), folder_name("a_b"));
        assert_ne!(folder_name("a/b"), folder_name("a b"));
        assert!(!folder_name("..").starts_with('.'));
        assert!(folder_name(&"x/".repeat(200)).len() < 120);
    }

    #[test]
    fn found_is_parsed_from_the_shell_output() {
        assert!(matches!(parse_found("free\n"), Found::Free));
        assert!(matches!(parse_found("held\n100\n105\n"), Found::Unowned(5)));
        let o = r#"{"token":"t","name":"n","pid":1,"user":"u","host":"h","script":"s","journal":"j","since":"2026-01-01T00:00:00.000Z"}"#;
        match parse_found(&format!("held\n1\n2\n{o}\n")) {
            Found::Held(owner) => assert_eq!(owner.pid, 1),
            other => panic!("{other:?}"),
        }
    }
}
