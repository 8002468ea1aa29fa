//! The secrets of a run: values read with `secret(...)` and the inventory's secret variables
//! (`ansible_password`, `db_password`, ...), masked as `***` wherever runner writes them: terminal
//! lines, JSON events, `print`, rendered errors and the journal. Scripts still get the real value
//! (a command needs its password); only what runner shows and records is masked.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with.
pub const MASK: &str = "***";

#[derive(Default)]
pub struct Secrets {
    /// Longest first, so that a secret containing another is masked whole.
    values: RwLock<Vec<String>>,
}

impl Secrets {
    /// Secrets masked from the start: the inventory's (`Inventory::secret_values`).
    pub fn of(values: impl IntoIterator<Item = String>) -> Secrets {
        let secrets = Secrets::default();
        for v in values {
            secrets.add(&v);
        }
        secrets
    }

    /// Mask `value` from now on.
    pub fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut v = self.values.write().unwrap();
        if !v.iter().any(|s| s == value) {
            v.push(value.to_string());
            v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every secret replaced by `***`, as it is and as JSON escapes it (a journal line).
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.values.read().unwrap();
        let mut out = Cow::Borrowed(text);
        for v in values.iter() {
            for form in [Cow::Borrowed(v.as_str()), json_escaped(v)] {
                if out.contains(form.as_ref()) {
                    out = Cow::Owned(out.replace(form.as_ref(), MASK));
                }
            }
        }
        out
    }
}

/// `s` as it appears inside a JSON string (without the quotes).
fn json_escaped(s: &str) -> Cow<'_, str> {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    let inner = &quoted[1..quoted.len().saturating_sub(1).max(1)];
    if inner == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(inner.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_as_it_is_and_inside_json() {
        let s = Secrets::default();
        s.add("pa\"ss");
        s.add("hunter2");
        assert_eq!(s.mask("curl -u admin:hunter2 x"), "curl -u admin:*** x");
        let line = serde_json::json!({"command": "echo pa\"ss"}).to_string();
        assert_eq!(s.mask(&line), r#"{"command":"echo ***"}"#);
        assert_eq!(s.mask("nothing here"), "nothing here");
    }
}
