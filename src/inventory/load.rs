//! Loading an inventory file: which format it is (by its name, else by its content), reading it,
//! and each host's connection checked, so a mistake is a usage error before anything runs.

use std::collections::BTreeMap;
use std::path::Path;

use rhai::Map;

use super::ansible::{self, Unapplied};
use super::groups::{Reach, Resolved, Tree};
use super::limit::Universe;
use super::{ini, toml_file, yaml};
use crate::error::{Error, Failure};
use crate::prims::privilege::Become;
use crate::prims::ssh::SshTarget;

/// One host of an inventory: plain data; `hosts()` turns it into a host handle.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// How to reach it over SSH; None for `connection = "local"` (this machine).
    pub ssh: Option<SshTarget>,
    /// Whether its commands run through `sudo -n`, unless a call says otherwise.
    pub privilege: Become,
    pub vars: Map,
    /// Every group it is in (through child groups too), in file order.
    pub groups: Vec<String>,
}

/// The formats of an inventory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    AnsibleYaml,
    AnsibleIni,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Toml => "runner TOML",
            Format::AnsibleYaml => "Ansible YAML",
            Format::AnsibleIni => "Ansible INI",
        }
    }

    /// The format of a file: by its name when that says (`.toml`, `.yml`, `.yaml`, `.json`), else
    /// by its first line. Also says why, for messages.
    pub fn of(path: &Path, text: &str) -> (Format, String) {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext {
            "toml" => return (Format::Toml, "its name ends in .toml".into()),
            "yml" | "yaml" | "json" => {
                return (Format::AnsibleYaml, format!("its name ends in .{ext}"))
            }
            _ => {}
        }
        let significant = |l: &&str| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && !t.starts_with(';')
        };
        let Some(first) = text.lines().find(significant).map(str::trim) else {
            return (Format::AnsibleIni, "it is empty".into());
        };
        let yaml_key = first.split_once(':').is_some_and(|(k, rest)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c))
                && (rest.is_empty() || rest.starts_with([' ', '\t']))
        });
        if first == "---" || first.starts_with('{') || yaml_key {
            return (
                Format::AnsibleYaml,
                format!("its first line `{first}` is YAML"),
            );
        }
        if first.starts_with('[') {
            let toml_headers = text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with('['))
                .all(|l| {
                    let name = l
                        .trim_start_matches('[')
                        .split([']', '.'])
                        .next()
                        .unwrap_or("");
                    l.starts_with("[[")
                        || ["defaults", "groups", "hosts"].contains(&name.trim())
                            && (l.contains('.')
                                || ["[defaults]", "[groups]", "[hosts]"].contains(&l))
                });
            if toml_headers {
                return (
                    Format::Toml,
                    "its sections are [defaults], [groups.NAME] and [hosts.NAME]".into(),
                );
            }
            return (
                Format::AnsibleIni,
                format!("its first line `{first}` is an INI section"),
            );
        }
        (
            Format::AnsibleIni,
            format!("its first line `{first}` is a host line"),
        )
    }
}

/// A parsed inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub source: String,
    pub format: Format,
    /// Hosts in the order the file names them.
    pub hosts: Vec<Entry>,
    /// group -> host names, through child groups too (every host is also in `all`).
    pub groups: BTreeMap<String, Vec<String>>,
    /// What the inventory says that runner does not apply, one line per variable.
    pub warnings: Vec<String>,
}

impl Inventory {
    /// Read an inventory file: runner's TOML, an Ansible YAML or an Ansible INI inventory.
    pub fn load(path: &Path) -> Result<Inventory, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read inventory {}: {e}", path.display())))?;
        Inventory::parse(path, &text).map_err(Error::Usage)
    }

    /// Read the inventory `text` of the file `path`; an error names the file, the format it was
    /// read as, the line when known, and what was expected.
    pub fn parse(path: &Path, text: &str) -> Result<Inventory, String> {
        let source = path.display().to_string();
        let (mut format, mut why) = Format::of(path, text);
        let by_name = path.extension().is_some_and(|e| e == "toml");
        let mut read = match format {
            Format::Toml => toml_file::parse(text),
            Format::AnsibleYaml => yaml::parse(text),
            Format::AnsibleIni => ini::parse(text),
        };
        // `[hosts]` or `[defaults]` may also be an INI group: a file that only looks like TOML
        // and reads as INI is INI.
        if format == Format::Toml && !by_name && read.is_err() {
            if let Ok(tree) = ini::parse(text) {
                (format, why) = (
                    Format::AnsibleIni,
                    "it reads as INI, not as TOML".to_string(),
                );
                read = Ok(tree);
            }
        }
        let bad = |e: String| {
            format!(
                "inventory {source} (read as {} because {why}): {e}",
                format.name()
            )
        };
        let tree: Tree = read.map_err(bad)?;
        let resolved = tree.resolve().map_err(bad)?;
        let mut unapplied = Unapplied::default();
        let mut hosts = Vec::new();
        for r in &resolved {
            let reach = match format {
                Format::Toml => toml_file::reach(r),
                _ => ansible::reach(r, &mut unapplied),
            }
            .and_then(|reach| entry(r, reach))
            .map_err(|e| bad(format!("host {}: {e}", r.name)))?;
            hosts.push(reach);
        }
        let mut groups = BTreeMap::new();
        for g in &tree.groups {
            groups.insert(g.name.clone(), tree.members(&g.name));
        }
        let warnings = unapplied
            .warnings()
            .into_iter()
            .map(|w| format!("inventory {source}: {w}"))
            .collect();
        Ok(Inventory {
            source,
            format,
            hosts,
            groups,
            warnings,
        })
    }

    /// The values of every host's variables that hold a secret, by their name (`is_secret`):
    /// masked in all that runner shows and records, as `secret(...)`'s are. Values shorter than 3
    /// characters are left alone: masking them would mask every `1` and `no` of the output.
    pub fn secret_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self
            .hosts
            .iter()
            .flat_map(|h| h.vars.iter())
            .filter(|(k, v)| is_secret(k) && v.is_string())
            .map(|(_, v)| v.to_string())
            .filter(|v| v.chars().count() >= 3)
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// The entries of `group` (or the host with that name), narrowed by `limit`, and to the share
    /// `shard` of them.
    pub fn select(
        &self,
        group: &str,
        limit: Option<&str>,
        shard: Option<super::shard::Shard>,
    ) -> Result<Vec<&Entry>, Failure> {
        let names: Vec<&str> = match self.groups.get(group) {
            Some(members) => members.iter().map(String::as_str).collect(),
            None if self.hosts.iter().any(|h| h.name == group) => vec![group],
            None => {
                let groups: Vec<&str> = self.groups.keys().map(String::as_str).collect();
                let hint = crate::opts::did_you_mean(group, &groups)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err(Failure::usage(
                    format!("hosts {group}"),
                    format!(
                        "hosts(\"{group}\"): no group or host `{group}` in {}; {hint}groups: {}",
                        self.source,
                        groups.join(", ")
                    ),
                ));
            }
        };
        let allowed = self
            .limited(limit)
            .map_err(|e| Failure::usage(format!("hosts {group}"), e))?;
        Ok(self
            .hosts
            .iter()
            .filter(|h| names.contains(&h.name.as_str()) && allowed.contains(&h.name.as_str()))
            .filter(|h| shard.is_none_or(|s| s.holds(&h.name)))
            .collect())
    }

    /// Host names allowed by a `--limit` pattern (see `limit`); every host without one. A pattern
    /// that matches nothing is an error naming it.
    pub fn limited(&self, limit: Option<&str>) -> Result<Vec<&str>, String> {
        let universe = Universe {
            hosts: self.hosts.iter().map(|h| h.name.as_str()).collect(),
            groups: self
                .groups
                .iter()
                .map(|(g, m)| (g.as_str(), m.as_slice()))
                .collect(),
        };
        match limit {
            None => Ok(universe.hosts),
            Some(l) => universe
                .select(l)
                .map_err(|e| format!("{e} in inventory {}", self.source)),
        }
    }
}

/// The entry of a resolved host: its connection checked.
fn entry(r: &Resolved, reach: Reach) -> Result<Entry, String> {
    let ssh = if reach.local {
        None
    } else {
        let address = reach.address.as_deref().unwrap_or(&r.name);
        Some(SshTarget::with_options(address, reach.options).map_err(|f| f.message)?)
    };
    let vars = r
        .vars
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().into(),
                rhai::serde::to_dynamic(v).unwrap_or(rhai::Dynamic::UNIT),
            )
        })
        .collect();
    Ok(Entry {
        name: r.name.clone(),
        ssh,
        privilege: reach.privilege,
        vars,
        groups: r.groups.clone(),
    })
}

/// Whether an inventory variable holds a secret, by its name: Ansible's password variables
/// (`ansible_password`, `ansible_become_pass`, ...) and any whose last word is one of `password`,
/// `passwd`, `pass`, `secret`, `token`, `key` after `api` (`db_password`, `vault_token`,
/// `api_key`), in any case.
pub fn is_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(['_', '-', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        [.., "api", "key"] => true,
        [.., last] => matches!(*last, "password" | "passwd" | "pass" | "secret" | "token"),
        [] => false,
    }
}

#[cfg(test)]
mod secret_tests {
    use super::is_secret;

    #[test]
    fn secret_variables_are_known_by_their_last_word() {
        for name in [
            "ansible_password",
            "ansible_ssh_pass",
            "ansible_become_pass",
            "ansible_sudo_pass",
            "db_password",
            "VAULT_TOKEN",
            "api_key",
            "app.secret",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "token_ttl",
            "passes",
            "ansible_user",
            "ssh_key_file",
            "keyname",
            "password_file",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }
}
