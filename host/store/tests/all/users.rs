//! Users, tokens, budgets and the audit log: each change is committed with its audit entry.

use sandflow_store::{AuditQuery, NewAudit, NewToken, Role, UserChange};
use serde_json::json;

use crate::{new_run, with_dag, Db};

crate::on_both!(
    mounts_and_secrets_are_set_audited_and_never_read_back,
    a_user_is_added_once_and_its_change_is_audited_with_it,
    a_token_is_found_by_its_hash_and_revoked_once,
    a_token_needs_an_existing_user,
    the_audit_log_filters_and_pages_newest_first,
    budgets_are_set_replaced_and_removed,
    a_users_change_and_its_audit_entry_commit_together_or_not_at_all,
);

fn audit(action: &str, target: &str) -> NewAudit {
    NewAudit {
        actor: "root".into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        address: "local".into(),
        detail: json!({"why": "test"}),
    }
}

async fn a_user_is_added_once_and_its_change_is_audited_with_it(db: Db) {
    let store = &db.store;
    assert_eq!(store.count_users().await.unwrap(), 0);
    assert!(store.create_user("ada", Role::Author, Some("$argon2id$hash"), &audit("user.add", "ada")).await.unwrap());
    assert!(!store.create_user("ada", Role::Admin, None, &audit("user.add", "ada")).await.unwrap(), "a taken name");
    let users = store.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].role, users[0].disabled, users[0].has_password), (Role::Author, false, true));
    let credentials = store.user_credentials("ada").await.unwrap().unwrap();
    assert_eq!(credentials.password_hash.as_deref(), Some("$argon2id$hash"));
    assert!(!format!("{credentials:?}").contains("argon2"), "Debug hides the hash: {credentials:?}");

    let change = UserChange { role: Some(Role::Operator), disabled: Some(true), password_hash: None };
    assert!(store.change_user("ada", &change, &audit("user.change", "ada")).await.unwrap());
    assert!(!store.change_user("nobody", &change, &audit("user.change", "nobody")).await.unwrap());
    let ada = store.user_credentials("ada").await.unwrap().unwrap();
    assert_eq!((ada.user.role, ada.user.disabled), (Role::Operator, true));
    assert_eq!(ada.password_hash.as_deref(), Some("$argon2id$hash"), "kept");

    // Only the changes that happened are in the log: the refused duplicate and the unknown user
    // wrote nothing.
    let log = store.audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| (e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(actions, [("user.change", "ada"), ("user.add", "ada")]);
    assert_eq!(log[0].detail, json!({"why": "test"}));
}

async fn a_token_is_found_by_its_hash_and_revoked_once(db: Db) {
    let store = &db.store;
    store.create_user("ada", Role::Viewer, None, &audit("user.add", "ada")).await.unwrap();
    let expires = chrono::Utc::now() + chrono::Duration::days(1);
    let token =
        NewToken { id: "tok_000000000001", user_name: "ada", hash: "ab12", expires_at: Some(expires), purpose: "cli" };
    assert!(store.create_token(&token, &audit("token.create", "ada")).await.unwrap());
    let owner = store.token_by_hash("ab12").await.unwrap().unwrap();
    assert_eq!((owner.token.user_name.as_str(), owner.role, owner.disabled), ("ada", Role::Viewer, false));
    assert_eq!(owner.token.expires_at.map(|t| t.timestamp()), Some(expires.timestamp()));
    assert!(owner.token.revoked_at.is_none());
    assert!(store.token_by_hash("ab13").await.unwrap().is_none());

    assert!(store.revoke_token("tok_000000000001", &audit("token.revoke", "tok_000000000001")).await.unwrap());
    assert!(!store.revoke_token("tok_000000000001", &audit("token.revoke", "tok_000000000001")).await.unwrap());
    assert!(store.token_by_hash("ab12").await.unwrap().unwrap().token.revoked_at.is_some());
    let listed = store.tokens(Some("ada")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store.tokens(Some("bob")).await.unwrap().is_empty());
    assert_eq!(store.tokens(None).await.unwrap().len(), 1);
}

async fn a_token_needs_an_existing_user(db: Db) {
    let token = NewToken { id: "tok_1", user_name: "ghost", hash: "ff", expires_at: None, purpose: "cli" };
    assert!(!db.store.create_token(&token, &audit("token.create", "ghost")).await.unwrap());
    assert!(db.store.audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap().is_empty());
}

async fn the_audit_log_filters_and_pages_newest_first(db: Db) {
    let store = &db.store;
    for i in 0..5 {
        let mut entry = audit(if i % 2 == 0 { "user.add" } else { "dag.trigger" }, &format!("t{i}"));
        if i == 4 {
            entry.outcome = "refused".into();
        }
        store.record_audit(&entry).await.unwrap();
    }
    let page = store.audit(&AuditQuery { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["t4", "t3"]);
    let next = store.audit(&AuditQuery { limit: 2, before_id: Some(page[1].id), ..Default::default() }).await.unwrap();
    assert_eq!(next.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["t2", "t1"]);
    let users =
        store.audit(&AuditQuery { action: Some("user.".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(users.len(), 3);
    let exact =
        store.audit(&AuditQuery { action: Some("user".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert!(exact.is_empty(), "without a dot the action is exact");
    let refused =
        store.audit(&AuditQuery { outcome: Some("refused".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(refused.len(), 1);
    let one = AuditQuery { target: Some("t1".into()), actor: Some("root".into()), limit: 10, ..Default::default() };
    assert_eq!(store.audit(&one).await.unwrap().len(), 1);
}

async fn budgets_are_set_replaced_and_removed(db: Db) {
    let store = &db.store;
    assert!(store.set_budget("user", "ada", Some(1000), &audit("budget.set", "user:ada")).await.unwrap());
    assert!(store.set_budget("user", "ada", Some(2000), &audit("budget.set", "user:ada")).await.unwrap());
    assert!(store.set_budget("role", "author", Some(5), &audit("budget.set", "role:author")).await.unwrap());
    let budgets = store.budgets().await.unwrap();
    let figures: Vec<_> =
        budgets.iter().map(|b| (b.subject_kind.as_str(), b.subject.as_str(), b.fuel_per_day)).collect();
    assert_eq!(figures, [("role", "author", 5), ("user", "ada", 2000)]);
    assert!(store.set_budget("role", "author", None, &audit("budget.remove", "role:author")).await.unwrap());
    assert!(!store.set_budget("role", "author", None, &audit("budget.remove", "role:author")).await.unwrap());
    assert_eq!(store.budgets().await.unwrap().len(), 1);
    assert_eq!(store.fuel_used_by("ada", chrono::Utc::now() - chrono::Duration::days(1)).await.unwrap(), 0);
    assert_eq!(store.audit(&AuditQuery { limit: 10, ..Default::default() }).await.unwrap().len(), 4);
}

async fn a_users_change_and_its_audit_entry_commit_together_or_not_at_all(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    let log = || async { store.audit(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap() };
    let run = new_run("r1", sandflow_store::RunType::Manual, 0);
    let trigger = audit("dag.trigger", "d");
    assert!(store.audited(&trigger).create_run(&run, &["t".to_string()]).await.unwrap());
    // The same run again: not created, and so not audited.
    assert!(!store.audited(&trigger).create_run(&run, &["t".to_string()]).await.unwrap());
    assert_eq!(log().await.len(), 1);
    // A pause that changes nothing (it already is) records nothing; one that changes, one entry.
    let pause = audit("dag.pause", "d");
    assert_eq!(store.audited(&pause).set_paused("d", false).await.unwrap(), sandflow_store::PauseChange::Already);
    assert_eq!(store.audited(&pause).set_paused("d", true).await.unwrap(), sandflow_store::PauseChange::Changed);
    assert!(!store.audited(&audit("pool.delete", "none")).delete_pool("none").await.unwrap());
    store.audited(&audit("pool.set", "gpu")).set_pool("gpu", 2, None).await.unwrap();
    store.audited(&audit("run.clear", "r1")).enqueue_action("clear", &json!({}), "root").await.unwrap();
    assert_eq!(
        store.audited(&audit("dag.activate", "d")).activate_version("d", "v9").await.unwrap(),
        sandflow_store::ActivateChange::NoSuchVersion
    );
    let actions: Vec<String> = log().await.into_iter().map(|e| e.action).collect();
    assert_eq!(actions, ["run.clear", "pool.set", "dag.pause", "dag.trigger"]);
    // The plain methods (the scheduler's own changes) record nothing.
    store.set_paused("d", false).await.unwrap();
    assert_eq!(log().await.len(), 4);
}

async fn mounts_and_secrets_are_set_audited_and_never_read_back(db: Db) {
    let store = &db.store;
    store.audited(&audit("mount.set", "datasets")).set_mount("datasets", "/srv/data").await.unwrap();
    store.audited(&audit("mount.set", "datasets")).set_mount("datasets", "/srv/data2").await.unwrap();
    let mounts = store.mounts().await.unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        (mounts[0].name.as_str(), mounts[0].path.as_str(), mounts[0].created_by.as_str()),
        ("datasets", "/srv/data2", "root")
    );
    assert!(store.audited(&audit("mount.delete", "datasets")).delete_mount("datasets").await.unwrap());
    assert!(!store.audited(&audit("mount.delete", "datasets")).delete_mount("datasets").await.unwrap());
    assert!(store.mounts().await.unwrap().is_empty());

    store.audited(&audit("secret.set", "warehouse")).set_secret("warehouse", b"sealed\0bytes").await.unwrap();
    store.audited(&audit("secret.set", "other")).set_secret("other", b"x").await.unwrap();
    let names: Vec<_> = store.secrets().await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["other", "warehouse"]);
    let sealed = store.sealed_secrets(&["warehouse".into(), "missing".into()]).await.unwrap();
    assert_eq!(sealed, [("warehouse".to_string(), b"sealed\0bytes".to_vec())]);
    assert!(store.sealed_secrets(&[]).await.unwrap().is_empty());
    assert!(store.audited(&audit("secret.delete", "other")).delete_secret("other").await.unwrap());
    let entries = store.audit(&sandflow_store::AuditQuery { limit: 50, ..Default::default() }).await.unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| a.starts_with("mount.")).count(), 3, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| a.starts_with("secret.")).count(), 3, "{actions:?}");
}
