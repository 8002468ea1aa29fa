//! The arguments every primitive takes: durations in seconds and the trailing `#{...}` option map,
//! checked the same way everywhere (an unknown option key is an error, never a silent default).

use std::time::Duration;

use rhai::{Array, Dynamic, Map};

use crate::error::Failure;

/// A duration in seconds given by a script (int or float, or a numeric string from `--param`).
pub fn seconds(v: &Dynamic, target: &str, what: &str) -> Result<Duration, Failure> {
    let secs = if let Ok(i) = v.as_int() {
        i as f64
    } else if let Ok(f) = v.as_float() {
        f
    } else if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        s.trim().parse::<f64>().map_err(|_| {
            Failure::usage(
                target,
                format!(
                    "{target}: {what} must be a number of seconds, not \"{}\"",
                    s.as_str()
                ),
            )
        })?
    } else {
        return Err(Failure::usage(
            target,
            format!(
                "{target}: {what} must be a number of seconds, not {}",
                v.type_name()
            ),
        ));
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(Failure::usage(
            target,
            format!("{target}: {what} must be zero or more seconds, not {secs}"),
        ));
    }
    // A year is longer than any operation of a playbook; larger values overflow a Duration.
    if secs > MAX_SECONDS {
        return Err(Failure::usage(
            target,
            format!("{target}: {what} of {secs} seconds is more than a year"),
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The longest duration a script may give.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// "unknown option `timout`; did you mean `timeout`? expected one of: ...", the words of both the
/// run-time check (`Opts::new`) and `runner check`.
pub fn unknown_option(key: &str, allowed: &[&str]) -> String {
    let hint = did_you_mean(key, allowed)
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    format!(
        "unknown option `{key}`; {hint}expected one of: {}",
        allowed.join(", ")
    )
}

/// The candidate `word` is most likely a misspelling of, if any is close enough.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let w = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&w, &c.to_ascii_lowercase()), *c))
        .filter(|(score, c)| {
            *score >= 0.85 || strsim::damerau_levenshtein(&w, &c.to_ascii_lowercase()) <= 1
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The trailing `#{...}` options of a call. Unknown keys are an error: a typo such as `timout`
/// must not silently fall back to a default.
pub struct Opts<'a> {
    map: Map,
    target: &'a str,
}

impl<'a> Opts<'a> {
    pub fn new(map: Map, allowed: &[&str], target: &'a str) -> Result<Self, Failure> {
        if let Some(bad) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(Failure::usage(
                target,
                format!("{target}: {}", unknown_option(bad, allowed)),
            ));
        }
        Ok(Opts { map, target })
    }

    pub fn empty(target: &'a str) -> Self {
        Opts {
            map: Map::new(),
            target,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    pub fn secs(&self, key: &str) -> Result<Option<Duration>, Failure> {
        self.get(key)
            .map(|v| seconds(v, self.target, key))
            .transpose()
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, Failure> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().map_err(|t| self.wrong(key, "true or false", t)),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Failure> {
        self.get(key)
            .map(|v| v.as_int().map_err(|t| self.wrong(key, "an integer", t)))
            .transpose()
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, Failure> {
        self.get(key)
            .map(|v| {
                v.clone()
                    .into_string()
                    .map_err(|t| self.wrong(key, "a string", t))
            })
            .transpose()
    }

    /// A map of strings, e.g. environment variables or HTTP headers.
    pub fn string_map(&self, key: &str) -> Result<Vec<(String, String)>, Failure> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(v) => {
                let m = v
                    .read_lock::<Map>()
                    .ok_or_else(|| self.wrong(key, "a map", v.type_name()))?;
                Ok(m.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect())
            }
        }
    }

    /// A list: an array (each element as a string) or a single string or number.
    pub fn list(&self, key: &str) -> Result<Vec<String>, Failure> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(v) => {
                if let Some(a) = v.read_lock::<Array>() {
                    Ok(a.iter().map(|x| x.to_string()).collect())
                } else if v.is_string() || v.is_int() {
                    Ok(vec![v.to_string()])
                } else {
                    Err(self.wrong(key, "an array of strings", v.type_name()))
                }
            }
        }
    }

    /// `KEY=VALUE` pairs: a map, or an array of `"KEY=VALUE"` strings.
    pub fn pairs(&self, key: &str) -> Result<Vec<String>, Failure> {
        match self.get(key) {
            Some(v) if v.is_map() => {
                let m = v.read_lock::<Map>().expect("a map");
                Ok(m.iter().map(|(k, v)| format!("{k}={v}")).collect())
            }
            Some(v) if !v.is_array() => Err(self.wrong(key, "a map", v.type_name())),
            _ => self.list(key),
        }
    }

    fn wrong(&self, key: &str, expected: &str, got: &str) -> Failure {
        Failure::usage(
            self.target,
            format!(
                "{}: option `{key}` must be {expected}, not {got}",
                self.target
            ),
        )
    }
}
