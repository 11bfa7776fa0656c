//! Traces: a call carrying a W3C `traceparent` produces a server span that
//! continues the caller's trace, with the RPC attributes.

mod common;

use std::time::Duration;

use common::{Backend, start_server};
use eucora::v1 as pb;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

// One thread: the server runs on the thread where the test subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn a_traceparent_from_the_caller_continues_into_the_server_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    // As in production (`--log info`): libraries' trace-level spans (sea-orm
    // keeps some open with its pooled connections) would hold the RPC span open.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = start_server(Backend::Sqlite).await;
    let mut request = tonic::Request::new(pb::ListDeploymentsRequest::default());
    request.metadata_mut().insert("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01").parse().unwrap());
    server.deployments().list_deployments(request).await.unwrap();

    let name = "eucora.v1.DeploymentService/ListDeployments";
    // The span ends when the response body is released, just after the client got it.
    let span = common::eventually(&format!("span {name}"), Duration::from_secs(2), || async {
        provider.force_flush().unwrap();
        exporter.get_finished_spans().unwrap().into_iter().find(|s| s.name == name)
    })
    .await;
    assert_eq!(span.span_context.trace_id(), TraceId::from_hex(TRACE_ID).unwrap());
    assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT_SPAN_ID).unwrap());
    assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
    let attribute = |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
    assert_eq!(attribute("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attribute("rpc.service").as_deref(), Some("eucora.v1.DeploymentService"));
    assert_eq!(attribute("rpc.method").as_deref(), Some("ListDeployments"));
    assert_eq!(attribute("rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attribute("trace_id").as_deref(), Some(TRACE_ID), "logs carry the trace id");
    server.stop().await;
}

#[tokio::test(flavor = "current_thread")]
async fn outgoing_calls_carry_the_current_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let span = tracing::info_span!("dispatch");
    let _entered = span.enter();
    let mut headers = http::HeaderMap::new();
    eucora_otel::tracing_setup::inject_trace_context(&mut headers);
    let traceparent = headers.get("traceparent").expect("traceparent injected").to_str().unwrap().to_owned();
    let trace_id = eucora_otel::tracing_setup::trace_id_of(&span).unwrap();
    assert!(traceparent.starts_with(&format!("00-{trace_id}-")), "{traceparent}");
}
