//! A fluent builder around the real binary, in the manner of casey/just's `Test`, plus fixtures that
//! start real servers on free 127.0.0.1 ports and stop them when dropped.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// One invocation of `runner` in its own temporary directory.
pub struct Test {
    pub dir: TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
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
        let dir = tempfile::Builder::new()
            .prefix("runner-test-")
            .tempdir()
            .expect("a temp dir");
        let state = dir.path().join("state");
        Test {
            dir,
            args: Vec::new(),
            env: vec![("XDG_STATE_HOME".into(), state.display().to_string())],
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

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.args(&self.args)
            .current_dir(self.dir.path())
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

/// A free TCP port on 127.0.0.1 (bound, then released for the server under test).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP connections on 127.0.0.1:port.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// A real busybox httpd serving a folder, stopped when dropped.
pub struct Httpd {
    pub port: u16,
    pub root: TempDir,
    child: Child,
}

impl Httpd {
    /// Serve `index.html` with `body` on a free port.
    pub fn start(body: &str) -> Httpd {
        let busybox = require("busybox");
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), body).unwrap();
        let port = free_port();
        let child = Command::new(busybox)
            .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("busybox httpd starts");
        wait_port(port);
        Httpd { port, root, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of a journal file, parsed; panics on a line that is not JSON.
pub fn journal_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("journal line {l:?} is not JSON: {e}"))
        })
        .collect()
}
