//! Locks: two real `runner play` processes contending for the same lock, on this machine and on an
//! SSH host; a lock left by a SIGKILLed run; `runner unlock`; `--lock`; release after a failure and
//! after Ctrl-C; the default lock of `rolling::upgrade`.

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

/// The runs of one test: one state folder (`XDG_STATE_HOME`: local locks and journals) shared by
/// all of them, and a folder for the files through which the test and its runs meet.
struct Runs {
    dir: TempDir,
}

impl Runs {
    fn new() -> Runs {
        Runs {
            dir: tempfile::Builder::new()
                .prefix("runner-lock-")
                .tempdir()
                .unwrap(),
        }
    }

    /// A file of the meeting folder, as script code can name it.
    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.path().join(name).exists()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `runner` with this test's state folder.
    fn test(&self) -> Test {
        Test::new().env("XDG_STATE_HOME", &self.state().display().to_string())
    }

    /// Script code that signals `name` (creates the file).
    fn signal(&self, name: &str) -> String {
        format!("local().write_file(\"{}\", \"\");", self.file(name))
    }

    /// Script code that waits (up to 60 s) until the test creates the file `name`.
    fn await_file(&self, name: &str) -> String {
        format!(
            "wait_until(60, || local().exists(\"{}\"), #{{interval: 0.05}});",
            self.file(name)
        )
    }

    /// Start `script` (with `args`), and return once it has created the file `ready`.
    fn start_holder(&self, script: &str, args: &[&str]) -> (Child, TempDir) {
        let (mut child, dir) = self.test().script(script).args(args).spawn();
        eventually(
            Duration::from_secs(30),
            || {
                assert!(
                    matches!(child.try_wait(), Ok(None)),
                    "the first run ended early: {}",
                    ended(child.try_wait().ok().flatten().map(|_| &mut child))
                );
                self.exists("ready")
            },
            "the first run never took its lock",
        );
        (child, dir)
    }

    fn locks(&self) -> Vec<String> {
        std::fs::read_dir(self.state().join("runner/locks"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a finished child printed, for a panic message.
fn ended(child: Option<&mut Child>) -> String {
    let Some(child) = child else {
        return String::new();
    };
    let mut out = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    out
}

/// Wait for a child runner and return its exit code and stderr.
fn finish(child: Child) -> (i32, String) {
    let out: Output = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A script that takes lock `name` (with `opts`), says `ready`, waits for `release`, then says
/// `done` just before the lock is released.
fn holder(runs: &Runs, name: &str, opts: &str) -> String {
    format!(
        "lock(\"{name}\", {opts}, || {{ {} {} {} }});\n",
        runs.signal("ready"),
        runs.await_file("release"),
        runs.signal("done")
    )
}

#[test]
fn a_second_run_of_the_same_lock_fails_at_once_naming_the_first_runs_pid() {
    let runs = Runs::new();
    let (first, _d) = runs.start_holder(&holder(&runs, "deploy", "#{}"), &[]);
    let pid = first.id();
    let out = runs
        .test()
        .script(&format!(
            "try {{ lock(\"deploy\", || print(\"ran\")); }} catch (e) {{ print(e.kind); print(e.message); }}\n\
             {}",
            runs.signal("second-ended")
        ))
        .run()
        .success();
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "locked", "{}", out.stdout);
    assert!(
        lines[1].starts_with(&format!("lock \"deploy\" is held by pid {pid} (user ")),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("main.rhai, since "), "{}", lines[1]);
    assert!(!runs.exists("done"), "the first run was disturbed");
    std::fs::write(runs.file("release"), "").unwrap();
    let (code, stderr) = finish(first);
    assert_eq!(code, 0, "{stderr}");
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
}

#[test]
fn a_second_run_with_wait_runs_once_the_first_releases_the_lock() {
    let runs = Runs::new();
    let (first, _d) = runs.start_holder(&holder(&runs, "deploy", "#{}"), &[]);
    let release = runs.file("release");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        std::fs::write(release, "").unwrap();
    });
    let started = Instant::now();
    let out = runs
        .test()
        .script(&format!(
            "lock(\"deploy\", #{{wait: 30}}, || print(local().exists(\"{}\")));",
            runs.file("done")
        ))
        .run()
        .success()
        // The first run's end came before this closure ran.
        .stdout_is("true\n")
        .stderr_has(&format!(
            "lock \"deploy\": held by pid {} (user",
            first.id()
        ))
        .stderr_has("waiting for it");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        out.elapsed
    );
    releaser.join().unwrap();
    assert_eq!(finish(first).0, 0);
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
}

#[test]
fn a_lock_left_by_a_sigkilled_run_is_reported_stale_and_runner_unlock_breaks_it() {
    let runs = Runs::new();
    let (mut first, _d) = runs.start_holder(&holder(&runs, "deploy", "#{}"), &[]);
    let pid = first.id();
    first.kill().unwrap();
    first.wait().unwrap();
    let journal = |script: &str| -> String {
        std::fs::read_dir(runs.state().join("runner/runs"))
            .unwrap()
            .flatten()
            .map(|e| e.path().display().to_string())
            .find(|p| p.contains(script))
            .unwrap()
    };
    let killed_journal = journal(&format!("-{pid}.jsonl"));
    let out = runs
        .test()
        .script("lock(\"deploy\", #{wait: 10}, || print(\"ran\"));")
        .run()
        .code(1)
        .stderr_has(&format!(
            "warning: lock \"deploy\" is stale: held by pid {pid} (user"
        ))
        .stderr_has(&format!("its process (pid {pid} on "))
        .stderr_has("is gone: that run was killed before it could release it")
        .stderr_has("It is not broken automatically")
        .stderr_has(&format!("`runner journal {killed_journal}`"))
        .stderr_has("`runner unlock deploy` breaks it");
    // Not waited for: it will never be released.
    assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
    assert_eq!(out.stdout, "");
    assert_eq!(runs.locks().len(), 1, "the stale lock was broken silently");
    runs.test()
        .args(&["unlock", "deploy"])
        .run()
        .success()
        .stdout_has(&format!(
            "broke lock \"deploy\": it was held by pid {pid} (user"
        ))
        .stdout_has(", since ")
        .stdout_has("(stale: its process");
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
    runs.test()
        .args(&["unlock", "deploy"])
        .run()
        .code(1)
        .stderr_has("lock \"deploy\" is not held: nothing to break");
    runs.test()
        .script("lock(\"deploy\", || print(\"ran\"));")
        .run()
        .success()
        .stdout_is("ran\n");
    // The unlock is a run of its own in the history.
    runs.test()
        .args(&["runs"])
        .run()
        .success()
        .stdout_has("runner unlock deploy by ");
}

#[test]
fn a_run_resumed_after_a_kill_takes_over_the_lock_of_the_run_it_resumes() {
    let runs = Runs::new();
    let script = format!(
        "lock(\"deploy\", || {{ once(\"first\", || 1); {} {} }});\nprint(\"finished\");\n",
        runs.signal("ready"),
        runs.await_file("release")
    );
    let (mut first, dir) = runs.start_holder(&script, &["--journal", "j1.jsonl"]);
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::write(runs.file("release"), "").unwrap();
    let j1 = dir.path().join("j1.jsonl").display().to_string();
    runs.test()
        .file("main.rhai", &script)
        .args(&["play", "main.rhai", "--resume", &j1])
        .run()
        .success()
        .stdout_is("finished\n")
        .stderr_has(&format!(
            "took over lock \"deploy\" from the run this one resumes (pid {}, gone)",
            first.id()
        ));
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
}

#[test]
fn play_with_lock_holds_it_for_the_whole_run_and_dry_run_only_looks() {
    let runs = Runs::new();
    let script = format!("{} {}", runs.signal("ready"), runs.await_file("release"));
    let (first, _d) = runs.start_holder(&script, &["--lock", "web-deploy"]);
    let pid = first.id();
    runs.test()
        .script("print(\"ran\");")
        .args(&["--lock", "web-deploy"])
        .run()
        .code(1)
        .stderr_has(&format!(
            "error: lock \"web-deploy\" is held by pid {pid} (user"
        ));
    runs.test()
        .script("print(\"ran\");")
        .args(&["--lock", "web-deploy", "--dry-run"])
        .run()
        .success()
        .stdout_is("ran\n")
        .stderr_has(&format!(
            "would take lock \"web-deploy\" (held by pid {pid}, user "
        ))
        .stderr_has(": a real run would stop here) on local");
    std::fs::write(runs.file("release"), "").unwrap();
    assert_eq!(finish(first).0, 0);
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
    runs.test()
        .script("print(\"ran\");")
        .args(&["--lock", "web-deploy", "--dry-run"])
        .run()
        .success()
        .stderr_has("would take lock \"web-deploy\" (free) on local");
    assert!(runs.locks().is_empty(), "a dry run took the lock");
}

#[test]
fn a_lock_is_released_when_its_closure_fails() {
    let runs = Runs::new();
    let out = runs
        .test()
        .script("lock(\"deploy\", || fail(\"image missing\"));")
        .args(&["--journal", "j.jsonl"])
        .run()
        .code(1)
        .stderr_has("image missing");
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
    let actions: Vec<String> = journal_lines(&out.path("j.jsonl"))
        .iter()
        .map(|e| format!("{} {}", e["action"], e["outcome"]))
        .collect();
    assert_eq!(
        actions,
        [
            "\"take lock \\\"deploy\\\"\" \"ok\"",
            "\"release lock \\\"deploy\\\"\" \"ok\""
        ]
    );
}

#[test]
fn a_lock_whose_folder_cannot_be_made_fails_naming_it_and_runs_nothing() {
    let runs = Runs::new();
    // The folder of the locks is a file: no lock can be made in it.
    std::fs::create_dir_all(runs.state().join("runner")).unwrap();
    std::fs::write(runs.state().join("runner/locks"), "").unwrap();
    let out = runs
        .test()
        .script("lock(\"deploy\", || print(\"ran\"));")
        .args(&["--journal", "j.jsonl"])
        .run()
        .code(1)
        .stderr_has(&format!(
            "local: take lock \"deploy\" ({}): Not a directory",
            runs.state().join("runner/locks/deploy").display()
        ));
    assert!(!out.stdout.contains("ran"), "{}", out.stdout);
}

#[test]
fn ctrl_c_releases_the_lock_after_the_deferred_cleanups() {
    let runs = Runs::new();
    let lock_dir = runs.state().join("runner/locks/deploy");
    let script = format!(
        "defer(|| print(`held during cleanup: ${{local().exists(\"{}\")}}`));\n{}",
        lock_dir.display(),
        holder(&runs, "deploy", "#{}")
    );
    let (child, _d) = runs.start_holder(&script, &[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "held during cleanup: true\n"
    );
    assert!(!lock_dir.exists());
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
}

/// An inventory naming the test sshd as host `box`.
fn inventory(sshd: &Sshd, path: &Path) {
    std::fs::write(
        path,
        format!(
            "[hosts.box]\naddress = \"127.0.0.1:{}\"\nuser = \"{SSH_USER}\"\nkey = \"{}\"\nknown_hosts_file = \"{}\"\n",
            sshd.port,
            sshd.key.display(),
            sshd.known_hosts.display()
        ),
    )
    .unwrap();
}

#[test]
fn a_lock_on_an_ssh_host_is_seen_by_every_run_that_reaches_the_host() {
    let sshd = Sshd::start();
    let runs = Runs::new();
    // /tmp/runner-locks is the host's, shared by every test: a name of this test's own.
    let name = format!("web-{}", std::process::id());
    let on_host = PathBuf::from(format!("/tmp/runner-locks/{name}"));
    let opts = format!("#{{host: {}}}", sshd.handle());
    let (first, _d) = runs.start_holder(&holder(&runs, &name, &opts), &[]);
    let owner = std::fs::read_to_string(on_host.join("owner")).unwrap();
    assert!(
        owner.contains(&format!("\"pid\":{}", first.id())),
        "{owner}"
    );
    runs.test()
        .script(&format!("lock(\"{name}\", {opts}, || print(\"ran\"));"))
        .run()
        .code(1)
        .stderr_has(&format!(
            "lock \"{name}\" on {} is held by pid {} (user",
            sshd.spec(),
            first.id()
        ));
    // A lock on the host is not this machine's: a local lock of the same name is free.
    runs.test()
        .script(&format!("lock(\"{name}\", || print(\"ran\"));"))
        .run()
        .success()
        .stdout_is("ran\n");
    std::fs::write(runs.file("release"), "").unwrap();
    assert_eq!(finish(first).0, 0);
    assert!(!on_host.exists(), "not released on the host");
    sshd.assert_no_clients_left();

    // Left by a killed run: stale, and broken with `runner unlock --host` (an inventory's host).
    let _ = std::fs::remove_file(runs.file("ready"));
    let _ = std::fs::remove_file(runs.file("release"));
    let (mut killed, _d) = runs.start_holder(&holder(&runs, &name, &opts), &[]);
    killed.kill().unwrap();
    killed.wait().unwrap();
    runs.test()
        .script(&format!("lock(\"{name}\", {opts}, || print(\"ran\"));"))
        .run()
        .code(1)
        .stderr_has("is stale")
        .stderr_has(&format!("`runner unlock {name} --host {}`", sshd.spec()));
    let inv = runs.dir.path().join("inv.toml");
    inventory(&sshd, &inv);
    runs.test()
        .args(&[
            "unlock",
            &name,
            "--host",
            "box",
            "-i",
            &inv.display().to_string(),
        ])
        .run()
        .success()
        .stdout_has(&format!(
            "broke lock \"{name}\" on box: it was held by pid {} (user",
            killed.id()
        ));
    assert!(!on_host.exists(), "not broken on the host");
}

#[test]
fn rolling_upgrades_default_lock_refuses_a_second_concurrent_upgrade_of_the_same_backend() {
    let lb = Haproxy::start();
    let runs = Runs::new();
    let upgrade = |redeploy: &str| {
        format!(
            "import \"rolling\" as rolling;\n\
             let lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{}}, |server| {{ {redeploy} }});\n",
            lb.sock()
        )
    };
    // The first upgrade's redeploy of web1 is slow: it waits for the test.
    let slow = format!(
        "if server == \"web1\" {{ {} {} }}",
        runs.signal("ready"),
        runs.await_file("release")
    );
    let (first, _d) = runs.start_holder(&upgrade(&slow), &[]);
    assert_eq!(lb.status("web1"), "MAINT");
    let second = runs
        .test()
        .script(&format!(
            "import \"rolling\" as rolling;\n\
             let lb = haproxy(\"{}\");\n\
             try {{ rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{}}, |server| {{ {} }}); }}\n\
             catch (e) {{ print(e.kind); print(e.message); }}\n",
            lb.sock(),
            runs.signal("second-redeployed")
        ))
        .args(&["--journal", "j2.jsonl"])
        .run()
        .success();
    let lines: Vec<&str> = second.stdout.lines().collect();
    assert_eq!(lines[0], "locked", "{}", second.stdout);
    assert!(
        lines[1].contains(&format!(
            "web_servers\" is held by pid {} (user",
            first.id()
        )),
        "{}",
        lines[1]
    );
    // It touched nothing: no change journaled, no redeploy, web2 untouched, web1 still the first's.
    let changes = journal_lines(&second.path("j2.jsonl"));
    assert!(changes.is_empty(), "{changes:?}");
    assert!(!runs.exists("second-redeployed"));
    assert_eq!(lb.status("web1"), "MAINT");
    assert!(lb.status("web2").starts_with("UP"), "{}", lb.status("web2"));
    std::fs::write(runs.file("release"), "").unwrap();
    let (code, stderr) = finish(first);
    assert_eq!(code, 0, "{stderr}");
    lb.wait_up("web1");
    assert!(runs.locks().is_empty(), "{:?}", runs.locks());
    // Option `lock: false`: no lock taken; a string names it.
    for (option, lock) in [("false", None), ("\"web-team\"", Some("web-team"))] {
        let out = runs
            .test()
            .script(&format!(
                "import \"rolling\" as rolling;\n\
                 rolling::upgrade(haproxy(\"{}\"), \"web_servers\", [\"web2\"], #{{lock: {option}}}, |s| {{}});",
                lb.sock()
            ))
            .args(&["--journal", "j3.jsonl"])
            .run()
            .success();
        let locks: Vec<String> = journal_lines(&out.path("j3.jsonl"))
            .iter()
            .filter(|e| e["target"] == "local")
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        match lock {
            None => assert!(locks.is_empty(), "{locks:?}"),
            Some(name) => assert_eq!(
                locks,
                [
                    format!("take lock {name:?}"),
                    format!("release lock {name:?}")
                ]
            ),
        }
    }
}
