//! Ansible's connection variables, applied as Ansible applies them (INI and YAML inventories): the
//! address, port, user and key, the ssh options of `ansible_ssh_common_args` and
//! `ansible_ssh_extra_args`, host key checking, `become`; runner's own option names (`known_hosts`,
//! `jump`, ...) too. Every variable stays in the host's vars too, as Ansible's `hostvars` has it.
//! A connection variable runner does not apply is warned about
//! once, naming it; a connection runner cannot make (`ansible_connection=winrm`) is an error.

use rhai::Dynamic;
use serde_json::Value;

use super::groups::{Reach, Resolved};

/// Variables runner applies. Where Ansible reads two names for one setting the later one wins,
/// whatever the level each is set at (Ansible's own rule): `ansible_ssh_host` over `ansible_host`.
const APPLIED: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_private_key_file",
    "ansible_ssh_private_key_file",
    "ansible_connection",
    "ansible_ssh_args",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_host_key_checking",
    "ansible_ssh_host_key_checking",
    "ansible_timeout",
    "ansible_ssh_timeout",
    "ansible_become",
    "ansible_become_user",
    "ansible_become_method",
];

/// Variables about connecting that runner does not apply, and why.
const NOT_APPLIED: &[(&str, &str)] = &[
    ("ansible_password", "runner logs in with SSH keys (or an agent) only, never with a password"),
    ("ansible_ssh_pass", "runner logs in with SSH keys (or an agent) only, never with a password"),
    ("ansible_ssh_password", "runner logs in with SSH keys (or an agent) only, never with a password"),
    ("ansible_become_password", "runner runs sudo -n, which never asks for a password: allow the user sudo without one (NOPASSWD)"),
    ("ansible_become_pass", "runner runs sudo -n, which never asks for a password: allow the user sudo without one (NOPASSWD)"),
    ("ansible_sudo_pass", "runner runs sudo -n, which never asks for a password: allow the user sudo without one (NOPASSWD)"),
    ("ansible_ssh_executable", "runner runs the `ssh` on PATH"),
    ("ansible_shell_executable", "runner runs commands with the login shell of the user"),
    ("ansible_shell_type", "runner runs commands with the login shell of the user"),
];

/// Prefixes of variables that affect connecting: any not applied is warned about.
const CONNECTING: &[&str] = &[
    "ansible_ssh_",
    "ansible_become_",
    "ansible_sudo",
    "ansible_su_",
    "ansible_paramiko_",
    "ansible_scp_",
    "ansible_sftp_",
    "ansible_winrm_",
    "ansible_psrp_",
    "ansible_pipelining",
];

/// Variables runner left unapplied, by name, with the hosts that have them.
#[derive(Default)]
pub struct Unapplied(Vec<(String, String, Vec<String>)>);

impl Unapplied {
    fn note(&mut self, var: &str, why: &str, host: &str) {
        match self.0.iter_mut().find(|(v, ..)| v == var) {
            Some((_, _, hosts)) => hosts.push(host.to_string()),
            None => self
                .0
                .push((var.to_string(), why.to_string(), vec![host.to_string()])),
        }
    }

    /// One line per variable.
    pub fn warnings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(var, why, hosts)| {
                let on = if hosts.len() > 3 {
                    format!("{} and {} more", hosts[..3].join(", "), hosts.len() - 3)
                } else {
                    hosts.join(", ")
                };
                format!("{var} (on {on}) is not applied: {why}")
            })
            .collect()
    }
}

/// A variable's value as text, as Ansible would template it into a command line.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Ansible's truth values: true/false, yes/no, on/off, 1/0, as booleans or text.
fn boolean(var: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Ok(true),
            "false" | "no" | "off" | "0" | "n" | "f" | "" => Ok(false),
            _ => Err(format!("{var}: `{s}` is not true or false")),
        },
        other => Err(format!("{var}: `{other}` is not true or false")),
    }
}

/// How to reach `host`, from its Ansible variables.
pub fn reach(host: &Resolved, unapplied: &mut Unapplied) -> Result<Reach, String> {
    let vars = &host.vars;
    // The later name of each pair wins (see APPLIED).
    let get = |names: &[&str]| -> Option<(&'static str, &Value)> {
        APPLIED
            .iter()
            .rev()
            .filter(|a| names.contains(a))
            .filter_map(|a| vars.get(*a).map(|v| (*a, v)))
            .find(|(_, v)| !v.is_null())
    };
    let mut r = Reach::default();
    if let Some((_, v)) = get(&["ansible_host", "ansible_ssh_host"]) {
        r.address = Some(text(v));
    }
    if let Some((var, v)) = get(&["ansible_port", "ansible_ssh_port"]) {
        let port = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{var}: `{}` is not a port number", text(v)))?;
        r.options.insert("port".into(), Dynamic::from_int(port));
    }
    if let Some((_, v)) = get(&["ansible_user", "ansible_ssh_user"]) {
        r.options.insert("user".into(), text(v).into());
    }
    if let Some((_, v)) = get(&["ansible_private_key_file", "ansible_ssh_private_key_file"]) {
        r.options.insert("key".into(), text(v).into());
    }
    if let Some((var, v)) = get(&["ansible_timeout", "ansible_ssh_timeout"]) {
        let secs = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{var}: `{}` is not a number of seconds", text(v)))?;
        r.options
            .insert("connect_timeout".into(), Dynamic::from_float(secs));
    }
    if let Some((var, v)) = get(&["ansible_host_key_checking", "ansible_ssh_host_key_checking"]) {
        let check = if boolean(var, v)? { "strict" } else { "off" };
        r.options.insert("known_hosts".into(), check.into());
    }
    // Ansible's order on the ssh command line: ssh_args, then the common args, then the extra ones.
    let args: Vec<String> = [
        "ansible_ssh_args",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
    ]
    .iter()
    .filter_map(|a| vars.get(*a).filter(|v| !v.is_null()).map(text))
    .filter(|a| !a.trim().is_empty())
    .collect();
    if !args.is_empty() {
        r.options.insert("ssh_args".into(), args.join(" ").into());
    }
    if let Some((_, v)) = get(&["ansible_connection"]) {
        match text(v).as_str() {
            "local" => r.local = true,
            "ssh" | "smart" | "paramiko" | "paramiko_ssh" | "ansible.builtin.ssh"
            | "ansible.builtin.paramiko_ssh" => {}
            other => {
                return Err(format!(
                    "ansible_connection: runner reaches hosts over ssh or locally (`local`), not with `{other}`"
                ))
            }
        }
    }
    if let Some((var, v)) = get(&["ansible_become"]) {
        r.privilege.enabled = boolean(var, v)?;
    }
    if let Some((_, v)) = get(&["ansible_become_user"]) {
        r.privilege.user = Some(text(v));
    }
    if let Some((_, v)) = get(&["ansible_become_method"]) {
        let m = text(v);
        if m != "sudo" && m != "ansible.builtin.sudo" {
            unapplied.note(
                "ansible_become_method",
                &format!("runner becomes another user with sudo -n only, not with {m}"),
                &host.name,
            );
        }
    }
    // runner's own option names apply too (`known_hosts: accept-new`), over Ansible's.
    for (k, v) in vars {
        if crate::prims::ssh::OPTIONS.contains(&k.as_str()) && !v.is_null() {
            r.options.insert(
                k.as_str().into(),
                rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT),
            );
        }
    }
    for k in vars.keys() {
        if APPLIED.contains(&k.as_str()) {
            continue;
        }
        if let Some((_, why)) = NOT_APPLIED.iter().find(|(n, _)| n == k) {
            unapplied.note(k, why, &host.name);
        } else if CONNECTING.iter().any(|p| k.starts_with(p)) {
            let why = match crate::opts::did_you_mean(k, APPLIED) {
                Some(s) => format!("runner does not know it; did you mean {s}?"),
                None => "runner does not apply it".to_string(),
            };
            unapplied.note(k, &why, &host.name);
        } else if k.starts_with("ansible_") {
            if let Some(s) = crate::opts::did_you_mean(k, APPLIED) {
                unapplied.note(
                    k,
                    &format!("runner does not know it; did you mean {s}?"),
                    &host.name,
                );
            }
        }
    }
    Ok(r)
}
