//! runner: run Rhai playbooks for operations work.
//!
//! The binary is a thin CLI over this library. Another program builds the same engine with
//! [`Runner::new`] and runs a script with [`Runner::play`], or builds an [`engine::build`] engine bound
//! to a [`run::Run`] of its own.

// NativeCallContextStore is marked "volatile" by rhai; it is how a closure is called later (defer) or
// from another thread (parallel) in the context it was created in.
#![allow(deprecated)]

pub mod catalogue;
pub mod check;
pub mod cli;
pub mod config;
pub mod doc;
pub mod effect;
pub mod engine;
pub mod error;
pub mod guard;
pub mod inventory;
pub mod journal;
pub mod ledger;
pub mod libs;
pub mod lock;
pub mod opts;
pub mod prims;
pub mod render;
pub mod report;
pub mod resolver;
pub mod run;
pub mod runs;
pub mod script;
pub mod secrets;
pub mod skeleton;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Engine, EvalAltResult, Position, AST};
use serde_json::json;

pub use config::Config;
pub use error::{Error, Failure, Kind};
pub use run::Run;

use report::{render_error, render_parse_error};

/// Runs scripts with one configuration; owns the tokio runtime the primitives use.
pub struct Runner {
    config: Config,
    rt: tokio::runtime::Runtime,
}

impl Runner {
    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }
}

impl Runner {
    pub fn new(config: Config) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
        Ok(Runner { config, rt })
    }

    /// Run the playbook at `path`.
    pub fn play(&self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read script {}: {e}", path.display())))?;
        script::execute(self, &path.display().to_string(), &text, Some(path))
    }

    /// Run a one-liner and print its value (unless it is `()`).
    pub fn eval(&self, code: &str) -> Result<(), Error> {
        script::execute(self, "<eval>", code, None)
    }

    /// A new run with this runner's configuration, for embedders that drive the engine themselves.
    pub fn new_run(&self, script_name: &str) -> Arc<Run> {
        Run::new(self.config.clone(), self.rt.handle().clone(), script_name)
    }

    /// Compile `text` and resolve its imports, rendering any error for the user.
    pub fn compile(run: &Run, engine: &Engine, source: &str, text: &str) -> Result<AST, Error> {
        run.sources.insert(source, text);
        let mut ast = engine
            .compile(text)
            .map_err(|e| Error::Compile(render_parse_error(&e, source, &run.sources)))?;
        ast.set_source(source);
        let resolver = resolver::Resolver::new(run.config.libs.clone(), run.sources.clone());
        resolver.preflight(engine, &ast, source).map_err(|e| {
            Error::Compile(render_import_error(
                &e.error,
                &e.source,
                e.pos,
                &run.sources,
            ))
        })?;
        Ok(ast)
    }
}

/// An import that cannot be resolved or a module that does not compile, at the `import` statement.
fn render_import_error(
    err: &EvalAltResult,
    source: &str,
    pos: Position,
    sources: &resolver::Sources,
) -> String {
    match err {
        EvalAltResult::ErrorInModule(module, inner, _) => match &**inner {
            EvalAltResult::ErrorParsing(p, ppos) => {
                let parse = rhai::ParseError(Box::new(p.clone()), *ppos);
                format!(
                    "{}\n  = in module imported at {source}:{}",
                    render_parse_error(&parse, module, sources),
                    pos.line().unwrap_or(0)
                )
            }
            other => render_error(other, module, sources),
        },
        EvalAltResult::ErrorModuleNotFound(msg, _) => render_error(
            &EvalAltResult::ErrorModuleNotFound(msg.clone(), pos),
            source,
            sources,
        ),
        other => render_error(other, source, sources),
    }
}

impl Runner {
    /// `runner check`: compile, resolve imports, find what would fail at run time (see `check`);
    /// nothing runs. Returns what it found, with the `param()` names the script reads.
    pub fn check(&self, path: &Path) -> Result<check::Report, Error> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read script {source}: {e}")))?;
        let run = self.new_run(&source);
        let engine = engine::build(&run);
        let ast = Runner::compile(&run, &engine, &source, &text)?;
        let report = check::check(&run, &engine, &ast, &source, &text);
        if report.errors.is_empty() {
            Ok(report)
        } else {
            Err(Error::Compile(report.errors.join("\n")))
        }
    }

    /// `runner check A B ...`: each script checked, its problems or "ok" reported; an error when
    /// any failed.
    pub fn check_all(&self, scripts: &[PathBuf]) -> Result<(), Error> {
        let report = self.reporter();
        let mut failed = 0;
        for script in scripts {
            match self.check(script) {
                Ok(r) if r.params.is_empty() => report.info(&format!("{}: ok", script.display())),
                Ok(r) => report.info(&format!(
                    "{}: ok (params: {})",
                    script.display(),
                    r.params.join(", ")
                )),
                Err(e) => {
                    failed += 1;
                    match &e {
                        Error::Usage(msg) => report.error(&format!("error: {msg}"), json!({})),
                        e => report.error(&e.to_string(), json!({})),
                    }
                }
            }
        }
        if failed > 0 {
            Err(Error::Compile(format!(
                "{failed} script(s) failed the check"
            )))
        } else {
            Ok(())
        }
    }

    /// `runner hosts GROUP`: one line per host the inventory and `--limit` select: its name, where
    /// it is reached, its groups and its variables (`--output json`: one object per host).
    pub fn hosts(&self, group: &str) -> Result<(), Error> {
        let inv = self
            .config
            .inventory
            .as_ref()
            .ok_or_else(|| Error::Usage("runner hosts needs an inventory (-i FILE)".into()))?;
        let report = self.reporter();
        for w in &inv.warnings {
            report.warn(w);
        }
        for e in inv
            .select(group, self.config.limit.as_deref(), self.config.shard)
            .map_err(|f| Error::Usage(f.message))?
        {
            let address = match &e.ssh {
                None => "local".to_string(),
                Some(t) => t.display(),
            };
            if self.config.output == report::Output::Json {
                let vars = rhai::serde::from_dynamic::<serde_json::Value>(&e.vars.clone().into())
                    .unwrap_or_default();
                let become_user = e
                    .privilege
                    .enabled
                    .then(|| e.privilege.user.clone().unwrap_or_else(|| "root".into()));
                let ssh = e.ssh.as_ref();
                report.event(json!({
                    "host": e.name,
                    "address": ssh.map_or("local", |t| t.address.as_str()),
                    "user": ssh.and_then(|t| t.user.clone()),
                    "port": ssh.and_then(|t| t.port),
                    "become_user": become_user,
                    "groups": e.groups,
                    "vars": vars,
                }));
                continue;
            }
            let vars: Vec<String> = e.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            report.print(&format!(
                "{}\t{address}\tgroups={}\t{}",
                e.name,
                e.groups.join(","),
                vars.join(" ")
            ));
        }
        Ok(())
    }

    /// `runner unlock NAME [--host SPEC]`: break the lock, printing who held it since when. The
    /// host is a name of the inventory, `local`, or `[user@]host[:port]`. Recorded as a run.
    pub fn unlock(&self, name: &str, host: Option<&str>) -> Result<(), Error> {
        use prims::host::{Host, Transport};
        let lock = match host {
            None => lock::Lock::local(name),
            Some(spec) => {
                let from_inventory = self
                    .config
                    .inventory
                    .as_ref()
                    .and_then(|inv| inv.hosts.iter().find(|e| e.name == spec));
                let host = match from_inventory {
                    Some(e) => Host::from(e),
                    None if spec == "local" => Host::local(),
                    None => {
                        let target = prims::ssh::SshTarget::parse(spec)
                            .map_err(|f| Error::Usage(f.message))?;
                        Host::new(spec, rhai::Map::new(), Transport::Ssh(target))
                    }
                };
                lock::Lock::on(host, name)
            }
        }
        .map_err(|f| Error::Usage(f.message))?;
        let mut shown = format!("runner unlock {}", prims::host::quote(name));
        if let Some(h) = host {
            shown.push_str(&format!(" --host {}", prims::host::quote(h)));
        }
        script::execute_native(self, "unlock", &shown, |run| {
            let not_held = || {
                Failure::new(
                    Kind::NotFound,
                    lock.shown(),
                    format!("{} is not held: nothing to break", lock.shown()),
                )
            };
            if let lock::Found::Free = lock.inspect(run)? {
                return Err(not_held());
            }
            let found = lock.break_it(run)?;
            if let lock::Found::Free = found {
                return Err(not_held());
            }
            let stale = match &found {
                lock::Found::Held(owner) => owner
                    .stale_reason()
                    .map(|why| format!(" (stale: {why})"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            run.report.print(&format!(
                "broke {}: it was {}{stale}",
                lock.shown(),
                lock.describe(&found)
            ));
            Ok(())
        })
    }

    /// A reporter for output outside a run (`check`, `hosts`): the inventory's secrets masked.
    fn reporter(&self) -> report::Reporter {
        let secrets = Arc::new(self.config.secrets());
        report::Reporter::with_secrets(self.config.output, self.config.verbosity, secrets)
    }
}
