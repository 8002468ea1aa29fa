//! Inventories (`-i FILE`): hosts, groups and their variables, from runner's TOML format or an Ansible
//! YAML inventory as teams already have it, and the `--limit` pattern that narrows a run.

use std::collections::BTreeMap;
use std::path::Path;

use rhai::{Dynamic, Map};
use serde_json::Value;

use crate::error::{Error, Failure};
use crate::prims::ssh::SshTarget;

/// One host of an inventory: plain data; `hosts()` turns it into a host handle.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// How to reach it over SSH; None for `connection = "local"` (this machine).
    pub ssh: Option<SshTarget>,
    pub vars: Map,
    pub groups: Vec<String>,
}

/// A host as the inventory file describes it, before its connection options are checked.
#[derive(Debug, Clone)]
struct Described {
    name: String,
    address: String,
    local: bool,
    connection: Map,
    vars: Map,
    groups: Vec<String>,
}

impl Described {
    fn entry(self) -> Result<Entry, Failure> {
        let ssh = if self.local {
            None
        } else {
            Some(SshTarget::with_options(&self.address, self.connection)?)
        };
        Ok(Entry {
            name: self.name,
            ssh,
            vars: self.vars,
            groups: self.groups,
        })
    }
}

/// A parsed inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub source: String,
    /// Hosts in the order the file names them.
    pub hosts: Vec<Entry>,
    /// group -> host names (every host is also in `all`).
    pub groups: BTreeMap<String, Vec<String>>,
}

impl Inventory {
    /// Read a TOML (`.toml`) or Ansible YAML (anything else) inventory.
    pub fn load(path: &Path) -> Result<Inventory, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read inventory {}: {e}", path.display())))?;
        let source = path.display().to_string();
        let bad = |e: String| Error::Usage(format!("inventory {source}: {e}"));
        let parsed = if path.extension().is_some_and(|x| x == "toml") {
            let v: Value = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            from_toml(&v).map_err(bad)?
        } else {
            let v: Value = serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?;
            from_ansible(&v).map_err(bad)?
        };
        // Every host's connection options are checked now: a typo is a usage error before anything
        // runs.
        let hosts = parsed
            .hosts
            .into_iter()
            .map(|d| {
                let name = d.name.clone();
                d.entry()
                    .map_err(|f| bad(format!("host {name}: {}", f.message)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Inventory {
            source,
            hosts,
            groups: parsed.groups,
        })
    }

    /// The entries of `group` (or the host with that name), narrowed by `limit`.
    pub fn select(&self, group: &str, limit: Option<&str>) -> Result<Vec<&Entry>, Failure> {
        let names: Vec<&str> = match self.groups.get(group) {
            Some(members) => members.iter().map(String::as_str).collect(),
            None if self.hosts.iter().any(|h| h.name == group) => vec![group],
            None => {
                let groups: Vec<&str> = self.groups.keys().map(String::as_str).collect();
                return Err(Failure::usage(
                    format!("hosts {group}"),
                    format!(
                        "hosts(\"{group}\"): no group or host `{group}` in {}; groups: {}",
                        self.source,
                        groups.join(", ")
                    ),
                ));
            }
        };
        let allowed = self.limited(limit);
        Ok(self
            .hosts
            .iter()
            .filter(|h| names.contains(&h.name.as_str()) && allowed.contains(&h.name.as_str()))
            .collect())
    }

    /// Host names allowed by a `--limit` pattern: comma-separated host or group names or globs,
    /// `!pattern` excludes. Without positive terms, every host is allowed before the exclusions.
    pub fn limited(&self, limit: Option<&str>) -> Vec<&str> {
        let all: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        let Some(limit) = limit else { return all };
        let terms: Vec<&str> = limit
            .split([',', ':'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let matches = |pat: &str, host: &str| -> bool {
            glob(pat, host)
                || self
                    .groups
                    .iter()
                    .any(|(g, members)| glob(pat, g) && members.iter().any(|m| m == host))
        };
        let positive: Vec<&str> = terms
            .iter()
            .copied()
            .filter(|t| !t.starts_with('!'))
            .collect();
        all.into_iter()
            .filter(|h| positive.is_empty() || positive.iter().any(|p| matches(p, h)))
            .filter(|h| {
                !terms
                    .iter()
                    .filter_map(|t| t.strip_prefix('!'))
                    .any(|p| matches(p, h))
            })
            .collect()
    }
}

/// `*` and `?` wildcards.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &text.chars().collect::<Vec<_>>(),
    )
}

fn to_dynamic(v: &Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// Split a map of settings into (connection options, variables). `rename` maps inventory-specific
/// keys (Ansible's) to runner's.
fn split(
    settings: &serde_json::Map<String, Value>,
    rename: &[(&str, &str)],
    conn: &mut Map,
    vars: &mut Map,
    address: &mut Option<String>,
    local: &mut Option<bool>,
) {
    for (k, v) in settings {
        let key = rename
            .iter()
            .find(|(from, _)| from == k)
            .map(|(_, to)| *to)
            .unwrap_or(k.as_str());
        match key {
            "address" => *address = v.as_str().map(str::to_string),
            "connection" => *local = Some(v.as_str() == Some("local")),
            k if crate::prims::ssh::OPTIONS.contains(&k) => {
                conn.insert(k.into(), to_dynamic(v));
            }
            _ => {
                vars.insert(k.into(), to_dynamic(v));
            }
        }
    }
}

#[derive(Default, Clone)]
struct Layer {
    conn: Map,
    vars: Map,
    address: Option<String>,
    local: Option<bool>,
}

impl Layer {
    fn from(settings: Option<&Value>, rename: &[(&str, &str)]) -> Layer {
        let mut l = Layer::default();
        if let Some(Value::Object(m)) = settings {
            split(
                m,
                rename,
                &mut l.conn,
                &mut l.vars,
                &mut l.address,
                &mut l.local,
            );
        }
        l
    }

    /// `other` wins over `self`.
    fn merged(&self, other: &Layer) -> Layer {
        let mut l = self.clone();
        l.conn.extend(other.conn.clone());
        l.vars.extend(other.vars.clone());
        l.address = other.address.clone().or(l.address);
        l.local = other.local.or(l.local);
        l
    }
}

/// An inventory as read from a file, before the connection options are checked.
#[derive(Default)]
struct Parsed {
    hosts: Vec<Described>,
    groups: BTreeMap<String, Vec<String>>,
}

fn add_host(inv: &mut Parsed, name: &str, layer: &Layer, groups: &[String]) {
    let entry = Described {
        name: name.to_string(),
        address: layer.address.clone().unwrap_or_else(|| name.to_string()),
        local: layer.local.unwrap_or(false),
        connection: layer.conn.clone(),
        vars: layer.vars.clone(),
        groups: groups.to_vec(),
    };
    for g in groups.iter().chain(std::iter::once(&"all".to_string())) {
        let members = inv.groups.entry(g.clone()).or_default();
        if !members.contains(&entry.name) {
            members.push(entry.name.clone());
        }
    }
    match inv.hosts.iter_mut().find(|h| h.name == name) {
        Some(existing) => {
            existing.connection.extend(entry.connection);
            existing.vars.extend(entry.vars);
            for g in entry.groups {
                if !existing.groups.contains(&g) {
                    existing.groups.push(g);
                }
            }
        }
        None => inv.hosts.push(entry),
    }
}

/// runner's TOML inventory: `[defaults]`, `[groups.NAME] hosts = [...] vars = {...}`, `[hosts.NAME]`.
fn from_toml(v: &Value) -> Result<Parsed, String> {
    let top = v.as_object().ok_or("not a table")?;
    for k in top.keys() {
        if !["defaults", "groups", "hosts"].contains(&k.as_str()) {
            return Err(format!(
                "unknown section [{k}]; expected [defaults], [groups.NAME] or [hosts.NAME]"
            ));
        }
    }
    let defaults = Layer::from(top.get("defaults"), &[]);
    let empty = serde_json::Map::new();
    let host_tables = top
        .get("hosts")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let group_tables = top
        .get("groups")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    // host -> groups, and the merged group vars for it (groups in file order; later groups win)
    let mut membership: Vec<(String, Vec<String>, Layer)> = Vec::new();
    let mut note = |host: &str, group: Option<(&str, &Layer)>| {
        let i = match membership.iter().position(|(h, ..)| h == host) {
            Some(i) => i,
            None => {
                membership.push((host.to_string(), Vec::new(), Layer::default()));
                membership.len() - 1
            }
        };
        if let Some((g, layer)) = group {
            membership[i].1.push(g.to_string());
            membership[i].2 = membership[i].2.merged(layer);
        }
    };
    for (g, table) in group_tables {
        let t = table
            .as_object()
            .ok_or(format!("[groups.{g}] is not a table"))?;
        let layer = Layer::from(t.get("vars"), &[]);
        for h in t
            .get("hosts")
            .and_then(Value::as_array)
            .ok_or(format!("[groups.{g}] needs hosts = [...]"))?
        {
            note(
                h.as_str()
                    .ok_or(format!("[groups.{g}]: host names are strings"))?,
                Some((g, &layer)),
            );
        }
    }
    for h in host_tables.keys() {
        note(h, None);
    }
    let mut inv = Parsed::default();
    for (host, groups, group_layer) in membership {
        let own = Layer::from(host_tables.get(&host), &[]);
        add_host(
            &mut inv,
            &host,
            &defaults.merged(&group_layer).merged(&own),
            &groups,
        );
    }
    Ok(inv)
}

const ANSIBLE_KEYS: &[(&str, &str)] = &[
    ("ansible_host", "address"),
    ("ansible_user", "user"),
    ("ansible_port", "port"),
    ("ansible_ssh_private_key_file", "key"),
    ("ansible_connection", "connection"),
];

/// An Ansible YAML inventory: top-level groups (usually `all`) with `hosts`, `vars` and `children`.
fn from_ansible(v: &Value) -> Result<Parsed, String> {
    let top = v.as_object().ok_or("not a YAML map of groups")?;
    let mut inv = Parsed::default();
    for (g, body) in top {
        walk_group(&mut inv, g, body, &Layer::default(), &[])?;
    }
    Ok(inv)
}

fn walk_group(
    inv: &mut Parsed,
    name: &str,
    body: &Value,
    inherited: &Layer,
    parents: &[String],
) -> Result<(), String> {
    let empty = serde_json::Map::new();
    let b = match body {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => return Err(format!("group {name} is not a map")),
    };
    let layer = inherited.merged(&Layer::from(b.get("vars"), ANSIBLE_KEYS));
    let mut groups = parents.to_vec();
    if name != "all" {
        groups.push(name.to_string());
    }
    inv.groups.entry(name.to_string()).or_default();
    if let Some(hosts) = b.get("hosts") {
        let hosts = match hosts {
            Value::Object(m) => m.clone(),
            Value::Null => serde_json::Map::new(),
            _ => return Err(format!("group {name}: hosts must be a map")),
        };
        for (h, settings) in &hosts {
            add_host(
                inv,
                h,
                &layer.merged(&Layer::from(Some(settings), ANSIBLE_KEYS)),
                &groups,
            );
        }
    }
    if let Some(children) = b.get("children") {
        let children = children
            .as_object()
            .ok_or(format!("group {name}: children must be a map"))?;
        for (child, body) in children {
            walk_group(inv, child, body, &layer, &groups)?;
        }
    }
    Ok(())
}
