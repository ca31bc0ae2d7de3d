//! `sandflow bench-http`: the HTTP API under load, on a real server on loopback in this process,
//! over the real store (a scratch SQLite file, or the database of `--database-url`: give it a
//! fresh one). Measures triggers per second through `POST /api/v1/dags/{id}/runs` with many
//! concurrent clients, the latency of listing runs (the first page, and page 100 by cursor and by
//! offset) with many runs stored, and a bundle push. No scheduler runs: the DAG is paused, so
//! every run stays queued and only the API and the store are measured. Prints figures; asserts
//! nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sandflow_store::{Durability, NewRun, RunType, Store};
use tokio_util::sync::CancellationToken;

use crate::out::outln;
use crate::{CliError, Home};

#[derive(Debug, clap::Args)]
pub struct BenchHttpArgs {
    /// Runs stored before listing is measured.
    #[arg(long, default_value_t = 100_000)]
    pub runs: usize,
    /// Concurrent clients triggering runs.
    #[arg(long, default_value_t = 64, value_parser = crate::app::at_least_one)]
    pub clients: usize,
    /// How long the clients trigger, in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Requests per listing figure.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// The noop plugin (default: dags/plugins/noop.wasm or target/plugins/noop.wasm).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// A DAG folder to push as a bundle and time (default: none).
    #[arg(long)]
    pub push: Option<PathBuf>,
}

fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

pub async fn run(args: BenchHttpArgs, home: &Home) -> Result<(), CliError> {
    let plugin = crate::bench_cmd::noop_plugin(args.plugin.as_deref())?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let store = if home.has_database_url() {
        Store::connect(&home.database_url()).await.map_err(anyhow::Error::from)?
    } else {
        Store::open(&scratch.path().join("sandflow.db"), Durability::Normal).await.map_err(anyhow::Error::from)?
    };
    let settings = crate::server::BindArgs {
        bind: "127.0.0.1:0".parse().expect("an address"),
        plugin_downloads: sandflow_store::Role::Viewer,
        grants: Default::default(),
    };
    let service = crate::server::service(store.clone(), home, true, &settings)?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (addr, _server) =
        crate::server::start(service.clone(), "127.0.0.1:0".parse().expect("an address"), stop).await?;
    let base = format!("http://{addr}");
    outln!("server on {base}, store {}", store.describe());

    // The DAG: one noop task, paused, pushed as a bundle like any other.
    let dir = scratch.path().join("dags");
    std::fs::create_dir_all(dir.join("plugins")).context("creating the bundle folder")?;
    std::fs::copy(&plugin, dir.join("plugins/noop.wasm")).context("copying the plugin")?;
    let dag = "id = \"bench_http\"\nis_paused_upon_creation = true\n[tasks.t]\nplugin = \"plugins/noop.wasm\"\n";
    std::fs::write(dir.join("bench_http.toml"), dag).context("writing the DAG file")?;
    // The bench's store is its own (a scratch file) or a PostgreSQL database that may have users:
    // either way it asks as an admin of its own making.
    let admin = sandflow_service::auth::Principal::local("bench-http");
    let bencher = format!("bench-http-{}", std::process::id());
    service
        .add_user(&admin, &bencher, sandflow_store::Role::Admin, None)
        .await
        .map_err(crate::runs_cmd::service_error)?;
    let token = service.issue_token(&admin, &bencher, None, "bench").await.map_err(crate::runs_cmd::service_error)?;
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", token.token).parse().map_err(anyhow::Error::from)?;
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .default_headers(headers)
        .build()
        .map_err(anyhow::Error::from)?;
    let bundle = sandflow_bundle::build(&dir, &sandflow_bundle::Limits::default()).map_err(anyhow::Error::from)?;
    push(&http, &base, bundle, "the bench DAG").await?;
    if let Some(folder) = &args.push {
        let bundle =
            sandflow_bundle::build(folder, &sandflow_bundle::Limits::default()).map_err(anyhow::Error::from)?;
        let size = bundle.len();
        let first = push(&http, &base, bundle.clone(), "the bundle").await?;
        let again = push(&http, &base, bundle, "the bundle").await?;
        outln!(
            "bundle push of {} ({size} bytes): first {:.2} s (plugins checked and compiled), again {:.3} s",
            folder.display(),
            first.as_secs_f64(),
            again.as_secs_f64()
        );
    }

    // Triggers: `clients` loops for `seconds`.
    let url = format!("{base}/api/v1/dags/bench_http/runs");
    let running = Arc::new(AtomicBool::new(true));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        let (http, url, running) = (http.clone(), url.clone(), running.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while running.load(Ordering::Relaxed) {
                let at = Instant::now();
                let sent = http.post(&url).header("content-type", "application/json").body("{}").send().await;
                match sent {
                    Ok(r) if r.status().as_u16() == 201 => latencies.push(at.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    running.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for client in clients {
        let (l, e) = client.await.map_err(anyhow::Error::from)?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let triggered = latencies.len();
    outln!(
        "triggers: {triggered} in {elapsed:.1} s with {} clients = {:.0}/s (p50 {:.1} ms, p99 {:.1} ms, {errors} errors)",
        args.clients,
        triggered as f64 / elapsed,
        percentile_ms(&mut latencies, 0.5),
        percentile_ms(&mut latencies, 0.99)
    );

    // Fill the store to `runs` runs, straight through the store (what the API's trigger writes).
    let have = triggered;
    if args.runs > have {
        let fill_started = Instant::now();
        let version =
            store.dag("bench_http").await.map_err(anyhow::Error::from)?.context("the bench DAG")?.active_version;
        let base_time = chrono::Utc::now() - chrono::Duration::days(30);
        for i in 0..(args.runs - have) {
            let at = base_time + chrono::Duration::milliseconds(i as i64);
            let run = NewRun {
                run_id: RunType::Manual.run_id("bench_http", at),
                dag_id: "bench_http".into(),
                version: version.clone(),
                run_type: RunType::Manual,
                logical_date: at,
                interval: None,
                conf: serde_json::Map::new(),
                note: None,
                triggered_by: "bench".into(),
                created_at: at,
                experiment: None,
            };
            store.create_run(&run, &["t".to_string()]).await.map_err(anyhow::Error::from)?;
        }
        outln!(
            "stored {} more runs in {:.1} s ({} in all)",
            args.runs - have,
            fill_started.elapsed().as_secs_f64(),
            args.runs
        );
    }

    // Listing: page 1; page 100 by cursor (walked once) and by offset.
    let list = format!("{base}/api/v1/dags/bench_http/runs?limit=100");
    let page1 = time_gets(&http, &list, args.samples).await?;
    let mut cursor = String::new();
    for _ in 0..99 {
        let page: serde_json::Value = http
            .get(format!("{list}{cursor}"))
            .send()
            .await
            .map_err(anyhow::Error::from)?
            .json()
            .await
            .map_err(anyhow::Error::from)?;
        let next = page["next_cursor"].as_str().context("a next page")?;
        cursor = format!("&cursor={next}");
    }
    let page100 = time_gets(&http, &format!("{list}{cursor}"), args.samples).await?;
    let offset100 = time_gets(&http, &format!("{list}&offset=9900"), args.samples).await?;
    for (what, mut samples) in [("page 1", page1), ("page 100 by cursor", page100), ("page 100 by offset", offset100)] {
        outln!(
            "list runs, {what} (100 rows of {}): p50 {:.2} ms, p99 {:.2} ms",
            args.runs.max(have),
            percentile_ms(&mut samples, 0.5),
            percentile_ms(&mut samples, 0.99)
        );
    }
    store.close().await;
    Ok(())
}

async fn push(http: &reqwest::Client, base: &str, bundle: Vec<u8>, what: &str) -> Result<Duration, CliError> {
    let at = Instant::now();
    let answer = http
        .post(format!("{base}/api/v1/bundles"))
        .header("content-type", "application/gzip")
        .body(bundle)
        .send()
        .await
        .map_err(anyhow::Error::from)?;
    if answer.status().as_u16() != 201 {
        let text = answer.text().await.unwrap_or_default();
        return Err(CliError::Failed(format!("pushing {what} failed: {text}")));
    }
    answer.bytes().await.map_err(anyhow::Error::from)?;
    Ok(at.elapsed())
}

async fn time_gets(http: &reqwest::Client, url: &str, samples: usize) -> Result<Vec<Duration>, CliError> {
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let at = Instant::now();
        let answer = http.get(url).send().await.map_err(anyhow::Error::from)?;
        if !answer.status().is_success() {
            return Err(CliError::Failed(format!("GET {url}: {}", answer.status())));
        }
        answer.bytes().await.map_err(anyhow::Error::from)?;
        times.push(at.elapsed());
    }
    Ok(times)
}
