use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use harambee_proto::CoordinatorServer;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::actor::Actor;
use crate::driver::{CoordinatorView, Driver};
use crate::service::Service;
use crate::{FederationFolder, ServerError};

/// How to run a coordinator.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Plain-text gRPC, no TLS: only for debugging on a trusted network.
    pub insecure: bool,
    /// How long to keep answering after the federation finishes, so participants hear it.
    pub linger: Duration,
    /// Override the listening address of `federation.toml`.
    pub listen: Option<SocketAddr>,
    /// Override the dashboard's address of `federation.toml` (`http`).
    pub http: Option<SocketAddr>,
    /// After the federation finishes, keep serving (the dashboard above all) until
    /// interrupted, instead of stopping after `linger`.
    pub stay: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            insecure: false,
            linger: Duration::from_secs(3),
            listen: None,
            http: None,
            stay: false,
        }
    }
}

/// How a coordinator run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeOutcome {
    /// All rounds completed; the model is in the folder.
    Finished,
    /// The federation failed (for instance a round missed its quorum too often).
    Failed(String),
    /// Stopped by a signal before the end; `harambee serve` again resumes.
    Interrupted,
}

/// Where a started coordinator can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The gRPC address participants dial.
    pub grpc: SocketAddr,
    /// The dashboard's address (`http://` it for the page, `/api`, `/metrics`), if it runs.
    pub dashboard: Option<SocketAddr>,
}

/// Runs the coordinator of the federation at `folder` until it finishes, resuming from its
/// state. `on_ready` is called with the bound address once it accepts connections.
pub async fn serve(
    folder: &FederationFolder,
    options: ServeOptions,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<ServeOutcome, ServerError> {
    serve_with(folder, options, |ready| on_ready(ready.grpc)).await
}

/// [`serve`], telling `on_ready` the dashboard's address too.
pub async fn serve_with(
    folder: &FederationFolder,
    options: ServeOptions,
    on_ready: impl FnOnce(Ready),
) -> Result<ServeOutcome, ServerError> {
    // Held until this function returns: `harambee charter amend` refuses to rewrite the
    // charter under a live coordinator, and a second coordinator on the folder is refused.
    let _folder_lock =
        harambee_charter::FolderLock::acquire(folder.root(), "the coordinator (`harambee serve`)")
            .map_err(|e| ServerError::Config(e.to_string()))?;
    let folder2 = folder.clone();
    let driver = tokio::task::spawn_blocking(move || Driver::open(&folder2))
        .await
        .map_err(|e| ServerError::Config(format!("start-up failed: {e}")))??;
    let config = driver.config().clone();
    let mut board = driver.subscribe();
    let metrics = driver.metrics();
    let (actor, inbox) = Actor::new();
    let service = Service::new(&driver, actor.clone());
    inbox
        .start(driver)
        .map_err(|e| ServerError::Config(format!("cannot start the coordinator's thread: {e}")))?;

    let limits = &config.limits;
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // No call outlives this (the longest long poll is shorter, validate() checks).
        .timeout(Duration::from_secs_f64(limits.request_timeout_s))
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_streams_per_connection as usize);
    if options.insecure {
        tracing::warn!(
            "--insecure: plain-text gRPC; anyone on the network path can read and alter the traffic"
        );
    } else {
        let (cert, key, _) = folder.tls_paths();
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| ServerError::io(p, e));
        let identity = Identity::from_pem(read(&cert)?, read(&key)?);
        let handshake = Duration::from_secs_f64(limits.handshake_timeout_s);
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(identity).timeout(handshake))
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let listen = options.listen.unwrap_or(config.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServerError::Transport(format!("cannot listen on {listen}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::Transport(e.to_string()))?;

    let (dashboard, dashboard_task) = match options.http.or(config.http) {
        Some(addr) => {
            let (bound, task) =
                start_dashboard(addr, config.http_allowed_hosts.clone(), &actor, metrics).await?;
            (Some(bound), Some(task))
        }
        None => (None, None),
    };
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let interrupted2 = Arc::clone(&interrupted);
    let (linger, stay) = (options.linger, options.stay);
    let shutdown = async move {
        let finished = async {
            loop {
                let ended = {
                    let now = board.borrow_and_update();
                    now.finished.is_some() || now.stopped.is_some()
                };
                if ended || board.changed().await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(linger).await;
            if stay {
                tracing::info!("the federation is over; serving until interrupted (--stay)");
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = finished => {}
            _ = tokio::signal::ctrl_c() => {
                interrupted2.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    let svc = CoordinatorServer::new(service)
        .max_decoding_message_size(config.limits.max_message_bytes)
        .max_encoding_message_size(config.limits.max_message_bytes);
    on_ready(Ready {
        grpc: bound,
        dashboard,
    });
    builder
        .add_service(svc)
        .serve_with_incoming_shutdown(
            crate::listener::counted(listener, config.limits.max_connections),
            shutdown,
        )
        .await
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    // Live pages hold their connections open for ever: end them rather than wait.
    if let Some(task) = dashboard_task {
        task.abort();
    }

    let (fatal, status) = actor
        .call(|d| Ok((d.fatal().map(str::to_string), d.status())))
        .await
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if let Some(fatal) = fatal {
        return Err(ServerError::Config(format!(
            "stopped after a storage failure: {fatal}"
        )));
    }
    if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(ServeOutcome::Interrupted);
    }
    let status = status.map_err(|e| ServerError::Config(e.to_string()))?;
    Ok(if status.error.is_empty() {
        ServeOutcome::Finished
    } else {
        ServeOutcome::Failed(status.error)
    })
}

/// Binds the dashboard's address and serves it in the background.
async fn start_dashboard(
    addr: SocketAddr,
    allowed_hosts: Vec<String>,
    actor: &Actor,
    metrics: harambee_dashboard::Metrics,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServerError> {
    let options = harambee_dashboard::DashboardOptions {
        allowed_hosts,
        ..Default::default()
    };
    options
        .validate()
        .map_err(|e| ServerError::Config(format!("http_allowed_hosts: {e}")))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        ServerError::Transport(format!("cannot listen on {addr} for the dashboard: {e}"))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::Transport(e.to_string()))?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            %bound,
            "the dashboard is reachable beyond this machine over plain HTTP: anyone who can reach it reads the federation's state (changes still need a steward's signature)"
        );
    }
    let view = Arc::new(CoordinatorView::new(actor.clone()));
    let task = tokio::spawn(async move {
        if let Err(e) = harambee_dashboard::serve_with(listener, view, metrics, options).await {
            tracing::error!(error = %e, "the dashboard stopped");
        }
    });
    tracing::info!(url = %format!("http://{bound}/"), "dashboard listening");
    Ok((bound, task))
}
