//! Grants: what a try may touch beyond its stdio works when granted, fails when not, and abuse of
//! it stays inside (escapes from preopens, the /out quota). Determinism: same seed, same bytes.

use std::path::Path;
use std::time::{Duration, Instant};

use sandflow_sandbox::{Determinism, KillSwitch, Limits, LiveLog, OutDir, Outcome, ReadOnlyDir, TryGrants, TryReport};
use serde_json::{json, Value};

use crate::{context, output, quick, sandbox};

/// The preview1 module and the preview2 component of the grants plugin.
const BOTH: [&str; 2] = ["grants", "grants-p2"];

async fn run_granted(stem: &str, params: Value, limits: &Limits, grants: &TryGrants) -> TryReport {
    let plugin = sandbox().load(&sandflow_test_artifacts::bytes(stem)).unwrap();
    sandbox().run_granted(&plugin, &context(params), limits, grants, &KillSwitch::new(), &LiveLog::new()).await
}

fn with_out(dir: &Path, quota_bytes: u64) -> TryGrants {
    TryGrants { out: Some(OutDir { host: dir.to_path_buf(), quota_bytes }), ..TryGrants::default() }
}

/// An attempt's answer: `(allowed, error or value)`.
fn attempt(report: &TryReport) -> (bool, String) {
    let out = output(report);
    let allowed = out["allowed"].as_bool().unwrap_or_else(|| panic!("not an attempt: {out}"));
    (allowed, if allowed { out["value"].to_string() } else { out["error"].to_string() })
}

#[tokio::test]
async fn a_granted_out_is_writable_and_measured() {
    for stem in BOTH {
        let out = tempfile::tempdir().unwrap();
        let report = run_granted(
            stem,
            json!({"mode": "write", "name": "a.bin", "bytes": 1000}),
            &quick(),
            &with_out(out.path(), 1 << 20),
        )
        .await;
        assert_eq!(attempt(&report), (true, "1000".into()), "{stem}: {}", report.log);
        assert_eq!(std::fs::metadata(out.path().join("a.bin")).unwrap().len(), 1000, "{stem}");
        assert_eq!(report.out_bytes, 1000, "{stem}");

        let files = json!({"top.txt": "t", "a/b/c.txt": "deep", "a/d.txt": "dd"});
        let report =
            run_granted(stem, json!({"mode": "tree", "files": files}), &quick(), &with_out(out.path(), 1 << 20)).await;
        assert!(report.outcome.is_success(), "{stem}: {}\n{}", report.outcome, report.log);
        assert_eq!(std::fs::read_to_string(out.path().join("a/b/c.txt")).unwrap(), "deep", "{stem}");
        assert_eq!(report.out_bytes, 1000 + 1 + 4 + 2, "{stem}");
    }
}

#[tokio::test]
async fn without_grants_there_is_no_out_no_data_and_no_environment() {
    for stem in BOTH {
        let report =
            run_granted(stem, json!({"mode": "write", "name": "a.bin", "bytes": 10}), &quick(), &TryGrants::default())
                .await;
        assert!(!attempt(&report).0, "{stem}: wrote to /out without a grant");
        assert_eq!(report.out_bytes, 0);
        let report = run_granted(stem, json!({"mode": "list", "path": "/data"}), &quick(), &TryGrants::default()).await;
        assert!(!attempt(&report).0, "{stem}: listed /data without a grant");
        let report = run_granted(stem, json!({"mode": "env"}), &quick(), &TryGrants::default()).await;
        assert_eq!(output(&report), &json!({}), "{stem}");
    }
}

#[tokio::test]
async fn environment_variables_are_passed_as_granted() {
    let grants = TryGrants {
        env: vec![("WAREHOUSE".into(), "postgres://u:p@db/x".into()), ("EMPTY".into(), String::new())],
        ..TryGrants::default()
    };
    for stem in BOTH {
        let report = run_granted(stem, json!({"mode": "env"}), &quick(), &grants).await;
        assert_eq!(output(&report), &json!({"WAREHOUSE": "postgres://u:p@db/x", "EMPTY": ""}), "{stem}");
    }
}

#[tokio::test]
async fn read_only_dirs_are_readable_and_not_writable() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("rows.csv"), "a,b\n1,2\n").unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/x.txt"), "x").unwrap();
    let upstream = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(upstream.path().join("extract/0")).unwrap();
    std::fs::write(upstream.path().join("extract/0/part.json"), "{}").unwrap();
    let grants = TryGrants {
        read_only: vec![
            ReadOnlyDir { host: data.path().to_path_buf(), guest: "/data/datasets".into() },
            ReadOnlyDir { host: upstream.path().to_path_buf(), guest: "/in".into() },
        ],
        ..TryGrants::default()
    };
    for stem in BOTH {
        let report =
            run_granted(stem, json!({"mode": "read", "path": "/data/datasets/rows.csv"}), &quick(), &grants).await;
        assert_eq!(output(&report)["value"], json!({"len": 8, "text": "a,b\n1,2\n"}), "{stem}: {}", report.log);
        let report =
            run_granted(stem, json!({"mode": "read", "path": "/in/extract/0/part.json"}), &quick(), &grants).await;
        assert_eq!(output(&report)["value"]["text"], "{}", "{stem}");
        let report = run_granted(stem, json!({"mode": "list", "path": "/data/datasets"}), &quick(), &grants).await;
        assert_eq!(output(&report)["value"], json!(["rows.csv", "sub"]), "{stem}");

        for path in ["/data/datasets/new.txt", "/data/datasets/rows.csv", "/in/extract/0/part.json"] {
            let report =
                run_granted(stem, json!({"mode": "write_at", "path": path, "text": "overwritten"}), &quick(), &grants)
                    .await;
            assert!(!attempt(&report).0, "{stem}: wrote {path} in a read-only dir");
        }
        assert!(!data.path().join("new.txt").exists());
        assert_eq!(std::fs::read_to_string(data.path().join("rows.csv")).unwrap(), "a,b\n1,2\n");
    }
}

#[tokio::test]
async fn escapes_from_out_and_read_only_dirs_are_contained() {
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(parent.path().join("secret.txt"), "top secret").unwrap();
    // Planted by the host (as a bad upstream artifact would be): symlinks that point outside.
    std::os::unix::fs::symlink("/etc", out.join("etc_link")).unwrap();
    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(parent.path().join("secret.txt"), data.path().join("secret_link")).unwrap();
    std::os::unix::fs::symlink("../", data.path().join("up")).unwrap();
    let mut grants = with_out(&out, 1 << 20);
    grants.read_only.push(ReadOnlyDir { host: data.path().to_path_buf(), guest: "/data/datasets".into() });

    for stem in BOTH {
        let reads = [
            "/etc/passwd",
            "/out/../../etc/passwd",
            "/out/../secret.txt",
            "/out/etc_link/passwd",
            "/data/datasets/secret_link",
            "/data/datasets/up/secret.txt",
            "/data/datasets/../../out/../secret.txt",
        ];
        for path in reads {
            let report = run_granted(stem, json!({"mode": "read", "path": path}), &quick(), &grants).await;
            let (allowed, detail) = attempt(&report);
            assert!(!allowed, "{stem}: read {path}: {detail}");
        }
        for path in ["/out/../escaped.txt", "/out/../../tmp/escaped.txt", "/tmp/escaped.txt"] {
            let report =
                run_granted(stem, json!({"mode": "write_at", "path": path, "text": "out!"}), &quick(), &grants).await;
            assert!(!attempt(&report).0, "{stem}: wrote {path}");
        }
        assert!(!parent.path().join("escaped.txt").exists());
    }

    // A symlink the plugin makes itself (preview1) to an absolute path or up the tree: cap-std
    // refuses to make it or to follow it.
    for (target, read) in [("/etc", "/out/to_etc/passwd"), ("../secret.txt", "/out/to_secret")] {
        let link = read.trim_start_matches("/out/").split('/').next().unwrap();
        let report = run_granted(
            "grants",
            json!({"mode": "symlink", "target": target, "link": link, "read": read}),
            &quick(),
            &grants,
        )
        .await;
        let out_json = output(&report);
        assert_eq!(out_json["read"]["allowed"], json!(false), "read through a symlink to {target}: {out_json}");
    }
}

#[tokio::test]
async fn a_grant_that_cannot_be_given_is_a_host_error_naming_it() {
    let missing = tempfile::tempdir().unwrap().path().join("gone");
    let grants = TryGrants {
        read_only: vec![ReadOnlyDir { host: missing.clone(), guest: "/data/datasets".into() }],
        ..TryGrants::default()
    };
    let report = run_granted("grants", json!({"mode": "env"}), &quick(), &grants).await;
    match &report.outcome {
        Outcome::HostError { message } => {
            assert!(message.contains("/data/datasets") && message.contains(&missing.display().to_string()), "{message}")
        }
        other => panic!("expected a host error, got {other}"),
    }
}

#[tokio::test]
async fn writing_past_the_out_quota_stops_the_try_quickly() {
    let limits = Limits { timeout: Duration::from_secs(120), ..Limits::default() };
    for stem in BOTH {
        let out = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let report = run_granted(
            stem,
            json!({"mode": "write", "name": "big.bin", "bytes": 2u64 << 30}),
            &limits,
            &with_out(out.path(), 64 << 20),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::OutQuotaExceeded { limit_bytes: 64 << 20 }, "{stem}: {}", report.log);
        assert_eq!(report.outcome.to_string(), "/out quota exceeded: more than 64 MiB written");
        assert_eq!(report.outcome.name(), "out_quota_exceeded");
        assert!(took < Duration::from_secs(30), "{stem}: took {took:?}");
        assert!(report.log.contains("over its quota of 64 MiB"), "{stem}: {}", report.log);
        // Stopped soon after the quota, far from the 2 GiB it meant to write.
        let on_disk = std::fs::metadata(out.path().join("big.bin")).unwrap().len();
        assert!(on_disk < 1 << 30, "{stem}: {on_disk} bytes on disk");
        assert!(report.out_bytes > 64 << 20, "{stem}: out_bytes {}", report.out_bytes);
    }
}

#[tokio::test]
async fn a_try_that_ends_over_its_quota_fails_and_entries_count() {
    for stem in BOTH {
        // 100 KiB in a 64 KiB quota: over at the end even if no check ran while it wrote.
        let out = tempfile::tempdir().unwrap();
        let report = run_granted(
            stem,
            json!({"mode": "write", "name": "a", "bytes": 100 << 10}),
            &quick(),
            &with_out(out.path(), 64 << 10),
        )
        .await;
        assert_eq!(report.outcome, Outcome::OutQuotaExceeded { limit_bytes: 64 << 10 }, "{stem}");
        // 200 empty files: no bytes, but each entry counts.
        let out = tempfile::tempdir().unwrap();
        let files: serde_json::Map<String, Value> = (0..200).map(|i| (format!("e{i}"), json!(""))).collect();
        let report =
            run_granted(stem, json!({"mode": "tree", "files": files}), &quick(), &with_out(out.path(), 64 << 10)).await;
        assert_eq!(report.outcome, Outcome::OutQuotaExceeded { limit_bytes: 64 << 10 }, "{stem}");
        // Under the quota: success.
        let out = tempfile::tempdir().unwrap();
        let report = run_granted(
            stem,
            json!({"mode": "write", "name": "a", "bytes": 10 << 10}),
            &quick(),
            &with_out(out.path(), 64 << 10),
        )
        .await;
        assert!(report.outcome.is_success(), "{stem}: {}", report.outcome);
    }
}

#[tokio::test]
async fn the_same_determinism_gives_the_same_bytes() {
    let params = json!({"mode": "entropy", "sleep_ms": 20});
    let one = Determinism { seed: 42, clock_start_ns: 1_767_225_600_000_000_000 };
    let other = Determinism { seed: 43, ..one };
    for stem in BOTH {
        let grants = |determinism| TryGrants { determinism, ..TryGrants::default() };
        let first = run_granted(stem, params.clone(), &quick(), &grants(one)).await;
        let second = run_granted(stem, params.clone(), &quick(), &grants(one)).await;
        let third = run_granted(stem, params.clone(), &quick(), &grants(other)).await;
        let (a, b, c) = (output(&first), output(&second), output(&third));
        assert_eq!(serde_json::to_vec(a).unwrap(), serde_json::to_vec(b).unwrap(), "{stem}: {a} vs {b}");
        assert_eq!(first.determinism, one);
        assert_ne!(a["random"], c["random"], "{stem}: another seed, other numbers");
        // The virtual clock: from the start given, stepping per read, moved on by the sleep.
        let wall = a["wall_ns"].as_u64().unwrap();
        assert!((one.clock_start_ns..one.clock_start_ns + 1_000_000_000).contains(&wall), "{stem}: wall {wall}");
        let slept = a["after_sleep_ns"].as_u64().unwrap() - a["elapsed_ns"].as_u64().unwrap();
        assert!((20_000_000..21_000_000).contains(&slept), "{stem}: slept {slept} ns");
        assert_eq!(a["wall_ns"], c["wall_ns"], "{stem}: the clock does not depend on the seed");
    }
    // Fresh determinism differs from try to try.
    let first = run_granted("grants", params.clone(), &quick(), &TryGrants::default()).await;
    let second = run_granted("grants", params, &quick(), &TryGrants::default()).await;
    assert_ne!(first.determinism, second.determinism);
    assert_ne!(output(&first)["random"], output(&second)["random"]);
}
