//! Shared libraries with real `git`: a library in a bare repository the test makes (`file://`),
//! added to a project with `runner lib add`, imported as `"NAME/module"`, pinned in runner.lock and
//! checked by `runner play` without fetching; `runner new`; `runner doc --definitions`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::harness::*;

/// Run git in `dir` with an identity of its own and no user or system configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=runner test",
            "-c",
            "user.email=test@runner",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A library's repository: a bare repository (what `runner lib add` is given, as a `file://` URL)
/// and a working clone the test commits in and pushes from.
struct Remote {
    dir: TempDir,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::Builder::new()
            .prefix("runner-remote-")
            .tempdir()
            .unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "--initial-branch=main", "lib.git"],
        );
        git(dir.path(), &["clone", "-q", "lib.git", "work"]);
        git(
            &dir.path().join("work"),
            &["symbolic-ref", "HEAD", "refs/heads/main"],
        );
        Remote { dir }
    }

    fn url(&self) -> String {
        format!("file://{}/lib.git", self.dir.path().display())
    }

    /// Write `files` into the working clone, commit, tag it if asked, push; the new commit.
    fn commit(&self, files: &[(&str, &str)], tag: Option<&str>) -> String {
        let work = self.dir.path().join("work");
        for (rel, text) in files {
            let p = work.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", tag.unwrap_or("change")]);
        if let Some(t) = tag {
            git(&work, &["tag", t]);
        }
        git(
            &work,
            &["push", "-q", "--tags", "origin", "HEAD:refs/heads/main"],
        );
        git(&work, &["rev-parse", "HEAD"])
    }
}

/// The library `web` with a module `greet` whose `version()` says which tag it is.
fn web_remote() -> (Remote, String, String) {
    let remote = Remote::new();
    let manifest = "name = \"web\"\nversion = \"1.0.0\"\ndescription = \"web helpers\"\n";
    let v1 = remote.commit(
        &[
            ("runner-lib.toml", manifest),
            (
                "greet.rhai",
                "/// Which version this is.\nfn version() { \"v1\" }\n",
            ),
        ],
        Some("v1"),
    );
    let v2 = remote.commit(
        &[(
            "greet.rhai",
            "/// Which version this is.\nfn version() { \"v2\" }\n",
        )],
        Some("v2"),
    );
    (remote, v1, v2)
}

/// A playbook project: a folder of its own, with its own git cache, that several runs share.
struct Project {
    dir: TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::Builder::new()
            .prefix("runner-project-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("main.rhai"),
            "import \"web/greet\" as greet;\nprint(greet::version());\n",
        )
        .unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, rel: &str, text: &str) -> &Project {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    /// `runner ARGS` in the project's folder, outside CI (a test that wants CI says so).
    fn runner(&self, args: &[&str]) -> Test {
        Test::new()
            .current_dir(self.path())
            .env("XDG_CACHE_HOME", &self.cache().display().to_string())
            .env("CI", "false")
            .args(args)
    }

    /// `runner lib add URL@REF`, which must succeed.
    fn add(&self, spec: &str) -> Outcome {
        self.runner(&["lib", "add", spec]).run().success()
    }
}

#[test]
fn a_library_added_at_a_tag_is_imported_from_another_folder_and_moved_to_the_next_tag_by_update() {
    let (remote, v1, v2) = web_remote();
    let project = Project::new();
    project
        .add(&format!("{}@v1", remote.url()))
        .stdout_has("added web")
        .stdout_has("import \"web/greet\"");
    assert!(
        project.read("runner.toml").contains("ref = \"v1\""),
        "{}",
        project.read("runner.toml")
    );
    let lock = project.read("runner.lock");
    assert!(lock.contains(&format!("commit = \"{v1}\"")), "{lock}");
    assert!(lock.contains("sha256 = \""), "{lock}");
    assert!(project.path().join(".runner/lib/web/greet.rhai").is_file());

    // From another working directory: runner.toml is found from the script.
    let main = project.path().join("main.rhai").display().to_string();
    Test::new()
        .env("CI", "false")
        .args(&["play", &main])
        .run()
        .success()
        .stdout_is("v1\n");

    let toml = project.read("runner.toml").replace("\"v1\"", "\"v2\"");
    project.file("runner.toml", &toml);
    project
        .runner(&["lib", "update"])
        .run()
        .success()
        .stdout_has(&format!("commit {} -> {}", &v1[..12], &v2[..12]));
    let lock = project.read("runner.lock");
    assert!(lock.contains(&format!("commit = \"{v2}\"")), "{lock}");
    assert!(!lock.contains(&v1), "{lock}");
    project
        .runner(&["play", "main.rhai"])
        .run()
        .success()
        .stdout_is("v2\n");
}

#[test]
fn update_name_at_ref_moves_runner_toml_and_the_lock_and_a_branch_moves_only_on_update() {
    let (remote, _, v2) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    project.runner(&["lib", "update", "web@v2"]).run().success();
    assert!(project.read("runner.toml").contains("ref = \"v2\""));
    assert!(project.read("runner.lock").contains(&v2));

    // A branch: the lock keeps the commit it was made at until `runner lib update`.
    project
        .runner(&["lib", "update", "web@main"])
        .run()
        .success();
    let v3 = remote.commit(&[("greet.rhai", "fn version() { \"v3\" }\n")], None);
    project
        .runner(&["play", "main.rhai"])
        .run()
        .success()
        .stdout_is("v2\n");
    project.runner(&["lib", "update", "web"]).run().success();
    assert!(project.read("runner.lock").contains(&v3));
    project
        .runner(&["play", "main.rhai"])
        .run()
        .success()
        .stdout_is("v3\n");
}

#[test]
fn a_library_edited_by_hand_is_refused_by_play_naming_it_and_listed_as_modified() {
    let (remote, _, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    project
        .runner(&["lib", "list"])
        .run()
        .success()
        .stdout_has("web  ok");
    project.file(
        ".runner/lib/web/greet.rhai",
        "fn version() { \"patched\" }\n",
    );
    project
        .runner(&["play", "main.rhai"])
        .run()
        .code(2)
        .stderr_has("library `web` was edited by hand")
        .stderr_has("runner lib install --force")
        .stderr_lacks("patched");
    project
        .runner(&["lib", "list"])
        .run()
        .success()
        .stdout_has("web  modified");
    // Nothing throws the change away without --force.
    project
        .runner(&["lib", "update"])
        .run()
        .code(2)
        .stderr_has("--force overwrites it");
    project
        .runner(&["lib", "install", "--force"])
        .run()
        .success();
    project
        .runner(&["play", "main.rhai"])
        .run()
        .success()
        .stdout_is("v1\n");
}

#[test]
fn frozen_refuses_a_lock_made_from_another_ref_than_runner_toml_naming_lib_update() {
    let (remote, _, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    let toml = project.read("runner.toml").replace("\"v1\"", "\"v2\"");
    project.file("runner.toml", &toml);

    // Without --frozen: a warning, and the locked library runs.
    project
        .runner(&["play", "main.rhai"])
        .run()
        .success()
        .stdout_is("v1\n")
        .stderr_has("runner.toml asks for ref v2, runner.lock pins ref v1");
    for run in [
        project.runner(&["play", "main.rhai", "--frozen"]),
        project.runner(&["play", "main.rhai"]).env("CI", "true"),
    ] {
        run.run()
            .code(2)
            .stdout_is("")
            .stderr_has(
                "library `web`: runner.toml asks for ref v2, runner.lock was made from ref v1",
            )
            .stderr_has("run `runner lib update web`");
    }
    project
        .runner(&["lib", "install", "--frozen"])
        .run()
        .code(2)
        .stderr_has("would move `web`");
}

#[test]
fn a_missing_library_names_lib_install_which_restores_it_from_the_cache_without_the_remote() {
    let (remote, v1, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    std::fs::remove_dir_all(project.path().join(".runner")).unwrap();
    project
        .runner(&["play", "main.rhai"])
        .run()
        .code(2)
        .stderr_has("library `web` is not installed")
        .stderr_has("run `runner lib install`");
    project
        .runner(&["lib", "list"])
        .run()
        .success()
        .stdout_has("web  missing");
    // The remote is gone: the commit comes from the user-wide cache, and nothing is fetched.
    drop(remote);
    project
        .runner(&["lib", "install"])
        .env("CI", "true")
        .run()
        .success()
        .stdout_has(&format!("at commit {}, checked out", &v1[..12]));
    project
        .runner(&["play", "main.rhai", "--frozen"])
        .run()
        .success()
        .stdout_is("v1\n");
}

#[test]
fn a_library_named_like_a_folder_beside_the_script_or_a_stdlib_module_is_an_error_naming_both() {
    let (remote, _, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    project.file("web/greet.rhai", "fn version() { \"local\" }\n");
    project
        .runner(&["play", "main.rhai"])
        .run()
        .code(2)
        .stderr_has("the library `web` of ")
        .stderr_has("has the name of ./web")
        .stderr_has("main.rhai:1");
    project
        .runner(&["lib", "add", &remote.url(), "--name", "rolling"])
        .run()
        .code(2)
        .stderr_has("the name of the standard library module `rolling`");
}

#[test]
fn a_library_that_needs_a_newer_runner_says_which_version_at_import() {
    let remote = Remote::new();
    remote.commit(
        &[
            (
                "runner-lib.toml",
                "name = \"web\"\nversion = \"7.0.0\"\nrunner-version = \"99.2\"\n",
            ),
            ("greet.rhai", "fn version() { \"v7\" }\n"),
        ],
        Some("v7"),
    );
    let project = Project::new();
    project
        .add(&format!("{}@v7", remote.url()))
        .stdout_has("needs runner 99.2 or newer");
    project
        .runner(&["check", "main.rhai"])
        .run()
        .code(2)
        .stderr_has(&format!(
            "library `web` 7.0.0 needs runner 99.2 or newer; this is runner {}",
            env!("CARGO_PKG_VERSION")
        ))
        .stderr_has("main.rhai:1");
}

#[test]
fn runner_toml_defaults_give_inventory_lib_folders_and_params_and_flags_win() {
    let project = Project::new();
    project
        .file(
            "runner.toml",
            "[defaults]\ninventory = \"hosts.toml\"\nlib = [\"shared\"]\n\n[defaults.params]\ngreeting = \"hello\"\ncount = 2\n",
        )
        .file(
            "hosts.toml",
            "[hosts.here]\nconnection = \"local\"\n[groups.web]\nhosts = [\"here\"]\n",
        )
        .file("shared/words.rhai", "fn twice(s, n) { let out = \"\"; for i in 0..n { out += s; } out }\n")
        .file(
            "sub/play.rhai",
            "import \"words\" as w;\nlet names = hosts(\"web\").map(|h| h.name);\nprint(`${w::twice(param(\"greeting\"), param(\"count\"))} ${names}`);\n",
        );
    project
        .runner(&["play", "sub/play.rhai"])
        .run()
        .success()
        .stdout_is("hellohello [\"here\"]\n");
    project.file(
        "other.toml",
        "[hosts.there]\nconnection = \"local\"\n[groups.web]\nhosts = [\"there\"]\n",
    );
    project
        .runner(&[
            "play",
            "sub/play.rhai",
            "-p",
            "greeting=hi",
            "-i",
            "other.toml",
        ])
        .run()
        .success()
        .stdout_is("hihi [\"there\"]\n");
}

#[test]
fn lib_remove_drops_the_library_from_runner_toml_the_lock_and_the_checkout() {
    let (remote, _, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    project
        .runner(&["lib", "remove", "web"])
        .run()
        .success()
        .stdout_has("removed web");
    assert!(!project.read("runner.toml").contains("web ="));
    assert!(!project.read("runner.lock").contains("[libs.web]"));
    assert!(!project.path().join(".runner/lib/web").exists());
    project
        .runner(&["play", "main.rhai"])
        .run()
        .code(2)
        .stderr_has("module \"web/greet\" not found");
}

#[test]
fn a_new_playbook_passes_check_and_runs_as_generated() {
    let dir = Test::new()
        .args(&["new", "playbook", "demo"])
        .run()
        .success()
        .dir;
    for f in [
        "demo/demo.rhai",
        "demo/runner.toml",
        "demo/inventory.toml",
        "demo/README.md",
    ] {
        assert!(
            dir.path().join(f).is_file(),
            "runner new playbook made no {f}"
        );
    }
    Test::new()
        .current_dir(dir.path())
        .args(&["check", "demo/demo.rhai"])
        .run()
        .success()
        .stderr_has("demo/demo.rhai: ok");
    // Its runner.toml's inventory and params: the localhost of group web, `uptime`.
    Test::new()
        .current_dir(&dir.path().join("demo"))
        .env("CI", "false")
        .args(&["play", "demo.rhai", "-p", "command=echo skeleton-ran"])
        .run()
        .success()
        .stderr_has("localhost: skeleton-ran");
    Test::new()
        .current_dir(dir.path())
        .args(&["new", "playbook", "demo"])
        .run()
        .code(2)
        .stderr_has("already exists");
}

#[test]
fn a_new_library_passes_check_and_its_test_playbook_imports_it_by_name() {
    let dir = Test::new()
        .args(&["new", "lib", "checks"])
        .run()
        .success()
        .dir;
    let lib = dir.path().join("checks");
    let manifest = std::fs::read_to_string(lib.join("runner-lib.toml")).unwrap();
    assert!(manifest.contains("name = \"checks\""), "{manifest}");
    Test::new()
        .current_dir(&lib)
        .args(&["check", "wait.rhai", "tests/smoke.rhai"])
        .run()
        .success();
    Test::new()
        .current_dir(&lib)
        .env("CI", "false")
        .args(&["play", "tests/smoke.rhai"])
        .run()
        .success()
        .stdout_is("checks: ok\n");
}

#[test]
fn doc_definitions_write_runner_functions_the_stdlib_and_the_project_libraries() {
    let (remote, _, _) = web_remote();
    let project = Project::new();
    project.add(&format!("{}@v1", remote.url()));
    project
        .runner(&["doc", "--definitions", "defs"])
        .run()
        .success()
        .stdout_has("__static__.d.rhai");
    let defs = project.path().join("defs");
    let all: String = std::fs::read_dir(&defs)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let runner_api = std::fs::read_to_string(defs.join("__static__.d.rhai")).unwrap();
    assert!(
        runner_api.contains("fn haproxy("),
        "no haproxy() in the definitions"
    );
    assert!(
        runner_api.contains("fn wait_drained(lb: Haproxy, server: string"),
        "no wait_drained in the definitions"
    );
    assert!(
        !all.contains("Res<"),
        "runner's result alias leaks into the definitions"
    );
    let rolling = std::fs::read_to_string(defs.join("rolling.d.rhai")).unwrap();
    assert!(rolling.starts_with("module rolling;") && rolling.contains("fn upgrade("));
    let web = std::fs::read_to_string(defs.join("web.d.rhai")).unwrap();
    assert!(
        web.contains("module greet {")
            && web.contains("/// Which version this is.\nfn version() -> ?;"),
        "{web}"
    );
}
