//! The operator's view of a running hub, over HTTP: what an operator with
//! a gateway in a cabinet looks at, and what Prometheus scrapes.
//!
//! listener (`serve`, this file) → routes: `/metrics` (`metrics.rs`: the
//! Prometheus exposition, read from the hub's counters at each scrape),
//! `/healthz` and `/readyz`, `/` (the status page, one HTML file built into
//! the binary), `/api/overview` (`overview.rs`: the page's JSON, with the
//! charts' history kept by `history.rs`) and `/api/tail` (`tail.rs`: a
//! topic's new records as server-sent events). Groups' lag is computed in
//! `lag.rs`, credentials are checked in `access.rs`, process figures come
//! from `process.rs`.
//!
//! Nothing here is on the message path: every figure is read when asked
//! for (or every few seconds by the history sampler) from counters the hub
//! keeps anyway.

mod access;
mod history;
mod lag;
mod metrics;
mod overview;
mod process;
mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_hub::broker::Broker;
use cairn_hub::net::mqtt::MqttHub;
use cairn_hub::net::Shutdown;
use tokio::net::TcpListener;

/// The status page: one file, no outside resources (a gateway is often
/// offline).
const INDEX_HTML: &str = include_str!("../assets/index.html");

/// What the console reads, shared by its requests.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    broker: Broker,
    mqtt: MqttHub,
    /// The data directory (its filesystem's free space) and the log file.
    data_dir: PathBuf,
    log_file: PathBuf,
    started: Instant,
    /// Set once the log is open and every listener is up; cleared when
    /// shutdown starts (`/readyz`).
    ready: AtomicBool,
    history: Mutex<history::History>,
    /// When the page last asked for the overview (groups' lag is sampled
    /// for the charts only while someone watches).
    viewed: Mutex<Option<Instant>>,
    registry: prometheus_client::registry::Registry,
}

impl Console {
    /// A console over `broker` and the hub's MQTT side; `data_dir` holds
    /// the log file `log_file`.
    pub fn new(broker: Broker, mqtt: MqttHub, data_dir: PathBuf, log_file: PathBuf) -> Console {
        Console(Arc::new_cyclic(|me| {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(metrics::HubCollector(me.clone())));
            Inner {
                broker,
                mqtt,
                data_dir,
                log_file,
                started: Instant::now(),
                ready: AtomicBool::new(false),
                history: Mutex::new(history::History::default()),
                viewed: Mutex::new(None),
                registry,
            }
        }))
    }

    fn last_viewed(&self) -> Option<Instant> {
        *self.0.viewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the hub ready (listeners up) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }
}

/// Binds the HTTP address and logs the address it got.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP listening (status page, /metrics, /healthz)");
    Ok(listener)
}

/// Serves HTTP on `listener` until shutdown; the history sampler runs as
/// long.
pub async fn serve(listener: TcpListener, console: Console, shutdown: Shutdown) {
    let sampler = tokio::spawn(history::run(console.clone(), shutdown.clone()));
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/overview", get(overview))
        .route("/api/tail", get(tail::tail))
        .with_state((console, shutdown.clone()));
    let mut stop = shutdown.clone();
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { stop.recv().await })
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "HTTP listener failed");
    }
    let _ = sampler.await;
}

/// What every handler gets: the console and the shutdown signal (live
/// tails end with it, so a graceful stop does not wait for them).
type AppState = (Console, Shutdown);

async fn index(State((console, _)): State<AppState>, peer: ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    if let Err(refused) = access::check(&console, peer.0, &headers).await {
        return refused;
    }
    Html(INDEX_HTML).into_response()
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the log is open and the listeners are up (503 before that and
/// once shutdown started).
async fn readyz(State((console, _)): State<AppState>) -> Response {
    if console.0.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State((console, _)): State<AppState>, peer: ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    if let Err(refused) = access::check(&console, peer.0, &headers).await {
        return refused;
    }
    // Reading the counters touches the log's tables: off the async threads.
    let text = tokio::task::spawn_blocking(move || metrics::render(&console)).await;
    match text {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "could not encode the metrics\n").into_response(),
    }
}

async fn overview(State((console, _)): State<AppState>, peer: ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    if let Err(refused) = access::check(&console, peer.0, &headers).await {
        return refused;
    }
    *console.0.viewed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    match tokio::task::spawn_blocking(move || overview::build(&console)).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "could not build the overview\n").into_response(),
    }
}
