//! Ansible's INI inventory format, read as Ansible reads it: `[group]` sections of host lines
//! (`host key=value ...`, values quoted as in a shell), `[group:vars]` of `key=value` lines,
//! `[group:children]` of group names, hosts before any section in `ungrouped`, `#` and `;`
//! comments, host ranges and `host:port`. Values are typed as Python literals (`5`, `True`,
//! `'text'`, `[1, 2]`), anything else is the text as written. A `[g:vars]` or `[g:children]` may
//! come before `[g]` declares the group, but a group never declared is an error.

use serde_json::Value;

use super::groups::{Precedence, Tree, Vars};
use super::range::{expand, split_port};

/// What a section holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hosts,
    Vars,
    Children,
}

/// Read an INI inventory; an error says the line and what was expected there.
pub fn parse(text: &str) -> Result<Tree, String> {
    let mut tree = Tree::new(Precedence::Ansible);
    tree.group("ungrouped");
    let mut group = "ungrouped".to_string();
    let mut kind = Kind::Hosts;
    // Groups named by `[g:vars]` or as children before anything declared them: (group, line, why).
    let mut pending: Vec<(String, usize, String)> = Vec::new();
    let mut declared: Vec<String> = vec!["all".into(), "ungrouped".into()];
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let at = |msg: String| format!("line {n}: {msg}");
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            if let Some((name, tag)) = section(line) {
                kind = match tag {
                    None | Some("hosts") => Kind::Hosts,
                    Some("vars") => Kind::Vars,
                    Some("children") => Kind::Children,
                    Some(other) => {
                        return Err(at(format!(
                            "section [{name}:{other}] has an unknown type `{other}`; expected [{name}], [{name}:vars] or [{name}:children]"
                        )))
                    }
                };
                group = name.to_string();
                tree.group(&group);
                if kind == Kind::Vars {
                    if !declared.contains(&group) {
                        pending.push((group.clone(), n, format!("[{group}:vars]")));
                    }
                } else if !declared.contains(&group) {
                    declared.push(group.clone());
                }
                continue;
            }
            if line.ends_with(']') {
                return Err(at(format!(
                    "invalid section `{line}`: expected [group], [group:vars] or [group:children], with no spaces"
                )));
            }
        }
        match kind {
            Kind::Hosts => {
                let tokens = shlex::split(line)
                    .ok_or_else(|| at(format!("unbalanced quotes in `{line}`")))?;
                let Some((pattern, settings)) = tokens.split_first() else {
                    continue;
                };
                if pattern == "---" {
                    return Err(at(
                        "`---` starts a YAML document: name the file .yml for an Ansible YAML inventory".into(),
                    ));
                }
                let (pattern, port) = split_port(pattern).map_err(at)?;
                let names = expand(pattern).map_err(at)?;
                let mut vars = Vars::new();
                for t in settings {
                    let (k, v) = t.split_once('=').ok_or_else(|| {
                        at(format!(
                            "expected key=value after the host name `{pattern}`, got `{t}`"
                        ))
                    })?;
                    vars.insert(k.to_string(), literal(v));
                }
                if let Some(p) = port {
                    vars.insert("ansible_port".into(), p.into());
                }
                for name in names {
                    tree.add_host(&group, &name, vars.clone());
                }
            }
            Kind::Vars => {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    at(format!(
                        "expected key=value in [{group}:vars], got `{line}`"
                    ))
                })?;
                let k = k.trim();
                if k.is_empty() {
                    return Err(at(format!("no variable name before `=` in `{line}`")));
                }
                tree.group(&group).vars.insert(k.into(), literal(v.trim()));
            }
            Kind::Children => {
                let child = group_name(line).ok_or_else(|| {
                    at(format!(
                        "expected a group name in [{group}:children], got `{line}`"
                    ))
                })?;
                if !declared.iter().any(|d| d == child) {
                    pending.push((child.to_string(), n, format!("[{group}:children]")));
                }
                tree.add_child(&group, child);
            }
        }
    }
    if let Some((g, n, section)) = pending.iter().find(|(g, ..)| !declared.contains(g)) {
        let what = if section.ends_with(":vars]") {
            format!(
                "{section} is for group `{g}`, which no [{g}] or [{g}:children] section declares"
            )
        } else {
            format!(
                "{section} names group `{g}`, which no [{g}] or [{g}:children] section declares"
            )
        };
        return Err(format!("line {n}: {what}"));
    }
    tree.settle_ungrouped();
    Ok(tree)
}

/// `[name]` or `[name:tag]`, optionally followed by a `#` comment.
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let close = line.find(']')?;
    let after = line[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let inner = &line[1..close];
    let (name, tag) = match inner.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (inner, None),
    };
    let name_ok = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == ':');
    let tag_ok =
        tag.is_none_or(|t| !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && tag_ok).then_some((name, tag))
}

/// A group name alone on its line (a `#` comment may follow).
fn group_name(line: &str) -> Option<&str> {
    let name = line.split('#').next()?.trim();
    (!name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == ':' || c == ']'))
    .then_some(name)
}

/// A value as Ansible types it: a Python literal (numbers, `True`/`False`/`None`, quoted strings,
/// lists, tuples, dicts), or else the text itself. As with Python, a `#` comment may follow a literal.
pub fn literal(text: &str) -> Value {
    let mut p = Literal {
        s: text.as_bytes(),
        i: 0,
    };
    match p.value() {
        Some(v) => {
            p.space();
            if p.i == p.s.len() || p.s[p.i] == b'#' {
                v
            } else {
                Value::String(text.to_string())
            }
        }
        None => Value::String(text.to_string()),
    }
}

/// A small reader of Python literals.
struct Literal<'a> {
    s: &'a [u8],
    i: usize,
}

impl Literal<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn space(&mut self) {
        while self.peek().is_some_and(|c| c == b' ' || c == b'\t') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.space();
        match self.peek()? {
            b'\'' | b'"' => {
                // Adjacent strings are one, as in Python.
                let mut s = self.string()?;
                loop {
                    let save = self.i;
                    self.space();
                    match self.peek() {
                        Some(b'\'' | b'"') => s.push_str(&self.string()?),
                        _ => {
                            self.i = save;
                            break;
                        }
                    }
                }
                Some(Value::String(s))
            }
            b'[' => self.sequence(b']').map(Value::Array),
            b'(' => self.sequence(b')').map(Value::Array),
            b'{' => self.dict(),
            _ => self.atom(),
        }
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.i += 1;
            match c {
                c if c == quote => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'0' => out.push(0),
                        b'\\' | b'\'' | b'"' => out.push(e),
                        b'\n' => {}
                        other => out.extend([b'\\', other]),
                    }
                }
                b'\n' => return None,
                c => out.push(c),
            }
        }
        String::from_utf8(out).ok()
    }

    fn sequence(&mut self, close: u8) -> Option<Vec<Value>> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.space();
            if self.peek()? == close {
                self.i += 1;
                return Some(items);
            }
            items.push(self.value()?);
            self.space();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {}
                _ => return None,
            }
        }
    }

    fn dict(&mut self) -> Option<Value> {
        self.i += 1;
        let mut map = serde_json::Map::new();
        loop {
            self.space();
            if self.peek()? == b'}' {
                self.i += 1;
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            let v = self.value()?;
            map.insert(key, v);
            self.space();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {}
                _ => return None,
            }
        }
    }

    /// A number, `True`, `False` or `None`.
    fn atom(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-._".contains(&c))
        {
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        match word {
            "True" => return Some(true.into()),
            "False" => return Some(false.into()),
            "None" => return Some(Value::Null),
            _ => {}
        }
        let (sign, digits) = match word.strip_prefix('-') {
            Some(d) => (-1, d),
            None => (1, word.strip_prefix('+').unwrap_or(word)),
        };
        if digits.starts_with(['-', '+']) || digits.contains("__") || digits.ends_with('_') {
            return None;
        }
        let clean = digits.replace('_', "");
        let radix = |p: &str, r| {
            clean
                .strip_prefix(p)
                .and_then(|d| i64::from_str_radix(d, r).ok())
        };
        if let Some(n) = radix("0x", 16)
            .or_else(|| radix("0o", 8))
            .or_else(|| radix("0b", 2))
        {
            return Some((sign * n).into());
        }
        if clean.bytes().all(|c| c.is_ascii_digit()) && !clean.is_empty() {
            // Python refuses leading zeros in a decimal int (`007`), except for zero itself.
            if clean.len() > 1 && clean.starts_with('0') && clean.bytes().any(|c| c != b'0') {
                return None;
            }
            return clean.parse::<i64>().ok().map(|n| (sign * n).into());
        }
        let is_float = clean.bytes().any(|c| c.is_ascii_digit())
            && clean
                .bytes()
                .all(|c| c.is_ascii_digit() || b".eE+-".contains(&c));
        if is_float {
            let f: f64 = clean.parse().ok()?;
            return serde_json::Number::from_f64(sign as f64 * f).map(Value::Number);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_typed_as_python_literals() {
        assert_eq!(literal("5"), json!(5));
        assert_eq!(literal("-5"), json!(-5));
        assert_eq!(literal("0.5"), json!(0.5));
        assert_eq!(literal("True"), json!(true));
        assert_eq!(literal("None"), json!(null));
        assert_eq!(literal("'03#pw'"), json!("03#pw"));
        assert_eq!(literal("23 # a comment"), json!(23));
        assert_eq!(literal("[1, 'a']"), json!([1, "a"]));
        assert_eq!(literal("{'a': 1}"), json!({"a": 1}));
        assert_eq!(literal("hello world # kept"), json!("hello world # kept"));
        assert_eq!(literal("yes"), json!("yes"));
        assert_eq!(literal("007"), json!("007"));
        assert_eq!(literal("10.0.0.1"), json!("10.0.0.1"));
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        assert!(parse("[web]\nweb1 port\n")
            .unwrap_err()
            .starts_with("line 2: expected key=value"));
        assert!(parse("[web:vars]\nx=1\n")
            .unwrap_err()
            .contains("line 1: [web:vars] is for group `web`"));
        assert!(parse("[a:children]\nb\n")
            .unwrap_err()
            .contains("line 2: [a:children] names group `b`"));
        assert!(parse("[web:bogus]\n").unwrap_err().contains("unknown type"));
        assert!(parse("[web group]\n")
            .unwrap_err()
            .contains("invalid section"));
    }
}
