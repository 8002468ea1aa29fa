//! The shape every inventory format is read into: groups with their hosts, child groups and
//! variables, hosts with their own variables. Resolving it gives each host the groups it belongs to
//! (through child groups too) and its variables merged in the order of precedence of its format.

use serde_json::Value;

/// Variables as an inventory file gives them.
pub type Vars = serde_json::Map<String, Value>;

/// In which order group variables are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// runner's TOML: `[defaults]` (group `all`), then the groups in file order, then the host.
    FileOrder,
    /// Ansible's: `all`, then groups by depth (a child over its parent), by
    /// `ansible_group_priority`, by name; then the host.
    Ansible,
}

/// A group: its own hosts and child groups, in file order, and its variables.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub name: String,
    pub hosts: Vec<String>,
    pub children: Vec<String>,
    pub vars: Vars,
    /// Connection settings given apart from the variables (runner's TOML format).
    pub conn: Vars,
}

/// A host and the variables given on it.
#[derive(Debug, Clone, Default)]
pub struct HostDef {
    pub name: String,
    pub vars: Vars,
    /// Connection settings given apart from the variables (runner's TOML format).
    pub conn: Vars,
}

/// An inventory as a file describes it.
#[derive(Debug, Clone)]
pub struct Tree {
    pub precedence: Precedence,
    /// In the order the file declares them; `all` first.
    pub groups: Vec<Group>,
    /// In the order the file first names them.
    pub hosts: Vec<HostDef>,
}

/// A host with what it inherits: every group it is in, and its variables merged.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    /// Every group it is in, through child groups too, `all` and `ungrouped` left out.
    pub groups: Vec<String>,
    pub vars: Vars,
    pub conn: Vars,
}

impl Tree {
    pub fn new(precedence: Precedence) -> Tree {
        let mut t = Tree {
            precedence,
            groups: Vec::new(),
            hosts: Vec::new(),
        };
        t.group("all");
        t
    }

    /// The group `name`, declared now if it was not.
    pub fn group(&mut self, name: &str) -> &mut Group {
        let i = match self.groups.iter().position(|g| g.name == name) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    name: name.to_string(),
                    ..Group::default()
                });
                self.groups.len() - 1
            }
        };
        &mut self.groups[i]
    }

    /// The host `name`, added now if it was not.
    pub fn host(&mut self, name: &str) -> &mut HostDef {
        let i = match self.hosts.iter().position(|h| h.name == name) {
            Some(i) => i,
            None => {
                self.hosts.push(HostDef {
                    name: name.to_string(),
                    ..HostDef::default()
                });
                self.hosts.len() - 1
            }
        };
        &mut self.hosts[i]
    }

    /// `host` in `group` (`all`: in no group of its own), with `vars` set on it (later wins).
    pub fn add_host(&mut self, group: &str, host: &str, vars: Vars) {
        let g = self.group(group);
        if !g.hosts.iter().any(|h| h == host) {
            g.hosts.push(host.to_string());
        }
        self.host(host).vars.extend(vars);
    }

    /// `child` is a child group of `parent` (both declared now if they were not).
    pub fn add_child(&mut self, parent: &str, child: &str) {
        self.group(child);
        let p = self.group(parent);
        if !p.children.iter().any(|c| c == child) {
            p.children.push(child.to_string());
        }
    }

    fn find(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// How deep each group is below `all` (its longest path), refusing a group that is its own
    /// descendant.
    fn depths(&self) -> Result<Vec<(String, usize)>, String> {
        fn visit(
            t: &Tree,
            name: &str,
            depth: usize,
            path: &mut Vec<String>,
            out: &mut Vec<(String, usize)>,
        ) -> Result<(), String> {
            if path.iter().any(|p| p == name) {
                return Err(format!(
                    "group `{name}` is its own descendant ({} -> {name})",
                    path.join(" -> ")
                ));
            }
            match out.iter_mut().find(|(n, _)| n == name) {
                Some((_, d)) if *d >= depth && depth > 0 => return Ok(()),
                Some((_, d)) => *d = (*d).max(depth),
                None => out.push((name.to_string(), depth)),
            }
            path.push(name.to_string());
            if let Some(g) = t.find(name) {
                for c in &g.children {
                    visit(t, c, depth + 1, path, out)?;
                }
            }
            path.pop();
            Ok(())
        }
        let mut out = Vec::new();
        // Every group that no other group names as a child hangs below `all`.
        let named: Vec<&String> = self.groups.iter().flat_map(|g| &g.children).collect();
        visit(self, "all", 0, &mut Vec::new(), &mut out)?;
        for g in &self.groups {
            if g.name != "all" && !named.contains(&&g.name) {
                visit(self, &g.name, 1, &mut vec!["all".into()], &mut out)?;
            }
        }
        Ok(out)
    }

    /// The groups `group` is made of: itself and its descendants.
    fn descendants(&self, group: &str) -> Vec<String> {
        let mut out = vec![group.to_string()];
        let mut i = 0;
        while i < out.len() {
            if let Some(g) = self.find(&out[i]) {
                for c in &g.children {
                    if !out.contains(c) {
                        out.push(c.clone());
                    }
                }
            }
            i += 1;
        }
        out
    }

    /// Every host of `group`, through its child groups too, in file order.
    pub fn members(&self, group: &str) -> Vec<String> {
        if group == "all" {
            return self.hosts.iter().map(|h| h.name.clone()).collect();
        }
        let groups = self.descendants(group);
        self.hosts
            .iter()
            .filter(|h| {
                groups
                    .iter()
                    .filter_map(|g| self.find(g))
                    .any(|g| g.hosts.contains(&h.name))
            })
            .map(|h| h.name.clone())
            .collect()
    }

    /// Each host with its groups and merged variables.
    pub fn resolve(&self) -> Result<Vec<Resolved>, String> {
        let depths = self.depths()?;
        let depth = |g: &str| depths.iter().find(|(n, _)| n == g).map_or(1, |(_, d)| *d);
        let priority = |g: &Group| {
            g.vars
                .get("ansible_group_priority")
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
                .unwrap_or(1)
        };
        let members: Vec<(&Group, std::collections::HashSet<String>)> = self
            .groups
            .iter()
            .filter(|g| g.name != "all")
            .map(|g| (g, self.members(&g.name).into_iter().collect()))
            .collect();
        let mut out = Vec::new();
        for h in &self.hosts {
            let mut groups: Vec<&Group> = members
                .iter()
                .filter(|(_, m)| m.contains(&h.name))
                .map(|(g, _)| *g)
                .collect();
            if self.precedence == Precedence::Ansible {
                groups.sort_by(|a, b| {
                    (depth(&a.name), priority(a), &a.name).cmp(&(
                        depth(&b.name),
                        priority(b),
                        &b.name,
                    ))
                });
            }
            let all = self.find("all");
            let mut vars = all.map(|g| g.vars.clone()).unwrap_or_default();
            let mut conn = all.map(|g| g.conn.clone()).unwrap_or_default();
            for g in &groups {
                vars.extend(g.vars.clone());
                conn.extend(g.conn.clone());
            }
            vars.extend(h.vars.clone());
            conn.extend(h.conn.clone());
            if self.precedence == Precedence::Ansible {
                vars.remove("ansible_group_priority");
            }
            // Shown in file order, as the file names them.
            let mut names: Vec<String> = self
                .groups
                .iter()
                .filter(|g| groups.iter().any(|x| x.name == g.name) && g.name != "ungrouped")
                .map(|g| g.name.clone())
                .collect();
            names.dedup();
            out.push(Resolved {
                name: h.name.clone(),
                groups: names,
                vars,
                conn,
            });
        }
        Ok(out)
    }

    /// In Ansible, a host in no group but `all` is in `ungrouped`, and only then.
    pub fn settle_ungrouped(&mut self) {
        let grouped: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.name != "all" && g.name != "ungrouped")
            .flat_map(|g| g.hosts.clone())
            .collect();
        let lone: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| !grouped.contains(&h.name))
            .map(|h| h.name.clone())
            .collect();
        for g in &mut self.groups {
            if g.name == "all" {
                g.hosts.clear();
            }
        }
        let u = self.group("ungrouped");
        u.hosts = lone;
    }
}

/// What a host's settings say about reaching it, before the SSH options are checked.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    /// Where to connect (default: the host's name).
    pub address: Option<String>,
    /// `connection = "local"`: this machine, no SSH.
    pub local: bool,
    /// The options of `ssh(host, #{...})`.
    pub options: rhai::Map,
    /// Whether commands run through `sudo -n`, and as whom.
    pub privilege: crate::prims::privilege::Become,
}
