//! The script functions of docker: thin conversions of their arguments to calls of `Docker`.

use std::time::Duration;

use rhai::plugin::*;

use super::handle::Docker;
use super::spec::{ExecSpec, RunSpec};
use crate::opts::Opts;
use crate::prims::host::Host;
use crate::run::Run;

/// The options of `d.ps`.
pub const PS_KEYS: &[&str] = &["all", "filter"];
/// The options of `d.stop` and `d.restart`.
pub const GRACE_KEYS: &[&str] = &["grace"];
/// The options of `d.wait_healthy`.
pub const HEALTHY_KEYS: &[&str] = &["min_uptime", "interval"];

#[export_module]
pub mod docker_api {
    use super::*;
    use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// The docker engine of this machine, driven through its `docker` command.
    ///
    /// ```rhai
    /// let d = docker();
    /// print(d.running("web"));
    /// ```
    #[rhai_fn(name = "docker")]
    pub fn docker_local() -> Docker {
        Docker::new(Host::local())
    }

    /// The docker engine of this machine, with options: `sudo` (run docker through `sudo -n`),
    /// `context` (`docker --context NAME`), `timeout` (seconds one docker command may take, default
    /// 120), `pull_timeout` (for commands that may download an image, default 600).
    ///
    /// ```rhai
    /// let d = docker(#{sudo: true});
    /// ```
    #[rhai_fn(name = "docker", return_raw)]
    pub fn docker_local_with(options: Map) -> Res<Docker> {
        Ok(Docker::with_options(Host::local(), options)?)
    }

    /// The docker engine of host `h`, driven through the docker command on that host.
    ///
    /// ```rhai
    /// let d = ssh("root@10.0.0.5").docker();
    /// d.restart("web");
    /// ```
    #[rhai_fn(name = "docker", pure)]
    pub fn docker_on(h: &mut Host) -> Docker {
        Docker::new(h.clone())
    }

    /// The docker engine of host `h`, with the options of `docker(#{...})`.
    ///
    /// ```rhai
    /// let d = ssh("10.0.0.5").docker(#{sudo: true, timeout: 60});
    /// ```
    #[rhai_fn(name = "docker", pure, return_raw)]
    pub fn docker_on_with(h: &mut Host, options: Map) -> Res<Docker> {
        Ok(Docker::with_options(h.clone(), options)?)
    }

    /// The host this docker engine is on.
    #[rhai_fn(get = "host", pure)]
    pub fn get_host(d: &mut Docker) -> Host {
        d.host().clone()
    }

    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn to_string(d: &mut Docker) -> String {
        format!("docker on {}", d.host_name())
    }

    /// Create and start a container (detached); returns its id ("" under `--dry-run`). The spec:
    /// `image` (required), `name`, `ports` (`["127.0.0.1:8080:80"]`), `volumes`
    /// (`["/data/www:/usr/share/nginx/html:ro"]`), `env` and `labels` (maps), `network`, `restart`
    /// (`"unless-stopped"`), `health_cmd` with `health_interval`, `health_timeout`,
    /// `health_start_period` (seconds) and `health_retries`, `pull` (true: when missing, docker's
    /// default; false: never; "always"), `cmd` (the container's command: an array, or a string split
    /// into words), `args` (extra `docker run` options, e.g. `["--memory", "512m"]`). An effect.
    ///
    /// Fails with `kind` `image_missing` (not on the host and not pullable), `port_conflict`,
    /// `name_conflict` or `docker_unreachable`; a container that was created but could not start
    /// is removed again, so it does not hold the name.
    ///
    /// ```rhai
    /// let id = docker().run(#{image: "nginx:1.27", name: "web", ports: ["80:80"],
    ///                         volumes: ["/data/www:/usr/share/nginx/html:ro"],
    ///                         restart: "unless-stopped"});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run(ctx: NativeCallContext, d: &mut Docker, spec: Map) -> Res<String> {
        Ok(d.run(&Run::of(&ctx), RunSpec::parse(spec)?)?)
    }

    /// The `docker create` command line `run(spec)` executes (then `docker start`), without running
    /// anything: checks a spec before acting on it. The values of environment variables are masked
    /// (`--env DB_PASSWORD=***`), as in messages and the journal.
    ///
    /// ```rhai
    /// print(docker().run_command(#{image: "nginx:1.27", name: "web", ports: ["80:80"]}));
    /// ```
    #[rhai_fn(return_raw, pure)]
    pub fn run_command(d: &mut Docker, spec: Map) -> Res<String> {
        Ok(d.run_command(&RunSpec::parse(spec)?))
    }

    /// Remove a container, running or not (`docker rm -f`). A container that does not exist is not
    /// an error (and a name that no container has removes nothing, even when it starts some
    /// container's id). An effect.
    ///
    /// ```rhai
    /// docker().rm("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn rm(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        Ok(d.rm(&Run::of(&ctx), name)?)
    }

    /// Whether a container of that name (or full id) exists, running or not.
    ///
    /// ```rhai
    /// if docker().exists("web") { print("web is there") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exists(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<bool> {
        Ok(d.exists(&Run::of(&ctx), name)?)
    }

    /// Whether the container exists and is running.
    ///
    /// ```rhai
    /// if !docker().running("web") { docker().start("web") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn running(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<bool> {
        Ok(d.running(&Run::of(&ctx), name)?)
    }

    /// `docker container inspect` of one container, as a map with docker's keys (`Id`, `Name`,
    /// `State`, `Config`, `NetworkSettings`, ...). A missing container is an error (`not_found`).
    ///
    /// ```rhai
    /// let c = docker().inspect("web");
    /// print(`${c.Config.Image} ${c.State.Status}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn inspect(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<Map> {
        Ok(d.inspect(&Run::of(&ctx), name)?)
    }

    /// Every container, running or not: one map per container with docker's `ps` keys (`ID`,
    /// `Names`, `Image`, `State`, `Status`, `Ports`, `Labels`, ...).
    ///
    /// ```rhai
    /// for c in docker().ps() { print(`${c.Names}: ${c.State}`) }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ps(ctx: NativeCallContext, d: &mut Docker) -> Res<Array> {
        ps_with(ctx, d, Map::new())
    }

    /// `ps` with options: `all` (default true: stopped containers too), `filter` (a docker filter
    /// or an array of them, e.g. `"label=app=web"`, `"status=running"`).
    ///
    /// ```rhai
    /// let web = docker().ps(#{filter: "label=app=web"});
    /// ```
    #[rhai_fn(name = "ps", return_raw)]
    pub fn ps_with(ctx: NativeCallContext, d: &mut Docker, options: Map) -> Res<Array> {
        let o = Opts::new(options, PS_KEYS, "docker ps")?;
        let all = o.bool("all", true)?;
        let filters = o.list("filter")?;
        Ok(d.ps(&Run::of(&ctx), all, filters)?)
    }

    /// Stop a running container (`docker stop`: SIGTERM, then SIGKILL after the container's grace
    /// period, 10 s unless it was created with `--stop-timeout`). An effect; a missing container is
    /// an error (`not_found`).
    ///
    /// ```rhai
    /// docker().stop("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stop(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        stop_with(ctx, d, name, Map::new())
    }

    /// `stop` with options: `grace` (seconds between SIGTERM and SIGKILL, `docker stop --time`).
    ///
    /// ```rhai
    /// docker().stop("worker", #{grace: 60});
    /// ```
    #[rhai_fn(name = "stop", return_raw)]
    pub fn stop_with(ctx: NativeCallContext, d: &mut Docker, name: &str, options: Map) -> Res<()> {
        let grace = Opts::new(options, GRACE_KEYS, name)?.secs("grace")?;
        Ok(d.lifecycle(&Run::of(&ctx), "stop", name, grace)?)
    }

    /// Start a stopped container. An effect.
    ///
    /// ```rhai
    /// docker().start("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn start(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        Ok(d.lifecycle(&Run::of(&ctx), "start", name, None)?)
    }

    /// Restart a container (stop as `stop` does, then start). An effect.
    ///
    /// ```rhai
    /// docker().restart("web");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn restart(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<()> {
        restart_with(ctx, d, name, Map::new())
    }

    /// `restart` with options: `grace` (seconds between SIGTERM and SIGKILL).
    ///
    /// ```rhai
    /// docker().restart("web", #{grace: 2});
    /// ```
    #[rhai_fn(name = "restart", return_raw)]
    pub fn restart_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        options: Map,
    ) -> Res<()> {
        let grace = Opts::new(options, GRACE_KEYS, name)?.secs("grace")?;
        Ok(d.lifecycle(&Run::of(&ctx), "restart", name, grace)?)
    }

    /// The container's whole log (its stdout, then its stderr).
    ///
    /// ```rhai
    /// print(docker().logs("web"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn logs(ctx: NativeCallContext, d: &mut Docker, name: &str) -> Res<String> {
        logs_with(ctx, d, name, Map::new())
    }

    /// `logs` with options: `tail` (the last N lines), `since` (seconds ago, or anything
    /// `docker logs --since` takes, e.g. `"2024-05-01T10:00:00"`).
    ///
    /// ```rhai
    /// print(docker().logs("web", #{tail: 50}));
    /// ```
    #[rhai_fn(name = "logs", return_raw)]
    pub fn logs_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        options: Map,
    ) -> Res<String> {
        Ok(d.logs(&Run::of(&ctx), name, options)?)
    }

    /// Run a command in a running container: a string goes through `sh -c`, an array is executed
    /// directly. Returns `#{code, stdout, stderr}`; a non-zero exit throws. Docker's own failures
    /// (`not_found`, `not_running`, `docker_unreachable`, `docker_missing`) throw even with
    /// `check: false`; the command's own exit code and output never count as docker's. An effect.
    ///
    /// ```rhai
    /// docker().exec("web", ["nginx", "-s", "reload"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn exec(ctx: NativeCallContext, d: &mut Docker, name: &str, command: Dynamic) -> Res<Map> {
        exec_with(ctx, d, name, command, Map::new())
    }

    /// `exec` with options: `check` (default true: throw on a non-zero exit), `user`, `workdir`,
    /// `env` (a map), `stdin` (a string fed to the command), `read_only` (not an effect: runs under
    /// `--dry-run` and is not journaled).
    ///
    /// ```rhai
    /// let r = docker().exec("web", "nginx -t", #{check: false, read_only: true});
    /// if r.code != 0 { fail(r.stderr) }
    /// ```
    #[rhai_fn(name = "exec", return_raw)]
    pub fn exec_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        command: Dynamic,
        options: Map,
    ) -> Res<Map> {
        let spec = ExecSpec::parse(name, &command, options)?;
        Ok(d.exec(&Run::of(&ctx), &spec)?)
    }

    /// Pull an image from its registry. An effect; fails with `kind` `image_missing` when no
    /// registry is reachable or the registry does not have the image.
    ///
    /// ```rhai
    /// docker().pull("nginx:1.27");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn pull(ctx: NativeCallContext, d: &mut Docker, image: &str) -> Res<()> {
        Ok(d.pull(&Run::of(&ctx), image)?)
    }

    /// Whether the image is present on the host (no registry is asked).
    ///
    /// ```rhai
    /// if !docker().image_exists("nginx:1.27") { docker().pull("nginx:1.27") }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn image_exists(ctx: NativeCallContext, d: &mut Docker, image: &str) -> Res<bool> {
        Ok(d.image_exists(&Run::of(&ctx), image)?)
    }

    /// Wait until the container is running and, when it has a health check, healthy; without a
    /// health check, until it has been seen running for a second. A container that exits, restarts
    /// or turns unhealthy fails at once (`kind` `container_exited` or `unhealthy`) with its last log
    /// lines in the message; after `timeout` seconds, `kind` `timeout`.
    ///
    /// ```rhai
    /// docker().wait_healthy("web", 30);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_healthy(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        timeout: Dynamic,
    ) -> Res<()> {
        wait_healthy_with(ctx, d, name, timeout, Map::new())
    }

    /// `wait_healthy` with options: `min_uptime` (seconds a container without a health check must
    /// be seen running, default 1), `interval` (seconds between checks, default 0.25).
    ///
    /// ```rhai
    /// docker().wait_healthy("worker", 60, #{min_uptime: 5});
    /// ```
    #[rhai_fn(name = "wait_healthy", return_raw)]
    pub fn wait_healthy_with(
        ctx: NativeCallContext,
        d: &mut Docker,
        name: &str,
        timeout: Dynamic,
        options: Map,
    ) -> Res<()> {
        let run = Run::of(&ctx);
        let timeout = crate::opts::seconds(&timeout, name, "the timeout")?;
        let o = Opts::new(options, HEALTHY_KEYS, name)?;
        let min_uptime = o.secs("min_uptime")?.unwrap_or(Duration::from_secs(1));
        let interval = o
            .secs("interval")?
            .unwrap_or(Duration::from_millis(250))
            .max(Duration::from_millis(10));
        Ok(d.wait_healthy(&run, name, timeout, min_uptime, interval)?)
    }
}
