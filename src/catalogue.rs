//! The catalogue of every function a script can call, read from rhai's own metadata: runner's
//! primitives (with the `///` comments of their `#[export_module]`s), the standard library's script
//! functions, and Rhai's built-in functions. `runner doc` prints runner's part; `runner check` checks
//! calls against all of it.

use serde::Deserialize;

use crate::resolver::STDLIB;

/// Where a function comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A primitive of runner's, from the domain module of that name (`haproxy`, `host`, ...).
    Primitive(&'static str),
    /// A public function of the embedded standard library module of that name, called as
    /// `alias::name(...)` after `import "name" as alias`.
    Stdlib(&'static str),
    /// A function of Rhai's own packages (`len`, `split`, `contains`, ...).
    Builtin,
}

/// One function.
#[derive(Debug, Clone)]
pub struct Function {
    pub origin: Origin,
    pub name: String,
    /// Every parameter, the receiver of a method first: (name, type as scripts know it).
    pub params: Vec<(String, String)>,
    /// The type it returns, as scripts know it (`()` for none).
    pub returns: String,
    /// Its doc comment, without the comment markers.
    pub doc: String,
    /// A property getter (`h.name`) rather than a function.
    pub getter: bool,
    /// Its options map: which parameter it is, and the keys it takes (see `OPTION_KEYS`).
    pub options: Option<(usize, &'static [&'static str])>,
}

/// The option keys of every primitive that takes an options map, by module and function name:
/// the very consts `Opts::new` checks the keys against at run time, so `runner check` and a run
/// cannot disagree. A test checks that every primitive with an `options` or `spec` map is listed.
pub const OPTION_KEYS: &[(&str, &str, &[&str])] = {
    use crate::prims::{docker, flow, haproxy, host, http, lock, ssh, watch};
    &[
        ("docker", "docker", docker::DOCKER_KEYS),
        ("docker", "run", docker::RUN_KEYS),
        ("docker", "run_command", docker::RUN_KEYS),
        ("docker", "exec", docker::EXEC_KEYS),
        ("docker", "ps", docker::PS_KEYS),
        ("docker", "stop", docker::GRACE_KEYS),
        ("docker", "restart", docker::GRACE_KEYS),
        ("docker", "logs", docker::LOGS_KEYS),
        ("docker", "wait_healthy", docker::HEALTHY_KEYS),
        ("flow", "wait_until", flow::WAIT_UNTIL_KEYS),
        ("flow", "secret", flow::SECRET_KEYS),
        ("flow", "confirm", flow::CONFIRM_KEYS),
        ("haproxy", "haproxy", haproxy::HAPROXY_KEYS),
        ("haproxy", "add_server", haproxy::ADD_SERVER_KEYS),
        ("haproxy", "del_server", haproxy::DEL_SERVER_KEYS),
        ("host", "ssh", ssh::OPTIONS),
        ("host", "run", host::RUN_KEYS),
        ("host", "write_file", host::WRITE_KEYS),
        ("host", "template", host::WRITE_KEYS),
        ("host", "upload", host::WRITE_KEYS),
        ("http", "http_get", http::GET_KEYS),
        ("http", "wait_http", http::WAIT_HTTP_KEYS),
        ("lock", "lock", lock::LOCK_KEYS),
        ("watch", "watch", watch::WATCH_KEYS),
    ]
};

/// The parameter names of an options map.
const OPTION_PARAMS: &[&str] = &["options", "spec"];

/// What rhai's metadata says of one function (`Engine::gen_fn_metadata_to_json`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: String,
    #[serde(default)]
    access: String,
    #[serde(default)]
    is_anonymous: bool,
    num_params: usize,
    #[serde(default)]
    params: Vec<MetaParam>,
    #[serde(default)]
    return_type: String,
    #[serde(default)]
    doc_comments: Vec<String>,
}

#[derive(Deserialize)]
struct MetaParam {
    name: Option<String>,
    #[serde(rename = "type")]
    ty: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    functions: Vec<Meta>,
}

/// The variable name a handle type goes by in the docs, as in API.md.
pub const HANDLES: &[(&str, &str)] = &[("Host", "h"), ("Haproxy", "lb"), ("Docker", "d")];

impl Function {
    fn from_meta(origin: Origin, m: Meta) -> Function {
        let mut params: Vec<(String, String)> = m
            .params
            .into_iter()
            .map(|p| {
                (
                    p.name.unwrap_or_else(|| "_".into()),
                    script_types(p.ty.as_deref().unwrap_or("?")),
                )
            })
            .collect();
        // Script functions and some built-ins carry no parameter list, only a count.
        while params.len() < m.num_params {
            params.push((format!("arg{}", params.len() + 1), "?".into()));
        }
        let (getter, name) = match m.name.strip_prefix("get$") {
            Some(prop) => (true, prop.to_string()),
            None => (false, m.name),
        };
        Function {
            origin,
            name,
            params,
            returns: script_types(if m.return_type.is_empty() {
                "()"
            } else {
                &m.return_type
            }),
            doc: doc_text(&m.doc_comments),
            getter,
            options: None,
        }
    }

    /// Its options map, found in `OPTION_KEYS` for a primitive of `module`.
    fn with_options(mut self, module: &str) -> Function {
        let index = self
            .params
            .iter()
            .position(|(n, t)| OPTION_PARAMS.contains(&n.as_str()) && t == "map");
        let keys = OPTION_KEYS
            .iter()
            .find(|(m, f, _)| *m == module && *f == self.name)
            .map(|(_, _, k)| *k);
        if let (Some(i), Some(k)) = (index, keys) {
            self.options = Some((i, k));
        }
        self
    }

    /// How many arguments a call passes, the receiver of a method call included.
    pub fn arity(&self) -> usize {
        self.params.len()
    }

    /// The handle type this is a method of (its first parameter is a handle), if any.
    pub fn receiver(&self) -> Option<&'static str> {
        let first = self.params.first()?.1.as_str();
        HANDLES.iter().find(|(t, _)| *t == first).map(|(t, _)| *t)
    }

    /// The signature as scripts call it: `lb.weight(server: string) -> int`, `h.name -> string`,
    /// `rolling::upgrade(lb, backend, servers, opts, redeploy)`, `sleep(seconds: float)`.
    pub fn signature(&self) -> String {
        let ret = match (&self.origin, self.returns.as_str()) {
            // Script functions declare no types.
            (Origin::Stdlib(_), _) | (_, "()") => String::new(),
            (_, r) => format!(" -> {r}"),
        };
        let list = |ps: &[(String, String)]| -> String {
            ps.iter()
                .map(|(n, t)| match (&self.origin, t.as_str()) {
                    (Origin::Stdlib(_), "?") => n.clone(),
                    _ => format!("{n}: {t}"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let var = self
            .receiver()
            .and_then(|t| HANDLES.iter().find(|(h, _)| *h == t))
            .map(|(_, v)| *v);
        match (&self.origin, var) {
            (Origin::Stdlib(m), _) => format!("{m}::{}({})", self.name, list(&self.params)),
            (_, Some(v)) if self.getter => format!("{v}.{}{ret}", self.name),
            (_, Some(v)) => format!("{v}.{}({}){ret}", self.name, list(&self.params[1..])),
            _ => format!("{}({}){ret}", self.name, list(&self.params)),
        }
    }
}

/// Every function a script can call: runner's primitives, the standard library, Rhai's built-ins.
pub fn functions() -> Vec<Function> {
    let mut out = primitives();
    out.extend(stdlib_functions());
    out.extend(builtins());
    out
}

/// runner's primitives, with their doc comments and option keys.
pub fn primitives() -> Vec<Function> {
    let mut out = Vec::new();
    for (name, module) in crate::prims::modules() {
        let mut engine = rhai::Engine::new_raw();
        crate::prims::register_types(&mut engine);
        engine.register_global_module(module.into());
        out.extend(
            metadata(&engine, None)
                .into_iter()
                // to_string and friends have no doc comment: they are not part of the API.
                .filter(|m| !m.doc_comments.is_empty())
                .map(|m| Function::from_meta(Origin::Primitive(name), m).with_options(name)),
        );
    }
    out
}

/// Rhai's own functions (`len`, `split`, `contains`, ...): names, parameters and return types,
/// read straight from the engine (not through JSON: `runner play` checks every script first, and
/// the doc comments of Rhai's packages are half a megabyte of it).
pub fn builtins() -> Vec<Function> {
    let mut engine = rhai::Engine::new();
    crate::prims::register_types(&mut engine);
    engine.collect_fn_metadata(
        None,
        |info| {
            let m = info.metadata;
            if m.name.starts_with("get$") || m.name.starts_with("set$") {
                return None;
            }
            let params = m
                .params_info
                .iter()
                .map(|p| {
                    let (n, t) = p.split_once(':').unwrap_or((p.as_str(), "?"));
                    MetaParam {
                        name: Some(n.trim().to_string()),
                        ty: Some(t.trim().to_string()),
                    }
                })
                .collect();
            let meta = Meta {
                name: m.name.to_string(),
                access: String::new(),
                is_anonymous: false,
                num_params: m.num_params,
                params,
                return_type: m.return_type.to_string(),
                doc_comments: Vec::new(),
            };
            Some(Function::from_meta(Origin::Builtin, meta))
        },
        true,
    )
}

/// The public functions of the embedded standard library.
pub fn stdlib_functions() -> Vec<Function> {
    let mut engine = rhai::Engine::new_raw();
    engine.set_max_expr_depths(256, 256);
    let mut out = Vec::new();
    for (name, text) in STDLIB {
        // The embedded modules compile: a test runs `runner check` on each.
        let Ok(ast) = engine.compile(text) else {
            continue;
        };
        out.extend(
            metadata(&engine, Some(&ast))
                .into_iter()
                .filter(|m| {
                    m.access != "private" && !m.is_anonymous && !m.name.starts_with("anon$")
                })
                .map(|m| Function::from_meta(Origin::Stdlib(name), m)),
        );
    }
    out
}

fn metadata(engine: &rhai::Engine, ast: Option<&rhai::AST>) -> Vec<Meta> {
    let json = match ast {
        Some(ast) => engine.gen_fn_metadata_with_ast_to_json(ast, false),
        None => engine.gen_fn_metadata_to_json(true),
    };
    json.ok()
        .and_then(|j| serde_json::from_str::<Metadata>(&j).ok())
        .map(|m| m.functions)
        .unwrap_or_default()
}

/// Strip `///` and `/** */` markers from doc comments.
fn doc_text(comments: &[String]) -> String {
    comments
        .iter()
        .flat_map(|c| c.lines().map(str::to_string).collect::<Vec<_>>())
        .map(|l| {
            let t = l.trim_start();
            t.strip_prefix("/// ")
                .or_else(|| t.strip_prefix("///"))
                .unwrap_or(t)
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rust type names as a script writer knows them: `Result<bool, ...>` is `bool`, `&str` is
/// `string`, `i64` is `int`, `Dynamic` is `?`.
fn script_types(ty: &str) -> String {
    let mut s = ty.trim().to_string();
    for wrapper in ["Res<", "RhaiResultOf<"] {
        while let Some(i) = s.find(wrapper) {
            // Res<T> -> T, with nested generics balanced.
            let start = i + wrapper.len();
            let mut depth = 0;
            let mut end = s.len() - 1;
            for (j, c) in s[start..].char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' if depth == 0 => {
                        end = start + j;
                        break;
                    }
                    '>' => depth -= 1,
                    _ => {}
                }
            }
            s = format!("{}{}{}", &s[..i], &s[start..end], &s[end + 1..]);
        }
    }
    for (rust, script) in [
        ("&mut ", ""),
        ("&str", "string"),
        ("ImmutableString", "string"),
        ("String", "string"),
        ("i64", "int"),
        ("INT", "int"),
        ("f64", "float"),
        ("FLOAT", "float"),
        ("Dynamic", "?"),
        ("FnPtr", "Fn"),
        ("Array", "array"),
        ("Map", "map"),
    ] {
        s = s.replace(rust, script);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_types_read_as_script_types() {
        assert_eq!(script_types("Res<bool>"), "bool");
        assert_eq!(
            script_types("Result<Vec<i64>, Box<EvalAltResult>>"),
            "Result<Vec<int>, Box<EvalAltResult>>"
        );
        assert_eq!(script_types("&mut Haproxy"), "Haproxy");
        assert_eq!(script_types("ImmutableString"), "string");
    }

    #[test]
    fn every_primitive_with_an_options_map_has_its_keys_listed() {
        let all = functions();
        for f in all
            .iter()
            .filter(|f| matches!(f.origin, Origin::Primitive(_)))
        {
            let takes = f
                .params
                .iter()
                .any(|(n, t)| OPTION_PARAMS.contains(&n.as_str()) && t == "map");
            assert!(
                !takes || f.options.is_some(),
                "{} takes an options map: list its keys (the const its Opts::new uses) in OPTION_KEYS",
                f.signature()
            );
        }
        for (m, name, _) in OPTION_KEYS {
            assert!(
                all.iter().any(|f| f.origin == Origin::Primitive(m)
                    && f.name == *name
                    && f.options.is_some()),
                "OPTION_KEYS lists {m}::{name}, which takes no options map"
            );
        }
    }

    #[test]
    fn the_catalogue_has_primitives_stdlib_and_builtins_with_arities() {
        let all = functions();
        let find = |origin: Origin, name: &str| {
            all.iter()
                .filter(|f| f.origin == origin && f.name == name)
                .map(|f| f.arity())
                .collect::<Vec<_>>()
        };
        assert_eq!(find(Origin::Primitive("haproxy"), "wait_drained"), [3]);
        assert_eq!(find(Origin::Stdlib("rolling"), "upgrade"), [5]);
        assert!(!find(Origin::Builtin, "len").is_empty());
        let wd = all.iter().find(|f| f.name == "wait_drained").unwrap();
        assert_eq!(
            wd.signature(),
            "lb.wait_drained(server: string, timeout: ?)"
        );
    }
}
