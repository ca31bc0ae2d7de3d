//! The checks every entry goes through, whatever the archive format, and the assembly of the
//! [`Bundle`] once all entries are seen.
//!
//! A format reader (tar.gz, zip) walks its entries and tells the [`Collector`] what each one is;
//! the collector answers whether to read its bytes, and records every problem. Problems with one
//! entry are recorded and the walk goes on, so an upload's answer lists them all; a problem after
//! which reading on would be unsafe or pointless (a limit on the whole archive, a broken stream)
//! is a [`Stop`].

use std::collections::BTreeMap;

use crate::diagnostic::{code, Diagnostic, Diagnostics};
use crate::path::{is_hidden, normalise, printable};
use crate::{Bundle, Format, Ignored, IgnoredReason, Limits};

/// What an entry is, as far as the checks care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Directory,
    /// A symbolic link to the given target (raw bytes).
    Symlink(Vec<u8>),
    /// A hard link to the given entry (raw bytes).
    HardLink(Vec<u8>),
    /// A character or block device.
    Device,
    /// A named pipe.
    Fifo,
    /// Anything else, described for the message (`a GNU sparse file`, `a socket`).
    Other(&'static str),
    /// Metadata that describes no file (a tar's PAX global header): counted, otherwise skipped.
    Metadata,
}

/// Reading stops: the reason is already recorded in the collector.
#[derive(Debug)]
pub(crate) struct Stop;

/// What the format reader does with an entry's bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Read them and hand them to [`Collector::keep`] under this normalised path.
    Keep(String),
    /// Do not keep them (skip, or read past them in a stream).
    Skip,
}

/// A file seen, before it is sorted into DAGs and plugins.
struct Kept {
    /// The entry's name as the archive spells it, for messages.
    shown: String,
    /// A DAG file or a plugin (else ignored, and listed only to catch duplicates).
    wanted: bool,
    /// Its bytes, once read; `None` for an ignored file, or one that could not be read.
    bytes: Option<Vec<u8>>,
}

/// The state of one bundle's walk.
pub(crate) struct Collector<'l> {
    limits: &'l Limits,
    format: Format,
    entries: u64,
    /// Bytes of declared file sizes so far (zip; a tar counts its whole stream itself).
    declared: u64,
    diagnostics: Vec<Diagnostic>,
    files: BTreeMap<String, Kept>,
    /// Folders named by entries, with the name as spelled, for path conflicts.
    dirs: BTreeMap<String, String>,
    ignored: Vec<Ignored>,
    /// Reading stopped early: what was not read cannot be judged (say, as missing DAGs).
    stopped: bool,
}

impl<'l> Collector<'l> {
    pub(crate) fn new(limits: &'l Limits, format: Format) -> Self {
        Collector {
            limits,
            format,
            entries: 0,
            declared: 0,
            diagnostics: Vec::new(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            ignored: Vec::new(),
            stopped: false,
        }
    }

    pub(crate) fn limits(&self) -> &'l Limits {
        self.limits
    }

    /// Whether any entry was seen yet.
    pub(crate) fn seen_any(&self) -> bool {
        self.entries > 0
    }

    /// Records a problem with one entry, or with the archive; reading goes on.
    pub(crate) fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Records a problem after which reading stops.
    pub(crate) fn stop(&mut self, diagnostic: Diagnostic) -> Stop {
        self.diagnostics.push(diagnostic);
        self.stopped = true;
        Stop
    }

    /// Counts entries up front when the format knows how many there are (zip's central directory),
    /// so an archive of too many is refused before any is read.
    pub(crate) fn expect_entries(&mut self, count: u64) -> Result<(), Stop> {
        if count > self.limits.max_entries {
            return Err(self.stop(too_many_entries(self.limits, Some(count))));
        }
        Ok(())
    }

    /// Refuses an entry of `size` bytes when it would take the archive's unpacked total over the
    /// limit; for a format whose stream does not count its own bytes (zip).
    pub(crate) fn declare(&mut self, shown: &str, size: u64) -> Result<(), Stop> {
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.limits.max_unpacked_bytes {
            return Err(self.stop(unpacked_too_large(self.limits.max_unpacked_bytes).in_file(shown)));
        }
        Ok(())
    }

    /// Checks one entry: its count, name, kind and size. Returns whether to keep its bytes.
    /// `raw_name` is the name as stored in the archive.
    pub(crate) fn entry(&mut self, raw_name: &[u8], kind: Kind, size: u64) -> Result<Take, Stop> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.stop(too_many_entries(self.limits, None)));
        }
        if kind == Kind::Metadata {
            return Ok(Take::Skip);
        }
        let shown = printable(raw_name);
        let refuse = |code: &'static str, message: String| Diagnostic::new(code, message).in_file(shown.clone());
        let Ok(name) = std::str::from_utf8(raw_name) else {
            self.report(refuse(
                code::NON_UTF8_NAME,
                "the name is not valid UTF-8: rename the file, or make the archive with UTF-8 names".into(),
            ));
            return Ok(Take::Skip);
        };
        let path = match normalise(name, self.limits) {
            Ok(path) => path,
            Err((code, message)) => {
                self.report(refuse(code, message));
                return Ok(Take::Skip);
            }
        };
        let link_target = |target: &[u8]| {
            if target.is_empty() {
                String::new()
            } else {
                format!(" (to `{}`)", printable(target))
            }
        };
        match kind {
            Kind::Directory => {
                if !path.is_empty() {
                    self.dirs.entry(path).or_insert(shown);
                }
                return Ok(Take::Skip);
            }
            Kind::Symlink(target) => {
                self.report(refuse(
                    code::SYMLINK,
                    format!(
                        "a symbolic link{}: a bundle holds only files and folders; put the file itself in the bundle",
                        link_target(&target)
                    ),
                ));
                return Ok(Take::Skip);
            }
            Kind::HardLink(target) => {
                self.report(refuse(
                    code::HARD_LINK,
                    format!(
                        "a hard link{}: a bundle holds only files and folders; put the file itself in the bundle",
                        link_target(&target)
                    ),
                ));
                return Ok(Take::Skip);
            }
            Kind::Device => {
                self.report(refuse(code::DEVICE, "a device: a bundle holds only files and folders".into()));
                return Ok(Take::Skip);
            }
            Kind::Fifo => {
                self.report(refuse(code::FIFO, "a named pipe: a bundle holds only files and folders".into()));
                return Ok(Take::Skip);
            }
            Kind::Other(what) => {
                self.report(refuse(
                    code::UNSUPPORTED_ENTRY,
                    format!("{what}: a bundle holds only regular files and folders"),
                ));
                return Ok(Take::Skip);
            }
            Kind::File | Kind::Metadata => {}
        }
        if path.is_empty() {
            self.report(refuse(code::EMPTY_PATH, "a file with no name".into()));
            return Ok(Take::Skip);
        }
        if size > self.limits.max_file_bytes {
            self.report(refuse(
                code::FILE_TOO_LARGE,
                format!("{} bytes: the limit for one file is {} bytes", size, self.limits.max_file_bytes),
            ));
            return Ok(Take::Skip);
        }
        if let Some(first) = self.files.get(&path) {
            let message = if first.shown == shown {
                format!("`{path}` is in the archive twice")
            } else {
                format!("`{shown}` and `{}` both name `{path}`", first.shown)
            };
            self.report(refuse(code::DUPLICATE_NAME, message));
            return Ok(Take::Skip);
        }
        match classify(&path) {
            Some(reason) => {
                self.ignored.push(Ignored { path: path.clone(), size, reason });
                self.files.insert(path, Kept { shown, wanted: false, bytes: None });
                Ok(Take::Skip)
            }
            None => {
                self.files.insert(path.clone(), Kept { shown, wanted: true, bytes: None });
                Ok(Take::Keep(path))
            }
        }
    }

    /// The bytes of an entry that [`Collector::entry`] said to keep.
    pub(crate) fn keep(&mut self, path: &str, bytes: Vec<u8>) {
        if let Some(kept) = self.files.get_mut(path) {
            kept.bytes = Some(bytes);
        }
    }

    /// The bundle, or every problem found.
    pub(crate) fn finish(mut self) -> Result<Bundle, Diagnostics> {
        self.check_conflicts();
        // A DAG file that could not be read is reported already: it is not missing.
        let has_dags = self.files.iter().any(|(path, kept)| kept.wanted && path.ends_with(".toml"));
        let mut dags = BTreeMap::new();
        let mut plugins = BTreeMap::new();
        for (path, kept) in std::mem::take(&mut self.files) {
            let Some(bytes) = kept.bytes else { continue };
            if path.ends_with(".wasm") {
                plugins.insert(path, bytes);
            } else {
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        dags.insert(path, text);
                    }
                    Err(e) => {
                        let (line, column) = position(e.as_bytes(), e.utf8_error().valid_up_to());
                        self.report(
                            Diagnostic::new(code::NON_UTF8_TEXT, "a DAG file must be UTF-8 text")
                                .in_file(kept.shown)
                                .at(line, column),
                        );
                    }
                }
            }
        }
        // DAG files one folder down: the archive was made of the folder, not of its contents.
        let one_down = self.ignored.iter().map(|i| i.path.as_str()).find(|path| {
            path.ends_with(".toml")
                && path.split('/').count() == 2
                && !path.rsplit('/').next().is_some_and(|name| name.starts_with('.'))
        });
        if !has_dags && !self.stopped {
            let hint = match one_down {
                Some(nested) => format!(
                    " (`{nested}` is in a folder: archive the DAG folder's contents, not the folder, e.g. \
                     `sandflow bundle build DIR` or `tar -C DIR -czf bundle.tar.gz .`)"
                ),
                None => String::new(),
            };
            self.report(Diagnostic::new(
                code::NO_DAGS,
                format!("the bundle has no DAG file (`*.toml` at its top level){hint}"),
            ));
        }
        if let Some(diagnostics) = Diagnostics::from_vec(self.diagnostics) {
            return Err(diagnostics);
        }
        Ok(Bundle { format: self.format, dags, plugins, ignored: self.ignored })
    }

    /// A path used both as a file and as a folder (`a` as a file, and `a/b` or the folder `a/`).
    fn check_conflicts(&mut self) {
        let mut conflicts = Vec::new();
        let folders = self.files.keys().flat_map(|path| ancestors(path).map(move |a| (a, path.as_str())));
        let named = self.dirs.keys().map(|path| (path.as_str(), path.as_str()));
        let mut seen = std::collections::BTreeSet::new();
        for (folder, inner) in folders.chain(named) {
            if let Some(file) = self.files.get(folder) {
                if seen.insert(folder.to_string()) {
                    let message = if folder == inner {
                        format!("`{folder}` is both a file and a folder")
                    } else {
                        format!("`{folder}` is a file, and `{inner}` would be inside it")
                    };
                    conflicts.push(Diagnostic::new(code::PATH_CONFLICT, message).in_file(file.shown.clone()));
                }
            }
        }
        self.diagnostics.extend(conflicts);
    }
}

/// Why a file that passed every check is not a DAG file or a plugin, or `None` when it is one.
fn classify(path: &str) -> Option<IgnoredReason> {
    if is_hidden(path) {
        Some(IgnoredReason::Hidden)
    } else if path.ends_with(".wasm") {
        None
    } else if path.ends_with(".toml") {
        if path.contains('/') {
            Some(IgnoredReason::NestedToml)
        } else {
            None
        }
    } else {
        Some(IgnoredReason::NotDagOrPlugin)
    }
}

/// The proper ancestors of a normalised path: `a/b/c` gives `a` and `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(at, _)| &path[..at])
}

/// The 1-based line and character column of a byte offset in text that is valid UTF-8 up to it.
fn position(bytes: &[u8], offset: usize) -> (u32, u32) {
    let before = &bytes[..offset.min(bytes.len())];
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
}

pub(crate) fn too_many_entries(limits: &Limits, count: Option<u64>) -> Diagnostic {
    let message = match count {
        Some(count) => format!("{count} entries: the limit is {}", limits.max_entries),
        None => format!("more than {} entries, the limit: reading stopped there", limits.max_entries),
    };
    Diagnostic::new(code::TOO_MANY_ENTRIES, message)
}

pub(crate) fn unpacked_too_large(max: u64) -> Diagnostic {
    Diagnostic::new(
        code::UNPACKED_TOO_LARGE,
        format!("the archive unpacks to more than the limit of {max} bytes: reading stopped there"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(position(b"ab\n\xc3\xa7d\xff", 6), (2, 3));
        assert_eq!(position(b"\xff", 0), (1, 1));
    }

    #[test]
    fn ancestors_of_a_path() {
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a", "a/b"]);
        assert_eq!(ancestors("a").count(), 0);
    }
}
