//! Processes and signals on this machine: pid files, `kill` (names, numbers, refusals, errors, dry
//! run, journal), `alive`, `children` and the waits, against real processes.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::*;

/// A real process to signal, killed when dropped.
struct Proc(Child);

impl Proc {
    /// `sleep 30`.
    fn sleeper() -> Proc {
        Proc(
            Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    /// `sh -c script` in its own process group, so dropping it also stops what it started.
    fn shell(script: &str) -> Proc {
        Proc(
            Command::new("sh")
                .args(["-c", script])
                .process_group(0)
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The signal that ended it, waiting at most 5 s.
    fn killed_by(&mut self) -> Option<i32> {
        let pid = self.pid();
        eventually_some(
            Duration::from_secs(5),
            || self.0.try_wait().unwrap().map(|status| status.signal()),
            format_args!("pid {pid} did not end"),
        )
    }

    fn still_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn read_pid_reads_a_pid_file_and_names_host_and_path_when_it_cannot() {
    Test::new()
        .file("good.pid", "4242\n")
        .file("empty.pid", "")
        .file("junk.pid", "nginx\n")
        .script(
            "print(read_pid(\"good.pid\"));\n\
             for f in [\"missing.pid\", \"empty.pid\", \"junk.pid\"] {\n\
                 try { local().read_pid(f) } catch (e) { print(`${e.kind}: ${e.message}`) }\n\
             }\n",
        )
        .run()
        .success()
        .stdout_is(
            "4242\n\
             not_found: local: cannot read pid file missing.pid: it does not exist\n\
             pid_file: local: pid file empty.pid is empty\n\
             pid_file: local: pid file junk.pid does not hold a pid: \"nginx\"\n",
        );
}

#[test]
fn kill_takes_signal_names_with_or_without_sig_in_any_case_and_numbers() {
    let spellings = [
        ("\"term\"", 15),
        ("\"SIGINT\"", 2),
        ("\"sigUsr1\"", 10),
        ("9", 9),
        ("\"15\"", 15),
        ("\"Hup\"", 1),
    ];
    let mut procs: Vec<Proc> = spellings.iter().map(|_| Proc::sleeper()).collect();
    let script: String = spellings
        .iter()
        .zip(&procs)
        .enumerate()
        .map(|(i, ((sig, _), p))| {
            // Both forms: the free function on this machine, and the method on a host handle.
            if i % 2 == 0 {
                format!("kill({}, {sig});\n", p.pid())
            } else {
                format!("local().kill({}, {sig});\n", p.pid())
            }
        })
        .collect();
    Test::new().script(&script).run().success();
    for (p, (sig, number)) in procs.iter_mut().zip(spellings) {
        assert_eq!(p.killed_by(), Some(number), "kill with {sig}");
    }
}

#[test]
fn kill_of_a_pid_that_does_not_exist_names_host_and_pid() {
    // Above /proc/sys/kernel/pid_max: no process can have it.
    Test::new()
        .script("try { kill(99999999, \"TERM\") } catch (e) { print(e.kind) }\nlocal().kill(99999999, \"USR2\");\n")
        .run()
        .code(1)
        .stdout_is("not_found\n")
        .stderr_has("local: cannot send USR2 to pid 99999999: no such process");
}

#[test]
fn kill_of_another_users_process_is_refused_with_a_clear_error() {
    assert!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
        "this test runs runner as another user, which needs root"
    );
    let mut p = Proc::sleeper();
    // WINCH: ignored by `sleep`, harmless even if it were delivered (CONT is no good here: it may be
    // sent to any process of the same session).
    let test = Test::new().script(&format!("kill({}, \"WINCH\");", p.pid()));
    std::fs::set_permissions(
        test.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = test.command().uid(65534).gid(65534).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "local: cannot send WINCH to pid {}: operation not permitted (the process belongs to another user)",
            p.pid()
        )),
        "{stderr}"
    );
    assert!(p.still_running());
}

#[test]
fn zero_and_negative_pids_and_unknown_signals_are_refused_before_anything_is_sent() {
    let mut p = Proc::sleeper();
    let out = Test::new()
        .script(&format!(
            "for args in [[0, \"CONT\"], [-1, \"CONT\"], [{pid}, \"FOO\"], [{pid}, 0], [{pid}, 999]] {{\n\
                 try {{ kill(args[0], args[1]) }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`) }}\n\
             }}\n",
            pid = p.pid()
        ))
        .run()
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "usage: local: 0 is not a process id (zero and negative numbers would address process groups)",
            "usage: local: -1 is not a process id (zero and negative numbers would address process groups)",
        ]
    );
    assert!(
        lines[2].starts_with("usage: local: unknown signal \"FOO\"; expected a name such as TERM")
    );
    assert!(lines[3].starts_with("usage: local: unknown signal 0;"));
    assert!(lines[4].starts_with("usage: local: unknown signal 999;"));
    assert!(p.still_running());
}

#[test]
fn dry_run_kill_prints_what_it_would_send_and_sends_nothing() {
    let mut p = Proc::sleeper();
    Test::new()
        .script(&format!(
            "kill({pid}, \"TERM\");\nlocal().kill({pid}, \"KILL\");\n",
            pid = p.pid()
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stderr_has(&format!("would send TERM to pid {} on local", p.pid()))
        .stderr_has(&format!("would send KILL to pid {} on local", p.pid()));
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.still_running(), "a dry run signalled the process");
}

#[test]
fn kill_is_recorded_in_the_journal() {
    let mut p = Proc::sleeper();
    let out = Test::new()
        .script(&format!("kill({}, \"term\");", p.pid()))
        .args(&["--journal", "run.jsonl"])
        .run()
        .success();
    assert_eq!(p.killed_by(), Some(15));
    let lines = journal_lines(&out.path("run.jsonl"));
    let entry = lines
        .iter()
        .find(|l| l["action"] == format!("send TERM to pid {}", p.pid()))
        .unwrap_or_else(|| panic!("no kill in the journal: {lines:?}"));
    assert_eq!(entry["target"], "local");
    assert_eq!(entry["details"]["signal"], "TERM");
    assert_eq!(entry["details"]["pid"], p.pid());
    assert_eq!(entry["outcome"], "ok");
}

#[test]
fn alive_is_false_once_the_process_exited_even_before_its_parent_collects_it() {
    // The sleeper is this test's child: once killed it stays a zombie until the test waits for it,
    // as a daemon does forever under a PID 1 that never reaps.
    let p = Proc::sleeper();
    Test::new()
        .script(&format!(
            "let h = local();\nprint(h.alive({pid}));\nkill({pid}, \"KILL\");\nh.wait_exit({pid}, 5);\nprint(alive({pid}));\nprint(alive(99999999));\n",
            pid = p.pid()
        ))
        .run()
        .success()
        .stdout_is("true\nfalse\nfalse\n");
}

#[test]
fn children_lists_the_direct_children_only() {
    // Two children of the shell; the inner shell's own sleep is a grandchild.
    let p = Proc::shell("sleep 30 & sh -c 'sleep 30 & wait' & wait");
    Test::new()
        .script(&format!(
            "wait_until(5, || children({pid}).len() == 2);\n\
             let kids = local().children({pid});\n\
             print(kids.len());\n\
             print(kids.all(|k| children(k).len() <= 1));\n\
             print(children(99999999));\n",
            pid = p.pid()
        ))
        .run()
        .success()
        .stdout_is("2\ntrue\n[]\n");
}

#[test]
fn waits_time_out_with_a_message_naming_host_and_target() {
    let p = Proc::sleeper();
    let pid = p.pid();
    let out = Test::new()
        .script(&format!(
            "try {{ wait_exit({pid}, 0.3) }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`) }}\n\
             try {{ local().wait_file(\"never\", 0.3) }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`) }}\n\
             try {{ wait_no_file(\"main.rhai\", 0.3) }} catch (e) {{ print(`${{e.kind}}: ${{e.message}}`) }}\n"
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "timeout: local: wait for pid {pid} to exit: still not done after 0.3s; last seen: pid {pid} still running (state S)\n\
             timeout: local: wait for never to exist: still not done after 0.3s; last seen: never does not exist\n\
             timeout: local: wait for main.rhai to be removed: still not done after 0.3s; last seen: main.rhai still exists\n"
        ));
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn waits_return_as_soon_as_it_happens() {
    let test = Test::new();
    let dir = test.path().display().to_string();
    let _files = Proc::shell(&format!(
        "sleep 0.3; touch {dir}/flag; sleep 0.3; rm {dir}/flag"
    ));
    let p = Proc::shell("exec sleep 1");
    let out = test
        .script(&format!(
            "let h = local();\n\
             h.wait_file(\"flag\", 5); print(\"appeared\");\n\
             wait_no_file(\"flag\", 5); print(\"removed\");\n\
             h.wait_exit({}, 5); print(\"exited\");\n",
            p.pid()
        ))
        .run()
        .success()
        .stdout_is("appeared\nremoved\nexited\n");
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );
}

/// The uid and gid of the user test sshd instances log in as.
pub fn ssh_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id").args([flag, SSH_USER]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// `sh -c script` run as the SSH test user, in its own process group.
fn as_ssh_user(script: &str) -> Proc {
    let (uid, gid) = ssh_user_ids();
    Proc(
        Command::new("sh")
            .args(["-c", script])
            .uid(uid)
            .gid(gid)
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn process_functions_work_the_same_on_an_ssh_host() {
    let sshd = Sshd::start();
    let mut mine = as_ssh_user("exec sleep 30");
    let parent = as_ssh_user("sleep 30 & sleep 30 & wait");
    let roots = Proc::sleeper();
    let files = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        files.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let pidfile = files.path().join("app.pid");
    std::fs::write(&pidfile, format!("{}\n", mine.pid())).unwrap();
    let (pidfile, missing) = (
        pidfile.display().to_string(),
        files.path().join("missing.pid").display().to_string(),
    );
    let host = sshd.spec();
    let out = Test::new()
        .script(&format!(
            "let h = {handle};\n\
             let pid = h.read_pid(\"{pidfile}\");\n\
             print(pid == {mine});\n\
             try {{ h.read_pid(\"{missing}\") }} catch (e) {{ print(e.message) }}\n\
             print(h.alive(pid));\n\
             wait_until(5, || h.children({parent}).len() == 2);\n\
             print(h.children({parent}).len());\n\
             try {{ h.kill(99999999, \"TERM\") }} catch (e) {{ print(e.message) }}\n\
             try {{ h.kill({roots}, \"WINCH\") }} catch (e) {{ print(e.message) }}\n\
             try {{ h.wait_exit(pid, 0.3) }} catch (e) {{ print(e.kind) }}\n\
             h.wait_file(\"{pidfile}\", 2);\n\
             h.wait_no_file(\"{missing}\", 2);\n\
             h.kill(pid, \"usr1\");\n\
             h.wait_exit(pid, 5);\n\
             print(h.alive(pid));\n",
            handle = sshd.handle(),
            mine = mine.pid(),
            parent = parent.pid(),
            roots = roots.pid(),
        ))
        .run()
        .success();
    assert_eq!(
        out.stdout,
        format!(
            "true\n\
             {host}: cannot read pid file {missing}: it does not exist\n\
             true\n\
             2\n\
             {host}: cannot send TERM to pid 99999999: no such process\n\
             {host}: cannot send WINCH to pid {roots}: operation not permitted (the process belongs to another user)\n\
             timeout\n\
             false\n",
            roots = roots.pid()
        )
    );
    assert_eq!(mine.killed_by(), Some(10));
}
