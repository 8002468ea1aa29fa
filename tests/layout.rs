//! The shape of `src/`: no file so long that it mixes layers, and no import circle between files, so
//! that each file can be read (and changed) knowing only the files below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The file of a module path (`["prims", "host", "command"]`), if there is one.
fn module_file(src: &Path, segments: &[&str]) -> Option<PathBuf> {
    if segments.is_empty() {
        return Some(src.join("lib.rs"));
    }
    let base = segments.iter().fold(src.to_path_buf(), |p, s| p.join(s));
    [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|p| p.is_file())
}

/// The module path of a file: `src/prims/host/mod.rs` is `["prims", "host"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// The files `file` imports: every `crate::a::b` path, and top-level `use super::x` (an indented
/// `use super::*` is an inline module, such as an `#[export_module]`, looking at its own file).
fn imports(src: &Path, file: &Path) -> BTreeSet<PathBuf> {
    let text = std::fs::read_to_string(file).unwrap();
    let me = module_of(src, file);
    let mut out = BTreeSet::new();
    let mut resolve = |segs: Vec<String>| {
        // The longest prefix that is a file of its own.
        for n in (0..=segs.len()).rev() {
            let s: Vec<&str> = segs[..n].iter().map(String::as_str).collect();
            if let Some(f) = module_file(src, &s) {
                if f != file {
                    out.insert(f);
                }
                return;
            }
        }
    };
    let path_words = |rest: &str| -> Vec<String> {
        rest.split("::")
            .map(|w| {
                w.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|w| !w.is_empty() && w.chars().next().unwrap().is_lowercase())
            .collect()
    };
    for line in text.lines() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            resolve(path_words(rest));
        }
        // `use child::X` / `pub use child::X` in a module's own file: its child modules.
        if let Some(r) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("use "))
            .filter(|r| !r.starts_with("crate::") && !r.starts_with("super::"))
        {
            let mut s = me.clone();
            s.extend(path_words(r));
            let child: Vec<&str> = s[..me.len() + 1.min(s.len() - me.len())]
                .iter()
                .map(String::as_str)
                .collect();
            if child.len() > me.len() && module_file(src, &child).is_some() {
                resolve(s);
            }
        }
        if let Some(r) = line.strip_prefix("use super::") {
            let parent = &me[..me.len().saturating_sub(1)];
            // `use super::{a::X, b::Y}`: each part; `use super::a::{X, Y}`: one.
            let parts: Vec<&str> = match r.strip_prefix('{') {
                Some(list) => list.split(',').collect(),
                None => vec![r],
            };
            for part in parts {
                let mut s = parent.to_vec();
                s.extend(path_words(part.trim()));
                resolve(s);
            }
        }
    }
    out
}

#[test]
fn no_file_of_src_is_over_700_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn no_import_circle_between_files_of_src() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = sources()
        .into_iter()
        .map(|f| {
            let i = imports(&src, &f);
            (f, i)
        })
        .collect();
    // Depth-first search for a back edge; report the circle it closes.
    fn visit(
        n: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        stack: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut circle = stack[i..].to_vec();
            circle.push(n.clone());
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.clone());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.clone());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(circle) = visit(n, &graph, &mut Vec::new(), &mut done) {
            let shown: Vec<String> = circle
                .iter()
                .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                .collect();
            panic!("import circle: {}", shown.join(" -> "));
        }
    }
}
