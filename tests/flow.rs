//! Flow primitives and the effect gate: parallel, Ctrl-C, defer, retry, wait_until, confirm, dry run,
//! journal.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn parallel_runs_items_concurrently_and_keeps_input_order() {
    let out = Test::new()
        .script("print(parallel([1, 2, 3, 4], 4, |x| { sleep(1); x * 10 }));")
        .run()
        .success()
        .stdout_is("[10, 20, 30, 40]\n");
    assert!(
        out.elapsed < Duration::from_millis(1900),
        "4 x 1 s in parallel took {:?}",
        out.elapsed
    );
}

#[test]
fn parallel_respects_its_limit() {
    let out = Test::new()
        .script("parallel([1, 2, 3, 4], 2, |x| sleep(0.5));")
        .run()
        .success();
    assert!(
        out.elapsed >= Duration::from_millis(1000),
        "limit 2 ran 4 x 0.5 s in {:?}",
        out.elapsed
    );
}

#[test]
fn parallel_failure_names_the_item_after_the_others_finish() {
    let out = Test::new()
        .script(
            "let l = local();\n\
             parallel([\"a\", \"b\", \"c\", \"d\"], 4, |x| {\n\
                 if x == \"b\" { sleep(0.1); fail(\"b is broken\") }\n\
                 sleep(0.5);\n\
                 l.write_file(`done-${x}`, x);\n\
             });\n",
        )
        .run()
        .code(1)
        .stderr_has("1 of 4 item(s) failed")
        .stderr_has("b: b is broken");
    for x in ["a", "c", "d"] {
        assert!(
            out.path(&format!("done-{x}")).exists(),
            "item {x} was not allowed to finish"
        );
    }
}

#[test]
fn sigint_during_sleep_exits_130_at_once_and_runs_defer() {
    let (mut child, dir) = Test::new()
        .script("defer(|| local().write_file(\"cleaned\", \"yes\"));\nstep(\"waiting\");\nsleep(30);\nlocal().write_file(\"after\", \"no\");\n")
        .spawn();
    // Wait until the script is inside sleep (its step line is out), then interrupt it.
    let _stderr = wait_for_stderr(&mut child, "waiting");
    let sent = Instant::now();
    unsafe_kill(child.id(), "INT");
    let status = child.wait().unwrap();
    // At once: well before the 30 s sleep would end (the bound leaves room for a loaded machine).
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?} to stop",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cleaned")).unwrap(),
        "yes"
    );
    assert!(!dir.path().join("after").exists());
}

#[test]
fn sigint_interrupts_a_running_command() {
    let (mut child, _dir) = Test::new()
        .script("step(\"cmd\");\nlocal().run(\"sleep 30\");\n")
        .spawn();
    let _stderr = wait_for_stderr(&mut child, "cmd");
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    unsafe_kill(child.id(), "INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(1));
}

/// Read the child's stderr until `text` has appeared (output may arrive in pieces).
/// Returns the pipe: dropping it would make the child's later writes fail.
fn wait_for_stderr(child: &mut std::process::Child, text: &str) -> std::process::ChildStderr {
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains(text) {
        let n = stderr.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stderr closed before {text:?} appeared: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    stderr
}

fn unsafe_kill(pid: u32, sig: &str) {
    std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn defer_runs_last_first_even_when_the_script_fails() {
    Test::new()
        .script("defer(|| print(\"first registered\"));\ndefer(|| print(\"second registered\"));\nfail(\"stop\");\n")
        .run()
        .code(1)
        .stdout_is("second registered\nfirst registered\n")
        .stderr_has("stop");
}

#[test]
fn failing_defer_fails_the_run_but_the_others_still_run() {
    Test::new()
        .script("defer(|| print(\"still ran\"));\ndefer(|| fail(\"cleanup broke\"));\n")
        .run()
        .code(1)
        .stdout_is("still ran\n")
        .stderr_has("deferred cleanup failed: cleanup broke");
}

#[test]
fn retry_returns_the_value_after_failed_attempts() {
    Test::new()
        .script("let n = 0;\nlet v = retry(3, 0.05, || { n += 1; if n < 3 { fail(`attempt ${n}`) } n * 10 });\nprint(v);\n")
        .run()
        .success()
        .stdout_is("30\n")
        .stderr_has("attempt 1/3 failed: attempt 1");
}

#[test]
fn retry_throws_the_last_error_when_every_attempt_fails() {
    Test::new()
        .script("retry(2, 0, || fail(\"always\"));")
        .run()
        .code(1)
        .stderr_has("error: always");
}

#[test]
fn wait_until_returns_when_true_and_times_out_with_a_message() {
    Test::new()
        .script("let t = timestamp();\nwait_until(5, || t.elapsed > 0.3);\nprint(\"ok\");\nwait_until(0.3, || false, #{what: \"the moon\"});\n")
        .run()
        .code(1)
        .stdout_is("ok\n")
        .stderr_has("the moon: still not done after 0.3s");
}

#[test]
fn unknown_option_key_is_an_error() {
    // Written out: the check before the run finds it.
    Test::new()
        .script("wait_until(1, || true, #{intervall: 1});")
        .run()
        .code(2)
        .stderr_has("unknown option `intervall`; did you mean `interval`?");
    // Built at run time: the run finds it, in the same words.
    Test::new()
        .script("let o = #{};\no.intervall = 1;\nwait_until(1, || true, o);")
        .run()
        .code(1)
        .stderr_has("unknown option `intervall`; did you mean `interval`?");
}

#[test]
fn confirm_without_a_terminal_fails_unless_yes() {
    Test::new()
        .script("if confirm(\"Upgrade?\") { print(\"go\") }")
        .run()
        .code(1)
        .stderr_has("pass --yes");
    Test::new()
        .script("if confirm(\"Upgrade?\") { print(\"go\") }")
        .args(&["--yes"])
        .run()
        .success()
        .stdout_is("go\n");
}

#[test]
fn dry_run_skips_effects_prints_would_and_still_runs_reads() {
    let out = Test::new()
        .file("existing.txt", "present\n")
        .script(
            "let l = local();\n\
             let r = l.run(\"touch ran\");\n\
             print(r.dry_run);\n\
             l.write_file(\"written.txt\", \"x\");\n\
             print(l.read_file(\"existing.txt\"));\n\
             print(l.run(\"echo read-only\", #{read_only: true}).stdout);\n\
             print(l.exists(\"written.txt\"));\n",
        )
        .args(&["--dry-run", "--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is("true\npresent\n\nread-only\n\nfalse\n")
        .stderr_has("would run `touch ran` on local")
        .stderr_has("would write written.txt on local");
    assert!(!out.path("ran").exists());
    assert!(!out.path("written.txt").exists());
    let journal = journal_lines(&out.path("j.jsonl"));
    assert_eq!(journal.len(), 2);
    assert!(journal.iter().all(|e| e["outcome"] == "skipped (dry run)"));
}

#[test]
fn journal_holds_one_json_line_per_executed_effect() {
    let out = Test::new()
        .script(
            "let l = local();\n\
             l.run(\"true\");\n\
             l.write_file(\"a.txt\", \"a\");\n\
             l.run(\"cat a.txt\", #{read_only: true});\n\
             try { l.run(\"exit 4\") } catch { }\n",
        )
        .args(&["--journal", "j.jsonl"])
        .run()
        .success();
    let journal = journal_lines(&out.path("j.jsonl"));
    let actions: Vec<&str> = journal
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["run `true`", "write a.txt", "run `exit 4`"]);
    assert_eq!(journal[0]["outcome"], "ok");
    assert_eq!(journal[0]["target"], "local");
    assert!(journal[2]["outcome"]
        .as_str()
        .unwrap()
        .starts_with("failed: local: `exit 4` exited with code 4"));
    assert!(journal.iter().all(|e| e["time"].is_string()));
}

#[test]
fn journal_defaults_to_xdg_state_home() {
    let out = Test::new()
        .script("local().run(\"true\");")
        .run()
        .success()
        .stderr_has("journal: ");
    let runs = out.path("state/runner/runs");
    let files: Vec<_> = std::fs::read_dir(&runs).unwrap().collect();
    assert_eq!(files.len(), 1);
    let f = files[0].as_ref().unwrap().path();
    assert!(f.to_string_lossy().ends_with(".jsonl"));
    assert_eq!(journal_lines(&f).len(), 1);
}

#[test]
fn read_only_run_writes_no_journal() {
    let out = Test::new().script("print(1);").run().success();
    assert!(!out.path("state/runner").exists());
}

#[test]
fn second_sigint_exits_at_once_even_while_a_cleanup_runs() {
    let (mut child, _dir) = Test::new()
        .script(
            "defer(|| { step(\"slow cleanup\"); sleep(30); });\nstep(\"waiting\");\nsleep(30);\n",
        )
        .spawn();
    let _stderr = wait_for_stderr(&mut child, "waiting");
    unsafe_kill(child.id(), "INT");
    // The first Ctrl-C ends the sleep and starts the cleanup, which sleeps in turn.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the cleanup must get its chance to run"
    );
    let sent = Instant::now();
    unsafe_kill(child.id(), "INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sent.elapsed()
    );
}

#[test]
fn parallel_closures_may_use_captured_handles_and_closures_concurrently() {
    // Captured variables are shared values in Rhai; two threads calling a method on the same one
    // would be refused as a data race. parallel gives each call its own copy.
    let out = Test::new()
        .script(
            "let l = local();\n\
             let check = |x| l.run(`sleep 0.3; echo ${x}`).stdout;\n\
             let seen = [];\n\
             let r = parallel([1, 2, 3, 4], 4, |i| { seen.push(i); check.call(i) });\n\
             print(r);\n\
             print(seen.len());\n",
        )
        .run()
        .success()
        .stdout_is("[\"1\\n\", \"2\\n\", \"3\\n\", \"4\\n\"]\n0\n");
    assert!(
        out.elapsed < Duration::from_millis(1100),
        "not concurrent: {:?}",
        out.elapsed
    );
}

#[test]
fn a_wait_ends_at_its_timeout_even_when_a_check_inside_it_hangs() {
    let out = Test::new()
        .script("wait_until(0.5, || local().run(\"sleep 7.3; true\", #{read_only: true}).code == 0, #{what: \"the slow check\"});")
        .run()
        .code(1)
        .stderr_has("the slow check: still not done after 0.5s");
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn the_journal_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let out = Test::new().script("local().run(\"true\");").run().success();
    let dir = out.path("state/runner/runs");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn an_absurd_duration_is_a_usage_error_not_a_crash() {
    Test::new()
        .script("sleep(1e20);")
        .run()
        .code(1)
        .stderr_has("sleep: the duration of 100000000000000000000 seconds is more than a year");
}

#[test]
fn shards_partition_a_fleet_every_host_in_exactly_one_and_each_journal_names_its_shard() {
    let hosts: Vec<String> = (1..=20).map(|i| format!("web{i:02}")).collect();
    let inventory = format!(
        "[groups.web]\nhosts = [{}]\n[defaults]\nconnection = \"local\"\n",
        hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut seen: Vec<String> = Vec::new();
    for i in 1..=3 {
        let out = Test::new()
            .file("inv.toml", &inventory)
            .script("for h in hosts(\"web\") { print(h.name) }\nlocal().run(\"true\");\n")
            .args(&["-i", "inv.toml", "--shard", &format!("{i}/3")])
            .run()
            .success();
        let names: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        assert!(
            !names.is_empty() && names.len() < 20,
            "shard {i}/3: {names:?}"
        );
        seen.extend(names);
        let journal = std::fs::read_dir(out.path("state/runner/runs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert!(
            journal
                .to_string_lossy()
                .contains(&format!("-main-shard{i}of3-")),
            "{}",
            journal.display()
        );
        assert_eq!(journal_records(&journal)[0]["shard"], format!("{i}/3"));
    }
    seen.sort();
    assert_eq!(seen, hosts, "every host in exactly one shard");
    // The same host stays in the same shard when the fleet grows.
    let grown = inventory.replace("\"web20\"]", "\"web20\", \"web21\"]");
    let before = Test::new()
        .file("inv.toml", &inventory)
        .args(&["hosts", "-i", "inv.toml", "--shard", "2/3"])
        .run()
        .success();
    let after = Test::new()
        .file("inv.toml", &grown)
        .args(&["hosts", "-i", "inv.toml", "--shard", "2/3"])
        .run()
        .success();
    for line in before.stdout.lines() {
        assert!(after.stdout.contains(line), "{line} moved out of shard 2/3");
    }
    Test::new()
        .args(&["hosts", "-i", "inv.toml", "--shard", "4/3"])
        .file("inv.toml", &inventory)
        .run()
        .code(2)
        .stderr_has("expected I/N");
}
