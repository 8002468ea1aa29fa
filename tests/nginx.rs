//! The nginx binary hot upgrade (`stdlib/nginx.rhai`, `scripts/nginx-upgrade.rhai`) against a real
//! nginx with its own prefix, configuration, pid file and port, under live traffic: a request loop
//! and a rate-limited long download.
//!
//! nginx has no version switch, so the versions differ by configuration: the new master reads
//! `nginx.conf` when it starts, so editing `return 200 "v1"` to `"v2"` before USR2 lets a check tell
//! the old master from the new. The "builds" are the Debian binary with different bytes appended
//! (an ELF file runs the same with trailing data), so a test can tell which one is on disk.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;

use crate::harness::*;
use crate::process::ssh_user_ids;

/// How the master is told to run as a daemon with a master process.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `daemon on; master_process on;` in `nginx.conf`.
    Conf,
    /// As Debian's systemd unit starts it: `nginx -g 'daemon on; master_process on;'`.
    Globals,
    /// `-g 'daemon off; master_process on;'`: not a daemon, as in a container; nginx ignores WINCH
    /// then. Started in the background by a shell that then exits: nginx in the foreground also
    /// ignores USR2 while the process that started it lives.
    Foreground,
}

/// A real nginx master (one worker) started from a copy of the Debian binary in a temp dir.
struct Nginx {
    dir: TempDir,
    port: u16,
    /// The uid and gid nginx runs as, when not root.
    owner: Option<(u32, u32)>,
    mode: Mode,
}

/// The Debian nginx binary with `build N` appended: a distinct file that runs the same.
fn build(n: u32) -> Vec<u8> {
    let mut bytes = std::fs::read(require("nginx")).unwrap();
    bytes.extend_from_slice(format!("\nrunner test build {n}\n").as_bytes());
    bytes
}

impl Nginx {
    /// nginx run by root, as a system nginx is.
    fn start() -> Nginx {
        Nginx::launch(None, Mode::Conf)
    }

    /// nginx run by the user test sshd instances log in as, so that an SSH host handle may signal it.
    fn start_as_ssh_user() -> Nginx {
        Nginx::launch(Some(ssh_user_ids()), Mode::Conf)
    }

    fn launch(owner: Option<(u32, u32)>, mode: Mode) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("runner-nginx-")
            .tempdir()
            .unwrap();
        for sub in ["sbin", "html", "logs", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("html/big.bin"), big_file()).unwrap();
        let mut nginx = Nginx {
            dir,
            port: 0,
            owner,
            mode,
        };
        nginx.replace_binary(&build(1), 0o755);
        // nginx cannot listen on port 0: on a port taken meanwhile it gives up after its own
        // retries (2.5 s), and starts again on another.
        with_free_ports(1, |ports| {
            nginx.port = ports[0];
            nginx.try_start().then_some(())
        });
        eventually(
            Duration::from_secs(10),
            || nginx.get("/").is_ok(),
            "nginx does not answer",
        );
        nginx
    }

    /// Start the master on `self.port`: `true` once it listens there, `false` if the port was taken.
    fn try_start(&self) -> bool {
        let error_log = self.path("logs/error.log");
        let _ = std::fs::remove_file(&error_log);
        self.set_version("v1");
        let mut command = if self.mode == Mode::Foreground {
            let mut sh = Command::new("sh");
            // nginx takes the process that started it for its parent when it starts: exit once
            // it has.
            sh.args(["-c", "\"$@\" </dev/null >/dev/null 2>&1 & sleep 0.2", "sh"])
                .arg(self.binary());
            sh
        } else {
            Command::new(self.binary())
        };
        if let Some((uid, gid)) = self.owner {
            for entry in walk(self.dir.path()) {
                std::os::unix::fs::chown(entry, Some(uid), Some(gid)).unwrap();
            }
            command.uid(uid).gid(gid);
        }
        // The absolute path matters: USR2 re-executes exactly the path the master was started with.
        command
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(self.path("nginx.conf"))
            .arg("-e")
            .arg(&error_log);
        match self.mode {
            Mode::Conf => {}
            Mode::Globals => {
                command.args(["-g", "daemon on; master_process on;"]);
            }
            Mode::Foreground => {
                command.args(["-g", "daemon off; master_process on;"]);
            }
        }
        let status = command.status().unwrap();
        let log = || std::fs::read_to_string(&error_log).unwrap_or_default();
        // A daemon's start fails when it cannot bind; one in the foreground says so in its log.
        let listening = eventually_some(
            Duration::from_secs(10),
            || {
                if !status.success() || log().contains("still could not bind()") {
                    return Some(false);
                }
                let master = read_pid(&self.pidfile())?;
                listens_on(master as u32, &[self.port]).then_some(true)
            },
            format_args!("nginx does not listen on {}", self.port),
        );
        if !listening {
            assert!(
                bind_failed(&log()),
                "nginx did not start: {status}\n{}",
                log()
            );
        }
        listening
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn binary(&self) -> PathBuf {
        self.path("sbin/nginx")
    }

    fn pidfile(&self) -> String {
        self.path("nginx.pid").display().to_string()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Write the configuration: `/` answers `<version> <worker pid>`, `/big.bin` is sent at 1 MB/s
    /// and `/slow.bin` (the same file) at 400 kB/s (so a download keeps its worker busy), every path
    /// is inside the temp dir.
    fn set_version(&self, version: &str) {
        self.set_config(version, 200);
    }

    /// `set_version` with `/` answering `status`.
    fn set_config(&self, version: &str, status: u16) {
        let d = self.dir.path().display();
        // Workers of a root master would run as nobody, who cannot read the temp dir.
        let user = if self.owner.is_none() {
            "user root;"
        } else {
            ""
        };
        let daemon = if self.mode == Mode::Conf {
            "daemon on;\nmaster_process on;"
        } else {
            ""
        };
        let conf = format!(
            r#"{user}
{daemon}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/client_body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = / {{ return {status} "{version} $pid\n"; }}
        location = /big.bin {{ root {d}/html; limit_rate 1m; }}
        location = /slow.bin {{ alias {d}/html/big.bin; limit_rate 400k; }}
    }}
}}
"#,
            port = self.port
        );
        std::fs::write(self.path("nginx.conf"), conf).unwrap();
    }

    /// Put `content` at the binary's path the way an upgrade must: write a new file, then rename it
    /// over the running binary (`cp` onto it fails with "Text file busy").
    fn replace_binary(&self, content: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let new = self.path("sbin/nginx.new");
        std::fs::write(&new, content).unwrap();
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&new, self.binary()).unwrap();
    }

    /// A new build of the same nginx: build 2, as a new file.
    fn install_new_binary(&self) {
        self.replace_binary(&build(2), 0o755);
    }

    /// The content of the binary's path.
    fn binary_on_disk(&self) -> Vec<u8> {
        std::fs::read(self.binary()).unwrap()
    }

    /// The worker that answers `GET /`, checked to be the only worker of `master`.
    fn only_worker_of(&self, master: i32) -> i32 {
        let (_, worker) = self.served_by();
        assert_eq!(
            children(master),
            vec![worker],
            "one worker, of master {master}"
        );
        worker
    }

    fn master(&self) -> i32 {
        read_pid(&self.pidfile()).expect("nginx.pid holds the master's pid")
    }

    /// The masters running from this temp dir (their title holds the binary's path).
    fn masters(&self) -> Vec<i32> {
        let needle = self.dir.path().display().to_string();
        let mut pids: Vec<i32> = processes()
            .into_iter()
            .filter(|p| {
                p.running && p.title.contains("master process") && p.title.contains(&needle)
            })
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        pids
    }

    /// The body of `GET path`, or why it failed.
    fn get(&self, path: &str) -> Result<String, String> {
        http_get(self.port, path)
    }

    /// The version and the worker pid that answer `GET /`.
    fn served_by(&self) -> (String, i32) {
        let body = self.get("/").expect("nginx answers");
        let (version, pid) = body.trim().split_once(' ').expect("`<version> <pid>`");
        (version.to_string(), pid.parse().unwrap())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Every master started from this dir, and everything below them (workers, a new master).
        let mut doomed = self.masters();
        let mut i = 0;
        while i < doomed.len() {
            doomed.extend(children(doomed[i]));
            i += 1;
        }
        for pid in doomed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A folder and everything in it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            all.extend(walk(&entry.path()));
        } else {
            all.push(entry.path());
        }
    }
    all
}

/// 2.5 MB that are not all the same byte, so a corrupted download shows.
fn big_file() -> Vec<u8> {
    let mut x: u32 = 2463534242;
    (0..2_500_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Whether `pid` runs (a zombie has exited: daemons here are reparented to a PID 1 that never reaps).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn read_pid(path: &str) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// GET with `Connection: close`, the way a client that never reuses connections sees the upgrade.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete response: {text:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("status: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// GETs in a loop on a thread until stopped: what each answered, and every failure.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, v, f) = (stop.clone(), seen.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match http_get(port, "/") {
                    Ok(body) => v.lock().unwrap().push(body.trim().to_string()),
                    Err(e) => f.lock().unwrap().push(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Traffic {
            stop,
            seen,
            failures,
            thread: Some(thread),
        }
    }

    /// Stop and return (answers, failures).
    fn finish(mut self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (seen, failures)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A rate-limited download of `/big.bin` with curl, started and seen to be under way.
struct Download {
    child: Child,
    out: PathBuf,
}

impl Download {
    fn start(nginx: &Nginx) -> Download {
        Download::start_path(nginx, "/big.bin")
    }

    /// A download of `path` (`/big.bin` at 1 MB/s, `/slow.bin` at 400 kB/s).
    fn start_path(nginx: &Nginx, path: &str) -> Download {
        let out = nginx.path("download.bin");
        let child = Command::new(require("curl"))
            .args(["-sS", "--fail", "--limit-rate", "1M", "-o"])
            .arg(&out)
            .arg(nginx.url(path))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually(
            Duration::from_secs(5),
            || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) > 0,
            "the download does not start",
        );
        Download { child, out }
    }

    /// Wait for curl; panics unless the file arrived complete and intact.
    fn assert_intact(mut self) {
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(status.success(), "curl failed: {status}: {err}");
        assert!(
            std::fs::read(&self.out).unwrap() == big_file(),
            "the download is not the file"
        );
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A playbook that upgrades the nginx of `pidfile` on `host` (script code: `local()`, `ssh(...)`).
fn upgrade_script(host: &str, pidfile: &str, options: &str) -> String {
    format!(
        "import \"nginx\" as nginx;\n\
         let h = {host};\n\
         let r = nginx::hot_upgrade(h, #{{pidfile: \"{pidfile}\", {options}}});\n\
         print(`master ${{r.master}} old ${{r.old_master}}`);\n"
    )
}

/// The options of an `http_get` that opens a new connection: a kept-alive one stays with one worker.
const CLOSE: &str = "#{headers: #{connection: \"close\"}}";

fn assert_no_failures(failures: &[String], seen: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        failures.len() + seen.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        seen.len() > 20,
        "the request loop made only {} requests",
        seen.len()
    );
}

/// The acceptance run: a hot upgrade of `nginx` on `host` (script code) while a request loop runs
/// and a rate-limited download is open.
fn upgrade_under_traffic(nginx: &Nginx, host: &str) {
    let old = nginx.master();
    let traffic = Traffic::start(nginx.port);
    let download = Download::start(nginx);
    nginx.set_version("v2");
    nginx.install_new_binary();

    let url = nginx.url("/");
    let out = Test::new()
        .script(&upgrade_script(
            host,
            &nginx.pidfile(),
            &format!(
                "verify: || http_get(\"{url}\", {CLOSE}).body.starts_with(\"v2 \"), timeout: 20"
            ),
        ))
        .run()
        .success()
        .stderr_lacks("warning");
    download.assert_intact();
    let (seen, failures) = traffic.finish();

    assert_no_failures(&failures, &seen);
    let new = nginx.master();
    assert_ne!(new, old);
    assert_eq!(out.stdout, format!("master {new} old {old}\n"));
    assert!(!running(old), "the old master {old} still runs");
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    assert_eq!(nginx.masters(), vec![new]);
    let (version, worker) = nginx.served_by();
    assert_eq!(version, "v2");
    assert_eq!(children(new), vec![worker]);
    assert!(seen.iter().any(|s| s.starts_with("v1 ")) && seen.iter().any(|s| s.starts_with("v2 ")));
    // The old worker kept serving the download (2.5 MB at 1 MB/s, started just before): the upgrade
    // waited for it to finish before committing.
    assert!(
        out.elapsed > Duration::from_millis(1500),
        "the upgrade did not wait for the old worker's download: {:?}",
        out.elapsed
    );
}

#[test]
fn hot_upgrade_under_traffic_loses_no_request_and_leaves_only_the_new_master() {
    upgrade_under_traffic(&Nginx::start(), "local()");
}

#[test]
fn hot_upgrade_through_ssh_loses_no_request_and_leaves_only_the_new_master() {
    let sshd = Sshd::start();
    upgrade_under_traffic(&Nginx::start_as_ssh_user(), &sshd.handle());
    assert_eq!(
        sshd.accepted(),
        1,
        "one SSH connection for the whole upgrade"
    );
}

/// A hot upgrade of `nginx` on `host` (script code; `name` is its name) whose verify fails.
/// Verify fails while both masters serve, so the old workers are never sent WINCH.
fn rollback_after_failed_verify(nginx: &Nginx, host: &str, name: &str) {
    let old = nginx.master();
    let worker = nginx.only_worker_of(old);
    let traffic = Traffic::start(nginx.port);
    nginx.set_version("v2");
    nginx.install_new_binary();

    let url = nginx.url("/");
    let out = Test::new()
        .script(&upgrade_script(
            host,
            &nginx.pidfile(),
            &format!(
                "verify: || http_get(\"{url}\", {CLOSE}).body.starts_with(\"v3 \"), timeout: 2"
            ),
        ))
        .run()
        .code(1)
        .stderr_lacks("interrupted")
        .stderr_lacks("WINCH to old master");
    let (seen, failures) = traffic.finish();

    assert_no_failures(&failures, &seen);
    assert!(
        seen.iter().any(|s| s.starts_with("v2 ")),
        "the new master never served"
    );
    assert!(seen.last().unwrap().starts_with("v1 "));
    assert_eq!(nginx.master(), old);
    assert_eq!(nginx.masters(), vec![old], "the new master is still there");
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    assert_eq!(
        nginx.served_by(),
        ("v1".to_string(), worker),
        "not the worker of before"
    );
    assert_eq!(children(old), vec![worker], "one worker, of the old master");
    out.stderr_has(&format!(
        "error: nginx on {name}: hot upgrade rolled back: verify returned false (for 2s) while the new master "
    ))
    .stderr_has(&format!(
        "so the old master was never sent WINCH; master {old} serves with workers [{worker}]\n"
    ));
}

#[test]
fn failed_verify_rolls_back_to_the_old_master_and_its_own_workers() {
    rollback_after_failed_verify(&Nginx::start(), "local()", "local");
}

#[test]
fn failed_verify_through_ssh_rolls_back_to_the_old_master() {
    let sshd = Sshd::start();
    rollback_after_failed_verify(&Nginx::start_as_ssh_user(), &sshd.handle(), &sshd.spec());
}

#[test]
fn broken_new_binary_fails_cleanly_and_the_old_master_keeps_serving() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let (_, worker) = nginx.served_by();
    nginx.replace_binary(b"this is not a program\n", 0o644);

    let out = Test::new()
        .script(&upgrade_script("local()", &nginx.pidfile(), "timeout: 10"))
        .run()
        .code(1)
        .stderr_has("the new binary did not start")
        .stderr_has(&format!(
            "nothing changed: master {old} serves with workers [{worker}]"
        ));
    assert!(
        out.elapsed < Duration::from_secs(5),
        "noticing the failed exec took {:?}",
        out.elapsed
    );
    assert_eq!(nginx.master(), old);
    assert_eq!(nginx.masters(), vec![old]);
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    assert_eq!(nginx.served_by(), ("v1".to_string(), worker));
}

#[test]
fn second_hot_upgrade_is_refused_while_one_is_in_progress_and_rollback_undoes_it() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let pf = nginx.pidfile();
    // A USR2 by hand: two masters, both with workers, `.oldbin` present.
    let script = format!(
        "import \"nginx\" as nginx;\n\
         let h = local();\n\
         let old = h.read_pid(\"{pf}\");\n\
         h.kill(old, \"USR2\");\n\
         wait_until(10, || {{ let s = nginx::status(h, #{{pidfile: \"{pf}\"}}); s.upgrading && s.master != () && s.master != old && s.workers.len() > 0 }});\n\
         try {{ nginx::hot_upgrade(h, #{{pidfile: \"{pf}\"}}) }} catch (e) {{ print(e.kind); print(e.message) }}\n\
         let s = nginx::rollback(h, #{{pidfile: \"{pf}\", timeout: 10}});\n\
         print(`${{s.master == old}} ${{s.upgrading}} ${{s.workers.len()}}`);\n"
    );
    let out = Test::new().script(&script).run().success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "in_progress", "{}", out.stdout);
    assert!(
        lines[1].contains(&format!(
            "hot upgrade refused: {pf}.oldbin exists (old master {old})"
        )) && lines[1].contains("USR2 cannot nest"),
        "{}",
        lines[1]
    );
    // No WINCH was sent, so the rollback must not HUP (that would start a second set of workers).
    assert_eq!(lines[2], "true false 1");
    assert_eq!(nginx.masters(), vec![old]);
    assert_eq!(children(old).len(), 1);
    assert_eq!(nginx.served_by().0, "v1");
}

#[test]
fn dry_run_hot_upgrade_prints_the_signals_and_changes_nothing() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let out = Test::new()
        .script(&format!(
            "import \"nginx\" as nginx;\nnginx::hot_upgrade(local(), #{{pidfile: \"{}\", verify: || false, timeout: 5}});\n",
            nginx.pidfile()
        ))
        .args(&["--dry-run"])
        .run()
        .success()
        .stderr_has(&format!("would send USR2 to pid {old} on local"))
        .stderr_has(&format!("would send WINCH to pid {old} on local"))
        .stderr_has(&format!("would send QUIT to pid {old} on local"));
    assert!(
        out.elapsed < Duration::from_secs(3),
        "took {:?}",
        out.elapsed
    );
    assert_eq!(nginx.masters(), vec![old]);
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
}

/// `runner play scripts/nginx-upgrade.rhai` against `nginx`, with `params` (`k=v`) after its pid
/// file and url.
fn play_upgrade(nginx: &Nginx, params: &[&str]) -> Outcome {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nginx-upgrade.rhai");
    let mut test = Test::new()
        .args(&["play", &script.display().to_string()])
        .args(&["--journal", "run.jsonl"])
        .args(&["-p", &format!("pidfile={}", nginx.pidfile())])
        .args(&["-p", &format!("url={}", nginx.url("/"))]);
    for p in params {
        test = test.args(&["-p", p]);
    }
    test.run()
}

/// The signals a run sent, from its journal: `(signal, pid)`.
fn signals_sent(out: &Outcome) -> Vec<(String, i64)> {
    journal_lines(&out.path("run.jsonl"))
        .iter()
        .filter(|l| l["details"]["signal"].is_string())
        .map(|l| {
            (
                l["details"]["signal"].as_str().unwrap().to_string(),
                l["details"]["pid"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn upgrade_playbook_installs_the_binary_and_checks_the_version() {
    // Started as Debian's unit does: the -g words must reach `nginx -t` as one argument.
    let nginx = Nginx::launch(None, Mode::Globals);
    let old = nginx.master();
    let staged = nginx.path("nginx-new-build");
    std::fs::write(&staged, build(2)).unwrap();
    nginx.set_version("v2");
    play_upgrade(
        &nginx,
        &[
            "version=v2",
            "timeout=10",
            &format!("new_binary={}", staged.display()),
        ],
    )
    .success()
    .stderr_has(&format!("master {old} runs {}", nginx.binary().display()))
    .stderr_has("serves v2; the old master");
    assert!(
        nginx.binary_on_disk() == build(2),
        "the new build is not installed"
    );
    assert!(
        std::fs::read(nginx.path("sbin/nginx.old")).unwrap() == build(1),
        "the old build was not kept as nginx.old"
    );
    assert!(!nginx.path("sbin/nginx.new").exists());
    let new = nginx.master();
    assert_ne!(new, old);
    assert_eq!(nginx.masters(), vec![new]);
    assert_eq!(nginx.served_by().0, "v2");
}

#[test]
fn failed_playbook_upgrade_leaves_the_binary_that_serves_on_disk() {
    let nginx = Nginx::launch(None, Mode::Globals);
    let old = nginx.master();
    let worker = nginx.only_worker_of(old);

    // A build that fails the configuration test: nothing is replaced, nothing is signalled.
    let broken = nginx.path("broken-build");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'nginx: [emerg] broken build' >&2\nexit 1\n",
    )
    .unwrap();
    let out = play_upgrade(
        &nginx,
        &[
            "version=v2",
            "timeout=5",
            &format!("new_binary={}", broken.display()),
        ],
    )
    .code(1)
    .stderr_has("nginx.new fails the configuration test, nothing changed")
    .stderr_has("broken build");
    assert_eq!(signals_sent(&out), vec![]);
    assert!(
        nginx.binary_on_disk() == build(1),
        "the binary was replaced"
    );
    assert!(!nginx.path("sbin/nginx.new").exists());

    // A build whose version check fails: it serves "v20", the check wants "v2" (a whole word: not
    // a prefix of "v20"). Rolled back before WINCH, and the old binary is renamed back.
    nginx.set_version("v20");
    let staged = nginx.path("nginx-new-build");
    std::fs::write(&staged, build(2)).unwrap();
    let out = play_upgrade(
        &nginx,
        &[
            "version=v2",
            "timeout=2",
            &format!("new_binary={}", staged.display()),
        ],
    )
    .code(1)
    .stderr_has("hot upgrade rolled back: verify returned false (for 2s)")
    .stderr_has("Putting the old binary back");
    let sent: Vec<String> = signals_sent(&out).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sent, ["USR2", "QUIT"], "no WINCH, no HUP");
    assert!(
        nginx.binary_on_disk() == build(1),
        "the old build is not back at the binary's path"
    );
    assert!(!nginx.path("sbin/nginx.old").exists());
    assert!(!nginx.path("sbin/nginx.new").exists());
    assert_eq!(nginx.masters(), vec![old]);
    assert_eq!(nginx.served_by(), ("v1".to_string(), worker));
}

#[test]
fn upgrade_playbook_for_another_host_requires_its_url() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nginx-upgrade.rhai");
    Test::new()
        .args(&["play", &script.display().to_string()])
        .args(&["-p", "host=root@192.0.2.1", "-p", "version=1.26.0"])
        .run()
        .code(1)
        .stderr_has("-p host=root@192.0.2.1 needs -p url=...");
}

#[test]
fn new_master_whose_workers_do_not_answer_is_never_sent_winch() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let worker = nginx.only_worker_of(old);
    let traffic = Traffic::start(nginx.port);
    // The new master starts and listens, but answers 500.
    nginx.set_config("v2", 500);
    nginx.install_new_binary();
    let url = nginx.url("/");
    let out = Test::new()
        .script(&upgrade_script(
            "local()",
            &nginx.pidfile(),
            &format!(
                "verify: || {{ let r = http_get(\"{url}\", {CLOSE}); r.status == 200 && r.body.starts_with(\"v2 \") }}, timeout: 2"
            ),
        ))
        .args(&["--journal", "run.jsonl"])
        .run()
        .code(1)
        .stderr_has("so the old master was never sent WINCH");
    let (seen, failures) = traffic.finish();

    let sent: Vec<String> = signals_sent(&out).into_iter().map(|(s, _)| s).collect();
    assert_eq!(sent, ["USR2", "QUIT"], "no WINCH, no HUP");
    // The old worker answered throughout; the new one did answer, with 500.
    let v1 = format!("v1 {worker}");
    assert!(seen.iter().all(|s| *s == v1), "{seen:?}");
    assert!(seen.len() > 20, "only {} answers", seen.len());
    assert!(
        failures
            .iter()
            .all(|f| f.starts_with("status: HTTP/1.1 500")),
        "{failures:?}"
    );
    assert!(!failures.is_empty(), "the new master never answered");
    assert_eq!(nginx.masters(), vec![old]);
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    assert_eq!(nginx.served_by(), ("v1".to_string(), worker));
}

#[test]
fn rollback_while_the_new_master_finishes_a_long_download_is_rolled_back() {
    use std::io::BufRead;
    let nginx = Nginx::start();
    let old = nginx.master();
    nginx.set_version("v2");
    nginx.install_new_binary();
    // Verify passes once (before WINCH), then never: the rollback comes after WINCH, while a new
    // worker sends a 6 s download.
    let (mut child, _dir) = Test::new()
        .script(&format!(
            "let n = 0;\n\
             import \"nginx\" as nginx;\n\
             try {{ nginx::hot_upgrade(local(), #{{pidfile: \"{}\", verify: || {{ n += 1; n == 1 }}, timeout: 1.5}}) }}\n\
             catch (e) {{ print(e.kind); print(e.message); throw e; }}\n",
            nginx.pidfile()
        ))
        .spawn();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut head = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let verifying = line.contains("verifying new master");
        head.push(line);
        if verifying {
            break;
        }
    }
    let fresh = nginx.master();
    assert_ne!(fresh, old, "{head:#?}");
    let download = Download::start_path(&nginx, "/slow.bin");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(1), "{rest:#?}");
    let stdout: Vec<&str> = stdout.lines().collect();
    assert_eq!(stdout[0], "rolled_back", "{stdout:#?}\n{rest:#?}");
    let warning = format!("new master {fresh} is still finishing requests 1.5s after QUIT");
    assert!(
        rest.iter().any(|l| l.contains(&warning)),
        "{warning:?} in {rest:#?}"
    );
    // Reported as it is: the old master serves, the new one only finishes its download.
    assert!(
        stdout[1].contains(&format!(
            "master {fresh} has no worker taking requests (workers ["
        )) && stdout[1].contains(&format!("old master {old} serves with workers [")),
        "{}",
        stdout[1]
    );
    let worker = children(old)
        .into_iter()
        .find(|&p| p != fresh)
        .expect("a worker of the old master");
    assert_eq!(nginx.served_by(), ("v1".to_string(), worker));

    // The download ends intact; then the new master exits and the old one takes the pid file back.
    download.assert_intact();
    eventually(
        Duration::from_secs(5),
        || nginx.masters() == vec![old] && read_pid(&nginx.pidfile()) == Some(old),
        "the new master did not exit",
    );
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    assert_eq!(children(old), vec![worker]);
}

#[test]
fn winch_ignored_by_a_foreground_nginx_is_reported_and_the_upgrade_completes() {
    let nginx = Nginx::launch(None, Mode::Foreground);
    let old = nginx.master();
    nginx.set_version("v2");
    nginx.install_new_binary();
    let url = nginx.url("/");
    Test::new()
        .script(&upgrade_script(
            "local()",
            &nginx.pidfile(),
            &format!(
                "verify: || http_get(\"{url}\", {CLOSE}).body.starts_with(\"v2 \"), timeout: 10, drain_timeout: 0.5"
            ),
        ))
        .run()
        .success()
        .stderr_has("still take new connections 0.5s after WINCH (nginx ignores WINCH when it runs with daemon off)")
        .stderr_lacks("they take no new connections");
    let new = nginx.master();
    assert_ne!(new, old);
    assert!(!running(old));
    assert_eq!(nginx.served_by().0, "v2");
}

#[test]
fn rollback_refuses_a_pid_file_that_names_another_process_than_the_new_master() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let worker = nginx.only_worker_of(old);
    let pf = nginx.pidfile();
    // `.oldbin` names the master; the pid file a process it did not start.
    let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::rename(&pf, format!("{pf}.oldbin")).unwrap();
    std::fs::write(&pf, format!("{}\n", stranger.id())).unwrap();
    let out = Test::new()
        .script(&format!(
            "import \"nginx\" as nginx;\nnginx::rollback(local(), #{{pidfile: \"{pf}\", timeout: 2}});\n"
        ))
        .args(&["--journal", "run.jsonl"])
        .run()
        .code(1)
        .stderr_has(&format!(
            "rollback refused: {pf} names pid {}, which is not a child of the old master {old}",
            stranger.id()
        ));
    assert_eq!(signals_sent(&out), vec![]);
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was signalled"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert_eq!(children(old), vec![worker]);
}

#[test]
fn interrupted_hot_upgrade_is_rolled_back_when_the_script_stops() {
    use std::io::BufRead;
    let nginx = Nginx::start();
    let old = nginx.master();
    nginx.set_version("v2");
    nginx.install_new_binary();
    // Verify passes once (before WINCH), then never: the run stops while the old workers are gone.
    let (mut child, _dir) = Test::new()
        .script(&format!(
            "let n = 0;\n{}",
            upgrade_script(
                "local()",
                &nginx.pidfile(),
                "verify: || { n += 1; n == 1 }, timeout: 30",
            )
        ))
        .spawn();
    // Ctrl-C while it verifies: the new master serves, the old one has sent its workers away.
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("verifying new master") {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("the hot upgrade was interrupted; rolling back to master")),
        "{rest:#?}"
    );
    assert_eq!(nginx.masters(), vec![old]);
    assert!(!Path::new(&format!("{}.oldbin", nginx.pidfile())).exists());
    let (version, worker) = nginx.served_by();
    assert_eq!(version, "v1");
    assert_eq!(children(old), vec![worker]);
}
