//! Unit tests of the protocol and the parsing, on HAProxy's own texts.

use rhai::{Dynamic, Map};

use super::conn::{complete_error, prompt_start};
use super::parse::*;
use crate::error::Kind;

#[test]
fn prompt_ends_an_answer() {
    assert_eq!(prompt_start(b"1 (initial 1)\n\n> "), Some(15));
    assert_eq!(prompt_start(b"\n> "), Some(1));
    assert_eq!(prompt_start(b"master> "), Some(0));
    assert_eq!(prompt_start(b"\nmaster> "), Some(1));
    assert_eq!(prompt_start(b"1 (initial 1)\n"), None);
    assert_eq!(prompt_start(b"a line that ends with> "), None);
}

#[test]
fn names_with_separators_are_refused() {
    assert!(parse_server("s", "web_servers/web1").is_ok());
    assert!(parse_server("s", "be-1.x/srv:2").is_ok());
    for bad in [
        "web_servers",
        "a/b/c",
        "be/web1;shutdown",
        "be/web 1",
        "be/\n",
        "/web1",
        "be/",
    ] {
        let e = parse_server("s", bad).unwrap_err();
        assert_eq!(e.kind, Kind::Usage, "{bad:?}");
    }
}

#[test]
fn show_stat_fields_honour_quotes_and_types() {
    let rows = parse_stat(
        "s",
        "# pxname,svname,scur,status,\nbe,\"a,b\",3,\"UP \"\"x\"\"\",\n\n",
    )
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["svname"].to_string(), "a,b");
    assert_eq!(rows[0]["scur"].as_int().unwrap(), 3);
    assert_eq!(rows[0]["status"].to_string(), "UP \"x\"");
}

#[test]
fn commands_split_at_unescaped_semicolons() {
    assert_eq!(
        split_commands("show info; get weight a/b;"),
        ["show info", "get weight a/b"]
    );
    assert_eq!(split_commands("set var x a\\;b"), ["set var x a\\;b"]);
}

#[test]
fn status_matches_its_first_word() {
    assert!(status_is("UP 1/3", "UP"));
    assert!(status_is("MAINT (via x/y)", "maint"));
    assert!(status_is("no check", "UP"));
    assert!(!status_is("UPPER", "UP"));
    assert!(!status_is("DOWN", "UP"));
}

#[test]
fn show_proc_lists_current_then_old_workers_and_the_reload_counters() {
    let text = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
        100 master 2 [failed: 1] 0d00h00m01s 2.6\n# workers\n102 worker 1 0d 2.6\n\
        # old workers\n101 worker 0 0d 2.6\n# programs\n\n";
    assert_eq!(parse_workers(text), [(102, false), (101, true)]);
    assert_eq!(parse_reloads(text), Some((2, 1)));
    assert_eq!(parse_reloads("# workers\n102 worker 1 0d 2.6\n"), None);
}

#[test]
fn a_short_show_stat_row_is_an_error_not_missing_counts() {
    let e = parse_stat("s", "# pxname,svname,qcur,qmax,scur,\nweb_servers,web1,0\n").unwrap_err();
    assert!(
        e.message
            .contains("row 1 has 3 field(s) where the header has 6"),
        "{e}"
    );
}

#[test]
fn merged_counts_are_summed_by_key_and_unknown_when_one_is_missing() {
    let row = |name: &str, scur: Dynamic| -> Map {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        m.insert("scur".into(), scur);
        m
    };
    let merged = merge_rows(
        vec![
            (
                "a".into(),
                vec![row("web1", 1.into()), row("web2", 2.into())],
            ),
            (
                "b".into(),
                vec![row("web2", 3.into()), row("web1", Dynamic::UNIT)],
            ),
        ],
        &["name"],
        &["scur"],
    );
    let names: Vec<String> = merged.iter().map(|m| m["name"].to_string()).collect();
    assert_eq!(names, ["web1", "web2"]);
    assert!(merged[0]["scur"].is_unit());
    assert_eq!(merged[1]["scur"].as_int().unwrap(), 5);
}

#[test]
fn master_prompts_and_routing() {
    assert_eq!(prompt_start(b"master[ReloadFailed]> "), Some(0));
    assert!(is_reload("reload") && is_reload("@master reload") && !is_reload("@1 reload"));
    assert!(master_only("show proc") && master_only("@master show proc"));
    assert!(!master_only("show info") && !master_only("@masterx reload"));
    assert!(complete_error(
        "Can't find the target PID matching the prefix '@!9'\n"
    ));
    assert!(!complete_error("# pxname,svname\nweb_servers,web1"));
}
