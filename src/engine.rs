//! Builds the Rhai engine of a run: the module resolver, every primitive, the print hook, the cancel
//! check between operations, and strict variables (an undefined variable is a compile error).

use std::sync::Arc;

use rhai::Engine;

use crate::resolver::Resolver;
use crate::run::{tag, Run};

/// An engine with every runner primitive, bound to `run`. Embedders use this to run scripts with the
/// same API as `runner play`.
pub fn build(run: &Arc<Run>) -> Engine {
    let mut engine = Engine::new();
    engine.set_default_tag(tag(run));
    engine.set_strict_variables(true);
    engine.set_max_call_levels(128);
    // Rhai's defaults (tighter still in debug builds) reject ordinary nested playbook code.
    engine.set_max_expr_depths(256, 256);
    engine.set_module_resolver(Resolver::new(run.config.libs.clone(), run.sources.clone()));
    crate::prims::register_types(&mut engine);
    for (_, module) in crate::prims::modules() {
        engine.register_global_module(module.into());
    }
    let r = run.clone();
    engine.on_print(move |s| r.report.print(s));
    let r = run.clone();
    engine.on_debug(move |s, src, pos| {
        r.report
            .debug(&format!("{}:{pos}: {s}", src.unwrap_or("script")))
    });
    // Ctrl-C stops the script at the next statement (blocked operations return by themselves).
    let r = run.clone();
    engine.on_progress(move |_| {
        if r.cancelled() {
            Some("interrupted".into())
        } else {
            None
        }
    });
    engine
}
