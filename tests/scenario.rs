//! SCENARIOS.md §2 end to end: `scripts/docker-rolling-upgrade.rhai` upgrades two docker web
//! servers behind a real haproxy, each "host" a test sshd on 127.0.0.1 (the same docker engine,
//! reached as the test user over SSH), named by an inventory, under a request loop.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::harness::*;

/// One web server "host": its sshd, its v1 container published on a 127.0.0.1 port, and its
/// web root (a bind mount holding the page). The container is removed when dropped.
struct WebHost {
    sshd: Sshd,
    container: String,
    port: u16,
    root: TempDir,
}

impl WebHost {
    fn start(page: &str) -> WebHost {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let container = format!(
            "runner-test-scenario-{}-{}-{nanos:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        // Writable by the test user (write_file renames a temp file into it), readable by docker.
        let root = tempfile::Builder::new()
            .prefix("runner-www-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let index = root.path().join("index.html");
        std::fs::write(&index, page).unwrap();
        std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o644)).unwrap();
        // Removed when dropped, from here on.
        let mut host = WebHost {
            sshd: Sshd::start(),
            container,
            port: 0,
            root,
        };
        // Docker picks the published port (`-p 127.0.0.1::80`), which the redeploy publishes again.
        docker_ok(&[
            "run",
            "-d",
            "--name",
            &host.container,
            "-p",
            "127.0.0.1::80",
            "-v",
            &format!("{}:/www:ro", host.root.path().display()),
            &test_image("v1"),
        ]);
        let published = docker_ok(&["port", &host.container, "80/tcp"]);
        host.port = published
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{}: published as {published:?}", host.container));
        let port = host.port;
        // Serving: docker's proxy accepts connections before the httpd in the container listens.
        let page = page.trim().to_string();
        eventually_ok(
            Duration::from_secs(15),
            || match http_get_raw(port, "/") {
                Ok((200, body)) if body == page => Ok(()),
                other => Err(format!("{other:?}")),
            },
            format_args!("{} does not serve its page", host.container),
        );
        host
    }

    /// The image of its container and whether it runs, "absent" when there is none.
    fn state(&self) -> String {
        let format = "{{.State.Status}} {{.Config.Image}}";
        let out = docker(&["container", "inspect", "--format", format, &self.container]);
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        } else {
            "absent".into()
        }
    }

    /// The inventory table of this host.
    fn inventory(&self, name: &str, extra: &str) -> String {
        format!(
            "[hosts.{name}]\naddress = \"127.0.0.1:{sp}\"\nkey = \"{key}\"\nknown_hosts_file = \"{kh}\"\n\
             container = \"{c}\"\npublish = \"127.0.0.1:{p}\"\nweb_root = \"{root}\"\n{extra}\n",
            sp = self.sshd.port,
            key = self.sshd.key.display(),
            kh = self.sshd.known_hosts.display(),
            c = self.container,
            p = self.port,
            root = self.root.path().display(),
        )
    }
}

impl Drop for WebHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
    }
}

/// Two hosts and the haproxy in front of them, all serving v1: `web1` (inventory name and HAProxy
/// name alike) and `node2` (HAProxy's `web2`, named by `haproxy_name`).
/// The haproxy checks every 500 ms and has `retries 0`: a request sent to a stopped backend fails.
fn setup() -> (WebHost, WebHost, Haproxy) {
    let a = WebHost::start("web1 v1\n");
    let b = WebHost::start("web2 v1\n");
    let lb = Haproxy::builder()
        .servers(&[("web1", a.port), ("web2", b.port)])
        .check_inter("500ms")
        .retries(0)
        .start();
    lb.wait_up("web1");
    lb.wait_up("web2");
    (a, b, lb)
}

/// The inventory: group `web` = web1, node2; `node2_extra` adds vars to node2.
fn inventory(a: &WebHost, b: &WebHost, node2_extra: &str) -> String {
    format!(
        "[defaults]\nuser = \"{SSH_USER}\"\n\n[groups.web]\nhosts = [\"web1\", \"node2\"]\n\n{}\n{}",
        a.inventory("web1", ""),
        b.inventory("node2", &format!("haproxy_name = \"web2\"\n{node2_extra}")),
    )
}

/// `runner play scripts/docker-rolling-upgrade.rhai` with the inventory, upgrading to v2.
fn play(lb: &Haproxy, inventory: &str) -> Test {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker-rolling-upgrade.rhai");
    Test::new().file("inv.toml", inventory).args(&[
        "play",
        script.to_str().unwrap(),
        "-i",
        "inv.toml",
        "-p",
        &format!("socket={}", lb.sock()),
        "-p",
        &format!("image={}", test_image("v2")),
        "-p",
        "html=/www",
        "-p",
        "health_cmd=/bin/busybox wget -q -O- http://127.0.0.1/",
        "--yes",
        "--journal",
        "j.jsonl",
    ])
}

#[test]
fn docker_rolling_upgrade_over_ssh_hosts_drops_no_request_and_upgrades_one_server_at_a_time() {
    let (a, b, lb) = setup();
    let v2 = test_image("v2");
    let traffic = Traffic::start(lb.front);
    traffic.wait_past(0, 20);
    let out = play(&lb, &inventory(&a, &b, ""))
        .run()
        .success()
        .stderr_has("✓ Upgrading web_servers/web1")
        .stderr_has("✓ Upgrading web_servers/web2");
    let after = traffic.mark();
    traffic.wait_past(after, 20);
    let bodies = traffic.stop_all_ok();

    let (page1, page2) = (format!("web1 {v2}"), format!("web2 {v2}"));
    let last = &bodies[after + 1..];
    assert!(
        last.contains(&page1) && last.contains(&page2),
        "after the upgrade: {last:?}"
    );
    assert_eq!(http_get_raw(a.port, "/"), Ok((200, page1)));
    assert_eq!(http_get_raw(b.port, "/"), Ok((200, page2)));
    assert_eq!(a.state(), format!("running {v2}"));
    assert_eq!(b.state(), format!("running {v2}"));
    assert!(lb.status("web1").starts_with("UP"), "{}", lb.status("web1"));
    assert!(lb.status("web2").starts_with("UP"), "{}", lb.status("web2"));

    // One server out at a time, each redeployed on its own host (over SSH) while out of rotation,
    // the whole upgrade under its lock (on this machine).
    let sock = lb.sock();
    let lock = |how: &str| {
        let name = format!("rolling haproxy({sock}) web_servers");
        ("local".to_string(), format!("{how} lock {name:?}"))
    };
    let mut expected = vec![lock("take")];
    for (server, host, h) in [("web1", "web1", &a), ("web2", "node2", &b)] {
        let lb_state = |s: &str| {
            (
                sock.clone(),
                format!("set server web_servers/{server} state {s}"),
            )
        };
        let on_host = |action: String| (host.to_string(), action);
        expected.extend([
            lb_state("drain"),
            lb_state("maint"),
            on_host(format!("docker rm {}", h.container)),
            on_host(format!("docker run {} (image {v2})", h.container)),
            on_host(format!("write {}/index.html", h.root.path().display())),
            lb_state("ready"),
        ]);
    }
    expected.push(lock("release"));
    let j: Vec<(String, String)> = journal_lines(&out.path("j.jsonl"))
        .iter()
        .map(|e| {
            (
                e["target"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(j, expected);
    a.sshd.assert_no_clients_left();
    b.sshd.assert_no_clients_left();
}

#[test]
fn docker_rolling_upgrade_stops_at_a_host_whose_image_is_missing_leaving_its_old_container_serving()
{
    let (a, b, lb) = setup();
    let v2 = test_image("v2");
    // node2's image lives in a "registry" on a closed 127.0.0.1 port: its pull fails at once.
    let registry = ClosedPort::new();
    let absent = format!("127.0.0.1:{}/runner-test-absent:v2", registry.port);
    let traffic = Traffic::start(lb.front);
    traffic.wait_past(0, 20);
    let out = play(&lb, &inventory(&a, &b, &format!("image = \"{absent}\"\n")))
        .run()
        .code(1)
        .stderr_has("rolling upgrade stopped at web_servers/web2, left out of rotation (maintenance)")
        .stderr_has(&format!(
            "redeploy of {} on node2 stopped before changing anything; the old container {} (image {}, running) is left as it was",
            b.container,
            b.container,
            test_image("v1")
        ));
    let after = traffic.mark();
    traffic.wait_past(after, 20);
    let bodies = traffic.stop_all_ok();
    // web1 upgraded and back in rotation, serving every request; web2 out, its old container intact.
    assert!(
        bodies[after + 1..]
            .iter()
            .all(|b| *b == format!("web1 {v2}")),
        "{:?}",
        &bodies[after + 1..]
    );
    assert_eq!(a.state(), format!("running {v2}"));
    assert!(lb.status("web1").starts_with("UP"), "{}", lb.status("web1"));
    assert_eq!(lb.status("web2"), "MAINT");
    assert_eq!(b.state(), format!("running {}", test_image("v1")));
    assert_eq!(http_get_raw(b.port, "/"), Ok((200, "web2 v1".to_string())));
    // Nothing of node2 changed but its HAProxy state: the journal ends with what was left, and
    // the release of the upgrade's lock.
    let journal = journal_lines(&out.path("j.jsonl"));
    let j: Vec<&str> = journal
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    let lock = |how: &str| format!("{how} lock \"rolling haproxy({}) web_servers\"", lb.sock());
    assert_eq!(
        j,
        [
            &lock("take"),
            "set server web_servers/web1 state drain",
            "set server web_servers/web1 state maint",
            &format!("docker rm {}", a.container),
            &format!("docker run {} (image {v2})", a.container),
            &format!("write {}/index.html", a.root.path().display()),
            "set server web_servers/web1 state ready",
            "set server web_servers/web2 state drain",
            "set server web_servers/web2 state maint",
            &format!("docker pull {absent}"),
            &lock("release"),
        ]
    );
    assert_ne!(journal[journal.len() - 2]["outcome"], "ok", "{journal:?}");
    a.sshd.assert_no_clients_left();
    b.sshd.assert_no_clients_left();
}
