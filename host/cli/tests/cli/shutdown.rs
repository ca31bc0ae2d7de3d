//! SIGTERM, as systemd and docker send it: `standalone` and `worker` stop claiming, give running
//! tries their `--shutdown-grace`, then kill what is left and record it `interrupted` at once, and
//! exit 0; a second SIGTERM ends the grace early.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Env;

const LONG: &str = r#"
id = "long"
[tasks.nap]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 60000 }
retries = 1
retry_delay = "1s"
"#;

/// A process whose output goes to a file of the home (shown when a test fails); killed if the
/// test ends first.
struct Process {
    child: Child,
    out: PathBuf,
}

impl Process {
    fn spawn(env: &Env, name: &str, args: &[&str]) -> Process {
        let out = env.home().join(format!("{name}.out"));
        let file = std::fs::File::create(&out).unwrap();
        let err = file.try_clone().unwrap();
        let child = env.command().args(args).stdout(Stdio::from(file)).stderr(Stdio::from(err)).spawn().unwrap();
        Process { child, out }
    }

    fn printed(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn sigterm(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }

    /// Waits (up to `limit`) for the process to exit.
    fn exited(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {limit:?} after SIGTERM; it printed:\n{}",
                self.printed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 60 s) until it has printed `text`.
    fn until_printed(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.printed().contains(text) {
            assert!(Instant::now() < deadline, "never printed {text:?}; it printed:\n{}", self.printed());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to 60 s) until `nap` is running.
fn until_running(env: &Env, who: &Process) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = env.run(&["tasks", "list", "long", "latest", "--json"]);
        if run.code() == 0 {
            let json: Value = serde_json::from_str(&run.stdout()).unwrap();
            if json["task_instances"][0]["state"] == "running" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nap never ran; it printed:\n{}", who.printed());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tries of `nap` as `tasks tries --json` shows them.
fn tries(env: &Env) -> Vec<Value> {
    let json: Value =
        serde_json::from_str(&env.run(&["tasks", "tries", "long", "latest", "nap", "--json"]).ok()).unwrap();
    json["tries"].as_array().unwrap().clone()
}

#[test]
fn sigterm_stops_standalone_after_its_grace_and_records_the_running_try_interrupted() {
    let env = Env::new();
    let dags = env.dags(&[("long", LONG)]);
    let mut standalone = Process::spawn(
        &env,
        "standalone",
        &["standalone", "--dags", &dags, "--trigger", "long", "--shutdown-grace", "1s"],
    );
    until_running(&env, &standalone);
    let sent = Instant::now();
    standalone.sigterm();
    // The grace (1 s) and the report, far less than the lease (10 s) a killed process's try waits.
    let status = standalone.exited(Duration::from_secs(30));
    assert!(status.success(), "{status}; it printed:\n{}", standalone.printed());
    assert!(sent.elapsed() < Duration::from_secs(10), "took {:?}", sent.elapsed());
    let printed = standalone.printed();
    assert!(
        printed.contains("stopping: waiting up to 1s for 1 running try (Ctrl-C again to kill them now)"),
        "{printed}"
    );
    assert!(printed.contains("stopped: 0 tries finished, 1 try recorded as interrupted"), "{printed}");

    let tries = tries(&env);
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0]["outcome"], "interrupted", "{tries:?}");
    let message = tries[0]["message"].as_str().unwrap();
    assert!(message.contains("the worker was stopped (graceful shutdown deadline 1s passed)"), "{message}");
}

#[test]
fn a_second_sigterm_kills_a_workers_tries_at_once() {
    let env = Env::new();
    let dags = env.dags(&[("long", LONG)]);
    // A scheduler and a worker on one SQLite home, as on one machine.
    env.load(&dags).ok();
    let _scheduler = Process::spawn(&env, "scheduler", &["scheduler", "--dags", &dags]);
    let mut worker = Process::spawn(&env, "worker", &["worker", "--concurrency", "2", "--shutdown-grace", "10m"]);
    let triggered = env.run(&["dags", "trigger", "long"]);
    assert_eq!(triggered.code(), 0, "{}{}", triggered.stdout(), triggered.stderr());
    until_running(&env, &worker);
    worker.sigterm();
    worker.until_printed("stopping: waiting up to 10m for 1 running try (Ctrl-C again to kill them now)");
    worker.sigterm();
    let status = worker.exited(Duration::from_secs(30));
    assert!(status.success(), "{status}; it printed:\n{}", worker.printed());
    let printed = worker.printed();
    assert!(printed.contains("killing 1 try now"), "{printed}");
    assert!(printed.contains("stopped: 0 tries finished, 1 try recorded as interrupted"), "{printed}");

    let tries = tries(&env);
    assert_eq!(tries[0]["outcome"], "interrupted", "{tries:?}");
    let message = tries[0]["message"].as_str().unwrap();
    assert!(message.contains("the worker was stopped and asked to kill its tries at once"), "{message}");
}
