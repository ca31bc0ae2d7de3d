//! Versions from bundles, experiments, the plugins a version pins, and listing runs page by page.

use sandflow_core::state::RunState;
use sandflow_store::{ActivateChange, NewVersion, Placement, RunCursor, RunQuery, RunType, StoreError, VersionOrigin};
use serde_json::json;

use crate::{new_run, with_dag, Db};

crate::on_both!(
    a_kept_version_is_stored_and_the_active_one_stays,
    an_experiment_is_never_active_and_needs_its_dag,
    activating_a_version_is_a_guarded_write,
    versions_name_the_plugins_they_pin,
    runs_page_by_cursor_or_offset_with_filters,
    concurrent_pushes_of_one_dag_both_land,
    a_plugin_stored_twice_at_once_is_stored_once,
);

fn bundle_version<'a>(version: &'a str, plugins: &'a [String], placement: Placement<'a>) -> NewVersion<'a> {
    static SPEC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    NewVersion {
        dag_id: "d",
        version,
        spec: SPEC.get_or_init(|| json!({"file": "d.toml"})),
        file_path: "bundle:d.toml",
        plugin_ids: plugins,
        paused_if_new: true,
        origin: VersionOrigin::Bundle,
        uploaded_by: Some("alice"),
        placement,
    }
}

async fn a_kept_version_is_stored_and_the_active_one_stays(db: Db) {
    let store = &db.store;
    // A DAG's first version is active even when kept: there is nothing else to run.
    let first = store.record_version(&bundle_version("v1", &[], Placement::Keep)).await.unwrap();
    assert!(first.new_version && first.activated && first.new_dag, "{first:?}");
    let dag = store.dag("d").await.unwrap().unwrap();
    assert_eq!((dag.active_version.as_str(), dag.is_paused), ("v1", true));
    let kept = store.record_version(&bundle_version("v2", &[], Placement::Keep)).await.unwrap();
    assert!(kept.new_version && !kept.activated && !kept.new_dag, "{kept:?}");
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v1");
    let again = store.record_version(&bundle_version("v2", &[], Placement::Activate)).await.unwrap();
    assert!(!again.new_version && again.activated, "{again:?}");
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v2");
    let versions = store.versions("d").await.unwrap();
    let names: Vec<_> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"v1") && names.contains(&"v2"));
    assert!(versions.iter().all(|v| v.origin == VersionOrigin::Bundle && v.uploaded_by.as_deref() == Some("alice")));
}

async fn an_experiment_is_never_active_and_needs_its_dag(db: Db) {
    let store = &db.store;
    let experiment = Placement::Experiment { name: "lr-0.1", note: Some("try a higher rate") };
    let err = store.record_version(&bundle_version("v9", &[], experiment)).await.unwrap_err();
    assert!(matches!(&err, StoreError::NoSuchDag(d) if d == "d"), "{err:?}");
    assert!(store.dag("d").await.unwrap().is_none(), "nothing of the refused push is stored");
    with_dag(store).await;
    let recorded = store.record_version(&bundle_version("v9", &[], experiment)).await.unwrap();
    assert!(recorded.new_version && !recorded.activated, "{recorded:?}");
    // The same bytes in a second experiment: one version, two memberships.
    let other = Placement::Experiment { name: "bob-try", note: None };
    assert!(!store.record_version(&bundle_version("v9", &[], other)).await.unwrap().new_version);
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v1");
    let mut experiments = store.experiments("d").await.unwrap();
    experiments.sort_by(|a, b| a.name.cmp(&b.name));
    let seen: Vec<_> = experiments.iter().map(|e| (e.name.as_str(), e.version.as_str(), e.note.as_deref())).collect();
    assert_eq!(seen, [("bob-try", "v9", None), ("lr-0.1", "v9", Some("try a higher rate"))]);
    assert!(experiments.iter().all(|e| e.author == "alice"));
}

async fn activating_a_version_is_a_guarded_write(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.record_version(&bundle_version("v2", &[], Placement::Keep)).await.unwrap();
    assert_eq!(store.activate_version("d", "v2").await.unwrap(), ActivateChange::Changed);
    assert_eq!(store.activate_version("d", "v2").await.unwrap(), ActivateChange::Already);
    assert_eq!(store.activate_version("d", "nope").await.unwrap(), ActivateChange::NoSuchVersion);
    assert_eq!(store.activate_version("nodag", "v2").await.unwrap(), ActivateChange::NoSuchVersion);
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v2");
}

async fn versions_name_the_plugins_they_pin(db: Db) {
    let store = &db.store;
    let (a, b) = ("sha256:aa".to_string(), "sha256:bb".to_string());
    store.record_version(&bundle_version("v1", &[a.clone(), b.clone()], Placement::Activate)).await.unwrap();
    store.record_version(&bundle_version("v2", std::slice::from_ref(&b), Placement::Activate)).await.unwrap();
    let using_a: Vec<_> = store.versions_using(&a).await.unwrap().into_iter().map(|v| v.version).collect();
    let mut using_b: Vec<_> = store.versions_using(&b).await.unwrap().into_iter().map(|v| v.version).collect();
    using_b.sort();
    assert_eq!((using_a, using_b), (vec!["v1".to_string()], vec!["v1".to_string(), "v2".to_string()]));
    assert!(store.versions_using("sha256:cc").await.unwrap().is_empty());
}

async fn runs_page_by_cursor_or_offset_with_filters(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    for i in 0..25 {
        let mut run = new_run(&format!("r{i:02}"), RunType::Manual, 1_000 + i);
        run.interval = None;
        if i % 5 == 0 {
            run.experiment = Some("x".into());
        }
        assert!(store.create_run(&run, &["t".into()]).await.unwrap());
    }
    let page = |after: Option<RunCursor>, offset: i64| RunQuery { limit: 10, after, offset, ..RunQuery::default() };
    let first = store.list_runs(&page(None, 0)).await.unwrap();
    assert_eq!(first.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>()[..3], ["r24", "r23", "r22"]);
    let second = store.list_runs(&page(Some(RunCursor::after(first.last().unwrap())), 0)).await.unwrap();
    assert_eq!(second[0].run_id, "r14");
    assert_eq!(store.list_runs(&page(None, 10)).await.unwrap(), second, "an offset gives the same page");
    let third = store.list_runs(&page(Some(RunCursor::after(second.last().unwrap())), 0)).await.unwrap();
    assert_eq!(third.len(), 5);
    let oldest = RunQuery { oldest_first: true, limit: 2, ..RunQuery::default() };
    let ids: Vec<_> = store.list_runs(&oldest).await.unwrap().into_iter().map(|r| r.run_id).collect();
    assert_eq!(ids, ["r00", "r01"]);
    let of_x = RunQuery { experiment: Some("x".into()), limit: 100, ..RunQuery::default() };
    let runs = store.list_runs(&of_x).await.unwrap();
    assert_eq!(runs.len(), 5);
    assert!(runs.iter().all(|r| r.experiment.as_deref() == Some("x")));
    assert_eq!(store.count_runs(&of_x).await.unwrap(), 5);
    let queued = RunQuery { states: vec![RunState::Queued, RunState::Running], limit: 100, ..RunQuery::default() };
    assert_eq!(store.count_runs(&queued).await.unwrap(), 25);
    let failed = RunQuery { states: vec![RunState::Failed], ..RunQuery::default() };
    assert_eq!(store.count_runs(&failed).await.unwrap(), 0);
    let other_dag = RunQuery { dag_id: Some("e".into()), limit: 5, ..RunQuery::default() };
    assert!(store.list_runs(&other_dag).await.unwrap().is_empty());
    let huge = RunQuery { limit: 1_000_000, ..RunQuery::default() };
    assert_eq!(store.list_runs(&huge).await.unwrap().len(), 25, "the limit is capped, not refused");
    let by = RunQuery { triggered_by: Some("tester".into()), run_type: Some(RunType::Manual), ..RunQuery::default() };
    assert_eq!(store.count_runs(&by).await.unwrap(), 25);
}

async fn concurrent_pushes_of_one_dag_both_land(db: Db) {
    let store = db.store.clone();
    let pushes: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let version = format!("v{i}");
                let plugin = vec![format!("sha256:{i}")];
                store.record_version(&bundle_version(&version, &plugin, Placement::Activate)).await
            })
        })
        .collect();
    for push in pushes {
        push.await.unwrap().unwrap();
    }
    let versions = store.versions("d").await.unwrap();
    assert_eq!(versions.len(), 8, "every push's version is stored");
    let active = store.dag("d").await.unwrap().unwrap().active_version;
    assert!(versions.iter().any(|v| v.version == active));
    for i in 0..8 {
        assert_eq!(store.versions_using(&format!("sha256:{i}")).await.unwrap().len(), 1);
    }
}

async fn a_plugin_stored_twice_at_once_is_stored_once(db: Db) {
    let bytes = b"\0asm same bytes".to_vec();
    let id = crate::plugin_id_of(&bytes);
    let puts: Vec<_> = (0..8)
        .map(|_| {
            let (store, bytes, id) = (db.store.clone(), bytes.clone(), id.clone());
            tokio::spawn(async move { store.put_plugin(&id, &bytes, sandflow_store::PluginKind::P1Command).await })
        })
        .collect();
    let mut new = 0;
    for put in puts {
        new += usize::from(put.await.unwrap().unwrap());
    }
    assert_eq!(new, 1, "one of the stores stored the bytes, the others found them");
    assert_eq!(db.store.plugins().await.unwrap().len(), 1);
    assert_eq!(db.store.plugin(&id).await.unwrap().unwrap().size, bytes.len() as i64);
    assert!(db.store.plugin("sha256:none").await.unwrap().is_none());
}
