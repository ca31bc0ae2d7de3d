//! `sandflow plugin new --lang LANG NAME`: a plugin project that builds with one command
//! (`./build.sh`) and passes `sandflow plugin run` and `sandflow plugin test` out of the box.
//!
//! The templates and SDKs are those of `plugin-sdk/<lang>/` (embedded in release builds, read from
//! the source tree in debug ones): `template/` becomes the project, with `{{name}}` and
//! `{{name_ident}}` replaced, and `sdk/` its `sdk/` folder, so the project needs nothing from this
//! repository once made.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;

use crate::out::outln;
use crate::CliError;

#[derive(rust_embed::Embed)]
#[folder = "$CARGO_MANIFEST_DIR/../../plugin-sdk/"]
#[include = "*/template/**"]
#[include = "*/sdk/**"]
#[include = "wit/*.wit"]
#[include = "src/*.rs"]
#[exclude = "*/sdk/wit/*"]
#[exclude = "*/node_modules/*"]
#[exclude = "*/__pycache__/*"]
struct SdkFiles;

/// The languages a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust, ABI v1 (wasm32-wasip1), with the sandflow-sdk crate.
    Rust,
    /// C, ABI v1, Debian's clang with wasi-libc.
    C,
    /// Zig, ABI v1.
    Zig,
    /// AssemblyScript, ABI v1.
    #[value(name = "as", alias = "assemblyscript")]
    AssemblyScript,
    /// Go, ABI v1 (GOOS=wasip1).
    Go,
    /// Python, ABI v2 (componentize-py).
    Python,
    /// JavaScript, ABI v2 (componentize-qjs).
    Js,
}

impl Lang {
    /// Its folder under `plugin-sdk/`.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Zig => "zig",
            Lang::AssemblyScript => "assemblyscript",
            Lang::Go => "go",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// Whether its SDK compiles against the WIT world (ABI v2 languages, and the Rust SDK's v2).
    fn needs_wit(self) -> bool {
        matches!(self, Lang::Python | Lang::Js | Lang::Rust)
    }
}

/// Writes the project `name` in `parent/name`; refuses a name that is not a plugin name or a
/// folder that exists.
pub fn scaffold(lang: Lang, name: &str, parent: &Path) -> Result<PathBuf, CliError> {
    check_name(name)?;
    let project = parent.join(name);
    if project.exists() {
        return Err(anyhow::anyhow!("{} exists: pick another name or folder", project.display()).into());
    }
    let ident = name.replace('-', "_");
    let fill = |text: &str| text.replace("{{name_ident}}", &ident).replace("{{name}}", name);
    let template = format!("{}/template/", lang.dir());
    let sdk = format!("{}/sdk/", lang.dir());
    let mut written = 0;
    for path in SdkFiles::iter() {
        let (dest, templated) = if let Some(rest) = path.strip_prefix(&template) {
            (project.join(fill(rest)), true)
        } else if let Some(rest) = path.strip_prefix(&sdk) {
            (project.join("sdk").join(rest), false)
        } else if lang == Lang::Rust && path.starts_with("src/") {
            (project.join("sdk").join(path.as_ref()), false)
        } else if lang.needs_wit() && path.starts_with("wit/") {
            (project.join("sdk").join(path.as_ref()), false)
        } else {
            continue;
        };
        let file = SdkFiles::get(&path).context("an embedded file vanished")?;
        let bytes = match std::str::from_utf8(&file.data) {
            Ok(text) if templated => fill(text).into_bytes(),
            _ => file.data.into_owned(),
        };
        write(&dest, &bytes)?;
        written += 1;
    }
    if written == 0 {
        return Err(anyhow::anyhow!("no template for {} in this build of sandflow", lang.dir()).into());
    }
    outln!("created {} ({written} files)", project.display());
    outln!("build it:  cd {} && ./build.sh", project.display());
    outln!("run it:    sandflow plugin run {name}.wasm --context tests/basic.context.json");
    outln!("test it:   sandflow plugin test tests");
    Ok(project)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!("`{name}` is not a plugin name: lowercase letters, digits and `-`, starting with a letter, at most 64");
    }
    if name == "plugin" || name == "main" || name == "sdk" {
        bail!("`{name}` clashes with a name the toolchains reserve (Go's `plugin` package, `main`, `sdk`)");
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    std::fs::write(path, bytes).with_context(|| path.display().to_string())?;
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_checked() {
        for good in ["stats", "csv-parse", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Stats", "1a", "a_b", "a-", "../x", "plugin", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
