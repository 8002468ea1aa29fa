//! Inventories (`-i FILE`): hosts, groups and their variables, from runner's TOML format or an
//! Ansible inventory as teams already have it (YAML or INI), and the `--limit` pattern that narrows
//! a run.
//!
//! - `load.rs`: which format a file is, `Inventory` and its `Entry`s, each host's connection checked;
//! - `groups.rs`: the shape every format is read into, and what a host inherits from its groups;
//! - `toml_file.rs`, `yaml.rs`, `ini.rs`: the formats; `range.rs`: host ranges (`web[01:20]`) and ports;
//! - `ansible.rs`: Ansible's connection variables, applied or warned about;
//! - `limit.rs`: `--limit` patterns; `shard.rs`: `--shard I/N`, a stable share of the hosts.

mod ansible;
mod groups;
mod ini;
mod limit;
mod load;
mod range;
mod shard;
mod toml_file;
mod yaml;

pub use limit::glob;
pub use load::{Entry, Format, Inventory};
pub use shard::Shard;
