//! `runner check` (and the check `runner play` makes before it runs anything): compile a script,
//! resolve its imports, and find what would fail at run time, without running anything: calls of
//! functions and methods that do not exist or take another number of arguments, literal arguments
//! of the wrong type, unknown option keys (with "did you mean"), and the Rhai surprises: using the
//! `()` that `trim()` and friends return, `\n` in a backtick string. It also lists the `param()`
//! names the script reads, so that `--param` can refuse a name no `param()` reads.

use std::collections::{HashMap, HashSet};

use rhai::{ASTNode, Dynamic, Engine, Expr, FnCallExpr, Position, Stmt, AST};

use crate::catalogue::{self, Origin};
use crate::report::render_parse_error;
use crate::resolver::{imports_of, Resolver};
use crate::run::Run;

/// Functions the Rhai language provides as keywords rather than registered functions.
const KEYWORD_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_fn",
    "is_def_var",
    "is_shared",
    "eval",
];

/// Types a literal can be told apart by.
const LITERAL_TYPES: &[&str] = &[
    "string", "int", "float", "bool", "char", "array", "map", "Fn",
];

/// What a check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each problem, rendered with its location and source line.
    pub errors: Vec<String>,
    /// The names `param("...")` reads, in the script and the modules it imports.
    pub params: Vec<String>,
    /// Whether some `param(...)` call names its parameter with an expression: then any
    /// `--param` name may be read.
    pub dynamic_params: bool,
}

/// One way a function can be called.
struct Sig {
    /// Arguments of a call, the receiver of a method included.
    arity: usize,
    /// Parameter types, as the catalogue has them ("?" for any); checked for primitives only.
    types: Option<Vec<String>>,
    options: Option<(usize, &'static [&'static str])>,
    signature: String,
    returns_unit: bool,
    builtin: bool,
    script: bool,
}

/// What a literal argument is, when the script writes one.
#[derive(Debug)]
enum Lit {
    Of(&'static str),
    Map(Vec<(String, Position)>),
    Unknown,
}

/// Check the script `source` (its text `text`, compiled as `ast`).
pub fn check(run: &Run, engine: &Engine, ast: &AST, source: &str, text: &str) -> Report {
    let mut sigs: HashMap<String, Vec<Sig>> = HashMap::new();
    for f in catalogue::primitives()
        .into_iter()
        .chain(catalogue::builtins())
    {
        if f.getter {
            continue;
        }
        sigs.entry(f.name.clone()).or_default().push(Sig {
            arity: f.arity(),
            types: matches!(f.origin, Origin::Primitive(_))
                .then(|| f.params.iter().map(|(_, t)| t.clone()).collect()),
            options: f.options,
            signature: f.signature(),
            returns_unit: f.returns == "()",
            builtin: f.origin == Origin::Builtin,
            script: false,
        });
    }
    for f in ast.iter_functions() {
        sigs.entry(f.name.to_string()).or_default().push(Sig {
            arity: f.params.len(),
            types: None,
            options: None,
            signature: format!("{}({})", f.name, f.params.join(", ")),
            returns_unit: false,
            builtin: false,
            script: true,
        });
    }
    // Variables and parameters may hold function pointers called with `f(x)`.
    let mut variables: HashSet<String> = ast
        .iter_functions()
        .flat_map(|f| f.params.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .collect();
    // Map keys and properties may hold closures called as methods: `obj.action()`.
    let mut properties: HashSet<String> = HashSet::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        match nodes.last() {
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                variables.insert(x.0.name.to_string());
            }
            Some(ASTNode::Expr(Expr::Map(m, _))) => {
                properties.extend(m.0.iter().map(|(k, _)| k.name.to_string()));
            }
            Some(ASTNode::Expr(Expr::Property(p, _))) => {
                properties.insert(p.2.to_string());
            }
            Some(ASTNode::Expr(Expr::DynamicConstant(d, _))) => {
                if let Some(m) = d.read_lock::<rhai::Map>() {
                    properties.extend(m.keys().map(|k| k.to_string()));
                }
            }
            _ => {}
        }
        true
    });
    // alias -> the functions of the imported module, by name, with their arities
    let resolver = Resolver::new(run.config.libs.clone(), run.sources.clone());
    let mut modules: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
    let mut report = Report::default();
    for import in imports_of(ast) {
        if let Ok((_, m)) = resolver.compile(engine, Some(source), &import.path) {
            let mut fns: HashMap<String, Vec<usize>> = HashMap::new();
            for f in m.iter_functions() {
                fns.entry(f.name.to_string())
                    .or_default()
                    .push(f.params.len());
            }
            modules.insert(import.alias, fns);
            params_of(&m, &mut report);
        }
    }
    params_of(ast, &mut report);

    let mut errors: Vec<(Position, String)> = Vec::new();
    let mut say = |pos: Position, msg: String| errors.push((pos, msg));
    ast.walk(&mut |nodes: &[ASTNode]| {
        let (x, pos, method) = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(x, pos)))
                if x.op_token.is_none() =>
            {
                (x, *pos, false)
            }
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => (x, *pos, true),
            _ => return true,
        };
        let name = x.name.as_str();
        if KEYWORD_FUNCTIONS.contains(&name) {
            return true;
        }
        if !method && !x.namespace.is_empty() {
            let ns = x.namespace.root();
            if let Some(fns) = modules.get(ns) {
                match fns.get(name) {
                    None => say(pos, format!("module `{ns}` has no function `{name}`")),
                    Some(a) if !a.contains(&x.args.len()) => say(
                        pos,
                        format!(
                            "`{ns}::{name}` takes {} argument(s), not {}",
                            list(a),
                            x.args.len()
                        ),
                    ),
                    _ => {}
                }
            }
            return true;
        }
        if (!method && variables.contains(name)) || (method && properties.contains(name)) {
            return true;
        }
        let Some(all) = sigs.get(name) else {
            let what = if method { "method" } else { "function" };
            say(pos, format!("unknown {what} `{name}`"));
            return true;
        };
        // A method call passes its receiver first; a script function called as a method binds it
        // to `this` instead.
        let given = x.args.len() + usize::from(method);
        let fits: Vec<&Sig> = all
            .iter()
            .filter(|s| s.arity == given || (method && s.script && s.arity == x.args.len()))
            .collect();
        if fits.is_empty() {
            let mut arities: Vec<usize> = all
                .iter()
                .map(|s| s.arity - usize::from(method && !s.script))
                .collect();
            arities.sort();
            arities.dedup();
            let shown: Vec<&str> = all
                .iter()
                .filter(|s| !s.builtin)
                .map(|s| s.signature.as_str())
                .collect();
            let tail = if shown.is_empty() {
                String::new()
            } else {
                format!(": {}", shown.join(" | "))
            };
            say(
                pos,
                format!(
                    "`{name}` takes {} argument(s), not {}{tail}",
                    list(&arities),
                    x.args.len()
                ),
            );
            return true;
        }
        let offset = usize::from(method);
        let lits: Vec<Lit> = x.args.iter().map(literal).collect();
        // Literal arguments of the wrong type, for primitives (whose types are known).
        if fits.iter().all(|s| s.types.is_some()) {
            let wrong = fits.iter().all(|s| {
                let types = s.types.as_ref().unwrap();
                lits.iter()
                    .enumerate()
                    .any(|(i, l)| !accepts(&types[i + offset], l))
            });
            if wrong {
                let s = fits[0];
                let types = s.types.as_ref().unwrap();
                if let Some((i, l)) = lits
                    .iter()
                    .enumerate()
                    .find(|(i, l)| !accepts(&types[i + offset], l))
                {
                    say(
                        pos,
                        format!(
                            "`{name}`: argument {} is {}, but {} wants {} there",
                            i + 1,
                            l.describe(),
                            s.signature,
                            types[i + offset]
                        ),
                    );
                }
            }
        }
        // Unknown option keys of a literal options map.
        for (i, l) in lits.iter().enumerate() {
            let Lit::Map(keys) = l else { continue };
            let allowed: Vec<&str> = fits
                .iter()
                .filter_map(|s| s.options)
                .filter(|(at, _)| *at == i + offset)
                .flat_map(|(_, k)| k.iter().copied())
                .collect();
            if allowed.is_empty() {
                continue;
            }
            for (k, kpos) in keys {
                if !allowed.contains(&k.as_str()) {
                    let at = if kpos.is_none() { pos } else { *kpos };
                    say(
                        at,
                        format!("`{name}`: {}", crate::opts::unknown_option(k, &allowed)),
                    );
                }
            }
        }
        // `let t = s.trim();`: the value of a method that changes its receiver in place.
        if method && all.iter().all(|s| s.builtin && s.returns_unit) && result_used(nodes) {
            say(pos, unit_result(name));
        }
        true
    });
    errors.extend(backtick_escapes(text));
    errors.sort_by_key(|(p, _)| (p.line().unwrap_or(0), p.position().unwrap_or(0)));
    for (pos, msg) in errors {
        let e = rhai::ParseError(
            Box::new(rhai::ParseErrorType::BadInput(
                rhai::LexError::ImproperSymbol(String::new(), msg),
            )),
            pos,
        );
        report
            .errors
            .push(render_parse_error(&e, source, &run.sources));
    }
    report.params.sort();
    report.params.dedup();
    report
}

fn list(arities: &[usize]) -> String {
    let mut a: Vec<String> = arities.iter().map(|n| n.to_string()).collect();
    a.sort();
    a.dedup();
    a.join(" or ")
}

/// The `param("name")` names of `ast`.
fn params_of(ast: &AST, report: &mut Report) {
    ast.walk(&mut |nodes: &[ASTNode]| {
        let call: Option<&FnCallExpr> = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, _))) | Some(ASTNode::Stmt(Stmt::FnCall(x, _))) => {
                Some(x)
            }
            _ => None,
        };
        if let Some(x) = call.filter(|x| x.name == "param" && x.namespace.is_empty()) {
            match x.args.first() {
                Some(Expr::StringConstant(s, _)) => report.params.push(s.to_string()),
                Some(_) => report.dynamic_params = true,
                None => {}
            }
        }
        true
    });
}

/// What a literal argument is.
fn literal(e: &Expr) -> Lit {
    match e {
        Expr::StringConstant(..) | Expr::InterpolatedString(..) => Lit::Of("string"),
        Expr::IntegerConstant(..) => Lit::Of("int"),
        Expr::FloatConstant(..) => Lit::Of("float"),
        Expr::BoolConstant(..) => Lit::Of("bool"),
        Expr::CharConstant(..) => Lit::Of("char"),
        Expr::Array(..) => Lit::Of("array"),
        Expr::Map(m, _) => Lit::Map(
            m.0.iter()
                .map(|(k, _)| (k.name.to_string(), k.pos))
                .collect(),
        ),
        Expr::DynamicConstant(d, pos) => constant(d, *pos),
        _ => Lit::Unknown,
    }
}

/// A constant the compiler folded (an array or map of constants, a closure).
fn constant(d: &Dynamic, pos: Position) -> Lit {
    if let Some(m) = d.read_lock::<rhai::Map>() {
        return Lit::Map(m.keys().map(|k| (k.to_string(), pos)).collect());
    }
    if d.is_array() {
        Lit::Of("array")
    } else if d.is_string() {
        Lit::Of("string")
    } else if d.is_int() {
        Lit::Of("int")
    } else if d.is_float() {
        Lit::Of("float")
    } else if d.is_bool() {
        Lit::Of("bool")
    } else if d.is_fnptr() {
        Lit::Of("Fn")
    } else {
        Lit::Unknown
    }
}

impl Lit {
    fn describe(&self) -> String {
        match self {
            Lit::Of("int") => "an int".into(),
            Lit::Of("array") => "an array".into(),
            Lit::Of("Fn") => "a closure".into(),
            Lit::Of(t) => format!("a {t}"),
            Lit::Map(_) => "a map".into(),
            Lit::Unknown => "a value".into(),
        }
    }
}

/// Whether a parameter of type `ty` takes the literal `l`.
fn accepts(ty: &str, l: &Lit) -> bool {
    let kind = match l {
        Lit::Unknown => return true,
        Lit::Map(_) => "map",
        Lit::Of(t) => t,
    };
    let known = LITERAL_TYPES.contains(&ty) || catalogue::HANDLES.iter().any(|(h, _)| *h == ty);
    !known || ty == kind
}

/// Whether the value of the method call at the end of `nodes` is used (assigned, passed, called
/// on), rather than the call being a statement of its own.
fn result_used(nodes: &[ASTNode]) -> bool {
    let mut i = nodes.len() - 1;
    while i > 0 {
        let ASTNode::Expr(cur) = &nodes[i] else {
            return false;
        };
        match &nodes[i - 1] {
            ASTNode::Expr(Expr::Dot(x, ..)) => {
                if !std::ptr::eq(&x.rhs, *cur) {
                    // The receiver of a further call: `s.trim().len()`.
                    return true;
                }
                i -= 1;
            }
            ASTNode::Stmt(Stmt::Expr(_)) => return false,
            _ => return true,
        }
    }
    false
}

/// What to write instead of using the `()` of a method that changes its value in place.
fn unit_result(name: &str) -> String {
    let instead = match name {
        "trim" => " or `s.trimmed()` for the trimmed copy",
        "replace" => " or `s.replaced(from, to)` for the changed copy",
        "sort" => " or `a.sorted()` for a sorted copy",
        "make_upper" => " or `s.to_upper()`",
        "make_lower" => " or `s.to_lower()`",
        _ => "",
    };
    format!(
        "`{name}()` changes the value in place and returns (), so its result here is (): call it as a statement of its own{instead}"
    )
}

/// `\n`, `\t` or `\r` inside a backtick string, where Rhai takes them as a backslash and a letter.
fn backtick_escapes(text: &str) -> Vec<(Position, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    // The stack of what we are inside: 'c' code (with its brace depth), '`' a backtick string.
    let mut stack: Vec<(char, usize)> = vec![('c', 0)];
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let (mode, depth) = *stack.last().unwrap();
        let mut step = 1;
        if mode == '`' {
            match (c, next) {
                ('`', Some('`')) => step = 2,
                ('`', _) => {
                    stack.pop();
                }
                ('$', Some('{')) => {
                    stack.push(('c', 0));
                    step = 2;
                }
                ('\\', Some(e @ ('n' | 't' | 'r'))) => {
                    out.push((
                        Position::new(line as u16, col as u16),
                        format!("`\\{e}` in a backtick string is a backslash and `{e}`, not an escape (backtick strings take none): write a real line break, or use a \"...\" string"),
                    ));
                    step = 2;
                }
                _ => {}
            }
        } else {
            match (c, next) {
                ('/', Some('/')) => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                        col += 1;
                    }
                    continue;
                }
                ('/', Some('*')) => {
                    let mut nest = 0;
                    while i < chars.len() {
                        match (chars[i], chars.get(i + 1)) {
                            ('/', Some('*')) => {
                                nest += 1;
                                i += 1;
                                col += 1;
                            }
                            ('*', Some('/')) => {
                                nest -= 1;
                                i += 1;
                                col += 1;
                            }
                            ('\n', _) => {
                                line += 1;
                                col = 0;
                            }
                            _ => {}
                        }
                        i += 1;
                        col += 1;
                        if nest == 0 {
                            break;
                        }
                    }
                    continue;
                }
                ('"', _) | ('\'', _) => {
                    // A quoted string or character: skip to its end, escapes included.
                    let quote = c;
                    i += 1;
                    col += 1;
                    while i < chars.len() && chars[i] != quote {
                        if chars[i] == '\\' {
                            i += 1;
                            col += 1;
                        }
                        if chars.get(i) == Some(&'\n') {
                            line += 1;
                            col = 0;
                        }
                        i += 1;
                        col += 1;
                    }
                }
                ('`', _) => stack.push(('`', 0)),
                ('{', _) => stack.last_mut().unwrap().1 += 1,
                ('}', _) if depth == 0 && stack.len() > 1 => {
                    stack.pop();
                }
                ('}', _) => {
                    let top = stack.last_mut().unwrap();
                    top.1 = top.1.saturating_sub(1);
                }
                _ => {}
            }
        }
        for _ in 0..step {
            if chars.get(i) == Some(&'\n') {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_in_backtick_strings_are_found_and_nowhere_else() {
        let found = backtick_escapes(
            "let a = \"x\\n\";\n// `\\n`\nlet b = `a ${ \"\\n\" } b\\n`;\nlet c = `ok`;",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0.line(), Some(3));
        assert_eq!(found[0].0.position(), Some(23));
    }
}
