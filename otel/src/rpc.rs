//! Observability of gRPC server calls as a tower layer: for every call, a
//! `tracing` span that continues the caller's W3C trace (`traceparent`
//! metadata) and the OpenTelemetry RPC metrics (`rpc.server.call.duration`,
//! `rpc.server.calls` with rpc.system, rpc.service, rpc.method,
//! rpc.grpc.status_code).
//!
//! The outcome is recorded when the response body is dropped, after its
//! trailers went out: streaming calls are measured over their whole life,
//! and a call whose body ends without `grpc-status` (cut off) still counts.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::catalog::Catalog;
use crate::tracing_setup::{extract_trace_context, trace_id_of};

/// Label value for services and methods the server does not know, so that
/// arbitrary request paths cannot create series.
pub const OTHER: &str = "_OTHER";

/// gRPC status codes used when a call ends without `grpc-status`.
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;

/// Tower layer adding RPC metrics and spans.
#[derive(Clone)]
pub struct RpcObservabilityLayer {
    catalog: Catalog,
    known_methods: Arc<HashSet<String>>,
}

impl RpcObservabilityLayer {
    /// `known_methods` holds the full paths the server serves
    /// (`package.Service/Method`); any other path is labelled [`OTHER`].
    pub fn new(catalog: Catalog, known_methods: impl IntoIterator<Item = String>) -> RpcObservabilityLayer {
        RpcObservabilityLayer { catalog, known_methods: Arc::new(known_methods.into_iter().collect()) }
    }
}

impl<S> Layer<S> for RpcObservabilityLayer {
    type Service = RpcObservability<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcObservability { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct RpcObservability<S> {
    inner: S,
    layer: RpcObservabilityLayer,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`), bounded by the known set.
fn service_and_method(path: &str, known: &HashSet<String>) -> (String, String) {
    let full = path.trim_start_matches('/');
    match full.split_once('/') {
        Some((service, method)) if known.contains(full) => (service.to_owned(), method.to_owned()),
        _ => (OTHER.to_owned(), OTHER.to_owned()),
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcObservability<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = http::Response<RpcBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let (service, method) = service_and_method(request.uri().path(), &self.layer.known_methods);
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let parent = extract_trace_context(request.headers());
        // Fails only when no OpenTelemetry layer is installed: then there is no trace to continue.
        let _ = span.set_parent(parent);
        if let Some(trace_id) = trace_id_of(&span) {
            span.record("trace_id", tracing::field::display(trace_id));
        }
        let mut recorder = Recorder {
            catalog: self.layer.catalog.clone(),
            service,
            method,
            started,
            status: None,
            span: span.clone(),
        };
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    recorder.status = grpc_status(response.headers());
                    Ok(response.map(|inner| RpcBody { inner, recorder }))
                }
                Err(err) => {
                    recorder.status = Some(GRPC_UNKNOWN);
                    drop(recorder);
                    Err(err)
                }
            }
        })
    }
}

/// Records one call's outcome when dropped.
struct Recorder {
    catalog: Catalog,
    service: String,
    method: String,
    started: Instant,
    status: Option<i32>,
    span: tracing::Span,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let status = self.status.unwrap_or(GRPC_CANCELLED);
        let seconds = self.started.elapsed().as_secs_f64();
        self.span.record("rpc.grpc.status_code", status);
        self.catalog.rpc_call(&self.service, &self.method, status, seconds);
        tracing::debug!(parent: &self.span, status, seconds, "rpc finished");
    }
}

pin_project! {
    /// A response body that reads `grpc-status` from the trailers as they pass.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        recorder: Recorder,
    }
}

impl<B: Body> Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(status) = frame.trailers_ref().and_then(grpc_status) {
                    this.recorder.status = Some(status);
                }
            }
            Some(Err(_)) => this.recorder.status = Some(GRPC_UNKNOWN),
            None => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_paths_are_bounded() {
        let known: HashSet<String> = ["eucora.v1.DeploymentService/GetDeployment".to_owned()].into();
        assert_eq!(
            service_and_method("/eucora.v1.DeploymentService/GetDeployment", &known),
            ("eucora.v1.DeploymentService".to_owned(), "GetDeployment".to_owned())
        );
        assert_eq!(service_and_method("/random/123", &known), (OTHER.to_owned(), OTHER.to_owned()));
        assert_eq!(service_and_method("/", &known), (OTHER.to_owned(), OTHER.to_owned()));
    }
}
