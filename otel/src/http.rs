//! The HTTP shim on its own listener: `GET /metrics` (and the Django-era
//! alias `GET /api/v1/metrics/`) in the Prometheus text format, gzip when the
//! scraper accepts it; `/healthz` (the process runs) and `/readyz` (its
//! dependencies answer). Other methods get 405, other paths 404. When a
//! scrape token is configured, the metrics pages answer only requests that
//! carry it (`authorization: Bearer <token>`, as Prometheus scrape configs
//! send it) and 401 others; the probes stay open.
//!
//! Rendering runs on the blocking pool: a scrape of many series is CPU work
//! that must not stall the async workers serving gRPC.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::compression::CompressionLayer;

use crate::pipeline::MetricsPipeline;

/// Whether the service can do its work (e.g. its database answers); shared
/// between whoever probes the dependencies and `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct ShimState {
    pipeline: MetricsPipeline,
    readiness: Readiness,
    /// The bearer token scrapes must carry, when one is required.
    scrape_token: Option<Arc<str>>,
}

/// Whether `presented` equals `expected`, compared in constant time.
pub fn same_token(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len() && presented.iter().zip(expected).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
}

/// The shim's routes; with `scrape_token`, the metrics pages require it.
pub fn router(pipeline: MetricsPipeline, readiness: Readiness, scrape_token: Option<String>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/metrics/", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .layer(CompressionLayer::new().gzip(true))
        .with_state(ShimState { pipeline, readiness, scrape_token: scrape_token.map(Arc::from) })
}

/// Serves `router` on `listener` (a plain `TcpListener`, or one that limits
/// its connections) until `shutdown` resolves.
///
/// # Errors
/// The listener failed.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tracing::info!(addr = ?listener.local_addr().ok(), "serving /metrics");
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(state): State<ShimState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.scrape_token {
        let presented = headers.get(header::AUTHORIZATION).and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
        if !presented.is_some_and(|token| same_token(token, expected.as_bytes())) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a scrape token is required\n")
                .into_response();
        }
    }
    let pipeline = state.pipeline.clone();
    match tokio::task::spawn_blocking(move || pipeline.render()).await {
        Ok(Ok((content_type, body))) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Ok(Err(err)) => {
            tracing::error!(error = %err, "rendering metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("rendering metrics failed: {err}\n")).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "metrics render task");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering metrics failed\n").into_response()
        }
    }
}

async fn ready(State(state): State<ShimState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: a dependency is unavailable\n").into_response()
    }
}
