//! Snapshot tests of the messages users see for broken DAG files, in Spin's `tests/ui` style.
//!
//! Each `tests/ui/<name>.toml` is parsed and all its diagnostics, one per line, are compared with
//! `tests/ui/<name>.err` (empty for a valid file). `SANDFLOW_BLESS=1 cargo test -p sandflow-core
//! --test ui` rewrites the `.err` files instead: review the diff before committing it.
//!
//! The DAG format's reference, `dags/README.md`, is checked here too: its example must be valid
//! and every accepted field must be documented.

use std::fs;
use std::path::{Path, PathBuf};

use sandflow_core::dag::{parse_dag, Caps, PluginRef};
use sha2::{Digest, Sha256};

/// A deterministic resolver: `sha256:` ids as they are, `.wasm` paths pinned to the hash of their
/// text, except paths containing "missing", which do not exist.
fn resolve(plugin: &PluginRef) -> Result<String, String> {
    match plugin {
        PluginRef::Id(id) => Ok(id.clone()),
        PluginRef::Path(path) if path.contains("missing") => Err(format!("no such file: {path}")),
        PluginRef::Path(path) if path.ends_with(".wasm") => {
            Ok(format!("sha256:{}", hex::encode(Sha256::digest(path.as_bytes()))))
        }
        PluginRef::Path(path) => Err(format!("not a .wasm file: {path}")),
    }
}

/// What a user sees for one file: every diagnostic, one per line; nothing for a valid file.
fn render(name: &str, text: &str) -> String {
    match parse_dag(name, text, &Caps::default(), &mut resolve) {
        Ok(_) => String::new(),
        Err(diagnostics) => diagnostics.iter().map(|d| format!("{d}\n")).collect(),
    }
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn ui() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let bless = std::env::var("SANDFLOW_BLESS").is_ok_and(|value| value == "1");
    let inputs = files_with_extension(&dir, "toml");
    assert!(inputs.len() >= 13, "expected at least 13 ui files, found {}", inputs.len());
    let mut failures = Vec::new();
    for input in &inputs {
        let file_name = input.file_name().and_then(|name| name.to_str()).expect("a UTF-8 file name");
        let name = format!("tests/ui/{file_name}");
        let text = fs::read_to_string(input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let actual = render(&name, &text);
        if file_name.starts_with("valid") && !actual.is_empty() {
            failures.push(format!("{name} must be valid, but:\n{actual}"));
        }
        let expected_path = input.with_extension("err");
        if bless {
            fs::write(&expected_path, &actual).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{name}:\n--- expected\n{expected}+++ actual\n{actual}")),
            Err(_) => failures.push(format!("{name}: no {}", expected_path.display())),
        }
    }
    for orphan in files_with_extension(&dir, "err") {
        if !orphan.with_extension("toml").exists() {
            failures.push(format!("{} belongs to no .toml file", orphan.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if the new output is right: SANDFLOW_BLESS=1 cargo test -p sandflow-core --test ui)",
        failures.join("\n")
    );
}

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dags/README.md");
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_example_is_valid() {
    let readme = readme();
    let start = readme.find("```toml\n").expect("a ```toml block in dags/README.md") + "```toml\n".len();
    let length = readme[start..].find("```").expect("the end of the block");
    let output = render("dags/README.md", &readme[start..start + length]);
    assert!(output.is_empty(), "the README's example is not valid:\n{output}");
}

/// The fields a table accepts, as listed by the message for an unknown field in it.
fn accepted_fields(text: &str) -> Vec<String> {
    let output = render("fields.toml", text);
    let (_, list) = output.split_once("expected one of ").unwrap_or_else(|| panic!("no field list in {output}"));
    list.trim().split(", ").map(|name| name.trim_matches('"').to_owned()).collect()
}

#[test]
fn readme_documents_every_field() {
    let readme = readme();
    let tables = [
        "unknown = 1\nid = \"x\"\n[tasks.a]\nplugin = \"a.wasm\"\n",
        "id = \"x\"\n[defaults]\nunknown = 1\n[tasks.a]\nplugin = \"a.wasm\"\n",
        "id = \"x\"\n[tasks.a]\nplugin = \"a.wasm\"\nunknown = 1\n",
    ];
    for table in tables {
        for field in accepted_fields(table) {
            assert!(readme.contains(&format!("| `{field}` |")), "dags/README.md does not document `{field}`");
        }
    }
}
