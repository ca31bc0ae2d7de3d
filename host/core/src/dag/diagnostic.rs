//! Diagnostics: one problem in a DAG file, placed where the user can find it.
//!
//! The parser works in byte offsets (what `toml`'s spans give); people read lines and columns.
//! [`LineIndex`] converts once per file, so a diagnostic is always printed the way editors and
//! compilers print theirs: `file:line:column: field: message`.

use std::ops::Range;

/// One problem in a DAG file.
///
/// Displayed as `{file}:{line}:{column}: {field}: {message}`, or as
/// `{file}:{line}:{column}: {message}` when `field` is empty (file-level errors such as TOML
/// syntax).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", field_prefix(field))]
pub struct Diagnostic {
    /// The file, as the caller named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (not bytes).
    pub column: usize,
    /// Dotted path of the field at fault, e.g. `tasks.train.retry_delay` or `flow[0]`; empty for
    /// file-level errors.
    pub field: String,
    /// What is wrong, and when it helps, what is expected.
    pub message: String,
}

/// The field path, cut when an id in it is absurdly long (a 70,000-character task id is reported
/// once, by its own message, not repeated in every path).
fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{}: ", crate::text::shorten(field, 300))
    }
}

/// Byte offset → (line, column) for one text.
#[derive(Debug)]
pub(super) struct LineIndex<'t> {
    text: &'t str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub(super) fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        LineIndex { text, starts }
    }

    /// The 1-based line and character column of a byte offset (clamped to the text).
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        (line, column)
    }

    /// The source text of a span, empty if the span is not valid for this text.
    pub(super) fn slice(&self, span: Range<usize>) -> &'t str {
        self.text.get(span).unwrap_or_default()
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let index = LineIndex::new("ab\nçé = 1\n");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(2), (1, 3));
        assert_eq!(index.position(3), (2, 1));
        // "çé" is 4 bytes, 2 characters.
        assert_eq!(index.position(7), (2, 3));
        assert_eq!(index.position(100), (3, 1));
    }

    #[test]
    fn display_omits_an_empty_field() {
        let mut diagnostic = Diagnostic {
            file: "dags/a.toml".into(),
            line: 3,
            column: 7,
            field: "tasks.a.retries".into(),
            message: "expected an integer, found a string".into(),
        };
        assert_eq!(diagnostic.to_string(), "dags/a.toml:3:7: tasks.a.retries: expected an integer, found a string");
        diagnostic.field.clear();
        assert_eq!(diagnostic.to_string(), "dags/a.toml:3:7: expected an integer, found a string");
    }
}
