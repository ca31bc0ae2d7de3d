//! Which languages made a plugin, as its `producers` custom section says (the tool conventions'
//! `language` field, else what its `processed-by` tools imply). Toolchains that write no such
//! section leave it unknown: an empty list, never a guess.
//!
//! Names are the language, not its standard (`C11` is `C`). C next to another language is left
//! out: it is the wasi-libc that Rust's, Zig's and Go's standard libraries link, not the plugin's
//! code (a plugin of Rust and C of its own shows as Rust).

use wasmparser::{KnownCustom, Parser, Payload};

/// Tools of `processed-by` that name their language, for toolchains that leave `language` out.
const TOOL_LANGUAGES: &[(&str, &str)] = &[
    ("rustc", "Rust"),
    ("clang", "C"),
    ("TinyGo", "Go"),
    ("Go", "Go"),
    ("Zig", "Zig"),
    ("AssemblyScript", "AssemblyScript"),
    ("componentize-py", "Python"),
    ("ComponentizeJS", "JavaScript"),
    ("javy", "JavaScript"),
    ("dotnet", "C#"),
];

/// The languages of a wasm module or component (of every module inside a component), in the
/// order first seen, without repeats. Unparsable bytes give an empty list.
pub fn languages(bytes: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut tools: Vec<String> = Vec::new();
    let add = |list: &mut Vec<String>, name: &str| {
        if !list.iter().any(|x| x == name) {
            list.push(name.to_string());
        }
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(Payload::CustomSection(section)) = payload else {
            if payload.is_err() {
                break;
            }
            continue;
        };
        let KnownCustom::Producers(reader) = section.as_known() else { continue };
        for field in reader.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                match field.name {
                    "language" => add(&mut found, plain_name(value.name)),
                    "processed-by" => add(&mut tools, value.name),
                    _ => {}
                }
            }
        }
    }
    if found.is_empty() {
        for tool in &tools {
            if let Some((_, language)) = TOOL_LANGUAGES.iter().find(|(name, _)| name == tool) {
                add(&mut found, language);
            }
        }
    }
    if found.len() > 1 {
        found.retain(|language| language != "C");
    }
    found
}

/// A language without its standard's year: `C11` → `C`, `C++17` → `C++`.
fn plain_name(name: &str) -> &str {
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    match base {
        "C" | "C++" | "ObjC" if base.len() < name.len() => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producers_section_names_the_language() {
        let wasm = wat::parse_str(
            r#"(module (@producers (language "Rust" "") (processed-by "rustc" "1.95") (processed-by "clang" "19")))"#,
        )
        .unwrap();
        assert_eq!(languages(&wasm), ["Rust"]);
    }

    #[test]
    fn standards_are_named_by_their_language_and_libc_is_not_a_language_of_the_plugin() {
        let c = wat::parse_str(r#"(module (@producers (language "C11" "") (processed-by "clang" "19")))"#).unwrap();
        assert_eq!(languages(&c), ["C"]);
        let rust = wat::parse_str(r#"(module (@producers (language "C11" "") (language "Rust" "")))"#).unwrap();
        assert_eq!(languages(&rust), ["Rust"]);
        let cpp = wat::parse_str(r#"(module (@producers (language "C++17" "")))"#).unwrap();
        assert_eq!(languages(&cpp), ["C++"]);
    }

    #[test]
    fn tools_stand_in_for_a_missing_language_and_nothing_is_guessed() {
        let wasm = wat::parse_str(r#"(module (@producers (processed-by "TinyGo" "0.33")))"#).unwrap();
        assert_eq!(languages(&wasm), ["Go"]);
        assert!(languages(&wat::parse_str("(module)").unwrap()).is_empty());
        assert!(languages(b"not wasm at all").is_empty());
    }
}
