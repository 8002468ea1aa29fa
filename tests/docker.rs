//! Docker on the real engine of this machine. No registry is reachable from it, so the tests build
//! their own web server image with `docker import` (busybox httpd serving a page that names its
//! version), and any pull they provoke goes to a closed port on 127.0.0.1. Containers get unique
//! names and are removed when the test ends, pass or fail.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::harness::*;

/// Container names unique to this test, removed (with `docker rm -f`) when the test ends.
struct Containers(Vec<String>);

impl Containers {
    fn new(n: usize) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Containers(
            (0..n)
                .map(|_| {
                    format!(
                        "runner-test-{}-{}-{nanos:x}",
                        std::process::id(),
                        NEXT.fetch_add(1, Ordering::SeqCst)
                    )
                })
                .collect(),
        )
    }

    fn name(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = docker(&args);
    }
}

/// The state and image of a container, "absent" when there is none.
fn state(name: &str) -> String {
    let out = docker(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Status}} {{.Config.Image}}",
        name,
    ]);
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        "absent".into()
    }
}

/// A plain HTTP/1.0 GET of http://127.0.0.1:port/, retried for a few seconds while the published
/// port comes up; returns the whole response.
fn http_get(port: u16) -> String {
    eventually_ok(
        Duration::from_secs(10),
        || {
            let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut out = String::new();
                s.read_to_string(&mut out)?;
                Ok(out)
            });
            match attempt {
                Ok(r) if r.starts_with("HTTP/") => Ok(r),
                other => Err(format!("{other:?}")),
            }
        },
        format_args!("no HTTP answer on 127.0.0.1:{port}"),
    )
}

/// An image reference whose registry is a closed port on 127.0.0.1 (`registry`, held by the test):
/// a pull fails at once, and nothing leaves this machine.
fn unpullable_image(registry: &ClosedPort) -> String {
    format!("127.0.0.1:{}/runner-test-absent:v1", registry.port)
}

#[test]
fn run_with_a_published_port_and_a_bind_mounted_web_root_serves_the_mounted_page() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    let port = free_port();
    let t = Test::new().file("www/index.html", "the mounted page\n");
    let www = t.path().join("www").display().to_string();
    let out = t
        .script(&format!(
            r#"let d = docker();
               let id = d.run(#{{image: "{img}", name: "{name}", ports: ["127.0.0.1:{port}:80"],
                                 volumes: ["{www}:/www:ro"], labels: #{{"runner.test": "yes"}}}});
               print(id.len());
               print(wait_http("http://127.0.0.1:{port}/", #{{contains: "mounted", timeout: 10}}).body);
               print(d.exists("{name}"));
               print(d.running("{name}"));
               let c = d.inspect("{name}");
               print(c.Config.Image);
               print(c.Id == id);
               print(d.ps(#{{filter: "label=runner.test=yes"}}).filter(|p| p.Names == "{name}").len());
            "#
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is(&format!(
            "64\nthe mounted page\n\ntrue\ntrue\n{img}\ntrue\n1\n"
        ));
    assert!(http_get(port).contains("the mounted page"));
    // One journal entry for the change, at the docker level (not the docker commands it ran).
    let journal = journal_lines(&out.path("j.jsonl"));
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(
        journal[0]["action"],
        format!("docker run {name} (image {img})")
    );
    assert_eq!(journal[0]["target"], "local");
    assert_eq!(journal[0]["outcome"], "ok");
}

#[test]
fn redeploy_replaces_a_running_container_with_the_new_version() {
    let (v1, v2) = (test_image("v1"), test_image("v2"));
    let c = Containers::new(1);
    let name = c.name(0);
    let port = free_port();
    Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               let d = docker();
               let spec = #{{name: "{name}", ports: ["127.0.0.1:{port}:80"],
                            health_cmd: "/bin/busybox wget -q -O- http://127.0.0.1/", health_interval: 0.2}};
               spec.image = "{v1}";
               let first = dk::redeploy(d, spec);
               print(http_get("http://127.0.0.1:{port}/").body);
               spec.image = "{v2}";
               spec.timeout = 20;
               let second = dk::redeploy(d, spec);
               print(http_get("http://127.0.0.1:{port}/").body);
               print(second != first);
               print(d.exists(first));
               print(d.inspect("{name}").State.Health.Status);
            "#
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "{TEST_IMAGE} v1\n\n{TEST_IMAGE} v2\n\ntrue\nfalse\nhealthy\n"
        ));
    assert_eq!(state(name), format!("running {v2}"));
    assert!(http_get(port).contains(&format!("{TEST_IMAGE} v2")));
}

#[test]
fn wait_healthy_passes_once_the_health_command_succeeds() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{name}",
                        health_cmd: "/bin/busybox wget -q -O- http://127.0.0.1/", health_interval: 0.2}});
               d.wait_healthy("{name}", 20);
               print(d.inspect("{name}").State.Health.Status);
            "#
        ))
        .run()
        .success()
        .stdout_is("healthy\n");
}

#[test]
fn container_that_exits_at_once_fails_wait_healthy_at_once_with_its_logs() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{name}",
                        cmd: ["/bin/busybox", "sh", "-c", "echo cannot open /etc/app.conf >&2; exit 3"]}});
               let t = timestamp();
               try {{
                   d.wait_healthy("{name}", 30);
               }} catch (e) {{
                   print(e.kind);
                   print(t.elapsed < 5.0); // at once: long before the 30 s timeout
                   throw e;
               }}
            "#
        ))
        .run()
        .code(1)
        .stdout_is("container_exited\ntrue\n")
        .stderr_has(&format!("local: container {name} exited with code 3"))
        .stderr_has("cannot open /etc/app.conf");
}

#[test]
fn container_that_turns_unhealthy_fails_wait_healthy_before_the_timeout() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    let out = Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{name}", health_cmd: "echo backend down; exit 1",
                        health_interval: 0.2, health_retries: 1}});
               d.wait_healthy("{name}", 30);
            "#
        ))
        .run()
        .code(1)
        .stderr_has(&format!("local: container {name} is unhealthy"))
        .stderr_has("backend down");
    assert!(
        out.elapsed < Duration::from_secs(10),
        "took {:?}",
        out.elapsed
    );
}

#[test]
fn wait_healthy_times_out_saying_what_it_saw_last() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{name}", health_cmd: "echo not yet; exit 1",
                        health_interval: 0.2, health_start_period: 60}});
               d.wait_healthy("{name}", 1);
            "#
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "local: waiting for container {name} to become healthy: still not done after 1s; last seen: running, health starting, last check: exit code 1: not yet"
        ));
}

#[test]
fn missing_image_is_a_clear_error_naming_host_container_and_image() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    let registry = ClosedPort::new();
    let absent = unpullable_image(&registry);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               print(d.image_exists("{img}"));
               print(d.image_exists("{absent}"));
               try {{ d.pull("{absent}") }} catch (e) {{ print(e.kind); print(e.message) }}
               try {{ d.run(#{{image: "runner-test-absent:v1", name: "{name}", pull: false}}) }} catch (e) {{ print(e.message) }}
               d.run(#{{image: "{absent}", name: "{name}"}});
            "#
        ))
        .run()
        .code(1)
        .stdout_has("true\nfalse\nimage_missing\n")
        .stdout_has(&format!("local: docker pull {absent}: image {absent} is not present on local, and no registry is reachable to pull it from"))
        .stdout_has(&format!("local: docker run {name} (image runner-test-absent:v1): image runner-test-absent:v1 is not present on local, and pulling is off"))
        .stderr_has(&format!("local: docker run {name} (image {absent}): image {absent} is not present on local, and no registry is reachable to pull it from"));
    assert_eq!(state(name), "absent");
}

#[test]
fn port_conflict_is_a_clear_error_and_leaves_no_container_behind() {
    let img = test_image("v1");
    let c = Containers::new(3);
    let (first, second, third) = (c.name(0), c.name(1), c.name(2));
    let port = free_port();
    // A program (not a container) holding a port.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{first}", ports: ["127.0.0.1:{port}:80"]}});
               try {{ d.run(#{{image: "{img}", name: "{third}", ports: ["127.0.0.1:{held_port}:80"]}}) }}
               catch (e) {{ print(e.kind); print(e.message) }}
               d.run(#{{image: "{img}", name: "{second}", ports: ["127.0.0.1:{port}:80"]}});
            "#
        ))
        .run()
        .code(1)
        .stdout_has(&format!("port_conflict\nlocal: docker run {third} (image {img}): port 127.0.0.1:{held_port} is already in use on local"))
        .stderr_has(&format!("local: docker run {second} (image {img}): port 127.0.0.1:{port} is already in use on local"))
        .stderr_has("the container could not start and was removed");
    assert_eq!(state(first), format!("running {img}"));
    assert_eq!(
        state(second),
        "absent",
        "a container that could not start holds its name"
    );
    assert_eq!(state(third), "absent");
    drop(held);
}

#[test]
fn name_conflict_is_a_clear_error_naming_the_holder() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    let id = docker_ok(&["create", "--name", name, &img]);
    Test::new()
        .script(&format!(
            r#"docker().run(#{{image: "{img}", name: "{name}"}});"#
        ))
        .run()
        .code(1)
        .stderr_has(&format!(
            "local: docker run {name} (image {img}): the name {name} is already in use on local by container {}",
            &id[..12]
        ));
}

#[test]
fn docker_engine_not_reachable_is_a_clear_error() {
    Test::new()
        .script("docker().ps();")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .run()
        .code(1)
        .stderr_has("local: docker ps: the docker engine on local is not reachable")
        .stderr_has("Cannot connect to the Docker daemon");
}

#[test]
fn dry_run_creates_and_removes_no_container() {
    let (v1, v2) = (test_image("v1"), test_image("v2"));
    let c = Containers::new(2);
    let (old, new) = (c.name(0), c.name(1));
    docker_ok(&["run", "-d", "--name", old, &v1]);
    Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               let d = docker();
               d.rm("{old}");
               d.stop("{old}");
               print(d.run(#{{image: "{v1}", name: "{new}"}}));
               print(dk::redeploy(d, #{{image: "{v2}", name: "{old}"}}));
               print(d.running("{old}"));
            "#
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stdout_is("\n\ntrue\n")
        .stderr_has(&format!("would docker rm {old} on local"))
        .stderr_has(&format!("would docker stop {old} on local"))
        .stderr_has(&format!("would docker run {new} (image {v1}) on local"))
        .stderr_has(&format!("would docker run {old} (image {v2}) on local"));
    assert_eq!(state(old), format!("running {v1}"));
    assert_eq!(state(new), "absent");
}

#[test]
fn redeploy_that_cannot_get_the_image_leaves_the_old_container_running() {
    let v1 = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    docker_ok(&["run", "-d", "--name", name, &v1]);
    let registry = ClosedPort::new();
    let absent = unpullable_image(&registry);
    Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               try {{ dk::redeploy(docker(), #{{image: "{absent}", name: "{name}"}}) }}
               catch (e) {{ print(`${{e.kind}} ${{e.stage}}`); throw e; }}
            "#
        ))
        .run()
        .code(1)
        .stdout_is("image_missing image\n")
        .stderr_has(&format!("redeploy of {name} on local stopped before changing anything; the old container {name} (image {v1}, running) is left as it was"))
        .stderr_has("no registry is reachable");
    assert_eq!(state(name), format!("running {v1}"));
}

#[test]
fn redeploy_to_a_container_that_exits_says_the_old_one_is_gone() {
    let (v1, v2) = (test_image("v1"), test_image("v2"));
    let c = Containers::new(1);
    let name = c.name(0);
    docker_ok(&["run", "-d", "--name", name, &v1]);
    Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               dk::redeploy(docker(), #{{image: "{v2}", name: "{name}",
                                         cmd: ["/bin/busybox", "sh", "-c", "echo bad config; exit 2"]}});
            "#
        ))
        .run()
        .code(1)
        .stderr_has(&format!("redeploy of {name} on local: the old container {name} (image {v1}, running) was removed; the new container {name} (image {v2}) started but is not healthy"))
        .stderr_has("exited with code 2")
        .stderr_has("bad config");
    assert_eq!(state(name), format!("exited {v2}"));
}

#[test]
fn stop_start_restart_exec_and_logs_act_on_the_container() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.run(#{{image: "{img}", name: "{name}",
                        cmd: "/bin/busybox sh -c 'echo hello from the container; exec /bin/busybox httpd -f -p 80 -h /www'"}});
               d.wait_healthy("{name}", 10, #{{min_uptime: 0.2}});
               print(d.exec("{name}", ["/bin/busybox", "cat", "/www/index.html"]).stdout);
               print(d.exec("{name}", "exit 4", #{{check: false}}).code);
               d.stop("{name}", #{{grace: 0}});
               print(d.running("{name}"));
               d.start("{name}");
               d.restart("{name}", #{{grace: 0}});
               print(d.running("{name}"));
               print(d.logs("{name}", #{{tail: 1}}));
               try {{ d.exec("{name}", "echo failing >&2; exit 5") }} catch (e) {{ print(e.message) }}
            "#
        ))
        .run()
        .success()
        .stdout_is(&format!(
            "{TEST_IMAGE} v1\n\n4\nfalse\ntrue\nhello from the container\n\nlocal: `docker exec {name} sh -c 'echo failing >&2; exit 5'` exited with code 5:\nfailing\n"
        ));
}

#[test]
fn rm_of_an_absent_container_is_not_an_error_but_stop_is() {
    docker_engine();
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               d.rm("{name}");
               print(d.exists("{name}"));
               print(d.running("{name}"));
               try {{ d.inspect("{name}") }} catch (e) {{ print(e.kind) }}
               d.stop("{name}");
            "#
        ))
        .run()
        .code(1)
        .stdout_is("false\nfalse\nnot_found\n")
        .stderr_has(&format!("local: docker stop {name}: no such container"));
}

/// The shortest prefix (4 characters or more) of the id of container `id` that docker resolves to
/// that container and that no container has as its name: what a hex-only name such as `cafe` can
/// silently mean to docker.
fn id_prefix_naming_no_container(id: &str) -> String {
    (4..id.len())
        .map(|n| id[..n].to_string())
        .find(|p| {
            let names = docker_ok(&[
                "ps",
                "--all",
                "--filter",
                &format!("name={p}"),
                "--format",
                "{{.Names}}",
            ]);
            let resolved = docker(&["container", "inspect", "--format", "{{.Id}}", p]);
            !names.lines().any(|n| n == p) && String::from_utf8_lossy(&resolved.stdout).trim() == id
        })
        .expect("a prefix of the id that docker resolves to the container")
}

/// Containers carrying the label `runner.test.run=<value>`, removed by id when the test ends.
struct Labelled(String);

impl Drop for Labelled {
    fn drop(&mut self) {
        let ids = docker_ok(&[
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label=runner.test.run={}", self.0),
        ]);
        for id in ids.lines() {
            let _ = docker(&["rm", "-f", id]);
        }
    }
}

#[test]
fn names_are_looked_up_exactly_never_as_prefixes_of_container_ids() {
    let img = test_image("v1");
    let c = Containers::new(1);
    let name = c.name(0);
    let id = docker_ok(&["run", "-d", "--name", name, &img]);
    let prefix = id_prefix_naming_no_container(&id);
    let label = format!("{name}-redeploy");
    let _cleanup = Labelled(label.clone());
    let out = Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               let d = docker();
               print(d.exists("{prefix}"));
               print(d.running("{prefix}"));
               try {{ d.inspect("{prefix}") }} catch (e) {{ print(e.kind) }}
               d.rm("{prefix}");
               for verb in ["stop", "logs"] {{
                   try {{ if verb == "stop" {{ d.stop("{prefix}") }} else {{ d.logs("{prefix}") }} }}
                   catch (e) {{ print(e.kind) }}
               }}
               try {{ d.exec("{prefix}", "true", #{{check: false}}) }} catch (e) {{ print(e.kind) }}
               // The full id and the exact name still mean the container.
               print(d.exists("{id}"));
               print(d.inspect("{id}").Name);
               print(d.running("{name}"));
               // A redeploy under that name finds no old container, removes nothing, and creates a
               // container named exactly so.
               let new_id = dk::redeploy(d, #{{image: "{img}", name: "{prefix}",
                                             labels: #{{"runner.test.run": "{label}"}}, timeout: 10}});
               print(new_id != "{id}");
               print(d.inspect("{prefix}").Id == new_id);
            "#
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is(&format!(
            "false\nfalse\nnot_found\nnot_found\nnot_found\nnot_found\ntrue\n/{name}\ntrue\ntrue\ntrue\n"
        ));
    assert_eq!(
        state(name),
        format!("running {img}"),
        "the container whose id starts with {prefix} is untouched"
    );
    let journal = journal_lines(&out.path("j.jsonl"));
    assert!(
        journal
            .iter()
            .any(|e| e["action"] == format!("docker rm {prefix}") && e["outcome"] == "ok"),
        "{journal:?}"
    );
}

#[test]
fn exec_with_check_false_returns_the_commands_own_failure_but_docker_failures_throw() {
    let img = test_image("v1");
    let c = Containers::new(2);
    let (name, stopped) = (c.name(0), c.name(1));
    docker_ok(&["run", "-d", "--name", name, &img]);
    docker_ok(&["create", "--name", stopped, &img]);
    Test::new()
        .script(&format!(
            r#"let d = docker();
               let r = d.exec("{name}", "echo nginx is not running >&2; exit 3", #{{check: false}});
               print(`${{r.code}}: ${{r.stderr}}`);
               r = d.exec("{name}", "echo no such container here >&2; exit 1", #{{check: false}});
               print(`${{r.code}}: ${{r.stderr}}`);
               print(d.exec("{name}", "nosuchcommand", #{{check: false}}).code);
               print(d.exec("{name}", ["/bin/busybox", "sh", "-c", "exit 127"], #{{check: false}}).code);
               try {{ d.exec("{name}", "exit 127") }} catch (e) {{ print(e.kind) }}
               for c in ["{stopped}", "{name}-absent"] {{
                   try {{ d.exec(c, "true", #{{check: false}}); print("no error") }}
                   catch (e) {{ print(e.kind) }}
               }}
            "#
        ))
        .run()
        .success()
        .stdout_is("3: nginx is not running\n\n1: no such container here\n\n127\n127\nnot_found\nnot_running\nnot_found\n");
    // No docker command on the PATH: docker's failure, not the command's exit code 127.
    Test::new()
        .script(&format!(
            r#"docker().exec("{name}", "true", #{{check: false}});"#
        ))
        .env("PATH", "/nonexistent")
        .run()
        .code(1)
        .stderr_has(&format!(
            "local: docker exec {name} `sh -c true`: the docker command is not installed on local"
        ));
}

#[test]
fn env_values_reach_the_container_but_never_the_journal_or_the_terminal() {
    let img = test_image("v1");
    let c = Containers::new(2);
    let (name, bad) = (c.name(0), c.name(1));
    let script = format!(
        r#"let d = docker();
           let spec = #{{image: "{img}", name: "{name}", env: #{{DB_PASSWORD: "hunter2"}},
                        args: ["-e", "API_TOKEN=s3cret", "--env=SESSION_KEY=k3y"]}};
           print(d.run_command(spec));
           d.run(spec);
           if !dry_run() {{
               let env = d.inspect("{name}").Config.Env;
               print(env.contains("DB_PASSWORD=hunter2") && env.contains("API_TOKEN=s3cret") && env.contains("SESSION_KEY=k3y"));
               print(d.exec("{name}", "test \"$EXTRA\" = \"$SESSION_KEY\" && echo same", #{{env: #{{EXTRA: "k3y"}}}}).stdout);
           }}
           // A docker failure quotes the command: masked too.
           spec.name = "{bad}";
           spec.args = ["--memory", "bogus"];
           try {{ d.run(spec) }} catch (e) {{ print(e.message) }}
           try {{ d.exec("{name}", "exit 3", #{{env: #{{EXTRA: "k3y"}}}}) }} catch (e) {{ print(e.message) }}
        "#
    );
    let secrets = ["hunter2", "s3cret", "k3y"];
    for dry in [false, true] {
        let _ = docker(&["rm", "-f", name]);
        let mut args = vec!["--journal", "j.jsonl"];
        if dry {
            args.push("--dry-run");
        }
        let out = Test::new().script(&script).args(&args).run().success();
        let journal = std::fs::read_to_string(out.path("j.jsonl")).unwrap();
        assert!(journal.contains("DB_PASSWORD=***"), "{journal}");
        for s in secrets {
            assert!(!journal.contains(s), "the journal holds {s}:\n{journal}");
            assert!(!out.stderr.contains(s), "stderr holds {s}:\n{}", out.stderr);
        }
        assert!(
            out.stdout
                .contains("--env 'DB_PASSWORD=***' -e 'API_TOKEN=***' '--env=SESSION_KEY=***'"),
            "{}",
            out.stdout
        );
        if dry {
            assert!(!out.stdout.contains("hunter2"), "{}", out.stdout);
            assert_eq!(state(name), "absent");
        } else {
            assert!(out.stdout.contains("\ntrue\nsame\n\n"), "{}", out.stdout);
            assert!(out.stdout.contains("--memory bogus"), "{}", out.stdout);
            assert!(out.stdout.contains("--env 'EXTRA=***' "), "{}", out.stdout);
            for s in secrets {
                assert!(
                    !out.stdout.contains(s),
                    "a message holds {s}:\n{}",
                    out.stdout
                );
            }
            assert_eq!(state(name), format!("running {img}"));
        }
    }
}

// Through SSH: the same engine, reached as the test user over a test sshd on 127.0.0.1, so the
// docker CLI runs on the far side of an SSH connection and every message names the SSH host.

/// `<ssh handle>.docker()` for the test sshd, as script code.
fn ssh_docker(sshd: &Sshd) -> String {
    format!("{}.docker()", sshd.handle())
}

/// A web root holding `index.html` with `body`, in a temp dir readable by the test user and the
/// docker daemon (mode 0755, the page 0644).
fn web_root(body: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("runner-www-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let page = dir.path().join("index.html");
    std::fs::write(&page, body).unwrap();
    std::fs::set_permissions(&page, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

#[test]
fn over_ssh_run_with_a_published_port_and_a_bind_mounted_web_root_serves_the_mounted_page() {
    let img = test_image("v1");
    let sshd = Sshd::start();
    let c = Containers::new(1);
    let name = c.name(0);
    let port = free_port();
    let www = web_root("the page mounted over ssh\n");
    let out = Test::new()
        .script(&format!(
            r#"let d = {d};
               print(d.host.name);
               let id = d.run(#{{image: "{img}", name: "{name}", ports: ["127.0.0.1:{port}:80"],
                                 volumes: ["{www}:/www:ro"]}});
               print(id.len());
               d.wait_healthy("{name}", 10, #{{min_uptime: 0.2}});
               print(wait_http("http://127.0.0.1:{port}/", #{{contains: "mounted", timeout: 10}}).body);
               print(d.running("{name}"));
               let c = d.inspect("{name}");
               print(c.Config.Image);
               print(c.Id == id);
            "#,
            d = ssh_docker(&sshd),
            www = www.path().display(),
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is(&format!(
            "{spec}\n64\nthe page mounted over ssh\n\ntrue\n{img}\ntrue\n",
            spec = sshd.spec()
        ));
    assert!(http_get(port).contains("the page mounted over ssh"));
    assert_eq!(state(name), format!("running {img}"));
    let journal = journal_lines(&out.path("j.jsonl"));
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!(
        journal[0]["action"],
        format!("docker run {name} (image {img})")
    );
    assert_eq!(journal[0]["target"], sshd.spec());
    assert_eq!(journal[0]["outcome"], "ok");
    assert_eq!(sshd.accepted(), 1, "one SSH connection for the whole run");
    sshd.assert_no_clients_left();
}

#[test]
fn over_ssh_redeploy_replaces_a_running_container_with_the_new_version() {
    let (v1, v2) = (test_image("v1"), test_image("v2"));
    let sshd = Sshd::start();
    let c = Containers::new(1);
    let name = c.name(0);
    let port = free_port();
    Test::new()
        .script(&format!(
            r#"import "docker" as dk;
               let d = {d};
               let spec = #{{name: "{name}", ports: ["127.0.0.1:{port}:80"],
                            health_cmd: "/bin/busybox wget -q -O- http://127.0.0.1/", health_interval: 0.2,
                            timeout: 20}};
               spec.image = "{v1}";
               let first = dk::redeploy(d, spec);
               print(http_get("http://127.0.0.1:{port}/").body);
               spec.image = "{v2}";
               let second = dk::redeploy(d, spec);
               print(http_get("http://127.0.0.1:{port}/").body);
               print(second != first);
               print(d.exists(first));
               print(d.inspect("{name}").State.Health.Status);
            "#,
            d = ssh_docker(&sshd),
        ))
        .args(&["-v"])
        .run()
        .success()
        .stdout_is(&format!(
            "{TEST_IMAGE} v1\n\n{TEST_IMAGE} v2\n\ntrue\nfalse\nhealthy\n"
        ))
        .stderr_has(&format!("docker rm {name} on {}", sshd.spec()))
        .stderr_has(&format!("docker run {name} (image {v2}) on {}", sshd.spec()));
    assert_eq!(state(name), format!("running {v2}"));
    assert!(http_get(port).contains(&format!("{TEST_IMAGE} v2")));
    sshd.assert_no_clients_left();
}

#[test]
fn over_ssh_container_that_exits_at_once_fails_wait_healthy_at_once_naming_the_host() {
    let img = test_image("v1");
    let sshd = Sshd::start();
    let c = Containers::new(1);
    let name = c.name(0);
    Test::new()
        .script(&format!(
            r#"let d = {d};
               d.run(#{{image: "{img}", name: "{name}",
                        cmd: ["/bin/busybox", "sh", "-c", "echo cannot open /etc/app.conf >&2; exit 3"]}});
               let t = timestamp();
               try {{
                   d.wait_healthy("{name}", 30);
               }} catch (e) {{
                   print(e.kind);
                   print(t.elapsed < 5.0); // at once: long before the 30 s timeout
                   throw e;
               }}
            "#,
            d = ssh_docker(&sshd),
        ))
        .run()
        .code(1)
        .stdout_is("container_exited\ntrue\n")
        .stderr_has(&format!(
            "{}: container {name} exited with code 3",
            sshd.spec()
        ))
        .stderr_has("cannot open /etc/app.conf");
    assert_eq!(state(name), format!("exited {img}"));
    sshd.assert_no_clients_left();
}

#[test]
fn over_ssh_name_conflict_is_a_clear_error_naming_host_and_container() {
    let img = test_image("v1");
    let sshd = Sshd::start();
    let c = Containers::new(1);
    let name = c.name(0);
    let id = docker_ok(&["create", "--name", name, &img]);
    Test::new()
        .script(&format!(
            r#"let d = {d};
               try {{ d.run(#{{image: "{img}", name: "{name}"}}) }}
               catch (e) {{ print(e.kind); throw e; }}
            "#,
            d = ssh_docker(&sshd),
        ))
        .run()
        .code(1)
        .stdout_is("name_conflict\n")
        .stderr_has(&format!(
            "{spec}: docker run {name} (image {img}): the name {name} is already in use on {spec} by container {}",
            &id[..12],
            spec = sshd.spec()
        ));
    // The holder is untouched.
    assert_eq!(state(name), format!("created {img}"));
    sshd.assert_no_clients_left();
}

#[test]
fn docker_with_become_runs_through_sudo_and_a_refusal_says_so() {
    docker_engine();
    let sshd = Sshd::start();
    let h = sshd.handle();
    Test::new()
        .script(&format!(
            "print({h}.docker(#{{become: true}}).exists(\"runner-no-such-container\"));\n\
             try {{ {h}.docker(#{{become_user: \"nobody\"}}).exists(\"x\") }} catch (e) {{ print(e.kind) }}"
        ))
        .run()
        .success()
        .stdout_is("false\nbecome\n");
}
