//! Wiring of the server: gRPC services, reflection, health (kept current by a
//! database probe), the correlation-id and RPC observability layers, the
//! /metrics shim on its own listener, the connector runtime with its health
//! prober and outcome feed, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use eucora::v1::change_calendar_service_server::ChangeCalendarServiceServer;
use eucora::v1::connector_service_server::ConnectorServiceServer;
use eucora::v1::control_change_service_server::ControlChangeServiceServer;
use eucora::v1::deployment_service_server::DeploymentServiceServer;
use eucora::v1::ring_promotion_service_server::RingPromotionServiceServer;
use eucora::v1::risk_model_service_server::RiskModelServiceServer;
use eucora_otel::http::Readiness;
use eucora_otel::rpc::RpcObservabilityLayer;
use eucora_otel::{Catalog, MetricsPipeline};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::alerts::{StopTheLine, StopTheLineOptions};
use crate::app::deployments::WatchLimits;
use crate::app::{ChangeCalendar, ConnectorRegistry, ControlChanges, Deployments, Promotions, RiskModels};
use crate::auth::{AuthConfig, AuthLayer, AuthSetupError, Authenticator};
use crate::connectors::egress::EgressPolicy;
use crate::connectors::{self, Clock, Connectors, ReportedOutcome, RetryPolicy};
use crate::controller::Controller;
use crate::coord::redis::Redis;
use crate::coord::{self, Coordination, LeaseKeeper};
use crate::domain::connector::SimulatorConfig;
use crate::grpc::admission::{AdmissionLayer, AdmissionLimits};
use crate::grpc::calendar::CalendarApi;
use crate::grpc::call_limits::CallLimitsLayer;
use crate::grpc::connector::ConnectorApi;
use crate::grpc::control::ControlApi;
use crate::grpc::correlation;
use crate::grpc::deployment::DeploymentApi;
use crate::grpc::promotion::PromotionApi;
use crate::grpc::risk::RiskApi;
use crate::metrics::DeploymentMetrics;
use crate::net::{ConnectionLimits, LimitedListener};
use crate::store::Store;
use crate::tls::{Incoming, Protocol, TlsConfig, TlsError, TlsFiles};

/// How often the auth file is checked for changes (SIGHUP reloads at once).
const AUTH_FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Fully qualified names of the application services that health reports on.
pub const SERVED_SERVICES: &[&str] = &[
    <DeploymentServiceServer<DeploymentApi> as NamedService>::NAME,
    <RingPromotionServiceServer<PromotionApi> as NamedService>::NAME,
    <ConnectorServiceServer<ConnectorApi> as NamedService>::NAME,
    <RiskModelServiceServer<RiskApi> as NamedService>::NAME,
    <ControlChangeServiceServer<ControlApi> as NamedService>::NAME,
    <ChangeCalendarServiceServer<CalendarApi> as NamedService>::NAME,
];

/// How often an HTTP/2 connection with no traffic is pinged, and how long
/// the answer may take before the connection counts as dead.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

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
    /// How often every enabled connector's health is probed.
    pub connector_probe_interval: Duration,
    /// Retries of TRANSIENT connector errors.
    pub connector_retry: RetryPolicy,
    /// When set, a simulator connector per type is created if missing (demo set-up).
    pub simulator_connectors: Option<SimulatorConfig>,
    /// The time circuit breakers and the rollout controller see.
    pub clock: Clock,
    /// How often the rollout controller sweeps every deploying deployment;
    /// `None`: this process never takes the controller lease.
    pub controller_interval: Option<Duration>,
    /// How long a background duty's lease lasts unless renewed (renewed
    /// three times per period; a dead holder is replaced within two).
    pub lease_period: Duration,
    /// Connection caps and idle timeouts of both listeners.
    pub connection_limits: ConnectionLimits,
    /// Most concurrent calls (HTTP/2 streams) on one gRPC connection.
    pub max_streams_per_connection: u32,
    /// Most WatchDeployments streams open at once.
    pub max_watch_streams: usize,
    /// How often work still queued for a connector (its first delivery
    /// failed transiently) is delivered again.
    pub delivery_retry_interval: Duration,
    /// Where identities come from (none: insecure, loopback only).
    pub auth: AuthConfig,
    /// Where connector calls may go.
    pub egress: EgressPolicy,
    /// Calls in flight and per-identity rates admitted.
    pub admission: AdmissionLimits,
    /// The deadline of a call whose caller sets none (DEADLINE_EXCEEDED past it).
    pub default_deadline: Duration,
    /// Most WatchDeployments streams one identity may hold open.
    pub max_watch_streams_per_identity: usize,
    /// Serve both listeners over TLS from these files (mTLS with a client CA).
    pub tls: Option<TlsFiles>,
    /// The bearer token scrapes of /metrics must carry, when set.
    pub scrape_token: Option<String>,
    /// Share coordination among replicas through this Redis (none: this
    /// process only).
    pub redis: Option<RedisOptions>,
    /// Alertmanager's webhook pausing deployments (none: not served).
    pub stop_the_line: Option<StopTheLineOptions>,
}

/// Where replicas meet in Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// As `fred` reads it: `redis://`, `rediss://`, `redis-sentinel://`, `redis-cluster://`.
    pub url: String,
    /// Starts every key and channel, so that installations can share a Redis.
    pub key_prefix: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            health_probe_interval: Duration::from_secs(5),
            health_probe_timeout: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            connector_probe_interval: Duration::from_secs(30),
            connector_retry: RetryPolicy::default(),
            simulator_connectors: None,
            clock: Clock::system(),
            controller_interval: Some(Duration::from_secs(30)),
            lease_period: Duration::from_secs(10),
            connection_limits: ConnectionLimits::default(),
            max_streams_per_connection: 256,
            max_watch_streams: 1024,
            delivery_retry_interval: Duration::from_secs(30),
            auth: AuthConfig::default(),
            egress: EgressPolicy::default(),
            admission: AdmissionLimits::default(),
            default_deadline: Duration::from_secs(60),
            max_watch_streams_per_identity: 64,
            tls: None,
            scrape_token: None,
            redis: None,
            stop_the_line: None,
        }
    }
}

/// The sockets the server answers on.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// The /metrics shim, apart from gRPC so that scrapes and calls never queue behind each other.
    pub metrics: TcpListener,
}

/// The telemetry pipeline the server records into and exports.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub pipeline: MetricsPipeline,
    pub catalog: Catalog,
}

impl Telemetry {
    pub fn new(pipeline: MetricsPipeline) -> Telemetry {
        let catalog = Catalog::new(&pipeline.meter());
        Telemetry { pipeline, catalog }
    }
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("metrics shim: {0}")]
    Metrics(#[from] std::io::Error),
    #[error("creating the simulator connectors: {0}")]
    Simulators(#[from] crate::store::StoreError),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Redis(#[from] crate::coord::redis::RedisUrlError),
}

/// Serves until `shutdown` resolves, then stops accepting, ends watch
/// streams, and waits (up to the grace period) for in-flight calls.
///
/// # Errors
/// A transport failed or the descriptor set is unusable.
pub async fn serve(
    listeners: Listeners,
    store: Arc<Store>,
    telemetry: Telemetry,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Refuse an unsafe set-up before anything listens.
    let served = [listeners.grpc.local_addr()?, listeners.metrics.local_addr()?];
    let authenticator = Arc::new(Authenticator::new(options.auth.clone(), &served)?);
    let stop = CancellationToken::new();
    let readiness = Readiness::default();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Every served service has a status before the first call can ask: the
    // first probe's, taken now on the connection start-up left open (taken
    // later, it waited for new connections behind every other task's).
    let initial = database_status(&store, options.health_probe_timeout).await;
    tracing::info!(status = ?initial, "health");
    publish_health(initial, &store, &health_reporter, &readiness, &telemetry.catalog).await;
    let coordination_health = health_reporter.clone();
    let probe = tokio::spawn(probe_database(
        store.clone(),
        initial,
        health_reporter,
        readiness.clone(),
        telemetry.catalog.clone(),
        options.clone(),
        stop.clone(),
    ));
    let tls = match &options.tls {
        Some(files) => {
            let tls = Arc::new(TlsConfig::load(files.clone())?);
            tokio::spawn(tls.clone().watch(stop.clone()));
            Some(tls)
        }
        None => None,
    };

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eucora::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc error details, so grpcurl can decode BadRequest and PreconditionFailure.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eucora::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    if let Some(simulator) = options.simulator_connectors {
        let ctx = options.clock.context("system".to_owned(), "--simulator-connectors".to_owned(), None);
        connectors::ensure_simulators(&store, simulator, &ctx).await?;
    }
    let metrics = DeploymentMetrics::new(telemetry.catalog.clone());
    let replica = coord::replica_id();
    let coordination = Arc::new(match &options.redis {
        Some(redis) => Coordination::shared(
            replica.clone(),
            Redis::connect(&redis.url, &redis.key_prefix)?,
            telemetry.catalog.clone(),
        ),
        None => Coordination::local(replica.clone(), telemetry.catalog.clone()),
    });
    let (outcomes_tx, outcomes_rx) = mpsc::channel(1024);
    let connectors = Arc::new(Connectors::new(
        store.clone(),
        telemetry.catalog.clone(),
        options.connector_retry,
        options.clock.clone(),
        outcomes_tx,
        options.egress,
        coordination.clone(),
    ));
    let clock = options.clock.clone();
    let deployments = Deployments::new(
        store.clone(),
        metrics.clone(),
        connectors.clone(),
        clock.clone(),
        stop.clone(),
        WatchLimits { total: options.max_watch_streams, per_identity: options.max_watch_streams_per_identity },
    );
    let mut http = eucora_otel::http::router(telemetry.pipeline.clone(), readiness, options.scrape_token.clone());
    if let Some(webhook) = &options.stop_the_line {
        let webhook = StopTheLine::new(
            webhook.clone(),
            store.clone(),
            deployments.clone(),
            telemetry.catalog.clone(),
            clock.clone(),
        );
        http = http.merge(Arc::new(webhook).router());
    }
    let metrics_listener = LimitedListener::new(listeners.metrics, options.connection_limits, "metrics");
    let shim = tokio::spawn(eucora_otel::http::serve(
        Incoming::new(metrics_listener, tls.clone(), Protocol::Http)?,
        http,
        stop.clone().cancelled_owned(),
    ));
    let control = ControlChanges::new(store.clone(), metrics.clone());
    let calendar = ChangeCalendar::new(store.clone(), metrics.clone());
    let promotions = Promotions::new(store.clone(), metrics.clone(), deployments.clone(), control.clone());
    let registry = ConnectorRegistry::new(store.clone(), connectors.clone(), clock.clone());
    let leases = Arc::new(LeaseKeeper::new(
        store.clone(),
        clock.clone(),
        telemetry.catalog.clone(),
        replica,
        options.lease_period,
    ));
    let mut lease_keepers = Vec::new();
    let controller = options.controller_interval.map(|interval| {
        let controller = Controller::new(
            store.clone(),
            deployments.clone(),
            promotions.clone(),
            calendar.clone(),
            telemetry.catalog.clone(),
            options.clock.clone(),
        );
        let (lease, keeper) = leases.keep(coord::leases::CONTROLLER, stop.clone());
        lease_keepers.push(keeper);
        tokio::spawn(controller.run(store.subscribe(), interval, lease, stop.clone()))
    });
    let (probe_lease, keeper) = leases.keep(coord::leases::CONNECTOR_PROBES, stop.clone());
    lease_keepers.push(keeper);
    // Watchers hear of every event committed from here on.
    let last_event = store.last_event_seq().await?;
    let background = [
        tokio::spawn(apply_reported_outcomes(outcomes_rx, deployments.clone(), stop.clone())),
        tokio::spawn(connectors.clone().probe_every(options.connector_probe_interval, probe_lease, stop.clone())),
        tokio::spawn(deliver_queued(deployments.clone(), options.delivery_retry_interval, stop.clone())),
        tokio::spawn(metrics.clone().keep_current(store.clone(), clock.clone(), stop.clone())),
        tokio::spawn(store.clone().tail_events(last_event, stop.clone())),
        tokio::spawn(coordination.run(store.clone(), coordination_health, stop.clone())),
        tokio::spawn(connectors.clone().follow_breakers(options.connector_probe_interval, stop.clone())),
        tokio::spawn(authenticator.clone().watch(AUTH_FILE_CHECK_INTERVAL, stop.clone())),
    ];

    let stop_on_signal = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, finishing in-flight ones");
        stop_on_signal.cancel();
    });

    let server = Server::builder()
        .max_concurrent_streams(Some(options.max_streams_per_connection))
        // Pings find dead peers, and keep a live client's quiet connection
        // within the listener's idle timeout (its answers count as traffic).
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .layer(correlation::layer())
        .layer(RpcObservabilityLayer::new(telemetry.catalog.clone(), served_methods()))
        .layer(CallLimitsLayer { default_deadline: options.default_deadline, catalog: telemetry.catalog.clone() })
        .layer(AuthLayer::new(authenticator.clone(), telemetry.catalog.clone()))
        .layer(AdmissionLayer::new(options.admission, telemetry.catalog.clone()))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(DeploymentServiceServer::new(DeploymentApi::new(deployments)))
        .add_service(RingPromotionServiceServer::new(PromotionApi::new(promotions.clone(), clock.clone())))
        .add_service(ConnectorServiceServer::new(ConnectorApi::new(registry)))
        .add_service(RiskModelServiceServer::new(RiskApi::new(
            RiskModels::new(store.clone(), control.clone()),
            clock.clone(),
        )))
        .add_service(ControlChangeServiceServer::new(ControlApi::new(control, promotions, clock.clone())))
        .add_service(ChangeCalendarServiceServer::new(CalendarApi::new(calendar, clock)))
        .serve_with_incoming_shutdown(
            Incoming::new(
                LimitedListener::new(listeners.grpc, options.connection_limits, "grpc"),
                tls,
                Protocol::Grpc,
            )?
            .into_stream(),
            stop.clone().cancelled_owned(),
        );
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
    // Calls still waiting on a connector after the grace period end now.
    connectors.cancel_calls();
    let _ = probe.await;
    for task in background.into_iter().chain(controller).chain(lease_keepers) {
        let _ = task.await;
    }
    let shim_result = shim.await.unwrap_or(Ok(()));
    result?;
    shim_result?;
    Ok(())
}

/// Applies the outcomes connectors report on their own, until shutdown.
async fn apply_reported_outcomes(
    mut outcomes: mpsc::Receiver<ReportedOutcome>,
    deployments: Deployments,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            outcome = outcomes.recv() => match outcome {
                Some(outcome) => deployments.record_reported_outcome(outcome).await,
                None => return,
            },
        }
    }
}

/// Delivers work still queued for connectors, at start (what a stopped
/// server left) and then on an interval, until shutdown.
async fn deliver_queued(deployments: Deployments, period: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = deployments.deliver_pending() => {}
        }
    }
}

/// Every `package.Service/Method` this server answers, from the descriptor
/// sets it serves: the bound on RPC metric labels.
pub fn served_methods() -> Vec<String> {
    [
        eucora::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ]
    .into_iter()
    .filter_map(|bytes| prost_types::FileDescriptorSet::decode(bytes).ok())
    .flat_map(|set| set.file)
    .flat_map(|file| {
        let package = file.package().to_owned();
        file.service.into_iter().flat_map(move |service| {
            let service_name = format!("{package}.{}", service.name());
            service.method.into_iter().map(move |method| format!("{service_name}/{}", method.name()))
        })
    })
    .collect()
}

/// Tells grpc.health.v1 (overall and per service), `/readyz` and the pool gauge.
async fn publish_health(
    status: ServingStatus,
    store: &Store,
    reporter: &HealthReporter,
    readiness: &Readiness,
    catalog: &Catalog,
) {
    readiness.set(status == ServingStatus::Serving);
    let pool = store.pool_stats();
    catalog.pool_size(pool.idle, pool.in_use, pool.max);
    for service in std::iter::once("").chain(SERVED_SERVICES.iter().copied()) {
        reporter.set_service_status(service, status).await;
    }
}

/// SERVING when the database answers and takes a write within `timeout`.
async fn database_status(store: &Store, timeout: Duration) -> ServingStatus {
    let probe = async {
        store.ping().await?;
        store.probe_write().await
    };
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(())) => ServingStatus::Serving,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "database probe failed");
            ServingStatus::NotServing
        }
        Err(_) => {
            tracing::warn!(?timeout, "database probe timed out");
            ServingStatus::NotServing
        }
    }
}

/// Keeps grpc.health.v1, `/readyz` and the pool gauge in step with the
/// database: SERVING while it answers and takes writes, NOT_SERVING (overall
/// and per service) while it does not. A call that finds the database
/// unusable wakes the probe at once rather than at its next tick.
async fn probe_database(
    store: Arc<Store>,
    initial: ServingStatus,
    reporter: HealthReporter,
    readiness: Readiness,
    catalog: Catalog,
    options: ServeOptions,
    stop: CancellationToken,
) {
    let period = options.health_probe_interval;
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = initial;
    loop {
        let serving = last == ServingStatus::Serving;
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
            // While down, the ticks decide: every failed call would otherwise re-probe.
            () = store.fault_noticed(), if serving => {}
        }
        let status = database_status(&store, options.health_probe_timeout).await;
        if last != status {
            tracing::info!(?status, "health changed");
            last = status;
        }
        publish_health(status, &store, &reporter, &readiness, &catalog).await;
    }
    // Callers see NOT_SERVING while in-flight calls drain.
    readiness.set(false);
    for service in std::iter::once("").chain(SERVED_SERVICES.iter().copied()) {
        reporter.set_service_status(service, ServingStatus::NotServing).await;
    }
}
