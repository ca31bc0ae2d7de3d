//! Text that came from files, plugins or users, made safe to show to a person.
//!
//! A DAG file, a plugin's failure reason or a run's note can hold anything: an escape sequence
//! that rewrites the terminal, a bell, a carriage return that hides what came before it, or 70,000
//! characters that push every column of a table off the screen. Whatever prints such text passes it
//! through [`clean`] (and [`shorten`] where it must fit in a line).

use std::borrow::Cow;

/// The longest DAG, task or pool id: long enough for any name a person chooses (Airflow's limit too),
/// short enough for a table column and an index key.
pub const MAX_ID_LEN: usize = 250;

/// Control characters (ESC, BEL, CR, DEL, the C1 range) and Unicode's bidirectional overrides,
/// which can make text read differently from what it is, written as escapes (`\u{1b}`, `\r`).
/// Newlines and tabs are kept when `keep_lines`; otherwise they are escaped too.
pub fn clean(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_lines && (c == '\n' || c == '\t'));
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` characters: a longer text keeps its start and says how much was left out.
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= max {
        return Cow::Borrowed(text);
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    Cow::Owned(format!("{kept}… ({count} characters)"))
}

/// What a JSON value is, for messages: `a list`, `a string`, `null`...
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_lines_kept_on_request() {
        assert_eq!(clean("plain text", false), "plain text");
        assert_eq!(clean("a\x1b[2Jb\x07c\rd", false), "a\\u{1b}[2Jb\\u{7}c\\rd");
        assert_eq!(clean("one\ntwo\tthree", true), "one\ntwo\tthree");
        assert_eq!(clean("one\ntwo", false), "one\\ntwo");
        assert_eq!(clean("abc\u{202e}def", true), "abc\\u{202e}def");
        assert_eq!(clean("naïve ✓", false), "naïve ✓");
    }

    #[test]
    fn long_text_keeps_its_start_and_says_its_length() {
        assert_eq!(shorten("short", 10), "short");
        let long = "x".repeat(70_000);
        let short = shorten(&long, 20);
        assert_eq!(short, format!("{}… (70000 characters)", "x".repeat(19)));
        assert_eq!(shorten("ééééé", 3), "éé… (5 characters)");
    }
}
