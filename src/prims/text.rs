//! Strings and arrays without surprises: Rhai's `trim`, `replace` and `sort` change the value in
//! place and return `()`, so `let t = s.trim();` is `()`. These return the new value and leave the
//! old one as it was (`runner check` points at the surprising uses and suggests them).

use rhai::plugin::*;
use rhai::{Dynamic, ImmutableString};

#[export_module]
pub mod text_api {
    use rhai::{Array, EvalAltResult, ImmutableString};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// The string without leading and trailing whitespace (`s` is left as it is).
    ///
    /// ```rhai
    /// let name = h.run("hostname").stdout.trimmed();
    /// ```
    #[rhai_fn(pure)]
    pub fn trimmed(s: &mut ImmutableString) -> String {
        s.trim().to_string()
    }

    /// The string with every `from` replaced by `to` (`s` is left as it is).
    ///
    /// ```rhai
    /// let path = "/srv/app/v1".replaced("v1", "v2");
    /// ```
    #[rhai_fn(pure)]
    pub fn replaced(s: &mut ImmutableString, from: &str, to: &str) -> String {
        s.replace(from, to)
    }

    /// The items as text, with `separator` between them.
    ///
    /// ```rhai
    /// print(["web1", "web2"].join(", "));
    /// ```
    #[rhai_fn(pure)]
    pub fn join(items: &mut Array, separator: &str) -> String {
        items
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(separator)
    }

    /// A sorted copy of the array (`a` is left as it is): numbers, strings or booleans, not mixed.
    ///
    /// ```rhai
    /// let names = hosts("web").map(|h| h.name).sorted();
    /// ```
    #[rhai_fn(pure, return_raw)]
    pub fn sorted(items: &mut Array) -> Res<Array> {
        let mut out = items.clone();
        let mut err = None;
        out.sort_by(|a, b| {
            super::compare(a, b).unwrap_or_else(|| {
                err.get_or_insert(format!(
                    "sorted: cannot compare {} with {}",
                    a.type_name(),
                    b.type_name()
                ));
                std::cmp::Ordering::Equal
            })
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }
}

/// The order of two values of one kind.
fn compare(a: &Dynamic, b: &Dynamic) -> Option<std::cmp::Ordering> {
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return Some(x.cmp(&y));
    }
    if let (Ok(x), Ok(y)) = (a.as_float(), b.as_float()) {
        return x.partial_cmp(&y);
    }
    if let (Some(x), Some(y)) = (
        a.read_lock::<ImmutableString>(),
        b.read_lock::<ImmutableString>(),
    ) {
        return Some(x.as_str().cmp(y.as_str()));
    }
    if let (Ok(x), Ok(y)) = (a.as_bool(), b.as_bool()) {
        return Some(x.cmp(&y));
    }
    None
}
