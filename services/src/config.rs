//! Command line and environment configuration of the `eucora` binary. Every
//! flag can also be set through the `EUCORA_*` variable named in `--help`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// EUCORA control plane: rolls application versions out ring by ring.
#[derive(Debug, Parser)]
#[command(name = "eucora", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database and serve gRPC (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Ask a running server's grpc.health.v1 whether it is SERVING; exit 0 if
    /// so, 1 otherwise (container HEALTHCHECKs, scripts).
    Health {
        /// Server to ask (defaults to `--listen`).
        #[arg(long)]
        addr: Option<String>,
        /// Service to ask about (empty: the server as a whole).
        #[arg(long, default_value = "")]
        service: String,
        /// How long to wait for the answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the gRPC server listens on.
    #[arg(long, env = "EUCORA_LISTEN", default_value = "127.0.0.1:50051", global = true)]
    pub listen: SocketAddr,

    /// Address of the HTTP shim serving /metrics (and /api/v1/metrics/, /healthz, /readyz).
    #[arg(long, env = "EUCORA_METRICS_LISTEN", default_value = "127.0.0.1:9464", global = true)]
    pub metrics_listen: SocketAddr,

    /// OTLP/gRPC endpoint for traces; unset exports no spans (standard OpenTelemetry variable).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// Database URL: `sqlite://FILE` (created on first start) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "EUCORA_DATABASE_URL", default_value = "sqlite://eucora.db", global = true)]
    pub database_url: String,

    /// Largest number of pooled database connections.
    #[arg(long, env = "EUCORA_DATABASE_MAX_CONNECTIONS", default_value_t = 8, global = true)]
    pub database_max_connections: u32,

    /// How long a call waits for a database connection before failing UNAVAILABLE (e.g. `3s`).
    #[arg(long, env = "EUCORA_DATABASE_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration, global = true)]
    pub database_acquire_timeout: Duration,

    /// Longest one database operation may take before the call fails UNAVAILABLE (e.g. `5s`);
    /// a caller's shorter gRPC deadline cuts it further. Also PostgreSQL's `statement_timeout`.
    #[arg(long, env = "EUCORA_DATABASE_OPERATION_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub database_operation_timeout: Duration,

    /// Most connections open at once on each listener (gRPC, /metrics); more are closed at once.
    #[arg(long, env = "EUCORA_MAX_CONNECTIONS", default_value_t = 4096, global = true)]
    pub max_connections: usize,

    /// How long a connection may stay silent before it is closed (e.g. `120s`); live gRPC
    /// clients answer the server's keepalive pings. A new one must speak within 10 s.
    #[arg(long, env = "EUCORA_CONNECTION_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration, global = true)]
    pub connection_idle_timeout: Duration,

    /// Most concurrent gRPC calls (HTTP/2 streams) on one connection.
    #[arg(long, env = "EUCORA_MAX_STREAMS_PER_CONNECTION", default_value_t = 256, global = true)]
    pub max_streams_per_connection: u32,

    /// Most WatchDeployments streams open at once; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "EUCORA_MAX_WATCH_STREAMS", default_value_t = 1024, global = true)]
    pub max_watch_streams: usize,

    /// How often the database is probed to keep grpc.health.v1 current (e.g. `5s`).
    #[arg(long, env = "EUCORA_HEALTH_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub health_probe_interval: Duration,

    /// How long in-flight calls may take to finish on SIGINT/SIGTERM before they are cut (e.g. `30s`).
    #[arg(long, env = "EUCORA_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// How often every enabled connector's health is probed (e.g. `30s`).
    #[arg(long, env = "EUCORA_CONNECTOR_PROBE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub connector_probe_interval: Duration,

    /// Create a built-in simulator connector per type (`simulator-intune`, …) when missing,
    /// so deployments run end to end with no external system. For demos, not production.
    #[arg(long, env = "EUCORA_SIMULATOR_CONNECTORS", global = true)]
    pub simulator_connectors: bool,

    /// How often the rollout controller re-evaluates every deploying deployment (e.g. `30s`);
    /// it also reacts at once to new outcomes.
    #[arg(long, env = "EUCORA_CONTROLLER_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub controller_interval: Duration,

    /// How often work still queued for a connector (its delivery failed transiently) is retried (e.g. `30s`).
    #[arg(long, env = "EUCORA_DELIVERY_RETRY_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub delivery_retry_interval: Duration,

    /// Run no rollout controller in this process (run it in exactly one replica until leases exist).
    #[arg(long, env = "EUCORA_NO_CONTROLLER", global = true)]
    pub no_controller: bool,

    /// Log line format.
    #[arg(long, env = "EUCORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax (e.g. `info,eucora_services=debug`).
    #[arg(long, env = "EUCORA_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_embedded_set_up() {
        let cli = Cli::try_parse_from(["eucora"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.config.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(cli.config.database_url, "sqlite://eucora.db");
        assert_eq!(cli.config.metrics_listen.to_string(), "127.0.0.1:9464");
        let cli = Cli::try_parse_from(["eucora", "migrate", "--database-url", "postgres://x/y"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert_eq!(cli.config.database_url, "postgres://x/y");
    }
}
