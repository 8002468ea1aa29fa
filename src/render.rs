//! Script errors rendered the way a compiler does: the message, `file:line:col`, the source line
//! with a caret, then every call and import the error came through.

use rhai::{EvalAltResult, Position};

use crate::error::error_message;
use crate::resolver::Sources;

/// Render a script error the way a compiler does: message, `file:line:col`, the source line with a
/// caret, then every call and import it came through, innermost first.
pub fn render_error(err: &EvalAltResult, main_source: &str, sources: &Sources) -> String {
    // Walk from the outside in; each wrapper says where the next level was entered.
    let mut frames: Vec<(String, Position, String)> = Vec::new();
    let mut source = main_source.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let what = if name.starts_with("anon$") {
                    "in closure".to_string()
                } else {
                    format!("in call to {name}()")
                };
                frames.push((source.clone(), *pos, what));
                if !src.is_empty() {
                    source = src.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                frames.push((source.clone(), *pos, format!("in module \"{path}\"")));
                source = sources.resolved_name(path).unwrap_or_else(|| path.clone());
                e = inner;
            }
            _ => break,
        }
    }
    let mut out = format!("error: {}", error_message(e));
    out.push_str(&location(&source, e.position(), sources));
    for (src, pos, what) in frames.iter().rev() {
        if pos.is_none() {
            continue;
        }
        out.push_str(&format!(
            "\n  = {what}, called from {}",
            loc_text(src, *pos)
        ));
        out.push_str(&location_lines(src, *pos, sources));
    }
    out
}

/// Render a compile (parse) error with its location.
pub fn render_parse_error(err: &rhai::ParseError, source: &str, sources: &Sources) -> String {
    let mut e = err.0.to_string();
    if let Some(i) = e.find(" (line ") {
        e.truncate(i);
    }
    format!("error: {e}{}", location(source, err.1, sources))
}

fn loc_text(source: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{source}:{l}:{c}"),
        (Some(l), None) => format!("{source}:{l}"),
        _ => source.to_string(),
    }
}

fn location(source: &str, pos: Position, sources: &Sources) -> String {
    if pos.is_none() {
        return format!("\n  --> {source}");
    }
    format!(
        "\n  --> {}{}",
        loc_text(source, pos),
        location_lines(source, pos, sources)
    )
}

fn location_lines(source: &str, pos: Position, sources: &Sources) -> String {
    let (Some(line), Some(text)) = (pos.line(), sources.get(source)) else {
        return String::new();
    };
    let Some(src_line) = text.lines().nth(line - 1) else {
        return String::new();
    };
    let col = pos.position().unwrap_or(1);
    let num = line.to_string();
    let pad = " ".repeat(num.len());
    // Keep tabs so the caret lines up under the same characters.
    let lead: String = src_line
        .chars()
        .take(col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("\n{pad} |\n{num} | {src_line}\n{pad} | {lead}^")
}
