//! Wiring of the gRPC server: services, reflection, health (kept current by a
//! database probe), the correlation-id layer, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eucora::v1::deployment_service_server::DeploymentServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::grpc::correlation::CorrelationIdLayer;
use crate::grpc::deployment::DeploymentApi;
use crate::store::Store;

/// Fully qualified names of the application services that health reports on.
pub const SERVED_SERVICES: &[&str] = &["eucora.v1.DeploymentService"];

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How often the database is probed to keep health current.
    pub health_probe_interval: Duration,
    /// How long one probe may take before the database counts as down.
    pub health_probe_timeout: Duration,
    /// How long in-flight calls may take to finish after shutdown starts;
    /// streams the server does not own (grpc.health.v1 Watch) are cut then.
    pub shutdown_grace: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            health_probe_interval: Duration::from_secs(5),
            health_probe_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves gRPC on `listener` until `shutdown` resolves, then stops accepting,
/// ends watch streams, and waits for in-flight calls to finish.
///
/// # Errors
/// The transport failed or the descriptor set is unusable.
pub async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let stop = CancellationToken::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Every served service has a status before the first call can ask; the
    // probe turns it to SERVING once the database answers.
    for service in std::iter::once("").chain(SERVED_SERVICES.iter().copied()) {
        health_reporter.set_service_status(service, ServingStatus::NotServing).await;
    }
    let probe = tokio::spawn(probe_database(store.clone(), health_reporter, options.clone(), stop.clone()));

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eucora::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eucora::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let deployments = DeploymentApi::new(store, stop.clone());
    let local_addr = listener.local_addr().ok();
    tracing::info!(addr = ?local_addr, "serving gRPC");

    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, finishing in-flight ones");
        stop_on_signal.cancel();
    });

    let server = Server::builder()
        .layer(CorrelationIdLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(DeploymentServiceServer::new(deployments))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.clone().cancelled_owned());
    tokio::pin!(server);
    let result = tokio::select! {
        result = &mut server => result,
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(options.shutdown_grace).await;
        } => {
            tracing::warn!(grace = ?options.shutdown_grace, "calls still open after the shutdown grace period; closing them");
            Ok(())
        }
    };
    stop.cancel();
    let _ = probe.await;
    result.map_err(ServeError::from)
}

/// Keeps grpc.health.v1 in step with the database: SERVING while it answers,
/// NOT_SERVING (overall and per service) while it does not.
async fn probe_database(store: Arc<Store>, reporter: HealthReporter, options: ServeOptions, stop: CancellationToken) {
    let period = options.health_probe_interval;
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<ServingStatus> = None;
    loop {
        let status = match tokio::time::timeout(options.health_probe_timeout, store.ping()).await {
            Ok(Ok(())) => ServingStatus::Serving,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "database probe failed");
                ServingStatus::NotServing
            }
            Err(_) => {
                tracing::warn!(timeout = ?options.health_probe_timeout, "database probe timed out");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            tracing::info!(?status, "health changed");
            last = Some(status);
        }
        for service in std::iter::once("").chain(SERVED_SERVICES.iter().copied()) {
            reporter.set_service_status(service, status).await;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
    }
    // Callers see NOT_SERVING while in-flight calls drain.
    for service in std::iter::once("").chain(SERVED_SERVICES.iter().copied()) {
        reporter.set_service_status(service, ServingStatus::NotServing).await;
    }
}

/// Binds `addr`, for `main` and tests alike.
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
