//! The `eucora` binary: parses configuration, sets up logs, traces and
//! metrics, connects the store, and serves until SIGINT/SIGTERM.

use std::num::NonZeroU32;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use eucora_otel::tracing_setup::{self, LogFormat as OtelLogFormat, TracingConfig};
use eucora_otel::{MetricsPipeline, ServiceIdentity};
use eucora_services::auth::{AuthConfig, file, tokens};
use eucora_services::config::{AuthCommand, Cli, Command, DatabaseArgs, LogFormat, MigrateArgs, ServeArgs, TokenArgs};
use eucora_services::connectors::egress::EgressPolicy;
use eucora_services::domain::connector::SimulatorConfig;
use eucora_services::grpc::admission::AdmissionLimits;
use eucora_services::net::ConnectionLimits;
use eucora_services::server::{self, Listeners, RedisOptions, ServeOptions, Telemetry};
use eucora_services::store::secrets::SecretKey;
use eucora_services::store::{Store, StoreConfig};
use eucora_services::tls::TlsFiles;
use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Rust's allocations go to jemalloc: with glibc's malloc, consolidating its
/// free lists took a fifth of a List's CPU, and Gets ran at half the rate.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: one arena (threads keep caches of
/// their own; a second arena held 5 MiB more), and pages freed back to the
/// system by a background thread a second after they fell idle (returning
/// them at once cost a quarter of the throughput).
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(start())
}

/// SQLite allocates with glibc's malloc, which gives each thread that
/// allocates an arena of its own (sqlx's thread per SQLite connection) and
/// keeps what was freed in each; two arenas held RSS about 20 MiB lower under
/// load. `MALLOC_ARENA_MAX`, when set, wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a parameter of the allocator, and runs before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn start() -> anyhow::Result<()> {
    let (database, log, serve) = match Cli::parse().action() {
        Command::Health(health) => {
            // A probe: no logs, traces, metrics or database, just the answer.
            match check_health(&health.addr, health.service, health.timeout).await {
                Ok(ServingStatus::Serving) => return Ok(()),
                Ok(status) => eprintln!("{}: {}", health.addr, status.as_str_name()),
                Err(err) => eprintln!("{}: {err:#}", health.addr),
            }
            std::process::exit(1);
        }
        Command::Auth(AuthCommand::Token(args)) => return new_token(&args),
        Command::Migrate(MigrateArgs { database, log }) => (database, log, None),
        Command::Serve(serve) => (serve.database.clone(), serve.log.clone(), Some(serve)),
    };
    let identity = ServiceIdentity {
        name: "eucora".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        instance_id: uuid::Uuid::new_v4().to_string(),
    };
    let tracing_guard = tracing_setup::init(&TracingConfig {
        filter: log.log.clone(),
        format: match log.log_format {
            LogFormat::Text => OtelLogFormat::Text,
            LogFormat::Json => OtelLogFormat::Json,
        },
        otlp_endpoint: serve.as_ref().and_then(|serve| serve.otlp_endpoint.clone()),
        identity: identity.clone(),
    })?;
    let secret_key = match serve.as_ref().map(secret_key).transpose() {
        Ok(key) => key.flatten(),
        Err(err) => {
            tracing_guard.shutdown();
            return Err(err);
        }
    };
    let result = run(&database, secret_key, serve.as_ref(), &identity).await;
    if let Err(err) = &result {
        tracing::error!(error = format!("{err:#}"), "exiting");
    }
    tracing_guard.shutdown();
    result
}

/// The key connector credentials are sealed with: the file's, the
/// variable's, or under --dev-auth the documented development key.
fn secret_key(serve: &ServeArgs) -> anyhow::Result<Option<SecretKey>> {
    let text = match (&serve.secret_key_file, &serve.secret_key) {
        (Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?),
        (None, value) => value.clone(),
    };
    match text {
        Some(text) => Ok(Some(SecretKey::from_base64(&text)?)),
        None if serve.dev_auth => {
            tracing::warn!("no secret key: connector tokens are sealed with the documented development key");
            Ok(Some(SecretKey::development()))
        }
        None => Ok(None),
    }
}

/// Migrates, then serves when `serve` is given.
async fn run(
    database: &DatabaseArgs,
    secret_key: Option<SecretKey>,
    serve: Option<&ServeArgs>,
    identity: &ServiceIdentity,
) -> anyhow::Result<()> {
    let store = connect(database, secret_key).await?;
    store.migrate().await.context("migrating the database")?;
    let Some(config) = serve else {
        tracing::info!(database = %redact(&database.database_url), "migrations applied");
        return Ok(());
    };
    let listeners = Listeners {
        grpc: TcpListener::bind(config.listen).await.with_context(|| format!("binding gRPC on {}", config.listen))?,
        metrics: TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| format!("binding /metrics on {}", config.metrics_listen))?,
    };
    // With port 0 the system picks free ports: scripts and tests read them here.
    let (grpc_addr, metrics_addr) = (listeners.grpc.local_addr()?, listeners.metrics.local_addr()?);
    tracing::info!(%grpc_addr, %metrics_addr, "listening");
    let pipeline = MetricsPipeline::new(identity).context("building the metrics pipeline")?;
    let options = ServeOptions {
        health_probe_interval: config.health_probe_interval,
        shutdown_grace: config.shutdown_grace,
        connector_probe_interval: config.connector_probe_interval,
        simulator_connectors: config.simulator_connectors.then(SimulatorConfig::default),
        controller_interval: (!config.no_controller).then_some(config.controller_interval),
        lease_period: config.lease_period,
        redis: config.redis_url.clone().map(|url| RedisOptions { url, key_prefix: config.redis_key_prefix.clone() }),
        connection_limits: ConnectionLimits {
            max_connections: config.max_connections,
            idle_timeout: config.connection_idle_timeout,
            ..ConnectionLimits::default()
        },
        max_streams_per_connection: config.max_streams_per_connection,
        max_watch_streams: config.max_watch_streams,
        delivery_retry_interval: config.delivery_retry_interval,
        egress: EgressPolicy { allow_loopback: config.allow_loopback_connectors },
        admission: AdmissionLimits {
            max_in_flight: config.max_in_flight,
            rate_per_identity: NonZeroU32::new(config.rate_limit),
            burst_per_identity: NonZeroU32::new(config.rate_burst.max(1)).expect("at least 1"),
        },
        default_deadline: config.default_deadline,
        tls: config.tls_cert.clone().zip(config.tls_key.clone()).map(|(cert, key)| TlsFiles {
            cert,
            key,
            client_ca: config.tls_client_ca.clone(),
        }),
        scrape_token: config.metrics_token_file.as_deref().map(read_token).transpose()?,
        stop_the_line: stop_the_line(config)?,
        max_watch_streams_per_identity: config.max_watch_streams_per_identity,
        auth: AuthConfig {
            auth_file: config.auth_file.clone(),
            dev_auth: config.dev_auth,
            insecure_no_auth: config.insecure_no_auth,
        },
        ..ServeOptions::default()
    };
    let store = Arc::new(store);
    server::serve(listeners, store.clone(), Telemetry::new(pipeline.clone()), options, shutdown_signal()).await?;
    pipeline.shutdown();
    if let Ok(store) = Arc::try_unwrap(store) {
        store.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `eucora auth token`: a new identity's token, printed once; the auth file keeps its hash.
fn new_token(args: &TokenArgs) -> anyhow::Result<()> {
    let (token, entry) = tokens::generate(&args.name, &args.roles);
    file::append(&args.auth_file, &entry)?;
    eprintln!(
        "identity {:?} ({}) added to {}; its token is shown once:",
        args.name,
        args.roles.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        args.auth_file.display()
    );
    println!("{token}");
    Ok(())
}

/// grpc.health.v1 Check against `addr` (`host:port` or a URL).
async fn check_health(addr: &str, service: String, timeout: std::time::Duration) -> anyhow::Result<ServingStatus> {
    let url = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad address {addr:?}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service }).await.context("health check")?;
    Ok(answer.into_inner().status())
}

async fn connect(config: &DatabaseArgs, secret_key: Option<SecretKey>) -> anyhow::Result<Store> {
    let store_config = StoreConfig {
        secret_key,
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
        operation_timeout: config.database_operation_timeout,
        sqlite_durability: config.sqlite_durability,
        ..StoreConfig::new(config.database_url.clone())
    };
    Store::connect(&store_config).await.with_context(|| format!("connecting to {}", redact(&config.database_url)))
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// The webhook's settings, when an Alertmanager token is configured.
fn stop_the_line(config: &ServeArgs) -> anyhow::Result<Option<eucora_services::alerts::StopTheLineOptions>> {
    use eucora_services::alerts;
    let Some(token_file) = &config.alertmanager_token_file else { return Ok(None) };
    let token = read_token(token_file)?;
    let rules = match &config.stop_the_line_rules {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            alerts::parse_rules(&text).with_context(|| format!("stop-the-line rules in {}", path.display()))?
        }
        None => alerts::default_rules(),
    };
    Ok(Some(alerts::StopTheLineOptions { token, rules }))
}

/// The bearer token in `path`, refused when empty (an empty token would let
/// any `Bearer ` header through).
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let token = token.trim();
    anyhow::ensure!(!token.is_empty(), "{} holds no token", path.display());
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/eucora"), "postgres://app:***@db:5432/eucora");
        assert_eq!(redact("postgres://root@127.0.0.1/test"), "postgres://root@127.0.0.1/test");
        assert_eq!(redact("sqlite://eucora.db"), "sqlite://eucora.db");
    }
}
