//! Templates in Jinja syntax, as Ansible's `template` module renders them (the `minijinja` crate):
//! `{{ x }}`, `{% for %}`, `{% if %}`, filters. Strict: a variable the template uses and the vars
//! do not define is an error naming it and the template's line, never an empty string in a config
//! file. Blocks trim their newline and a final newline is kept, as with Ansible.

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use rhai::Map;

use crate::error::{Failure, Kind};

/// Render the template `text` (called `name` in messages) with `vars`.
pub fn render(name: &str, text: &str, vars: &Map) -> Result<String, Failure> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters");
    env.set_syntax(syntax);
    env.add_filter("to_json", to_json);
    env.add_filter("to_nice_json", to_nice_json);
    env.add_filter("to_yaml", to_yaml);
    let fail = |msg: String| Failure::new(Kind::Template, name, format!("template {name}: {msg}"));
    let tmpl = env
        .template_from_named_str(name, text)
        .map_err(|e| fail(describe(&e, text, None)))?;
    let ctx = Value::from(minijinja::value::Serde(rhai::Dynamic::from_map(
        vars.clone(),
    )));
    tmpl.render(&ctx).map_err(|e| {
        let missing = (e.kind() == ErrorKind::UndefinedError)
            .then(|| undefined(&tmpl, vars))
            .flatten();
        fail(describe(&e, text, missing))
    })
}

/// The variables the template reads that `vars` does not define (or the first attribute path
/// missing, such as `user.nmae`).
fn undefined(tmpl: &minijinja::Template, vars: &Map) -> Option<String> {
    let mut top: Vec<String> = tmpl
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !vars.contains_key(v.as_str()) && !GLOBALS.contains(&v.as_str()))
        .collect();
    top.sort();
    if !top.is_empty() {
        return Some(top.join("`, `"));
    }
    let mut paths: Vec<String> = tmpl
        .undeclared_variables(true)
        .into_iter()
        .filter(|p| !defined(vars, p))
        .collect();
    paths.sort();
    paths.into_iter().next()
}

/// Names the template engine itself defines.
const GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "varargs",
    "kwargs",
    "caller",
];

/// Whether the dotted path `a.b.c` leads somewhere in `vars`.
fn defined(vars: &Map, path: &str) -> bool {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return true;
    };
    let Some(mut v) = vars.get(first).cloned() else {
        return GLOBALS.contains(&first);
    };
    for p in parts {
        let next = v.read_lock::<Map>().and_then(|m| m.get(p).cloned());
        match next {
            Some(n) => v = n,
            // Not a map: an attribute of a string or an array is the engine's to judge.
            None if !v.is_map() => return true,
            None => return false,
        }
    }
    true
}

/// An error as a sentence: what, at which line (quoted), and the undefined variable named.
fn describe(e: &minijinja::Error, text: &str, missing: Option<String>) -> String {
    let what = match (&missing, e.kind()) {
        (Some(m), _) => format!("undefined variable `{m}`"),
        (None, ErrorKind::UndefinedError) => "an undefined value is used".to_string(),
        _ => e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_string),
    };
    match e.line() {
        Some(n) => {
            let src = text.lines().nth(n - 1).unwrap_or("").trim();
            format!("line {n}: {what}: {src}")
        }
        None => what,
    }
}

fn to_json(v: Value) -> Result<String, minijinja::Error> {
    serde_json::to_string(&v)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn to_nice_json(v: Value) -> Result<String, minijinja::Error> {
    serde_json::to_string_pretty(&v)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
}

fn to_yaml(v: Value) -> Result<String, minijinja::Error> {
    serde_norway::to_string(&v)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
}
