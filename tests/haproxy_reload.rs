//! HAProxy reloaded while a run talks to it (`haproxy -f CFG -sf OLDPID`, the way a configuration
//! change is applied): the stats socket is then a new file served by the new process, while the old
//! one finishes softly and keeps answering on connections made before, with stale values, refusing
//! every change (`Proxy is disabled.`). runner must follow the socket to the new process.

use std::time::{Duration, Instant};

use crate::harness::*;

/// Script code: `pause()` stops the run until the test lets it go on.
const PAUSE: &str = "fn pause() {\n\
    \x20   local().write_file(\"paused\", \"\");\n\
    \x20   wait_until(60, || local().exists(\"go\"), #{interval: 0.02});\n\
    }\n";

/// Run `script`, which calls `pause()` once; once it is paused, `meanwhile` runs and lets it go on
/// by calling the function it is given.
fn run_pausing(script: &str, meanwhile: impl FnOnce(&dyn Fn())) -> Outcome {
    let start = Instant::now();
    let (child, dir) = Test::new()
        .script(&format!("{PAUSE}{script}"))
        .args(&["--journal", "j.jsonl"])
        .spawn();
    let paused = dir.path().join("paused");
    let mut child = Some(child);
    eventually(
        Duration::from_secs(30),
        || {
            if paused.exists() {
                return true;
            }
            if let Ok(Some(_)) = child.as_mut().unwrap().try_wait() {
                let out = child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "runner ended before pause():\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            false
        },
        "the script never reached pause()",
    );
    let go = dir.path().join("go");
    meanwhile(&|| std::fs::write(&go, "").unwrap());
    std::fs::write(&go, "").unwrap();
    let out = child.unwrap().wait_with_output().unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
        dir,
    }
}

/// The pid in a `show info` answer.
fn info_pid(lb: &Haproxy) -> String {
    lb.raw("show info")
        .lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .expect("show info has a Pid")
        .trim()
        .to_string()
}

#[test]
fn after_haproxy_is_reloaded_reads_come_from_the_new_process() {
    let mut lb = Haproxy::start();
    let old = info_pid(&lb);
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\");\n\
             print(lb.info().Pid);\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             pause();\n\
             print(lb.info().Pid);\n\
             print(lb.weight(\"web_servers/web1\"));\n",
            lb.sock()
        ),
        |_| {
            lb.reload();
            // Set through the new process only: the old one still says 1.
            assert_eq!(lb.raw("set weight web_servers/web1 77").trim(), "");
        },
    )
    .success();
    let new = info_pid(&lb);
    assert_ne!(old, new);
    assert_eq!(
        out.stdout,
        format!("{old}\n1\n{new}\n77\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn after_haproxy_is_reloaded_set_weight_applies_to_the_new_process() {
    let mut lb = Haproxy::start();
    run_pausing(
        &format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"web_servers/web1\", 5);\n\
             pause();\n\
             lb.set_weight(\"web_servers/web1\", 9);\n\
             lb.set_state(\"web_servers/web2\", \"drain\");\n\
             print(lb.weight(\"web_servers/web1\"));\n",
            lb.sock()
        ),
        |_| lb.reload(),
    )
    .success()
    .stdout_is("9\n")
    .stderr_lacks("Proxy is disabled");
    assert_eq!(lb.weight("web1"), 9);
    assert!(
        lb.status("web2").starts_with("DRAIN"),
        "{}",
        lb.status("web2")
    );
}

#[test]
fn rolling_upgrade_across_a_reload_ends_with_every_server_ready_on_the_live_process() {
    let mut lb = Haproxy::start();
    let out = run_pausing(
        &format!(
            "import \"rolling\" as rolling;\n\
             let lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{drain_timeout: 10}}, |server| {{\n\
             \x20   // web1 is done and back; web2 is out when HAProxy is reloaded.\n\
             \x20   if server == \"web2\" {{ pause(); }}\n\
             }});\n\
             print(lb.info().Pid);\n",
            lb.sock()
        ),
        |_| lb.reload(),
    )
    .success()
    .stderr_lacks("left out of rotation")
    .stderr_lacks("maint since");
    assert_eq!(out.stdout.trim(), info_pid(&lb));
    let stat = lb.raw("show servers state web_servers");
    for server in ["web1", "web2", "backup"] {
        let row = stat
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some(server))
            .unwrap_or_else(|| panic!("no {server} in {stat}"));
        // srv_admin_state (the 7th field) 0: neither maint nor drain.
        assert_eq!(row.split_whitespace().nth(6), Some("0"), "{server}: {row}");
    }
    let journal = journal_lines(&out.path("j.jsonl"));
    let failed: Vec<_> = journal.iter().filter(|e| e["outcome"] != "ok").collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// Stop or continue a process.
fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// Whether a unix socket that the process `pid` holds has bytes it has not read yet: a command
/// written to it while it is stopped. (`ss -x -n`: Netid, State, Recv-Q, Send-Q, local address,
/// local inode, peer address, peer inode.)
fn command_queued(pid: u32) -> bool {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(l.to_string())
        })
        .collect();
    let out = std::process::Command::new("ss")
        .args(["-x", "-n"])
        .output()
        .expect("ss (iproute2) runs");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 6 && f[2].parse::<u32>().is_ok_and(|n| n > 0) && inodes.iter().any(|i| i == f[5])
    })
}

#[test]
fn a_change_answered_by_the_process_a_reload_replaced_is_never_reported_as_done() {
    // The change is written while the old process is stopped (SIGSTOP); HAProxy is reloaded; then
    // the old process reads the change, applies it to itself or refuses it (`Proxy is disabled.`),
    // and answers. Either way the live process did not get it: runner sends a refused change again,
    // to the new process, and reports an accepted one as of unknown outcome, never as done.
    let mut lb = Haproxy::start();
    let old = lb.pid();
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\", #{{timeout: 30}});\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             pause();\n\
             try {{ lb.set_weight(\"web_servers/web1\", 42); print(\"done\"); }}\n\
             catch (e) {{ print(e.kind); print(e.message); }}\n",
            lb.sock()
        ),
        |go| {
            signal(old, nix::sys::signal::Signal::SIGSTOP);
            go();
            eventually(
                Duration::from_secs(20),
                || command_queued(old),
                "runner never wrote its command",
            );
            lb.reload();
            signal(old, nix::sys::signal::Signal::SIGCONT);
        },
    )
    .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1", "{}", out.stdout);
    match lines.get(1).copied() {
        Some("done") => assert_eq!(lb.weight("web1"), 42, "done, but not on the live process"),
        Some("unknown_outcome") => {
            assert!(lines[2].contains("reload"), "{}", lines[2]);
            let journal = journal_lines(&out.path("j.jsonl"));
            let last = journal.last().unwrap();
            assert_eq!(last["kind"], "unknown_outcome", "{last}");
        }
        other => panic!(
            "neither done nor unknown_outcome: {other:?}\n{}",
            out.stdout
        ),
    }
}

#[test]
fn after_a_master_reload_the_workers_own_socket_answers_from_the_new_worker() {
    // Under a master (`haproxy -W`, as systemd runs it), a reload keeps the socket file: the new
    // worker inherits the listener. The old worker still answers on connections made before.
    let mut lb = Haproxy::builder().master().start();
    let old = info_pid(&lb);
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\");\n\
             print(lb.info().Pid);\n\
             pause();\n\
             print(lb.info().Pid);\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             lb.set_weight(\"web_servers/web2\", 3);\n",
            lb.sock()
        ),
        |_| {
            lb.reload();
            assert_eq!(lb.raw("set weight web_servers/web1 77").trim(), "");
        },
    )
    .success();
    let new = info_pid(&lb);
    assert_ne!(old, new);
    assert_eq!(out.stdout, format!("{old}\n{new}\n77\n"), "{}", out.stderr);
    assert_eq!(lb.weight("web2"), 3);
}

/// A download of `path` through the frontend read slowly (16 KB every 20 ms) on a thread: a
/// session that lasts seconds. Returns the bytes received.
fn slow_download(port: u16, path: &str) -> std::thread::JoinHandle<usize> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn after_a_master_reload_a_change_through_the_master_cli_reaches_the_new_worker_while_the_old_one_finishes(
) {
    let mut lb = Haproxy::builder().master().start();
    // A session of about 3 s on web1, held by the worker the reload replaces: that old worker
    // stays, refusing every change (its proxies are stopped), until the session ends.
    lb.httpd("web1").serve("big.bin", &vec![b'x'; 2_400_000]);
    lb.raw("set server web_servers/web2 state maint");
    let download = slow_download(lb.front, "/big.bin");
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\", #{{master: true}});\n\
             lb.set_weight(\"web_servers/web1\", 5);\n\
             pause();\n\
             print(lb.cmd(\"show proc\").contains(\"# old workers\"));\n\
             lb.set_weight(\"web_servers/web1\", 9);\n\
             print(lb.weight(\"web_servers/web1\"));\n",
            lb.master.display()
        ),
        |_| {
            eventually(
                Duration::from_secs(5),
                || {
                    let stat = lb.raw("show stat web_servers 4 -1");
                    let row = stat.lines().find(|l| l.starts_with("web_servers,web1,"));
                    row.and_then(|l| l.split(',').nth(4)) == Some("1")
                },
                "no session on web1",
            );
            lb.reload();
        },
    );
    out.success().stdout_is("true\n9\n");
    assert_eq!(lb.weight("web1"), 9);
    assert!(download.join().unwrap() > 2_400_000);
}

#[test]
fn a_command_while_haproxy_restarts_waits_for_the_new_process_instead_of_failing() {
    let mut lb = Haproxy::start();
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"web_servers/web1\", 5);\n\
             pause();\n\
             lb.set_weight(\"web_servers/web1\", 7);\n\
             print(lb.weight(\"web_servers/web1\"));\n",
            lb.sock()
        ),
        |go| {
            // The socket file stays and refuses connections: the gap of a restart or a reload.
            lb.kill();
            go();
            std::thread::sleep(Duration::from_millis(800));
            lb.start_again();
        },
    );
    out.success().stdout_is("7\n");
    assert_eq!(lb.weight("web1"), 7);
}

#[test]
fn a_socket_that_answered_and_stays_dead_fails_after_the_grace_naming_it() {
    let mut lb = Haproxy::start();
    let out = run_pausing(
        &format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"web_servers/web1\", 5);\n\
             pause();\n\
             lb.set_weight(\"web_servers/web1\", 7);\n",
            lb.sock()
        ),
        |_| lb.kill(),
    );
    let elapsed = out.elapsed;
    out.code(1).stderr_has(&format!(
        "{}: cannot connect: Connection refused (os error 111) (it answered before; no HAProxy took its place within 3 s)",
        lb.sock()
    ));
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
}
