//! `connect_ahead(hosts)`: SSH handshakes started in the background, waited for by the first
//! command on each host, against real sshd processes (and a port that never answers).

use std::time::Duration;

use crate::harness::*;

#[test]
fn connect_ahead_returns_at_once_and_the_run_waits_for_the_handshake_at_its_end() {
    // A host that never sends a banner: its handshake hangs until the 3 s connect timeout.
    let silent = SilentPort::new();
    let (mut child, dir) = Test::new()
        .script(&format!(
            "let hung = ssh(\"{SSH_USER}@127.0.0.1:{}\", #{{known_hosts: \"off\", connect_timeout: 3}});\n\
             connect_ahead([hung, local()]);\n\
             local().write_file(\"returned\", \"\");\n",
            silent.port
        ))
        .spawn();
    let returned = dir.path().join("returned");
    eventually(
        Duration::from_secs(10),
        || returned.exists(),
        "connect_ahead did not return",
    );
    // The script is done, and its handshake still hangs: the run waits for it before it ends.
    assert!(
        !ssh_clients(silent.port).is_empty(),
        "no handshake was started"
    );
    assert!(matches!(child.try_wait(), Ok(None)), "the run did not wait");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    eventually(
        Duration::from_secs(3),
        || ssh_clients(silent.port).is_empty(),
        "an ssh process was left behind",
    );
}

#[test]
fn the_first_command_on_a_host_connected_ahead_uses_that_connection() {
    let sshd = Sshd::start();
    Test::new()
        .script(&format!(
            "let h = {};\nconnect_ahead([h, h]);\nprint(h.run(\"echo hi\").stdout);\nprint(h.run(\"echo again\").stdout);\n",
            sshd.handle()
        ))
        .run()
        .success()
        .stdout_is("hi\n\nagain\n\n");
    assert_eq!(
        sshd.accepted(),
        1,
        "one login for the handshake ahead and both commands"
    );
    sshd.assert_no_clients_left();
}

#[test]
fn a_handshake_ahead_that_failed_is_reported_by_the_first_command_on_that_host() {
    let closed = ClosedPort::new();
    let port = closed.port;
    Test::new()
        .script(&format!(
            "let h = ssh(\"{SSH_USER}@127.0.0.1:{port}\", #{{known_hosts: \"off\"}});\n\
             connect_ahead([h]);\n\
             print(\"ahead\");\n\
             try {{ h.run(\"true\") }} catch (e) {{ print(e.kind); throw e; }}\n"
        ))
        .run()
        .code(1)
        .stdout_is("ahead\nconnection_refused\n")
        .stderr_has(&format!(
            "{SSH_USER}@127.0.0.1:{port}: ssh: connection refused"
        ));
    assert!(ssh_clients(port).is_empty());
}

#[test]
fn connect_ahead_of_something_else_than_hosts_is_a_clear_error() {
    Test::new()
        .script("connect_ahead([local(), \"web1\"]);\n")
        .run()
        .code(1)
        .stderr_has("connect_ahead: expected hosts, got a string")
        .stderr_has("main.rhai:1:1");
}
