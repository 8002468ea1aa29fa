//! The local host handle: commands, exit codes, timeouts, files.

use crate::harness::*;

#[test]
fn run_string_goes_through_the_shell_and_returns_code_stdout_stderr() {
    Test::new()
        .script("let r = local().run(\"echo out; echo err >&2\");\nprint(r.code);\nprint(r.stdout);\nprint(r.stderr);\n")
        .run()
        .success()
        .stdout_is("0\nout\n\nerr\n\n");
}

#[test]
fn run_array_passes_each_element_as_one_argument() {
    let out = Test::new()
        .script("let r = local().run([\"printf\", \"%s|\", \"a b; touch pwned\", \"$HOME\"]);\nprint(r.stdout);\n")
        .run()
        .success()
        .stdout_is("a b; touch pwned|$HOME|\n");
    assert!(!out.path("pwned").exists());
}

#[test]
fn non_zero_exit_throws_with_host_command_code_and_stderr() {
    Test::new()
        .script("local().run(\"echo detail >&2; exit 3\");")
        .run()
        .code(1)
        .stderr_has("local: `echo detail >&2; exit 3` exited with code 3")
        .stderr_has("detail");
}

#[test]
fn check_false_returns_the_code_instead_of_throwing() {
    Test::new()
        .script("print(local().run(\"exit 5\", #{check: false}).code);")
        .run()
        .success()
        .stdout_is("5\n");
}

#[test]
fn missing_command_is_a_distinct_error() {
    Test::new()
        .script("try { local().run([\"no-such-program-xyz\"]) } catch (e) { print(e.kind) }\nlocal().run(\"no-such-program-xyz\");")
        .run()
        .code(1)
        .stdout_is("not_found\n")
        .stderr_has("command not found (exit code 127)");
}

#[test]
fn command_timeout_kills_it_and_names_the_command() {
    let out = Test::new()
        .script("try { local().run(\"sleep 20\", #{timeout: 0.3}) } catch (e) { print(e.kind); print(e.message) }")
        .run()
        .success()
        .stdout_is("timeout\nlocal: `sleep 20` timed out after 0.3s\n");
    assert!(out.elapsed.as_secs() < 5);
}

#[test]
fn stdin_env_and_cwd_options_reach_the_command() {
    Test::new()
        .file("sub/marker", "")
        .script("print(local().run(\"cat; echo $GREETING; ls\", #{stdin: \"piped\\n\", env: #{GREETING: \"hi\"}, cwd: \"sub\"}).stdout);")
        .run()
        .success()
        .stdout_is("piped\nhi\nmarker\n\n");
}

#[test]
fn write_file_replaces_content_atomically_and_keeps_the_mode() {
    let out = Test::new()
        .file("conf", "old\n")
        .script("let l = local();\nl.run(\"chmod 640 conf\");\nl.write_file(\"conf\", \"new\\n\");\nprint(l.read_file(\"conf\"));\nprint(l.exists(\"conf\"));\nprint(l.exists(\"nope\"));\n")
        .run()
        .success()
        .stdout_is("new\n\ntrue\nfalse\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(out.path("conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".runner-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn read_file_of_a_missing_file_names_host_and_path() {
    Test::new()
        .script("local().read_file(\"/nonexistent/file\");")
        .run()
        .code(1)
        .stderr_has("local: cannot read /nonexistent/file");
}

#[test]
fn upload_and_download_round_trip_byte_identical() {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let t = Test::new();
    std::fs::write(t.path().join("blob"), &data).unwrap();
    let out = t.script("let l = local();\nl.upload(\"blob\", \"up/blob2\");\nl.download(\"up/blob2\", \"blob3\");\n").file("up/.keep", "").run().success();
    assert_eq!(std::fs::read(out.path("blob3")).unwrap(), data);
}

#[test]
fn host_handle_has_a_name_and_vars() {
    Test::new()
        .script("let l = local();\nprint(l.name);\nprint(l.vars);\nprint(`${l}`);")
        .run()
        .success()
        .stdout_is("local\n#{}\nlocal\n");
}

#[test]
fn timeout_stops_the_commands_children_too() {
    // `sh -c` runs sleep as its child: killing only the shell would leave the sleep behind.
    Test::new()
        .script("try { local().run(\"sleep 41.7; echo done\", #{timeout: 0.3}) } catch (e) { print(e.kind) }")
        .run()
        .success()
        .stdout_is("timeout\n");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let left = std::process::Command::new("pgrep")
        .args(["-f", "sleep 41.7"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn output_beyond_max_output_is_an_output_limit_error_naming_host_and_command() {
    Test::new()
        .script(
            "print(local().run(\"head -c 1000 /dev/zero\", #{max_output: 1000}).stdout.len());\n\
             try { local().run(\"head -c 3000000 /dev/zero\", #{max_output: 1000000}) } catch (e) { print(e.kind); print(e.message) }\n\
             try { local().run(\"head -c 70000000 /dev/zero\") } catch (e) { print(e.kind); print(e.message) }\n",
        )
        .run()
        .success()
        .stdout_is(
            "1000\n\
             output_limit\n\
             local: `head -c 3000000 /dev/zero` wrote 2.9 MiB to stdout, more than max_output (976.6 KiB): what came past 976.6 KiB was discarded; the command exited with code 0\n\
             output_limit\n\
             local: `head -c 70000000 /dev/zero` wrote 66.8 MiB to stdout, more than max_output (64 MiB): what came past 64 MiB was discarded; the command exited with code 0\n",
        );
}

#[test]
fn a_failing_commands_error_and_journal_carry_only_the_tail_of_its_stderr() {
    let out = Test::new()
        .script("local().run(\"head -c 5000000 /dev/zero | tr '\\\\0' x >&2; echo >&2; echo the end >&2; exit 3\");")
        .args(&["--journal", "j.jsonl"])
        .run()
        .code(1)
        .stderr_has("exited with code 3")
        .stderr_has("the end");
    assert!(
        out.stderr.len() < 10_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    let journal = std::fs::metadata(out.path("j.jsonl")).unwrap().len();
    assert!(journal < 10_000, "a journal of {journal} bytes");
}

#[test]
fn control_sequences_are_stripped_from_what_people_see_not_from_values() {
    Test::new()
        .script(
            "let r = local().run(\"printf 'a\\\\033[31mred\\\\033[0m\\\\tb\\\\r\\\\n'\");\n\
             print(r.stdout.contains(\"\\x1b[31m\"));\n\
             local().run(\"printf '\\\\033]0;title\\\\007bad\\\\033[2J\\\\n' >&2; exit 1\");\n",
        )
        .args(&["-v"])
        .run()
        .code(1)
        .stdout_is("true\n")
        .stderr_has("local: ared\tb\n")
        .stderr_has("exited with code 1:\nbad\n")
        .stderr_lacks("\x1b")
        .stderr_lacks("\x07")
        .stderr_lacks("\r");
}

#[test]
fn template_renders_a_loop_and_a_filter() {
    Test::new()
        .script("print(template(\"{% for s in servers %}server {{ s | upper }}:{{ port }};\\n{% endfor %}{{ servers | join(',') }}\", #{servers: [\"web1\", \"web2\"], port: 80}));")
        .run()
        .success()
        .stdout_is("server WEB1:80;\nserver WEB2:80;\nweb1,web2\n");
}

#[test]
fn template_with_an_undefined_variable_fails_naming_it_and_the_line() {
    Test::new()
        .script("try { template(\"listen {{ port }};\\nroot {{ rot }};\\n\", #{port: 80}) } catch (e) { print(e.kind); print(e.message) }")
        .run()
        .success()
        .stdout_is("template\ntemplate <text>: line 2: undefined variable `rot`: root {{ rot }};\n");
}

#[test]
fn host_template_renders_a_file_with_host_vars_and_writes_it_with_its_mode() {
    let out = Test::new()
        .file("app.conf.j2", "host={{ inventory_hostname }}\nport={{ port }}\n")
        .script("print(local().template(\"app.conf.j2\", \"app.conf\", #{port: 8080}, #{mode: \"0640\"}).changed);")
        .run()
        .success()
        .stdout_is("true\n");
    assert_eq!(
        std::fs::read_to_string(out.path("app.conf")).unwrap(),
        "host=local\nport=8080\n"
    );
    assert_eq!(mode(&out.path("app.conf")), 0o640);
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn write_file_with_mode_0600_sets_it_on_a_new_and_an_existing_file() {
    let out = Test::new()
        .file("old", "x\n")
        .script("let l = local();\nl.write_file(\"new\", \"secret\\n\", #{mode: \"0600\"});\nl.write_file(\"old\", \"x\\n\", #{mode: \"0600\"});\n")
        .run()
        .success();
    assert_eq!(mode(&out.path("new")), 0o600);
    assert_eq!(mode(&out.path("old")), 0o600, "a mode alone is a change");
    assert_eq!(
        std::fs::read_to_string(out.path("new")).unwrap(),
        "secret\n"
    );
}

#[test]
fn write_file_of_the_same_content_changes_nothing_and_is_not_rewritten() {
    let t = Test::new().file("conf", "same\n");
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(t.path().join("conf")).unwrap().ino();
    let out = t
        .script("print(local().write_file(\"conf\", \"same\\n\"));")
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_is("#{\"changed\": false}\n");
    assert_eq!(
        std::fs::metadata(out.path("conf")).unwrap().ino(),
        inode,
        "rewritten"
    );
    let effects = journal_records(&out.path("j.jsonl"))
        .into_iter()
        .filter(|r| r["type"] == "effect" || r["type"] == "effect_start")
        .count();
    assert_eq!(effects, 0, "an unchanged file is no change");
}

#[test]
fn dry_run_shows_what_a_write_would_change_as_a_diff() {
    let out = Test::new()
        .file("index.html", "<h1>v1</h1>\nfooter\n")
        .script("print(local().write_file(\"index.html\", \"<h1>v2</h1>\\nfooter\\n\").changed);")
        .args(&["--dry-run"])
        .run()
        .success()
        .stdout_is("true\n")
        .stderr_has("--- local:index.html\n+++ local:index.html\n")
        .stderr_has("\n-<h1>v1</h1>\n+<h1>v2</h1>\n footer\n")
        .stderr_has("would write index.html on local");
    assert_eq!(
        std::fs::read_to_string(out.path("index.html")).unwrap(),
        "<h1>v1</h1>\nfooter\n"
    );
}

#[test]
fn a_mode_given_as_an_int_is_refused_before_writing() {
    let out = Test::new()
        .script("local().write_file(\"f\", \"x\", #{mode: 644});")
        .run()
        .code(1)
        .stderr_has("mode must be a string of octal digits such as \"0644\"");
    assert!(!out.path("f").exists());
}
