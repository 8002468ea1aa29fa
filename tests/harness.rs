//! A fluent builder around the real binary, in the manner of casey/just's `Test`, plus fixtures that
//! start real servers on 127.0.0.1 (on ports no other test can take first) and stop them when
//! dropped, and `eventually` for what takes a moment.

#![allow(dead_code)]

use std::fmt::Display;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// One invocation of `runner` in its own temporary directory.
pub struct Test {
    pub dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Run in this folder instead of `dir`.
    cwd: Option<PathBuf>,
}

/// What an invocation did.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub dir: TempDir,
}

impl Test {
    pub fn new() -> Self {
        Test::in_dir(
            tempfile::Builder::new()
                .prefix("runner-test-")
                .tempdir()
                .expect("a temp dir"),
        )
    }

    /// Another invocation in the directory of an earlier one (its files, scripts and run
    /// journals), e.g. `Test::in_dir(outcome.dir)`.
    pub fn in_dir(dir: TempDir) -> Self {
        let state = dir.path().join("state");
        Test {
            dir,
            args: Vec::new(),
            env: vec![("XDG_STATE_HOME".into(), state.display().to_string())],
            cwd: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a file relative to the test directory (folders created).
    pub fn file(self, rel: &str, text: &str) -> Self {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    /// Write `main.rhai` and run it with `runner play main.rhai` (further args appended with `args`).
    pub fn script(self, text: &str) -> Self {
        self.file("main.rhai", text).args(&["play", "main.rhai"])
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Run runner in `dir` (a folder that outlives this test, e.g. a project several runs share)
    /// instead of this test's own temporary directory.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.args(&self.args)
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()))
            .stdin(Stdio::null());
        c.env_remove("RUNNER_PATH");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(self) -> Outcome {
        let start = Instant::now();
        let out = self.command().output().expect("runner starts");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
            dir: self.dir,
        }
    }

    /// Start runner and hand back the child, for tests that signal it.
    pub fn spawn(self) -> (Child, TempDir) {
        let child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runner starts");
        (child, self.dir)
    }
}

impl Outcome {
    fn show(&self) -> String {
        format!(
            "exit code {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// Assert the exit code.
    pub fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code\n{}", self.show());
        self
    }

    pub fn success(self) -> Self {
        self.code(0)
    }

    pub fn stdout_has(self, text: &str) -> Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_has(self, text: &str) -> Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stderr_lacks(self, text: &str) -> Self {
        assert!(
            !self.stderr.contains(text),
            "stderr has {text:?}\n{}",
            self.show()
        );
        self
    }

    pub fn stdout_is(self, text: &str) -> Self {
        assert_eq!(self.stdout, text, "stdout differs\n{}", self.show());
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

// Waiting for something that takes a moment.

/// Call `check` until it returns `Some`, and return that value; `None` once `timeout` has passed
/// (`check` is called once more at the deadline). The pause between calls starts at 5 ms and
/// doubles up to 50 ms: a fast condition is seen at once, a slow one is not polled hard on a
/// machine of 2 cores shared with the servers under test.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether `cond` comes to hold within `timeout`, for cleanups that must not panic.
pub fn within(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    poll(timeout, || cond().then_some(())).is_some()
}

/// Wait until `cond` holds; past `timeout`, panic with `what` (what went wrong, for the reader of
/// a failed test).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool, what: impl Display) {
    eventually_some(timeout, || cond().then_some(()), what)
}

/// Wait until `check` returns `Some`, and return its value; past `timeout`, panic with `what`.
pub fn eventually_some<T>(
    timeout: Duration,
    check: impl FnMut() -> Option<T>,
    what: impl Display,
) -> T {
    poll(timeout, check).unwrap_or_else(|| panic!("{what} (waited {timeout:?})"))
}

/// Wait until `check` returns `Ok`, and return its value; past `timeout`, panic with `what` and
/// the last `Err`: what `check` saw instead.
pub fn eventually_ok<T, E: Display>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
    what: impl Display,
) -> T {
    let mut last = None;
    let found = poll(timeout, || match check() {
        Ok(value) => Some(value),
        Err(e) => {
            last = Some(e);
            None
        }
    });
    found.unwrap_or_else(|| {
        let last = last.map(|e| e.to_string()).unwrap_or_default();
        panic!("{what} (waited {timeout:?}); last seen: {last}")
    })
}

// Ports. A port that `free_port` released may be taken by another test before the server under
// test binds it: a fixture lets its program bind port 0 and reads the port back where the program
// can (busybox httpd), and otherwise starts it again on new ports when it could not bind
// (`with_free_ports`). Either way it checks that the listener is its own process's, not another
// server's that took the port.

/// A free TCP port on 127.0.0.1 (bound, then released): only where the program under test binds a
/// port that the test must name beforehand (`docker run -p` in a script).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports, all bound at once, then released. They are drawn at random from below
/// the kernel's ephemeral range: the ports of outgoing connections (the request loops make
/// thousands) and of `bind(0)` come from that range, and would take a released port there soon.
fn free_ports(n: usize) -> Vec<u16> {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral.max(20_000));
    let random = std::collections::hash_map::RandomState::new();
    let mut held: Vec<TcpListener> = Vec::new();
    for attempt in 0u64.. {
        if held.len() == n {
            break;
        }
        assert!(attempt < 1000, "no free port in {low}..{high}");
        let mut h = random.build_hasher();
        h.write_u64(attempt);
        let port = low + (h.finish() % u64::from(high - low)) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Start a server that cannot bind port 0 on `n` ports from `free_port`: `start` returns `None`
/// when the server could not bind one (another process took it in between; see `bind_failed`),
/// and it is started again on new ports, at most 5 times.
pub fn with_free_ports<T>(n: usize, mut start: impl FnMut(&[u16]) -> Option<T>) -> T {
    for _ in 0..5 {
        if let Some(server) = start(&free_ports(n)) {
            return server;
        }
    }
    panic!("5 times in a row another process took a port before the server could bind it")
}

/// Whether a server's log says it could not bind a port because another process had it.
pub fn bind_failed(log: &str) -> bool {
    log.contains("Address already in use")
}

/// Wait until `child` (or a process it started) listens on every one of `ports`: `true`, or
/// `false` if it exited first. Panics after 10 s.
pub fn wait_listening(child: &mut Child, ports: &[u16]) -> bool {
    let pid = child.id();
    eventually_some(
        Duration::from_secs(10),
        || {
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            listens_on(pid, ports).then_some(true)
        },
        format_args!("pid {pid} does not listen on {ports:?}"),
    )
}

/// Whether `pid` (or a process it started) listens on every one of `ports` on 127.0.0.1: something
/// accepts connections there (cheap), and it is this process, not another that took the port.
pub fn listens_on(pid: u32, ports: &[u16]) -> bool {
    if !ports
        .iter()
        .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok())
    {
        return false;
    }
    let open = listening_ports(pid);
    ports.iter().all(|p| open.contains(p))
}

/// A port on 127.0.0.1 where nothing listens, for tests of a refused connection: a socket bound to
/// it that never listens, so connections are refused and no other process can bind it while this
/// is held (it does not set SO_REUSEADDR).
pub struct ClosedPort {
    pub port: u16,
    _socket: socket2::Socket,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("a TCP socket");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&any.into()).expect("bind 127.0.0.1:0");
        let port = socket
            .local_addr()
            .unwrap()
            .as_socket()
            .expect("an IP address")
            .port();
        ClosedPort {
            port,
            _socket: socket,
        }
    }
}

/// A port on 127.0.0.1 that accepts TCP connections and never writes a byte, like a hung sshd: an SSH
/// client waits there for a banner that never comes. Connections are held for the life of the test
/// process.
pub struct SilentPort {
    pub port: u16,
}

impl SilentPort {
    pub fn new() -> SilentPort {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming().flatten() {
                held.push(c);
            }
        });
        SilentPort { port }
    }
}

// Processes, from /proc.

/// One process.
pub struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    /// Not a zombie: daemons here are reparented to a PID 1 that reaps slowly, so an exited process
    /// may linger as a zombie.
    pub running: bool,
    /// The command line, arguments separated by spaces.
    pub title: String,
}

/// Every process of this machine.
pub fn processes() -> Vec<ProcStat> {
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
        out.push(ProcStat {
            pid,
            ppid: fields[1].parse().unwrap_or(0),
            running: fields[0] != "Z",
            title,
        });
    }
    out
}

/// The running children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid && p.running)
        .map(|p| p.pid)
        .collect()
}

/// The inodes of the sockets that `pid` and its descendants hold.
fn socket_inodes(pid: u32) -> std::collections::HashSet<String> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", tree[i]));
        for task in tasks.into_iter().flatten().flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            tree.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    let mut inodes = std::collections::HashSet::new();
    for p in tree {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.to_string_lossy().into_owned();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|l| l.strip_suffix(']'))
                {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    inodes
}

/// The TCP ports on which `pid` or one of its descendants holds a listening socket: their socket
/// fds matched against the kernel's listening sockets.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes = socket_inodes(pid);
    if inodes.is_empty() {
        return Vec::new();
    }
    tcp_listeners()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(&inode.to_string()))
        .map(|(port, _)| port)
        .collect()
}

/// Every listening TCP socket of this machine (IPv4 and IPv6): its port and inode, from the
/// kernel's sock_diag netlink interface, which dumps only the listening ones. (/proc/net/tcp lists
/// every connection too: the request loops leave thousands in TIME_WAIT, and each read of it
/// cost about 10 ms of kernel time.)
fn tcp_listeners() -> Vec<(u16, u32)> {
    use std::io::Read;
    const AF_NETLINK: i32 = 16;
    const NETLINK_SOCK_DIAG: i32 = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST_DUMP: u16 = 0x1 | 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    const TCP_LISTEN: u32 = 10;
    let netlink = socket2::Socket::new(
        socket2::Domain::from(AF_NETLINK),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::from(NETLINK_SOCK_DIAG)),
    )
    .expect("a sock_diag netlink socket");
    let mut found = Vec::new();
    for family in [2u8, 10u8] {
        // struct nlmsghdr, then struct inet_diag_req_v2: family, IPPROTO_TCP, ext, pad, states,
        // and a zeroed inet_diag_sockid (48 bytes).
        let mut request = Vec::with_capacity(72);
        request.extend_from_slice(&72u32.to_ne_bytes());
        request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request.extend_from_slice(&NLM_F_REQUEST_DUMP.to_ne_bytes());
        request.extend_from_slice(&[0; 8]);
        request.extend_from_slice(&[family, 6, 0, 0]);
        request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
        request.extend_from_slice(&[0; 48]);
        netlink.send(&request).expect("a sock_diag request");
        let mut buf = vec![0u8; 64 * 1024];
        'dump: loop {
            let n = (&netlink).read(&mut buf).expect("a sock_diag answer");
            let mut at = 0;
            while at + 16 <= n {
                let u32_at = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().unwrap());
                let len = u32_at(at) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                if kind == NLMSG_DONE || len < 16 {
                    break 'dump;
                }
                assert_ne!(kind, NLMSG_ERROR, "sock_diag refused the request");
                // struct inet_diag_msg: the source port (big-endian) at 4, the inode at 68.
                let msg = at + 16;
                let port = u16::from_be_bytes([buf[msg + 4], buf[msg + 5]]);
                found.push((port, u32_at(msg + 68)));
                at += (len + 3) & !3;
            }
        }
    }
    found
}

/// A program this machine must have for the tests (installed by `.ci/run`).
pub fn require(program: &str) -> String {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/sbin",
        "/bin",
        "/usr/bin",
    ]) {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p.display().to_string();
        }
    }
    panic!("{program} is not installed: run `bash .ci/run` (or apt-get install it) first");
}

/// A real busybox httpd serving a folder, stopped when dropped. It binds port 0 itself and the
/// port is read back, so no other test can take it first.
pub struct Httpd {
    pub port: u16,
    pub root: TempDir,
    child: Child,
}

impl Httpd {
    /// Serve `index.html` with `body`.
    pub fn start(body: &str) -> Httpd {
        let busybox = require("busybox");
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), body).unwrap();
        let mut child = Command::new(busybox)
            .args(["httpd", "-f", "-p", "127.0.0.1:0", "-h"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd starts");
        let pid = child.id();
        let port = eventually_some(
            Duration::from_secs(10),
            || {
                assert!(matches!(child.try_wait(), Ok(None)), "busybox httpd exited");
                listening_ports(pid).first().copied()
            },
            "busybox httpd does not listen",
        );
        Httpd { port, root, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serve `content` at `/<name>` too.
    pub fn serve(&self, name: &str, content: &[u8]) {
        std::fs::write(self.root.path().join(name), content).unwrap();
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of a journal file, parsed; panics on a line that is not JSON.
pub fn journal_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("journal line {l:?} is not JSON: {e}"))
        })
        .collect()
}

/// The effects of a journal with their outcomes (its `effect` records), in order.
pub fn journal_lines(path: &Path) -> Vec<serde_json::Value> {
    journal_records(path)
        .into_iter()
        .filter(|r| r["type"] == "effect")
        .collect()
}

/// The unprivileged user test sshd instances log in as: its shell is /bin/sh with no rc files, so
/// nothing but the command itself runs (root's ~/.bashrc here costs 130 ms per command).
pub const SSH_USER: &str = "runner-test";

/// A real sshd on 127.0.0.1 with its own host key, client key and known_hosts, in a temporary
/// directory; stopped when dropped.
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    /// The client's private key (authorized for SSH_USER).
    pub key: PathBuf,
    /// A known_hosts file that holds this server's key.
    pub known_hosts: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = require("sshd");
        let keygen = require("ssh-keygen");
        let user_ok = Command::new("id")
            .arg(SSH_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(
            user_ok,
            "the test user {SSH_USER} does not exist: run `bash dev/setup.sh` first"
        );
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("runner-sshd-")
            .tempdir()
            .unwrap();
        let p = |f: &str| dir.path().join(f);
        for (file, comment) in [("host_key", "host"), ("id_ed25519", "client")] {
            let ok = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(p(file))
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-keygen failed");
        }
        std::fs::copy(p("id_ed25519.pub"), p("authorized_keys")).unwrap();
        // sshd reads the authorized_keys file as the user; keys under /tmp and StrictModes no.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(p("authorized_keys"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let host_pub = std::fs::read_to_string(p("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().collect();
        let log = p("sshd.log");
        // sshd cannot bind port 0: on a port taken meanwhile it exits, and starts again on another.
        let (port, child) = with_free_ports(1, |ports| {
            let port = ports[0];
            std::fs::write(
                p("known_hosts"),
                format!("[127.0.0.1]:{port} {} {}\n", host_pub[0], host_pub[1]),
            )
            .unwrap();
            std::fs::write(
                p("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nAuthorizedKeysFile {ak}\nPidFile {pid}\n\
                     UsePAM no\nUseDNS no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nLogLevel VERBOSE\nMaxSessions 10\nSubsystem sftp internal-sftp\n",
                    hk = p("host_key").display(),
                    ak = p("authorized_keys").display(),
                    pid = p("sshd.pid").display(),
                ),
            )
            .unwrap();
            let _ = std::fs::remove_file(&log);
            let mut child = Command::new(&sshd)
                .args(["-D", "-f"])
                .arg(p("sshd_config"))
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .spawn()
                .expect("sshd starts");
            if wait_listening(&mut child, &[port]) {
                return Some((port, child));
            }
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(bind_failed(&text), "sshd exited:\n{text}");
            None
        });
        Sshd {
            port,
            key: p("id_ed25519"),
            known_hosts: p("known_hosts"),
            log,
            dir,
            child,
        }
    }

    /// `runner-test@127.0.0.1:PORT`
    pub fn spec(&self) -> String {
        format!("{SSH_USER}@127.0.0.1:{}", self.port)
    }

    /// The options map a script passes to `ssh(spec, ...)`.
    pub fn opts(&self) -> String {
        format!(
            "#{{key: \"{}\", known_hosts_file: \"{}\"}}",
            self.key.display(),
            self.known_hosts.display()
        )
    }

    /// `ssh("...", #{...})` for this server, as script code.
    pub fn handle(&self) -> String {
        format!("ssh(\"{}\", {})", self.spec(), self.opts())
    }

    /// How many SSH connections the server accepted.
    pub fn accepted(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Assert that every ssh master of a finished run is gone (`ssh -O exit` is asynchronous on the
    /// master's side, so this allows it a moment).
    pub fn assert_no_clients_left(&self) {
        eventually_ok(
            Duration::from_secs(3),
            || match self.client_processes() {
                left if left.is_empty() => Ok(()),
                left => Err(format!("{left:?}")),
            },
            "ssh processes left behind",
        );
    }

    /// Kill every process serving a connection of this server (the listener's descendants), as a
    /// crash of sshd or a cut network would end them; the listener itself keeps running.
    pub fn drop_connections(&self) {
        let listener = self.child.id() as i32;
        let all = processes();
        let mut tree = vec![listener];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
            i += 1;
        }
        for pid in &tree[1..] {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Client `ssh` processes still connected to this server's port.
    pub fn client_processes(&self) -> Vec<String> {
        ssh_clients(self.port)
    }
}

/// The command lines of `ssh` client processes whose arguments name `port`.
pub fn ssh_clients(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ssh = args
            .first()
            .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"));
        if is_ssh
            && args
                .windows(2)
                .any(|w| w[0] == "-p" && w[1] == port.to_string())
        {
            found.push(args.join(" "));
        }
    }
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// HAProxy.

/// A real haproxy (2.6) in its own temp dir, stopped when dropped. Its frontend `fe` sends to
/// backend `web_servers`; by default (the standard topology) that holds `web1`, `web2` and a
/// `backup` server (roundrobin), three busybox httpd started with it that answer their name, and a
/// backend `static_servers` (static-rr) holds `s1` and `s2` on web1's and web2's httpd. Servers are
/// health-checked. Stats sockets: `admin` (level admin), `user` (level user), TCP `tcp` (admin);
/// with `master()`, a master CLI `master`. Built with `Haproxy::builder()`.
pub struct Haproxy {
    dir: TempDir,
    child: Child,
    /// The stats socket at level admin: the one scripts use.
    pub admin: PathBuf,
    /// A stats socket at level user (reads only).
    pub user: PathBuf,
    /// The master CLI (`haproxy -W -S`); there only when built with `master()`.
    pub master: PathBuf,
    /// A stats socket at level admin on TCP.
    pub tcp: u16,
    /// The frontend's port.
    pub front: u16,
    /// The standard topology's backend servers, by name.
    httpds: Vec<(&'static str, Httpd)>,
}

/// How to start a `Haproxy`.
pub struct HaproxyBuilder {
    master: bool,
    stats_timeout: &'static str,
    retries: u32,
    check_inter: &'static str,
    servers: Option<Vec<(String, u16)>>,
}

impl HaproxyBuilder {
    /// Run as a master and workers (`haproxy -W -S master.sock`), with a master CLI.
    pub fn master(mut self) -> Self {
        self.master = true;
        self
    }

    /// `stats timeout`: how long HAProxy keeps an idle CLI connection (default 10s).
    pub fn stats_timeout(mut self, timeout: &'static str) -> Self {
        self.stats_timeout = timeout;
        self
    }

    /// `retries` (default 3, with `option redispatch`); 0 makes a request sent to a stopped backend
    /// fail instead of being retried elsewhere.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The interval of health checks (default 1s).
    pub fn check_inter(mut self, inter: &'static str) -> Self {
        self.check_inter = inter;
        self
    }

    /// `web_servers` holds these servers (name, port on 127.0.0.1) instead of the standard
    /// topology: no httpd is started and there is no `static_servers`.
    pub fn servers(mut self, servers: &[(&str, u16)]) -> Self {
        self.servers = Some(servers.iter().map(|(n, p)| (n.to_string(), *p)).collect());
        self
    }

    fn config(&self, dir: &Path, front: u16, tcp: u16, httpds: &[(&str, Httpd)]) -> String {
        let inter = self.check_inter;
        let server = |name: &str, port: u16, extra: &str| {
            format!("    server {name} 127.0.0.1:{port}{extra} check inter {inter}\n")
        };
        let backends = match &self.servers {
            Some(servers) => {
                let lines: String = servers.iter().map(|(n, p)| server(n, *p, "")).collect();
                format!("backend web_servers\n    balance roundrobin\n{lines}")
            }
            None => {
                let port = |name: &str| httpds.iter().find(|(n, _)| *n == name).unwrap().1.port;
                format!(
                    "backend web_servers\n    balance roundrobin\n{}{}{}\
                     backend static_servers\n    balance static-rr\n{}{}",
                    server("web1", port("web1"), ""),
                    server("web2", port("web2"), ""),
                    server("backup", port("backup"), " backup"),
                    server("s1", port("web1"), ""),
                    server("s2", port("web2"), ""),
                )
            }
        };
        format!(
            "global\n\
             \x20   stats socket {admin} mode 600 level admin\n\
             \x20   stats socket {user} mode 600 level user\n\
             \x20   stats socket ipv4@127.0.0.1:{tcp} level admin\n\
             \x20   stats timeout {stats_timeout}\n\
             \x20   # small socket buffers: a rate-limited download keeps its session until it ends\n\
             \x20   tune.sndbuf.client 16384\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 10s\n\
             \x20   timeout server 10s\n\
             \x20   retries {retries}\n\
             \x20   option redispatch\n\
             frontend fe\n\
             \x20   bind 127.0.0.1:{front}\n\
             \x20   default_backend web_servers\n\
             {backends}",
            admin = dir.join("admin.sock").display(),
            user = dir.join("user.sock").display(),
            stats_timeout = self.stats_timeout,
            retries = self.retries,
        )
    }

    pub fn start(self) -> Haproxy {
        let haproxy = require("haproxy");
        let dir = tempfile::Builder::new()
            .prefix("runner-haproxy-")
            .tempdir()
            .unwrap();
        let httpds = match self.servers {
            Some(_) => Vec::new(),
            None => vec![
                ("web1", Httpd::start("web1\n")),
                ("web2", Httpd::start("web2\n")),
                ("backup", Httpd::start("backup\n")),
            ],
        };
        let (admin, user, master) = (
            dir.path().join("admin.sock"),
            dir.path().join("user.sock"),
            dir.path().join("master.sock"),
        );
        let cfg = dir.path().join("haproxy.cfg");
        let log_path = dir.path().join("haproxy.log");
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        // HAProxy cannot bind port 0: on a port taken meanwhile it exits, and starts again on others.
        let (front, tcp, child) = with_free_ports(2, |ports| {
            let (front, tcp) = (ports[0], ports[1]);
            std::fs::write(&cfg, self.config(dir.path(), front, tcp, &httpds)).unwrap();
            let out = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(&haproxy);
            cmd.arg("-db");
            if self.master {
                cmd.arg("-W").arg("-S").arg(&master);
            }
            let mut child = cmd
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .expect("haproxy starts");
            if wait_listening(&mut child, &[front, tcp]) {
                return Some((front, tcp, child));
            }
            let _ = child.wait();
            assert!(bind_failed(&log()), "haproxy exited:\n{}", log());
            None
        });
        eventually_ok(
            Duration::from_secs(10),
            || {
                if UnixStream::connect(&admin).is_ok()
                    && (!self.master || UnixStream::connect(&master).is_ok())
                {
                    Ok(())
                } else {
                    Err(format!("\n{}", log()))
                }
            },
            "haproxy did not open its sockets",
        );
        Haproxy {
            dir,
            child,
            admin,
            user,
            master,
            tcp,
            front,
            httpds,
        }
    }
}

impl Haproxy {
    /// The standard topology with the defaults.
    pub fn start() -> Haproxy {
        Haproxy::builder().start()
    }

    pub fn builder() -> HaproxyBuilder {
        HaproxyBuilder {
            master: false,
            stats_timeout: "10s",
            retries: 3,
            check_inter: "1s",
            servers: None,
        }
    }

    /// The admin socket's path, as scripts name it: `haproxy("...")`.
    pub fn sock(&self) -> String {
        self.admin.display().to_string()
    }

    /// The frontend's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.front)
    }

    /// The process started (the master, with `master()`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its temp dir: the configuration, the sockets and the log are there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file (a master reloads it).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("haproxy.cfg")
    }

    /// What haproxy printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// A server of the standard topology: `web1`, `web2` or `backup`.
    pub fn httpd(&self, name: &str) -> &Httpd {
        self.httpds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| h)
            .unwrap_or_else(|| panic!("no httpd {name} behind this haproxy"))
    }

    /// One command on the admin socket the way `socat` sends it, for checks independent of runner.
    pub fn raw(&self, command: &str) -> String {
        socat(&self.admin, command)
    }

    /// One command on the master CLI, the same way.
    pub fn raw_master(&self, command: &str) -> String {
        socat(&self.master, command)
    }

    /// The current weight of `web_servers/<server>`, read with `get weight`.
    pub fn weight(&self, server: &str) -> i64 {
        let answer = self.raw(&format!("get weight web_servers/{server}"));
        answer
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("get weight {server}: {answer:?}"))
    }

    /// The status column of `show stat` for `web_servers/<server>`.
    pub fn status(&self, server: &str) -> String {
        let stat = self.raw("show stat");
        let header: Vec<&str> = stat
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header.iter().position(|h| *h == "status").unwrap();
        stat.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f[0] == "web_servers" && f[1] == server)
            .map(|f| f[col].to_string())
            .unwrap_or_else(|| panic!("no web_servers/{server} in {stat}"))
    }

    /// Reload as an operator applies a configuration change. A standalone haproxy: start a new
    /// one on the same configuration with `-sf <old pid>`; it binds new listeners (the stats
    /// sockets are new files at the same paths) and tells the old one to finish softly: that one
    /// stops its proxies and exits once its last session, a CLI connection included, has ended;
    /// `pid()` is then the new process. With `master()`: SIGUSR2 to the master, as `systemctl
    /// reload` does; the master starts a new worker, which inherits the listeners (the socket files
    /// stay), and the old worker finishes softly. Returns when a new process serves the admin socket
    /// (and, with `master()`, the old worker knows it is stopping).
    pub fn reload(&mut self) {
        if self.master.exists() {
            let old_worker = self.serving_pid();
            let master = self.child.id() as i32;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(master),
                nix::sys::signal::Signal::SIGUSR2,
            )
            .unwrap();
            self.wait_serving(|pid| pid != old_worker && children(master).contains(&pid));
            // The master tells the old worker to stop only once the new one is ready: until then
            // the old one answers as the live process on the connections it holds.
            eventually(
                Duration::from_secs(10),
                || {
                    let info = self.raw_master(&format!("@!{old_worker} show info"));
                    info.contains("Stopping: 1") || !info.contains("Pid:")
                },
                "the old worker was not told to stop after the reload",
            );
            return;
        }
        let child = self.spawn_on_config(&["-sf", &self.child.id().to_string()]);
        let mut retired = std::mem::replace(&mut self.child, child);
        std::thread::spawn(move || {
            if !within(Duration::from_secs(20), || {
                matches!(retired.try_wait(), Ok(Some(_)))
            }) {
                let _ = retired.kill();
                let _ = retired.wait();
            }
        });
        let new = self.child.id() as i32;
        self.wait_serving(|pid| pid == new);
    }

    /// Kill haproxy with SIGKILL, as a crash does: its socket files stay, refusing connections.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same configuration and ports after `kill`; returns when it serves the
    /// admin socket.
    pub fn start_again(&mut self) {
        self.child = self.spawn_on_config(&[]);
        let new = self.child.id() as i32;
        self.wait_serving(|pid| pid == new);
    }

    /// A standalone haproxy on this one's configuration, with `extra` arguments, appending to its log.
    fn spawn_on_config(&self, extra: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("haproxy.log"))
            .unwrap();
        Command::new(require("haproxy"))
            .arg("-db")
            .arg("-f")
            .arg(self.config_path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts")
    }

    /// The pid `show info` gives on a new connection to the admin socket (0 if it does not answer).
    fn serving_pid(&self) -> i32 {
        let info = (|| -> std::io::Result<String> {
            let mut s = UnixStream::connect(&self.admin)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"show info\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })()
        .unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Wait until the process serving the admin socket is one that `new` accepts.
    fn wait_serving(&self, new: impl Fn(i32) -> bool) {
        eventually_ok(
            Duration::from_secs(10),
            || match self.serving_pid() {
                pid if new(pid) => Ok(()),
                pid => Err(format!("still served by pid {pid}\n{}", self.log())),
            },
            "no new haproxy process serves the admin socket after the reload",
        );
    }

    /// Wait until HAProxy has seen `web_servers/<server>` answer its health checks.
    pub fn wait_up(&self, server: &str) {
        eventually_ok(
            Duration::from_secs(15),
            || match self.status(server) {
                up if up.starts_with("UP") => Ok(()),
                other => Err(other),
            },
            format_args!("web_servers/{server} is not UP"),
        );
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        // TERM, so that a master stops its workers too.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if !within(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One command on a fresh connection to a unix socket, read to EOF (retried while the socket
/// refuses connections).
pub fn socat(socket: &Path, command: &str) -> String {
    let mut s = eventually_ok(
        Duration::from_secs(5),
        || UnixStream::connect(socket),
        format_args!("cannot connect to {}", socket.display()),
    );
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    // As socat does at the end of its input: the master CLI answers, then waits for more until then.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

// Docker: the engine, and the test web server image.

/// The test image's repository; `:v1` and `:v2` serve "runner-test-httpd v1" / "v2".
pub const TEST_IMAGE: &str = "runner-test-httpd";
/// Changes whenever the recipe below changes, so a stale image is rebuilt.
const RECIPE: &str = "busybox httpd -f -p 80 -h /www; /bin/sh -> busybox; recipe 1";

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker command runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The engine must be there. The project's machine has one, so its absence fails the docker tests,
/// under CI=true and everywhere else: a silent skip would hide a regression.
pub fn docker_engine() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| match Command::new("docker").arg("info").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Err(format!("cannot run docker: {e}")),
    });
    if let Err(why) = ready {
        let ci = if std::env::var("CI").as_deref() == Ok("true") {
            " (CI=true)"
        } else {
            ""
        };
        panic!("the docker engine is unavailable{ci}: `docker info` failed: {why}\nstart it (bash dev/setup.sh starts dockerd); the docker tests do not skip");
    }
}

/// The test image `runner-test-httpd:VERSION` ("v1" or "v2"), built once per test run: a root
/// filesystem holding the static busybox from busybox-static, brought in with `docker import`.
/// An image already built from the same busybox and recipe is reused.
pub fn test_image(version: &str) -> String {
    static BUILT: OnceLock<()> = OnceLock::new();
    docker_engine();
    BUILT.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        let bytes = std::fs::read(busybox)
            .expect("/bin/busybox (the static busybox of busybox-static) is needed for the test image: apt-get install busybox-static");
        let build = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (RECIPE, &bytes).hash(&mut h);
            format!("{:016x}", h.finish())
        };
        // Other test processes may build at the same time: one at a time, the others reuse.
        let lock = std::fs::File::create(std::env::temp_dir().join("runner-test-httpd.lock"))
            .expect("a lock file in the temp dir");
        lock.lock().expect("the image build lock");
        for v in ["v1", "v2"] {
            let tag = format!("{TEST_IMAGE}:{v}");
            let have = docker(&[
                "image",
                "inspect",
                "--format",
                "{{index .Config.Labels \"runner.test.build\"}}",
                &tag,
            ]);
            if have.status.success() && String::from_utf8_lossy(&have.stdout).trim() == build {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            std::fs::create_dir_all(root.join("bin")).unwrap();
            std::fs::create_dir_all(root.join("www")).unwrap();
            std::fs::write(root.join("bin/busybox"), &bytes).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                root.join("bin/busybox"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            // Health commands run through /bin/sh -c.
            std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
            std::fs::write(root.join("www/index.html"), format!("{TEST_IMAGE} {v}\n")).unwrap();
            let tar = dir.path().join("rootfs.tar");
            let status = Command::new("tar")
                .arg("-C")
                .arg(&root)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .unwrap();
            assert!(status.success(), "tar of the test image's root failed");
            let _ = docker(&["rmi", &tag]);
            docker_ok(&[
                "import",
                "--change",
                r#"CMD ["/bin/busybox","httpd","-f","-p","80","-h","/www"]"#,
                "--change",
                &format!("LABEL runner.test.build={build}"),
                tar.to_str().unwrap(),
                &tag,
            ]);
        }
    });
    format!("{TEST_IMAGE}:{version}")
}

// HTTP through a frontend: single requests and a request loop.

/// A response's status and body, or why there was none.
pub type Response = Result<(u16, String), String>;

/// One HTTP/1.0 GET of `path` on 127.0.0.1:port, on a new connection: the status and the body.
pub fn http_get_raw(port: u16, path: &str) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {resp:?}"))?;
    let body = resp
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Ok((status, body))
}

/// Requests sent in a loop on a thread, each answer recorded, until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Response>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(port: u16) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let answer = http_get_raw(port, "/");
                r.lock().unwrap().push(answer);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Traffic {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// How many answers so far: a mark to look at what came after.
    pub fn mark(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Wait until `n` more answers than `mark` came in.
    pub fn wait_past(&self, mark: usize, n: usize) {
        eventually(
            Duration::from_secs(10),
            || self.mark() >= mark + n,
            "the request loop is stuck",
        );
    }

    pub fn stop(mut self) -> Vec<Response> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Stop, and assert that every request was answered 200; returns the bodies.
    pub fn stop_all_ok(self) -> Vec<String> {
        let seen = self.stop();
        let failed: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
        assert!(
            failed.is_empty(),
            "{} of {} requests failed: {:?}",
            failed.len(),
            seen.len(),
            &failed[..failed.len().min(5)]
        );
        seen.into_iter().map(|r| r.unwrap().1).collect()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
