//! Work handed to connectors follows the durable decision, as in an outbox:
//! the adapter is called only once the state change that records it has
//! committed, work whose delivery fails stays queued and is delivered by the
//! dispatcher (also after a restart), and a refusal is recorded.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use common::{
    Backend, Options, TestDatabase, TestServer, create_request, promote_request, report_healthy, start_server_on,
    start_server_with,
};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::deployment_service_client::DeploymentServiceClient;

/// An adapter that reads each deployment back through the server when it
/// is called: what it sees is what was durable when it heard of the work.
#[derive(Default)]
struct Witness {
    server: Mutex<Option<Authenticated>>,
    /// (operation, status, current ring) as read during each call.
    seen: Mutex<Vec<(&'static str, pb::DeploymentStatus, pb::Ring)>>,
    /// Calls to answer 503 before answering 200.
    failures_left: AtomicUsize,
}

impl Witness {
    async fn observe(&self, operation: &'static str, id: &str) -> StatusCode {
        let channel = self.server.lock().unwrap().clone().expect("server set");
        let read = DeploymentServiceClient::new(channel)
            .get_deployment(pb::GetDeploymentRequest { deployment_id: id.to_owned() })
            .await
            .expect("the adapter reads the deployment");
        let d = read.into_inner().deployment.unwrap();
        self.seen.lock().unwrap().push((operation, d.status(), d.current_ring()));
        let failing = self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK }
    }
}

async fn deploy(State(w): State<Arc<Witness>>, Json(body): Json<serde_json::Value>) -> (StatusCode, String) {
    let status = w.observe("deploy", body["deployment_id"].as_str().unwrap()).await;
    (status, r#"{"object_id": "obj-1", "device_count": 500}"#.to_owned())
}

async fn remove(State(w): State<Arc<Witness>>, Path(id): Path<String>) -> StatusCode {
    w.observe("remove", &id).await
}

async fn start_witness(failures: usize) -> (String, Arc<Witness>) {
    let witness = Arc::new(Witness { failures_left: AtomicUsize::new(failures), ..Default::default() });
    let app = Router::new()
        .route("/v1/deployments", post(deploy))
        .route("/v1/deployments/{id}", delete(remove))
        .route("/v1/health", get(|| async { "ok" }))
        .with_state(witness.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), witness)
}

async fn add_witness(server: &TestServer, endpoint: &str, witness: &Witness) {
    *witness.server.lock().unwrap() = Some(server.channel.clone());
    let connector = pb::Connector {
        name: "witness".into(),
        connector_type: pb::ConnectorType::Jamf.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: endpoint.into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
        ..Default::default()
    };
    let request = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    ConnectorServiceClient::new(server.channel.clone()).create_connector(request).await.unwrap();
}

fn through_witness(request_id: &str) -> pb::CreateDeploymentRequest {
    pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Jamf.into(),
        connector_name: "witness".into(),
        target_ring: pb::Ring::Global.into(),
        ..create_request(request_id, "slack", 10)
    }
}

async fn read(client: &mut DeploymentServiceClient<Authenticated>, id: &str) -> pb::Deployment {
    client
        .get_deployment(pb::GetDeploymentRequest { deployment_id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap()
}

on_every_backend!(the_connector_hears_of_work_only_after_its_decision_committed);

async fn the_connector_hears_of_work_only_after_its_decision_committed(backend: Backend) {
    let server = start_server_with(backend, Options::default()).await;
    let (endpoint, witness) = start_witness(0).await;
    add_witness(&server, &endpoint, &witness).await;
    let mut client = server.deployments();
    let created =
        client.create_deployment(through_witness("witness-1")).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
    let started = client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(started.ring_progress[0].connector_object_id, "obj-1");
    assert_eq!(started.ring_progress[0].expected_device_count, 500, "the adapter said how many devices LAB has");
    report_healthy(&mut client, &started).await;
    let promoted = server.promotions().promote_deployment(promote_request(&started)).await.unwrap();
    let promoted = promoted.into_inner().deployment.unwrap();
    assert_eq!(promoted.ring_progress[1].delivery_state(), pb::DeliveryState::Delivered);
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: created.id.clone(),
        reason: "bad build".into(),
        ..Default::default()
    };
    server.promotions().rollback_deployment(rollback).await.unwrap();

    use pb::DeploymentStatus::{Deploying, RolledBack};
    assert_eq!(
        *witness.seen.lock().unwrap(),
        [
            ("deploy", Deploying, pb::Ring::Lab),
            ("deploy", Deploying, pb::Ring::Canary),
            ("remove", RolledBack, pb::Ring::Canary)
        ],
        "each call came after the decision that records it"
    );
    server.stop().await;
}

/// Work whose delivery fails stays queued: the dispatcher delivers it on its
/// own, and what a stopped server left queued is delivered after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_is_delivered_by_the_dispatcher_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("eucora.db");
    // Three attempts in the call fail; the dispatcher's next attempt succeeds.
    let (endpoint, witness) = start_witness(3).await;
    let slow_retries = Options { delivery_retry_interval: Duration::from_secs(3600), ..Options::default() };
    let server = start_server_on(TestDatabase::sqlite_at(&path), slow_retries).await;
    add_witness(&server, &endpoint, &witness).await;
    let mut client = server.deployments();
    let created = client.create_deployment(through_witness("queued-1")).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
    let queued = client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(queued.status(), pb::DeploymentStatus::Deploying);
    assert_eq!(queued.ring_progress[0].delivery_state(), pb::DeliveryState::Pending);
    let events = common::events_of(&mut client, &created.id).await;
    assert_eq!(events.last().unwrap().kind(), pb::DeploymentEventKind::DeliveryFailed);

    // Stopped with the work queued; the restarted server's dispatcher delivers it.
    let database = server.shut_down().await;
    let fast_retries = Options { delivery_retry_interval: Duration::from_millis(100), ..Options::default() };
    let server = start_server_on(database, fast_retries).await;
    *witness.server.lock().unwrap() = Some(server.channel.clone());
    let mut client = server.deployments();
    let delivered = common::eventually("the dispatcher to deliver the queued work", Duration::from_secs(10), || {
        let mut client = client.clone();
        let id = created.id.clone();
        async move {
            let d = read(&mut client, &id).await;
            (d.ring_progress[0].delivery_state() == pb::DeliveryState::Delivered).then_some(d)
        }
    })
    .await;
    assert_eq!(delivered.ring_progress[0].connector_object_id, "obj-1");
    assert_eq!(witness.seen.lock().unwrap().len(), 4, "three failed attempts, one delivery");
    let events = common::events_of(&mut client, &created.id).await;
    let last = events.last().unwrap();
    assert_eq!((last.kind(), last.actor.as_str()), (pb::DeploymentEventKind::Delivered, "dispatcher"));
    server.stop().await;
}

/// The dispatcher never changes a deployment under a call that is delivering
/// its work: the etag a call answers with is still current afterwards (a
/// redundant pass over work just delivered used to bump the revision).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_leaves_work_in_flight_to_its_call() {
    let busy_dispatcher = Options { delivery_retry_interval: Duration::from_millis(1), ..Options::default() };
    let server = start_server_with(Backend::Sqlite, busy_dispatcher).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    for n in 0..40 {
        let started = common::started(&mut deployments, &format!("in-flight-{n}")).await;
        assert_eq!(started.ring_progress[0].delivery_state(), pb::DeliveryState::Delivered);
        let rollback = pb::RollbackDeploymentRequest {
            deployment_id: started.id.clone(),
            reason: "the etag from StartDeployment is current".into(),
            etag: started.etag.clone(),
            ..Default::default()
        };
        let rolled_back = promotions.rollback_deployment(rollback).await.unwrap_or_else(|s| panic!("{n}: {s:?}"));
        let rolled_back = rolled_back.into_inner().deployment.unwrap();
        let read =
            deployments.get_deployment(pb::GetDeploymentRequest { deployment_id: started.id.clone() }).await.unwrap();
        assert_eq!(read.into_inner().deployment.unwrap().etag, rolled_back.etag, "{n}: changed after the call");
    }
    server.stop().await;
}
