//! The script functions of hosts: thin conversions of their arguments to calls of `Host`.

use rhai::plugin::*;

use super::command::{Command, RunOpts};
use super::files::WriteOpts;
use super::handle::{Host, Transport};
use super::template::render;
use crate::error::Failure;
use crate::prims::ssh::SshTarget;
use crate::run::Run;

#[export_module]
pub mod host_api {
    use super::*;
    use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// A handle on this machine, with the same methods as an SSH host.
    ///
    /// ```rhai
    /// let l = local();
    /// print(l.run("uname -r").stdout);
    /// ```
    pub fn local() -> Host {
        Host::local()
    }

    /// A remote host over SSH: `"[user@]host[:port]"`. The connection (one multiplexed OpenSSH
    /// master) opens on the first command and is shared by every command of the run; host keys are
    /// checked strictly against your known_hosts.
    ///
    /// ```rhai
    /// let h = ssh("root@10.0.0.5:2222");
    /// h.run("docker ps");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssh(spec: &str) -> Res<Host> {
        ssh_with(spec, Map::new())
    }

    /// `ssh` with options: `user`, `port`, `key` (private key file), `known_hosts` ("strict",
    /// "accept-new" or "off": neither checked nor recorded anywhere, with a warning), `known_hosts_file`,
    /// `connect_timeout` (seconds, default 10), `jump` (a jump host, or an array of them),
    /// `ssh_config` (an ssh_config file read instead of ~/.ssh/config, as `ssh -F`), `ssh_args` (ssh
    /// command-line options, as Ansible's `ansible_ssh_common_args`: `-o Key=Value`, `-J`, `-i`,
    /// ...), `ssh_options` (a map of ssh_config options). Jump hosts get the key and host key
    /// checking too. A `key` file that does not exist is a `usage` error before anything is tried.
    ///
    /// ```rhai
    /// let h = ssh("10.0.0.5", #{user: "deploy", port: 2222, key: "~/.ssh/deploy", known_hosts: "accept-new"});
    /// ```
    #[rhai_fn(name = "ssh", return_raw)]
    pub fn ssh_with(spec: &str, options: Map) -> Res<Host> {
        let target = SshTarget::with_options(spec, options)?;
        Ok(Host::new(spec, Map::new(), Transport::Ssh(target)))
    }

    /// The host's inventory name (`"local"` for this machine, the address as given to `ssh`).
    #[rhai_fn(get = "name", pure)]
    pub fn get_name(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// The host's inventory variables.
    #[rhai_fn(get = "vars", pure)]
    pub fn get_vars(h: &mut Host) -> Map {
        h.vars().clone()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(h: &mut Host) -> String {
        h.name().to_string()
    }

    /// Run a command: a string goes through the host's shell as you would type it, an array is
    /// executed with each element as one argument (quoted safely on remote hosts). Returns
    /// `#{code, stdout, stderr}`; a non-zero exit throws with the host, the command, the code and
    /// the end of stderr (its last 5 lines, at most 2 KiB).
    ///
    /// ```rhai
    /// local().run("docker ps");
    /// local().run(["rm", "-f", name]);
    /// ```
    #[rhai_fn(name = "run", return_raw)]
    pub fn run(ctx: NativeCallContext, h: &mut Host, command: Dynamic) -> Res<Map> {
        run_with(ctx, h, command, Map::new())
    }

    /// `run` with options: `check` (default true: throw on non-zero exit), `timeout` (seconds),
    /// `stdin` (a string fed to the command), `env` (a map), `cwd`, `become` (run through `sudo -n`,
    /// which never asks for a password; `sudo` is the same), `become_user` (as whom, default root),
    /// `read_only` (not an effect: runs under `--dry-run` and is not journaled), `max_output` (bytes
    /// kept of stdout and of stderr each, default 64 MiB: a command that writes more runs to its end
    /// and fails with `output_limit`). With `-v` the output is shown live, each line prefixed with
    /// the host name (terminal control sequences taken out; the returned values keep them).
    ///
    /// ```rhai
    /// let r = local().run("grep -c x /etc/hosts", #{check: false, timeout: 10});
    /// let dump = local().run("pg_dump app", #{max_output: 512 * 1024 * 1024});
    /// ```
    #[rhai_fn(name = "run", return_raw)]
    pub fn run_with(
        ctx: NativeCallContext,
        h: &mut Host,
        command: Dynamic,
        options: Map,
    ) -> Res<Map> {
        let run = Run::of(&ctx);
        let cmd = Command::from_script(&command, h.name())?;
        let o = RunOpts::parse(options, h.name())?;
        Ok(h.run_command(&run, &cmd, &o)?)
    }

    /// Write `content` to `path` as a whole, atomically (temp file + rename; an existing file keeps
    /// its mode and owner). A file that already holds `content` is not rewritten. Returns
    /// `#{changed}`. An effect when it changes the file; `--dry-run` and `-v` show the diff.
    ///
    /// ```rhai
    /// h.write_file("/data/www/index.html", "v2\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(ctx: NativeCallContext, h: &mut Host, path: &str, content: &str) -> Res<Map> {
        write_file_with(ctx, h, path, content, Map::new())
    }

    /// `write_file` with options: `mode` (octal, as a string: `"0600"`), `owner`, `group`,
    /// `become` (write it through `sudo -n`; `sudo` is the same), `become_user`.
    ///
    /// ```rhai
    /// let r = h.write_file("/etc/app/secret.conf", text, #{mode: "0600", owner: "app", become: true});
    /// if r.changed { h.run("systemctl reload app") }
    /// ```
    #[rhai_fn(name = "write_file", return_raw)]
    pub fn write_file_with(
        ctx: NativeCallContext,
        h: &mut Host,
        path: &str,
        content: &str,
        options: Map,
    ) -> Res<Map> {
        let o = WriteOpts::parse(options, h.name())?;
        Ok(h.write_file(&Run::of(&ctx), path, content, &o)?)
    }

    /// Render the Jinja template `text` with `vars` (`{{ x }}`, `{% for %}`, `{% if %}`, filters
    /// such as `upper`, `join`, `default`, `to_json`). A variable the template uses and `vars` does
    /// not define is an error naming it and the line (kind `template`).
    ///
    /// ```rhai
    /// let conf = template("{% for s in servers %}server {{ s }};\n{% endfor %}", #{servers: ["a", "b"]});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn template(text: &str, vars: Map) -> Res<String> {
        Ok(render("<text>", text, &vars)?)
    }

    /// Render the local template file `src` (Jinja, as `template`) and write it to `dest` on the
    /// host as `write_file` does. The template sees the host's inventory vars and
    /// `inventory_hostname`, then `vars` (which win). Returns `#{changed}`.
    ///
    /// ```rhai
    /// h.template("templates/nginx.conf.j2", "/etc/nginx/nginx.conf", #{workers: 4});
    /// ```
    #[rhai_fn(name = "template", return_raw)]
    pub fn host_template(
        ctx: NativeCallContext,
        h: &mut Host,
        src: &str,
        dest: &str,
        vars: Map,
    ) -> Res<Map> {
        host_template_with(ctx, h, src, dest, vars, Map::new())
    }

    /// `h.template` with the options of `write_file`: `mode`, `owner`, `group`, `become`,
    /// `become_user`.
    ///
    /// ```rhai
    /// h.template("app.conf.j2", "/etc/app.conf", #{port: 8080}, #{mode: "0640", owner: "app", become: true});
    /// ```
    #[rhai_fn(name = "template", return_raw)]
    pub fn host_template_with(
        ctx: NativeCallContext,
        h: &mut Host,
        src: &str,
        dest: &str,
        vars: Map,
        options: Map,
    ) -> Res<Map> {
        let o = WriteOpts::parse(options, h.name())?;
        let text = std::fs::read_to_string(src).map_err(|e| {
            Failure::new(
                crate::error::Kind::NotFound,
                "local",
                format!("template {src}: cannot read it: {e}"),
            )
        })?;
        let mut all = h.vars().clone();
        all.insert("inventory_hostname".into(), h.name().into());
        all.extend(vars);
        let content = render(src, &text, &all)?;
        Ok(h.write_file(&Run::of(&ctx), dest, &content, &o)?)
    }

    /// The content of the file at `path`.
    #[rhai_fn(return_raw)]
    pub fn read_file(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<String> {
        Ok(h.read_file(&Run::of(&ctx), path)?)
    }

    /// Whether `path` exists.
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, h: &mut Host, path: &str) -> Res<bool> {
        Ok(h.exists(&Run::of(&ctx), path)?)
    }

    /// Copy the local file `local_path` to `remote_path` on the host, streamed (large files do not
    /// go through memory) and written atomically. An effect.
    ///
    /// ```rhai
    /// h.upload("build/nginx", "/usr/sbin/nginx.new");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn upload(
        ctx: NativeCallContext,
        h: &mut Host,
        local_path: &str,
        remote_path: &str,
    ) -> Res<()> {
        upload_with(ctx, h, local_path, remote_path, Map::new())
    }

    /// `upload` with the options of `write_file`: `mode`, `owner`, `group`, `become`, `become_user`.
    ///
    /// ```rhai
    /// h.upload("build/app", "/usr/local/bin/app", #{mode: "0755", become: true});
    /// ```
    #[rhai_fn(name = "upload", return_raw)]
    pub fn upload_with(
        ctx: NativeCallContext,
        h: &mut Host,
        local_path: &str,
        remote_path: &str,
        options: Map,
    ) -> Res<()> {
        let o = WriteOpts::parse(options, h.name())?;
        Ok(h.upload(&Run::of(&ctx), local_path, remote_path, &o)?)
    }

    /// Copy `remote_path` on the host to the local file `local_path`, streamed and written
    /// atomically. An effect: it writes a local file.
    #[rhai_fn(return_raw)]
    pub fn download(
        ctx: NativeCallContext,
        h: &mut Host,
        remote_path: &str,
        local_path: &str,
    ) -> Res<()> {
        Ok(h.download(&Run::of(&ctx), remote_path, local_path)?)
    }

    /// The hosts of an inventory group (or the one host of that name) from `-i FILE`, filtered by
    /// `--limit`. Each is a host handle with `.name` and `.vars`.
    ///
    /// ```rhai
    /// parallel(hosts("web"), 5, |h| h.run("uptime").stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn hosts(ctx: NativeCallContext, group: &str) -> Res<Array> {
        let run = Run::of(&ctx);
        let inv = run.config.inventory.as_ref().ok_or_else(|| {
            Failure::usage(
                format!("hosts {group}"),
                format!("hosts(\"{group}\"): no inventory; pass one with -i FILE"),
            )
        })?;
        Ok(inv
            .select(group, run.config.limit.as_deref(), run.config.shard)?
            .into_iter()
            .map(|e| Dynamic::from(Host::from(e)))
            .collect())
    }

    /// Start the SSH handshakes of `hosts` in the background and return at once, so that they
    /// overlap with what the script does first: a rolling upgrade's first server is drained while
    /// the next hosts connect. A command on one of them waits for its handshake; a handshake that
    /// failed is tried again by the first command on that host, which reports the error. Local
    /// hosts and hosts already connected are left as they are. The run waits, at its end, for
    /// handshakes still running.
    ///
    /// ```rhai
    /// let web = hosts("web");
    /// connect_ahead(web);
    /// for h in web { h.run("systemctl restart app"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn connect_ahead(ctx: NativeCallContext, hosts: Array) -> Res<()> {
        let run = Run::of(&ctx);
        for item in hosts {
            let Some(host) = item.clone().try_cast::<Host>() else {
                return Err(Failure::usage(
                    "connect_ahead",
                    format!("connect_ahead: expected hosts, got a {}", item.type_name()),
                )
                .into());
            };
            let Transport::Ssh(target) = host.transport().clone() else {
                continue;
            };
            let r = run.clone();
            let name = host.name().to_string();
            let handshake = run.rt.spawn(async move {
                // Its outcome waits in the pool for the host's first command.
                let _ = r.ssh.connect(&r.report, &name, &target).await;
            });
            run.ssh.started_ahead(handshake);
        }
        Ok(())
    }

    /// Every host of the inventory, filtered by `--limit`.
    #[rhai_fn(name = "hosts", return_raw)]
    pub fn all_hosts(ctx: NativeCallContext) -> Res<Array> {
        hosts(ctx, "all")
    }
}
