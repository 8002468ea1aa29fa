//! A run guarded against its own script: secrets never shown or recorded, a script that does not
//! pass `runner check` never started, a "no" to `confirm` that stops the run.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;

const SECRET: &str = "s3cr3t-T0ken-9f2";

#[test]
fn a_secret_never_appears_in_output_errors_json_events_or_the_journal() {
    let sshd = Sshd::start();
    let script = format!(
        "let t = secret(\"DEPLOY_TOKEN\");\n\
         let h = {};\n\
         h.run([\"echo\", `token=${{t}}`]);\n\
         print(`printed ${{t}}`);\n\
         try {{ http_get(`http://127.0.0.1:1/?token=${{t}}`, #{{timeout: 1, headers: #{{Authorization: `Bearer ${{t}}`}}}}); }} catch (e) {{ warn(e.message); }}\n\
         local().run(`echo ${{t}} >&2; false`);\n",
        sshd.handle()
    );
    let human = Test::new()
        .script(&script)
        .env("DEPLOY_TOKEN", SECRET)
        .args(&["-v", "--journal", "j.jsonl"])
        .run()
        .code(1);
    for (what, text) in [("stdout", &human.stdout), ("stderr", &human.stderr)] {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
    }
    assert!(human.stdout.contains("printed ***"), "{}", human.stdout);
    assert!(human.stderr.contains("token=***"), "{}", human.stderr);
    assert!(human.stderr.contains("?token=***"), "{}", human.stderr);
    let journal = std::fs::read_to_string(human.path("j.jsonl")).unwrap();
    assert!(journal.contains("token=***"), "{journal}");
    assert!(
        !journal.contains(SECRET),
        "the journal records the secret:\n{journal}"
    );

    let json = Test::new()
        .script(&script)
        .env("DEPLOY_TOKEN", SECRET)
        .args(&["--output", "json", "-v"])
        .run()
        .code(1);
    assert!(!json.stdout.contains(SECRET), "{}", json.stdout);
    assert!(json.stdout.contains("printed ***"), "{}", json.stdout);
}

#[test]
fn an_inventorys_secret_variables_are_masked_in_hosts_output_and_the_journal() {
    let inv = format!("[web]\nweb1 ansible_password={SECRET} db_password=hunter22 token_ttl=60\n");
    for output in ["human", "json"] {
        let out = Test::new()
            .file("hosts", &inv)
            .args(&["hosts", "-i", "hosts", "--output", output])
            .run()
            .success();
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains(SECRET) && !text.contains("hunter22"),
                "{text}"
            );
        }
        assert!(out.stdout.contains("***"), "{}", out.stdout);
        assert!(
            out.stdout.contains("60"),
            "token_ttl is no secret: {}",
            out.stdout
        );
    }
    // A script still gets the real values; what runner shows and records has them masked.
    let out = Test::new()
        .file("hosts", &inv)
        .script(
            "let h = hosts(\"web\")[0];\n\
             print(`${h.vars.db_password.len()} ${h.vars.db_password}`);\n\
             local().run([\"sh\", \"-c\", `echo ${h.vars.ansible_password} >&2; false`]);",
        )
        .args(&["-i", "hosts", "--journal", "j.jsonl"])
        .run()
        .code(1)
        .stdout_is("8 ***\n");
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    let journal = std::fs::read_to_string(out.path("j.jsonl")).unwrap();
    assert!(journal.contains("***"), "{journal}");
    assert!(
        !journal.contains(SECRET) && !journal.contains("hunter22"),
        "{journal}"
    );
}

#[test]
fn a_secret_from_a_file_is_masked_and_a_missing_one_is_a_clear_error() {
    Test::new()
        .file("pw", &format!("{SECRET}\n"))
        .script("let pw = secret(\"db\", #{file: \"pw\"});\nprint(`${pw.len()} ${pw}`);\n")
        .run()
        .success()
        .stdout_is(&format!("{} ***\n", SECRET.len()));
    Test::new()
        .script("secret(\"NOT_SET_ANYWHERE\");")
        .run()
        .code(1)
        .stderr_has(
            "secret NOT_SET_ANYWHERE: the environment variable NOT_SET_ANYWHERE is not set",
        );
}

#[test]
fn play_refuses_a_script_that_fails_the_check_before_changing_anything() {
    let out = Test::new()
        .script("local().write_file(\"changed.txt\", \"x\");\nlocal().frobnicate();\n")
        .run()
        .code(2)
        .stderr_has("unknown method `frobnicate`")
        .stderr_has("nothing was run");
    assert!(!out.path("changed.txt").exists());
    assert!(!out.path("state").exists(), "no journal either");
}

/// `runner play main.rhai` in `dir` on a terminal (`script` gives it one), answering `answer`.
fn play_on_a_tty(dir: &std::path::Path, answer: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} play main.rhai", env!("CARGO_BIN_EXE_runner")),
            "/dev/null",
        ])
        .current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn answering_no_to_confirm_stops_the_run_before_anything_after_it() {
    let t = Test::new()
        .script("confirm(\"Upgrade 3 servers?\");\nlocal().write_file(\"deployed.txt\", \"x\");\n");
    let (code, shown) = play_on_a_tty(t.path(), "n\n");
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("was answered no"), "{shown}");
    assert!(!t.path().join("deployed.txt").exists(), "deployed anyway");
    let (code, shown) = play_on_a_tty(t.path(), "y\n");
    assert_eq!(code, 0, "{shown}");
    assert!(t.path().join("deployed.txt").exists());
    let t = Test::new()
        .script("if !confirm(\"Restart workers?\", #{stop: false}) { print(\"kept\"); }\n");
    let (code, shown) = play_on_a_tty(t.path(), "n\n");
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("kept"), "{shown}");
}
