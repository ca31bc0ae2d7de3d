//! Grants through the scheduler and its worker: `/out` becomes artifacts, direct downstream tasks
//! (and only they) read them at `/in`, a quota stops a try, mounts are read-only at `/data`,
//! secrets reach the plugin and are redacted from what it leaves, every try is recorded, and a
//! DAG asking for what the server does not allow is refused at load.

use std::time::Duration;

use sandflow_core::secrets::SecretKey;
use sandflow_core::state::{RunState, TaskState};
use sandflow_store::NewAudit;
use serde_json::{json, Value};

use sandflow_sandbox::{Sandbox, SandboxConfig};
use sandflow_scheduler::{replay, TryRecord};

use crate::{write_dag, Harness};

const ARTIFACTS: &str = r#"
id = "artifacts"
[tasks.make]
plugin = "plugins/grants.wasm"
params = { mode = "tree", files = { "data.csv" = "1,2,3", "sub/notes.txt" = "hello" } }
[tasks.use]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "read", path = "/in/make/data.csv" }
[tasks.list]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "list", path = "/in/make/sub" }
[tasks.after]
plugin = "plugins/grants.wasm"
upstream = ["use"]
params = { mode = "read", path = "/in/make/data.csv" }
[tasks.escape]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "write_at", path = "/in/make/data.csv", text = "overwritten" }
"#;

const QUOTA: &str = r#"
id = "quota"
[tasks.big]
plugin = "plugins/grants.wasm"
out_quota_mb = 4
params = { mode = "write", name = "big.bin", bytes = 2147483648 }
"#;

fn audit(action: &str, target: &str) -> NewAudit {
    NewAudit {
        actor: "admin".into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        address: "local".into(),
        detail: json!({}),
    }
}

/// Waits until the folder's watcher has loaded `dag_id`.
async fn loaded(h: &Harness, dag_id: &str) {
    for _ in 0..200 {
        if h.store.dag(dag_id).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = h.store.import_errors().await.unwrap();
    panic!("{dag_id} was not loaded: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_becomes_artifacts_that_only_direct_downstream_tasks_read() {
    let mut h = Harness::start(&[("artifacts", ARTIFACTS)]).await;
    let (run, state) = h.run("artifacts", json!({})).await;
    assert_eq!(state, RunState::Success, "{:?}", h.store.task_instances(&run.run_id).await.unwrap());
    let made = h.store.artifacts(&run.run_id, Some("make")).await.unwrap();
    let names: Vec<_> = made.iter().map(|a| (a.name.as_str(), a.size)).collect();
    assert_eq!(names, [("data.csv", 5), ("sub/notes.txt", 5)]);
    assert!(made.iter().all(|a| a.hash.starts_with("sha256:") && a.hash.len() == 71));
    assert_eq!(h.output(&run.run_id, "use").await, json!({"allowed": true, "value": {"len": 5, "text": "1,2,3"}}));
    assert_eq!(h.output(&run.run_id, "list").await, json!({"allowed": true, "value": ["notes.txt"]}));
    // Not a direct downstream of `make`: its artifacts are not there.
    let after = h.output(&run.run_id, "after").await;
    assert_eq!(after["allowed"], json!(false), "{after}");
    // /in is read-only.
    let escape = h.output(&run.run_id, "escape").await;
    assert_eq!(escape["allowed"], json!(false), "{escape}");
    // Every try is recorded: its exact context, plugin, limits, seed, clock and inputs.
    let record = h.store.try_record(&run.run_id, "use", -1, 1).await.unwrap().expect("recorded");
    let context: Value = serde_json::from_str(record["context"].as_str().unwrap()).unwrap();
    assert_eq!(context["task_id"], json!("use"));
    assert!(record["determinism"]["seed"].is_u64(), "{record}");
    assert_eq!(record["inputs"].as_array().unwrap().len(), 2, "{record}");
    assert_eq!(record["inputs"][0]["path"], json!("make/data.csv"));
    // The tries' directories are gone.
    let work = std::env::temp_dir().join(format!("sandflow-{}", std::process::id())).join("work").join(&run.run_id);
    let left: Vec<_> = walk(&work);
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_over_its_out_quota_fails_and_leaves_nothing() {
    let mut h = Harness::start(&[("quota", QUOTA)]).await;
    let (run, state) = h.run("quota", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let tries = h.store.tries(&run.run_id, "big", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("out_quota_exceeded"), "{:?}", tries[0]);
    assert!(tries[0].message.as_deref().unwrap_or("").contains("quota"), "{:?}", tries[0].message);
    assert!(h.store.artifacts(&run.run_id, None).await.unwrap().is_empty());
    let work = std::env::temp_dir().join(format!("sandflow-{}", std::process::id())).join("work").join(&run.run_id);
    assert!(walk(&work).is_empty(), "the quota's excess is cleaned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_and_secrets_are_granted_by_name_and_secrets_never_leave() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("rows.csv"), "a,b\n").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", data.path().join("out-link")).unwrap();
    let key = SecretKey::from_bytes([3; 32]);
    let key2 = key.clone();
    let mut h = Harness::start_with(&[], move |config| config.grants.secret_key = Some(key2)).await;
    // Refused at load while the mount and the secret do not exist.
    let dag = format!(
        r#"
id = "granted"
[tasks.mount]
plugin = "plugins/grants.wasm"
mounts = ["datasets"]
params = {{ mode = "read", path = "/data/datasets/rows.csv" }}
[tasks.link]
plugin = "plugins/grants.wasm"
mounts = ["datasets"]
params = {{ mode = "read", path = "/data/datasets/out-link" }}
[tasks.nomount]
plugin = "plugins/grants.wasm"
params = {{ mode = "read", path = "/data/datasets/rows.csv" }}
[tasks.secret]
plugin = "plugins/grants.wasm"
secrets = ["warehouse"]
params = {{ mode = "env" }}
[tasks.nosecret]
plugin = "plugins/grants.wasm"
params = {{ mode = "env" }}
"#
    );
    write_dag(h.path(), "granted", &dag);
    let mut refused = String::new();
    for _ in 0..200 {
        if let Some(e) = h.store.import_errors().await.unwrap().into_iter().next() {
            refused = e.message;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused.contains("mount \"datasets\" is not declared"), "{refused}");
    assert!(refused.contains("secret \"warehouse\" is not set"), "{refused}");
    assert!(h.store.dag("granted").await.unwrap().is_none());

    let path = data.path().display().to_string();
    h.store.audited(&audit("mount.set", "datasets")).set_mount("datasets", &path).await.unwrap();
    let sealed = key.seal("warehouse", "s3cr3t-value", [9; 24]);
    h.store.audited(&audit("secret.set", "warehouse")).set_secret("warehouse", &sealed).await.unwrap();
    // Touch the file so that the folder loads it again.
    write_dag(h.path(), "granted", &format!("{dag}\n# again\n"));
    loaded(&h, "granted").await;

    let (run, _) = h.run("granted", json!({})).await;
    let out = |t: &'static str| {
        let h = &h;
        let run_id = run.run_id.clone();
        async move { h.output(&run_id, t).await }
    };
    assert_eq!(out("mount").await, json!({"allowed": true, "value": {"len": 4, "text": "a,b\n"}}));
    assert_eq!(out("link").await["allowed"], json!(false), "a symlink out of the mount is not followed");
    assert_eq!(out("nomount").await["allowed"], json!(false), "no mount without the grant");
    // The plugin got the value, and printed it in its output: stored redacted.
    assert_eq!(out("secret").await, json!({"WAREHOUSE": "***"}));
    assert_eq!(out("nosecret").await, json!({}));
    let ti = h.ti(&run.run_id, "secret").await;
    assert_eq!(ti.state, TaskState::Success);
    let tries = h.store.tries(&run.run_id, "secret", -1).await.unwrap();
    let record = h.store.try_record(&run.run_id, "secret", -1, 1).await.unwrap().unwrap();
    let everything = format!("{tries:?} {record} {:?}", h.store.task_instances(&run.run_id).await.unwrap());
    assert!(!everything.contains("s3cr3t-value"), "the value leaked: {everything}");
    assert_eq!(record["secrets"], json!(["warehouse"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_travel_through_s3_compatible_storage() {
    let bucket = sandflow_test_s3::fresh_bucket();
    let location = bucket.clone();
    let mut h = Harness::start_with(&[("artifacts", ARTIFACTS)], move |config| config.grants.blobs = location).await;
    let (run, state) = h.run("artifacts", json!({})).await;
    assert_eq!(state, RunState::Success, "{:?}", h.store.task_instances(&run.run_id).await.unwrap());
    assert_eq!(h.output(&run.run_id, "use").await, json!({"allowed": true, "value": {"len": 5, "text": "1,2,3"}}));
    let made = h.store.artifacts(&run.run_id, Some("make")).await.unwrap();
    let blobs = sandflow_blobs::Blobs::open(&bucket).unwrap();
    for artifact in &made {
        let bytes = blobs.get_bytes(&artifact.hash).await.unwrap();
        assert_eq!(bytes.len() as i64, artifact.size, "{} is in the bucket", artifact.name);
    }
    assert_eq!(blobs.list().await.unwrap().len(), 2);
}

const REPLAYED: &str = r#"
id = "replayed"
[tasks.make]
plugin = "plugins/grants.wasm"
params = { mode = "tree", files = { "data.csv" = "1,2,3", "sub/notes.txt" = "hello" } }
[tasks.use]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "read", path = "/in/make/data.csv" }
[tasks.roll]
plugin = "plugins/grants.wasm"
params = { mode = "entropy", sleep_ms = 5 }
"#;

/// The record of a try, and the (name, hash) of the artifacts it left.
async fn recorded(h: &Harness, run_id: &str, task_id: &str) -> (TryRecord, Vec<(String, String)>) {
    let record = h.store.try_record(run_id, task_id, -1, 1).await.unwrap().expect("recorded");
    let record: TryRecord = serde_json::from_value(record).unwrap();
    let artifacts = h.store.artifacts(run_id, Some(task_id)).await.unwrap();
    (record, artifacts.into_iter().map(|a| (a.name, a.hash)).collect())
}

async fn replay_of(
    h: &Harness,
    sandbox: &Sandbox,
    blobs: &sandflow_blobs::Blobs,
    record: &TryRecord,
    plugin: Option<&[u8]>,
    context: Option<&[u8]>,
) -> replay::Replayed {
    let bytes = match plugin {
        Some(bytes) => bytes.to_vec(),
        None => h.store.plugin_bytes(&record.plugin_id).await.unwrap().expect("the recorded plugin is stored"),
    };
    let plugin = sandbox.load(&bytes).unwrap();
    let work = h.dir.path().join(format!("replay-{}", rand_suffix()));
    let plan = replay::ReplayPlan {
        record,
        plugin: &plugin,
        context,
        inputs: blobs,
        mounts: Vec::new(),
        secrets: Vec::new(),
        work_dir: &work,
    };
    let replayed = replay::replay(sandbox, plan).await.unwrap();
    assert!(!work.exists(), "the replay's folder is removed");
    replayed
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_try_is_identical_and_a_changed_plugin_or_context_is_a_difference() {
    let blob_dir = tempfile::tempdir().unwrap();
    let location = blob_dir.path().display().to_string();
    let mut h = Harness::start_with(&[("replayed", REPLAYED)], move |config| config.grants.blobs = location).await;
    let (run, state) = h.run("replayed", json!({})).await;
    assert_eq!(state, RunState::Success, "{:?}", h.store.task_instances(&run.run_id).await.unwrap());
    let blobs = sandflow_blobs::Blobs::open(&blob_dir.path().display().to_string()).unwrap();
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();

    // Seeded random and virtual clocks: the replay gives the very result, byte for byte.
    let (record, artifacts) = recorded(&h, &run.run_id, "roll").await;
    assert_eq!(record.outcome.as_deref(), Some("success"));
    assert!(record.result_sha256.as_deref().is_some_and(|h| h.starts_with("sha256:")), "{record:?}");
    let replayed = replay_of(&h, &sandbox, &blobs, &record, None, None).await;
    let differences = replay::compare(&record, &artifacts, &replayed, false);
    assert!(differences.is_empty(), "{differences:?}");
    let sandflow_sandbox::Outcome::Success { result } = &replayed.report.outcome else {
        panic!("{:?}", replayed.report.outcome)
    };
    assert_eq!(result.output, h.output(&run.run_id, "roll").await);

    // A second run of the same task draws other numbers: the identity above is the replay's doing.
    let (again, _) = h.run("replayed", json!({})).await;
    assert_ne!(h.output(&again.run_id, "roll").await["random"], h.output(&run.run_id, "roll").await["random"]);

    // Another context (a longer sleep) is reported, and so is the result it changes.
    let mut context: Value = serde_json::from_str(&record.context).unwrap();
    context["params"]["sleep_ms"] = json!(7);
    let context = serde_json::to_vec(&context).unwrap();
    let replayed = replay_of(&h, &sandbox, &blobs, &record, None, Some(&context)).await;
    let differences = replay::compare(&record, &artifacts, &replayed, true);
    assert!(
        matches!(differences.as_slice(), [replay::Difference::Context, replay::Difference::Result { .. }]),
        "{differences:?}"
    );

    // Artifacts: the same files with the same hashes; /in holds the recorded inputs again.
    let (record, artifacts) = recorded(&h, &run.run_id, "make").await;
    assert_eq!(artifacts.len(), 2);
    let replayed = replay_of(&h, &sandbox, &blobs, &record, None, None).await;
    assert_eq!(replay::compare(&record, &artifacts, &replayed, false), []);
    let (record_use, artifacts_use) = recorded(&h, &run.run_id, "use").await;
    assert_eq!(record_use.inputs.len(), 2);
    let replayed = replay_of(&h, &sandbox, &blobs, &record_use, None, None).await;
    assert_eq!(replay::compare(&record_use, &artifacts_use, &replayed, false), []);

    // Another plugin: reported, with the artifacts it did not leave and the result it changed.
    let echo = std::fs::read(sandflow_test_artifacts::path("echo")).unwrap();
    let replayed = replay_of(&h, &sandbox, &blobs, &record, Some(&echo), None).await;
    let differences = replay::compare(&record, &artifacts, &replayed, false);
    let text: Vec<String> = differences.iter().map(ToString::to_string).collect();
    assert!(matches!(differences[0], replay::Difference::Plugin { .. }), "{text:?}");
    assert!(text.iter().any(|d| d == "artifact data.csv: recorded, not left by the replay"), "{text:?}");
    assert!(text.iter().any(|d| d.starts_with("result: recorded sha256:")), "{text:?}");

    // An input blob gone from the store: the replay says which, rather than running without it.
    let missing = sandflow_blobs::Blobs::open(&tempfile::tempdir().unwrap().path().display().to_string()).unwrap();
    let plugin = sandbox.load(&h.store.plugin_bytes(&record_use.plugin_id).await.unwrap().unwrap()).unwrap();
    let work = h.dir.path().join("replay-missing");
    let plan = replay::ReplayPlan {
        record: &record_use,
        plugin: &plugin,
        context: None,
        inputs: &missing,
        mounts: Vec::new(),
        secrets: Vec::new(),
        work_dir: &work,
    };
    let error = replay::replay(&sandbox, plan).await.unwrap_err();
    assert!(error.starts_with("putting the recorded inputs in /in: "), "{error}");
    assert!(!work.exists(), "the replay's folder is removed after an error too");
}
