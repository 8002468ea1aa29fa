//! Remote hosts over SSH, against real sshd processes on 127.0.0.1 with their own keys.

use crate::harness::*;

#[test]
fn hundred_sequential_commands_reuse_one_connection() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!("let h = {};\nfor i in 0..100 {{ h.run(\"true\"); }}\nprint(h.run(\"whoami\").stdout);\n", sshd.handle()))
        .run()
        .success()
        .stdout_is("runner-test\n\n");
    assert_eq!(sshd.accepted(), 1, "one connection for the whole run");
    sshd.assert_no_clients_left();
}

#[test]
fn array_argument_arrives_as_one_argv_element() {
    let sshd = Sshd::start();
    let marker = sshd.dir.path().join("pwned");
    Test::new()
        .script(&format!(
            "let h = {};\nprint(h.run([\"printf\", \"%s|\", \"a b; touch {m}\", \"$HOME\", \"it's\"]).stdout);\n",
            sshd.handle(),
            m = marker.display()
        ))
        .run()
        .success()
        .stdout_is(&format!("a b; touch {}|$HOME|it's|\n", marker.display()));
    assert!(
        !marker.exists(),
        "an argument was interpreted by the remote shell"
    );
}

#[test]
fn string_command_goes_through_the_remote_shell_with_options() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let h = {};\nlet r = h.run(\"cat; echo $GREETING; pwd\", #{{stdin: \"piped\\n\", env: #{{GREETING: \"hi there\"}}, cwd: \"/tmp\"}});\nprint(r.stdout);\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("piped\nhi there\n/tmp\n\n");
}

#[test]
fn non_zero_exit_names_host_command_code_and_stderr() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"echo oops >&2; exit 7\");\n",
            sshd.handle()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: `echo oops >&2; exit 7` exited with code 7",
            sshd.spec()
        ))
        .stderr_has("oops");
    sshd.assert_no_clients_left();
}

#[test]
fn remote_command_not_found_is_its_own_error() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!("let h = {};\ntry {{ h.run([\"no-such-program-xyz\"]) }} catch (e) {{ print(e.kind) }}\n", sshd.handle()))
        .run()
        .success()
        .stdout_is("not_found\n");
}

#[test]
fn command_timeout_names_the_host() {
    let sshd = Sshd::start();
    let out = Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"sleep 20\", #{{timeout: 0.5}});\n",
            sshd.handle()
        ))
        .run()
        .code(1)
        .stderr_has(&format!("{}: `sleep 20` timed out after 0.5s", sshd.spec()));
    assert!(out.elapsed.as_secs() < 10);
    sshd.assert_no_clients_left();
}

#[test]
fn wrong_key_is_an_authentication_error() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    Test::new()
        .script(&format!(
            "ssh(\"{}\", #{{key: \"{}\", known_hosts_file: \"{}\"}}).run(\"true\");",
            sshd.spec(),
            other.key.display(),
            sshd.known_hosts.display()
        ))
        .run()
        .code(1)
        .stderr_has(&format!("{}: ssh: authentication failed", sshd.spec()));
    sshd.assert_no_clients_left();
}

#[test]
fn closed_port_is_a_connection_refused_error() {
    let closed = ClosedPort::new();
    let port = closed.port;
    Test::new()
        .script(&format!("try {{ ssh(\"{SSH_USER}@127.0.0.1:{port}\", #{{known_hosts: \"off\"}}).run(\"true\") }} catch (e) {{ print(e.kind); throw e; }}"))
        .run()
        .code(1)
        .stdout_is("connection_refused\n")
        .stderr_has(&format!("{SSH_USER}@127.0.0.1:{port}: ssh: connection refused"));
    assert!(ssh_clients(port).is_empty());
}

#[test]
fn unknown_host_key_is_refused_under_strict() {
    let sshd = Sshd::start();
    let empty = sshd.dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    Test::new()
        .script(&format!(
            "ssh(\"{}\", #{{key: \"{}\", known_hosts_file: \"{}\"}}).run(\"true\");",
            sshd.spec(),
            sshd.key.display(),
            empty.display()
        ))
        .run()
        .code(1)
        .stderr_has("host key verification failed");
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "",
        "strict must not add the key"
    );
    // accept-new adds it and connects.
    Test::new()
        .script(&format!(
            "print(ssh(\"{}\", #{{key: \"{}\", known_hosts_file: \"{}\", known_hosts: \"accept-new\"}}).run(\"echo in\").stdout);",
            sshd.spec(),
            sshd.key.display(),
            empty.display()
        ))
        .run()
        .success()
        .stdout_is("in\n\n");
    assert!(std::fs::read_to_string(&empty)
        .unwrap()
        .contains("ssh-ed25519"));
    sshd.assert_no_clients_left();
}

#[test]
fn files_write_read_exists_on_the_remote_host() {
    let sshd = Sshd::start();
    let dir = sshd.dir.path().join("www");
    std::fs::create_dir(&dir).unwrap();
    std::process::Command::new("chown")
        .args([SSH_USER, dir.to_str().unwrap()])
        .status()
        .unwrap();
    let f = dir.join("index.html");
    Test::new()
        .script(&format!(
            "let h = {};\nprint(h.exists(\"{f}\"));\nh.write_file(\"{f}\", \"v2 it's\\n\");\nprint(h.exists(\"{f}\"));\nprint(h.read_file(\"{f}\"));\nh.read_file(\"{f}.missing\");\n",
            sshd.handle(),
            f = f.display()
        ))
        .run()
        .code(1)
        .stdout_is("false\ntrue\nv2 it's\n\n")
        .stderr_has(&format!("{}: cannot read {}.missing: ", sshd.spec(), f.display()))
        .stderr_has("No such file");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "v2 it's\n");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("runner"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn upload_and_download_of_50_mb_round_trip_byte_identical() {
    let sshd = Sshd::start();
    let t = Test::new();
    let data: Vec<u8> = (0..50_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(t.path().join("big"), &data).unwrap();
    let remote = format!("/tmp/runner-upload-{}", sshd.port);
    let out = t
        .script(&format!("let h = {};\nh.upload(\"big\", \"{remote}\");\nh.download(\"{remote}\", \"back\");\nh.run([\"rm\", \"{remote}\"]);\n", sshd.handle()))
        .run()
        .success();
    let back = std::fs::read(out.path("back")).unwrap();
    assert!(
        back == data,
        "downloaded file differs ({} bytes, expected {})",
        back.len(),
        data.len()
    );
}

#[test]
fn dry_run_does_not_run_remote_commands_but_reads_still_work() {
    let sshd = Sshd::start();
    let marker = sshd.dir.path().join("touched");
    Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"touch {m}\");\nprint(h.run(\"echo read\", #{{read_only: true}}).stdout);\n",
            sshd.handle(),
            m = marker.display()
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stdout_is("read\n\n")
        .stderr_has(&format!("would run `touch {}` on {}", marker.display(), sshd.spec()));
    assert!(!marker.exists());
}

#[test]
fn verbose_streams_remote_output_prefixed_with_the_host() {
    let sshd = Sshd::start();
    let secret = sshd.dir.path().join("secret");
    std::fs::write(&secret, "token-1234\n").unwrap();
    Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"echo one; echo two\");\nlet s = h.read_file(\"{}\");\n",
            sshd.handle(),
            secret.display()
        ))
        .args(&["-v"])
        .run()
        .success()
        .stderr_has(&format!("{}: one", sshd.spec()))
        .stderr_has(&format!("{}: two", sshd.spec()))
        // runner's own probes (here: reading a file) are not a command's output to show.
        .stderr_lacks("token-1234");
}

fn inventory_toml(a: &Sshd, b: &Sshd) -> String {
    format!(
        "[defaults]\nuser = \"{SSH_USER}\"\nknown_hosts = \"accept-new\"\nknown_hosts_file = \"{kh}\"\nregion = \"test\"\n\n\
         [groups.web]\nhosts = [\"web1\", \"web2\"]\nvars = {{ backend = \"web_servers\" }}\n\n\
         [hosts.web1]\naddress = \"127.0.0.1:{pa}\"\nkey = \"{ka}\"\nrole = \"first\"\n\n\
         [hosts.web2]\naddress = \"127.0.0.1:{pb}\"\nkey = \"{kb}\"\nrole = \"second\"\n",
        kh = a.dir.path().join("shared_known_hosts").display(),
        pa = a.port,
        pb = b.port,
        ka = a.key.display(),
        kb = b.key.display(),
    )
}

#[test]
fn parallel_over_two_inventory_hosts_and_limit_selects_one() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let script = "let r = parallel(hosts(\"web\"), 5, |h| `${h.name} ${h.vars.role} ${h.vars.backend} ${h.vars.region} ` + h.run(\"whoami\").stdout.split(\"\\n\")[0]);\nfor x in r { print(x) }\n";
    Test::new()
        .file("inv.toml", &inventory_toml(&a, &b))
        .script(script)
        .args(&["-i", "inv.toml"])
        .run()
        .success()
        .stdout_is(
            "web1 first web_servers test runner-test\nweb2 second web_servers test runner-test\n",
        );
    Test::new()
        .file("inv.toml", &inventory_toml(&a, &b))
        .script(script)
        .args(&["-i", "inv.toml", "--limit", "web*,!web1"])
        .run()
        .success()
        .stdout_is("web2 second web_servers test runner-test\n");
    assert_eq!(a.accepted() + b.accepted(), 3);
    a.assert_no_clients_left();
    b.assert_no_clients_left();
}

#[test]
fn ansible_yaml_inventory_maps_ansible_variables() {
    let (a, b) = (Sshd::start(), Sshd::start());
    let yaml = format!(
        "all:\n  vars:\n    ansible_user: {SSH_USER}\n    region: eu\n  children:\n    web:\n      vars:\n        backend: web_servers\n      hosts:\n        web1:\n          ansible_host: 127.0.0.1\n          ansible_port: {pa}\n          ansible_ssh_private_key_file: {ka}\n          known_hosts_file: {kha}\n        web2:\n          ansible_host: 127.0.0.1\n          ansible_port: {pb}\n          ansible_ssh_private_key_file: {kb}\n          known_hosts_file: {khb}\n    db:\n      hosts:\n        db1:\n          ansible_connection: local\n",
        pa = a.port,
        pb = b.port,
        ka = a.key.display(),
        kb = b.key.display(),
        kha = a.known_hosts.display(),
        khb = b.known_hosts.display(),
    );
    Test::new()
        .file("inv.yml", &yaml)
        .script("for h in hosts(\"web\") { print(`${h.name} ${h.vars.backend} ${h.vars.region} ` + h.run(\"whoami\").stdout.split(\"\\n\")[0]) }\nprint(hosts(\"db\")[0].run(\"echo local\").stdout.split(\"\\n\")[0]);\nprint(hosts().len());\n")
        .args(&["-i", "inv.yml"])
        .run()
        .success()
        .stdout_is("web1 web_servers eu runner-test\nweb2 web_servers eu runner-test\nlocal\n3\n");
    Test::new()
        .file("inv.yml", &yaml)
        .args(&["hosts", "-i", "inv.yml", "--limit", "web,!web2"])
        .run()
        .success()
        .stdout_has(&format!(
            "web1\t{SSH_USER}@127.0.0.1:{}\tgroups=web",
            a.port
        ));
}

#[test]
fn unknown_inventory_group_is_an_error_listing_the_groups() {
    Test::new()
        .file("inv.toml", "[groups.web]\nhosts = [\"a\"]\n")
        .script("hosts(\"db\");")
        .args(&["-i", "inv.toml"])
        .run()
        .code(1)
        .stderr_has("no group or host `db` in inv.toml; groups: all, web");
}

#[test]
fn bad_inventory_is_a_usage_error() {
    Test::new()
        .file("inv.toml", "[hosts.a]\nknown_hosts = \"sometimes\"\n")
        .script("1;")
        .args(&["-i", "inv.toml"])
        .run()
        .code(2)
        .stderr_has("known_hosts must be");
}

#[test]
fn sigint_during_a_remote_command_exits_130_and_leaves_no_ssh_process() {
    let sshd = Sshd::start();
    let (mut child, _dir) = Test::new()
        .script(&format!(
            "let h = {};\nstep(\"remote\");\nh.run(\"sleep 30\");\n",
            sshd.handle()
        ))
        .spawn();
    use std::io::Read;
    let mut stderr = child.stderr.take().unwrap();
    let mut buf = [0u8; 256];
    let _ = stderr.read(&mut buf).unwrap();
    // Wait until the connection is up and the command runs.
    eventually(
        std::time::Duration::from_secs(10),
        || sshd.accepted() > 0,
        "sshd never accepted the connection",
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    sshd.assert_no_clients_left();
}

#[test]
fn remote_command_killed_by_a_signal_is_its_own_error() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!("let h = {};\ntry {{ h.run(\"kill -9 $$\") }} catch (e) {{ print(e.kind); print(e.message) }}\n", sshd.handle()))
        .run()
        .success()
        .stdout_is(&format!("signal\n{}: `kill -9 $$` was killed by a signal\n", sshd.spec()));
}

#[test]
fn concurrent_commands_on_one_host_stay_within_sshds_max_sessions() {
    // sshd allows 10 sessions per connection (MaxSessions 10); 20 at once must queue, not fail.
    let sshd = Sshd::start();
    let out = Test::new()
        .script(&format!(
            "let h = {};\nlet ids = [];\nfor i in 0..20 {{ ids.push(i) }}\nlet r = parallel(ids, 20, |i| h.run(`sleep 0.3; echo ${{i}}`).stdout);\nprint(r.len());\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("20\n");
    // 20 x 0.3 s at most 8 at a time: at least 3 waves.
    assert!(out.elapsed.as_secs_f64() >= 0.9, "{:?}", out.elapsed);
    assert_eq!(sshd.accepted(), 1);
}

#[test]
fn server_that_never_answers_fails_at_the_connect_timeout() {
    let port = SilentPort::new().port;
    let out = Test::new()
        .script(&format!("ssh(\"{SSH_USER}@127.0.0.1:{port}\", #{{known_hosts: \"off\", connect_timeout: 1}}).run(\"true\");"))
        .run()
        .code(1)
        .stderr_has(&format!("{SSH_USER}@127.0.0.1:{port}: ssh: connection timed out"));
    assert!(out.elapsed.as_secs() < 8, "took {:?}", out.elapsed);
    assert!(ssh_clients(port).is_empty());
}

#[test]
fn remote_command_that_times_out_is_stopped_on_the_host() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            // Connected first: the 0.5 s are the command's own, not the handshake's too.
            "let h = {};\nh.run(\"true\");\ntry {{ h.run(\"sleep 43.1 && echo late\", #{{timeout: 0.5}}) }} catch (e) {{ print(e.kind) }}\nprint(h.run(\"echo still usable\").stdout);\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("timeout\nstill usable\n\n");
    eventually_ok(
        std::time::Duration::from_secs(3),
        || {
            let left = std::process::Command::new("pgrep")
                // A zombie is gone: PID 1 here reaps orphans slowly.
                .args(["-u", SSH_USER, "-r", "R,S,D,T", "-f", "sleep 43.1"])
                .output()
                .unwrap();
            match String::from_utf8_lossy(&left.stdout) {
                pids if pids.is_empty() => Ok(()),
                pids => Err(pids.into_owned()),
            }
        },
        "left running on the host",
    );
    sshd.assert_no_clients_left();
}

#[test]
fn remote_stderr_does_not_show_runners_pid_marker() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let r = {}.run(\"echo err >&2\");\nprint(r.stderr);\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("err\n\n");
}

/// The line of `~/.ssh/known_hosts` (ssh's own idea of home: the passwd entry) that would hold a
/// key of 127.0.0.1:`port`, if there is one.
fn users_known_host_entry(port: u16) -> Option<String> {
    let home = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .dir;
    let text = std::fs::read_to_string(home.join(".ssh/known_hosts")).unwrap_or_default();
    let entry = format!("[127.0.0.1]:{port} ");
    text.lines()
        .find(|l| l.starts_with(&entry))
        .map(String::from)
}

#[test]
fn known_hosts_off_records_the_key_nowhere_and_warns_once() {
    let sshd = Sshd::start();
    let file = sshd.dir.path().join("given_known_hosts");
    std::fs::write(&file, "").unwrap();
    // With a known_hosts_file, and without one (ssh would use ~/.ssh/known_hosts).
    let with_file = format!(
        "ssh(\"{}\", #{{key: \"{}\", known_hosts: \"off\", known_hosts_file: \"{}\"}})",
        sshd.spec(),
        sshd.key.display(),
        file.display()
    );
    let without = format!(
        "ssh(\"{}\", #{{key: \"{}\", known_hosts: \"off\"}})",
        sshd.spec(),
        sshd.key.display()
    );
    for handle in [with_file, without] {
        let out = Test::new()
            .script(&format!(
                "let h = {handle};\nh.run(\"true\");\nprint(h.run(\"echo in\").stdout);\n"
            ))
            .run()
            .success()
            .stdout_is("in\n\n")
            .stderr_has(&format!(
                "warning: {}: host key checking is off (known_hosts: \"off\")",
                sshd.spec()
            ));
        assert_eq!(
            out.stderr.matches("host key checking is off").count(),
            1,
            "one warning per host\n{}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "",
        "\"off\" wrote the unverified key into the known_hosts_file"
    );
    assert_eq!(
        users_known_host_entry(sshd.port),
        None,
        "\"off\" wrote the unverified key into ~/.ssh/known_hosts"
    );
    sshd.assert_no_clients_left();
}

#[test]
fn a_command_on_a_connected_host_answers_while_another_hosts_handshake_hangs() {
    let sshd = Sshd::start();
    let silent = SilentPort::new();
    // One item hangs in the handshake with the silent host (up to its 6 s connect timeout); the
    // other, a moment later, runs a command on the host already connected and times it.
    let out = Test::new()
        .script(&format!(
            "let good = {};\ngood.run(\"true\");\n\
             let hung = ssh(\"{SSH_USER}@127.0.0.1:{}\", #{{known_hosts: \"off\", connect_timeout: 6}});\n\
             let r = parallel([0, 1], 2, |i| if i == 0 {{\n\
                 let kind = \"connected?\";\n\
                 try {{ hung.run(\"true\") }} catch (e) {{ kind = e.kind }}\n\
                 kind\n\
             }} else {{\n\
                 sleep(0.5);\n\
                 let t = timestamp();\n\
                 good.run(\"true\");\n\
                 t.elapsed\n\
             }});\n\
             print(r[0]);\nprint(r[1]);\n",
            sshd.handle(),
            silent.port
        ))
        .run()
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "connect_timeout", "{}", out.stdout);
    let took: f64 = lines[1].parse().unwrap();
    assert!(
        took < 2.0,
        "a command on a connected host waited {took} s for another host's handshake"
    );
    sshd.assert_no_clients_left();
}

#[test]
fn commands_to_a_new_host_at_once_share_one_handshake() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let h = {};\nlet r = parallel([0, 1, 2, 3, 4, 5], 6, |i| h.run(\"echo ok\").stdout);\nprint(r.len());\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("6\n");
    assert_eq!(sshd.accepted(), 1, "one login for every command");
}

#[test]
fn a_thousand_commands_fifty_at_a_time_on_one_host_log_in_once() {
    // sshd's default MaxSessions is 10: commands queue for a session and a refused session is
    // tried again on the same connection, never a reason for an error or a second login.
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let h = {};\nlet ids = [];\nfor i in 0..1000 {{ ids.push(i) }}\nlet r = parallel(ids, 50, |i| h.run([\"echo\", i]).stdout);\n\
             let bad = 0;\nfor i in 0..1000 {{ if r[i] != `${{i}}\n` {{ bad += 1 }} }}\nprint(bad);\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("0\n");
    assert_eq!(sshd.accepted(), 1, "one login for the whole run");
    sshd.assert_no_clients_left();
}

#[test]
fn missing_key_file_is_a_usage_error_naming_the_file() {
    let sshd = Sshd::start();
    let missing = sshd.dir.path().join("no_such_key");
    Test::new()
        .script(&format!(
            "try {{ ssh(\"{}\", #{{key: \"{}\", known_hosts_file: \"{}\"}}).run(\"true\") }} catch (e) {{ print(e.kind); print(e.message) }}",
            sshd.spec(),
            missing.display(),
            sshd.known_hosts.display()
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "usage\n{}: ssh: the key file {} does not exist\n",
            sshd.spec(),
            missing.display()
        ));
    assert_eq!(sshd.accepted(), 0, "nothing was tried with a missing key");
}

#[test]
fn connection_dropped_under_a_command_is_a_connection_error() {
    let sshd = Sshd::start();
    // Where the remote user may write.
    let started = std::path::PathBuf::from(format!("/tmp/runner-started-{}", sshd.port));
    let _ = std::fs::remove_file(&started);
    let (child, _dir) = Test::new()
        .script(&format!(
            "let h = {};\ntry {{ h.run(\"touch {}; sleep 30\") }} catch (e) {{ print(e.kind); print(e.message) }}\n",
            sshd.handle(),
            started.display()
        ))
        .spawn();
    eventually(
        std::time::Duration::from_secs(10),
        || started.exists(),
        "the command never started",
    );
    sshd.drop_connections();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        format!(
            "connection\n{}: `touch {}; sleep 30`: the connection dropped while it ran\n",
            sshd.spec(),
            started.display()
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_command_after_the_connection_dropped_reconnects() {
    let sshd = Sshd::start();
    let (child, dir) = Test::new()
        .script(&format!(
            "let h = {};\nh.run(\"true\");\nlocal().run(\"touch up\");\nwait_until(20, || local().exists(\"go\"));\nprint(h.run(\"echo back\").stdout);\n",
            sshd.handle()
        ))
        .spawn();
    eventually(
        std::time::Duration::from_secs(10),
        || dir.path().join("up").exists(),
        "the first command never ran",
    );
    sshd.drop_connections();
    eventually(
        std::time::Duration::from_secs(5),
        || sshd.client_processes().is_empty(),
        "the master outlived its connection",
    );
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "back\n\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sshd.accepted(), 2, "one new login after the drop");
    sshd.assert_no_clients_left();
}

#[test]
fn a_run_killed_outright_leaves_no_ssh_master_behind() {
    // SIGKILL gives runner no chance to close anything: its reaper closes every master it opened.
    let (a, b) = (Sshd::start(), Sshd::start());
    let (mut child, dir) = Test::new()
        .script(&format!(
            "let hs = [{}, {}];\nparallel(hs, 2, |h| h.run(\"true\"));\nlocal().run(\"touch up\");\nsleep(30);\n",
            a.handle(),
            b.handle()
        ))
        .spawn();
    eventually(
        std::time::Duration::from_secs(10),
        || dir.path().join("up").exists(),
        "the commands never ran",
    );
    assert!(!a.client_processes().is_empty() && !b.client_processes().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    a.assert_no_clients_left();
    b.assert_no_clients_left();
}

/// A jump host and a target: `jump` also accepts the target's client key, and one known_hosts file
/// holds both host keys.
fn jump_and_target() -> (Sshd, Sshd, std::path::PathBuf) {
    let (jump, target) = (Sshd::start(), Sshd::start());
    let key = std::fs::read_to_string(target.key.with_extension("pub")).unwrap();
    let authorized = jump.dir.path().join("authorized_keys");
    let mut both = std::fs::read_to_string(&authorized).unwrap();
    both.push_str(&key);
    std::fs::write(&authorized, both).unwrap();
    let known = target.dir.path().join("both_known_hosts");
    std::fs::write(
        &known,
        std::fs::read_to_string(&jump.known_hosts).unwrap()
            + &std::fs::read_to_string(&target.known_hosts).unwrap(),
    )
    .unwrap();
    (jump, target, known)
}

#[test]
fn ansible_ssh_common_args_jump_reaches_the_target_and_the_hop_gets_key_and_known_hosts() {
    let (jump, target, known) = jump_and_target();
    let inv = format!(
        "[web]\nweb1 ansible_host=127.0.0.1 ansible_port={} ansible_user={SSH_USER} ansible_ssh_private_key_file={}\n\n[web:vars]\nansible_ssh_common_args='-J {SSH_USER}@127.0.0.1:{} -o UserKnownHostsFile={}'\n",
        target.port,
        target.key.display(),
        jump.port,
        known.display()
    );
    Test::new()
        .file("hosts", &inv)
        .script("print(hosts(\"web\")[0].run(\"echo through the jump\").stdout);")
        .args(&["-i", "hosts"])
        .run()
        .success()
        .stdout_is("through the jump\n\n");
    assert_eq!(jump.accepted(), 1, "the jump host carried the connection");
    assert_eq!(target.accepted(), 1);
}

#[test]
fn a_jump_host_that_refuses_is_named_in_the_error() {
    let target = Sshd::start();
    let closed = free_port();
    Test::new()
        .script(&format!(
            "ssh(\"{}\", #{{key: \"{}\", known_hosts_file: \"{}\", jump: \"{SSH_USER}@127.0.0.1:{closed}\"}}).run(\"true\");",
            target.spec(),
            target.key.display(),
            target.known_hosts.display()
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "{}: ssh: the connection through jump host {SSH_USER}@127.0.0.1:{closed} closed before the target answered: a jump host refused or is unreachable",
            target.spec()
        ));
    assert_eq!(target.accepted(), 0);
}

#[test]
fn ssh_config_alias_with_proxyjump_user_and_port_works() {
    let (jump, target, known) = jump_and_target();
    let t = Test::new();
    let config = t.path().join("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host target\n  HostName 127.0.0.1\n  Port {}\n  User {SSH_USER}\n  ProxyJump hop\n\nHost hop\n  HostName 127.0.0.1\n  Port {}\n  User {SSH_USER}\n",
            target.port, jump.port
        ),
    )
    .unwrap();
    t.script(&format!(
        "let h = ssh(\"target\", #{{ssh_config: \"{}\", key: \"{}\", known_hosts_file: \"{}\"}});\nprint(h.run(\"whoami\").stdout);",
        config.display(),
        target.key.display(),
        known.display()
    ))
    .run()
    .success()
    .stdout_is(&format!("{SSH_USER}\n\n"));
    assert_eq!(
        jump.accepted(),
        1,
        "ProxyJump of the ssh_config went through the hop"
    );
}

#[test]
fn ansible_host_key_checking_false_reaches_a_host_whose_key_is_unknown() {
    let sshd = Sshd::start();
    let host = |extra: &str| {
        format!(
            "[web]\nweb1 ansible_host=127.0.0.1 ansible_port={} ansible_user={SSH_USER} ansible_ssh_private_key_file={} {extra}\n",
            sshd.port,
            sshd.key.display()
        )
    };
    let script = "print(hosts(\"web\")[0].run(\"echo in\").stdout);";
    // The key is in no known_hosts file: strict checking refuses it...
    Test::new()
        .file(
            "hosts",
            &host("ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null'"),
        )
        .script(script)
        .args(&["-i", "hosts"])
        .run()
        .code(1)
        .stderr_has("host key verification failed");
    // ...and each way Ansible turns the check off reaches it.
    for off in [
        "ansible_host_key_checking=false",
        "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'",
    ] {
        Test::new()
            .file("hosts", &host(off))
            .script(script)
            .args(&["-i", "hosts"])
            .run()
            .success()
            .stdout_is("in\n\n");
    }
}

#[test]
fn ansible_password_is_warned_about_naming_it() {
    let sshd = Sshd::start();
    Test::new()
        .file(
            "inv.yml",
            &format!(
                "all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n      ansible_port: {}\n      ansible_user: {SSH_USER}\n      ansible_password: s3cret\n      ansible_ssh_private_key_file: {}\n      known_hosts_file: {}\n",
                sshd.port,
                sshd.key.display(),
                sshd.known_hosts.display()
            ),
        )
        .script("print(hosts()[0].run(\"echo key login\").stdout);")
        .args(&["-i", "inv.yml"])
        .run()
        .success()
        .stdout_is("key login\n\n")
        .stderr_has("warning: inventory inv.yml: ansible_password (on web1) is not applied: runner logs in with SSH keys");
}

#[test]
fn become_runs_commands_and_writes_files_as_root_through_sudo() {
    let sshd = Sshd::start();
    // A folder only root may write to.
    let dir = sshd.dir.path().join("etc");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join("app.conf");
    Test::new()
        .script(&format!(
            "let h = {};\nprint(h.run(\"id -un\", #{{become: true}}).stdout.split(\"\\n\")[0] + \" \" + h.run(\"id -un\").stdout);\n\
             try {{ h.write_file(\"{f}\", \"x\\n\") }} catch (e) {{ print(e.kind) }}\n\
             print(h.write_file(\"{f}\", \"port=80\\n\", #{{mode: \"0600\", become: true}}).changed);\n\
             print(h.write_file(\"{f}\", \"port=80\\n\", #{{mode: \"0600\", sudo: true}}).changed);\n\
             print(h.read_file(\"{f}\"));",
            sshd.handle(),
            f = f.display()
        ))
        .run()
        .code(1)
        .stdout_has("root runner-test\n")
        .stdout_has("io\ntrue\nfalse\n")
        // The login user cannot read what root wrote with mode 0600.
        .stderr_has("Permission denied");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&f).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0, "written as root");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "port=80\n");
}

#[test]
fn become_that_sudo_would_ask_a_password_for_fails_at_once_saying_so() {
    let sshd = Sshd::start();
    let out = Test::new()
        .script(&format!(
            "let h = {};\ntry {{ h.run(\"id\", #{{become_user: \"nobody\"}}) }} catch (e) {{ print(e.kind); print(e.message) }}",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_has("become\n")
        .stdout_has("cannot run `id` as nobody with sudo: sudo asks for a password, and runner runs sudo -n, which never prompts");
    assert!(out.elapsed.as_secs() < 10, "it waited: {:?}", out.elapsed);
}

#[test]
fn ansible_become_in_the_inventory_applies_to_every_command_of_the_host() {
    let sshd = Sshd::start();
    let inv = format!(
        "[web]\nweb1 ansible_host=127.0.0.1 ansible_port={} ansible_user={SSH_USER} ansible_ssh_private_key_file={} ansible_become=true known_hosts_file={}\n",
        sshd.port,
        sshd.key.display(),
        sshd.known_hosts.display()
    );
    Test::new()
        .file("hosts", &inv)
        .script("let h = hosts(\"web\")[0];\nprint(h.run(\"id -un\").stdout.split(\"\\n\")[0]);\nprint(h.run(\"id -un\", #{become: false}).stdout.split(\"\\n\")[0]);")
        .args(&["-i", "hosts"])
        .run()
        .success()
        .stdout_is("root\nrunner-test\n");
}
