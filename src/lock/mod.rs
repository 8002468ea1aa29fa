//! Locks: one run at a time per name, so that two runs cannot upgrade the same backend at once.
//!
//! A lock is a folder made with an atomic `mkdir` (which fails when the folder exists) holding an
//! `owner` file: the run's token, pid, user, control host, script, journal, start time and ttl.
//! Without a host it lives in `$XDG_STATE_HOME/runner/locks/` on this machine (this user's runs);
//! on a host (`host: h`, over SSH or `local()`) in `/tmp/runner-locks/` there (every user's). A
//! lock on a host is made and read with shell commands through `Host::exec`, one of this machine's
//! state folder with the same steps done natively (no shell to spawn: a lock costs a millisecond,
//! not the tens a loaded machine takes to start `sh`, `mkdir`, `cat` and `mv`). Both go through the
//! gate like any command: taking and releasing are journaled effects (the lock is marked `held` until released, so a run
//! killed while holding one shows it in what it left), looking is a read, which runs under
//! `--dry-run` too: a dry run says "would take lock X (free | held by ...)".
//!
//! A held lock fails at once with kind `locked` naming its owner, or is waited for (`wait`). A lock
//! is stale when its ttl has passed, or when its owner ran on this machine and its process is gone
//! (a SIGKILLed run cannot release it; a zombie counts as gone): it is reported as stale, with why,
//! and never broken silently. `runner unlock` breaks it. A run resumed with `--resume JOURNAL`
//! takes over the locks of the run it resumes once that run's process is gone.

mod acquire;
mod folder;
mod owner;

pub use acquire::{hold, holding, DEFAULT_TTL};
pub use folder::Lock;
pub use owner::{folder_name, this_host, Found, Owner};
