//! HTTP health checks: a GET with a timeout, and a wait until a URL answers as expected.

use std::time::Duration;

use rhai::plugin::*;
use rhai::Map;

use crate::error::{Failure, Kind};
use crate::run::Run;

/// Default time a single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response as scripts see it.
struct Response {
    status: i64,
    body: String,
    headers: Map,
}

impl Response {
    fn to_map(&self) -> Map {
        let mut m = Map::new();
        m.insert("status".into(), self.status.into());
        m.insert("body".into(), self.body.clone().into());
        m.insert("headers".into(), self.headers.clone().into());
        m
    }
}

/// The innermost cause of a request error: "Connection refused (os error 111)" rather than
/// "error sending request for url".
pub(crate) fn cause(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    if e.is_timeout() {
        msg = "timed out".into();
    }
    msg
}

fn get(
    run: &Run,
    url: &str,
    timeout: Duration,
    headers: &[(String, String)],
) -> Result<Response, Failure> {
    let target = url.to_string();
    let mut req = run.http().get(url).timeout(timeout);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    run.block_on(&target, "GET", None, async {
        let fail = |e: reqwest::Error| {
            let kind = if e.is_timeout() {
                Kind::Timeout
            } else {
                Kind::Http
            };
            Failure::new(kind, url, format!("GET {url}: {}", cause(&e)))
        };
        let resp = req.send().await.map_err(fail)?;
        let status = resp.status().as_u16() as i64;
        let mut headers = Map::new();
        for (k, v) in resp.headers() {
            headers.insert(
                k.as_str().into(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            );
        }
        let body = resp.text().await.map_err(fail)?;
        Ok(Response {
            status,
            body,
            headers,
        })
    })
}

#[export_module]
pub mod http_api {
    use super::*;
    use crate::opts::Opts;
    use rhai::{EvalAltResult, NativeCallContext};

    type Res<T> = Result<T, Box<EvalAltResult>>;

    /// GET `url`. Returns `#{status, body, headers}` whatever the status; a connection that fails or
    /// times out (10 s) throws naming the URL. Every request opens a new connection (no keep-alive
    /// reuse), so it reaches whichever server process accepts now.
    ///
    /// ```rhai
    /// let r = http_get("http://127.0.0.1:8080/health");
    /// if r.status != 200 { fail(`unhealthy: ${r.status}`) }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn http_get(ctx: NativeCallContext, url: &str) -> Res<Map> {
        http_get_with(ctx, url, Map::new())
    }

    /// `http_get` with options: `timeout` (seconds), `headers` (a map).
    #[rhai_fn(name = "http_get", return_raw)]
    pub fn http_get_with(ctx: NativeCallContext, url: &str, options: Map) -> Res<Map> {
        let run = Run::of(&ctx);
        let o = Opts::new(options, &["timeout", "headers"], url)?;
        let timeout = o.secs("timeout")?.unwrap_or(REQUEST_TIMEOUT);
        Ok(get(&run, url, timeout, &o.string_map("headers")?)?.to_map())
    }

    /// Poll `url` until it answers with the expected status (default 200) and, if given, a body that
    /// contains `contains`. Options: `status`, `contains`, `timeout` (default 30 s), `interval`
    /// (default 0.5 s), `headers`. Returns the matching response; on timeout, throws with what was
    /// seen last. Under `--dry-run`, one request: if it does not answer as wanted yet, the wait is
    /// reported ("would wait for ...") and `#{status: (), dry_run: true}` returned.
    ///
    /// ```rhai
    /// wait_http("http://127.0.0.1:8081/", #{contains: "v2", timeout: 30});
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_http(ctx: NativeCallContext, url: &str, options: Map) -> Res<Map> {
        let run = Run::of(&ctx);
        let o = Opts::new(
            options,
            &["status", "contains", "timeout", "interval", "headers"],
            url,
        )?;
        let want = o.int("status")?.unwrap_or(200);
        let contains = o.string("contains")?;
        let timeout = o.secs("timeout")?.unwrap_or(Duration::from_secs(30));
        let interval = o.secs("interval")?.unwrap_or(Duration::from_millis(500));
        let headers = o.string_map("headers")?;
        let per_request = REQUEST_TIMEOUT.min(timeout.max(Duration::from_millis(100)));
        let what = match &contains {
            Some(c) => format!("waiting for status {want} with \"{c}\" in the body"),
            None => format!("waiting for status {want}"),
        };
        let found = run.wait(url, &what, timeout, interval, || {
            match get(&run, url, per_request, &headers) {
                Ok(r) if r.status != want => Ok(Err(format!("status {}", r.status))),
                Ok(r) => match &contains {
                    Some(c) if !r.body.contains(c.as_str()) => Ok(Err(format!(
                        "status {} without \"{c}\" in the body",
                        r.status
                    ))),
                    _ => Ok(Ok(r)),
                },
                Err(e) if e.kind.is_interruption() => Err(e),
                Err(e) => Ok(Err(e.message)),
            }
        })?;
        Ok(match found {
            Some(r) => r.to_map(),
            // A dry run, and the URL does not answer as wanted yet.
            None => {
                let mut m = Map::new();
                m.insert("status".into(), ().into());
                m.insert("body".into(), "".into());
                m.insert("headers".into(), Map::new().into());
                m.insert("dry_run".into(), true.into());
                m
            }
        })
    }

    /// `wait_http` with the default options: status 200 within 30 s.
    #[rhai_fn(name = "wait_http", return_raw)]
    pub fn wait_http_default(ctx: NativeCallContext, url: &str) -> Res<Map> {
        wait_http(ctx, url, Map::new())
    }
}
