//! Files on a host: read, check, and write atomically (a temporary file in the same folder, then a
//! rename, so a reader never sees half a file; an existing file keeps its mode), uploads and
//! downloads streamed so that large files never go through memory. On this machine through the
//! file system, on an SSH host through `cat`, `test` and `mv` over the host's connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::command::{quote, tail, Command, Input, Output, RunOpts, Sink};
use super::handle::{Host, Transport};
use crate::effect::Permit;
use crate::error::{Failure, Kind};
use crate::run::Run;

/// How long reading or checking a small file on a remote host may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

impl Host {
    /// A shell script of the file primitives, run on the host; its exit code is the caller's to judge.
    /// Reads and checks are small and get `PROBE_TIMEOUT`; transfers take as long as they take.
    fn shell(
        &self,
        run: &Run,
        p: &Permit,
        script: &str,
        input: Input,
        sink: Sink,
    ) -> Result<Output, Failure> {
        let cmd = Command::Shell(script.to_string());
        let o = RunOpts {
            timeout: matches!((&input, &sink), (Input::Null, Sink::Capture))
                .then_some(PROBE_TIMEOUT),
            ..RunOpts::probe()
        };
        self.exec(run, p, &cmd, &o, input, sink)
    }

    /// The content of the file at `path`, or None when it does not exist.
    pub fn read_optional(&self, run: &Run, path: &str) -> Result<Option<String>, Failure> {
        let host = self.name();
        run.read(host, |p| match self.transport() {
            Transport::Local => match std::fs::read_to_string(path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_failure(host, "cannot read", path, e)),
            },
            Transport::Ssh(_) => {
                let script = format!("cat -- {}", quote(path));
                let out = self.shell(run, p, &script, Input::Null, Sink::Capture)?;
                match check_file_op(host, "cannot read", path, &out) {
                    Ok(()) => Ok(Some(out.stdout)),
                    Err(f) if f.kind == Kind::NotFound => Ok(None),
                    Err(f) => Err(f),
                }
            }
        })
    }

    /// The content of the file at `path`; a missing file is an error (`not_found`).
    pub fn read_file(&self, run: &Run, path: &str) -> Result<String, Failure> {
        self.read_optional(run, path)?.ok_or_else(|| {
            let host = self.name();
            Failure::new(
                Kind::NotFound,
                host,
                format!("{host}: cannot read {path}: No such file or directory"),
            )
        })
    }

    /// Whether `path` exists (`test -e`); a check that cannot be made is an error.
    pub fn exists(&self, run: &Run, path: &str) -> Result<bool, Failure> {
        let host = self.name();
        run.read(host, |p| match self.transport() {
            Transport::Local => Ok(Path::new(path).exists()),
            Transport::Ssh(_) => {
                let script = format!("test -e {}", quote(path));
                let out = self.shell(run, p, &script, Input::Null, Sink::Capture)?;
                match out.code {
                    0 => Ok(true),
                    1 => Ok(false),
                    _ => Err(check_file_op(host, "cannot check", path, &out).unwrap_err()),
                }
            }
        })
    }

    /// Write `content` to `path`, atomically. An effect.
    pub fn write_file(&self, run: &Run, path: &str, content: &str) -> Result<(), Failure> {
        run.effect(
            self.name(),
            &format!("write {path}"),
            json!({"path": path, "bytes": content.len()}),
            |p| self.put(run, p, path, Input::Text(content.to_string())),
        )?;
        Ok(())
    }

    /// Copy the local file `local_path` to `remote_path` on the host, streamed. An effect.
    pub fn upload(&self, run: &Run, local_path: &str, remote_path: &str) -> Result<(), Failure> {
        if !Path::new(local_path).is_file() {
            return Err(Failure::new(
                Kind::NotFound,
                "local",
                format!("upload to {}: no local file {local_path}", self.name()),
            ));
        }
        run.effect(
            self.name(),
            &format!("upload {local_path} to {remote_path}"),
            json!({"from": local_path, "to": remote_path}),
            |p| self.put(run, p, remote_path, Input::File(PathBuf::from(local_path))),
        )?;
        Ok(())
    }

    /// Copy `remote_path` on the host to the local file `local_path`, streamed and written
    /// atomically. An effect on this machine.
    pub fn download(&self, run: &Run, remote_path: &str, local_path: &str) -> Result<(), Failure> {
        let host = self.name();
        let fetch = |p: &Permit, tmp: &Path| match self.transport() {
            Transport::Local => std::fs::copy(remote_path, tmp).map(|_| ()),
            Transport::Ssh(_) => {
                let script = format!("cat -- {}", quote(remote_path));
                let out = self
                    .shell(run, p, &script, Input::Null, Sink::File(tmp.to_path_buf()))
                    .map_err(|f| std::io::Error::other(f.message))?;
                check_file_op(host, "cannot read", remote_path, &out)
                    .map_err(|f| std::io::Error::other(f.message))
            }
        };
        run.effect(
            "local",
            &format!("download {host}:{remote_path} to {local_path}"),
            json!({"host": host, "from": remote_path, "to": local_path}),
            |p| {
                with_temp_beside(Path::new(local_path), |tmp| fetch(p, tmp)).map_err(|e| {
                    let what = format!("cannot download {remote_path} to");
                    io_failure(host, &what, local_path, e)
                })
            },
        )?;
        Ok(())
    }

    /// Write a file on the host atomically (temp file in the same folder + rename; an existing
    /// file keeps its mode).
    fn put(&self, run: &Run, p: &Permit, path: &str, input: Input) -> Result<(), Failure> {
        let host = self.name();
        match (self.transport(), &input) {
            (Transport::Local, Input::Text(t)) => write_atomic(Path::new(path), t.as_bytes())
                .map_err(|e| io_failure(host, "cannot write", path, e)),
            (Transport::Local, Input::File(src)) => {
                copy_atomic(src, Path::new(path)).map_err(|e| {
                    io_failure(host, &format!("cannot copy {} to", src.display()), path, e)
                })
            }
            _ => {
                let q = quote(path);
                let script = format!(
                    "set -e; d=$(dirname -- {q}); b=$(basename -- {q}); t=\"$d/.$b.runner-$$\"; trap 'rm -f \"$t\"' EXIT; \
                     cat > \"$t\"; if [ -e {q} ]; then chmod --reference={q} \"$t\" 2>/dev/null || true; fi; mv -f \"$t\" {q}; trap - EXIT"
                );
                let out = self.shell(run, p, &script, input, Sink::Capture)?;
                check_file_op(host, "cannot write", path, &out)
            }
        }
    }
}

/// A file operation's shell command failed: say what and where, with the shell's words.
fn check_file_op(host: &str, what: &str, path: &str, out: &Output) -> Result<(), Failure> {
    if out.code == 0 {
        return Ok(());
    }
    let err = tail(&out.stderr, 3);
    let kind = if err.contains("No such file") {
        Kind::NotFound
    } else {
        Kind::Io
    };
    Err(Failure::new(
        kind,
        host,
        format!(
            "{host}: {what} {path}: {}",
            if err.is_empty() {
                format!("exit code {}", out.code)
            } else {
                err
            }
        ),
    ))
}

/// Write `data` to `path` atomically: a temporary file in the same folder, then a rename, so a reader
/// never sees half a file. An existing file keeps its permissions.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    with_temp_beside(path, |tmp| {
        use std::io::Write;
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })
}

/// Copy a file atomically (temp + rename in the destination folder), streaming it.
fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    with_temp_beside(to, |tmp| std::fs::copy(from, tmp).map(|_| ()))
}

/// Fill a temporary file next to `path` with `fill`, give it the mode of the file it replaces, and
/// rename it over `path`; the temporary file never outlives a failure.
fn with_temp_beside(
    path: &Path,
    fill: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.runner-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = fill(&tmp).and_then(|_| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn io_failure(host: &str, what: &str, path: &str, e: std::io::Error) -> Failure {
    let kind = if e.kind() == std::io::ErrorKind::NotFound {
        Kind::NotFound
    } else {
        Kind::Io
    };
    Failure::new(kind, host, format!("{host}: {what} {path}: {e}"))
}
