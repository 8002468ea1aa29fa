//! Inventories: Ansible's INI and YAML formats read as Ansible reads them, compared with what
//! Ansible itself says of the same files; runner's TOML; errors that name the file and the line;
//! `--limit`.
//!
//! The fixtures in tests/fixtures/ were made with Ansible (ansible-core 2.19, the engine of the
//! `ansible` package) installed in a venv:
//!
//! ```sh
//! /usr/bin/python3 -m venv /opt/ansible && /opt/ansible/bin/pip install ansible
//! cd tests/fixtures
//! /opt/ansible/bin/ansible-inventory -i fleet.ini --list > fleet.ini.json
//! /opt/ansible/bin/ansible-inventory -i fleet.ini --list --yaml --export > fleet.yml
//! ```
//! (`ansible-inventory -i fleet.yml --list` gives the same JSON as for fleet.ini.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::harness::*;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// What `ansible-inventory --list` said: each group's hosts (through its children too), and each
/// host's variables.
struct AnsibleView {
    groups: BTreeMap<String, BTreeSet<String>>,
    hostvars: BTreeMap<String, Value>,
}

fn ansible_view() -> AnsibleView {
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("fleet.ini.json")).unwrap()).unwrap();
    fn members(list: &Value, g: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = list[g]["hosts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| h.as_str().unwrap().to_string())
            .collect();
        for c in list[g]["children"].as_array().into_iter().flatten() {
            out.extend(members(list, c.as_str().unwrap()));
        }
        out
    }
    let hostvars: BTreeMap<String, Value> = list["_meta"]["hostvars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut groups = BTreeMap::new();
    for g in list.as_object().unwrap().keys().filter(|k| *k != "_meta") {
        groups.insert(g.clone(), members(&list, g));
    }
    groups.insert("all".into(), hostvars.keys().cloned().collect());
    AnsibleView { groups, hostvars }
}

/// `runner hosts -i FILE --output json`: one object per host.
fn runner_hosts(file: &str) -> Vec<Value> {
    let out = Test::new()
        .args(&["hosts", "-i", file, "--output", "json"])
        .run()
        .success();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn assert_same_as_ansible(file: &str) {
    let ansible = ansible_view();
    let hosts = runner_hosts(file);
    let names: BTreeSet<String> = hosts
        .iter()
        .map(|h| h["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ansible.hostvars.keys().cloned().collect::<BTreeSet<_>>(),
        "{file}: hosts"
    );
    for h in &hosts {
        let name = h["host"].as_str().unwrap();
        assert_eq!(
            h["vars"], ansible.hostvars[name],
            "{file}: variables of {name}"
        );
        // The connection variables are applied, not only kept.
        let vars = &ansible.hostvars[name];
        if vars["ansible_connection"] == "local" {
            assert_eq!(h["address"], "local", "{file}: {name} is this machine");
            continue;
        }
        let address = vars["ansible_host"].as_str().unwrap_or(name);
        assert_eq!(h["address"], address, "{file}: address of {name}");
        assert_eq!(h["user"], vars["ansible_user"], "{file}: user of {name}");
        assert_eq!(h["port"], vars["ansible_port"], "{file}: port of {name}");
    }
    for (group, members) in &ansible.groups {
        let ours: BTreeSet<String> = hosts
            .iter()
            .filter(|h| match group.as_str() {
                "all" => true,
                "ungrouped" => h["groups"].as_array().unwrap().is_empty(),
                g => h["groups"].as_array().unwrap().iter().any(|x| x == g),
            })
            .map(|h| h["host"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&ours, members, "{file}: members of group {group}");
    }
}

#[test]
fn ini_inventory_reads_as_ansible_inventory_lists_it() {
    assert_same_as_ansible(&fixture("fleet.ini"));
}

#[test]
fn yaml_inventory_exported_by_ansible_reads_the_same() {
    assert_same_as_ansible(&fixture("fleet.yml"));
}

#[test]
fn hosts_of_each_group_in_a_script_are_ansibles() {
    let ansible = ansible_view();
    let groups: Vec<&String> = ansible.groups.keys().collect();
    let script = format!(
        "for g in {groups:?} {{ let names = []; for h in hosts(g) {{ names.push(h.name) }} print(`${{g}}=${{names}}`) }}\nprint(hosts(\"web-canary\")[0].vars.role);"
    );
    let out = Test::new()
        .script(&script)
        .args(&["-i", &fixture("fleet.ini")])
        .run()
        .success();
    let mut lines = out.stdout.lines();
    for g in &groups {
        let line = lines.next().unwrap();
        let names = line.strip_prefix(&format!("{g}=")).unwrap();
        let names: BTreeSet<String> = names
            .trim_matches(['[', ']'])
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        assert_eq!(&names, &ansible.groups[*g], "hosts(\"{g}\")");
    }
    assert_eq!(lines.next(), Some("the canary"));
}

#[test]
fn a_plain_ini_file_is_read_as_ini_not_yaml() {
    Test::new()
        .file("hosts", "[web]\nweb1\nweb[2:3]\n")
        .args(&["hosts", "-i", "hosts"])
        .run()
        .success()
        .stdout_has("web1\tweb1\tgroups=web")
        .stdout_has("web3\tweb3\tgroups=web")
        .stderr_lacks("document");
    // A group that happens to be named like a TOML section.
    Test::new()
        .file("hosts", "[hosts]\nweb1\n")
        .args(&["hosts", "-i", "hosts"])
        .run()
        .success()
        .stdout_has("web1\tweb1\tgroups=hosts");
}

#[test]
fn ranges_in_yaml_host_names_expand() {
    Test::new()
        .file(
            "inv.yml",
            "all:\n  children:\n    web:\n      hosts:\n        web[01:02]:\n          ansible_port: 2200\n        db[a:b]:\n",
        )
        .args(&["hosts", "-i", "inv.yml"])
        .run()
        .success()
        .stdout_has("web01\tweb01:2200\tgroups=web")
        .stdout_has("web02\tweb02:2200\tgroups=web")
        .stdout_has("dbb\tdbb\tgroups=web");
}

#[test]
fn ini_errors_name_the_file_the_line_and_what_was_expected() {
    Test::new()
        .file("hosts.ini", "[web]\nweb1\nweb2 ansible_port\n")
        .args(&["hosts", "-i", "hosts.ini"])
        .run()
        .code(2)
        .stderr_has("inventory hosts.ini (read as Ansible INI because its first line `[web]` is an INI section): line 3: expected key=value after the host name `web2`, got `ansible_port`");
    Test::new()
        .file("hosts", "[prod:children]\nweb\n")
        .args(&["hosts", "-i", "hosts"])
        .run()
        .code(2)
        .stderr_has("line 2: [prod:children] names group `web`, which no [web] or [web:children] section declares");
}

#[test]
fn a_typo_in_a_toml_connection_key_is_an_error_with_did_you_mean() {
    Test::new()
        .file(
            "inv.toml",
            "[hosts.web1]\nadress = \"10.0.0.5\"\nrole = \"web\"\n",
        )
        .args(&["hosts", "-i", "inv.toml"])
        .run()
        .code(2)
        .stderr_has("inv.toml")
        .stderr_has("line 2: [hosts.web1]: unknown key `adress`: did you mean `address`?");
    // A variables table keeps any name as a variable.
    Test::new()
        .file(
            "inv.toml",
            "[hosts.web1]\naddress = \"10.0.0.5\"\nvars = { adress = \"a street\" }\n",
        )
        .args(&["hosts", "-i", "inv.toml"])
        .run()
        .success()
        .stdout_has("web1\t10.0.0.5\tgroups=\tadress=a street");
}

#[test]
fn a_limit_that_matches_nothing_is_an_error_naming_it() {
    let inv = "[web]\nweb1\nweb2\n[db]\ndb1\n";
    Test::new()
        .file("hosts", inv)
        .script("print(hosts().len());")
        .args(&["-i", "hosts", "--limit", "wbe1"])
        .run()
        .code(2)
        .stderr_has("--limit `wbe1` matches no host or group; did you mean `web1`?");
    Test::new()
        .file("hosts", inv)
        .args(&["hosts", "-i", "hosts", "--limit", "web,wbe2"])
        .run()
        .code(2)
        .stderr_has("`wbe2` matches no host or group");
    Test::new()
        .file("hosts", inv)
        .args(&["hosts", "-i", "hosts", "--limit", "web:&db"])
        .run()
        .code(2)
        .stderr_has("--limit `web:&db` leaves no host");
    Test::new()
        .file("hosts", inv)
        .args(&["hosts", "-i", "hosts", "--limit", "all:!db1"])
        .run()
        .success()
        .stdout_has("web2");
}

#[test]
fn connection_variables_runner_does_not_apply_are_warned_about_once() {
    Test::new()
        .file(
            "hosts",
            "[web]\nweb1 ansible_password=hunter2\nweb2 ansible_password=hunter2 ansible_ssh_pipelining=True\n",
        )
        .args(&["hosts", "-i", "hosts"])
        .run()
        .success()
        .stderr_has("warning: inventory hosts: ansible_password (on web1, web2) is not applied: runner logs in with SSH keys")
        .stderr_has("ansible_ssh_pipelining (on web2) is not applied");
    Test::new()
        .file("hosts", "[web]\nweb1 ansible_connection=winrm\n")
        .args(&["hosts", "-i", "hosts"])
        .run()
        .code(2)
        .stderr_has("host web1: ansible_connection: runner reaches hosts over ssh or locally (`local`), not with `winrm`");
}

#[test]
fn legacy_ansible_ssh_variables_are_applied_and_win_as_in_ansible() {
    Test::new()
        .file(
            "hosts",
            "[web]\nweb1 ansible_ssh_host=10.0.0.9 ansible_ssh_port=2200 ansible_ssh_user=ops\nweb2 ansible_host=10.0.0.1 ansible_ssh_host=10.0.0.2 ansible_become=yes ansible_become_user=www-data\n",
        )
        .args(&["hosts", "-i", "hosts"])
        .run()
        .success()
        .stdout_has("web1\tops@10.0.0.9:2200\tgroups=web")
        .stdout_has("web2\t10.0.0.2\tgroups=web");
    let hosts = runner_hosts_in(
        "[web]\nweb2 ansible_host=10.0.0.1 ansible_become=yes ansible_become_user=www-data ansible_ssh_common_args='-o ConnectTimeout=3 -p 2022'\n",
    );
    assert_eq!(hosts[0]["become_user"], "www-data");
    assert_eq!(hosts[0]["port"], 2022);
}

/// `runner hosts --output json` of an INI inventory given as text.
fn runner_hosts_in(ini: &str) -> Vec<Value> {
    let out = Test::new()
        .file("hosts", ini)
        .args(&["hosts", "-i", "hosts", "--output", "json"])
        .run()
        .success();
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
