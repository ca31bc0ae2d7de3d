//! Checking and loading plugins: what is refused (and why), what is accepted, and the compiled-code
//! cache on disk.

use sandflow_sandbox::{CodeSource, PluginError, PluginKind, Sandbox, SandboxConfig};

use crate::sandbox;

fn refusal(bytes: &[u8]) -> PluginError {
    sandbox().check(bytes).expect_err("should be refused")
}

#[test]
fn non_wasm_is_refused() {
    let err = refusal(b"#!/bin/sh\necho hi\n");
    assert!(matches!(err, PluginError::NotWasm(_)));
    assert_eq!(err.to_string(), "not a WebAssembly binary: it does not start with the wasm magic bytes \\0asm");
    assert!(matches!(refusal(b""), PluginError::NotWasm(_)));
}

#[test]
fn a_plugin_over_the_size_limit_is_refused_before_it_is_parsed() {
    let mut bytes = sandflow_test_artifacts::bytes("noop");
    bytes.resize(usize::try_from(sandflow_sandbox::MAX_PLUGIN_BYTES).unwrap() + 1, 0);
    let err = refusal(&bytes);
    assert!(matches!(err, PluginError::TooLarge { .. }), "{err}");
    assert_eq!(err.to_string(), "64.0 MiB of wasm, over the 64 MiB limit for a plugin");
}

#[test]
fn a_truncated_module_is_refused() {
    let bytes = sandflow_test_artifacts::bytes("noop");
    let err = refusal(&bytes[..bytes.len() / 2]);
    assert!(matches!(err, PluginError::Invalid(_)), "{err}");
    assert!(err.to_string().starts_with("invalid WebAssembly: "), "{err}");
    assert!(err.to_string().contains("unexpected end"), "{err}");
}

#[test]
fn a_module_without_start_is_not_a_command() {
    let bytes = wat::parse_str(r#"(module (func (export "_initialize")))"#).unwrap();
    let err = refusal(&bytes);
    assert!(matches!(err, PluginError::UnsupportedKind(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "unsupported plugin kind: a core module without a `_start` export is not a WASI command (a reactor or library?)"
    );
}

#[test]
fn a_component_that_is_not_a_command_is_refused() {
    let bytes = wat::parse_str("(component)").unwrap();
    let err = refusal(&bytes);
    assert!(matches!(err, PluginError::UnsupportedKind(_)), "{err}");
    assert!(err.to_string().contains("exports neither `run`"), "{err}");
}

#[test]
fn unknown_imports_are_refused_by_name() {
    let bytes = wat::parse_str(r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#).unwrap();
    let err = refusal(&bytes);
    assert!(matches!(err, PluginError::UnknownImport(_)), "{err}");
    assert!(err.to_string().contains("env::launch_missiles"), "{err}");

    let bytes = wat::parse_str(
        r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance (export "handle" (func)))))"#,
    )
    .unwrap();
    let err = refusal(&bytes);
    assert!(matches!(err, PluginError::UnknownImport(_)), "{err}");
    assert!(err.to_string().contains("wasi:http/outgoing-handler@0.2.0"), "{err}");
}

#[test]
fn a_plain_module_and_a_component_are_accepted_with_their_kind() {
    let info = sandbox().check(&sandflow_test_artifacts::bytes("noop")).unwrap();
    assert_eq!(info.kind, PluginKind::P1Command);
    assert!(info.imports.iter().any(|i| i.starts_with("wasi_snapshot_preview1::fd_write")), "{:?}", info.imports);
    assert!(info.exports.iter().any(|e| e == "_start (func)"), "{:?}", info.exports);

    let info = sandbox().check(&sandflow_test_artifacts::bytes("noop-p2")).unwrap();
    assert_eq!(info.kind, PluginKind::P2Command);
    assert!(info.exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")), "{:?}", info.exports);
}

#[test]
fn compiled_code_is_cached_on_disk_across_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), pooling: false, ..SandboxConfig::default() };
    for stem in ["echo", "echo-p2"] {
        let bytes = sandflow_test_artifacts::bytes(stem);
        let first = Sandbox::new(config.clone()).unwrap();
        assert_eq!(first.load(&bytes).unwrap().source, CodeSource::Compiled, "{stem}");
        // A second sandbox stands for a second process: the engine is new, the disk cache is not.
        let second = Sandbox::new(config.clone()).unwrap();
        assert_eq!(second.fingerprint(), first.fingerprint());
        assert_eq!(second.load(&bytes).unwrap().source, CodeSource::DiskCache, "{stem}");
    }
    // A differently configured engine does not pick up the other engine's code.
    let other = Sandbox::new(SandboxConfig { fuel_metering: false, ..config }).unwrap();
    assert_ne!(
        other.fingerprint(),
        Sandbox::new(SandboxConfig { cache_dir: None, pooling: false, ..SandboxConfig::default() })
            .unwrap()
            .fingerprint()
    );
    assert_eq!(other.load(&sandflow_test_artifacts::bytes("echo")).unwrap().source, CodeSource::Compiled);
}

#[test]
fn a_corrupt_cache_file_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), pooling: false, ..SandboxConfig::default() };
    let bytes = sandflow_test_artifacts::bytes("noop");
    let first = Sandbox::new(config.clone()).unwrap();
    let id = first.load(&bytes).unwrap().info.id.clone();
    let cached = dir.path().join(first.fingerprint()).join(format!("{}.cwasm", id.hex()));
    std::fs::write(&cached, b"garbage").unwrap();
    let second = Sandbox::new(config).unwrap();
    assert_eq!(second.load(&bytes).unwrap().source, CodeSource::Compiled);
}
