//! The traffic guard against real haproxy and busybox backends: it proves a rolling upgrade lost
//! no request, and it stops a play that hurts users before its next change.

use std::time::Duration;

use crate::haproxy::{rolling_script, KillHttpd};
use crate::harness::*;

/// The `run_end` record of a journal.
fn run_end(journal: &std::path::Path) -> serde_json::Value {
    let records = journal_records(journal);
    let end = records.last().cloned().unwrap_or_default();
    assert_eq!(end["type"], "run_end", "{records:?}");
    end
}

#[test]
fn a_rolling_upgrade_under_load_is_watched_with_no_failed_request_and_so_does_the_load_see() {
    let lb = Haproxy::builder().retries(0).start();
    let (p1, p2) = (lb.httpd("web1").port, lb.httpd("web2").port);
    let _cleanup = KillHttpd(vec![p1, p2]);
    let roots = [
        ("web1", p1, lb.httpd("web1").root.path()),
        ("web2", p2, lb.httpd("web2").root.path()),
    ];
    let traffic = Traffic::start(lb.front);
    traffic.wait_past(0, 20);
    let out = Test::new()
        .script(&rolling_script(
            &lb,
            "[\"web1\", \"web2\"]",
            // The health check takes 0.3 s: each server's step then spans several of the guard's
            // probes, whose figures it must show (an upgrade of a local httpd takes milliseconds).
            "#{drain_timeout: 10, settle: 2, health: |server| { sleep(0.3); \
             http_get(`http://127.0.0.1:${backends[server].port}/`).status == 200 }}",
            &roots,
        ))
        .args(&[
            "--journal",
            "j.jsonl",
            "--watch",
            &lb.url(),
            "--max-errors",
            "0",
        ])
        .run()
        .success()
        .stderr_has(&format!("traffic guard ({}): ", lb.url()))
        .stderr_has("Upgrading web_servers/web1 (1/2)  ")
        .stderr_has("Upgrading web_servers/web2 (2/2)  ");
    let seen = traffic.stop();
    let failed = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).count();
    assert_eq!(
        failed,
        0,
        "the load generator saw {failed} failed of {}",
        seen.len()
    );
    let guard = &run_end(&out.path("j.jsonl"))["guard"];
    assert_eq!(guard["failed"], 0, "{guard}");
    assert!(guard["requests"].as_u64().unwrap() > 50, "{guard}");
    assert!(guard["p99_ms"].as_f64().unwrap() > 0.0, "{guard}");
    let steps = guard["steps"].as_array().unwrap();
    for server in ["web1", "web2"] {
        let step = steps
            .iter()
            .find(|s| {
                s["step"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("Upgrading web_servers/{server} "))
            })
            .unwrap_or_else(|| panic!("no figures for {server}: {steps:?}"));
        assert!(step["requests"].as_u64().unwrap() > 0, "{step}");
        assert_eq!(step["failed"], 0, "{step}");
    }
}

#[test]
fn a_backend_killed_in_rotation_makes_the_guard_stop_the_play_before_its_next_change() {
    let lb = Haproxy::builder().retries(0).start();
    let root = lb.httpd("web1").root.path().display().to_string();
    let out = Test::new()
        .script(&format!(
            "step(\"Killing web1 without draining it\");\n\
             local().run([\"pkill\", \"-f\", \"busybox httpd .*-h {root}$\"]);\n\
             step(\"Waiting\");\n\
             sleep(10);\n\
             local().write_file(\"after.txt\", \"the guard let this run\");\n"
        ))
        .args(&[
            "--journal",
            "j.jsonl",
            "--watch",
            &lb.url(),
            "--max-errors",
            "1",
        ])
        .run()
        .code(1)
        .stderr_has("the traffic guard stopped the run")
        .stderr_has("during `Waiting`")
        .stderr_has("deferred cleanups ran");
    assert!(
        !out.path("after.txt").exists(),
        "the play went on after the guard tripped"
    );
    assert!(
        out.elapsed < Duration::from_secs(8),
        "the guard did not cut the sleep short"
    );
    let end = run_end(&out.path("j.jsonl"));
    assert_eq!(end["outcome"], "failed");
    assert!(end["guard"]["failed"].as_u64().unwrap() >= 2, "{end}");
    assert!(
        end["stopped_by"]
            .as_str()
            .unwrap()
            .contains("during `Waiting`"),
        "{end}"
    );
}

#[test]
fn watch_in_a_script_counts_requests_and_failures() {
    let web = Httpd::start("ok\n");
    Test::new()
        .script(&format!(
            "let g = watch(\"{}\", #{{interval: 0.05}});\n\
             sleep(2);\n\
             let s = g.stats();\n\
             g.stop();\n\
             print(`${{s.requests >= 10}} ${{s.failed}} ${{s.p99_ms > 0.0}}`);\n",
            web.url()
        ))
        .run()
        .success()
        .stdout_is("true 0 true\n");
    // A closed port: every request fails, and a budget of 0 stops the script.
    let closed = ClosedPort::new();
    let out = Test::new()
        .script(&format!(
            "let g = watch(\"http://127.0.0.1:{}/\", #{{interval: 0.05, max_errors: 0}});\nsleep(10);\nprint(\"never\");\n",
            closed.port
        ))
        .run()
        .code(1)
        .stderr_has("the traffic guard stopped the run");
    assert!(!out.stdout.contains("never"));
}
