//! Host names as Ansible inventories write them: ranges (`web[01:20]`, `db[a:c]`, `node[0:10:2]`,
//! several in one name) and an optional `:port`.

/// Every host name a pattern stands for, in order: `web[01:03]` is web01, web02, web03. A range is
/// `[begin:end]` or `[begin:end:step]`; a begin with a leading zero pads every number to its width
/// (and then the end must be as wide); single letters make a letter range.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range in `{pattern}` has no closing `]`"))?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "host range `[{range}]` in `{pattern}` must be [begin:end] or [begin:end:step]"
        ));
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!(
            "host range `[{range}]` in `{pattern}` has no end value"
        ));
    }
    let step: usize = match bounds.get(2) {
        Some(s) => s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            format!("host range step `{s}` in `{pattern}` is not a positive number")
        })?,
        None => 1,
    };
    let items: Vec<String> = if is_letter(begin) && is_letter(end) {
        let letters = ('a'..='z').chain('A'..='Z').collect::<Vec<char>>();
        let b = letters.iter().position(|c| begin.starts_with(*c)).unwrap();
        let e = letters.iter().position(|c| end.starts_with(*c)).unwrap();
        if b > e {
            return Err(format!(
                "host range `[{range}]` in `{pattern}` must have begin <= end"
            ));
        }
        letters[b..=e]
            .iter()
            .step_by(step)
            .map(|c| c.to_string())
            .collect()
    } else {
        let number = |s: &str| {
            s.parse::<u64>().map_err(|_| {
                format!(
                    "host range `[{range}]` in `{pattern}`: `{s}` is neither a number nor a letter"
                )
            })
        };
        let (b, e) = (number(begin)?, number(end)?);
        let width = if begin.len() > 1 && begin.starts_with('0') {
            if begin.len() != end.len() {
                return Err(format!(
                    "host range `[{range}]` in `{pattern}`: a zero-padded begin and its end must have the same width"
                ));
            }
            begin.len()
        } else {
            0
        };
        (b..=e)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    };
    let mut out = Vec::new();
    for item in items {
        out.extend(expand(&format!("{head}{item}{tail}"))?);
    }
    Ok(out)
}

fn is_letter(s: &str) -> bool {
    s.len() == 1 && s.chars().all(|c| c.is_ascii_alphabetic())
}

/// A host pattern and its port: `web1:2222`, `[2001:db8::1]:22`, `web[1:3]:22`; a bare IPv6
/// address has no port.
pub fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{pattern}`: the port `{p}` is not a port number"))
    };
    if let Some(rest) = pattern.strip_prefix('[') {
        // `[v6]:port` (a range cannot start a name).
        if let Some((addr, p)) = rest.split_once("]:") {
            if addr.contains(':') {
                return Ok((&pattern[1..1 + addr.len()], Some(port(p)?)));
            }
        }
    }
    // Colons outside ranges: one separates the port; more make an IPv6 address.
    let mut depth = 0;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    match colons[..] {
        [i] => {
            let p = &pattern[i + 1..];
            if p.is_empty() {
                return Err(format!(
                    "`{pattern}` ends in `:`; give a port after it, or none"
                ));
            }
            Ok((&pattern[..i], Some(port(p)?)))
        }
        _ => Ok((pattern, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_as_ansible_does() {
        assert_eq!(expand("web[01:03]").unwrap(), ["web01", "web02", "web03"]);
        assert_eq!(expand("db[a:c].x").unwrap(), ["dba.x", "dbb.x", "dbc.x"]);
        assert_eq!(expand("n[0:6:3]").unwrap(), ["n0", "n3", "n6"]);
        assert_eq!(
            expand("r[1:2]c[a:b]").unwrap(),
            ["r1ca", "r1cb", "r2ca", "r2cb"]
        );
        assert_eq!(expand("[:2]x").unwrap(), ["0x", "1x", "2x"]);
        assert!(expand("web[01:100]").unwrap_err().contains("same width"));
        assert!(expand("web[1]").unwrap_err().contains("[begin:end]"));
        assert!(expand("web[c:a]").unwrap_err().contains("begin <= end"));
    }

    #[test]
    fn ports_split_off_outside_ranges_and_ipv6() {
        assert_eq!(split_port("web1:2222").unwrap(), ("web1", Some(2222)));
        assert_eq!(split_port("web[1:3]").unwrap(), ("web[1:3]", None));
        assert_eq!(split_port("web[1:3]:22").unwrap(), ("web[1:3]", Some(22)));
        assert_eq!(split_port("fe80::1").unwrap(), ("fe80::1", None));
        assert_eq!(
            split_port("[2001:db8::1]:22").unwrap(),
            ("2001:db8::1", Some(22))
        );
        assert!(split_port("web1:").is_err());
    }
}
