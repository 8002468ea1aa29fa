//! Embeds every `stdlib/*.rhai` file into the binary, so `import "rolling"` works from any directory.
use std::{env, fs, path::Path};

fn main() {
    // Read when the script runs, not when it was compiled: a build script reused from another
    // checkout (a copied target directory) must still embed this checkout's files.
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("stdlib");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = String::from("/// The embedded standard library: (module name, source).\npub static STDLIB: &[(&str, &str)] = &[\n");
    for p in &entries {
        println!("cargo:rerun-if-changed={}", p.display());
        let name = p.file_stem().unwrap().to_string_lossy();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
    }
    out.push_str("];\n");
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("stdlib.rs"),
        out,
    )
    .unwrap();
}
