//! Tracing and logs: a `tracing` subscriber that writes human or JSON log
//! lines (RPC spans carry their `trace_id`), bridged to an OpenTelemetry
//! tracer provider by tracing-opentelemetry. Spans are exported by OTLP/gRPC
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; W3C trace context is always
//! read from incoming calls and written to outgoing ones.

use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::pipeline::ServiceIdentity;

/// The environment variable that turns OTLP export on.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// `tracing` filter directives, e.g. `info,eucora_services=debug`.
    pub filter: String,
    pub format: LogFormat,
    /// OTLP/gRPC endpoint; `None` exports nothing.
    pub otlp_endpoint: Option<String>,
    pub identity: ServiceIdentity,
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("bad log filter {filter:?}: {source}")]
    Filter { filter: String, source: tracing_subscriber::filter::ParseError },
    #[error("building the OTLP span exporter: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("installing the subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the tracer provider alive; [`TracingGuard::shutdown`] flushes it.
#[derive(Debug)]
pub struct TracingGuard {
    provider: SdkTracerProvider,
}

impl TracingGuard {
    /// Flushes buffered spans to the exporter and stops it.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("tracer provider shutdown: {err}");
        }
    }
}

/// The tracer provider: spans get trace ids and continue callers' traces;
/// with an endpoint they are batched to OTLP/gRPC.
///
/// # Errors
/// The OTLP exporter cannot be built.
pub fn tracer_provider(
    identity: &ServiceIdentity,
    otlp_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TracingError> {
    let mut builder = SdkTracerProvider::builder().with_resource(identity.resource());
    if let Some(endpoint) = otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs the global subscriber and the W3C propagator.
///
/// # Errors
/// A bad filter, an unusable OTLP endpoint, or a subscriber already installed.
pub fn init(config: &TracingConfig) -> Result<TracingGuard, TracingError> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|source| TracingError::Filter { filter: config.filter.clone(), source })?;
    let provider = tracer_provider(&config.identity, config.otlp_endpoint.as_deref())?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel_layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("eucora"));
    let fmt_layer = match config.format {
        LogFormat::Text => {
            tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).boxed()
        }
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(otel_layer).with(fmt_layer).try_init()?;
    Ok(TracingGuard { provider })
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(key), http::HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) a caller sent.
pub fn extract_trace_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes the current span's trace context into outgoing headers (gRPC
/// metadata or HTTP), so a connector's work joins this trace.
pub fn inject_trace_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// The OpenTelemetry trace id of a `tracing` span, when it has a valid one.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}
