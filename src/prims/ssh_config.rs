//! OpenSSH options beyond runner's own: ssh command-line options as Ansible's
//! `ansible_ssh_common_args` carries them (`-o Key=Value`, `-J`, `-i`, `-p`, `-l`, `-F`), and the
//! ssh_config file of one connection through which every hop, jump hosts included, gets its key,
//! host key checking and options (ssh hands a jump host only the `-F` file, never `-o` or `-i`).

use std::path::{Path, PathBuf};

/// ssh options read from a command line: those runner has a setting for, and the rest.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SshArgs {
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key: Option<String>,
    pub jump: Vec<String>,
    /// "strict", "accept-new" or "off".
    pub known_hosts: Option<&'static str>,
    pub known_hosts_file: Option<String>,
    pub connect_timeout: Option<f64>,
    /// `-F FILE`.
    pub config: Option<String>,
    /// Other ssh_config options, in the order given: (keyword, value).
    pub options: Vec<(String, String)>,
}

/// Keywords runner sets itself for its multiplexed connection; given ones are left out.
const OWN: &[&str] = &[
    "controlmaster",
    "controlpath",
    "controlpersist",
    "batchmode",
];

impl SshArgs {
    /// Read ssh command-line options, such as `-o StrictHostKeyChecking=no -J bastion`.
    pub fn parse(args: &str) -> Result<SshArgs, String> {
        let words = shlex::split(args).ok_or_else(|| format!("unbalanced quotes in `{args}`"))?;
        let mut out = SshArgs::default();
        let mut it = words.iter();
        while let Some(w) = it.next() {
            let Some(flag) = w.strip_prefix('-').filter(|f| !f.is_empty()) else {
                return Err(format!(
                    "`{w}` is not an ssh option (expected options such as -o Key=Value, -J host, -i key)"
                ));
            };
            let (letter, attached) = flag.split_at(1);
            let mut value = || -> Result<String, String> {
                if !attached.is_empty() {
                    return Ok(attached.to_string());
                }
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("`-{letter}` needs a value"))
            };
            match letter {
                "o" => {
                    let v = value()?;
                    let (k, val) = v
                        .split_once(['=', ' '])
                        .map(|(k, v)| (k.trim(), v.trim()))
                        .ok_or_else(|| format!("`-o {v}`: expected -o Key=Value"))?;
                    out.option(k, val)?;
                }
                "J" => out.jump.extend(value()?.split(',').map(str::to_string)),
                "i" => out.key = Some(value()?),
                "p" => out.option("Port", &value()?)?,
                "l" => out.user = Some(value()?),
                "F" => out.config = Some(value()?),
                _ => {
                    for c in flag.chars() {
                        let (k, v) = match c {
                            'C' => ("Compression", "yes"),
                            '4' => ("AddressFamily", "inet"),
                            '6' => ("AddressFamily", "inet6"),
                            'A' => ("ForwardAgent", "yes"),
                            'a' => ("ForwardAgent", "no"),
                            'q' => ("LogLevel", "QUIET"),
                            'x' => ("ForwardX11", "no"),
                            'T' | 'n' => continue,
                            _ => {
                                return Err(format!(
                                    "`{w}`: runner applies the ssh options -o, -J, -i, -p, -l, -F, -C, -4, -6, -A, -a, -q, not -{c}"
                                ))
                            }
                        };
                        out.option(k, v)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// One ssh_config option, into runner's setting for it or the others. As in ssh, the first
    /// value given wins.
    fn option(&mut self, keyword: &str, value: &str) -> Result<(), String> {
        let k = keyword.to_ascii_lowercase();
        let bad = |what: &str| format!("`{keyword}={value}`: {what}");
        match k.as_str() {
            "user" => {
                self.user.get_or_insert_with(|| value.to_string());
            }
            "port" => {
                let p = value.parse().map_err(|_| bad("not a port number"))?;
                self.port.get_or_insert(p);
            }
            "identityfile" => {
                self.key.get_or_insert_with(|| value.to_string());
            }
            "proxyjump" => {
                if self.jump.is_empty() && value != "none" {
                    self.jump = value.split(',').map(str::to_string).collect();
                }
            }
            "stricthostkeychecking" => {
                let check = match value.to_ascii_lowercase().as_str() {
                    "yes" | "ask" => "strict",
                    "accept-new" => "accept-new",
                    "no" | "off" => "off",
                    _ => return Err(bad("expected yes, accept-new or no")),
                };
                self.known_hosts.get_or_insert(check);
            }
            "userknownhostsfile" => {
                let first = value.split_whitespace().next().unwrap_or(value);
                self.known_hosts_file
                    .get_or_insert_with(|| first.to_string());
            }
            "connecttimeout" => {
                let t = value.parse().map_err(|_| bad("not a number of seconds"))?;
                self.connect_timeout.get_or_insert(t);
            }
            k if OWN.contains(&k) => {}
            _ => {
                if !self
                    .options
                    .iter()
                    .any(|(o, _)| o.eq_ignore_ascii_case(keyword))
                {
                    self.options.push((keyword.to_string(), value.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// What every hop of one connection gets.
pub struct Hops<'a> {
    /// The value of StrictHostKeyChecking: "yes", "accept-new" or "no".
    pub strict: &'a str,
    pub known_hosts_file: Option<&'a Path>,
    pub key: Option<&'a Path>,
    pub options: &'a [(String, String)],
    /// The user's ssh_config (`ssh -F`), read before runner's settings; None: ~/.ssh/config.
    pub config: Option<&'a Path>,
}

/// Write the ssh_config of one connection as `dir/name`: the user's configuration first (its
/// settings for a host win), then for every host runner's key, host key checking and options,
/// then the system-wide file (which `ssh -F` would otherwise skip).
pub fn write(dir: &Path, name: &str, hops: &Hops) -> std::io::Result<PathBuf> {
    let quoted = |p: &Path| format!("\"{}\"", p.display());
    let mut text = String::from("# Written by runner for one connection and every hop of it.\n");
    let user_config = match hops.config {
        Some(c) => Some(c.to_path_buf()),
        None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh/config")),
    };
    if let Some(c) = user_config.filter(|c| c.exists()) {
        let c = std::fs::canonicalize(&c).unwrap_or(c);
        text.push_str(&format!("Include {}\n", quoted(&c)));
    }
    text.push_str("Host *\n");
    text.push_str("  BatchMode yes\n");
    text.push_str(&format!("  StrictHostKeyChecking {}\n", hops.strict));
    match (hops.strict, hops.known_hosts_file) {
        ("no", None) => text.push_str("  UserKnownHostsFile /dev/null\n"),
        (_, Some(f)) => text.push_str(&format!(
            "  UserKnownHostsFile {} ~/.ssh/known_hosts\n",
            quoted(f)
        )),
        _ => {}
    }
    if let Some(k) = hops.key {
        text.push_str(&format!("  IdentityFile {}\n", quoted(k)));
    }
    for (k, v) in hops.options {
        text.push_str(&format!("  {k} {v}\n"));
    }
    if Path::new("/etc/ssh/ssh_config").exists() {
        text.push_str("Include /etc/ssh/ssh_config\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_ssh_args_become_settings_and_options() {
        let a = SshArgs::parse(
            "-o StrictHostKeyChecking=no -o 'UserKnownHostsFile /dev/null' -J jump@b:22 -i k -p 2222 -oServerAliveCountMax=3 -C -o ControlMaster=auto",
        )
        .unwrap();
        assert_eq!(a.known_hosts, Some("off"));
        assert_eq!(a.known_hosts_file.as_deref(), Some("/dev/null"));
        assert_eq!(a.jump, ["jump@b:22"]);
        assert_eq!(a.key.as_deref(), Some("k"));
        assert_eq!(a.port, Some(2222));
        assert_eq!(
            a.options,
            [
                ("ServerAliveCountMax".to_string(), "3".to_string()),
                ("Compression".to_string(), "yes".to_string())
            ]
        );
        assert!(SshArgs::parse("-X").unwrap_err().contains("not -X"));
        assert!(SshArgs::parse("bastion")
            .unwrap_err()
            .contains("not an ssh option"));
        assert!(SshArgs::parse("-o Port=x")
            .unwrap_err()
            .contains("not a port"));
    }
}
