//! `sandflow`: one binary for every part (standalone server, scheduler, worker) and the tools.
//!
//! Configuration lives in [`GlobalArgs`] (flags with environment fallbacks); each subcommand is a
//! module that turns its arguments into calls on the library crates and prints the result.
//! Output goes through [`out`]'s macros, never `println!` (which panics on a closed pipe).

#![deny(clippy::print_stdout, clippy::print_stderr)]

mod app;
mod backfill;
mod bench_cmd;
mod bench_http;
mod bundle_cmd;
mod client;
mod dags_cmd;
mod db_cmd;
mod grants_cmd;
mod home;
mod out;
mod plugin_cmd;
mod plugin_new;
mod plugin_test;
mod pools_cmd;
mod processes;
mod remote;
mod replay_cmd;
mod runs_cmd;
mod server;
mod standalone;
mod table;
mod tasks_cmd;
mod users_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sandflow_core::text::clean;
use sandflow_store::DatabaseUrl;

use crate::out::errln;

pub use home::Home;

/// Sandflow: a DAG orchestrator whose operators are sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "sandflow", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Sandflow's home: the database (DAGs, runs, plugins), the compiled-code cache. Default: ~/.sandflow.
    #[arg(long, env = "SANDFLOW_HOME", global = true)]
    home: Option<std::path::PathBuf>,
    /// The database to use instead of the home's SQLite file: postgres://USER:PASSWORD@HOST/DB
    /// (or sqlite://PATH). The home still holds the compiled-code cache. Its password is never
    /// shown.
    #[arg(long, env = "SANDFLOW_DATABASE_URL", global = true, hide_env_values = true, value_name = "URL")]
    database_url: Option<SecretText>,
    /// A Sandflow server (http://host:port) to ask instead of opening a database: `dags
    /// list|show|trigger|pause|unpause`, `tasks list|tries|logs|clear|mark`, `pools`, `runs
    /// compare`, `bundle push`, `users`, `audit`. Its token: SANDFLOW_TOKEN, else the home's.
    #[arg(long, env = "SANDFLOW_SERVER", global = true, value_name = "URL")]
    server: Option<String>,
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the store, the scheduler and the executor in one process (the embedded SQLite store).
    Standalone(standalone::StandaloneArgs),
    /// Run the HTTP API alone (DAGs arrive as bundles; schedulers and workers run elsewhere, or
    /// actions are carried out in this process while none does).
    Server(server::ServerArgs),
    /// Run the scheduler alone: it decides and queues, workers run (several may start on one
    /// PostgreSQL database: one schedules, the others stand by).
    Scheduler(processes::SchedulerArgs),
    /// Run a worker: claims queued tries and runs them in the sandbox (needs no DAG folder).
    Worker(processes::WorkerArgs),
    /// List, show, trigger, pause and test DAGs.
    #[command(subcommand)]
    Dags(dags_cmd::DagsCmd),
    /// List task instances, read their logs, test one task.
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCmd),
    /// Add, inspect and run plugins.
    #[command(subcommand)]
    Plugin(plugin_cmd::PluginCmd),
    /// Pools: named numbers of slots that tasks share.
    #[command(subcommand)]
    Pools(pools_cmd::PoolsCmd),
    /// Host folders tasks may read at /data/NAME (admins).
    #[command(subcommand)]
    Mounts(grants_cmd::MountsCmd),
    /// Secrets tasks may be given as environment variables (admins; values never shown).
    #[command(subcommand)]
    Secrets(grants_cmd::SecretsCmd),
    /// Artifacts: delete old ones (`gc`).
    #[command(subcommand)]
    Artifacts(grants_cmd::ArtifactsCmd),
    /// Compare runs.
    #[command(subcommand)]
    Runs(runs_cmd::RunsCmd),
    /// Build a bundle of a DAG folder, push one to a server (as new versions or an experiment).
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCmd),
    /// Users, their roles, tokens and fuel budgets.
    #[command(subcommand)]
    Users(users_cmd::UsersCmd),
    /// The audit log: every change, who made it, when and from where; refused attempts too.
    Audit(users_cmd::AuditArgs),
    /// Create, migrate or reset the embedded database.
    #[command(subcommand)]
    Db(db_cmd::DbCmd),
    /// Measure the scheduler: N DAGs of M noop tasks through the real store and executor.
    Bench(bench_cmd::BenchArgs),
    /// Measure the HTTP API: concurrent triggers, listing runs with many stored, a bundle push.
    BenchHttp(bench_http::BenchHttpArgs),
}

/// A flag's text that may hold a secret (`--database-url`): its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretText(String);

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretText(text.to_string()))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(***)")
    }
}

/// How a command failed: `Usage` for bad input (exit 2), `Failed` for work that ran and failed (exit 1).
#[derive(Debug)]
pub enum CliError {
    /// The input was wrong; the message says how.
    Usage(anyhow::Error),
    /// The work ran and failed; the message is its one-line reason.
    Failed(String),
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Usage(e)
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,sandflow=info",
        _ => "debug,cranelift=info,wasmtime=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: WARN lines in a file or a pipe stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    // Parsed here, not by clap, whose error would quote the URL, password and all.
    let database_url = match cli.global.database_url.as_ref().map(|text| DatabaseUrl::parse(&text.0)).transpose() {
        Ok(url) => url,
        Err(e) => {
            errln!("error: {}", clean(&e.to_string(), true));
            return ExitCode::from(2);
        }
    };
    let home = match Home::resolve(cli.global.home.clone(), database_url) {
        Ok(home) => home,
        Err(e) => {
            errln!("error: {}", clean(&format!("{e:#}"), true));
            return ExitCode::from(2);
        }
    };
    client::set_home_token_file(home.token_file());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Standalone(args) => standalone::run(args, &home).await,
            Command::Server(args) => server::run(args, &home).await,
            Command::Bundle(cmd) => bundle_cmd::run(cmd, cli.global.server.as_deref()).await,
            Command::Runs(cmd) => runs_cmd::run(cmd, &home, cli.global.server.as_deref()).await,
            Command::Scheduler(args) => processes::scheduler(args, &home).await,
            Command::Worker(args) => processes::worker(args, &home).await,
            Command::Dags(cmd) => match cli.global.server.as_deref() {
                Some(url) => match client::Client::new(url) {
                    Ok(client) => remote::dags(cmd, &client).await,
                    Err(e) => Err(e),
                },
                None => dags_cmd::run(cmd, &home).await,
            },
            Command::Tasks(cmd) => match cli.global.server.as_deref() {
                Some(url) => match client::Client::new(url) {
                    // Replay runs here, on what it fetches: it needs this machine's sandbox.
                    Ok(client) => match cmd {
                        tasks_cmd::TasksCmd::Replay {
                            dag_id,
                            run,
                            task_id,
                            map_index,
                            try_number,
                            plugin,
                            context,
                            json,
                        } => {
                            let args = replay_cmd::ReplayArgs { map_index, try_number, plugin, context, json };
                            replay_cmd::replay(&dag_id, &run, &task_id, &args, &home, Some(&client)).await
                        }
                        cmd => remote::tasks(cmd, &client).await,
                    },
                    Err(e) => Err(e),
                },
                None => tasks_cmd::run(cmd, &home).await,
            },
            Command::Db(_) if cli.global.server.is_some() => Err(CliError::Usage(anyhow::anyhow!(
                "`db` works on a database, not a server: run it where the database is, without --server (or \
                 SANDFLOW_SERVER)"
            ))),
            Command::Plugin(cmd) => match cli.global.server.as_deref() {
                Some(url) => match client::Client::new(url) {
                    Ok(client) => remote::plugins(cmd, &client).await,
                    Err(e) => Err(e),
                },
                None => plugin_cmd::run(cmd, &home).await,
            },
            Command::Db(cmd) => db_cmd::run(cmd, &home).await,
            Command::Pools(cmd) => match cli.global.server.as_deref() {
                Some(url) => match client::Client::new(url) {
                    Ok(client) => remote::pools(cmd, &client).await,
                    Err(e) => Err(e),
                },
                None => pools_cmd::run(cmd, &home).await,
            },
            Command::Mounts(cmd) => match cli.global.server {
                Some(_) => {
                    Err(CliError::Usage(anyhow::anyhow!("mounts are set on the server's machine, without --server")))
                }
                None => grants_cmd::mounts(cmd, &home).await,
            },
            Command::Secrets(cmd) => match cli.global.server {
                Some(_) => {
                    Err(CliError::Usage(anyhow::anyhow!("secrets are set on the server's machine, without --server")))
                }
                None => grants_cmd::secrets(cmd, &home).await,
            },
            Command::Artifacts(cmd) => match cli.global.server {
                Some(_) => Err(CliError::Usage(anyhow::anyhow!(
                    "artifacts gc runs on the server's machine (its store and blob store), without --server"
                ))),
                None => grants_cmd::artifacts(cmd, &home).await,
            },
            Command::Users(cmd) => users_cmd::run(cmd, &home, cli.global.server.as_deref()).await,
            Command::Audit(args) => users_cmd::audit(args, &home, cli.global.server.as_deref()).await,
            Command::Bench(args) => bench_cmd::run(args, &home).await,
            Command::BenchHttp(args) => bench_http::run(args, &home).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(e)) => {
            errln!("error: {}", clean(&format!("{e:#}"), true));
            ExitCode::from(2)
        }
        Err(CliError::Failed(reason)) => {
            errln!("sandflow: {}", clean(&reason, true));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
