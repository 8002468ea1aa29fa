//! Files on a host: read, check, and write atomically (a temporary file in the same folder, then a
//! rename, so a reader never sees half a file; an existing file keeps its mode and owner unless
//! told), uploads and downloads streamed so that large files never go through memory. A write that
//! would change nothing is not made. On this machine through the file system, on an SSH host (or
//! as another user, `become`) through `cat`, `stat`, `chmod`, `chown` and `mv` in a shell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rhai::Map;
use serde_json::json;

use super::command::{quote, tail, Command, Input, Output, RunOpts, Sink};
use super::diff::{unified, Shown};
use super::handle::{Host, Transport};
use crate::effect::Permit;
use crate::error::{Failure, Kind};
use crate::opts::Opts;
use crate::prims::privilege::{BecomeOpts, BECOME_KEYS};
use crate::run::Run;

/// How long reading or checking a small file on a remote host may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The options of `write_file`, `template` and `upload`.
pub const WRITE_KEYS: &[&str] = &["mode", "owner", "group", "become", "become_user", "sudo"];

/// How a file is written: its mode and owner (None: an existing file's are kept), and as whom.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    /// Octal permission bits.
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub privilege: BecomeOpts,
}

impl WriteOpts {
    pub fn parse(options: Map, host: &str) -> Result<Self, Failure> {
        debug_assert!(BECOME_KEYS.iter().all(|k| WRITE_KEYS.contains(k)));
        let o = Opts::new(options, WRITE_KEYS, host)?;
        let mode = match o.get("mode") {
            None => None,
            Some(v) if v.is_string() => {
                let text = v.to_string();
                let bits = u32::from_str_radix(&text, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777 && !text.is_empty())
                    .ok_or_else(|| {
                        Failure::usage(host, format!("{host}: mode \"{text}\" is not an octal mode such as \"0644\""))
                    })?;
                Some(bits)
            }
            Some(v) => {
                return Err(Failure::usage(
                    host,
                    format!("{host}: mode must be a string of octal digits such as \"0644\", not {} {v} (an int such as 644 is not read as octal)", v.type_name()),
                ))
            }
        };
        Ok(WriteOpts {
            mode,
            owner: o.string("owner")?,
            group: o.string("group")?,
            privilege: BecomeOpts::parse(&o)?,
        })
    }

    /// As the gate's journal shows them.
    fn details(&self) -> serde_json::Value {
        json!({
            "mode": self.mode.map(|m| format!("{m:04o}")),
            "owner": self.owner,
            "group": self.group,
        })
    }
}

/// What a file is now: its content (None: it does not exist), mode and owner.
struct Current {
    content: Option<String>,
    mode: u32,
    owner: String,
    group: String,
}

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
        self.shell_as(run, p, script, input, sink, &BecomeOpts::default())
    }

    /// `shell` as another user (`become`), or as the host's default user.
    fn shell_as(
        &self,
        run: &Run,
        p: &Permit,
        script: &str,
        input: Input,
        sink: Sink,
        privilege: &BecomeOpts,
    ) -> Result<Output, Failure> {
        let cmd = Command::Shell(script.to_string());
        let o = RunOpts {
            timeout: matches!((&input, &sink), (Input::Null, Sink::Capture))
                .then_some(PROBE_TIMEOUT),
            privilege: privilege.clone(),
            ..RunOpts::probe()
        };
        self.exec(run, p, &cmd, &o, input, sink)
    }

    /// Whether file operations go through the file system of this machine (local, as this user),
    /// rather than through a shell (remote, or as another user).
    fn direct(&self, privilege: &BecomeOpts) -> bool {
        matches!(self.transport(), Transport::Local)
            && privilege.resolve(self.privilege()).is_none()
    }

    /// The content of the file at `path`, or None when it does not exist.
    pub fn read_optional(&self, run: &Run, path: &str) -> Result<Option<String>, Failure> {
        let host = self.name();
        let own = BecomeOpts::default();
        run.read(host, |p| match self.direct(&own) {
            true => match std::fs::read_to_string(path) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_failure(host, "cannot read", path, e)),
            },
            false => {
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
        run.read(host, |p| match self.direct(&BecomeOpts::default()) {
            true => Ok(Path::new(path).exists()),
            false => {
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

    /// What the file at `path` is now, read as the writer would write it. A read.
    fn current(&self, run: &Run, path: &str, o: &WriteOpts) -> Result<Current, Failure> {
        let host = self.name();
        run.read(host, |p| {
            if self.direct(&o.privilege) {
                use std::os::unix::fs::MetadataExt;
                let meta = match std::fs::metadata(path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Ok(Current::missing())
                    }
                    Err(e) => return Err(io_failure(host, "cannot read", path, e)),
                };
                let content = std::fs::read(path)
                    .map_err(|e| io_failure(host, "cannot read", path, e))?;
                let owner = nix::unistd::User::from_uid(meta.uid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| meta.uid().to_string(), |u| u.name);
                let group = nix::unistd::Group::from_gid(meta.gid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| meta.gid().to_string(), |g| g.name);
                return Ok(Current {
                    content: Some(String::from_utf8_lossy(&content).into_owned()),
                    mode: meta.mode() & 0o7777,
                    owner,
                    group,
                });
            }
            let q = quote(path);
            let script = format!(
                "if [ -e {q} ]; then {{ stat -c '%a %U %G' -- {q} 2>/dev/null || echo '- - -'; }} && cat -- {q}; else echo runner-no-such-file; fi"
            );
            let out = self.shell_as(run, p, &script, Input::Null, Sink::Capture, &o.privilege)?;
            check_file_op(host, "cannot read", path, &out)?;
            let (head, content) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
            if head == "runner-no-such-file" {
                return Ok(Current::missing());
            }
            let mut f = head.split_whitespace();
            let (Some(mode), Some(owner), Some(group)) = (f.next(), f.next(), f.next()) else {
                return Err(Failure::new(
                    Kind::Io,
                    host,
                    format!("{host}: cannot read {path}: stat said `{head}`"),
                ));
            };
            Ok(Current {
                content: Some(content.to_string()),
                mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                owner: owner.to_string(),
                group: group.to_string(),
            })
        })
    }

    /// Write `content` to `path`, atomically, with the mode and owner of `o`, unless the file is
    /// that already. An effect when it changes something; returns `#{changed}` (and `dry_run`
    /// under `--dry-run`). Under `--dry-run` and `-v` the change is shown as a diff.
    pub fn write_file(
        &self,
        run: &Run,
        path: &str,
        content: &str,
        o: &WriteOpts,
    ) -> Result<Map, Failure> {
        let host = self.name();
        let now = self.current(run, path, o)?;
        let same_content = now.content.as_deref() == Some(content);
        let same_mode = o
            .mode
            .is_none_or(|m| now.content.is_some() && m == now.mode);
        let same_owner = o.owner.as_ref().is_none_or(|u| *u == now.owner)
            && o.group.as_ref().is_none_or(|g| *g == now.group);
        let mut result = Map::new();
        if same_content && same_mode && same_owner {
            run.report
                .debug(&format!("{host}: {path} is as it should be"));
            result.insert("changed".into(), false.into());
            return Ok(result);
        }
        if run.dry_run() || run.report.verbosity() > 0 {
            let old_owner = now
                .content
                .as_ref()
                .map(|_| format!("{}:{}", now.owner, now.group));
            let new_owner = match (&o.owner, &o.group) {
                (None, None) => old_owner.clone(),
                (u, g) => Some(format!(
                    "{}:{}",
                    u.as_deref().unwrap_or(&now.owner),
                    g.as_deref().unwrap_or(&now.group)
                )),
            };
            let old = Shown {
                content: now.content.as_deref(),
                mode: now.content.as_ref().map(|_| format!("{:04o}", now.mode)),
                owner: old_owner,
            };
            let new = Shown {
                content: Some(content),
                mode: o.mode.map(|m| format!("{m:04o}")).or(old.mode.clone()),
                owner: new_owner,
            };
            run.report
                .diff(host, path, &unified(host, path, &old, &new));
        }
        let mut details = o.details();
        details["path"] = path.into();
        details["bytes"] = content.len().into();
        let done = run.effect(host, &format!("write {path}"), details, |p| {
            self.put(run, p, path, Input::Text(content.to_string()), o)
        })?;
        result.insert("changed".into(), true.into());
        if done.is_none() {
            result.insert("dry_run".into(), true.into());
        }
        Ok(result)
    }

    /// Copy the local file `local_path` to `remote_path` on the host, streamed, with the mode and
    /// owner of `o`. An effect.
    pub fn upload(
        &self,
        run: &Run,
        local_path: &str,
        remote_path: &str,
        o: &WriteOpts,
    ) -> Result<(), Failure> {
        if !Path::new(local_path).is_file() {
            return Err(Failure::new(
                Kind::NotFound,
                "local",
                format!("upload to {}: no local file {local_path}", self.name()),
            ));
        }
        let mut details = o.details();
        details["from"] = local_path.into();
        details["to"] = remote_path.into();
        run.effect(
            self.name(),
            &format!("upload {local_path} to {remote_path}"),
            details,
            |p| {
                self.put(
                    run,
                    p,
                    remote_path,
                    Input::File(PathBuf::from(local_path)),
                    o,
                )
            },
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
                let keep = WriteOpts::default();
                with_temp_beside(Path::new(local_path), &keep, |tmp| fetch(p, tmp)).map_err(|e| {
                    let what = format!("cannot download {remote_path} to");
                    io_failure(host, &what, local_path, e)
                })
            },
        )?;
        Ok(())
    }

    /// Write a file on the host atomically (temp file in the same folder + rename), with the mode
    /// and owner of `o`; an existing file's are kept otherwise.
    fn put(
        &self,
        run: &Run,
        p: &Permit,
        path: &str,
        input: Input,
        o: &WriteOpts,
    ) -> Result<(), Failure> {
        let host = self.name();
        if self.direct(&o.privilege) {
            let fill = |tmp: &Path| match &input {
                Input::Text(t) => {
                    use std::io::Write;
                    let mut f = std::fs::File::create(tmp)?;
                    f.write_all(t.as_bytes())?;
                    f.sync_all()
                }
                Input::File(src) => std::fs::copy(src, tmp).map(|_| ()),
                Input::Null => std::fs::File::create(tmp).map(|_| ()),
            };
            return with_temp_beside(Path::new(path), o, fill).map_err(|e| {
                let what = match &input {
                    Input::File(src) => format!("cannot copy {} to", src.display()),
                    _ => "cannot write".to_string(),
                };
                io_failure(host, &what, path, e)
            });
        }
        let q = quote(path);
        let mode = match o.mode {
            Some(m) => format!("chmod {m:04o} \"$t\""),
            None => {
                format!("if [ -e {q} ]; then chmod --reference={q} \"$t\" 2>/dev/null || true; fi")
            }
        };
        let owner = match (&o.owner, &o.group) {
            (None, None) => {
                format!("if [ -e {q} ]; then chown --reference={q} \"$t\" 2>/dev/null || true; fi")
            }
            (u, g) => format!(
                "chown {}{} \"$t\"",
                u.as_deref().map(quote).unwrap_or_default(),
                g.as_deref()
                    .map(|g| format!(":{}", quote(g)))
                    .unwrap_or_default()
            ),
        };
        let script = format!(
            "set -e; d=$(dirname -- {q}); b=$(basename -- {q}); t=\"$d/.$b.runner-$$\"; trap 'rm -f \"$t\"' EXIT; \
             cat > \"$t\"; {mode}; {owner}; mv -f \"$t\" {q}; trap - EXIT"
        );
        let out = self.shell_as(run, p, &script, input, Sink::Capture, &o.privilege)?;
        check_file_op(host, "cannot write", path, &out)
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

/// Fill a temporary file next to `path` with `fill`, give it the mode and owner of `o` (by default
/// those of the file it replaces), and rename it over `path`, so a reader never sees half a file;
/// the temporary file never outlives a failure.
fn with_temp_beside(
    path: &Path,
    o: &WriteOpts,
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
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let existing = std::fs::metadata(path).ok();
        match (o.mode, &existing) {
            (Some(m), _) => std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))?,
            (None, Some(meta)) => std::fs::set_permissions(&tmp, meta.permissions())?,
            (None, None) => {}
        }
        let uid = match &o.owner {
            Some(u) => Some(user_id(u)?),
            None => existing.as_ref().map(|m| m.uid()),
        };
        let gid = match &o.group {
            Some(g) => Some(group_id(g)?),
            None => existing.as_ref().map(|m| m.gid()),
        };
        let asked = o.owner.is_some() || o.group.is_some();
        match std::os::unix::fs::chown(&tmp, uid, gid) {
            // Keeping another user's ownership needs root: without it the file becomes ours.
            Err(e) if !asked && e.kind() == std::io::ErrorKind::PermissionDenied => {}
            r => r?,
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

/// The uid of a user name (or a number).
fn user_id(name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
        .ok_or_else(|| std::io::Error::other(format!("no user {name}")))
}

/// The gid of a group name (or a number).
fn group_id(name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .ok_or_else(|| std::io::Error::other(format!("no group {name}")))
}

impl Current {
    fn missing() -> Current {
        Current {
            content: None,
            mode: 0,
            owner: String::new(),
            group: String::new(),
        }
    }
}
