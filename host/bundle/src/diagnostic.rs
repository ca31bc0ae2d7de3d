//! Diagnostics: one problem with a bundle, in a shape an API can send as JSON and a CLI can print.
//!
//! Every diagnostic has a stable [`code`] (snake_case, part of the API: clients and tests match on
//! it, so a code is never renamed) and a message for people (free to improve). `file` is the entry's
//! name as the archive spells it (made printable), so a user can find it with `tar tf`; `line`,
//! `column` and `field` are for problems inside a file (a DAG file's TOML, later), and are `None`
//! for problems with the archive itself.

use std::fmt;

use serde::Serialize;

/// One problem with a bundle.
///
/// Displayed as `{file}:{line}:{column}: {field}: {message}`, leaving out the parts that are
/// `None`, the way compilers and core's DAG diagnostics print theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Diagnostic {
    /// The entry at fault, as named in the archive (control characters escaped, cut when absurdly
    /// long); `None` for the archive as a whole.
    pub file: Option<String>,
    /// 1-based line inside `file`.
    pub line: Option<u32>,
    /// 1-based column inside `file`, in characters.
    pub column: Option<u32>,
    /// Dotted path of the field at fault inside `file`, e.g. `tasks.train.plugin`.
    pub field: Option<String>,
    /// What went wrong, for programs: one of the constants in [`code`].
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What went wrong, for people, and when it helps, what to do instead.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about the archive as a whole.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { file: None, line: None, column: None, field: None, code, message: message.into() }
    }

    /// The same diagnostic, placed in `file`.
    #[must_use]
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// The same diagnostic, placed at a 1-based line and column.
    #[must_use]
    pub fn at(mut self, line: u32, column: u32) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// The same diagnostic, naming the field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
                if let Some(column) = self.column {
                    write!(f, "{column}:")?;
                }
            }
            f.write_str(" ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a bundle, in the order found; never empty.
///
/// This is the error of [`crate::Bundle::read`]: a bundle is refused whole, and its answer lists
/// all that is wrong with it, so an author fixes everything in one round. Serialises as a JSON
/// array of [`Diagnostic`]s; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// `None` when there is nothing to report.
    pub fn from_vec(diagnostics: Vec<Diagnostic>) -> Option<Self> {
        if diagnostics.is_empty() {
            None
        } else {
            Some(Diagnostics(diagnostics))
        }
    }

    /// The diagnostics, in the order found.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.0
    }

    /// The diagnostics, in the order found.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }

    /// Each diagnostic's code, in order (handy in tests and logs).
    pub fn codes(&self) -> Vec<&'static str> {
        self.0.iter().map(|d| d.code).collect()
    }

    /// The diagnostics, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// The stable codes of [`Diagnostic::code`]. Part of the API: never renamed, only added to.
pub mod code {
    /// The bytes are neither a gzip-compressed tar nor a zip.
    pub const NOT_AN_ARCHIVE: &str = "not_an_archive";
    /// The archive itself is over [`crate::Limits::max_archive_bytes`].
    pub const ARCHIVE_TOO_LARGE: &str = "archive_too_large";
    /// The archive unpacks to more than [`crate::Limits::max_unpacked_bytes`]. Reading stops here.
    pub const UNPACKED_TOO_LARGE: &str = "unpacked_too_large";
    /// One file is over [`crate::Limits::max_file_bytes`].
    pub const FILE_TOO_LARGE: &str = "file_too_large";
    /// More entries than [`crate::Limits::max_entries`]. Reading stops here.
    pub const TOO_MANY_ENTRIES: &str = "too_many_entries";
    /// A tar entry's extension headers (PAX records, GNU long names) are implausibly large.
    /// Reading stops here.
    pub const HEADER_TOO_LARGE: &str = "header_too_large";
    /// A path is over [`crate::Limits::max_path_bytes`], or one of its names over 255 bytes.
    pub const PATH_TOO_LONG: &str = "path_too_long";
    /// A path has more components than [`crate::Limits::max_path_depth`].
    pub const PATH_TOO_DEEP: &str = "path_too_deep";
    /// A file's name is empty (or only `.` and `/`).
    pub const EMPTY_PATH: &str = "empty_path";
    /// A path starts at the root (`/etc/passwd`) or a drive (`C:`).
    pub const ABSOLUTE_PATH: &str = "absolute_path";
    /// A path has a `..` component.
    pub const PARENT_COMPONENT: &str = "parent_component";
    /// A path holds a backslash or a control character.
    pub const INVALID_PATH_CHARACTER: &str = "invalid_path_character";
    /// A name is not valid UTF-8.
    pub const NON_UTF8_NAME: &str = "non_utf8_name";
    /// A symbolic link.
    pub const SYMLINK: &str = "symlink";
    /// A hard link.
    pub const HARD_LINK: &str = "hard_link";
    /// A character or block device.
    pub const DEVICE: &str = "device";
    /// A named pipe.
    pub const FIFO: &str = "fifo";
    /// Any other kind of entry that is neither a regular file nor a directory (sparse files,
    /// sockets, unknown tar types).
    pub const UNSUPPORTED_ENTRY: &str = "unsupported_entry";
    /// Two entries name the same file once their paths are normalised (`a/./b` and `a/b`).
    pub const DUPLICATE_NAME: &str = "duplicate_name";
    /// A path is used both as a file and as a folder (`a` and `a/b`).
    pub const PATH_CONFLICT: &str = "path_conflict";
    /// A DAG file is not valid UTF-8 text; line and column say where.
    pub const NON_UTF8_TEXT: &str = "non_utf8_text";
    /// The archive ends before it should: cut short on the way.
    pub const TRUNCATED_ARCHIVE: &str = "truncated_archive";
    /// The archive is damaged (bad checksum, bad compressed data, inconsistent headers).
    pub const CORRUPT_ARCHIVE: &str = "corrupt_archive";
    /// Data after the end of the tar archive inside the gzip stream.
    pub const TRAILING_DATA: &str = "trailing_data";
    /// A zip entry compressed with a method other than Stored or Deflate.
    pub const UNSUPPORTED_COMPRESSION: &str = "unsupported_compression";
    /// An encrypted zip entry.
    pub const ENCRYPTED_ENTRY: &str = "encrypted_entry";
    /// The bundle has no DAG file (`*.toml`) at its top level.
    pub const NO_DAGS: &str = "no_dags";
    /// A DAG file does not validate (syntax, a cycle, an unknown task, a bad cron...): the
    /// diagnostic carries the file's line, column and field. Checked by the server, not here.
    pub const INVALID_DAG: &str = "invalid_dag";
    /// A `.wasm` file is not a plugin the server can run (not wasm, not a command, too large).
    pub const INVALID_PLUGIN: &str = "invalid_plugin";
    /// Two DAG files of the bundle declare the same DAG id.
    pub const DUPLICATE_DAG_ID: &str = "duplicate_dag_id";
    /// A DAG file is over the server's limit for one DAG file.
    pub const DAG_FILE_TOO_LARGE: &str = "dag_file_too_large";
    /// An experiment of a DAG the server does not have: push it once without an experiment.
    pub const UNKNOWN_DAG: &str = "unknown_dag";
    /// A DAG asks for a grant the server's policy refuses (an origin, a mount, a secret, a
    /// quota), or grants secrets from a role that may not.
    pub const GRANT_REFUSED: &str = "grant_refused";

    /// Every code, for tests and documentation.
    pub const ALL: &[&str] = &[
        NOT_AN_ARCHIVE,
        ARCHIVE_TOO_LARGE,
        UNPACKED_TOO_LARGE,
        FILE_TOO_LARGE,
        TOO_MANY_ENTRIES,
        HEADER_TOO_LARGE,
        PATH_TOO_LONG,
        PATH_TOO_DEEP,
        EMPTY_PATH,
        ABSOLUTE_PATH,
        PARENT_COMPONENT,
        INVALID_PATH_CHARACTER,
        NON_UTF8_NAME,
        SYMLINK,
        HARD_LINK,
        DEVICE,
        FIFO,
        UNSUPPORTED_ENTRY,
        DUPLICATE_NAME,
        PATH_CONFLICT,
        NON_UTF8_TEXT,
        TRUNCATED_ARCHIVE,
        CORRUPT_ARCHIVE,
        TRAILING_DATA,
        UNSUPPORTED_COMPRESSION,
        ENCRYPTED_ENTRY,
        NO_DAGS,
        INVALID_DAG,
        INVALID_PLUGIN,
        DUPLICATE_DAG_ID,
        DAG_FILE_TOO_LARGE,
        UNKNOWN_DAG,
        GRANT_REFUSED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in code::ALL {
            assert!(seen.insert(code), "{code} listed twice");
            assert!(
                !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
            assert!(!code.starts_with('_') && !code.ends_with('_') && !code.contains("__"), "{code}");
        }
    }

    #[test]
    fn display_leaves_out_what_is_absent() {
        let d = Diagnostic::new(code::NOT_AN_ARCHIVE, "not an archive");
        assert_eq!(d.to_string(), "not an archive");
        let d = Diagnostic::new(code::SYMLINK, "a symbolic link").in_file("a/b");
        assert_eq!(d.to_string(), "a/b: a symbolic link");
        let d = Diagnostic::new(code::NON_UTF8_TEXT, "bad").in_file("a.toml").at(3, 7).with_field("tasks.a");
        assert_eq!(d.to_string(), "a.toml:3:7: tasks.a: bad");
    }

    #[test]
    fn serialises_every_key_with_nulls() {
        let d = Diagnostic::new(code::SYMLINK, "a symbolic link").in_file("a");
        let json = serde_json::to_value(Diagnostics::from(d)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"file": "a", "line": null, "column": null, "field": null,
                "code": "symlink", "message": "a symbolic link"}])
        );
    }
}
