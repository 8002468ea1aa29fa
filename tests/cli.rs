//! The command line: exit codes, error rendering, imports, check, doc, eval, parameters, output modes.

use crate::harness::*;

#[test]
fn successful_script_exits_0() {
    Test::new()
        .script("print(\"hello\");")
        .run()
        .success()
        .stdout_is("hello\n");
}

#[test]
fn runtime_error_exits_1_with_file_line_col_and_source_line() {
    Test::new()
        .script("let a = 1;\nlet b = [1, 2];\nlet c = b[7];\n")
        .run()
        .code(1)
        .stderr_has("main.rhai:3:11")
        .stderr_has("3 | let c = b[7];")
        .stderr_has("^");
}

#[test]
fn syntax_error_exits_2_with_location_and_source_line() {
    Test::new()
        .script("let x = 1;\nlet y = ;\n")
        .run()
        .code(2)
        .stderr_has("main.rhai:2:9")
        .stderr_has("2 | let y = ;");
}

#[test]
fn undefined_variable_is_a_compile_error() {
    Test::new()
        .script("print(nosuch);\n")
        .run()
        .code(2)
        .stderr_has("Undefined variable: nosuch")
        .stderr_has("main.rhai:1:7");
}

#[test]
fn error_inside_imported_module_names_the_module_file_and_line() {
    Test::new()
        .file(
            "lib/tools.rhai",
            "fn ok() { 1 }\nfn broken(x) {\n    fail(`broken ${x}`);\n}\n",
        )
        .script("import \"tools\" as t;\nt::ok();\nt::broken(7);\n")
        .args(&["--lib", "lib"])
        .run()
        .code(1)
        .stderr_has("error: broken 7")
        .stderr_has("lib/tools.rhai:3:5")
        .stderr_has("3 |     fail(`broken ${x}`);")
        .stderr_has("called from main.rhai:3:4");
}

#[test]
fn syntax_error_in_imported_module_exits_2_naming_the_module() {
    Test::new()
        .file("tools.rhai", "fn f() {\n  let = 2;\n}\n")
        .script("import \"tools\" as t;\n")
        .run()
        .code(2)
        .stderr_has("tools.rhai:2:7");
}

#[test]
fn missing_module_exits_2_listing_the_searched_folders() {
    Test::new()
        .script("import \"nowhere\" as n;\n")
        .args(&["--lib", "libdir"])
        .env("RUNNER_PATH", "/opt/runner-path-dir")
        .run()
        .code(2)
        .stderr_has("module \"nowhere\" not found")
        .stderr_has("libdir")
        .stderr_has("/opt/runner-path-dir")
        .stderr_has("embedded standard library")
        .stderr_has("main.rhai:1:1");
}

#[test]
fn script_folder_shadows_lib_which_shadows_the_embedded_stdlib() {
    let lib_module = "fn upgrade(a, b, c, d, e) { \"from lib\" }\nfn origin() { \"lib\" }\n";
    let script = "import \"rolling\" as r;\nprint(r::origin());\n";
    // Only the stdlib: the embedded module has no `origin` (found before anything runs).
    Test::new()
        .script(script)
        .run()
        .code(2)
        .stderr_has("module `r` has no function `origin`");
    // --lib shadows the stdlib.
    Test::new()
        .file("lib/rolling.rhai", lib_module)
        .script(script)
        .args(&["--lib", "lib"])
        .run()
        .success()
        .stdout_is("lib\n");
    // RUNNER_PATH too.
    Test::new()
        .file("lib/rolling.rhai", lib_module)
        .script(script)
        .env("RUNNER_PATH", "lib")
        .run()
        .success()
        .stdout_is("lib\n");
    // The script's own folder shadows --lib.
    Test::new()
        .file("lib/rolling.rhai", lib_module)
        .file("rolling.rhai", "fn origin() { \"script folder\" }\n")
        .script(script)
        .args(&["--lib", "lib"])
        .run()
        .success()
        .stdout_is("script folder\n");
}

#[test]
fn embedded_stdlib_imports_from_any_directory() {
    Test::new()
        .script("import \"rolling\" as r;\nprint(\"imported\");\n")
        .run()
        .success()
        .stdout_is("imported\n");
}

#[test]
fn missing_script_file_exits_2() {
    Test::new()
        .args(&["play", "nope.rhai"])
        .run()
        .code(2)
        .stderr_has("cannot read script nope.rhai");
}

#[test]
fn unknown_flag_exits_2() {
    Test::new()
        .args(&["play", "--frobnicate", "x.rhai"])
        .run()
        .code(2);
}

#[test]
fn eval_prints_the_value() {
    Test::new()
        .args(&["eval", "40 + 2"])
        .run()
        .success()
        .stdout_is("42\n");
}

#[test]
fn params_from_flags_and_toml_file_with_typed_defaults() {
    Test::new()
        .file("p.toml", "count = 3\nname = \"from-file\"\nservers = [\"a\", \"b\"]\n")
        .script("print(param(\"name\"));\nprint(param(\"count\") + 1);\nprint(param(\"servers\").len());\nprint(param(\"n\", 10) * 2);\nprint(param(\"missing\", \"dflt\"));\n")
        .args(&["--params", "p.toml", "-p", "name=from-flag", "--param", "n=21"])
        .run()
        .success()
        .stdout_is("from-flag\n4\n2\n42\ndflt\n");
}

#[test]
fn missing_param_is_an_error_naming_it() {
    Test::new()
        .script("param(\"backend\");")
        .run()
        .code(1)
        .stderr_has("missing parameter `backend`");
}

#[test]
fn param_that_does_not_fit_the_default_type_is_an_error() {
    Test::new()
        .script("param(\"n\", 5);")
        .args(&["-p", "n=five"])
        .run()
        .code(1)
        .stderr_has("parameter `n` must be an integer");
}

#[test]
fn env_reads_the_environment() {
    Test::new()
        .script("print(env(\"RUNNER_TEST_VAR\"));\nprint(env(\"RUNNER_TEST_UNSET\", \"d\"));\nenv(\"RUNNER_TEST_UNSET\");")
        .env("RUNNER_TEST_VAR", "xyz")
        .run()
        .code(1)
        .stdout_is("xyz\nd\n")
        .stderr_has("RUNNER_TEST_UNSET is not set");
}

#[test]
fn check_reports_unknown_functions_and_methods_without_running() {
    Test::new()
        .file("bad.rhai", "local().write_file(\"never-written\", \"x\");\nfrobnicate(1);\nlocal().explode();\nsleep(1, 2, 3);\n")
        .args(&["check", "bad.rhai"])
        .run()
        .code(2)
        .stderr_has("unknown function `frobnicate`")
        .stderr_has("bad.rhai:2:1")
        .stderr_has("unknown method `explode`")
        .stderr_has("`sleep` takes 1 argument(s), not 3");
}

#[test]
fn check_passes_a_good_script_and_runs_nothing() {
    let out = Test::new()
        .file("lib/m.rhai", "fn f(x) { x }\n")
        .file("good.rhai", "import \"m\" as m;\nfn twice(x) { x * 2 }\nlet f = |x| x + 1;\nlocal().write_file(\"written\", \"x\");\nprint(twice(m::f(f(1))));\nlet o = #{greet: |x| x};\no.greet(1);\n")
        .args(&["check", "--lib", "lib", "good.rhai"])
        .run()
        .success()
        .stderr_has("good.rhai: ok");
    assert!(
        !out.path("written").exists(),
        "check must not run the script"
    );
}

#[test]
fn check_reports_a_function_missing_from_an_imported_module() {
    Test::new()
        .file("m.rhai", "fn f(x) { x }\n")
        .file("s.rhai", "import \"m\" as m;\nm::g(1);\n")
        .args(&["check", "s.rhai"])
        .run()
        .code(2)
        .stderr_has("module `m` has no function `g`");
}

#[test]
fn check_rejects_a_missing_argument_and_an_option_typo_with_did_you_mean() {
    Test::new()
        .file(
            "rollout.rhai",
            "let lb = haproxy(\"/run/haproxy.sock\");\nlb.wait_drained(\"web_servers/web1\");\nlocal().run(\"true\", #{timout: 5});\nwait_http(\"http://127.0.0.1/\", #{status: 200, timeout: 5});\n",
        )
        .args(&["check", "rollout.rhai"])
        .run()
        .code(2)
        .stderr_has("`wait_drained` takes 2 argument(s), not 1: lb.wait_drained(server: string, timeout: ?)")
        .stderr_has("rollout.rhai:2:4")
        .stderr_has("`run`: unknown option `timout`; did you mean `timeout`?")
        .stderr_has("rollout.rhai:3:");
    Test::new()
        .file("m.rhai", "fn f(a, b) { a }\n")
        .file(
            "s.rhai",
            "import \"m\" as m;\nm::f(1);\nimport \"nope\" as n;\n",
        )
        .args(&["check", "s.rhai"])
        .run()
        .code(2)
        .stderr_has("module \"nope\" not found");
}

#[test]
fn check_catches_arguments_of_the_wrong_type_and_module_arity() {
    Test::new()
        .file("m.rhai", "fn f(a, b) { a }\n")
        .file("s.rhai", "import \"m\" as m;\nm::f(1);\nlocal().write_file(\"f\", 42);\n")
        .args(&["check", "s.rhai"])
        .run()
        .code(2)
        .stderr_has("`m::f` takes 2 argument(s), not 1")
        .stderr_has("`write_file`: argument 2 is an int, but h.write_file(path: string, content: string) -> map wants string there");
}

#[test]
fn check_points_at_the_rhai_surprises_trim_result_and_backtick_escapes() {
    Test::new()
        .file(
            "s.rhai",
            "let s = \" v2 \";\nlet t = s.trim();\ns.trim();\nlet u = s.replace(\"v\", \"w\");\nprint(`line\\n`);\nprint(s.trimmed() + s.replaced(\"v\", \"w\") + [\"a\", \"b\"].join(\",\"));\n",
        )
        .args(&["check", "s.rhai"])
        .run()
        .code(2)
        .stderr_has("`trim()` changes the value in place and returns (), so its result here is (): call it as a statement of its own or `s.trimmed()` for the trimmed copy\n  --> s.rhai:2:11")
        .stderr_lacks("s.rhai:3:")
        .stderr_has("`replace()` changes the value in place")
        .stderr_has("`\\n` in a backtick string is a backslash and `n`")
        .stderr_has("s.rhai:5:12")
        .stderr_lacks("s.rhai:6:");
}

#[test]
fn play_refuses_what_check_rejects_and_a_param_no_param_call_reads() {
    let out = Test::new()
        .script("local().write_file(\"written\", \"x\");\nlocal().run(\"true\", #{timout: 5});\n")
        .run()
        .code(2)
        .stderr_has("unknown option `timout`");
    assert!(!out.path("written").exists(), "nothing runs");
    Test::new()
        .script("print(param(\"backend\", \"web\"));")
        .args(&["-p", "bakend=db"])
        .run()
        .code(2)
        .stderr_has("--param bakend: main.rhai has no param(\"bakend\")")
        .stderr_has("did you mean `backend`?");
    Test::new()
        .script("print(param(\"backend\", \"web\"));")
        .args(&["-p", "backend=db"])
        .run()
        .success()
        .stdout_is("db\n");
    Test::new()
        .file(
            "s.rhai",
            "let a = param(\"backend\");\nlet b = param(\"version\", 1);\n",
        )
        .args(&["check", "s.rhai"])
        .run()
        .success()
        .stderr_has("s.rhai: ok (params: backend, version)");
}

#[test]
fn doc_lists_every_function_with_its_doc_comment() {
    let out = Test::new().args(&["doc"]).run().success();
    for needle in [
        "sleep(seconds: float)",
        "parallel(items: array, limit: int, f: Fn) -> array",
        "lb.wait_drained(server: string, timeout: ?)",
        "h.run(command: ?, options: map) -> map",
        "http_get(",
        "wait_http(",
        "Ctrl-C interrupts it",
        "rolling::upgrade(",
    ] {
        assert!(
            out.stdout.to_lowercase().contains(&needle.to_lowercase()),
            "runner doc lacks {needle}:\n{}",
            out.stdout
        );
    }
    Test::new()
        .args(&["doc", "http", "--markdown"])
        .run()
        .success()
        .stdout_has("## http")
        .stdout_has("### `http_get(url: string)");
    Test::new()
        .args(&["doc", "nosuch"])
        .run()
        .code(2)
        .stderr_has(
            "modules: docker, errors, flow, haproxy, host, http, lock, nginx, process, rolling",
        );
}

#[test]
fn doc_errors_lists_every_kind_a_script_can_branch_on() {
    Test::new()
        .args(&["doc", "errors"])
        .run()
        .success()
        .stdout_has("errors (e.kind)")
        .stdout_has("  timeout ")
        .stdout_has("  no_such_server ")
        .stdout_has("  image_missing ")
        .stdout_has("is_interruption(e)");
}

#[test]
fn json_output_is_one_json_object_per_line() {
    let out = Test::new()
        .script("step(\"one\");\ninfo(\"hello\");\nprint(\"out\");\nlocal().run(\"true\");\n")
        .args(&["--output", "json"])
        .run()
        .success();
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"step")
            && kinds.contains(&"step_end")
            && kinds.contains(&"info")
            && kinds.contains(&"print"),
        "{kinds:?}"
    );
}

#[test]
fn json_output_reports_errors_as_events() {
    let out = Test::new()
        .script("fail(\"nope\");")
        .args(&["--output", "json"])
        .run()
        .code(1);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "run_start");
    // The error, then the end of the run, last.
    let error = &events[events.len() - 2];
    assert_eq!(error["event"], "error");
    assert_eq!(error["kind"], "fail");
    assert!(error["message"].as_str().unwrap().contains("main.rhai:1:1"));
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["outcome"], "failed");
}

#[test]
fn steps_print_their_elapsed_time_off_a_tty() {
    Test::new()
        .script("step(\"Draining web1\");\nsleep(0.2);\nstep(\"Upgrading\", || { step(\"inner\"); });\n")
        .run()
        .success()
        .stderr_has("▸ Draining web1")
        .stderr_has("✓ Draining web1 (0.2s)")
        .stderr_has("  ▸ inner")
        .stderr_has("  ✓ inner")
        .stderr_has("✓ Upgrading");
}

#[test]
fn quiet_hides_steps_and_info_but_not_errors() {
    Test::new()
        .script("step(\"s\");\ninfo(\"chatty\");\nfail(\"boom\");")
        .args(&["-q"])
        .run()
        .code(1)
        .stderr_lacks("chatty")
        .stderr_has("boom");
}

#[test]
fn every_shipped_script_and_stdlib_module_passes_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["scripts", "stdlib"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "rhai") {
                files.push(e.path().display().to_string());
            }
        }
    }
    assert!(files.len() >= 9, "{files:?}");
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = Test::new().args(&args).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn docs_reference_md_is_what_runner_doc_markdown_prints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("docs/reference.md")).unwrap();
    let out = Test::new().args(&["doc", "--markdown"]).run().success();
    assert!(
        out.stdout == committed,
        "docs/reference.md is stale: regenerate it with `runner doc --markdown > docs/reference.md`"
    );
}

#[test]
fn a_playbook_named_like_the_module_it_imports_gets_the_module_not_itself() {
    // `rolling.rhai` importing "rolling": the stdlib module (which has `upgrade`), not the
    // playbook itself (which has not: the check would refuse the call).
    Test::new()
        .file(
            "rolling.rhai",
            "import \"rolling\" as r;\nif false { r::upgrade(1, 2, 3, 4, 5); }\nprint(\"ok\");\n",
        )
        .args(&["play", "rolling.rhai"])
        .run()
        .success()
        .stdout_is("ok\n");
}
