//! Loading DAG files and plugins from the command line: plugins named by the id `plugin add`
//! printed, files that must not block or escape, stale DAGs.

use serde_json::Value;

use crate::{plugin, Env};

fn dag_with_plugin(id: &str, plugin: &str) -> String {
    format!("id = \"{id}\"\n[tasks.a]\nplugin = \"{plugin}\"\n")
}

/// Loads the folder as the scheduler does (`standalone` with nothing to wait for), then lists the
/// DAGs from the store.
fn load_and_list(env: &Env, dags: &str) -> Value {
    let standalone = env.run(&["standalone", "--dags", dags, "--exit-when-done"]);
    standalone.ok();
    json(&env.run(&["dags", "list", "--json"]).ok())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_plugin_added_by_hand_is_named_by_its_id() {
    let env = Env::new();
    let id = env.run(&["plugin", "add", &plugin("echo")]).ok().trim().to_string();
    let dags = env.dags(&[("by_id", &dag_with_plugin("by_id", &id))]);
    let list = load_and_list(&env, &dags);
    assert_eq!(list["import_errors"], Value::Array(vec![]), "{list}");
    assert_eq!(list["dags"][0]["dag_id"], "by_id");
    // The id reads back from the store for inspect, run and a test run of the DAG.
    let inspected = json(&env.run(&["plugin", "inspect", "--json", &id]).ok());
    assert_eq!(inspected["id"], id.as_str());
    let test = env.run(&["dags", "test", "by_id", "--dags", &dags]);
    assert!(test.ok().contains("success"), "{}", test.stdout());
    // One place for plugin bytes: no plugins/ folder in the home.
    assert!(!env.home().join("plugins").exists());
    let listed = json(&env.run(&["plugin", "list", "--json"]).ok());
    let row = listed.as_array().unwrap().iter().find(|p| p["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(row["kind"], "p1_command");
    assert_eq!(row["size"].as_u64(), Some(std::fs::metadata(plugin("echo")).unwrap().len()));
    assert!(row["created_at"].is_string(), "{row}");
}

#[test]
fn an_unknown_id_says_how_to_add_it() {
    let env = Env::new();
    let id = format!("sha256:{}", "0".repeat(64));
    let dags = env.dags(&[("unknown", &dag_with_plugin("unknown", &id))]);
    let list = load_and_list(&env, &dags);
    let message = list["import_errors"][0]["message"].as_str().unwrap().to_string();
    assert!(
        message.ends_with(&format!("no plugin {id} in the store: add it first (sandflow plugin add)")),
        "{message}"
    );
    let run = env.run(&["plugin", "run", &id]);
    assert_eq!(run.code(), 2);
    assert!(run.reason().contains(&format!("no plugin {id} in the store")), "{}", run.reason());
}

#[test]
fn a_fifo_dag_file_or_plugin_does_not_block_the_command() {
    let env = Env::new();
    let dags = env.dags(&[("fifo_plugin", &dag_with_plugin("fifo_plugin", "plugins/fifo.wasm"))]);
    for path in [format!("{dags}/fifo.toml"), format!("{dags}/plugins/fifo.wasm")] {
        let status = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(status.success());
    }
    let list = load_and_list(&env, &dags);
    let errors: Vec<String> =
        list["import_errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors
        .iter()
        .any(|m| m.ends_with("fifo.toml: a FIFO, not a regular file: a DAG file must be a regular file")));
    assert!(errors
        .iter()
        .any(|m| m.ends_with("fifo.wasm: a FIFO, not a regular file: a plugin must be a regular file")));
    let add = env.run(&["plugin", "add", &format!("{dags}/plugins/fifo.wasm")]);
    assert_eq!(add.code(), 2);
    assert!(add.reason().ends_with("a FIFO, not a regular file: a plugin must be a regular file"), "{}", add.reason());
}

#[test]
fn a_deleted_dag_file_makes_its_dag_stale_until_it_returns() {
    let env = Env::new();
    let text = dag_with_plugin("gone", "plugins/noop.wasm");
    let dags = env.dags(&[("gone", &text)]);
    let list = load_and_list(&env, &dags);
    assert_eq!(list["dags"][0]["stale"], false);
    std::fs::remove_file(format!("{dags}/gone.toml")).unwrap();
    let list = load_and_list(&env, &dags);
    assert_eq!((list["dags"][0]["dag_id"].as_str(), list["dags"][0]["stale"].as_bool()), (Some("gone"), Some(true)));
    let table = env.run(&["dags", "list"]).ok();
    assert!(table.contains("stale: gone (since "), "{table}");
    let show = json(&env.run(&["dags", "show", "gone", "--json"]).ok());
    assert_eq!(show["stale"], true);
    assert!(show["dag"]["stale_since"].is_string(), "{show}");
    let shown = env.run(&["dags", "show", "gone"]).ok();
    assert!(shown.contains("stale:    since "), "{shown}");
    std::fs::write(format!("{dags}/gone.toml"), &text).unwrap();
    let list = load_and_list(&env, &dags);
    assert_eq!(list["dags"][0]["stale"], false);
}
