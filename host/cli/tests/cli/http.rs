//! The CLI over HTTP: a real `sandflow standalone` serving its API on a free loopback port, and
//! `bundle push`, `dags ... --server`, `runs compare` against it, from another home that has no
//! database at all.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Env;

struct Standalone {
    child: Child,
    out: std::path::PathBuf,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Standalone {
    /// Starts it and waits for the address its API listens on.
    fn start(env: &Env, dags: &str) -> (Standalone, String) {
        let out = env.home().join("standalone.out");
        let file = std::fs::File::create(&out).unwrap();
        let err = file.try_clone().unwrap();
        let child = env
            .command()
            .args(["standalone", "--dags", dags])
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        let process = Standalone { child, out };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let printed = std::fs::read_to_string(&process.out).unwrap_or_default();
            if let Some(line) = printed.lines().find(|l| l.starts_with("API on http://")) {
                let url = line.trim_start_matches("API on ").split("/api/v1").next().unwrap().to_string();
                return (process, url);
            }
            assert!(Instant::now() < deadline, "no API address printed:\n{printed}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `sandflow --server URL ARGS...` from `client`'s home.
fn over(client: &Env, url: &str, args: &[&str]) -> crate::Run {
    let mut all = vec!["--server", url];
    all.extend_from_slice(args);
    client.run(&all)
}

#[test]
fn a_bundle_pushed_over_http_runs_and_experiments_compare_from_a_home_without_a_database() {
    let server_env = Env::new();
    let dags = server_env.dags(&[("chain", crate::dags::CHAIN)]);
    let (_standalone, url) = Standalone::start(&server_env, &dags);
    // The client's home is empty: every command below must go through the server.
    let client = Env::with_token(server_env.admin_token());
    let with = |args: &[&str]| over(&client, &url, args);
    let pushed = with(&["bundle", "push", &dags]).ok();
    assert!(pushed.contains("chain v") && pushed.contains("plugin plugins/echo.wasm sha256:"), "{pushed}");
    // An edited copy, pushed as an experiment, triggered and waited for in one command.
    let edited = client.home().join("edited");
    std::fs::create_dir_all(edited.join("plugins")).unwrap();
    std::fs::copy(crate::plugin("echo"), edited.join("plugins/echo.wasm")).unwrap();
    std::fs::write(edited.join("chain.toml"), crate::dags::CHAIN.replace("n = 1", "n = 2")).unwrap();
    let edited = edited.display().to_string();
    let run = with(&["bundle", "push", &edited, "--experiment", "alice-n2", "--note", "n is 2", "--trigger", "--wait"]);
    let out = run.ok();
    assert!(out.contains("experiment alice-n2") && out.contains(": success"), "{out}");
    let triggered = with(&["dags", "trigger", "chain", "--wait", "--json"]);
    assert_eq!(triggered.code(), 0, "{}", triggered.stderr());
    let first: Value = serde_json::from_str(&triggered.stdout()).unwrap();
    let active_run = first["run_id"].as_str().unwrap_or_default().to_string();
    let listed = with(&["dags", "list"]).ok();
    assert!(listed.lines().any(|l| l.starts_with("chain ") && l.contains("success")), "{listed}");
    let shown = with(&["dags", "show", "chain"]).ok();
    assert!(shown.contains("alice-n2"), "versions list their experiments: {shown}");
    // Compare the experiment's run with the active version's.
    let runs: Value = serde_json::from_str(&with(&["dags", "show", "chain", "--json"]).ok()).unwrap();
    let experiment_run = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["experiment"] == "alice-n2")
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .expect("the experiment's run is listed");
    let compared = with(&["runs", "compare", &active_run, &experiment_run]).ok();
    assert!(
        compared.contains("alice-n2") && compared.lines().any(|l| l.starts_with("a ") && l.contains("differs")),
        "{compared}"
    );
    let tasks = with(&["tasks", "list", "chain", "latest"]).ok();
    assert!(tasks.lines().any(|l| l.starts_with("c ") && l.contains("success")), "{tasks}");
    let tries = with(&["tasks", "tries", "chain", &active_run, "b"]).ok();
    assert!(tries.lines().nth(1).is_some_and(|l| l.starts_with("1 ") && l.contains("success")), "{tries}");
    let logs = with(&["tasks", "logs", "chain", "latest", "b"]);
    assert!(logs.ok().contains("echo: task b try 1"), "{}", logs.stdout());
    assert!(with(&["pools", "set", "gpu", "2", "--description", "two cards"]).ok().contains("pool gpu has 2 slots"));
    assert!(with(&["pools", "list"]).ok().lines().any(|l| l.starts_with("gpu ") && l.contains("two cards")));
    assert_eq!(with(&["pools", "set", "bad name", "2"]).code(), 2);
    assert!(with(&["pools", "delete", "gpu"]).ok().contains("deleted"));
    assert_eq!(with(&["pools", "delete", "gpu"]).code(), 2, "an unknown pool is a 404, exit 2");
    // Plugins by hash, over HTTP.
    let listed = with(&["plugin", "list"]).ok();
    let echo_id = listed.lines().find_map(|l| l.split_whitespace().next().filter(|w| w.starts_with("sha256:")));
    let echo_id = echo_id.unwrap_or_else(|| panic!("{listed}")).to_string();
    let echo = crate::plugin("echo");
    assert_eq!(with(&["plugin", "add", &echo]).ok().trim(), format!("{echo_id} (the server already had it)"));
    let inspected = with(&["plugin", "inspect", &echo]).ok();
    assert!(inspected.contains(&echo_id) && inspected.lines().any(|l| l.starts_with("chain ")), "{inspected}");
    let refused = with(&["db", "migrate"]);
    assert!(refused.code() == 2 && refused.reason().contains("without --server"), "{}", refused.reason());
    let refused = with(&["dags", "load", "--dags", &dags]);
    assert!(refused.code() == 2 && refused.reason().contains("sandflow bundle push"), "{}", refused.reason());
    assert!(!client.home().join("sandflow.db").exists(), "the client never opened a database");
    // Bad input over HTTP is exit 2 with the server's message; an unreachable server is exit 1.
    let unknown = with(&["dags", "trigger", "nope"]);
    assert_eq!(unknown.code(), 2);
    assert!(
        unknown.reason().contains("no DAG `nope` (known: chain)") && unknown.reason().contains("404"),
        "{}",
        unknown.reason()
    );
    let gone = client.run(&["--server", "http://127.0.0.1:9", "dags", "list"]);
    assert_eq!(gone.code(), 1);
    assert!(gone.reason().contains("could not reach the server at http://127.0.0.1:9"), "{}", gone.reason());
}

const DAILY: &str = r#"
id = "daily"
schedule = "@daily"
start_date = "2026-01-01"
[tasks.work]
plugin = "plugins/echo.wasm"
"#;

#[test]
fn backfill_clear_and_mark_over_http() {
    let server_env = Env::new();
    let dags = server_env.dags(&[("daily", DAILY)]);
    let (_standalone, url) = Standalone::start(&server_env, &dags);
    let client = Env::with_token(server_env.admin_token());
    let with = |args: &[&str]| over(&client, &url, args);
    let out = with(&["dags", "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03"]).ok();
    assert!(
        out.starts_with("backfill of daily: 3 intervals from 2026-01-01T00:00:00Z to 2026-01-03T00:00:00Z: 3 runs created, 0 failed runs cleared to rerun, 0 already ran\n"),
        "{out}"
    );
    assert!(out.contains("3 runs succeeded, 0 failed"), "{out}");
    // Again: every interval already ran.
    let again = with(&["dags", "backfill", "daily", "--from", "2026-01-01", "--to", "2026-01-03"]).ok();
    assert!(again.contains("0 runs created, 0 failed runs cleared to rerun, 3 already ran"), "{again}");
    let reversed = with(&["dags", "backfill", "daily", "--from", "2026-01-03", "--to", "2026-01-01"]);
    assert_eq!(reversed.code(), 2, "{}", reversed.reason());
    let unknown = with(&["dags", "backfill", "nope", "--from", "2026-01-01", "--to", "2026-01-02"]);
    assert!(unknown.code() == 2 && unknown.reason().contains("no DAG `nope`"), "{}", unknown.reason());

    let cleared = with(&["dags", "clear", "daily", "--from", "2026-01-01", "--to", "2026-01-02"]).ok();
    assert!(cleared.contains("cleared"), "{cleared}");
    let shown: Value = serde_json::from_str(&with(&["dags", "show", "daily", "--json"]).ok()).unwrap();
    let run = shown["runs"].as_array().unwrap().iter().find(|r| r["run_type"] == "backfill").unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    let marked = with(&["dags", "mark", "daily", run_id, "failed"]).ok();
    assert!(marked.contains("failed"), "{marked}");
    assert!(!client.home().join("sandflow.db").exists(), "the client never opened a database");
}

#[test]
fn a_first_start_makes_an_admin_whose_token_the_home_keeps_and_users_get_roles() {
    use std::os::unix::fs::PermissionsExt;
    let server_env = Env::new();
    let dags = server_env.dags(&[("chain", crate::dags::CHAIN)]);
    let (standalone, url) = Standalone::start(&server_env, &dags);
    let printed = std::fs::read_to_string(&standalone.out).unwrap();
    let token = server_env.admin_token();
    assert!(printed.contains("first start: created user admin") && printed.contains(&token), "{printed}");
    let mode = std::fs::metadata(server_env.home().join("token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner reads the token file");
    // The CLI of the server's home finds the token by itself.
    assert!(over(&server_env, &url, &["dags", "list"]).ok().contains("chain"));

    // Users and tokens from this machine's store (the CLI that can open it is its admin).
    server_env.run(&["users", "add", "ann", "--role", "author"]).ok();
    let added = server_env.run(&["users", "add", "ann", "--role", "viewer"]);
    assert_eq!(added.code(), 2, "a taken name: {}", added.stderr());
    let issued = server_env.run(&["users", "token", "ann", "--expires", "1d"]).ok();
    let ann_token = issued.lines().last().unwrap().trim().to_string();
    assert!(ann_token.starts_with("sf_") && ann_token.len() == 67, "{issued}");
    let listed = server_env.run(&["users", "list"]).ok();
    assert!(listed.contains("ann") && listed.contains("author") && listed.contains("admin"), "{listed}");

    // Over HTTP: no token is 401 with a hint; an author is refused admin's commands.
    let nobody = Env::new();
    let refused = over(&nobody, &url, &["dags", "list"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(refused.stderr().contains("401") && refused.stderr().contains("SANDFLOW_TOKEN"), "{}", refused.stderr());
    let ann = Env::with_token(ann_token);
    assert!(over(&ann, &url, &["dags", "list"]).ok().contains("chain"));
    let denied = over(&ann, &url, &["users", "list"]);
    assert_eq!(denied.code(), 2);
    assert!(denied.stderr().contains("403") && denied.stderr().contains("admin role"), "{}", denied.stderr());
    assert_eq!(over(&ann, &url, &["dags", "pause", "chain"]).code(), 2, "an author does not pause DAGs");
    let admin = Env::with_token(token);
    let roles = over(&admin, &url, &["users", "role", "ann", "operator"]).ok();
    assert!(roles.contains("operator"), "{roles}");
    assert!(over(&ann, &url, &["dags", "pause", "chain"]).code() == 0, "an operator now");
    let tokens = over(&admin, &url, &["users", "tokens", "--json"]).ok();
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    let ann_id = tokens.as_array().unwrap().iter().find(|t| t["user_name"] == "ann").unwrap()["id"].clone();
    over(&admin, &url, &["users", "revoke", ann_id.as_str().unwrap()]).ok();
    assert_eq!(over(&ann, &url, &["dags", "list"]).code(), 2, "revoked at once");

    // Who did what, in the audit log (here and over HTTP).
    let audit = server_env.run(&["audit", "--action", "user."]).ok();
    assert!(audit.contains("user.add") && audit.contains("user.change"), "{audit}");
    let refused = over(&admin, &url, &["audit", "--outcome", "refused", "--json"]).ok();
    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert!(refused.as_array().unwrap().iter().any(|e| e["actor"] == "ann"), "{refused}");
}

const AIRFLOW_PAIR: &str = r#"
id = "airflow_pair"
[tasks.first]
plugin = "plugins/echo.wasm"
[tasks.second]
plugin = "plugins/echo.wasm"
upstream = ["first"]
"#;

/// The venv's python with `apache-airflow-client`: SANDFLOW_TEST_AIRFLOW_PYTHON (scripts/test.sh
/// makes one for the run), else one made here by scripts/airflow-client.sh in the target folder.
fn airflow_python() -> String {
    if let Ok(python) = std::env::var("SANDFLOW_TEST_AIRFLOW_PYTHON") {
        return python;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let venv = format!("{root}/target/airflow-client-venv");
    let made = std::process::Command::new(format!("{root}/scripts/airflow-client.sh")).arg(&venv).output().unwrap();
    assert!(made.status.success(), "scripts/airflow-client.sh: {}", String::from_utf8_lossy(&made.stderr));
    String::from_utf8(made.stdout).unwrap().trim().to_string()
}

#[test]
fn the_official_airflow_client_drives_the_server_unchanged() {
    use std::io::Write;
    let server_env = Env::new();
    let dags = server_env.dags(&[("airflow_pair", AIRFLOW_PAIR)]);
    let (_standalone, url) = Standalone::start(&server_env, &dags);
    let mut add = server_env
        .command()
        .args(["users", "add", "airflow", "--role", "operator", "--password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"an airflow password\n").unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/airflow/check.py");
    let checked = std::process::Command::new(airflow_python())
        .arg(script)
        .env("SANDFLOW_URL", &url)
        .env("SANDFLOW_DAG", "airflow_pair")
        .env("AIRFLOW_USER", "airflow")
        .env("AIRFLOW_PASSWORD", "an airflow password")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&checked.stdout);
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{out}\n{err}");
    assert!(out.contains("every check held"), "{out}");
}

#[test]
fn a_try_replays_over_http_from_a_home_without_a_database() {
    let server_env = Env::new();
    let dags = server_env.dags(&[("replayed", crate::pipelines::REPLAYED)]);
    std::fs::copy(sandflow_test_artifacts::path("grants"), format!("{dags}/plugins/grants.wasm")).unwrap();
    let (_standalone, url) = Standalone::start(&server_env, &dags);
    let client = Env::with_token(server_env.admin_token());
    let with = |args: &[&str]| over(&client, &url, args);
    with(&["dags", "backfill", "replayed", "--from", "2026-01-01", "--to", "2026-01-01"]).ok();
    let run = "backfill__replayed__2026-01-01T00:00:00Z";
    // `roll` read `make`'s artifact at /in: it comes over HTTP, checked against its hash.
    for task in ["make", "roll"] {
        let out = with(&["tasks", "replay", "replayed", run, task]).ok();
        assert!(out.contains("identical: same outcome, result and artifacts"), "{out}");
    }
    let shown: Value =
        serde_json::from_str(&with(&["tasks", "replay", "replayed", run, "roll", "--json"]).ok()).unwrap();
    let mut context: Value = serde_json::from_str(shown["record"]["context"].as_str().unwrap()).unwrap();
    context["params"]["sleep_ms"] = Value::from(9);
    let file = client.home().join("context.json");
    std::fs::write(&file, serde_json::to_vec(&context).unwrap()).unwrap();
    let changed = with(&["tasks", "replay", "replayed", run, "roll", "--context", file.to_str().unwrap()]);
    assert_eq!(changed.code(), 1, "{}{}", changed.stdout(), changed.stderr());
    assert!(changed.stdout().contains("difference: context: not the recorded bytes"), "{}", changed.stdout());
    let none = with(&["tasks", "replay", "replayed", run, "roll", "--try", "3"]);
    assert_eq!(none.code(), 2, "{}", none.stderr());
    assert!(none.reason().contains("roll has no try 3 in run"), "{}", none.reason());
    assert!(!client.home().join("sandflow.db").exists(), "the client never opened a database");
}
