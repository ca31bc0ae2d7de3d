//! `--database-url`: every command on the database a URL names (PostgreSQL, or a SQLite file),
//! and its password never shown.

use crate::dags::CHAIN;
use crate::Env;

/// The URL of a new, empty PostgreSQL database (the harness crate's: on the run's server, or on
/// a private cluster it starts itself).
fn fresh_database() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(sandflow_test_postgres::fresh_database())
}

#[test]
fn a_database_urls_password_never_shows() {
    let env = Env::new();
    let run = env.run(&["--database-url", "mysql://alice:hunter2@db/sandflow", "dags", "list"]);
    assert_eq!(run.code(), 2);
    assert_eq!(
        run.reason(),
        "error: the database URL mysql://alice:***@db/sandflow is neither postgres://… (or postgresql://…) nor sqlite://PATH"
    );
    // Nothing listens on port 1: the connection is refused, and the message names the server.
    let run = env
        .command()
        .env("SANDFLOW_DATABASE_URL", "postgres://alice:hunter2@127.0.0.1:1/sandflow")
        .args(["dags", "list"])
        .output()
        .unwrap();
    let run = crate::Run(run);
    assert_eq!(run.code(), 2);
    assert!(
        run.reason().starts_with("error: could not connect to postgres://alice:***@127.0.0.1:1/sandflow"),
        "{}",
        run.reason()
    );
    assert!(!run.stderr().contains("hunter2") && !run.stdout().contains("hunter2"), "{}", run.stderr());
    let help = env
        .command()
        .env("SANDFLOW_DATABASE_URL", "postgres://alice:hunter2@127.0.0.1:1/sandflow")
        .args(["dags", "list", "--help"])
        .output()
        .unwrap();
    let help = crate::Run(help).ok();
    assert!(help.contains("--database-url <URL>") && !help.contains("hunter2"), "{help}");
}

#[test]
fn a_sqlite_url_is_used_instead_of_the_homes_file() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let elsewhere = env.home().join("elsewhere.db");
    let url = format!("sqlite://{}", elsewhere.display());
    assert_eq!(
        env.run(&["--database-url", &url, "db", "init"]).ok(),
        format!("database ready at {}\n", elsewhere.display())
    );
    env.run(&["--database-url", &url, "dags", "load", "--dags", &dags]).ok();
    assert!(env.run(&["--database-url", &url, "dags", "list"]).ok().contains("chain"));
    assert!(elsewhere.exists());
    assert!(!env.home().join("sandflow.db").exists(), "the home's file is not used");
}

#[test]
fn every_command_runs_on_a_postgresql_database() {
    let env = Env::new();
    let dags = env.dags(&[("chain", CHAIN)]);
    let url = fresh_database();
    let sandflow =
        |args: &[&str]| crate::Run(env.command().env("SANDFLOW_DATABASE_URL", &url).args(args).output().unwrap());
    assert!(sandflow(&["db", "init"]).ok().starts_with("database ready at postgres"));
    sandflow(&["db", "migrate"]).ok();
    let out = sandflow(&["standalone", "--dags", &dags, "--trigger", "chain", "--exit-when-done"]).ok();
    assert!(out.contains(" c: success (try 1, "), "{out}");
    assert!(out.lines().last().unwrap().ends_with(": success"), "{out}");
    let list = sandflow(&["tasks", "list", "chain", "latest"]).ok();
    for task in ["a ", "b ", "c "] {
        assert!(list.lines().any(|l| l.starts_with(task) && l.contains("success")), "{list}");
    }
    assert!(sandflow(&["tasks", "logs", "chain", "latest", "b"]).ok().ends_with("Z echo: task b try 1\n"));
    assert_eq!(sandflow(&["dags", "pause", "chain"]).ok(), "chain is paused\n");
    assert_eq!(sandflow(&["dags", "pause", "chain"]).ok(), "chain is paused (it already was)\n");
    // A clear with no scheduler running is carried out by the command itself, on the database.
    let cleared = sandflow(&["tasks", "clear", "chain", "latest", "c"]).ok();
    assert!(cleared.starts_with("cleared 1 task instance in 1 run"), "{cleared}");
    let run = sandflow(&["db", "reset", "--yes"]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().starts_with("error: db reset works on a SQLite database only"), "{}", run.reason());
    assert!(!env.home().join("sandflow.db").exists(), "the home's file is not used");
}
