//! runner's own TOML inventory format: `[defaults]` for every host, `[groups.NAME]` with `hosts` and
//! `vars`, `[hosts.NAME]` for one host. In `[defaults]` and `[hosts.NAME]` the connection settings
//! (`address`, `user`, `port`, `key`, ...) sit beside variables, and a `vars = {...}` table holds
//! variables only. A key that is not a connection setting but close to one's name (`adress`) is an
//! error rather than a variable that silently leaves the host unreachable.

use serde_json::Value;

use super::groups::{Precedence, Reach, Resolved, Tree, Vars};

/// Keys of a host's connection, besides the options of `ssh(host, #{...})`.
const CONNECTION: &[&str] = &["address", "connection", "become", "become_user"];

fn connection_keys() -> Vec<&'static str> {
    CONNECTION
        .iter()
        .chain(crate::prims::ssh::OPTIONS)
        .copied()
        .collect()
}

/// Read runner's TOML inventory.
pub fn parse(text: &str) -> Result<Tree, String> {
    let top: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut tree = Tree::new(Precedence::FileOrder);
    for k in top.keys() {
        if !["defaults", "groups", "hosts"].contains(&k.as_str()) {
            let hint = crate::opts::did_you_mean(k, &["defaults", "groups", "hosts"])
                .map(|s| format!("did you mean [{s}]? "))
                .unwrap_or_default();
            return Err(format!(
                "{}unknown section [{k}]; {hint}expected [defaults], [groups.NAME] or [hosts.NAME]",
                line_of(text, k, None)
            ));
        }
    }
    let table = |name: &str| -> Result<Option<&toml::Table>, String> {
        match top.get(name) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(_) => Err(format!(
                "{}[{name}] must be a table",
                line_of(text, name, None)
            )),
        }
    };
    if let Some(defaults) = table("defaults")? {
        let (conn, vars) = split(text, "defaults", defaults, true)?;
        let all = tree.group("all");
        all.conn = conn;
        all.vars = vars;
    }
    if let Some(groups) = table("groups")? {
        for (g, t) in groups {
            let section = format!("groups.{g}");
            let t = t.as_table().ok_or_else(|| {
                format!(
                    "{}[{section}] must be a table",
                    line_of(text, &section, None)
                )
            })?;
            for k in t.keys() {
                if !["hosts", "vars"].contains(&k.as_str()) {
                    let hint = crate::opts::did_you_mean(k, &["hosts", "vars"])
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    return Err(format!(
                        "{}[{section}]: unknown key `{k}`; {hint}a group has hosts = [...] and vars = {{...}}",
                        line_of(text, &section, Some(k))
                    ));
                }
            }
            let vars = match t.get("vars") {
                None => toml::Table::new(),
                Some(toml::Value::Table(v)) => v.clone(),
                Some(_) => {
                    return Err(format!(
                        "{}[{section}]: vars must be a table",
                        line_of(text, &section, Some("vars"))
                    ))
                }
            };
            let (conn, vars) = split(text, &section, &vars, false)?;
            let hosts = t
                .get("hosts")
                .and_then(toml::Value::as_array)
                .ok_or_else(|| {
                    format!(
                        "{}[{section}] needs hosts = [...]",
                        line_of(text, &section, None)
                    )
                })?;
            let group = tree.group(g);
            group.conn = conn;
            group.vars = vars;
            for h in hosts {
                let h = h.as_str().ok_or_else(|| {
                    format!(
                        "{}[{section}]: host names are strings",
                        line_of(text, &section, Some("hosts"))
                    )
                })?;
                tree.add_host(g, h, Vars::new());
            }
        }
    }
    if let Some(hosts) = table("hosts")? {
        for (h, t) in hosts {
            let section = format!("hosts.{h}");
            let t = t.as_table().ok_or_else(|| {
                format!(
                    "{}[{section}] must be a table",
                    line_of(text, &section, None)
                )
            })?;
            let (conn, vars) = split(text, &section, t, true)?;
            tree.add_host("all", h, Vars::new());
            let host = tree.host(h);
            host.conn = conn;
            host.vars = vars;
        }
    }
    Ok(tree)
}

/// A table's keys as (connection settings, variables). With `explicit_vars`, a `vars` table holds
/// variables only.
fn split(
    text: &str,
    section: &str,
    t: &toml::Table,
    explicit_vars: bool,
) -> Result<(Vars, Vars), String> {
    let known = connection_keys();
    let mut conn = Vars::new();
    let mut vars = Vars::new();
    for (k, v) in t {
        let value = serde_json::to_value(v).map_err(|e| e.to_string())?;
        if known.contains(&k.as_str()) {
            conn.insert(k.clone(), value);
        } else if explicit_vars && k == "vars" {
            match value {
                Value::Object(m) => vars.extend(m),
                _ => {
                    return Err(format!(
                        "{}[{section}]: vars must be a table",
                        line_of(text, section, Some(k))
                    ))
                }
            }
        } else if let Some(meant) = near_miss(k, &known) {
            let keep = if explicit_vars {
                format!("to keep it as a variable, put it in [{section}] vars = {{ {k} = ... }}")
            } else {
                "rename the variable to keep it".to_string()
            };
            return Err(format!(
                "{}[{section}]: unknown key `{k}`: did you mean `{meant}`? ({keep})",
                line_of(text, section, Some(k))
            ));
        } else {
            vars.insert(k.clone(), value);
        }
    }
    Ok((conn, vars))
}

/// The connection key `key` is probably a typo of: spelled alike but not a plural of it.
fn near_miss<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let normal = key.to_ascii_lowercase().replace('-', "_");
    known.iter().copied().find(|k| {
        if normal == *k {
            return true;
        }
        let plural = normal == format!("{k}s") || normal == format!("{k}es");
        let allowed = if k.len() <= 5 { 1 } else { 2 };
        !plural && strsim::damerau_levenshtein(&normal, k) <= allowed
    })
}

/// `inventory:LINE: ` for the line of `key` in `[section]` (of the header without a key), or
/// nothing when it cannot be found.
fn line_of(text: &str, section: &str, key: Option<&str>) -> String {
    let header = |l: &str| {
        let l = l.trim();
        l.starts_with('[') && l.trim_matches(['[', ']']).trim() == section
    };
    let is_key = |l: &str, k: &str| {
        l.split(['{', ',']).any(|part| {
            part.trim_start()
                .strip_prefix(k)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let mut inside = false;
    for (i, l) in text.lines().enumerate() {
        if l.trim_start().starts_with('[') {
            inside = header(l);
            if inside && key.is_none() {
                return format!("line {}: ", i + 1);
            }
            // `[hosts]`-style top tables and dotted keys at the top are found by key alone.
            continue;
        }
        if let Some(k) = key {
            if inside && is_key(l, k) {
                return format!("line {}: ", i + 1);
            }
        }
    }
    // A section written as a dotted key or inline table: find the key anywhere.
    if let Some(k) = key {
        if let Some(i) = text.lines().position(|l| is_key(l, k)) {
            return format!("line {}: ", i + 1);
        }
    }
    String::new()
}

/// How to reach a host of a TOML inventory.
pub fn reach(host: &Resolved) -> Result<Reach, String> {
    let mut r = Reach::default();
    for (k, v) in &host.conn {
        match k.as_str() {
            "address" => {
                r.address = Some(
                    v.as_str()
                        .ok_or_else(|| format!("address must be a string, not {v}"))?
                        .to_string(),
                )
            }
            "connection" => match v.as_str() {
                Some("local") => r.local = true,
                Some("ssh") => r.local = false,
                _ => return Err(format!("connection must be \"ssh\" or \"local\", not {v}")),
            },
            "become" => {
                r.privilege.enabled = v
                    .as_bool()
                    .ok_or_else(|| format!("become must be true or false, not {v}"))?
            }
            "become_user" => {
                r.privilege.user = Some(
                    v.as_str()
                        .ok_or_else(|| format!("become_user must be a string, not {v}"))?
                        .to_string(),
                );
                if !host.conn.contains_key("become") {
                    r.privilege.enabled = true;
                }
            }
            _ => {
                r.options.insert(
                    k.as_str().into(),
                    rhai::serde::to_dynamic(v).unwrap_or(rhai::Dynamic::UNIT),
                );
            }
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_of_a_connection_key_is_an_error_with_its_line() {
        let e = parse("[hosts.web1]\nadress = \"10.0.0.1\"\n").unwrap_err();
        assert!(
            e.starts_with("line 2: [hosts.web1]: unknown key `adress`: did you mean `address`?"),
            "{e}"
        );
        let e = parse("[defaults]\nknown-hosts = \"off\"\n").unwrap_err();
        assert!(e.contains("did you mean `known_hosts`"), "{e}");
        // Plurals and names far from any connection key stay variables.
        assert!(parse("[hosts.web1]\nports = [80]\nhaproxy_name = \"x\"\n").is_ok());
        assert!(parse("[hosts.web1]\nvars = { adress = \"kept\" }\n").is_ok());
        let e = parse("[group.web]\nhosts = []\n").unwrap_err();
        assert!(e.contains("did you mean [groups]"), "{e}");
    }
}
