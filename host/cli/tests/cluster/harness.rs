//! A cluster of real `sandflow` processes on one fresh PostgreSQL database: schedulers, workers,
//! and one-shot CLI commands, each with a home of its own.
//!
//! Only schedulers get the DAG folder (`--dags`); workers find their plugins in the database, as
//! on a machine of their own. Every process writes what it prints to a log file named after it, and
//! the end of every log goes into a failing test's message. Every process is killed (SIGKILL) when
//! its [`Process`] is dropped, so a panicking test leaves nothing running; when the test panics,
//! the cluster's folder (homes, logs, DAGs) is kept and its path printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandflow_core::state::RunState;
use sandflow_store::{DatabaseUrl, RunRow, Store, TaskInstanceRow, TryRow};
use sqlx::{Connection, PgConnection};

/// How long anything a loaded two-core machine must get done may take. Nothing in these tests
/// asserts a speed: this only keeps a broken cluster from hanging the test run.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// How many bytes of each process's log a failure message shows (its end).
const LOG_TAIL: usize = 3000;

/// A running `sandflow` process, killed with SIGKILL when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    /// Whether the test killed it (a process that exits by itself is a failure).
    killed: bool,
}

impl Process {
    /// `kill -9`, and wait for it to be gone.
    pub fn kill(&mut self) {
        self.killed = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has exited (by itself or killed), with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("asking whether a child process ended")
    }

    /// What it has printed so far (stdout and stderr, interleaved).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A one-shot command that ran to its end.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts that it exited 0 and returns its stdout.
    pub fn ok(&self) -> String {
        assert!(self.0.status.success(), "{}\nstdout:\n{}\nstderr:\n{}", self.0.status, self.stdout(), self.stderr());
        self.stdout()
    }
}

/// The DAG folder's plugins, by file stem, as `Env::dags` in the cli tests copies them.
const PLUGINS: [&str; 3] = ["noop", "echo", "hostile"];

/// Processes first: fields drop in order, so every child is killed before the folder holding its
/// home and log is removed.
pub struct Cluster {
    processes: Vec<Process>,
    store: Option<Store>,
    runtime: tokio::runtime::Runtime,
    /// The database's URL (a fresh database; no process has opened it before the first spawn).
    pub url: String,
    root: Option<tempfile::TempDir>,
    spawned: usize,
}

impl Cluster {
    /// A fresh database and a folder of DAG files (`files`: name, TOML) with the test plugins.
    /// Nothing runs yet, and nothing has migrated the database.
    pub fn new(files: &[(&str, &str)]) -> Cluster {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the test's own store connection");
        let url = runtime.block_on(sandflow_test_postgres::fresh_database());
        let root = tempfile::Builder::new().prefix("sandflow-cluster-").tempdir().expect("a temporary folder");
        let dags = root.path().join("dags");
        std::fs::create_dir_all(dags.join("plugins")).unwrap();
        for stem in PLUGINS {
            std::fs::copy(sandflow_test_artifacts::path(stem), dags.join(format!("plugins/{stem}.wasm"))).unwrap();
        }
        for (name, text) in files {
            std::fs::write(dags.join(format!("{name}.toml")), text).unwrap();
        }
        std::fs::create_dir_all(root.path().join("homes")).unwrap();
        std::fs::create_dir_all(root.path().join("logs")).unwrap();
        Cluster { processes: Vec::new(), store: None, runtime, url, root: Some(root), spawned: 0 }
    }

    fn root(&self) -> &Path {
        self.root.as_ref().expect("the cluster's folder is there until it drops").path()
    }

    /// The DAG folder, as schedulers are given it.
    pub fn dags(&self) -> String {
        self.root().join("dags").display().to_string()
    }

    /// `sandflow` with the database URL and a new home of its own, named `name`.
    fn command(&self, name: &str) -> Command {
        let home = self.root().join("homes").join(name);
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandflow"));
        command
            .env_remove("SANDFLOW_HOME")
            .env("SANDFLOW_BIND", "127.0.0.1:0")
            .env_remove("SANDFLOW_SERVER")
            .env_remove("SANDFLOW_DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .arg("--database-url")
            .arg(&self.url)
            .arg("--home")
            .arg(&home);
        command
    }

    /// Starts `sandflow ARGS` in the background as a process named `ROLE-N`; returns its index.
    pub fn spawn(&mut self, role: &str, args: &[&str]) -> usize {
        self.spawned += 1;
        let name = format!("{role}-{}", self.spawned);
        let log = self.root().join("logs").join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = self
            .command(&name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawning sandflow");
        self.processes.push(Process { name, child, log, killed: false });
        self.processes.len() - 1
    }

    /// `sandflow -v scheduler --dags DIR`.
    pub fn scheduler(&mut self) -> usize {
        let dags = self.dags();
        self.spawn("scheduler", &["-v", "scheduler", "--dags", &dags])
    }

    /// `sandflow -v worker --concurrency N [--lease LEASE] --name worker-N ARGS`: no DAG folder.
    /// `None` keeps the default lease (10 s), which a busy machine does not lose by accident.
    pub fn worker(&mut self, concurrency: usize, lease: Option<&str>, extra: &[&str]) -> usize {
        let name = format!("worker-{}", self.spawned + 1);
        let concurrency = concurrency.to_string();
        let mut args = vec!["-v", "worker", "--concurrency", &concurrency, "--name", &name];
        if let Some(lease) = lease {
            args.extend(["--lease", lease]);
        }
        args.extend_from_slice(extra);
        self.spawn("worker", &args)
    }

    pub fn process(&mut self, index: usize) -> &mut Process {
        &mut self.processes[index]
    }

    /// Indexes of the processes of a role (`scheduler`, `worker`) that are still running.
    pub fn alive(&mut self, role: &str) -> Vec<usize> {
        let prefix = format!("{role}-");
        (0..self.processes.len())
            .filter(|&i| self.processes[i].name.starts_with(&prefix) && self.processes[i].exited().is_none())
            .collect()
    }

    /// Runs `sandflow ARGS` to its end, in a home of its own.
    pub fn cli(&mut self, args: &[&str]) -> Run {
        self.spawned += 1;
        let name = format!("cli-{}", self.spawned);
        Run(self.command(&name).args(args).stdin(Stdio::null()).output().expect("running sandflow"))
    }

    /// `sandflow dags trigger DAG --json`: the new run's id.
    pub fn trigger(&mut self, dag_id: &str) -> String {
        let out = self.cli(&["dags", "trigger", dag_id, "--json"]).ok();
        let run: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        run["run_id"].as_str().unwrap_or_else(|| panic!("no run_id in {out}")).to_string()
    }

    /// The test's own connection to the database (opened on first use: opening migrates, so a
    /// test of the processes' migration must not call this before they start).
    pub fn store(&mut self) -> &Store {
        if self.store.is_none() {
            let url = DatabaseUrl::parse(&self.url).expect("the test database's URL");
            let store = self.runtime.block_on(Store::connect(&url)).expect("connecting to the test database");
            self.store = Some(store);
        }
        self.store.as_ref().unwrap()
    }

    /// Runs a future on the test's runtime (for the store's calls).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn run_row(&mut self, run_id: &str) -> Option<RunRow> {
        let store = self.store().clone();
        self.block_on(store.run(run_id)).expect("reading a run")
    }

    pub fn runs(&mut self, dag_id: &str) -> Vec<RunRow> {
        let store = self.store().clone();
        self.block_on(store.runs(Some(dag_id), 10_000)).expect("reading runs")
    }

    pub fn task_instances(&mut self, run_id: &str) -> Vec<TaskInstanceRow> {
        let store = self.store().clone();
        self.block_on(store.task_instances(run_id)).expect("reading task instances")
    }

    pub fn tries(&mut self, run_id: &str) -> Vec<TryRow> {
        let store = self.store().clone();
        self.block_on(store.run_tries(run_id)).expect("reading tries")
    }

    /// Which worker ran each try of a run, by (task id, map index, try number): the `worker`
    /// column the store's `TryRow` does not carry, read with a connection of our own.
    pub fn try_workers(&self, run_id: &str) -> BTreeMap<(String, i64, i64), Option<String>> {
        self.block_on(async {
            let mut conn = PgConnection::connect(&self.url).await.expect("connecting to the test database");
            let rows: Vec<(String, i64, i64, Option<String>)> =
                sqlx::query_as("SELECT task_id, map_index, try_number, worker FROM task_tries WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_all(&mut conn)
                    .await
                    .expect("reading the tries' workers");
            let _ = conn.close().await;
            rows.into_iter().map(|(task, index, number, worker)| ((task, index, number), worker)).collect()
        })
    }

    /// Polls `check` every 100 ms until it gives a value; past [`DEADLINE`], or as soon as a
    /// process exits that the test did not kill, fails the test with `what` and the end of every
    /// process's log.
    pub fn until<T>(&mut self, what: &str, mut check: impl FnMut(&mut Cluster) -> Option<T>) -> T {
        self.until_within(DEADLINE, what, &mut check)
    }

    pub fn until_within<T>(
        &mut self,
        deadline: Duration,
        what: &str,
        mut check: impl FnMut(&mut Cluster) -> Option<T>,
    ) -> T {
        let end = Instant::now() + deadline;
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if Instant::now() >= end {
                panic!("{what}: not within {deadline:?}\n{}", self.logs());
            }
            self.assert_none_exited(what);
            std::thread::sleep(POLL);
        }
    }

    /// Fails the test if a process the test did not kill has exited.
    pub fn assert_none_exited(&mut self, what: &str) {
        for i in 0..self.processes.len() {
            if self.processes[i].killed {
                continue;
            }
            if let Some(status) = self.processes[i].exited() {
                let name = self.processes[i].name.clone();
                panic!("while waiting for {what}: {name} exited by itself ({status})\n{}", self.logs());
            }
        }
    }

    /// Waits until the scheduler has loaded DAG `dag_id` into the database.
    pub fn until_loaded(&mut self, dag_id: &str) {
        self.until(&format!("DAG {dag_id} loaded by a scheduler"), |c| {
            let store = c.store().clone();
            c.block_on(store.dag(dag_id)).ok().flatten().map(|_| ())
        });
    }

    /// Waits until every run in `run_ids` has ended (success or failed); returns them.
    pub fn until_ended(&mut self, run_ids: &[String]) -> Vec<RunRow> {
        let what = format!("{} runs to end", run_ids.len());
        self.until(&what, |c| {
            let mut rows = Vec::new();
            for id in run_ids {
                let row = c.run_row(id)?;
                if !matches!(row.state, RunState::Success | RunState::Failed) {
                    return None;
                }
                rows.push(row);
            }
            Some(rows)
        })
    }

    /// The end of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for process in &self.processes {
            let log = process.output();
            let tail = tail(&log, LOG_TAIL);
            text.push_str(&format!("--- {} ({}) ---\n{tail}\n", process.name, process.log.display()));
        }
        text
    }

    /// A run's state and every task instance's state, try number and reason, for failure
    /// messages.
    pub fn describe(&mut self, run_id: &str) -> String {
        let run = self.run_row(run_id);
        let mut text = format!("run {run_id}: {:?}\n", run.map(|r| r.state));
        let tries = self.tries(run_id);
        let workers = self.try_workers(run_id);
        let by_instance = tries_by_instance(&tries);
        for ti in self.task_instances(run_id) {
            let outcomes: Vec<String> = by_instance
                .get(&(ti.task_id.clone(), ti.map_index))
                .map(|ts| {
                    ts.iter()
                        .map(|t| {
                            let worker =
                                workers.get(&(t.task_id.clone(), t.map_index, t.try_number)).cloned().flatten();
                            let outcome = t.outcome.as_deref().unwrap_or("(open)");
                            format!("{}:{outcome}@{}", t.try_number, worker.as_deref().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            text.push_str(&format!(
                "  {}[{}] {:?} try {} {:?} tries {:?}\n",
                ti.task_id, ti.map_index, ti.state, ti.try_number, ti.reason, outcomes
            ));
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for process in &mut self.processes {
            process.kill();
        }
        if std::thread::panicking() {
            if let Some(root) = self.root.take() {
                let kept = root.keep();
                eprintln!("the cluster's homes, logs and DAGs are kept in {}", kept.display());
            }
        }
    }
}

/// The last `n` bytes of `text`, cut at a character boundary.
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Tries grouped by task instance (task id, map index), each group in try-number order.
pub fn tries_by_instance(tries: &[TryRow]) -> BTreeMap<(String, i64), Vec<&TryRow>> {
    let mut map: BTreeMap<(String, i64), Vec<&TryRow>> = BTreeMap::new();
    for t in tries {
        map.entry((t.task_id.clone(), t.map_index)).or_default().push(t);
    }
    for group in map.values_mut() {
        group.sort_by_key(|t| t.try_number);
    }
    map
}

/// A small seeded pseudo-random generator (SplitMix64): enough to pick kill times and victims
/// reproducibly, without a crate for it.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
