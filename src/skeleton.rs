//! `runner new playbook NAME` and `runner new lib NAME`: a folder to start from, made from the
//! templates embedded in the binary (`templates/`), that runs and passes `runner check` as made.

use std::path::Path;

use crate::libs::manifest::check_name;

/// (file in the new folder, template); `{{name}}` in either is the new folder's name.
type Template = (&'static str, &'static str);

const PLAYBOOK: &[Template] = &[
    (
        "{{name}}.rhai",
        include_str!("../templates/playbook/playbook.rhai"),
    ),
    (
        "runner.toml",
        include_str!("../templates/playbook/runner.toml"),
    ),
    (
        "inventory.toml",
        include_str!("../templates/playbook/inventory.toml"),
    ),
    ("README.md", include_str!("../templates/playbook/README.md")),
    (
        ".gitignore",
        include_str!("../templates/playbook/gitignore"),
    ),
];

const LIBRARY: &[Template] = &[
    ("wait.rhai", include_str!("../templates/lib/wait.rhai")),
    (
        "runner-lib.toml",
        include_str!("../templates/lib/runner-lib.toml"),
    ),
    ("runner.toml", include_str!("../templates/lib/runner.toml")),
    (
        "tests/smoke.rhai",
        include_str!("../templates/lib/tests/smoke.rhai"),
    ),
    ("README.md", include_str!("../templates/lib/README.md")),
];

/// A playbook folder `NAME` in `dir`: the playbook, runner.toml, an inventory, a README.
pub fn playbook(dir: &Path, name: &str) -> Result<Vec<String>, String> {
    make(dir, name, PLAYBOOK)?;
    Ok(vec![
        format!("created {name}/: {name}.rhai, runner.toml, inventory.toml, README.md"),
        format!("  cd {name} && runner play {name}.rhai"),
    ])
}

/// A library folder `NAME` in `dir`: a module, runner-lib.toml, a test playbook, a README.
pub fn library(dir: &Path, name: &str) -> Result<Vec<String>, String> {
    make(dir, name, LIBRARY)?;
    Ok(vec![
        format!("created {name}/: wait.rhai, runner-lib.toml, tests/smoke.rhai, README.md"),
        format!("  cd {name} && runner play tests/smoke.rhai"),
        format!(
            "  then: git init, commit, git tag v0.1.0; playbooks add it with `runner lib add URL@v0.1.0` and `import \"{name}/wait\"`"
        ),
    ])
}

fn make(dir: &Path, name: &str, templates: &[Template]) -> Result<(), String> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{runner_version}}", env!("CARGO_PKG_VERSION"))
    };
    for (file, template) in templates {
        let path = root.join(fill(file));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, fill(template))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
