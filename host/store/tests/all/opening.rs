//! Opening, migrating, refusing what is not ours, and the database URL.

use sandflow_store::{DatabaseUrl, Durability, PluginKind, Store, StoreError};

use crate::{fresh_database, plugin_id_of, with_dag, Db};

crate::on_both!(a_database_from_a_newer_sandflow_is_refused_clearly, reopening_keeps_everything);

/// The newest migration each backend has.
fn known(db: &Db) -> i64 {
    migrations(if db.is_postgres() { "postgres" } else { "sqlite" })
}

/// The migrations this build has for `backend`: one file each.
fn migrations(backend: &str) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    std::fs::read_dir(dir).unwrap().count() as i64
}

fn shown(db: &Db) -> String {
    match db.url.sqlite_path() {
        Some(path) => path.display().to_string(),
        None => db.url.redacted(),
    }
}

async fn a_database_from_a_newer_sandflow_is_refused_clearly(db: Db) {
    db.execute(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'future', 1, x'00', 0)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'future', TRUE, '\\x00'::bytea, 0)",
        &[],
    )
    .await;
    db.store.close().await;
    let err = Store::connect(&db.url).await.unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 9999, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer Sandflow (schema version 9999; this build knows up to {}): upgrade Sandflow",
            shown(&db),
            known(&db)
        )
    );
}

async fn reopening_keeps_everything(db: Db) {
    with_dag(&db.store).await;
    let id = plugin_id_of(b"bytes");
    db.store.put_plugin(&id, b"bytes", PluginKind::P1Command).await.unwrap();
    db.store.close().await;
    let store = db.open_again().await;
    assert_eq!(store.dags().await.unwrap().len(), 1);
    assert_eq!(store.plugin_bytes(&id).await.unwrap().as_deref(), Some(&b"bytes"[..]));
    assert_eq!(store.plugin_bytes(&plugin_id_of(b"other")).await.unwrap(), None);
    assert_eq!(db.count("SELECT COUNT(*) FROM _sqlx_migrations").await, known(&db), "migrated once");
}

/// Opens a database that was never opened from many tasks at once: every open succeeds, and the
/// migrations run once.
async fn many_opening_a_new_database_at_once(url: DatabaseUrl, openers: usize) -> Vec<Store> {
    let opens: Vec<_> = (0..openers)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().unwrap());
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_many_processes_opening_a_new_database_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::sqlite(&dir.path().join("sandflow.db"));
    let stores = many_opening_a_new_database_at_once(url.clone(), 16).await;
    let db = Db::sqlite_at(dir, url, stores[0].clone());
    assert_eq!(db.count("SELECT COUNT(*) FROM _sqlx_migrations").await, migrations("sqlite"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes_migrating_a_fresh_database_at_once_end_with_one_migration() {
    let text = fresh_database().await;
    let url = DatabaseUrl::parse(&text).unwrap();
    let stores = many_opening_a_new_database_at_once(url.clone(), 4).await;
    let db = Db::postgres_at(text, url, stores[0].clone());
    assert_eq!(db.count("SELECT COUNT(*) FROM _sqlx_migrations").await, migrations("postgres"));
    assert_eq!(db.count("SELECT COUNT(*) FROM pools WHERE name = 'default_pool'").await, 1, "the migration ran once");
}

#[tokio::test]
async fn sqlite_a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&path, Durability::Normal).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a Sandflow database (not even SQLite): move it away or choose another --home",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192], "the file is left as it was");
}

#[tokio::test]
async fn sqlite_an_empty_database_file_is_refused_not_taken_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    std::fs::write(&path, b"").unwrap();
    let err = Store::open(&path, Durability::Normal).await.unwrap_err();
    assert!(matches!(err, StoreError::EmptyFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is empty (0 bytes), so it holds no Sandflow history: restore it from a backup, or delete it (`sandflow db reset --yes`) to start with a new database",
            path.display()
        )
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file is left as it was");
    assert!(!dir.path().join("sandflow.db-wal").exists(), "nothing was created beside it");

    std::fs::remove_file(&path).unwrap();
    Store::open(&path, Durability::Normal).await.unwrap().close().await;
    assert!(std::fs::metadata(&path).unwrap().len() > 0, "a missing file is a new database, written at once");
    Store::open(&path, Durability::Normal).await.unwrap();
}

#[tokio::test]
async fn sqlite_in_memory_stores_are_private() {
    let a = Store::in_memory().await.unwrap();
    let b = Store::in_memory().await.unwrap();
    with_dag(&a).await;
    assert_eq!(a.dags().await.unwrap().len(), 1);
    assert!(b.dags().await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_a_sqlite_url_opens_the_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-url.db");
    let url = DatabaseUrl::parse(&format!("sqlite://{}", path.display())).unwrap();
    assert_eq!(url.sqlite_path(), Some(path.as_path()));
    let store = Store::connect(&url).await.unwrap();
    with_dag(&store).await;
    store.close().await;
    let again = Store::open(&path, Durability::Normal).await.unwrap();
    assert_eq!(again.dags().await.unwrap().len(), 1);
}

#[test]
fn database_urls_show_their_password_redacted() {
    let url = DatabaseUrl::parse("postgres://alice:hunter2@db.example:5432/sandflow?sslmode=prefer").unwrap();
    assert!(url.is_postgres());
    assert_eq!(url.to_string(), "postgres://alice:***@db.example:5432/sandflow?sslmode=prefer");
    assert_eq!(format!("{url:?}"), "DatabaseUrl(\"postgres://alice:***@db.example:5432/sandflow?sslmode=prefer\")");
    let url = DatabaseUrl::parse("postgresql://alice@db/sandflow?password=hunter2").unwrap();
    assert_eq!(url.to_string(), "postgresql://alice@db/sandflow?password=***");

    let err = DatabaseUrl::parse("mysql://alice:hunter2@db/sandflow").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the database URL mysql://alice:***@db/sandflow is neither postgres://… (or postgresql://…) nor sqlite://PATH"
    );
    let err = DatabaseUrl::parse("postgres://alice:hunter2@db:notaport/sandflow").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().starts_with("the database URL postgres://alice:***@db:notaport/sandflow is not"), "{err}");
    assert!(DatabaseUrl::parse("sqlite://").is_err());
    assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_is_named_without_its_password() {
    // Port 1 on the loopback: nothing listens there, so the connection is refused at once.
    let url = DatabaseUrl::parse("postgres://alice:hunter2@127.0.0.1:1/sandflow?connect_timeout=5").unwrap();
    let err = Store::connect(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(err.to_string().starts_with("could not connect to postgres://alice:***@127.0.0.1:1/sandflow"), "{err}");
}

#[tokio::test]
async fn postgres_a_store_shows_its_url_without_the_password() {
    // The test server may need no password; one given anyway is ignored by it, and must not show.
    let text = fresh_database().await;
    let with_password = match text.split_once("://") {
        Some((scheme, rest)) if !rest.split('@').next().unwrap_or("").contains(':') && rest.contains('@') => {
            let (user, host) = rest.split_once('@').unwrap();
            format!("{scheme}://{user}:hunter2@{host}")
        }
        _ => text.clone(),
    };
    let url = DatabaseUrl::parse(&with_password).unwrap();
    let store = Store::connect(&url).await.unwrap();
    let secret = with_password
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':').map(|(_, password)| password.to_string()));
    for shown in [format!("{store:?}"), store.describe(), url.to_string(), format!("{url:?}")] {
        if let Some(secret) = &secret {
            assert!(!shown.contains(secret.as_str()), "{shown}");
        }
        assert!(shown.contains(&url.redacted()), "{shown}");
    }
    assert!(secret.is_some(), "the URL under test has a password");
}
