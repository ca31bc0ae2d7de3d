//! kill -9 of `sandflow standalone` mid-run: nothing committed is lost, and the interrupted try is
//! recorded as such and retried when the process starts again.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Env;

const CRASHY: &str = r#"
id = "crashy"
[defaults]
retries = 1
retry_delay = "1s"
[tasks.first]
plugin = "plugins/echo.wasm"
params = { n = 1 }
[tasks.slow]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 3000 }
upstream = ["first"]
[tasks.last]
plugin = "plugins/echo.wasm"
upstream = ["slow"]
"#;

fn task_states(env: &Env) -> Option<Value> {
    let run = env.run(&["tasks", "list", "crashy", "latest", "--json"]);
    if run.code() != 0 {
        return None;
    }
    serde_json::from_str(&run.stdout()).ok()
}

fn state_of(json: &Value, task: &str) -> String {
    json["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == task).unwrap()["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_until(env: &Env, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(json) = task_states(env) {
            if check(&json) {
                return json;
            }
        }
        if Instant::now() >= deadline {
            let output = std::fs::read_to_string(env.home().join("standalone.out")).unwrap_or_default();
            let last = env.run(&["tasks", "list", "crashy", "latest", "--json"]);
            panic!("{what} did not happen: {}{}\nstandalone printed:\n{output}", last.stdout(), last.stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kill_9_mid_run_loses_nothing_and_retries_the_interrupted_try() {
    let env = Env::new();
    let dags = env.dags(&[("crashy", CRASHY)]);
    // Both processes append what they print to one file, shown if the test fails.
    let spawn = |args: &[&str]| {
        let out =
            std::fs::OpenOptions::new().create(true).append(true).open(env.home().join("standalone.out")).unwrap();
        let err = out.try_clone().unwrap();
        Killed(env.command().args(args).stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().unwrap())
    };

    let mut first = spawn(&["standalone", "--dags", &dags, "--trigger", "crashy"]);
    wait_until(&env, "slow running", |json| state_of(json, "slow") == "running");
    first.0.kill().unwrap(); // SIGKILL
    first.0.wait().unwrap();

    // What was committed before the kill is all there.
    let json = task_states(&env).unwrap();
    assert_eq!(state_of(&json, "first"), "success");
    assert_eq!(state_of(&json, "slow"), "running", "the store still says running: nobody recorded the end");
    let first_ti = json["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == "first").unwrap().clone();
    assert_eq!(first_ti["output"]["params"]["n"], 1, "{first_ti}");
    assert!(env.run(&["tasks", "logs", "crashy", "latest", "first"]).ok().ends_with("Z echo: task first try 1\n"));

    // Start again: the interrupted try is recorded, retried, and the run finishes.
    let _second = spawn(&["standalone", "--dags", &dags]);
    let json = wait_until(&env, "the run to end", |json| {
        json["run"]["state"] == "success" || json["run"]["state"] == "failed"
    });
    assert_eq!(json["run"]["state"], "success", "{json}");
    let logs = env.run(&["tasks", "logs", "crashy", "latest", "slow", "--try", "1"]);
    assert!(logs.stderr().contains("stopped renewing its lease before it ended"), "{}", logs.stderr());
    let slow = json["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == "slow").unwrap();
    assert_eq!(slow["try_number"], 2, "retried once: {slow}");
    let first_again = json["task_instances"].as_array().unwrap().iter().find(|t| t["task_id"] == "first").unwrap();
    assert_eq!(first_again["try_number"], 1, "the finished task did not run again");
    assert_eq!(first_again["output"], first_ti["output"]);
}
