//! The script primitives, one folder or file per domain, each an `#[export_module]` whose `///`
//! comments are what `runner doc` prints. This file is only the list of them.

use rhai::Module;

pub mod docker;
pub mod flow;
pub mod haproxy;
pub mod host;
pub mod http;
pub mod lock;
pub mod privilege;
pub mod process;
pub mod ssh;
pub mod ssh_config;
pub mod text;
pub mod watch;

/// Every domain's module, by the name `runner doc MODULE` takes.
pub fn modules() -> Vec<(&'static str, Module)> {
    vec![
        ("docker", rhai::exported_module!(docker::docker_api)),
        ("flow", rhai::exported_module!(flow::flow_api)),
        ("haproxy", rhai::exported_module!(haproxy::haproxy_api)),
        ("host", rhai::exported_module!(host::host_api)),
        ("http", rhai::exported_module!(http::http_api)),
        ("lock", rhai::exported_module!(lock::lock_api)),
        ("process", rhai::exported_module!(process::process_api)),
        ("watch", rhai::exported_module!(watch::watch_api)),
        ("text", rhai::exported_module!(text::text_api)),
    ]
}

/// Register the custom types of every domain with their script names.
pub fn register_types(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<host::Host>("Host");
    engine.register_type_with_name::<docker::Docker>("Docker");
    engine.register_type_with_name::<haproxy::Haproxy>("Haproxy");
    engine.register_type_with_name::<watch::Watch>("Watch");
}
