//! `--limit PATTERN`, as Ansible reads it: host or group names and globs (`web*`), separated by `,`
//! or `:`; `!x` takes hosts out, `&x` keeps only the hosts also in x. A term that matches nothing is
//! an error naming it (a typo must not quietly narrow a run), and so is a pattern that leaves no
//! host at all.

/// The hosts of an inventory a pattern is matched against: names in order, and groups.
pub struct Universe<'a> {
    pub hosts: Vec<&'a str>,
    pub groups: Vec<(&'a str, &'a [String])>,
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

impl<'a> Universe<'a> {
    /// The hosts `term` names: a host, a group (its members), or a glob of either.
    fn matching(&self, term: &str) -> Vec<&'a str> {
        if term == "all" || term == "*" {
            return self.hosts.clone();
        }
        self.hosts
            .iter()
            .copied()
            .filter(|h| {
                glob(term, h)
                    || self
                        .groups
                        .iter()
                        .any(|(g, members)| glob(term, g) && members.iter().any(|m| m == h))
            })
            .collect()
    }

    /// The hosts `limit` selects, in inventory order.
    pub fn select(&self, limit: &str) -> Result<Vec<&'a str>, String> {
        let terms: Vec<&str> = limit
            .split([',', ':'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        if terms.is_empty() {
            return Err(format!("--limit `{limit}` has no host or group in it"));
        }
        let mut positive: Option<Vec<&'a str>> = None;
        let mut within: Vec<Vec<&'a str>> = Vec::new();
        let mut without: Vec<&'a str> = Vec::new();
        for t in &terms {
            let (kind, name) = match t.chars().next() {
                Some('!') => ('!', &t[1..]),
                Some('&') => ('&', &t[1..]),
                _ => ('+', *t),
            };
            if name.starts_with('~') {
                return Err(format!(
                    "--limit `{limit}`: `{name}` is a regular expression, which runner does not take; use globs such as web*"
                ));
            }
            let found = self.matching(name);
            if found.is_empty() && kind != '!' {
                return Err(self.nothing(limit, name));
            }
            match kind {
                '!' => without.extend(found),
                '&' => within.push(found),
                _ => positive.get_or_insert_with(Vec::new).extend(found),
            }
        }
        let selected: Vec<&'a str> = self
            .hosts
            .iter()
            .copied()
            .filter(|h| positive.as_ref().is_none_or(|p| p.contains(h)))
            .filter(|h| within.iter().all(|w| w.contains(h)))
            .filter(|h| !without.contains(h))
            .collect();
        if selected.is_empty() {
            return Err(format!("--limit `{limit}` leaves no host"));
        }
        Ok(selected)
    }

    /// A term that matches nothing: the error, with the closest name.
    fn nothing(&self, limit: &str, term: &str) -> String {
        let names: Vec<&str> = self
            .hosts
            .iter()
            .copied()
            .chain(self.groups.iter().map(|(g, _)| *g))
            .collect();
        let hint = crate::opts::did_you_mean(term, &names)
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        if limit == term {
            format!("--limit `{limit}` matches no host or group{hint}")
        } else {
            format!("--limit `{limit}`: `{term}` matches no host or group{hint}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_union_intersect_exclude_and_refuse_what_matches_nothing() {
        let web = vec!["web1".to_string(), "web2".to_string()];
        let prod = vec!["web2".to_string(), "db1".to_string()];
        let u = Universe {
            hosts: vec!["web1", "web2", "db1"],
            groups: vec![("web", &web), ("prod", &prod)],
        };
        assert_eq!(u.select("web*,!web1").unwrap(), ["web2"]);
        assert_eq!(u.select("web:&prod").unwrap(), ["web2"]);
        assert_eq!(u.select("!web").unwrap(), ["db1"]);
        assert_eq!(u.select("db1:web1").unwrap(), ["web1", "db1"]);
        let e = u.select("web1,wbe2").unwrap_err();
        assert!(
            e.contains("`wbe2` matches no host or group; did you mean `web2`?"),
            "{e}"
        );
        assert!(u.select("web,!web").unwrap_err().contains("leaves no host"));
        assert!(u
            .select("nope")
            .unwrap_err()
            .contains("--limit `nope` matches no host"));
    }
}
