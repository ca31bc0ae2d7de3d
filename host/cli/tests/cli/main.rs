//! The `sandflow` binary, run as a user runs it: a real process, a fresh home per test.

mod authoring;
mod crash;
mod dags;
mod database;
mod home;
mod http;
mod loading;
mod output;
mod pipelines;
mod plugin;
mod polyglot;
mod shutdown;

use std::path::Path;
use std::process::{Command, Output};

/// A fresh `$SANDFLOW_HOME` and a way to run the binary in it.
pub struct Env {
    pub home: tempfile::TempDir,
    /// Sent as SANDFLOW_TOKEN (a client of another home's server).
    pub token: Option<String>,
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    pub fn new() -> Env {
        Env { home: tempfile::tempdir().unwrap(), token: None }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandflow"));
        command
            .env("SANDFLOW_HOME", self.home.path())
            // Tests run at once: every server takes a free port (and prints it).
            .env("SANDFLOW_BIND", "127.0.0.1:0")
            .env_remove("SANDFLOW_SERVER")
            .env_remove("SANDFLOW_DATABASE_URL")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("SANDFLOW_TOKEN");
        if let Some(token) = &self.token {
            command.env("SANDFLOW_TOKEN", token);
        }
        command
    }

    /// Runs `sandflow ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.command().args(args).output().unwrap())
    }

    /// Loads the DAG folder `dags` into the home's store (`sandflow dags load`), as a standalone
    /// would at start.
    pub fn load(&self, dags: &str) -> Run {
        self.run(&["dags", "load", "--dags", dags])
    }

    /// A client home of its own that sends `token` to servers.
    pub fn with_token(token: String) -> Env {
        Env { token: Some(token), ..Env::new() }
    }

    /// The token the first start of a server on this home wrote.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.home().join("token")).expect("a first start wrote the token").trim().to_string()
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A DAG folder in the home, with the test plugins in its `plugins/` and `files` (name, TOML).
    pub fn dags(&self, files: &[(&str, &str)]) -> String {
        let dags = self.home.path().join("dags");
        std::fs::create_dir_all(dags.join("plugins")).unwrap();
        for stem in ["noop", "echo", "hostile"] {
            std::fs::copy(sandflow_test_artifacts::path(stem), dags.join(format!("plugins/{stem}.wasm"))).unwrap();
        }
        for (name, text) in files {
            std::fs::write(dags.join(format!("{name}.toml")), text).unwrap();
        }
        dags.display().to_string()
    }
}

/// A finished run.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// The last line of stderr: where a failure's one-line reason goes.
    pub fn reason(&self) -> String {
        self.stderr().lines().last().unwrap_or("").to_string()
    }
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> String {
        assert_eq!(self.code(), 0, "stdout:\n{}\nstderr:\n{}", self.stdout(), self.stderr());
        self.stdout()
    }
}

/// A built plugin's path as text.
pub fn plugin(stem: &str) -> String {
    sandflow_test_artifacts::path(stem).display().to_string()
}
