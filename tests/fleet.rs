//! Rolling upgrades for fleets against a real haproxy and busybox backends under load: batches and
//! canaries, a failure budget, a gate between batches, the surge that never lowers capacity.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::haproxy::{rolling_script, KillHttpd};
use crate::harness::*;

/// Three backends `web1`..`web3` behind `web_servers` (retries 0: a request sent to a stopped
/// backend fails), each an httpd answering "webN".
struct Fleet {
    lb: Haproxy,
    httpds: Vec<(&'static str, Httpd)>,
    _cleanup: KillHttpd,
}

impl Fleet {
    fn start() -> Fleet {
        let httpds: Vec<(&'static str, Httpd)> = ["web1", "web2", "web3"]
            .into_iter()
            .map(|n| (n, Httpd::start(&format!("{n}\n"))))
            .collect();
        let servers: Vec<(&str, u16)> = httpds.iter().map(|(n, h)| (*n, h.port)).collect();
        let lb = Haproxy::builder().retries(0).servers(&servers).start();
        for (n, _) in &httpds {
            lb.wait_up(n);
        }
        let cleanup = KillHttpd(httpds.iter().map(|(_, h)| h.port).collect());
        Fleet {
            lb,
            httpds,
            _cleanup: cleanup,
        }
    }

    /// The redeploy table of `rolling_script`.
    fn roots(&self) -> Vec<(&str, u16, &std::path::Path)> {
        self.httpds
            .iter()
            .map(|(n, h)| (*n, h.port, h.root.path()))
            .collect()
    }

    fn page(&self, name: &str) -> String {
        let root = self
            .httpds
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .root
            .path();
        std::fs::read_to_string(root.join("index.html")).unwrap()
    }
}

/// One look at `web_servers`: each server and its status.
type Sample = Vec<(String, String)>;

/// `show stat` of `web_servers`, sampled every few milliseconds on a thread.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(lb: &Haproxy) -> Sampler {
        let sock = lb.admin.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let stat = socat(&sock, "show stat web_servers 4 -1");
                let rows: Sample = stat
                    .lines()
                    .skip(1)
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split(',').collect();
                        (f.len() > 17).then(|| (f[1].to_string(), f[17].to_string()))
                    })
                    .collect();
                if !rows.is_empty() {
                    out.lock().unwrap().push(rows);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }
}

/// The servers a sample shows out of rotation (anything but UP).
fn out_of_rotation(sample: &[(String, String)]) -> BTreeSet<String> {
    sample
        .iter()
        .filter(|(_, status)| !status.starts_with("UP"))
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn batch_1_then_2_takes_one_server_out_then_two_and_loses_no_request() {
    let fleet = Fleet::start();
    let traffic = Traffic::start(fleet.lb.front);
    traffic.wait_past(0, 20);
    let sampler = Sampler::start(&fleet.lb);
    Test::new()
        .script(&rolling_script(
            &fleet.lb,
            "[\"web1\", \"web2\", \"web3\"]",
            "#{batch: [1, 2], drain_timeout: 10}",
            &fleet.roots(),
        ))
        .run()
        .success()
        .stderr_has("Upgrading batch 2/2 of web_servers: [\"web2\", \"web3\"]");
    let samples = sampler.stop();
    let mark = traffic.mark();
    traffic.wait_past(mark, 20);
    let bodies = traffic.stop_all_ok();
    let during_canary: Vec<_> = samples
        .iter()
        .map(|s| out_of_rotation(s))
        .filter(|o| o.contains("web1"))
        .collect();
    assert!(!during_canary.is_empty(), "web1 never seen out");
    assert!(
        during_canary.iter().all(|o| o.len() == 1),
        "more than the canary out: {during_canary:?}"
    );
    let second: Vec<_> = samples
        .iter()
        .map(|s| out_of_rotation(s))
        .filter(|o| o.contains("web2") || o.contains("web3"))
        .collect();
    assert!(second.iter().all(|o| o.len() <= 2), "{second:?}");
    assert!(
        second.iter().any(|o| o.len() == 2),
        "web2 and web3 were never out together: not a batch of 2"
    );
    for n in ["web1", "web2", "web3"] {
        assert_eq!(fleet.page(n), format!("{n} v2"));
        assert!(
            fleet.lb.status(n).starts_with("UP"),
            "{n}: {}",
            fleet.lb.status(n)
        );
    }
    assert!(bodies[bodies.len() - 10..]
        .iter()
        .all(|b| b.ends_with("v2")));
}

#[test]
fn max_failed_1_goes_on_past_a_broken_server_leaves_it_in_maint_and_names_both() {
    let fleet = Fleet::start();
    let script = rolling_script(
        &fleet.lb,
        "[\"web1\", \"web2\", \"web3\"]",
        "#{max_failed: 1, drain_timeout: 10}",
        &fleet.roots(),
    )
    .replace(
        "let b = backends[server];",
        "if server == \"web2\" { fail(\"the new web2 does not start\") }\n    let b = backends[server];",
    );
    Test::new()
        .script(&script)
        .run()
        .code(1)
        .stderr_has("1 server(s) failed and stay out of rotation (maintenance): web_servers/web2: the new web2 does not start")
        .stderr_has("done: [\"web1\", \"web3\"]");
    assert_eq!(
        fleet.page("web3"),
        "web3 v2",
        "the third server was not upgraded"
    );
    assert_eq!(fleet.page("web2"), "web2\n");
    assert!(
        fleet.lb.status("web2").starts_with("MAINT"),
        "{}",
        fleet.lb.status("web2")
    );
    assert!(fleet.lb.status("web1").starts_with("UP"));
    assert!(fleet.lb.status("web3").starts_with("UP"));
}

#[test]
fn between_answering_false_after_the_canary_leaves_the_other_servers_untouched() {
    let fleet = Fleet::start();
    let out = Test::new()
        .script(&rolling_script(
            &fleet.lb,
            "[\"web1\", \"web2\", \"web3\"]",
            "#{batch: [1, 2], between: |done, next| { print(`done ${done}, next ${next}`); false }}",
            &fleet.roots(),
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .success()
        .stdout_has("done [\"web1\"], next [\"web2\", \"web3\"]")
        .stderr_has("stopped: between() answered false");
    assert_eq!(fleet.page("web1"), "web1 v2");
    assert_eq!(fleet.page("web2"), "web2\n");
    assert_eq!(fleet.page("web3"), "web3\n");
    let touched: Vec<String> = journal_lines(&out.path("j.jsonl"))
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .filter(|a| a.contains("web2") || a.contains("web3"))
        .collect();
    assert!(touched.is_empty(), "{touched:?}");
}

#[test]
fn a_batch_that_would_leave_nothing_serving_is_refused_before_anything_changes() {
    let fleet = Fleet::start();
    let out = Test::new()
        .script(&rolling_script(
            &fleet.lb,
            "[\"web1\", \"web2\", \"web3\"]",
            "#{batch: \"100%\"}",
            &fleet.roots(),
        ))
        .args(&["--journal", "j.jsonl"])
        .run()
        .code(1)
        .stderr_has("refused before anything changed: a batch of 3 server(s) out of rotation would leave 0 of the 3 in rotation");
    // Only the upgrade's lock was taken (and released).
    let changed: Vec<_> = journal_lines(&out.path("j.jsonl"))
        .into_iter()
        .filter(|e| e["target"] != "local")
        .collect();
    assert!(changed.is_empty(), "something changed: {changed:?}");
}

#[test]
fn surge_over_three_servers_never_has_fewer_than_three_in_rotation_and_removes_the_old_ones() {
    let fleet = Fleet::start();
    let lb = &fleet.lb;
    // The new version of each server: a second httpd serving "webN v2" on a port of its own.
    let news: Vec<(String, Httpd)> = ["web1", "web2", "web3"]
        .into_iter()
        .map(|n| (n.to_string(), Httpd::start(&format!("{n} v2\n"))))
        .collect();
    let table: Vec<String> = news
        .iter()
        .map(|(n, h)| format!("{n}: \"127.0.0.1:{}\"", h.port))
        .collect();
    let traffic = Traffic::start(lb.front);
    traffic.wait_past(0, 20);
    let sampler = Sampler::start(lb);
    Test::new()
        .script(&format!(
            "import \"rolling\" as rolling;\n\
             let lb = haproxy(\"{}\");\n\
             let next = #{{{}}};\n\
             let r = rolling::surge(lb, \"web_servers\", [\"web1\", \"web2\", \"web3\"], #{{drain_timeout: 10}}, |server| next[server]);\n\
             print(r.done);\n",
            lb.sock(),
            table.join(", ")
        ))
        .run()
        .success()
        .stdout_is("[\"web1-g2\", \"web2-g2\", \"web3-g2\"]\n");
    let samples = sampler.stop();
    let mark = traffic.mark();
    traffic.wait_past(mark, 20);
    let bodies = traffic.stop_all_ok();
    let fewest = samples
        .iter()
        .map(|s| s.iter().filter(|(_, st)| st.starts_with("UP")).count())
        .min()
        .unwrap();
    assert!(
        fewest >= 3,
        "only {fewest} server(s) in rotation at some point"
    );
    let stat = lb.raw("show stat web_servers 4 -1");
    for n in ["web1", "web2", "web3"] {
        assert!(
            !stat.contains(&format!(",{n},")),
            "{n} is still there:\n{stat}"
        );
        assert!(lb.status(&format!("{n}-g2")).starts_with("UP"), "{stat}");
    }
    assert!(bodies[bodies.len() - 10..]
        .iter()
        .all(|b| b.ends_with("v2")));
}

#[test]
fn min_healthy_takes_a_server_that_turns_unhealthy_under_observation_out_and_counts_it_failed() {
    let fleet = Fleet::start();
    // web2 passes its first health check, then fails every later one.
    let opts = "#{min_healthy: 1, max_failed: 1, health: |server| {\n\
                \x20   if server != \"web2\" { return true; }\n\
                \x20   local().run(\"echo >> web2-checks\", #{read_only: true});\n\
                \x20   local().read_file(\"web2-checks\").len() <= 1\n\
                }}";
    Test::new()
        .script(&rolling_script(
            &fleet.lb,
            "[\"web1\", \"web2\", \"web3\"]",
            opts,
            &fleet.roots(),
        ))
        .run()
        .code(1)
        .stderr_has("▸ Observing [\"web2\"] for 1s")
        .stderr_has("web_servers/web2 its health check failed while under observation: taken out of rotation (maintenance)")
        .stderr_has("done: [\"web1\", \"web3\"]");
    assert!(
        fleet.lb.status("web2").starts_with("MAINT"),
        "{}",
        fleet.lb.status("web2")
    );
    assert!(fleet.lb.status("web3").starts_with("UP"));
    assert_eq!(fleet.page("web3"), "web3 v2");
}
