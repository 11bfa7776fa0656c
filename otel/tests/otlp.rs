//! With an OTLP endpoint configured, spans reach a real OTLP/gRPC collector
//! (a minimal one started by the test) with the service's resource; without
//! one, nothing is exported.

use std::time::Duration;

use eucora_otel::ServiceIdentity;
use eucora_otel::tracing_setup::tracer_provider;
use opentelemetry::trace::{Tracer, TracerProvider};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn identity() -> ServiceIdentity {
    ServiceIdentity { name: "eucora-otlp-test".into(), version: "0.0.0".into(), instance_id: "instance-1".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_when_an_endpoint_is_set() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut received) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let provider = tracer_provider(&identity(), Some(&format!("http://{addr}"))).expect("OTLP exporter");
    provider.tracer("test").in_span("dispatch LAB", |_| {});
    // Shutting down flushes the batch: what the server does on SIGTERM.
    tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().expect("flush and shut down");

    let export = tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("an export").unwrap();
    let resource_spans = &export.resource_spans[0];
    let attributes: Vec<(String, String)> = resource_spans
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
        .collect();
    assert!(attributes.iter().any(|(k, v)| k == "service.name" && v.contains("eucora-otlp-test")), "{attributes:?}");
    let names: Vec<_> =
        resource_spans.scope_spans.iter().flat_map(|s| s.spans.iter().map(|span| span.name.clone())).collect();
    assert_eq!(names, ["dispatch LAB"]);
}

#[test]
fn no_endpoint_exports_nothing_and_still_gives_trace_ids() {
    let provider = tracer_provider(&identity(), None).expect("provider");
    let tracer = provider.tracer("test");
    tracer.in_span("local", |cx| {
        use opentelemetry::trace::TraceContextExt;
        assert!(cx.span().span_context().is_valid(), "spans get ids for logs and propagation");
    });
    provider.shutdown().expect("nothing to flush");
}
