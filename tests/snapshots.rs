//! Snapshots of what users read: the help, `runner doc`, and rendered errors, in `snapshots/`.
//! A change to any of them shows as a diff to review (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test --test test snapshots::` and read the .snap files); under
//! `CI=true` a mismatch fails and nothing is written.
//!
//! Each run is in its own temp dir with relative script paths, so the paths shown are stable; in
//! errors, the filters replace what still varies between runs (the time of day, durations).

use crate::harness::*;

/// Assert the snapshot `name` of `text`, which must be the same on every run.
fn assert_snapshot(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

/// Assert the snapshot `name` of a failed run: its exit code and output, as a user sees them,
/// with what varies between runs replaced.
fn assert_failure_snapshot(name: &str, out: &Outcome) {
    let text = format!(
        "exit code {}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    )
    // The run's temp dir, should it be named.
    .replace(&out.dir.path().display().to_string(), "[dir]");
    let mut settings = insta::Settings::clone_current();
    // Off a TTY, each progress line starts with the time of day.
    settings.add_filter(r"(?m)^\d{2}:\d{2}:\d{2} ", "[time] ");
    // How long a step took.
    settings.add_filter(r"\(\d+\.\d+s\)", "([duration])");
    settings.bind(|| assert_snapshot(name, &text));
}

#[test]
fn help() {
    let out = Test::new().args(&["--help"]).run().success();
    assert_snapshot("help", &out.stdout);
}

#[test]
fn play_help() {
    let out = Test::new().args(&["play", "--help"]).run().success();
    assert_snapshot("play_help", &out.stdout);
}

#[test]
fn doc() {
    let first = Test::new().args(&["doc"]).run().success();
    let second = Test::new().args(&["doc"]).run().success();
    assert!(
        first.stdout == second.stdout,
        "runner doc prints something else each time"
    );
    assert_snapshot("doc", &first.stdout);
}

#[test]
fn compile_error_shows_file_line_column_and_a_caret() {
    let out = Test::new()
        .script("let x = 1;\nlet y = ;\nprint(x);\n")
        .run()
        .code(2);
    assert_failure_snapshot("compile_error", &out);
}

#[test]
fn runtime_error_in_an_imported_module_shows_the_call_chain() {
    let out = Test::new()
        .file(
            "lib/deploy.rhai",
            "fn upgrade(servers) {\n    for s in servers {\n        check(s);\n    }\n}\n\
             fn check(server) {\n    if server == \"web2\" {\n        fail(`${server} answers 503`);\n    }\n}\n",
        )
        .script(
            "import \"deploy\" as deploy;\nstep(\"Upgrading\");\ndeploy::upgrade([\"web1\", \"web2\"]);\n",
        )
        .args(&["--lib", "lib"])
        .run()
        .code(1);
    assert_failure_snapshot("runtime_error_in_module", &out);
}

#[test]
fn check_reports_an_unknown_function() {
    let out = Test::new()
        .file(
            "deploy.rhai",
            "let h = local();\nh.run(\"true\");\nrestart_service(h, \"nginx\");\n",
        )
        .args(&["check", "deploy.rhai"])
        .run()
        .code(2);
    assert_failure_snapshot("check_unknown_function", &out);
}
