//! A run people can watch: steps that say when they failed, `parallel` that shows its progress,
//! cleanups scoped to their step, and a dry run that goes to the end.

use crate::harness::*;

#[test]
fn a_failed_step_and_the_child_running_in_it_both_show_a_cross() {
    let out = Test::new()
        .script("step(\"Upgrading web1\", || { step(\"drain\"); step(\"redeploy\"); fail(\"broken\"); });\n")
        .run()
        .code(1);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("✓ drain")),
        "{}",
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("✗ redeploy")),
        "{}",
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains("✗ Upgrading web1")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("✓ redeploy"), "{}", out.stderr);
}

#[test]
fn parallel_shows_how_many_items_are_done_and_labels_their_steps() {
    Test::new()
        .script(
            "parallel([\"h1\", \"h2\", \"h3\"], 2, |h| { step(`deploy ${h}`); sleep(0.1); h });\n",
        )
        .run()
        .success()
        .stderr_has("▸ parallel over 3 item(s), 2 at a time")
        .stderr_has("h2: ▸ deploy h2")
        .stderr_has("h2: ✓ deploy h2")
        .stderr_has("3/3");
}

#[test]
fn a_defer_inside_a_step_runs_when_that_step_ends_not_at_the_end_of_the_script() {
    Test::new()
        .script(
            "step(\"web1\", || { defer(|| print(\"web1 back in rotation\")); print(\"web1 redeployed\"); });\n\
             print(\"between the steps\");\n\
             step(\"web2\", || { defer(|| print(\"web2 back in rotation\")); fail(\"web2 broken\"); });\n",
        )
        .run()
        .code(1)
        .stdout_is("web1 redeployed\nweb1 back in rotation\nbetween the steps\nweb2 back in rotation\n");
}

#[test]
fn a_dry_run_says_it_would_wait_instead_of_timing_out() {
    let closed = ClosedPort::new();
    let out = Test::new()
        .script(&format!(
            "wait_http(\"http://127.0.0.1:{}/\", #{{timeout: 30}});\n\
             wait_until(30, || local().exists(\"never-there\"), #{{what: \"the marker file\"}});\n\
             local().wait_file(\"never-there\", 30);\n\
             let r = local().run(\"echo hi\");\n\
             print(`ran ${{r.dry_run}}`);\n",
            closed.port
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stdout_is("ran true\n")
        .stderr_has("would wait for waiting for status 200")
        .stderr_has("would wait for the marker file")
        .stderr_has("would run `echo hi` on local");
    assert!(
        out.elapsed < std::time::Duration::from_secs(5),
        "{:?}",
        out.elapsed
    );
}

#[test]
fn a_rolling_upgrade_dry_run_runs_to_the_end_and_says_nothing_was_upgraded() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\n\
             let lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{batch: 1}}, |server| {{ local().run(`restart ${{server}}`); }});\n",
            lb.sock()
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stderr_has("would run `restart web1` on local")
        .stderr_has("would run `restart web2` on local")
        .stderr_has("dry run, nothing was upgraded");
    assert!(lb.status("web1").starts_with("UP"));
}
