//! Ansible's YAML inventory format: top-level groups (usually `all`), each with `hosts` (a map of
//! host names, ranges allowed, to their variables), `vars` and `children` (groups of the same
//! shape). Read in file order.

use serde_norway::Value as Yaml;

use super::groups::{Precedence, Tree, Vars};
use super::range::{expand, split_port};

/// Read an Ansible YAML inventory.
pub fn parse(text: &str) -> Result<Tree, String> {
    let doc: Yaml = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut tree = Tree::new(Precedence::Ansible);
    tree.group("ungrouped");
    match doc {
        Yaml::Null => {}
        Yaml::Mapping(top) => {
            for (g, body) in &top {
                let name = key(g, "a group name")?;
                group(&mut tree, &name, body, None)?;
            }
        }
        _ => {
            return Err(
                "expected a map of groups at the top (such as `all:`), as Ansible's YAML inventories have"
                    .into(),
            )
        }
    }
    tree.settle_ungrouped();
    Ok(tree)
}

fn key(k: &Yaml, what: &str) -> Result<String, String> {
    match k {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected {what}, got {other:?}")),
    }
}

fn vars(v: Option<&Yaml>, whose: &str) -> Result<Vars, String> {
    match v {
        None | Some(Yaml::Null) => Ok(Vars::new()),
        Some(m @ Yaml::Mapping(_)) => match serde_json::to_value(m) {
            Ok(serde_json::Value::Object(o)) => Ok(o),
            Ok(_) => Ok(Vars::new()),
            Err(e) => Err(format!("{whose}: {e}")),
        },
        Some(other) => Err(format!(
            "{whose}: expected a map of variables, got {}",
            kind(other)
        )),
    }
}

fn kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a map",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn group(tree: &mut Tree, name: &str, body: &Yaml, parent: Option<&str>) -> Result<(), String> {
    match parent {
        Some(p) => tree.add_child(p, name),
        None => {
            tree.group(name);
        }
    }
    let body = match body {
        Yaml::Null => return Ok(()),
        Yaml::Mapping(m) => m,
        other => {
            return Err(format!(
                "group `{name}`: expected a map with hosts, vars or children, got {}",
                kind(other)
            ))
        }
    };
    for (k, _) in body {
        let k = key(k, "hosts, vars or children")?;
        if !["hosts", "vars", "children"].contains(&k.as_str()) {
            let hint = crate::opts::did_you_mean(&k, &["hosts", "vars", "children"])
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            return Err(format!(
                "group `{name}`: unknown key `{k}`; {hint}a group has hosts, vars and children (a host's variables go under its name in hosts)"
            ));
        }
    }
    let own = vars(body.get("vars"), &format!("group `{name}` vars"))?;
    tree.group(name).vars.extend(own);
    match body.get("hosts") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Mapping(hosts)) => {
            for (h, settings) in hosts {
                let pattern = key(h, "a host name")?;
                let at = |e: String| format!("group `{name}`: host `{pattern}`: {e}");
                let (pattern, port) = split_port(&pattern).map_err(at)?;
                let mut v = vars(Some(settings), &format!("host `{pattern}`"))?;
                if let Some(p) = port {
                    v.insert("ansible_port".into(), p.into());
                }
                for host in expand(pattern).map_err(at)? {
                    tree.add_host(name, &host, v.clone());
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "group `{name}`: hosts must be a map of host names (each followed by `:`), got {}",
                kind(other)
            ))
        }
    }
    match body.get("children") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Mapping(children)) => {
            for (c, b) in children {
                let child = key(c, "a group name")?;
                group(tree, &child, b, Some(name))?;
            }
        }
        Some(other) => {
            return Err(format!(
                "group `{name}`: children must be a map of groups, got {}",
                kind(other)
            ))
        }
    }
    Ok(())
}
