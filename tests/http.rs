//! HTTP checks against a real busybox httpd.

use crate::harness::*;

#[test]
fn http_get_returns_status_body_and_headers() {
    let httpd = Httpd::start("version v1\n");
    Test::new()
        .script(&format!("let r = http_get(\"{}\");\nprint(r.status);\nprint(r.body);\nprint(r.headers[\"content-type\"]);\n", httpd.url()))
        .run()
        .success()
        .stdout_is("200\nversion v1\n\ntext/html\n");
}

#[test]
fn http_get_of_a_missing_page_returns_its_status() {
    let httpd = Httpd::start("x");
    Test::new()
        .script(&format!(
            "print(http_get(\"{}nope.html\").status);",
            httpd.url()
        ))
        .run()
        .success()
        .stdout_is("404\n");
}

#[test]
fn http_get_connection_refused_is_a_clear_error_naming_the_url() {
    let closed = ClosedPort::new();
    let port = closed.port;
    Test::new()
        .script(&format!("http_get(\"http://127.0.0.1:{port}/health\");"))
        .run()
        .code(1)
        .stderr_has(&format!(
            "GET http://127.0.0.1:{port}/health: Connection refused"
        ));
}

#[test]
fn wait_http_returns_once_the_body_matches() {
    let httpd = Httpd::start("version v1\n");
    let index = httpd.root.path().join("index.html");
    let t = Test::new().script(&format!(
        "local().run(\"sleep 0.4; echo version v2 > {}\", #{{read_only: true}});\nlet r = wait_http(\"{}\", #{{contains: \"v2\", timeout: 5, interval: 0.1}});\nprint(r.body);",
        index.display(),
        httpd.url()
    ));
    t.run().success().stdout_is("version v2\n\n");
}

#[test]
fn wait_http_times_out_with_what_it_saw_last() {
    let httpd = Httpd::start("version v1\n");
    let out = Test::new()
        .script(&format!("wait_http(\"{}\", #{{contains: \"v2\", timeout: 0.5, interval: 0.1}});", httpd.url()))
        .run()
        .code(1)
        .stderr_has(&format!("{}: waiting for status 200 with \"v2\" in the body: still not done after 0.5s; last seen: status 200 without \"v2\"", httpd.url()));
    assert!(out.elapsed.as_secs() < 5);
}

#[test]
fn wait_http_on_a_closed_port_times_out_with_the_connection_error() {
    let closed = ClosedPort::new();
    let port = closed.port;
    Test::new()
        .script(&format!(
            "wait_http(\"http://127.0.0.1:{port}/\", #{{timeout: 0.3}});"
        ))
        .run()
        .code(1)
        .stderr_has("still not done after 0.3s; last seen: GET")
        .stderr_has("Connection refused");
}

#[test]
fn every_request_opens_a_new_connection() {
    // A server that keeps connections alive: a client that pools them would send the second
    // request on the first connection, and a health check would test an old connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                use std::io::{BufRead, Write};
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if line == "\r\n" {
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
                    }
                    line.clear();
                }
            });
        }
    });
    Test::new()
        .script(&format!(
            "for i in 0..3 {{ print(http_get(\"http://127.0.0.1:{port}/\").body) }}"
        ))
        .run()
        .success()
        .stdout_is("ok\nok\nok\n");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}
