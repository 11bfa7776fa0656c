//! The `eucora` binary: parses configuration, sets up logging, connects the
//! store, and serves until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use eucora_services::config::{Cli, Command, Config, LogFormat};
use eucora_services::server::{self, ServeOptions};
use eucora_services::store::{Store, StoreConfig};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli.config)?;
    let store = connect(&cli.config).await?;
    store.migrate().await.context("migrating the database")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            tracing::info!(database = %redact(&cli.config.database_url), "migrations applied");
            Ok(())
        }
        Command::Serve => {
            let listener =
                server::bind(cli.config.listen).await.with_context(|| format!("binding {}", cli.config.listen))?;
            let options =
                ServeOptions { health_probe_interval: cli.config.health_probe_interval, ..ServeOptions::default() };
            let store = Arc::new(store);
            server::serve(listener, store.clone(), options, shutdown_signal()).await?;
            if let Ok(store) = Arc::try_unwrap(store) {
                store.close().await;
            }
            tracing::info!("stopped");
            Ok(())
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<Store> {
    let store_config = StoreConfig {
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout,
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

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log).with_context(|| format!("bad --log filter {:?}", config.log))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
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
