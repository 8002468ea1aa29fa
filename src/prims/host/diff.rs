//! What a change of a file does, for people: a unified diff of its content (and its mode and owner
//! when they change), shown under `--dry-run` and `-v`.

use similar::TextDiff;

/// At most this many lines of a diff are shown.
const MAX_LINES: usize = 400;

/// The file's state as far as a diff shows it.
pub struct Shown<'a> {
    pub content: Option<&'a str>,
    pub mode: Option<String>,
    pub owner: Option<String>,
}

/// A unified diff from `old` (None: no such file) to `new`, headed by the host and path.
pub fn unified(host: &str, path: &str, old: &Shown, new: &Shown) -> String {
    let before = old.content.unwrap_or("");
    let after = new.content.unwrap_or("");
    let from = if old.content.is_some() {
        format!("{host}:{path}")
    } else {
        "/dev/null".to_string()
    };
    let mut out = String::new();
    for (what, a, b) in [
        ("mode", &old.mode, &new.mode),
        ("owner", &old.owner, &new.owner),
    ] {
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                out.push_str(&format!("{what} of {host}:{path}: {a} -> {b}\n"));
            }
        }
    }
    if before != after {
        let diff = TextDiff::from_lines(before, after);
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(&from, &format!("{host}:{path}"))
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        for l in lines.iter().take(MAX_LINES) {
            out.push_str(l);
            out.push('\n');
        }
        if lines.len() > MAX_LINES {
            out.push_str(&format!("... {} more lines\n", lines.len() - MAX_LINES));
        }
    }
    mask(&out)
}

/// The one place shown file content passes through on its way to the terminal or the JSON events:
/// where secrets (`secret()`) are to be masked. Nothing is masked yet (there is no registry of
/// secrets to mask).
pub fn mask(text: &str) -> String {
    text.to_string()
}
