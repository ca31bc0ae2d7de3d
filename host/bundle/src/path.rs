//! Entry names: checked, normalised to one spelling, and made printable for messages.
//!
//! A bundle is never unpacked onto a disk, but its paths become keys (a DAG names its plugin by a
//! path inside the bundle) and may be unpacked by other tools later, so they are held to what is
//! safe everywhere: relative, no `..`, `/` as the only separator, no control characters. `.` and
//! empty components (`a/./b`, `a//b`, a trailing `/`) are dropped, so two spellings of one file are
//! caught as duplicates.

use crate::diagnostic::code;
use crate::limits::{Limits, MAX_NAME_BYTES};

/// Why a name was refused: a code and a message.
pub(crate) type Refusal = (&'static str, String);

/// How long a name may be in a message before it is cut.
const MAX_SHOWN_CHARS: usize = 200;

/// The normalised form of a UTF-8 entry name: `Ok("")` for the archive's root (`./`, `.`), which
/// is only acceptable for a folder.
pub(crate) fn normalise(name: &str, limits: &Limits) -> Result<String, Refusal> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err((
            code::INVALID_PATH_CHARACTER,
            format!("the name holds the control character {}", c.escape_unicode()),
        ));
    }
    if name.contains('\\') {
        return Err((
            code::INVALID_PATH_CHARACTER,
            "the name holds a backslash: folders are separated by `/` in a bundle".to_string(),
        ));
    }
    if name.starts_with('/') {
        return Err((code::ABSOLUTE_PATH, "an absolute path: paths in a bundle are relative to its top".to_string()));
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err((
            code::ABSOLUTE_PATH,
            "a path starting with a drive: paths in a bundle are relative to its top".to_string(),
        ));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err((
                    code::PARENT_COMPONENT,
                    "a `..` in the path: every path must stay inside the bundle".to_string(),
                ));
            }
            part if part.len() > MAX_NAME_BYTES => {
                return Err((
                    code::PATH_TOO_LONG,
                    format!("a name of {} bytes in the path: the limit is {MAX_NAME_BYTES}", part.len()),
                ));
            }
            part => parts.push(part),
        }
    }
    if parts.len() > limits.max_path_depth {
        return Err((
            code::PATH_TOO_DEEP,
            format!("{} names deep: the limit is {}", parts.len(), limits.max_path_depth),
        ));
    }
    let path = parts.join("/");
    if path.len() > limits.max_path_bytes {
        return Err((
            code::PATH_TOO_LONG,
            format!("a path of {} bytes: the limit is {}", path.len(), limits.max_path_bytes),
        ));
    }
    Ok(path)
}

/// A raw name as it may be shown to a person or a terminal: invalid UTF-8 replaced, control
/// characters escaped (a name could otherwise carry terminal escape sequences into a CLI's output),
/// cut when very long.
pub(crate) fn printable(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut shown = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX_SHOWN_CHARS {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Whether a normalised path is hidden (a name in it starts with `.`, as `.git/...` and macOS's
/// `._x` resource forks do) or is macOS's `__MACOSX/` folder of resource forks, which Finder adds
/// to every zip it makes.
pub(crate) fn is_hidden(path: &str) -> bool {
    path.split('/').any(|part| part.starts_with('.')) || path == "__MACOSX" || path.starts_with("__MACOSX/")
}

/// The path `reference` names when written in a file at `from`: relative to `from`'s folder, `..`
/// allowed as long as it stays inside the bundle. `None` when it leads outside or is not a plain
/// relative path.
pub(crate) fn resolve(from: &str, reference: &str) -> Option<String> {
    if reference.starts_with('/') || reference.contains('\\') || reference.chars().any(char::is_control) {
        return None;
    }
    let mut parts: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop(); // the file's own name
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(name: &str) -> Result<String, &'static str> {
        normalise(name, &Limits::default()).map_err(|(code, _)| code)
    }

    #[test]
    fn spellings_of_one_path_normalise_alike() {
        for name in ["a/b", "a/./b", "./a/b", "a//b", "a/b/", "./a/./b/."] {
            assert_eq!(norm(name), Ok("a/b".to_string()), "{name}");
        }
        assert_eq!(norm("./"), Ok(String::new()));
        assert_eq!(norm("."), Ok(String::new()));
    }

    #[test]
    fn unsafe_names_are_refused() {
        assert_eq!(norm("/etc/passwd"), Err(code::ABSOLUTE_PATH));
        assert_eq!(norm("C:/x"), Err(code::ABSOLUTE_PATH));
        assert_eq!(norm("../x"), Err(code::PARENT_COMPONENT));
        assert_eq!(norm("a/../b"), Err(code::PARENT_COMPONENT), "even one that stays inside");
        assert_eq!(norm("a\\b"), Err(code::INVALID_PATH_CHARACTER));
        assert_eq!(norm("a\u{1b}[31m"), Err(code::INVALID_PATH_CHARACTER));
        assert_eq!(norm(&"x".repeat(256)), Err(code::PATH_TOO_LONG));
        assert_eq!(norm(&["d"; 33].join("/")), Err(code::PATH_TOO_DEEP));
        assert_eq!(norm(&[&*"x".repeat(200); 6].join("/")), Err(code::PATH_TOO_LONG));
        assert!(norm(&["d"; 32].join("/")).is_ok());
    }

    #[test]
    fn printable_escapes_control_characters_and_cuts() {
        assert_eq!(printable(b"a\x1b[31m"), "a\\u{1b}[31m");
        assert_eq!(printable(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(printable("x".repeat(500).as_bytes()).chars().count(), MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn hidden_paths() {
        assert!(is_hidden(".git/config"));
        assert!(is_hidden("plugins/._a.wasm"));
        assert!(is_hidden("__MACOSX/a.toml"));
        assert!(!is_hidden("plugins/a.wasm"));
    }

    #[test]
    fn references_resolve_from_the_file_folder() {
        assert_eq!(resolve("a.toml", "plugins/x.wasm").as_deref(), Some("plugins/x.wasm"));
        assert_eq!(resolve("team/a.toml", "../plugins/x.wasm").as_deref(), Some("plugins/x.wasm"));
        assert_eq!(resolve("a.toml", "./p/../x.wasm").as_deref(), Some("x.wasm"));
        assert_eq!(resolve("a.toml", "../x.wasm"), None);
        assert_eq!(resolve("a.toml", "/x.wasm"), None);
    }
}
