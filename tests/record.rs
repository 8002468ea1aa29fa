//! The record of a run: the write-ahead journal, the recap, `runner runs` and `runner journal`,
//! `--resume` with `once` checkpoints, and what a killed run leaves behind, against real sshd,
//! haproxy and busybox backends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::haproxy::KillHttpd;
use crate::harness::*;

/// The journals a run (or several) left in the test's state folder, oldest first.
fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("state/runner/runs"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The one journal of the test's state folder, once it holds a record of `kind`.
fn journal_with(dir: &Path, kind: &str, what: &str) -> PathBuf {
    eventually_some(
        Duration::from_secs(20),
        || {
            journals(dir).into_iter().find(|j| {
                journal_records(j)
                    .iter()
                    .any(|r| r["type"] == kind && r.to_string().contains(what))
            })
        },
        format!("a journal with a {kind} record of {what}"),
    )
}

fn sigkill(pid: u32) {
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
}

fn sigint(pid: u32) {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn sigkill_during_a_remote_command_leaves_its_started_record_an_incomplete_run_and_no_ssh_process()
{
    let sshd = Sshd::start();
    let (mut child, dir) = Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"sleep 30\");\n",
            sshd.handle()
        ))
        .spawn();
    let journal = journal_with(dir.path(), "effect_start", "sleep 30");
    eventually(
        Duration::from_secs(10),
        || !sshd.client_processes().is_empty(),
        "the run's ssh master",
    );
    sigkill(child.id());
    let _ = child.wait();

    let records = journal_records(&journal);
    assert_eq!(records[0]["type"], "run_start", "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r["type"] == "effect_start" && r["action"] == "run `sleep 30`"),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["type"] == "effect" || r["type"] == "run_end"),
        "the command never finished and the run never ended: {records:?}"
    );
    // Nothing of the run outlives it: its reaper closes the master.
    eventually(
        Duration::from_secs(20),
        || sshd.client_processes().is_empty(),
        "no ssh process of the killed run",
    );
    let runs = Test::in_dir(dir).args(&["runs"]).run().success();
    assert!(
        runs.stdout.contains(": incomplete")
            && runs.stdout.contains(&journal.display().to_string()),
        "{}",
        runs.stdout
    );
    let shown = Test::in_dir(runs.dir)
        .args(&["journal", &journal.display().to_string()])
        .run()
        .success();
    assert!(
        shown
            .stdout
            .contains("run `sleep 30`: started, outcome unknown"),
        "{}",
        shown.stdout
    );
}

#[test]
fn the_next_run_of_a_script_whose_last_run_did_not_finish_says_so_with_what_it_left() {
    let lb = Haproxy::start();
    let script = format!(
        "let lb = haproxy(\"{}\");\n\
         if param(\"long\", false) {{ lb.disable(\"web_servers/web1\"); local().run(\"sleep 30\"); }}\n",
        lb.sock()
    );
    let (mut child, dir) = Test::new()
        .script(&script)
        .args(&["-p", "long=true"])
        .spawn();
    let journal = journal_with(dir.path(), "effect_start", "sleep 30");
    sigkill(child.id());
    let _ = child.wait();
    Test::in_dir(dir)
        .args(&["play", "main.rhai"])
        .run()
        .success()
        .stderr_has("the last run of this script did not finish")
        .stderr_has(&journal.display().to_string())
        .stderr_has("web_servers/web1: maint since")
        .stderr_has("--resume");
}

#[test]
fn once_under_resume_returns_the_recorded_value_without_running_the_closure_again() {
    let script =
        "let v = once(\"build\", || { local().run(\"echo built >> built.txt\"); 41 + 1 });\n\
                  print(`value ${v}`);\n\
                  if param(\"fail\", false) { fail(\"stopped after the checkpoint\") }\n\
                  print(\"done\");\n";
    let first = Test::new()
        .script(script)
        .args(&["-p", "fail=true"])
        .run()
        .code(1)
        .stdout_has("value 42");
    let journal = journals(first.dir.path()).pop().unwrap();
    assert!(journal_records(&journal)
        .iter()
        .any(|r| r["type"] == "once" && r["key"] == "build" && r["value"] == 42));
    let second = Test::in_dir(first.dir)
        .args(&[
            "play",
            "main.rhai",
            "--resume",
            &journal.display().to_string(),
        ])
        .run()
        .success()
        .stdout_has("value 42\ndone")
        .stderr_has("build: done already (checkpoint), skipped");
    let built = std::fs::read_to_string(second.path("built.txt")).unwrap();
    assert_eq!(built, "built\n", "the checkpoint's closure ran again");
}

#[test]
fn resuming_the_journal_of_another_script_is_refused_unless_forced() {
    let first = Test::new()
        .script("once(\"a\", || local().run(\"true\"));\n")
        .run()
        .success();
    let journal = journals(first.dir.path()).pop().unwrap();
    let refused = Test::in_dir(first.dir)
        .file("other.rhai", "print(\"other\");\n")
        .args(&[
            "play",
            "other.rhai",
            "--resume",
            &journal.display().to_string(),
        ])
        .run()
        .code(2)
        .stderr_has("that journal is of another script")
        .stderr_has("--force");
    assert!(
        refused.stdout.is_empty(),
        "nothing may run: {}",
        refused.stdout
    );
    Test::in_dir(refused.dir)
        .args(&[
            "play",
            "other.rhai",
            "--resume",
            &journal.display().to_string(),
            "--force",
        ])
        .run()
        .success()
        .stdout_has("other");
}

/// A rolling upgrade of web1 and web2 whose redeploy restarts the server's httpd; the redeploy of
/// web2 waits until the file `gate` exists.
fn gated_rolling_script(lb: &Haproxy, gate: &Path) -> String {
    let root = |n: &str| lb.httpd(n).root.path().display().to_string();
    format!(
        "import \"rolling\" as rolling;\n\
         let lb = haproxy(\"{sock}\");\n\
         let backends = #{{web1: #{{port: {p1}, root: \"{r1}\"}}, web2: #{{port: {p2}, root: \"{r2}\"}}}};\n\
         let h = local();\n\
         rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{drain_timeout: 10}}, |server| {{\n\
         \x20   if server == \"web2\" {{ wait_until(60, || h.exists(\"{gate}\")); }}\n\
         \x20   let b = backends[server];\n\
         \x20   let pattern = `busybox httpd .*-h ${{b.root}}$`;\n\
         \x20   h.run([\"pkill\", \"-f\", pattern], #{{check: false}});\n\
         \x20   wait_until(5, || h.run([\"pgrep\", \"-f\", pattern], #{{check: false, read_only: true}}).code != 0);\n\
         \x20   h.write_file(`${{b.root}}/index.html`, `${{server}} v2`);\n\
         \x20   h.run([\"busybox\", \"httpd\", \"-p\", `127.0.0.1:${{b.port}}`, \"-h\", b.root]);\n\
         }});\n",
        sock = lb.sock(),
        p1 = lb.httpd("web1").port,
        p2 = lb.httpd("web2").port,
        r1 = root("web1"),
        r2 = root("web2"),
        gate = gate.display(),
    )
}

/// The pid of the httpd that serves `root`.
fn httpd_pid(root: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-f", &format!("busybox httpd .*-h {}$", root.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_rolling_upgrade_killed_after_its_first_server_resumes_with_the_rest_and_leaves_the_first_alone(
) {
    let lb = Haproxy::start();
    let _cleanup = KillHttpd(vec![lb.httpd("web1").port, lb.httpd("web2").port]);
    let gate_dir = tempfile::tempdir().unwrap();
    let gate = gate_dir.path().join("go");
    let (mut child, dir) = Test::new()
        .script(&gated_rolling_script(&lb, &gate))
        .spawn();
    // web1 is done (its checkpoint recorded), web2 is out of rotation waiting for the gate.
    let journal = journal_with(dir.path(), "once", "web_servers/web1");
    eventually(
        Duration::from_secs(20),
        || lb.status("web2").starts_with("MAINT"),
        "web2 in maintenance",
    );
    sigkill(child.id());
    let _ = child.wait();
    let web1 = httpd_pid(lb.httpd("web1").root.path());
    assert!(!web1.is_empty());

    std::fs::write(&gate, "").unwrap();
    let resumed = Test::in_dir(dir)
        .args(&[
            "play",
            "main.rhai",
            "--resume",
            &journal.display().to_string(),
        ])
        .run()
        .success()
        .stderr_has("the resumed run left")
        .stderr_has("web_servers/web2: maint since");
    assert_eq!(
        httpd_pid(lb.httpd("web1").root.path()),
        web1,
        "web1 was upgraded again:\n{}",
        resumed.stderr
    );
    assert!(lb.status("web1").starts_with("UP"), "{}", lb.status("web1"));
    assert!(lb.status("web2").starts_with("UP"), "{}", lb.status("web2"));
    assert_eq!(
        std::fs::read_to_string(lb.httpd("web2").root.path().join("index.html")).unwrap(),
        "web2 v2"
    );
    let new_journal = journals(resumed.dir.path()).pop().unwrap();
    let records = journal_records(&new_journal);
    assert_eq!(
        records[0]["resumed_from"],
        journal.display().to_string(),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["type"] == "effect" && r["action"].as_str().unwrap().contains("web1")),
        "the resumed run touched web1: {records:?}"
    );
}

#[test]
fn a_rolling_upgrade_that_fails_at_its_second_server_recaps_it_in_maint_and_ends_its_json_with_it_left(
) {
    let lb = Haproxy::start();
    let script = format!(
        "import \"rolling\" as rolling;\n\
         let lb = haproxy(\"{}\");\n\
         rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{drain_timeout: 10, health_timeout: 1}}, |server| {{\n\
         \x20   if server == \"web2\" {{ fail(\"the new version of web2 does not start\") }}\n\
         }});\n",
        lb.sock()
    );
    let out = Test::new()
        .script(&script)
        .run()
        .code(1)
        .stderr_has("recap: ")
        .stderr_has("left out of their normal state:")
        .stderr_has("web_servers/web2: maint since");
    // The recap comes before the error.
    let recap = out.stderr.find("recap: ").unwrap();
    let error = out.stderr.find("error: ").unwrap();
    assert!(recap < error, "{}", out.stderr);
    assert!(!out.stderr.contains("web_servers/web1: "), "{}", out.stderr);

    lb.raw("set server web_servers/web2 state ready");
    lb.wait_up("web2");
    let json = Test::new()
        .script(&script)
        .args(&["--output", "json"])
        .run()
        .code(1);
    let events: Vec<serde_json::Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "run_start");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_end", "{events:?}");
    assert_eq!(end["outcome"], "failed");
    let left = end["left"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["what"], "web_servers/web2");
    assert_eq!(left[0]["state"], "maint");
    // The journal's end says the same.
    let journal = journals(json.dir.path()).pop().unwrap();
    let records = journal_records(&journal);
    let run_end = records.last().unwrap();
    assert_eq!(run_end["type"], "run_end");
    assert_eq!(run_end["left"], end["left"]);
}

#[test]
fn ctrl_c_during_a_drain_ends_with_a_recap_naming_the_server_in_drain() {
    let lb = Haproxy::start();
    let (child, dir) = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\nlb.drain(\"web_servers/web1\");\nstep(\"waiting\");\nsleep(30);\n",
            lb.sock()
        ))
        .spawn();
    journal_with(dir.path(), "effect", "drain");
    eventually(
        Duration::from_secs(10),
        || lb.status("web1").starts_with("DRAIN"),
        "web1 in drain",
    );
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("left out of their normal state:")
            && stderr.contains("web_servers/web1: drain since"),
        "{stderr}"
    );
    let journal = journals(dir.path()).pop().unwrap();
    assert_eq!(
        journal_records(&journal).last().unwrap()["outcome"],
        "interrupted"
    );
}
