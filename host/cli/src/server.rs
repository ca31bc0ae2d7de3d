//! The HTTP API in a process: `sandflow server` (the API alone, for a cluster whose schedulers
//! and workers run elsewhere), and the API half of `sandflow standalone`.

use std::net::SocketAddr;

use sandflow_service::{Service, ServiceConfig};
use sandflow_store::Store;
use tokio_util::sync::CancellationToken;

use crate::app::open_store;
use crate::out::sayln;
use crate::{CliError, Home};

/// Where the API listens.
#[derive(Debug, Clone, clap::Args)]
pub struct BindArgs {
    /// The address the HTTP API listens on (port 0: any free port, printed at start).
    #[arg(long, env = "SANDFLOW_BIND", default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    /// The least role that may download plugins' bytes over the API: viewer, author, operator
    /// or admin (workers read them from the database, not over HTTP).
    #[arg(long, env = "SANDFLOW_PLUGIN_DOWNLOADS", default_value = "viewer", value_parser = parse_role, value_name = "ROLE")]
    pub plugin_downloads: sandflow_store::Role,
    #[command(flatten)]
    pub grants: crate::processes::GrantArgs,
}

fn parse_role(text: &str) -> Result<sandflow_store::Role, String> {
    text.parse().map_err(|e: sandflow_store::UnknownName| e.to_string())
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub bind: BindArgs,
    /// New DAGs pushed in bundles start paused (a DAG file's is_paused_upon_creation overrides it).
    #[arg(long, env = "SANDFLOW_DAGS_PAUSED_AT_CREATION")]
    pub dags_paused_at_creation: bool,
}

/// The use cases over `store`, as a server carries them out.
pub fn service(store: Store, home: &Home, paused_at_creation: bool, bind: &BindArgs) -> anyhow::Result<Service> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let config = ServiceConfig {
        paused_at_creation,
        role: "the server".to_string(),
        plugin_downloads: bind.plugin_downloads,
        grants: bind.grants.config(home)?,
        ..ServiceConfig::default()
    };
    Ok(Service::new(store, sandbox, config))
}

/// On a store with no users (a first start), makes the `admin` user, prints its token this once
/// and writes it to the home's token file (mode 0600), where the CLI of this home finds it.
pub async fn first_start(service: &Service, home: &Home) -> Result<(), CliError> {
    let Some(token) = service.first_admin().await.map_err(crate::runs_cmd::service_error)? else {
        return Ok(());
    };
    let file = home.token_file();
    write_secret(&file, &token.token)
        .map_err(|e| CliError::Failed(format!("writing the admin's token to {}: {e}", file.display())))?;
    sayln!(
        "first start: created user admin with a token (shown this once; also in {}, mode 0600):\n{}",
        file.display(),
        token.token
    );
    Ok(())
}

/// Writes `text` to a file only its owner can read (made so before a byte is written).
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // An older file keeps its mode through `open`: make it the owner's alone.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_all()
}

/// Binds the API's address (a clear error when it is taken) and serves it until `stop`.
pub async fn start(
    service: Service,
    bind: SocketAddr,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), CliError> {
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (another process listens there: stop it, or give another address with --bind / SANDFLOW_BIND)"
        } else {
            ""
        };
        CliError::Usage(anyhow::anyhow!("could not listen on {bind}: {e}{hint}"))
    })?;
    let addr = listener.local_addr().map_err(anyhow::Error::from)?;
    let state = sandflow_api::AppState::new(service);
    let task = tokio::spawn(sandflow_api::serve(listener, state, stop));
    Ok((addr, task))
}

/// `sandflow server`.
pub async fn run(args: ServerArgs, home: &Home) -> Result<(), CliError> {
    let stop = crate::processes::stop_on_signal();
    let store = open_store(home).await?;
    let service = service(store.clone(), home, args.dags_paused_at_creation, &args.bind)?;
    first_start(&service, home).await?;
    let (addr, task) = start(service, args.bind.bind, stop).await?;
    sayln!("sandflow server: API on http://{addr}/api/v1 (health: http://{addr}/healthz), store {}", store.describe());
    let result = match task.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Failed(format!("the HTTP server stopped: {e}"))),
        Err(e) => Err(CliError::Failed(format!("the HTTP server crashed: {e}"))),
    };
    store.close().await;
    result
}
