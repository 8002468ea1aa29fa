//! The nginx binary hot upgrade (`stdlib/nginx.rhai`, `scripts/nginx-upgrade.rhai`) against a real
//! nginx with its own prefix, configuration, pid file and port, under live traffic: a request loop
//! and a rate-limited long download.
//!
//! nginx has no version switch, so the "new binary" is the same bytes put in place by write-then-mv,
//! and the versions differ by configuration: the new master reads `nginx.conf` when it starts, so
//! editing `return 200 "v1"` to `"v2"` before USR2 lets a check tell the old master from the new.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::*;
use crate::process::ssh_user_ids;

/// A real nginx master (daemon, one worker) started from a copy of the Debian binary in a temp dir.
struct Nginx {
    dir: TempDir,
    port: u16,
    /// The uid and gid nginx runs as, when not root.
    owner: Option<(u32, u32)>,
}

impl Nginx {
    /// nginx run by root, as a system nginx is.
    fn start() -> Nginx {
        Nginx::launch(None)
    }

    /// nginx run by the user test sshd instances log in as, so that an SSH host handle may signal it.
    fn start_as_ssh_user() -> Nginx {
        Nginx::launch(Some(ssh_user_ids()))
    }

    fn launch(owner: Option<(u32, u32)>) -> Nginx {
        let system = require("nginx");
        let dir = tempfile::Builder::new()
            .prefix("runner-nginx-")
            .tempdir()
            .unwrap();
        for sub in ["sbin", "html", "logs", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::copy(&system, dir.path().join("sbin/nginx")).unwrap();
        std::fs::write(dir.path().join("html/big.bin"), big_file()).unwrap();
        let nginx = Nginx {
            dir,
            port: free_port(),
            owner,
        };
        nginx.set_version("v1");
        let mut command = Command::new(nginx.binary());
        if let Some((uid, gid)) = owner {
            for entry in walk(nginx.dir.path()) {
                std::os::unix::fs::chown(entry, Some(uid), Some(gid)).unwrap();
            }
            command.uid(uid).gid(gid);
        }
        // The absolute path matters: USR2 re-executes exactly the path the master was started with.
        let status = command
            .arg("-p")
            .arg(nginx.dir.path())
            .arg("-c")
            .arg(nginx.path("nginx.conf"))
            .arg("-e")
            .arg(nginx.path("logs/error.log"))
            .status()
            .unwrap();
        assert!(status.success(), "nginx did not start: {status}");
        wait_port(nginx.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while nginx.get("/").is_err() {
            assert!(Instant::now() < deadline, "nginx does not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
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
    /// (so a download keeps its worker busy), every path is inside the temp dir.
    fn set_version(&self, version: &str) {
        let d = self.dir.path().display();
        // Workers of a root master would run as nobody, who cannot read the temp dir.
        let user = if self.owner.is_none() {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            r#"{user}
daemon on;
master_process on;
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
        location = / {{ return 200 "{version} $pid\n"; }}
        location = /big.bin {{ root {d}/html; limit_rate 1m; }}
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

    /// A new build of the same nginx: the same bytes, as a new file.
    fn install_new_binary(&self) {
        let bytes = std::fs::read(require("nginx")).unwrap();
        self.replace_binary(&bytes, 0o755);
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

/// One process, from /proc.
struct Proc {
    pid: i32,
    ppid: i32,
    running: bool,
    title: String,
}

fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let title = std::fs::read(entry.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(Proc {
            pid,
            ppid: fields[1].parse().unwrap_or(0),
            running: fields[0] != "Z",
            title,
        });
    }
    out
}

fn children(pid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid && p.running)
        .map(|p| p.pid)
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
        let out = nginx.path("download.bin");
        let child = Command::new(require("curl"))
            .args(["-sS", "--fail", "--limit-rate", "1M", "-o"])
            .arg(&out)
            .arg(nginx.url("/big.bin"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the download does not start");
            std::thread::sleep(Duration::from_millis(20));
        }
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
            &format!("verify: || http_get(\"{url}\").body.starts_with(\"v2 \"), timeout: 20"),
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
fn rollback_after_failed_verify(nginx: &Nginx, host: &str, name: &str) {
    let old = nginx.master();
    let traffic = Traffic::start(nginx.port);
    nginx.set_version("v2");
    nginx.install_new_binary();

    let url = nginx.url("/");
    let out = Test::new()
        .script(&upgrade_script(
            host,
            &nginx.pidfile(),
            &format!("verify: || http_get(\"{url}\").body.starts_with(\"v3 \"), timeout: 2"),
        ))
        .run()
        .code(1)
        .stderr_lacks("interrupted");
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
    let (version, worker) = nginx.served_by();
    assert_eq!(version, "v1");
    assert_eq!(children(old), vec![worker], "one worker, of the old master");
    out.stderr_has(&format!(
        "error: nginx on {name}: hot upgrade rolled back: verify returned false (for 2s); \
         master {old} serves with workers [{worker}]\n"
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

#[test]
fn upgrade_playbook_installs_the_binary_and_checks_the_version() {
    let nginx = Nginx::start();
    let old = nginx.master();
    let staged = nginx.path("nginx-new-build");
    std::fs::copy(require("nginx"), &staged).unwrap();
    nginx.set_version("v2");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/nginx-upgrade.rhai");
    Test::new()
        .args(&["play", &script.display().to_string()])
        .args(&["-p", &format!("pidfile={}", nginx.pidfile())])
        .args(&["-p", &format!("url={}", nginx.url("/"))])
        .args(&["-p", "version=v2", "-p", "timeout=10"])
        .args(&["-p", &format!("new_binary={}", staged.display())])
        .run()
        .success()
        .stderr_has(&format!("master {old} runs {}", nginx.binary().display()))
        .stderr_has("serves v2; the old master");
    assert!(
        nginx.path("sbin/nginx.old").exists(),
        "the old binary was not kept"
    );
    let new = nginx.master();
    assert_ne!(new, old);
    assert_eq!(nginx.masters(), vec![new]);
    assert_eq!(nginx.served_by().0, "v2");
}

#[test]
fn interrupted_hot_upgrade_is_rolled_back_when_the_script_stops() {
    use std::io::BufRead;
    let nginx = Nginx::start();
    let old = nginx.master();
    nginx.set_version("v2");
    nginx.install_new_binary();
    let (mut child, _dir) = Test::new()
        .script(&upgrade_script(
            "local()",
            &nginx.pidfile(),
            "verify: || false, timeout: 30",
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
