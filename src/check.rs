//! `runner check`: compile a script, resolve its imports and find calls to functions that do not
//! exist, without running anything.

use std::collections::{HashMap, HashSet};

use rhai::{ASTNode, Engine, Expr, Position, Stmt, AST};

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

/// Every unknown function called by the script `source` (already compiled as `ast`), rendered.
pub fn unknown_functions(run: &Run, engine: &Engine, ast: &AST, source: &str) -> Vec<String> {
    // name -> the argument counts it accepts (None: any, e.g. a method whose arity is not known)
    let mut known: HashMap<String, HashSet<usize>> = HashMap::new();
    for f in catalogue::functions() {
        if !f.getter && !matches!(f.origin, Origin::Stdlib(_)) {
            known.entry(f.name.clone()).or_default().insert(f.arity());
        }
    }
    for f in ast.iter_functions() {
        known
            .entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
    }
    // Variables and parameters may hold function pointers called with `f(x)`.
    let mut variables: HashSet<String> = ast
        .iter_functions()
        .flat_map(|f| f.params.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        .collect();
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Var(x, ..))) = nodes.last() {
            variables.insert(x.0.name.to_string());
        }
        true
    });
    // alias -> the function names of the imported module
    let resolver = Resolver::new(run.config.libs.clone(), run.sources.clone());
    let mut modules: HashMap<String, HashSet<String>> = HashMap::new();
    for import in imports_of(ast) {
        if let Ok((_, m)) = resolver.compile(engine, Some(source), &import.path) {
            modules.insert(
                import.alias,
                m.iter_functions().map(|f| f.name.to_string()).collect(),
            );
        }
    }

    let mut errors = Vec::new();
    let mut report = |msg: String, pos: Position| {
        let e = rhai::ParseError(
            Box::new(rhai::ParseErrorType::BadInput(
                rhai::LexError::ImproperSymbol(String::new(), msg),
            )),
            pos,
        );
        errors.push(render_parse_error(&e, source, &run.sources));
    };
    ast.walk(&mut |nodes: &[ASTNode]| {
        match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(x, pos)))
                if x.op_token.is_none() =>
            {
                let name = x.name.as_str();
                let arity = x.args.len();
                if !x.namespace.is_empty() {
                    let ns = x.namespace.root();
                    if let Some(fns) = modules.get(ns) {
                        if !fns.contains(name) {
                            report(format!("module `{ns}` has no function `{name}`"), *pos);
                        }
                    }
                } else if !KEYWORD_FUNCTIONS.contains(&name) && !variables.contains(name) {
                    match known.get(name) {
                        None => report(format!("unknown function `{name}`"), *pos),
                        Some(arities) if !arities.contains(&arity) => {
                            let mut a: Vec<_> = arities.iter().map(|n| n.to_string()).collect();
                            a.sort();
                            report(
                                format!(
                                    "`{name}` takes {} argument(s), not {arity}",
                                    a.join(" or ")
                                ),
                                *pos,
                            );
                        }
                        _ => {}
                    }
                }
            }
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => {
                let name = x.name.as_str();
                if !KEYWORD_FUNCTIONS.contains(&name) && !known.contains_key(name) {
                    report(format!("unknown method `{name}`"), *pos);
                }
            }
            _ => {}
        }
        true
    });
    errors
}
