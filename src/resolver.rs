//! Where `import "name"` finds its module: the importing script's own folder, then each `--lib` /
//! `RUNNER_PATH` folder, then the standard library embedded in the binary. A file shadows the embedded
//! module of the same name, so users can copy a playbook next to their script and change it. The
//! importing file itself is skipped: a playbook named `rolling.rhai` imports the stdlib's `rolling`.
//!
//! `import "NAME/module"` where NAME is a library of the project's runner.toml loads `module.rhai`
//! of that library. A library never shadows anything silently: one named like a standard library
//! module, or like a file or folder the import could also mean, is an error naming both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared, AST};

use crate::libs::{Installed, Libs};

type SharedModule = Shared<Module>;

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// The name under which an embedded module's source is shown in errors and `runner doc`.
pub fn stdlib_source_name(name: &str) -> String {
    format!("<stdlib>/{name}.rhai")
}

/// The text of every script and module a run loaded, by the name errors show, for rendering source lines.
#[derive(Default)]
pub struct Sources {
    texts: Mutex<HashMap<String, Arc<str>>>,
    /// import path as written -> the source name it resolved to
    imports: Mutex<HashMap<String, String>>,
}

impl Sources {
    pub fn insert(&self, name: &str, text: &str) {
        self.texts
            .lock()
            .unwrap()
            .insert(name.to_string(), Arc::from(text));
    }

    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        self.texts.lock().unwrap().get(name).cloned()
    }

    pub fn resolved_name(&self, import_path: &str) -> Option<String> {
        self.imports.lock().unwrap().get(import_path).cloned()
    }
}

/// A module found on the search path, before it is compiled.
pub struct Found {
    /// The name errors show: a path for a file, `<stdlib>/x.rhai` for an embedded module.
    pub source: String,
    pub text: String,
}

/// The module resolver of a run.
pub struct Resolver {
    libs: Libs,
    sources: Arc<Sources>,
    cache: Mutex<HashMap<String, SharedModule>>,
}

impl Resolver {
    pub fn new(libs: Libs, sources: Arc<Sources>) -> Self {
        Resolver {
            libs,
            sources,
            cache: Mutex::default(),
        }
    }

    /// The folders searched for an import from `importer` (a source name), in order.
    fn search_dirs(&self, importer: Option<&str>) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(file) = importer.filter(|s| !s.starts_with('<')) {
            let dir = Path::new(file)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            dirs.push(if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            });
        }
        dirs.extend(self.libs.folders.iter().cloned());
        dirs
    }

    /// The module `path` names in a library of the project, if its first part is a library's name.
    fn find_in_library(&self, importer: Option<&str>, path: &str) -> Result<Option<Found>, String> {
        let (name, module) = match path.split_once('/') {
            Some((n, m)) => (n, Some(m)),
            None => (path.trim_end_matches(".rhai"), None),
        };
        let Some(lib) = self.libs.library(name) else {
            return Ok(None);
        };
        let declared = format!("library `{name}` of {}", lib.declared_in.display());
        if let Some((m, _)) = STDLIB.iter().find(|(m, _)| *m == name) {
            return Err(format!(
                "\"{path}\": the {declared} has the name of the standard library module `{m}`: rename the library in runner.toml"
            ));
        }
        for dir in self.search_dirs(importer) {
            for local in [dir.join(name), dir.join(format!("{name}.rhai"))] {
                if local.exists() && !same_place(&local, &lib.dir) {
                    return Err(format!(
                        "\"{path}\": the {declared} has the name of {}: rename one of them",
                        local.display()
                    ));
                }
            }
        }
        if let Some(why) = lib.manifest.as_ref().and_then(|m| m.too_old(name)) {
            return Err(why);
        }
        let Some(module) = module.filter(|m| !m.is_empty()) else {
            return Err(format!(
                "\"{path}\" is the {declared}: import one of its modules, \"{name}/MODULE\" ({})",
                modules_of(lib)
            ));
        };
        let file = lib.dir.join(if module.ends_with(".rhai") {
            module.to_string()
        } else {
            format!("{module}.rhai")
        });
        if !file.is_file() {
            return Err(format!(
                "module \"{path}\" not found: the {declared} has no {} ({})",
                file.display(),
                modules_of(lib)
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        Ok(Some(Found {
            source: file.display().to_string(),
            text,
        }))
    }

    /// Find the module `path` imported from `importer`; on failure, the list of places searched.
    pub fn find(&self, importer: Option<&str>, path: &str) -> Result<Found, String> {
        if let Some(found) = self.find_in_library(importer, path)? {
            return Ok(found);
        }
        let file = if path.ends_with(".rhai") {
            path.to_string()
        } else {
            format!("{path}.rhai")
        };
        let mut searched = Vec::new();
        let candidates: Vec<PathBuf> = if Path::new(&file).is_absolute() {
            vec![PathBuf::from(&file)]
        } else {
            self.search_dirs(importer)
                .into_iter()
                .map(|d| d.join(&file))
                .collect()
        };
        // A script never imports itself: `rolling.rhai` importing "rolling" means the module of
        // that name further along the path (here: the standard library's).
        let itself = importer
            .filter(|s| !s.starts_with('<'))
            .map(Path::new)
            .filter(|p| p.is_file());
        for cand in candidates {
            if itself.is_some_and(|me| same_place(&cand, me)) {
                continue;
            }
            if cand.is_file() {
                let text = std::fs::read_to_string(&cand)
                    .map_err(|e| format!("cannot read {}: {e}", cand.display()))?;
                return Ok(Found {
                    source: cand.display().to_string(),
                    text,
                });
            }
            searched.push(
                cand.parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
        let stem = path.trim_end_matches(".rhai");
        if let Some((name, text)) = STDLIB.iter().find(|(n, _)| *n == stem) {
            return Ok(Found {
                source: stdlib_source_name(name),
                text: text.to_string(),
            });
        }
        searched.push("the embedded standard library".into());
        Err(format!(
            "module \"{path}\" not found; searched: {}",
            searched.join(", ")
        ))
    }

    /// Find and compile a module, remembering its source text for error messages.
    pub fn compile(
        &self,
        engine: &Engine,
        importer: Option<&str>,
        path: &str,
    ) -> Result<(Found, AST), Box<EvalAltResult>> {
        let found = self
            .find(importer, path)
            .map_err(|msg| EvalAltResult::ErrorModuleNotFound(msg, Position::NONE))?;
        self.compile_found(engine, path, found)
    }

    fn compile_found(
        &self,
        engine: &Engine,
        path: &str,
        found: Found,
    ) -> Result<(Found, AST), Box<EvalAltResult>> {
        self.sources.insert(&found.source, &found.text);
        self.sources
            .imports
            .lock()
            .unwrap()
            .insert(path.to_string(), found.source.clone());
        let mut ast = engine.compile(&found.text).map_err(|e| {
            EvalAltResult::ErrorInModule(found.source.clone(), Box::new(e.into()), Position::NONE)
        })?;
        ast.set_source(found.source.as_str());
        Ok((found, ast))
    }

    /// Resolve every constant `import` of `ast` and of the modules it imports, without running
    /// anything: a missing module or a syntax error in one is reported before the script starts.
    pub fn preflight(&self, engine: &Engine, ast: &AST, source: &str) -> Result<(), ImportError> {
        let mut seen: Vec<String> = Vec::new();
        let mut queue = vec![(source.to_string(), ast.clone())];
        while let Some((src, ast)) = queue.pop() {
            for import in imports_of(&ast) {
                let (found, module_ast) =
                    self.compile(engine, Some(&src), &import.path)
                        .map_err(|error| ImportError {
                            source: src.clone(),
                            pos: import.pos,
                            error,
                        })?;
                if !seen.contains(&found.source) {
                    seen.push(found.source.clone());
                    queue.push((found.source, module_ast));
                }
            }
        }
        Ok(())
    }
}

/// Whether two paths are the same file or folder (a path library in the script's own folder is
/// that folder, not a clash with it).
fn same_place(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// "its modules: a, b" for messages.
fn modules_of(lib: &Installed) -> String {
    let modules = lib.modules();
    if modules.is_empty() {
        format!("it has no modules: no .rhai file in {}", lib.dir.display())
    } else {
        format!("its modules: {}", modules.join(", "))
    }
}

/// An import that failed before the script ran: where the `import` statement is, and why.
pub struct ImportError {
    pub source: String,
    pub pos: Position,
    pub error: Box<EvalAltResult>,
}

/// One constant `import "path" as alias;` of a script.
pub struct Import {
    pub path: String,
    pub alias: String,
    pub pos: Position,
}

/// The constant imports of a script.
pub fn imports_of(ast: &AST) -> Vec<Import> {
    let mut out = Vec::new();
    ast.walk(&mut |nodes: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Stmt(rhai::Stmt::Import(x, pos))) = nodes.last() {
            if let rhai::Expr::StringConstant(s, _) = &x.0 {
                out.push(Import {
                    path: s.to_string(),
                    alias: x.1.name.to_string(),
                    pos: *pos,
                });
            }
        }
        true
    });
    out
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        let found = self
            .find(source, path)
            .map_err(|msg| EvalAltResult::ErrorModuleNotFound(msg, pos))?;
        if let Some(m) = self.cache.lock().unwrap().get(&found.source) {
            return Ok(m.clone());
        }
        let (found, ast) = self
            .compile_found(engine, path, found)
            .map_err(|e| match *e {
                EvalAltResult::ErrorInModule(p, inner, _) => {
                    Box::new(EvalAltResult::ErrorInModule(p, inner, pos))
                }
                other => Box::new(other),
            })?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(found.source.clone(), e, pos)))?;
        let module: SharedModule = module.into();
        self.cache
            .lock()
            .unwrap()
            .insert(found.source, module.clone());
        Ok(module)
    }
}
