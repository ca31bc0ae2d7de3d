//! One home, several processes: only one scheduler owns an embedded home at a time, `db reset`
//! does not pull the database from under a live one, and an emptied database file is refused.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sandflow_core::state::{RunState, TaskState};
use sandflow_store::{Durability, RunRow, Store, TaskInstanceRow, TryRow};

use crate::{Env, Run};

/// A slow task, then one that reads its output.
const SLOW: &str = r#"
id = "slow"
[tasks.nap]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 4000 }
[tasks.after]
plugin = "plugins/echo.wasm"
upstream = ["nap"]
"#;

/// A daily DAG whose one task is slow, for a backfill that takes a while.
const SLOW_DAILY: &str = r#"
id = "slow_daily"
schedule = "@daily"
start_date = "2026-01-01"
[tasks.nap]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 3000 }
"#;

/// A generous deadline for anything a loaded machine must get done.
const DEADLINE: Duration = Duration::from_secs(120);

/// A process that is killed (SIGKILL) if the test ends before it does.
struct Spawned(Option<Child>);

impl Spawned {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to end by itself; kills it and fails the test past the deadline.
    fn finish(mut self, what: &str) -> Run {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("{what} did not end");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Run(child.wait_with_output().unwrap())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `sandflow ARGS` in the background, what it prints going to `HOME/<log>`.
fn spawn_logged(env: &Env, args: &[&str], log: &str) -> Spawned {
    let out = std::fs::File::create(env.home().join(log)).unwrap();
    let err = out.try_clone().unwrap();
    Spawned(Some(env.command().args(args).stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().unwrap()))
}

/// Starts `sandflow ARGS` in the background, keeping what it prints for [`Spawned::finish`].
fn spawn_piped(env: &Env, args: &[&str]) -> Spawned {
    Spawned(Some(env.command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// The home's store, read directly (a real SQLite file, opened as any other process opens it).
fn with_store<T>(env: &Env, read: impl AsyncFnOnce(&Store) -> T) -> T {
    block_on(async {
        let store = Store::open(&env.home().join("sandflow.db"), Durability::Normal).await.unwrap();
        let value = read(&store).await;
        store.close().await;
        value
    })
}

/// The newest run of `dag_id` with its task instances.
fn latest(env: &Env, dag_id: &str) -> Option<(RunRow, Vec<TaskInstanceRow>)> {
    with_store(env, async |store| {
        let run = store.runs(Some(dag_id), 1).await.unwrap().pop()?;
        let tis = store.task_instances(&run.run_id).await.unwrap();
        Some((run, tis))
    })
}

fn state(tis: &[TaskInstanceRow], task_id: &str) -> TaskState {
    tis.iter().find(|t| t.task_id == task_id).unwrap().state
}

fn tries(env: &Env, run_id: &str, task_id: &str) -> Vec<TryRow> {
    with_store(env, async |store| store.tries(run_id, task_id, -1).await.unwrap())
}

/// Waits until the newest run of `dag_id` satisfies `check`.
fn wait_for(env: &Env, dag_id: &str, what: &str, log: &str, check: impl Fn(&RunRow, &[TaskInstanceRow]) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((run, tis)) = latest(env, dag_id) {
            if check(&run, &tis) {
                return;
            }
        }
        if Instant::now() >= deadline {
            let printed = std::fs::read_to_string(env.home().join(log)).unwrap_or_default();
            panic!("{what} did not happen: {:?}\n{log}:\n{printed}", latest(env, dag_id));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nap_running(_: &RunRow, tis: &[TaskInstanceRow]) -> bool {
    state(tis, "nap") == TaskState::Running
}

fn run_ended(run: &RunRow, _: &[TaskInstanceRow]) -> bool {
    run.state.is_finished()
}

#[test]
fn a_second_standalone_on_a_home_is_refused_and_the_task_runs_once() {
    let env = Env::new();
    let dags = env.dags(&[("slow", SLOW)]);
    let first = spawn_logged(&env, &["standalone", "--dags", &dags, "--trigger", "slow"], "first.out");
    wait_for(&env, "slow", "nap running", "first.out", nap_running);

    let second = spawn_piped(&env, &["standalone", "--dags", &dags]).finish("the second standalone");
    assert_eq!(second.code(), 2, "stdout:\n{}\nstderr:\n{}", second.stdout(), second.stderr());
    assert!(
        second.reason().starts_with(&format!(
            "error: a scheduler already runs on this home: pid {} (standalone, since ",
            first.pid()
        )),
        "{}",
        second.stderr()
    );
    assert!(second
        .reason()
        .ends_with("Only one may run on the embedded SQLite store at a time: stop it first, or leave the work to it"));

    wait_for(&env, "slow", "the run to end", "first.out", run_ended);
    let (run, tis) = latest(&env, "slow").unwrap();
    assert_eq!(run.state, RunState::Success);
    let nap = tries(&env, &run.run_id, "nap");
    assert_eq!(nap.len(), 1, "one try, never interrupted by the second process: {nap:?}");
    assert_eq!(nap[0].outcome.as_deref(), Some("success"));
    let after = tis.iter().find(|t| t.task_id == "after").unwrap();
    assert_eq!((after.state, after.try_number), (TaskState::Success, 1));
}

#[test]
fn a_backfill_running_its_own_scheduler_owns_the_home() {
    let env = Env::new();
    let dags = env.dags(&[("slow_daily", SLOW_DAILY)]);
    env.load(&dags).ok();
    let backfill = spawn_piped(&env, &["dags", "backfill", "slow_daily", "--from", "2026-01-01", "--to", "2026-01-01"]);
    wait_for(&env, "slow_daily", "nap running", "(piped)", nap_running);
    let standalone = env.run(&["standalone", "--dags", &dags]);
    assert_eq!(standalone.code(), 2, "{}", standalone.stderr());
    let owner = format!("pid {} (dags backfill, since ", backfill.pid());
    assert!(standalone.reason().contains(&owner), "{}", standalone.stderr());
    let done = backfill.finish("the backfill");
    assert!(done.ok().contains("1 runs succeeded, 0 failed"), "{}", done.stdout());
}

#[test]
fn db_reset_is_refused_while_a_standalone_runs() {
    let env = Env::new();
    let dags = env.dags(&[("slow", SLOW)]);
    let standalone = spawn_logged(&env, &["standalone", "--dags", &dags, "--trigger", "slow"], "standalone.out");
    wait_for(&env, "slow", "nap running", "standalone.out", nap_running);
    for args in [&["db", "reset", "--yes"][..], &["db", "reset", "--yes", "--force"]] {
        let reset = env.run(args);
        assert_eq!(reset.code(), 2, "{args:?}: {}", reset.stderr());
        let owner = format!("error: a scheduler already runs on this home: pid {} (standalone", standalone.pid());
        assert!(reset.reason().starts_with(&owner), "{args:?}: {}", reset.stderr());
    }
    // Nothing was deleted, and the standalone goes on.
    wait_for(&env, "slow", "the run to end", "standalone.out", run_ended);
    assert_eq!(latest(&env, "slow").unwrap().0.state, RunState::Success);
}

#[test]
fn db_reset_with_a_fresh_heartbeat_of_a_dead_scheduler_needs_force() {
    let env = Env::new();
    env.run(&["pools", "set", "gpu", "2"]).ok();
    // A scheduler beating its heart without holding the home's lock (on another machine sharing
    // the home, say): the test beats for it until the first reset has answered.
    let beating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let heart = {
        let (beating, path) = (beating.clone(), env.home().join("sandflow.db"));
        std::thread::spawn(move || {
            block_on(async {
                let store = Store::open(&path, Durability::Normal).await.unwrap();
                let started = chrono::Utc::now();
                while beating.load(std::sync::atomic::Ordering::SeqCst) {
                    store.heartbeat("ghost", 999_999, started).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                store.close().await;
            })
        })
    };
    let deadline = Instant::now() + DEADLINE;
    while !with_store(&env, async |store| store.live_scheduler(Duration::from_secs(3)).await.unwrap()) {
        assert!(Instant::now() < deadline, "the heartbeat never landed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let reset = env.run(&["db", "reset", "--yes"]);
    beating.store(false, std::sync::atomic::Ordering::SeqCst);
    heart.join().unwrap();
    assert_eq!(reset.code(), 2, "{}", reset.stderr());
    assert!(reset.reason().starts_with("error: a scheduler (pid 999999, started "), "{}", reset.stderr());
    assert!(reset.reason().ends_with("if that process is gone, run again with --force"), "{}", reset.stderr());
    assert!(env.run(&["pools", "list"]).ok().contains("gpu"), "nothing was deleted");

    let forced = env.run(&["db", "reset", "--yes", "--force"]).ok();
    assert!(forced.starts_with("database reset at "), "{forced}");
    assert!(!env.run(&["pools", "list"]).ok().contains("gpu"), "the database is new");
}

#[test]
fn an_empty_database_file_is_refused_and_kept() {
    let env = Env::new();
    let db = env.home().join("sandflow.db");
    std::fs::write(&db, b"").unwrap();
    for args in [&["db", "migrate"][..], &["pools", "list"]] {
        let run = env.run(args);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        assert_eq!(
            run.reason(),
            format!(
                "error: {} is empty (0 bytes), so it holds no Sandflow history: restore it from a backup, or delete it (`sandflow db reset --yes`) to start with a new database",
                db.display()
            )
        );
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "the file is left as it was");
    assert!(env.run(&["db", "reset", "--yes"]).ok().starts_with("database reset at "));
    env.run(&["pools", "list"]).ok();
}

#[test]
fn processes_opening_a_new_home_at_once_all_create_it() {
    let env = Env::new();
    let opening: Vec<Spawned> = (0..4).map(|_| spawn_piped(&env, &["db", "init"])).collect();
    for process in opening {
        process.finish("db init").ok();
    }
    assert!(std::fs::metadata(env.home().join("sandflow.db")).unwrap().len() > 0);
}
