//! Command line and environment configuration of the `eucora` binary. Every
//! flag can also be set through the `EUCORA_*` variable named in `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::Role;
use crate::store::SqliteDurability;

/// EUCORA control plane: rolls application versions out ring by ring.
///
/// With no subcommand, `eucora` serves (the flags below are `serve`'s).
#[derive(Debug, Parser)]
#[command(name = "eucora", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

impl Cli {
    /// What to do: the subcommand given, or serving.
    pub fn action(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

// Parsed once per process: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database and serve gRPC (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(MigrateArgs),
    /// Ask a running server's grpc.health.v1 whether it is SERVING; exit 0 if
    /// so, 1 otherwise (container HEALTHCHECKs, scripts).
    Health(HealthArgs),
    /// Manage the identities of the auth file.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Generate a random token for a new identity, print it once, and append
    /// the identity (with the token's SHA-256, never the token) to the auth file.
    Token(TokenArgs),
}

/// `eucora auth token`.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenArgs {
    /// The identity's name, recorded as the actor of everything it does.
    #[arg(long)]
    pub name: String,
    /// Its roles, comma-separated: viewer, operator, approver, reporter, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    pub roles: Vec<Role>,
    /// The auth file to append to (created when missing).
    #[arg(long, env = "EUCORA_AUTH_FILE", default_value = "eucora-auth.toml")]
    pub auth_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The database and how it is used.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://FILE` (created on first start) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "EUCORA_DATABASE_URL", default_value = "sqlite://eucora.db")]
    pub database_url: String,

    /// Largest number of pooled database connections [default: 4 on SQLite, 8 on PostgreSQL].
    #[arg(long, env = "EUCORA_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,

    /// How long a call waits for a database connection before failing UNAVAILABLE (e.g. `3s`).
    #[arg(long, env = "EUCORA_DATABASE_ACQUIRE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub database_acquire_timeout: Duration,

    /// Longest one database operation may take before the call fails UNAVAILABLE (e.g. `5s`);
    /// a caller's shorter gRPC deadline cuts it further. Also PostgreSQL's `statement_timeout`.
    #[arg(long, env = "EUCORA_DATABASE_OPERATION_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub database_operation_timeout: Duration,

    /// SQLite only: `full` syncs every commit before answering; `normal` syncs the write-ahead log
    /// at checkpoints only (a power loss can take back the last commits; killing the server cannot).
    #[arg(long, env = "EUCORA_SQLITE_DURABILITY", value_enum, default_value_t = SqliteDurability::Full)]
    pub sqlite_durability: SqliteDurability,
}

/// Logs.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "EUCORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax (e.g. `info,eucora_services=debug`).
    #[arg(long, env = "EUCORA_LOG", default_value = "info")]
    pub log: String,
}

/// `eucora migrate`: only what migrating needs.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `eucora health`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Server to ask (`host:port` or a URL); the serve address by default.
    #[arg(long, env = "EUCORA_LISTEN", default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// Service to ask about (empty: the server as a whole).
    #[arg(long, default_value = "")]
    pub service: String,
    /// How long to wait for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `eucora serve` (and `eucora` alone).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on (port 0: any free port, logged at start).
    #[arg(long, env = "EUCORA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Address of the HTTP shim serving /metrics (and /api/v1/metrics/, /healthz, /readyz).
    #[arg(long, env = "EUCORA_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// OTLP/gRPC endpoint for traces; unset exports no spans (standard OpenTelemetry variable).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Identities and their roles (TOML, `[[identity]]` with `name`, `roles`,
    /// `token_sha256`; see `eucora auth token`); re-read on SIGHUP and when it changes.
    #[arg(long, env = "EUCORA_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,

    /// Also accept the documented development tokens — dev-alice (operator), dev-bob
    /// (approver), dev-carol (admin), dev-victor (viewer), dev-agent (reporter); loopback only.
    #[arg(long, env = "EUCORA_DEV_AUTH")]
    pub dev_auth: bool,

    /// The key connector tokens are sealed with at rest: 32 random bytes in base64
    /// (`openssl rand -base64 32`). Storing a token without one is refused, but under --dev-auth.
    #[arg(long, env = "EUCORA_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// A file holding that key (preferred to the variable: it stays out of the environment).
    #[arg(long, env = "EUCORA_SECRET_KEY_FILE", conflicts_with = "secret_key")]
    pub secret_key_file: Option<PathBuf>,

    /// Serve gRPC and /metrics over TLS with this PEM certificate chain (re-read on SIGHUP).
    #[arg(long, env = "EUCORA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "EUCORA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates chaining to this PEM CA (mTLS).
    #[arg(long, env = "EUCORA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// A file holding the bearer token Prometheus must send to read /metrics
    /// (its scrape config's `authorization.credentials_file`).
    #[arg(long, env = "EUCORA_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,

    /// A file holding the bearer token Alertmanager sends to `POST
    /// /api/v1/alertmanager` (its webhook's `authorization.credentials_file`);
    /// without it, the stop-the-line webhook is not served.
    #[arg(long, env = "EUCORA_ALERTMANAGER_TOKEN_FILE")]
    pub alertmanager_token_file: Option<PathBuf>,

    /// A TOML file of `[[rule]]`s saying which firing alerts pause which
    /// deployments (default: every `severity="critical"` alert, narrowed by its
    /// `app_name`, `ring` and `connector_type` labels).
    #[arg(long, env = "EUCORA_STOP_THE_LINE_RULES", requires = "alertmanager_token_file")]
    pub stop_the_line_rules: Option<PathBuf>,

    /// Let connectors call adapters on loopback addresses (a local set-up; `make run` does).
    #[arg(long, env = "EUCORA_ALLOW_LOOPBACK_CONNECTORS")]
    pub allow_loopback_connectors: bool,

    /// Serve without authentication even beyond loopback: anyone who reaches the port is an
    /// anonymous admin. Without an identity source the server otherwise serves loopback only.
    #[arg(long, env = "EUCORA_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    /// Most connections open at once on each listener (gRPC, /metrics); more are closed at once.
    #[arg(long, env = "EUCORA_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long a connection may stay silent before it is closed (e.g. `120s`); live gRPC
    /// clients answer the server's keepalive pings. A new one must speak within 10 s.
    #[arg(long, env = "EUCORA_CONNECTION_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub connection_idle_timeout: Duration,

    /// Most concurrent gRPC calls (HTTP/2 streams) on one connection.
    #[arg(long, env = "EUCORA_MAX_STREAMS_PER_CONNECTION", default_value_t = 256)]
    pub max_streams_per_connection: u32,

    /// Most WatchDeployments streams open at once; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "EUCORA_MAX_WATCH_STREAMS", default_value_t = 1024)]
    pub max_watch_streams: usize,

    /// Most WatchDeployments streams one identity may hold open.
    #[arg(long, env = "EUCORA_MAX_WATCH_STREAMS_PER_IDENTITY", default_value_t = 64)]
    pub max_watch_streams_per_identity: usize,

    /// Most calls in flight at once; more are shed RESOURCE_EXHAUSTED (with RetryInfo).
    #[arg(long, env = "EUCORA_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Calls per second one identity may make on average (0: unlimited); more are
    /// RESOURCE_EXHAUSTED with RetryInfo saying when to retry.
    #[arg(long, env = "EUCORA_RATE_LIMIT", default_value_t = 200)]
    pub rate_limit: u32,

    /// Calls one identity may make in a burst above its rate.
    #[arg(long, env = "EUCORA_RATE_BURST", default_value_t = 400)]
    pub rate_burst: u32,

    /// The deadline of a call whose caller sets no `grpc-timeout` (e.g. `60s`); DEADLINE_EXCEEDED past it.
    #[arg(long, env = "EUCORA_DEFAULT_DEADLINE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub default_deadline: Duration,

    /// How often the database is probed to keep grpc.health.v1 current (e.g. `5s`).
    #[arg(long, env = "EUCORA_HEALTH_PROBE_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub health_probe_interval: Duration,

    /// How long in-flight calls may take to finish on SIGINT/SIGTERM before they are cut (e.g. `30s`).
    #[arg(long, env = "EUCORA_SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How often every enabled connector's health is probed (e.g. `30s`).
    #[arg(long, env = "EUCORA_CONNECTOR_PROBE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub connector_probe_interval: Duration,

    /// Create a built-in simulator connector per type (`simulator-intune`, …) when missing,
    /// so deployments run end to end with no external system. For demos, not production.
    #[arg(long, env = "EUCORA_SIMULATOR_CONNECTORS")]
    pub simulator_connectors: bool,

    /// How often the rollout controller re-evaluates every deploying deployment (e.g. `30s`);
    /// it also reacts at once to new outcomes.
    #[arg(long, env = "EUCORA_CONTROLLER_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub controller_interval: Duration,

    /// How often work still queued for a connector (its delivery failed transiently) is retried (e.g. `30s`).
    #[arg(long, env = "EUCORA_DELIVERY_RETRY_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub delivery_retry_interval: Duration,

    /// Never take the rollout controller's lease in this process (the other replicas run it).
    #[arg(long, env = "EUCORA_NO_CONTROLLER")]
    pub no_controller: bool,

    /// How long a background duty's lease (controller, connector probing) lasts unless renewed;
    /// another replica takes over a dead holder's duty within two periods.
    #[arg(long, env = "EUCORA_LEASE_PERIOD", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_period: Duration,

    /// Share coordination among replicas through this Redis: wake-ups on other replicas' events,
    /// circuit breakers, dispatch claims (`redis://`, `rediss://` for TLS, `redis-sentinel://`,
    /// `redis-cluster://`). Unset: this process only. Leases stay in the database either way.
    #[arg(long, env = "EUCORA_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Starts every Redis key and channel, so that several installations can share one Redis.
    #[arg(long, env = "EUCORA_REDIS_KEY_PREFIX", default_value = "eucora:")]
    pub redis_key_prefix: String,

    #[command(flatten)]
    pub log: LogArgs,
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
        let Command::Serve(serve) = Cli::try_parse_from(["eucora"]).unwrap().action() else {
            panic!("serving is the default")
        };
        assert_eq!(serve.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(serve.database.database_url, "sqlite://eucora.db");
        assert_eq!(serve.metrics_listen.to_string(), "127.0.0.1:9464");
        let cli = Cli::try_parse_from(["eucora", "migrate", "--database-url", "postgres://x/y"]).unwrap();
        let Command::Migrate(migrate) = cli.action() else { panic!("migrate") };
        assert_eq!(migrate.database.database_url, "postgres://x/y");
    }

    #[test]
    fn each_subcommand_takes_only_its_flags() {
        assert!(Cli::try_parse_from(["eucora", "migrate", "--listen", "127.0.0.1:1"]).is_err());
        assert!(Cli::try_parse_from(["eucora", "health", "--database-url", "sqlite://x"]).is_err());
        assert!(Cli::try_parse_from(["eucora", "serve", "--listen", "127.0.0.1:1"]).is_ok());
        assert!(Cli::try_parse_from(["eucora", "--listen", "127.0.0.1:1"]).is_ok());
    }
}
