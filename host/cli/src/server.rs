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
pub fn service(store: Store, home: &Home, paused_at_creation: bool) -> anyhow::Result<Service> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let config = ServiceConfig { paused_at_creation, role: "the server".to_string(), ..ServiceConfig::default() };
    Ok(Service::new(store, sandbox, config))
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
    let service = service(store.clone(), home, args.dags_paused_at_creation)?;
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
