//! The HAProxy runtime API against a real haproxy (2.6), its backends real busybox httpd servers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;

/// `param` arguments for the example scripts: the admin socket and the frontend's URL.
fn params(lb: &Haproxy) -> Vec<String> {
    vec![
        "-p".into(),
        format!("socket={}", lb.sock()),
        "-p".into(),
        format!("url={}", lb.url()),
    ]
}

/// A unix socket that accepts every connection and never answers a byte: a hung HAProxy.
fn mute_socket() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    (dir, path)
}

/// Which server answered `n` requests: name → count.
fn distribution(port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let (status, body) = http_get_raw(port, "/").unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(status, 200, "request {i}: {body}");
        *counts.entry(body).or_default() += 1;
    }
    counts
}

/// A long download through the frontend: a GET of `path` read 16 KB every 20 ms (about 800 KB/s),
/// as `wget --limit-rate` would, on a thread. Its session lasts until nearly the last byte: HAProxy's
/// client-side socket buffer is small (`tune.sndbuf.client`) and a slow reader's window stays small.
struct Download {
    thread: std::thread::JoinHandle<Result<usize, String>>,
}

impl Download {
    fn start(port: u16, path: &str) -> Download {
        let request = format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n");
        let thread = std::thread::spawn(move || {
            let mut s =
                std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0;
            loop {
                match s.read(&mut buf).map_err(|e| e.to_string())? {
                    0 => return Ok(total),
                    n => total += n,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Download { thread }
    }

    fn finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Wait for the end; the bytes received.
    fn join(self) -> usize {
        self.thread.join().unwrap().expect("the download succeeds")
    }
}

/// Wait until the `show stat` row of web_servers/web1 counts `sessions` current sessions.
fn wait_sessions(lb: &Haproxy, sessions: i64) {
    eventually_ok(
        Duration::from_secs(5),
        || {
            let stat = lb.raw("show stat web_servers 4 -1");
            let scur = stat
                .lines()
                .find(|l| l.starts_with("web_servers,web1,"))
                .and_then(|l| l.split(',').nth(4))
                .and_then(|n| n.parse::<i64>().ok());
            if scur == Some(sessions) {
                Ok(())
            } else {
                Err(stat)
            }
        },
        format_args!("web1 never had {sessions} session(s)"),
    );
}

fn script_path(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn set_weight_10_to_1_sends_100_of_110_requests_to_web1() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"web_servers/web1\", 10);\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             print(lb.weight(\"web_servers/web2\"));\n",
            lb.sock()
        ))
        .run()
        .success()
        .stdout_is("10\n1\n");
    let counts = distribution(lb.front, 110);
    let web1 = counts.get("web1").copied().unwrap_or(0);
    assert!(
        (95..=105).contains(&web1),
        "web1 served {web1} of 110: {counts:?}"
    );
    assert_eq!(
        web1 + counts.get("web2").copied().unwrap_or(0),
        110,
        "{counts:?}"
    );
}

#[test]
fn disable_takes_a_server_out_without_a_failed_request_and_backup_answers_when_all_are_out() {
    let lb = Haproxy::start();
    let traffic = Traffic::start(lb.front);
    traffic.wait_past(0, 10);
    let run = |code: &str| {
        Test::new()
            .script(&format!("let lb = haproxy(\"{}\");\n{code}", lb.sock()))
            .run()
            .success();
    };
    run("lb.disable(\"web_servers/web1\");\nlb.wait_status(\"web_servers/web1\", \"MAINT\", 2);");
    let after_disable = traffic.mark();
    traffic.wait_past(after_disable, 20);
    // Answers that come while the next change is on its way belong to neither state: each slice
    // ends where the next run starts.
    let before_all_out = traffic.mark();
    run("lb.disable(\"web_servers/web2\");");
    let after_all_out = traffic.mark();
    traffic.wait_past(after_all_out, 20);
    let before_enable = traffic.mark();
    run("lb.enable(\"web_servers/web1\");\nlb.enable(\"web_servers/web2\");\n\
         lb.wait_status(\"web_servers/web1\", \"UP\", 5);\nlb.wait_status(\"web_servers/web2\", \"UP\", 5);");
    let after_enable = traffic.mark();
    traffic.wait_past(after_enable, 20);
    let seen = traffic.stop();

    let failed: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let bodies: Vec<&str> = seen
        .iter()
        .map(|r| r.as_ref().unwrap().1.as_str())
        .collect();
    let disabled = &bodies[after_disable + 1..before_all_out];
    assert!(
        disabled.iter().all(|b| *b == "web2"),
        "web1 was disabled, yet: {disabled:?}"
    );
    // The first answer after the second disable may have been on its way already.
    let all_out = &bodies[after_all_out + 1..before_enable];
    assert!(
        all_out.iter().all(|b| *b == "backup"),
        "every normal server is out, the backup must answer: {all_out:?}"
    );
    let enabled = &bodies[after_enable + 1..];
    assert!(
        enabled.contains(&"web1") && enabled.contains(&"web2") && !enabled.contains(&"backup"),
        "after enable: {enabled:?}"
    );
}

#[test]
fn wait_drained_waits_for_a_long_download_and_times_out_naming_web1_and_its_sessions() {
    let lb = Haproxy::start();
    // 1.2 MB at about 800 KB/s: a session on web1 that lasts about 1.5 s.
    lb.httpd("web1").serve("big.bin", &vec![b'x'; 1_200_000]);
    lb.raw("set server web_servers/web2 state maint");
    let download = Download::start(lb.front, "/big.bin");
    wait_sessions(&lb, 1);
    let started = Instant::now();
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\nlb.drain(\"web_servers/web1\");\nlb.wait_drained(\"web_servers/web1\", 0.3);",
            lb.sock()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: web_servers/web1: still 1 session(s), 0 queued after 0.3s (waiting until drained)",
            lb.sock()
        ))
        // Progress without -v: what the wait sees, as it changes.
        .stderr_has(&format!(
            "{}: web_servers/web1: still 1 session(s), 0 queued\n",
            lb.sock()
        ));
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    assert!(!download.finished(), "the download should still run");

    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\nlb.wait_drained(\"web_servers/web1\", 20);\nprint(lb.server(\"web_servers/web1\").scur);",
            lb.sock()
        ))
        .run()
        .success()
        .stdout_is("0\n");
    let waited = started.elapsed();
    // HAProxy ends the session once the last bytes are in the client's socket buffer: the reader
    // may still be reading those.
    eventually(
        Duration::from_secs(1),
        || download.finished(),
        "the download still runs long after wait_drained returned",
    );
    assert!(download.join() > 1_200_000);
    assert!(
        waited > Duration::from_millis(900),
        "wait_drained returned after {waited:?}, before the download could end"
    );
}

#[test]
fn unknown_server_is_an_error_naming_socket_server_and_haproxys_words() {
    let lb = Haproxy::start();
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             try {{ lb.weight(\"web_servers/nope\") }} catch (e) {{ print(e.kind) }}\n\
             try {{ lb.server(\"web_servers/nope\") }} catch (e) {{ print(e.kind); print(e.message) }}\n\
             lb.set_weight(\"web_servers/nope\", 3);",
            lb.sock()
        ))
        .run()
        .code(1)
        .stdout_has("no_such_server\nno_such_server\n")
        .stdout_has("no server nope in backend web_servers (its servers: web1, web2, backup)")
        .stderr_has(&format!(
            "{}: `set weight web_servers/nope 3`: No such server.",
            lb.sock()
        ));
    assert!(out.elapsed < Duration::from_secs(5));
}

#[test]
fn unknown_backend_is_an_error_naming_it() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             try {{ lb.servers(\"nosuch\") }} catch (e) {{ print(e.kind); print(e.message) }}\n\
             lb.disable(\"nosuch/web1\");",
            lb.sock()
        ))
        .run()
        .code(1)
        .stdout_has("no_such_backend\n")
        .stdout_has("`show stat nosuch 4 -1`: No such proxy.")
        .stderr_has(&format!(
            "{}: `set server nosuch/web1 state maint`: No such backend.",
            lb.sock()
        ));
}

#[test]
fn separator_in_a_name_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             for s in [\"web_servers/web1 0;set weight web_servers/web2\", \"web_servers/web 1\", \"web_servers\", \"a/b/c\", \"web_servers/web1\\nshow info\", \"web_servers/web\\t1\"] {{\n\
             \x20   try {{ lb.set_weight(s, 0); print(\"sent!\") }} catch (e) {{ print(e.kind) }}\n\
             }}\n\
             lb.servers(\"web_servers;show info\");",
            path.display()
        ))
        .run()
        .code(1)
        .stdout_is("usage\nusage\nusage\nusage\nusage\nusage\n")
        .stderr_has("invalid backend name \"web_servers;show info\": `;` is not allowed")
        .stderr_has("nothing was sent");
    assert!(
        listener.accept().is_err(),
        "runner connected to the socket although every name was invalid"
    );
}

#[test]
fn missing_socket_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.sock");
    let out = Test::new()
        .script(&format!(
            "haproxy(\"{}\").weight(\"web_servers/web1\");",
            path.display()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: cannot connect: No such file or directory",
            path.display()
        ));
    assert!(out.elapsed < Duration::from_secs(5));
}

#[test]
fn socket_that_never_answers_times_out_within_the_timeout() {
    let (_dir, path) = mute_socket();
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{timeout: 0.5}});\n\
             try {{ lb.weight(\"web_servers/web1\") }} catch (e) {{ print(e.kind) }}\n\
             lb.disable(\"web_servers/web1\");",
            path.display()
        ))
        .run()
        .code(1)
        .stdout_is("timeout\n")
        .stderr_has(&format!(
            "{}: `set server web_servers/web1 state maint` timed out after 0.5s",
            path.display()
        ));
    assert!(out.elapsed < Duration::from_secs(4), "{:?}", out.elapsed);
}

#[test]
fn static_rr_backend_accepts_only_0_and_100_percent() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"static_servers/s1\", 0);\n\
             lb.set_weight(\"static_servers/s1\", \"100%\");\n\
             print(lb.weight(\"static_servers/s1\"));\n\
             try {{ lb.set_weight(\"static_servers/s1\", 10) }} catch (e) {{ print(e.kind); print(e.message) }}",
            lb.sock()
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "1\nstatic_algorithm\n{}: `set weight static_servers/s1 10`: Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.\n",
            lb.sock()
        ));
}

#[test]
fn user_level_socket_reads_but_refuses_changes_with_a_permission_error() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             print(lb.servers(\"web_servers\").len());\n\
             try {{ lb.set_weight(\"web_servers/web1\", 5) }} catch (e) {{ print(e.kind); print(e.message) }}",
            lb.user.display()
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "3\npermission\n{}: `set weight web_servers/web1 5`: Permission denied\n",
            lb.user.display()
        ));
    assert_eq!(lb.weight("web1"), 1);
}

#[test]
fn two_haproxy_processes_behind_one_handle_both_get_the_change_and_reads_merge() {
    let (a, b) = (Haproxy::start(), Haproxy::start());
    Test::new()
        .script(&format!(
            "let lb = haproxy([\"{}\", \"{}\"]);\n\
             lb.set_weight(\"web_servers/web1\", 7);\n\
             lb.disable(\"web_servers/web2\");\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             let s = lb.server(\"web_servers/web2\");\n\
             print(s.status);\n\
             print(s.sockets.len());\n\
             print(lb.stat().filter(|r| r.svname == \"web1\").len());",
            a.sock(),
            b.sock()
        ))
        .run()
        .success()
        .stdout_is("7\nMAINT\n2\n1\n");
    for lb in [&a, &b] {
        assert_eq!(lb.weight("web1"), 7);
        let stat = lb.raw("show stat web_servers 4 -1");
        let web2 = stat
            .lines()
            .find(|l| l.starts_with("web_servers,web2,"))
            .unwrap();
        assert!(web2.contains(",MAINT,"), "{web2}");
    }
}

#[test]
fn sessions_of_several_processes_are_summed() {
    let (a, b) = (Haproxy::start(), Haproxy::start());
    // One long download through each process, both on web1.
    let mut downloads = Vec::new();
    for lb in [&a, &b] {
        lb.httpd("web1").serve("big.bin", &vec![b'x'; 1_200_000]);
        lb.raw("set server web_servers/web2 state maint");
        downloads.push(Download::start(lb.front, "/big.bin"));
        wait_sessions(lb, 1);
    }
    Test::new()
        .script(&format!(
            "let lb = haproxy([\"{}\", \"{}\"]);\n\
             let s = lb.server(\"web_servers/web1\");\n\
             print(s.scur);\n\
             print(s.sockets.values().map(|r| r.scur));\n\
             lb.wait_drained(\"web_servers/web1\", 0.2);",
            a.sock(),
            b.sock()
        ))
        .run()
        .code(1)
        .stdout_is("2\n[1, 1]\n")
        .stderr_has(&format!(
            "web_servers/web1: still 2 session(s), 0 queued ({}: 1+0, {}: 1+0) after 0.2s",
            a.sock(),
            b.sock()
        ))
        .stderr_has("web_servers/web1 is still in rotation (status UP, weight 1)");
    for d in downloads {
        d.join();
    }
}

#[test]
fn a_change_failing_on_one_of_several_sockets_names_that_socket() {
    let lb = Haproxy::start();
    let missing = lb.dir().join("gone.sock");
    Test::new()
        .script(&format!(
            "haproxy([\"{}\", \"{}\"]).set_weight(\"web_servers/web1\", 4);",
            lb.sock(),
            missing.display()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: cannot connect: No such file or directory",
            missing.display()
        ))
        .stderr_has(&format!("(applied on {})", lb.sock()));
    assert_eq!(lb.weight("web1"), 4);
}

#[test]
fn a_cmd_change_goes_to_every_socket_even_after_one_fails_and_names_it() {
    let lb = Haproxy::start();
    let missing = lb.dir().join("gone.sock");
    // The failing socket first: the change must still reach the other one.
    Test::new()
        .script(&format!(
            "haproxy([\"{}\", \"{}\"]).cmd(\"set weight web_servers/web1 4\");",
            missing.display(),
            lb.sock()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: cannot connect: No such file or directory",
            missing.display()
        ))
        .stderr_has(&format!("(applied on {})", lb.sock()));
    assert_eq!(lb.weight("web1"), 4);
}

/// A stand-in for a broken peer on a unix socket: every line it receives is recorded, and `reply`
/// says what to send back and whether to close the connection then.
struct Fake {
    path: PathBuf,
    received: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

enum Reply {
    /// Send this and wait for the next line.
    Answer(&'static str),
    /// Send this and close the connection.
    Close(&'static str),
}

impl Fake {
    fn start(reply: fn(&str) -> Reply) -> Fake {
        Fake::start_counting(move |_, line| reply(line))
    }

    /// `start`, where `reply` is also told which connection the line came on (0 for the first).
    fn start_counting(reply: impl Fn(usize, &str) -> Reply + Send + 'static) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = received.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let reader = BufReader::new(stream.try_clone().unwrap());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    seen.lock().unwrap().push(line.clone());
                    match reply(n, &line) {
                        Reply::Answer(text) => {
                            let _ = stream.write_all(text.as_bytes());
                        }
                        Reply::Close(text) => {
                            let _ = stream.write_all(text.as_bytes());
                            break;
                        }
                    }
                }
            }
        });
        Fake {
            path,
            received,
            _dir: dir,
        }
    }

    fn sock(&self) -> String {
        self.path.display().to_string()
    }

    /// How many times `line` came in.
    fn count(&self, line: &str) -> usize {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

#[test]
fn a_new_connection_closed_unanswered_during_a_reload_is_tried_again_and_stays_interactive() {
    // As a master CLI does while it re-executes itself: the first connection answers and is then
    // closed (`reload`), the next one is queued on the listener being replaced and closed without
    // a word, the one after reaches the new process.
    let fake = Fake::start_counting(|n, line| match (n, line) {
        (1, "prompt") => Reply::Close(""),
        (_, "prompt") => Reply::Answer("\n> "),
        (0, _) => Reply::Close("Name: HAProxy\n\n> "),
        _ => Reply::Answer("Name: HAProxy\n\n> "),
    });
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{timeout: 2}});\n\
             print(lb.cmd(\"show info\").trimmed());\n\
             print(lb.cmd(\"show info\").trimmed());\n\
             print(lb.cmd(\"show info\").trimmed());",
            fake.sock()
        ))
        .run()
        .success()
        .stdout_is("Name: HAProxy\nName: HAProxy\nName: HAProxy\n");
    // Three connections, each opened with `prompt`: a socket taken for one that does not speak the
    // interactive mode would get one connection per command, and, lacking `prompt`, no answer from
    // a master CLI until its input ends.
    assert_eq!(fake.count("prompt"), 3);
    assert_eq!(fake.count("show info"), 3);
}

#[test]
fn a_change_whose_connection_closes_unanswered_is_not_sent_again_and_its_outcome_is_unknown() {
    // Reads are answered in interactive mode; a change is read, then the connection closes
    // without a word (as the master CLI's `reload` does in 2.6).
    let fake = Fake::start(|line| match line {
        "prompt" => Reply::Answer("\n> "),
        l if l.starts_with("get weight") => Reply::Answer("1 (initial 1)\n\n> "),
        _ => Reply::Close(""),
    });
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             try {{ lb.set_weight(\"web_servers/web1\", 3); print(\"applied\") }} catch (e) {{ print(e.kind); print(e.message) }}\n\
             lb.cmd(\"set server web_servers/web1 state maint\");",
            fake.sock()
        ))
        .run()
        .code(1)
        .stdout_has("1\nunknown_outcome\n")
        .stdout_has(&format!(
            "{}: `set weight web_servers/web1 3`: HAProxy closed the connection without answering; the command was sent and may have been applied",
            fake.sock()
        ))
        .stderr_has("`set server web_servers/web1 state maint`: HAProxy closed the connection without answering; the command was sent and may have been applied");
    assert_eq!(fake.count("set weight web_servers/web1 3"), 1);
    assert_eq!(fake.count("set server web_servers/web1 state maint"), 1);
}

/// The start of HAProxy 2.6's `show stat` header, and a row cut off before its session counts.
const CUT_STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,\nweb_servers,web1,0,0";

#[test]
fn a_cut_off_show_stat_is_never_taken_as_drained() {
    // In interactive mode (the answer lacks its prompt) and one connection per command (the row
    // is shorter than the header).
    let interactive = Fake::start(|line| match line {
        "prompt" => Reply::Answer("\n> "),
        _ => Reply::Close(CUT_STAT),
    });
    let oneshot = Fake::start(|_| Reply::Close(CUT_STAT));
    for (fake, why) in [
        (&interactive, "without the prompt that ends a complete one"),
        (&oneshot, "row 1 has 4 field(s) where the header has 22"),
    ] {
        let out = Test::new()
            .script(&format!(
                "haproxy(\"{}\").wait_drained(\"web_servers/web1\", 2);\nprint(\"drained\");",
                fake.sock()
            ))
            .run()
            .code(1)
            .stderr_has(why);
        assert!(!out.stdout.contains("drained"), "{}", out.stdout);
        assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
    }
}

#[test]
fn a_socket_stuck_during_wait_drained_fails_with_its_own_timeout_at_once() {
    let (_dir, path) = mute_socket();
    let out = Test::new()
        .script(&format!(
            "haproxy(\"{}\", #{{timeout: 0.5}}).wait_drained(\"web_servers/web1\", 60);",
            path.display()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: `show stat web_servers 4 -1` timed out after 0.5s",
            path.display()
        ))
        .stderr_lacks("60s");
    assert!(
        out.elapsed < Duration::from_millis(1500),
        "{:?}",
        out.elapsed
    );
}

/// The master's reload count in `show proc`.
fn reloads(lb: &Haproxy) -> String {
    let proc = lb.raw_master("show proc");
    proc.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("master"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no master line: {proc}"))
        .to_string()
}

#[test]
fn after_a_reload_wait_drained_through_the_master_cli_waits_for_the_old_workers_session() {
    let lb = Haproxy::builder().master().start();
    // 2.4 MB at about 800 KB/s: a session on web1 of about 3 s, held by the worker the reload
    // replaces (the new worker starts with no session at all).
    lb.httpd("web1").serve("big.bin", &vec![b'x'; 2_400_000]);
    lb.raw("set server web_servers/web2 state maint");
    let download = Download::start(lb.front, "/big.bin");
    wait_sessions(&lb, 1);
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{master: true}});\n\
             lb.cmd(\"reload\");\n\
             print(lb.cmd(\"show proc\").contains(\"# old workers\"));\n\
             try {{ lb.wait_drained(\"web_servers/web1\", 0.3) }} catch (e) {{ print(e.message) }}\n\
             lb.wait_drained(\"web_servers/web1\", 20);\n\
             print(lb.server(\"web_servers/web1\").scur);",
            lb.master.display()
        ))
        .run()
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0], "true", "no old worker after the reload");
    assert!(
        lines[1].contains("still 1 session(s), 0 queued") && lines[1].contains("(old worker): 1+0"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "0");
    // The reload was sent once although the master closes the connection without answering.
    assert_eq!(reloads(&lb), "1");
    eventually(
        Duration::from_secs(1),
        || download.finished(),
        "the download still runs long after wait_drained returned",
    );
    assert!(download.join() > 2_400_000);

    // A reload whose configuration does not load: an error, and the master CLI stays usable
    // (its prompt is now `master[ReloadFailed]> `).
    let cfg = lb.config_path();
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}no_such_keyword\n")).unwrap();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{master: true}});\n\
             try {{ lb.cmd(\"reload\") }} catch (e) {{ print(e.kind) }}\n\
             print(lb.weight(\"web_servers/web1\"));",
            lb.master.display()
        ))
        .run()
        .success()
        .stdout_is("reload_failed\n1\n");
    assert_eq!(reloads(&lb), "2");
    std::fs::write(&cfg, good).unwrap();
}

#[test]
fn maintenance_script_under_dry_run_finishes_at_once_and_changes_nothing() {
    let lb = Haproxy::start();
    let mut args: Vec<String> = vec!["play".into(), script_path("maintenance.rhai")];
    args.extend(params(&lb));
    args.extend(["-p".into(), "hold=5".into(), "--dry-run".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = Test::new()
        .args(&args)
        .run()
        .success()
        .stderr_has("would set server web_servers/web1 state maint")
        .stderr_has("would wait until web_servers/web2 is MAINT")
        .stderr_has("would set server web_servers/web2 state ready");
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    for server in ["web1", "web2", "backup"] {
        assert!(lb.status(server).starts_with("UP"), "{server}");
    }
}

#[test]
fn master_cli_routes_commands_to_the_worker() {
    let lb = Haproxy::builder().master().start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{master: true}});\n\
             lb.set_weight(\"web_servers/web1\", 6);\n\
             print(lb.weight(\"web_servers/web1\"));\n\
             print(lb.servers(\"web_servers\").map(|s| s.name));\n\
             print(lb.info().Pid != ());\n\
             print(lb.cmd(\"@master show proc\").contains(\"# workers\"));\n\
             try {{ lb.weight(\"web_servers/nope\") }} catch (e) {{ print(e.kind) }}",
            lb.master.display()
        ))
        .run()
        .success()
        .stdout_is("6\n[\"web1\", \"web2\", \"backup\"]\ntrue\ntrue\nno_such_server\n");
    assert_eq!(lb.weight("web1"), 6);
}

#[test]
fn dry_run_set_weight_does_not_change_haproxy_but_journals_it() {
    let lb = Haproxy::start();
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             lb.set_weight(\"web_servers/web1\", 10);\n\
             lb.disable(\"web_servers/web2\");\n\
             lb.wait_status(\"web_servers/web2\", \"MAINT\", 10);\n\
             lb.wait_drained(\"web_servers/web2\", 10);\n\
             lb.cmd(\"set weight web_servers/web2 0\");\n\
             print(lb.weight(\"web_servers/web1\"));",
            lb.sock()
        ))
        .args(&["--dry-run", "--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is("1\n")
        // The waits are for changes that were skipped: reported, not waited for.
        .stderr_has(&format!(
            "would wait until web_servers/web2 is MAINT (up to 10s) on {}",
            lb.sock()
        ))
        .stderr_has("would wait until web_servers/web2 is drained (up to 10s)")
        .stderr_has(&format!(
            "would set weight web_servers/web1 10 on {}",
            lb.sock()
        ))
        .stderr_has("would set server web_servers/web2 state maint");
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
    assert_eq!(lb.weight("web1"), 1);
    assert_eq!(lb.weight("web2"), 1);
    assert!(
        !lb.status("web2").starts_with("MAINT"),
        "web2 went to MAINT under --dry-run"
    );
    let journal = journal_lines(&out.path("j.jsonl"));
    assert_eq!(journal.len(), 3, "{journal:?}");
    assert_eq!(journal[0]["action"], "set weight web_servers/web1 10");
    assert_eq!(journal[0]["outcome"], "skipped (dry run)");
    // A typo still fails under --dry-run: the server is looked up.
    Test::new()
        .script(&format!(
            "haproxy(\"{}\").set_weight(\"web_servers/web9\", 10);",
            lb.sock()
        ))
        .args(&["--dry-run"])
        .run()
        .code(1)
        .stderr_has("No such server.");
}

/// A field (`age=`, `epoch=`) of the one CLI session in a `show sess` answer (the runner's own).
fn cli_session(show_sess: &str, field: &str) -> String {
    let cli: Vec<&str> = show_sess
        .lines()
        .filter(|l| l.contains("fe=GLOBAL"))
        .collect();
    assert_eq!(cli.len(), 1, "{show_sess}");
    cli[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {}", cli[0]))
        .to_string()
}

#[test]
fn one_connection_is_reused_and_reopened_after_haproxy_closes_it() {
    let lb = Haproxy::builder().stats_timeout("1s").start();
    // Busy for 1.2 s (never idle as long as `stats timeout`), then idle 1.5 s longer than it.
    let out = Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             for i in 0..12 {{ lb.weight(\"web_servers/web1\"); sleep(0.1); }}\n\
             for i in 0..20 {{ lb.weight(\"web_servers/web1\"); }}\n\
             print(lb.cmd(\"show sess\"));\n\
             print(\"----\");\n\
             sleep(2.5); // idle longer than `stats timeout`: HAProxy closes the connection\n\
             lb.set_weight(\"web_servers/web1\", 2);\n\
             print(lb.cmd(\"show sess\"));",
            lb.sock()
        ))
        .run()
        .success();
    let (reused, reopened) = out.stdout.split_once("----").unwrap();
    assert_ne!(cli_session(reused, "age="), "0s", "not reused: {reused}");
    // `show sess` starts a new epoch: a session opened after the first one is in the next. (Its
    // age is no proof: under load HAProxy may date it late.)
    assert_eq!(cli_session(reused, "epoch="), "0", "{reused}");
    assert_eq!(
        cli_session(reopened, "epoch="),
        "0x1",
        "not reopened: {reopened}"
    );
    assert_eq!(lb.weight("web1"), 2);
}

#[test]
fn tcp_stats_socket_works_like_a_unix_one() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"127.0.0.1:{}\");\n\
             lb.set_weight(\"web_servers/web2\", 3);\n\
             print(lb.weight(\"web_servers/web2\"));",
            lb.tcp
        ))
        .run()
        .success()
        .stdout_is("3\n");
    assert_eq!(lb.weight("web2"), 3);
}

#[test]
fn stat_info_and_servers_are_parsed_into_typed_values() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             let i = lb.info();\n\
             print(i.Pid);\n\
             print(type_of(i.Uptime_sec));\n\
             let row = lb.stat().filter(|r| r.pxname == \"web_servers\" && r.svname == \"web1\")[0];\n\
             print(type_of(row.weight));\n\
             print(row.slim == ());\n\
             let s = lb.servers(\"web_servers\");\n\
             print(s.map(|x| `${{x.name}} ${{x.backup}} ${{x.weight}} ${{x.scur}} ${{x.qcur}}`));\n\
             print(s[0].addr);\n\
             print(s[0].status.starts_with(\"UP\"));\n\
             print(lb.server(\"web_servers/backup\").backup);",
            lb.sock()
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "{}\ni64\ni64\ntrue\n[\"web1 false 1 0 0\", \"web2 false 1 0 0\", \"backup true 1 0 0\"]\n127.0.0.1:{}\ntrue\ntrue\n",
            lb.pid(),
            lb.httpd("web1").port
        ));
}

#[test]
fn cmd_returns_the_raw_answer_and_throws_on_error_texts() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\");\n\
             print(lb.cmd(\"get weight web_servers/web1\"));\n\
             lb.cmd(\"set weight web_servers/web1 5; set weight web_servers/web2 6\");\n\
             print(lb.cmd(\"show servers state web_servers\").contains(\"web1\"));\n\
             try {{ lb.cmd(\"show nonsense\") }} catch (e) {{ print(e.kind) }}\n\
             try {{ lb.cmd(\"prompt\") }} catch (e) {{ print(e.kind) }}\n\
             try {{ lb.cmd(\"set server web_servers/web1 agent up\") }} catch (e) {{ print(e.kind); print(e.message) }}\n\
             print(lb.weight(\"web_servers/web1\"));",
            lb.sock()
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "1 (initial 1)\n\n\ntrue\nunknown_command\nusage\nnot_configured\n\
             {}: `set server web_servers/web1 agent up`: agent checks are not enabled on this server.\n5\n",
            lb.sock()
        ));
    assert_eq!(lb.weight("web2"), 6);
}

#[test]
fn wait_status_times_out_with_the_status_seen_last() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "let lb = haproxy(\"{}\", #{{interval: 0.05}});\n\
             lb.disable(\"web_servers/web1\");\n\
             lb.wait_status(\"web_servers/web1\", \"UP\", 0.3);",
            lb.sock()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: web_servers/web1: status still MAINT after 0.3s (waiting for status UP)",
            lb.sock()
        ));
}

#[test]
fn example_scripts_run_against_a_real_haproxy() {
    let lb = Haproxy::start();
    let run = |script: &str, extra: &[&str]| {
        let mut args: Vec<String> = vec!["play".into(), script_path(script)];
        args.extend(params(&lb));
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Test::new().args(&args).run().success()
    };
    // status.rhai reads no url: a --param no param() reads is refused.
    let out = Test::new()
        .args(&[
            "play",
            &script_path("status.rhai"),
            "-p",
            &format!("socket={}", lb.sock()),
        ])
        .run()
        .success();
    for needle in ["web_servers", "web1", "backup", "static_servers", "UP"] {
        assert!(
            out.stdout.contains(needle),
            "status lacks {needle}:\n{}",
            out.stdout
        );
    }

    let out = run("weights.rhai", &[]);
    let web1: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("web1"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count for web1:\n{}", out.stdout));
    assert!((95..=105).contains(&web1), "{}", out.stdout);
    assert_eq!(lb.weight("web1"), 10);

    run("maintenance.rhai", &[])
        .stdout_has("backup")
        .stderr_lacks("warning");
    assert!(lb
        .raw("show stat web_servers 4 -1")
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .all(|l| !l.contains("MAINT")));
    let counts = distribution(lb.front, 22);
    assert!(!counts.contains_key("backup"), "{counts:?}");
}

#[test]
fn doc_lists_the_haproxy_functions() {
    let out = Test::new().args(&["doc", "haproxy"]).run().success();
    for needle in [
        "haproxy(socket: string)",
        "lb.set_weight(server: string, weight: int)",
        "wait_drained(",
        "wait_status(",
        "lb.servers(backend: string) -> array",
    ] {
        assert!(
            out.stdout.contains(needle),
            "runner doc haproxy lacks {needle}:\n{}",
            out.stdout
        );
    }
}

// rolling::upgrade (stdlib/rolling.rhai) against the real haproxy.

/// Kills the daemonized busybox httpd a redeploy started on `port`, when the test ends.
pub(crate) struct KillHttpd(pub Vec<u16>);

impl Drop for KillHttpd {
    fn drop(&mut self) {
        for port in &self.0 {
            let _ = Command::new("pkill")
                .args(["-f", &format!("busybox httpd -p 127.0.0.1:{port} ")])
                .status();
        }
    }
}

/// A rolling upgrade whose redeploy really stops each backend's httpd, replaces its page and starts
/// a new one on the same port: `roots` maps server name to (port, web root). The httpd to stop is
/// found by its web root (the fixture's binds port 0: its command line does not name the port).
pub(crate) fn rolling_script(
    lb: &Haproxy,
    servers: &str,
    opts: &str,
    roots: &[(&str, u16, &Path)],
) -> String {
    let table: Vec<String> = roots
        .iter()
        .map(|(n, p, r)| format!("{n}: #{{port: {p}, root: \"{}\"}}", r.display()))
        .collect();
    format!(
        "import \"rolling\" as rolling;\n\
         let lb = haproxy(\"{sock}\");\n\
         let backends = #{{{table}}};\n\
         let h = local();\n\
         rolling::upgrade(lb, \"web_servers\", {servers}, {opts}, |server| {{\n\
         \x20   let b = backends[server];\n\
         \x20   let pattern = `busybox httpd .*-h ${{b.root}}$`;\n\
         \x20   h.run([\"pkill\", \"-f\", pattern], #{{check: false}});\n\
         \x20   wait_until(5, || h.run([\"pgrep\", \"-f\", pattern], #{{check: false, read_only: true}}).code != 0);\n\
         \x20   h.write_file(`${{b.root}}/index.html`, `${{server}} v2`);\n\
         \x20   h.run([\"busybox\", \"httpd\", \"-p\", `127.0.0.1:${{b.port}}`, \"-h\", b.root]);\n\
         }});\n",
        sock = lb.sock(),
        table = table.join(", "),
    )
}

#[test]
fn rolling_upgrade_restarts_every_backend_under_traffic_with_zero_failed_requests() {
    // retries 0: a request HAProxy sends to a stopped backend fails; only draining first avoids it.
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
            "#{drain_timeout: 10}",
            &roots,
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stderr_has("✓ Upgrading web_servers/web1")
        .stderr_has("✓ Upgrading web_servers/web2");
    let after = traffic.mark();
    traffic.wait_past(after, 20);
    let seen = traffic.stop();
    let failed: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    let last: Vec<&str> = seen[after + 1..]
        .iter()
        .map(|r| r.as_ref().unwrap().1.as_str())
        .collect();
    assert!(
        last.contains(&"web1 v2") && last.contains(&"web2 v2"),
        "after the upgrade: {last:?}"
    );
    assert!(lb.status("web1").starts_with("UP") && lb.status("web2").starts_with("UP"));
    let actions: Vec<String> = journal_lines(&out.path("j.jsonl"))
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| x.contains(a))
            .unwrap_or_else(|| panic!("no {a} in {actions:?}"))
    };
    // One server at a time: web1 is back before web2 leaves.
    assert!(
        pos("web_servers/web1 state ready") < pos("web_servers/web2 state drain"),
        "{actions:?}"
    );
}

#[test]
fn rolling_upgrade_stops_at_the_first_failure_and_leaves_only_that_server_out() {
    let lb = Haproxy::start();
    let out = Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\nlet lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{}}, |server| {{\n\
             \x20   if server == \"web1\" {{ fail(\"image web:v2 missing\") }}\n}});\n",
            lb.sock()
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .code(1)
        .stderr_has("rolling upgrade stopped at web_servers/web1, left out of rotation (maintenance): image web:v2 missing")
        .stderr_lacks("Upgrading web_servers/web2");
    assert_eq!(lb.status("web1"), "MAINT");
    assert!(lb.status("web2").starts_with("UP"));
    // The HAProxy effects (the upgrade's lock is taken and released on this machine).
    let journal: Vec<_> = journal_lines(&out.path("j.jsonl"))
        .into_iter()
        .filter(|e| e["target"] == lb.sock())
        .collect();
    assert!(
        journal
            .iter()
            .all(|e| !e["action"].as_str().unwrap().contains("web2")),
        "web2 must not be touched"
    );
    assert!(
        journal.last().unwrap()["action"]
            .as_str()
            .unwrap()
            .contains("web_servers/web1 state maint"),
        "the journal ends with what was left: {journal:?}"
    );
}

#[test]
fn rolling_upgrade_keeps_a_server_that_fails_its_health_check_out_of_rotation() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\nlet lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{health: |s| false, health_timeout: 0.5}}, |server| {{}});\n",
            lb.sock()
        ))
        .run()
        .code(1)
        .stderr_has("rolling upgrade stopped at web_servers/web1")
        .stderr_has("health check of web_servers/web1: still not done after 0.5s");
    assert_eq!(lb.status("web1"), "MAINT");
    assert!(lb.status("web2").starts_with("UP"));
}

#[test]
fn rolling_upgrade_refuses_to_take_a_second_server_out() {
    let lb = Haproxy::start();
    lb.raw("set server web_servers/web2 state maint");
    Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\nlet lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\"], #{{}}, |server| {{ fail(\"redeploy ran\") }});\n",
            lb.sock()
        ))
        .run()
        .code(1)
        .stderr_has("web_servers/web2 is MAINT, not UP; taking web1 out too would leave two servers out of rotation")
        .stderr_lacks("error: redeploy ran");
    assert!(
        lb.status("web1").starts_with("UP"),
        "web1 must be left alone"
    );
}

#[test]
fn rolling_upgrade_dry_run_changes_nothing() {
    let lb = Haproxy::start();
    let marker = lb.dir().join("redeployed");
    Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\nlet lb = haproxy(\"{}\");\n\
             rolling::upgrade(lb, \"web_servers\", [\"web1\", \"web2\"], #{{}}, |server| {{ local().write_file(\"{}\", server) }});\n",
            lb.sock(),
            marker.display()
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stderr_has("would set server web_servers/web1 state drain")
        .stderr_has("would set server web_servers/web2 state ready");
    assert!(!marker.exists());
    assert!(lb.status("web1").starts_with("UP") && lb.status("web2").starts_with("UP"));
}

#[test]
fn rolling_upgrade_rejects_an_unknown_option() {
    let lb = Haproxy::start();
    Test::new()
        .script(&format!("import \"rolling\" as rolling;\nrolling::upgrade(haproxy(\"{}\"), \"web_servers\", [\"web1\"], #{{drain_timout: 5}}, |s| {{}});\n", lb.sock()))
        .run()
        .code(1)
        .stderr_has("unknown option `drain_timout`");
    assert!(lb.status("web1").starts_with("UP"));
}
