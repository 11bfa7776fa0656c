//! ConnectorService and dispatch end to end: the registry (secrets never
//! echoed), a real local HTTP adapter that answers slowly, with 5xx, 429, 4xx
//! or not at all (retries only for TRANSIENT errors; the breaker opens after
//! 5 consecutive failures, fails fast, half-opens after its reset time and
//! closes on success; metrics follow), and a LAB → GLOBAL rollout with the
//! simulator driver.

mod common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use common::{
    Backend, ManualClock, TestServer, assert_code, create_request, events_of, scrape, start_server, start_server_with,
};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::watch_deployments_response::Payload;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

on_every_backend!(
    the_registry_validates_and_never_echoes_secrets,
    creates_are_idempotent_on_their_request_id,
    tokens_are_sealed_at_rest,
    a_simulator_rollout_runs_from_lab_to_global
);

fn connectors(server: &TestServer) -> ConnectorServiceClient<Authenticated> {
    ConnectorServiceClient::new(server.channel.clone())
}

fn http_connector(name: &str, endpoint: &str) -> pb::Connector {
    pb::Connector {
        name: name.into(),
        connector_type: pb::ConnectorType::Ansible.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: endpoint.into(),
        auth_token: "s3cret-token".into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: 0, nanos: 300_000_000 }),
        breaker: Some(pb::CircuitBreakerConfig {
            fail_max: 5,
            reset_timeout: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
        }),
        ..Default::default()
    }
}

async fn create_connector(
    client: &mut ConnectorServiceClient<Authenticated>,
    connector: pb::Connector,
) -> pb::Connector {
    let request = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    client.create_connector(request).await.unwrap().into_inner().connector.unwrap()
}

async fn the_registry_validates_and_never_echoes_secrets(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = connectors(&server);
    let created = create_connector(&mut client, http_connector("ansible-prod", "http://127.0.0.1:9")).await;
    assert_eq!(created.auth_token, "", "the token is write-only");
    assert!(created.has_auth_token);
    assert_eq!(created.breaker.as_ref().unwrap().fail_max, 5);

    // The prober may have recorded health in between: compare the definition.
    let without_health = |c: pb::Connector| pb::Connector { health: None, ..c };
    let fetched =
        client.get_connector(pb::GetConnectorRequest { connector_name: "ansible-prod".into() }).await.unwrap();
    assert_eq!(without_health(fetched.into_inner().connector.unwrap()), without_health(created.clone()));
    let listed = client.list_connectors(pb::ListConnectorsRequest::default()).await.unwrap().into_inner();
    assert!(listed.connectors.iter().all(|c| c.auth_token.is_empty()));
    assert_eq!(listed.connectors.len(), 6, "five built-in simulators and ours");
    let page = client.list_connectors(pb::ListConnectorsRequest { page_size: 4, ..Default::default() }).await.unwrap();
    let page = page.into_inner();
    let rest = client
        .list_connectors(pb::ListConnectorsRequest {
            page_size: 4,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = page.connectors.iter().chain(&rest.connectors).map(|c| c.name.clone()).collect();
    assert_eq!(names.len(), 6);
    assert!(rest.next_page_token.is_empty());
    let ansible_only = client
        .list_connectors(pb::ListConnectorsRequest {
            connector_type: pb::ConnectorType::Ansible.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ansible_only.connectors.len(), 2);

    let duplicate = pb::CreateConnectorRequest {
        connector: Some(http_connector("ansible-prod", "http://x")),
        ..Default::default()
    };
    assert_code(client.create_connector(duplicate).await, Code::AlreadyExists);
    let bad = pb::Connector { name: "Bad Name".into(), endpoint: String::new(), ..http_connector("x", "") };
    let status = assert_code(
        client.create_connector(pb::CreateConnectorRequest { connector: Some(bad), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    let fields: Vec<_> =
        status.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["connector.name", "connector.endpoint"]);

    // The etag lives on the resource in an update.
    let update = pb::UpdateConnectorRequest {
        connector: Some(pb::Connector {
            name: "ansible-prod".into(),
            enabled: false,
            etag: created.etag.clone(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["enabled".into()] }),
        reason: "maintenance".into(),
    };
    let updated = client.update_connector(update.clone()).await.unwrap().into_inner().connector.unwrap();
    assert!(!updated.enabled);
    assert!(updated.has_auth_token, "an update that sends no token keeps it");
    assert_eq!(updated.endpoint, "http://127.0.0.1:9");
    assert_code(client.update_connector(update).await, Code::Aborted);

    // A token belongs to its endpoint: moving the endpoint alone drops it.
    let moved = pb::UpdateConnectorRequest {
        connector: Some(pb::Connector {
            name: "ansible-prod".into(),
            endpoint: "http://elsewhere:8080".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["endpoint".into()] }),
        ..Default::default()
    };
    let moved = client.update_connector(moved).await.unwrap().into_inner().connector.unwrap();
    assert!(!moved.has_auth_token, "the token is not sent to a host its owner did not pick");

    let missing = client.get_connector(pb::GetConnectorRequest { connector_name: "nope".into() }).await;
    assert_code(missing, Code::NotFound);
    let stale_delete = pb::DeleteConnectorRequest {
        connector_name: "ansible-prod".into(),
        etag: updated.etag.clone(),
        ..Default::default()
    };
    assert_code(client.delete_connector(stale_delete).await, Code::Aborted);
    let delete = pb::DeleteConnectorRequest {
        connector_name: "ansible-prod".into(),
        etag: moved.etag.clone(),
        reason: "retired".into(),
    };
    client.delete_connector(delete).await.unwrap();
    assert_code(
        client.get_connector(pb::GetConnectorRequest { connector_name: "ansible-prod".into() }).await,
        Code::NotFound,
    );

    // Every change is in the log, with who, why, before and after, and never a token.
    let request = pb::ListConnectorChangesRequest { connector_name: "ansible-prod".into(), ..Default::default() };
    let changes = client.list_connector_changes(request).await.unwrap().into_inner().changes;
    let kinds: Vec<_> = changes.iter().map(|c| c.kind()).collect();
    use pb::ConnectorChangeKind as Kind;
    assert_eq!(kinds, [Kind::Created, Kind::Updated, Kind::Updated, Kind::Deleted]);
    assert!(changes.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!((changes[1].actor.as_str(), changes[1].reason.as_str()), ("carol", "maintenance"));
    assert_eq!((changes[3].actor.as_str(), changes[3].reason.as_str()), ("carol", "retired"));
    assert!(changes[0].before.is_none() && changes[3].after.is_none());
    assert!(changes[1].before.as_ref().unwrap().enabled && !changes[1].after.as_ref().unwrap().enabled);
    assert!(changes[0].after.as_ref().unwrap().has_auth_token && !changes[2].after.as_ref().unwrap().has_auth_token);
    assert!(changes.iter().flat_map(|c| [&c.before, &c.after]).flatten().all(|c| c.auth_token.is_empty()));
    let stored = server.store.list_connector_changes(Some("ansible-prod"), None, 10).await.unwrap();
    assert_eq!(stored.items.len(), 4);
    assert!(
        stored
            .items
            .iter()
            .flat_map(|c| [&c.before, &c.after])
            .flatten()
            .all(|d| d.auth_token.as_deref() != Some("s3cret-token")),
        "the log never holds the token"
    );
    server.stop().await;
}

async fn creates_are_idempotent_on_their_request_id(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = connectors(&server);
    let create = pb::CreateConnectorRequest {
        connector: Some(http_connector("jamf-eu", "http://127.0.0.1:9")),
        request_id: "create-jamf-eu".into(),
        ..Default::default()
    };
    let first = client.create_connector(create.clone()).await.unwrap().into_inner().connector.unwrap();
    let again = client.create_connector(create.clone()).await.unwrap().into_inner().connector.unwrap();
    assert_eq!(again.etag, first.etag, "a retry returns what the first call created");
    let other =
        pb::CreateConnectorRequest { connector: Some(http_connector("jamf-eu", "http://other:1")), ..create.clone() };
    assert_code(client.create_connector(other).await, Code::AlreadyExists);
    let elsewhere =
        pb::CreateConnectorRequest { connector: Some(http_connector("jamf-us", "http://127.0.0.1:9")), ..create };
    assert_code(client.create_connector(elsewhere).await, Code::AlreadyExists);
    let request = pb::ListConnectorChangesRequest { connector_name: "jamf-eu".into(), ..Default::default() };
    assert_eq!(client.list_connector_changes(request).await.unwrap().into_inner().changes.len(), 1, "created once");

    // A start with a request id: its retry answers with the deployment, not FAILED_PRECONDITION.
    let mut deployments = server.deployments();
    let created = deployments.create_deployment(create_request("start-once", "7zip", 10)).await.unwrap().into_inner();
    let start = pb::StartDeploymentRequest {
        deployment_id: created.deployment.unwrap().id,
        request_id: "start-7zip".into(),
        ..Default::default()
    };
    let started = deployments.start_deployment(start.clone()).await.unwrap().into_inner().deployment.unwrap();
    let retried = deployments.start_deployment(start.clone()).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(retried.id, started.id);
    assert_eq!(retried.status(), pb::DeploymentStatus::Deploying);
    let without_id = pb::StartDeploymentRequest { request_id: String::new(), ..start };
    assert_code(deployments.start_deployment(without_id).await, Code::FailedPrecondition);
    server.stop().await;
}

/// What the fake adapter answers and what it saw.
#[derive(Default)]
struct Adapter {
    /// HTTP status to answer deploys with; 0 means "hang past the timeout".
    status: AtomicU16,
    deploys: Mutex<Vec<HeaderMap>>,
    removals: Mutex<Vec<HeaderMap>>,
}

async fn deploy(State(adapter): State<Arc<Adapter>>, headers: HeaderMap) -> (StatusCode, String) {
    adapter.deploys.lock().unwrap().push(headers);
    match adapter.status.load(Ordering::SeqCst) {
        0 => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, String::new())
        }
        code => {
            let status = StatusCode::from_u16(code).unwrap();
            let body = if status.is_success() { r#"{"object_id": "pkg-42"}"# } else { "adapter says no" };
            (status, body.to_owned())
        }
    }
}

async fn remove(State(adapter): State<Arc<Adapter>>, headers: HeaderMap) -> StatusCode {
    adapter.removals.lock().unwrap().push(headers);
    StatusCode::NO_CONTENT
}

async fn start_adapter() -> (String, Arc<Adapter>) {
    let adapter = Arc::new(Adapter { status: AtomicU16::new(200), ..Default::default() });
    let app = Router::new()
        .route("/v1/deployments", post(deploy))
        .route("/v1/deployments/{id}", delete(remove))
        .route("/v1/health", get(|| async { "ok" }))
        .with_state(adapter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), adapter)
}

/// Spans with trace context, as `eucora serve` has, so that calls carry `traceparent`.
fn install_tracing() {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
}

async fn approved(server: &TestServer, request_id: &str) -> pb::Deployment {
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Ansible.into(),
        connector_name: "adapter".into(),
        ..create_request(request_id, "ansible-role", 10)
    };
    server.deployments().create_deployment(request).await.unwrap().into_inner().deployment.unwrap()
}

async fn start(server: &TestServer, id: &str) -> Result<pb::Deployment, tonic::Status> {
    let request = pb::StartDeploymentRequest { deployment_id: id.to_owned(), ..Default::default() };
    server.deployments().start_deployment(request).await.map(|r| r.into_inner().deployment.unwrap())
}

async fn breaker(server: &TestServer) -> pb::CircuitBreaker {
    let request = pb::GetCircuitBreakerRequest { connector_name: "adapter".into() };
    connectors(server).get_circuit_breaker(request).await.unwrap().into_inner().breaker.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_adapter_is_retried_only_when_it_helps_and_broken_off_when_it_fails() {
    install_tracing();
    let time = ManualClock::default();
    let server =
        start_server_with(Backend::Sqlite, common::Options { clock: time.clock(), ..Default::default() }).await;
    let (endpoint, adapter) = start_adapter().await;
    create_connector(&mut connectors(&server), http_connector("adapter", &endpoint)).await;
    let deploys = || adapter.deploys.lock().unwrap().len();

    // 400 is PERMANENT: one request, no retry, and the deployment fails with the reason.
    adapter.status.store(400, Ordering::SeqCst);
    let refused = approved(&server, "permanent").await;
    let status = assert_code(start(&server, &refused.id).await, Code::FailedPrecondition);
    assert!(
        status.message().contains("refused") && status.message().contains("adapter says no"),
        "{}",
        status.message()
    );
    assert_eq!(deploys(), 1);
    let failed = server
        .deployments()
        .get_deployment(pb::GetDeploymentRequest { deployment_id: refused.id.clone() })
        .await
        .unwrap();
    let failed = failed.into_inner().deployment.unwrap();
    assert_eq!(failed.status(), pb::DeploymentStatus::Failed);
    assert!(failed.status_reason.contains("400"), "{}", failed.status_reason);
    assert_eq!(breaker(&server).await.state(), pb::CircuitBreakerState::Closed);

    // 503 is TRANSIENT: three attempts. The start is decided (DEPLOYING) and
    // its work stays queued, with the failure shown, for the dispatcher.
    adapter.status.store(503, Ordering::SeqCst);
    let deployment = approved(&server, "transient").await;
    let queued = start(&server, &deployment.id).await.expect("the start is decided");
    assert_eq!(queued.status(), pb::DeploymentStatus::Deploying);
    let lab = &queued.ring_progress[0];
    assert_eq!(lab.delivery_state(), pb::DeliveryState::Pending);
    assert!(lab.delivery_error.contains("\"adapter\"") && lab.delivery_error.contains("503"), "{}", lab.delivery_error);
    assert_eq!(deploys(), 4);
    assert_eq!(breaker(&server).await.consecutive_failures, 3);

    // 429 and a hanging adapter are TRANSIENT too. A retried start delivers
    // the queued work now: the fifth consecutive failure opens the breaker.
    adapter.status.store(429, Ordering::SeqCst);
    let still = start(&server, &deployment.id).await.expect("a retried start");
    assert_eq!(still.ring_progress[0].delivery_state(), pb::DeliveryState::Pending);
    assert_eq!(deploys(), 6, "two more attempts, then the breaker is open");
    let open = breaker(&server).await;
    assert_eq!(open.state(), pb::CircuitBreakerState::Open);
    assert!(open.next_attempt_time.is_some());
    start(&server, &deployment.id).await.expect("a retried start");
    assert_eq!(deploys(), 6, "an open breaker fails fast");

    let m = scrape(&server).await;
    let labels = [("service", "adapter"), ("connector_type", "ansible")];
    assert_eq!(m.value("circuit_breaker_state", &labels), 1.0);
    assert_eq!(m.value("circuit_breaker_failures_total", &[labels[0], labels[1], ("error_type", "transient")]), 5.0);
    assert_eq!(m.value("circuit_breaker_failures_total", &[labels[0], labels[1], ("error_type", "permanent")]), 1.0);
    let failures = [("connector_type", "ansible"), ("operation", "deploy"), ("status", "failure")];
    assert_eq!(m.value("connector_operation_duration_seconds_count", &failures), 6.0);

    // After the reset time one trial goes through; success closes the breaker.
    adapter.status.store(200, Ordering::SeqCst);
    time.advance(Duration::from_secs(61));
    assert_eq!(breaker(&server).await.state(), pb::CircuitBreakerState::HalfOpen);
    assert_eq!(scrape(&server).await.value("circuit_breaker_state", &labels), 2.0);
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request =
        tonic::Request::new(pb::StartDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() });
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01").parse().unwrap());
    let started = server.deployments().start_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(started.status(), pb::DeploymentStatus::Deploying);
    assert_eq!(started.ring_progress[0].connector_object_id, "pkg-42");
    assert_eq!(started.ring_progress[0].delivery_state(), pb::DeliveryState::Delivered);
    assert_eq!(started.ring_progress[0].delivery_error, "");
    assert_eq!(breaker(&server).await.state(), pb::CircuitBreakerState::Closed);
    assert_eq!(scrape(&server).await.value("circuit_breaker_state", &labels), 0.0);

    // What the adapter saw: the same idempotency key on every attempt, the token, a trace.
    let seen = adapter.deploys.lock().unwrap().clone();
    let key = format!("{}:lab:deploy", deployment.id);
    assert!(seen[1..].iter().all(|h| h["idempotency-key"] == key.as_str()), "{:?}", seen[1]);
    assert!(seen.iter().all(|h| h["authorization"] == "Bearer s3cret-token"));
    let traced = seen.last().unwrap()["traceparent"].to_str().unwrap().to_owned();
    assert!(traced.starts_with(&format!("00-{trace_id}-")), "the caller's trace continues to the adapter: {traced}");

    // A retried start dispatches nothing more.
    assert_eq!(deploys(), 7);
    assert_code(start(&server, &deployment.id).await, Code::FailedPrecondition);
    assert_eq!(deploys(), 7);

    // Rolling back hands the removal to the adapter, once.
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "test".into(),
        ..Default::default()
    };
    server.promotions().rollback_deployment(rollback).await.unwrap();
    assert_eq!(adapter.removals.lock().unwrap().len(), 1);

    // A hanging adapter times out (TRANSIENT).
    adapter.status.store(0, Ordering::SeqCst);
    let slow = approved(&server, "slow").await;
    let queued = start(&server, &slow.id).await.expect("the start is decided");
    let lab = &queued.ring_progress[0];
    assert_eq!(lab.delivery_state(), pb::DeliveryState::Pending);
    assert!(lab.delivery_error.contains("timed out"), "{}", lab.delivery_error);

    // An operator resets the breaker, conditional on the state read; the reset is audited.
    let failing = breaker(&server).await;
    assert!(failing.consecutive_failures > 0);
    let stale = pb::ResetCircuitBreakerRequest {
        connector_name: "adapter".into(),
        etag: "closed.0.0".into(),
        ..Default::default()
    };
    assert_code(connectors(&server).reset_circuit_breaker(stale).await, Code::Aborted);
    let reset = pb::ResetCircuitBreakerRequest {
        connector_name: "adapter".into(),
        etag: failing.etag.clone(),
        reason: "adapter fixed".into(),
    };
    let closed = connectors(&server).reset_circuit_breaker(reset).await.unwrap().into_inner().breaker.unwrap();
    assert_eq!((closed.state(), closed.consecutive_failures), (pb::CircuitBreakerState::Closed, 0));
    assert_ne!(closed.etag, failing.etag);
    let request = pb::ListConnectorChangesRequest { connector_name: "adapter".into(), ..Default::default() };
    let changes = connectors(&server).list_connector_changes(request).await.unwrap().into_inner().changes;
    let last = changes.last().unwrap();
    assert_eq!(last.kind(), pb::ConnectorChangeKind::BreakerReset);
    assert_eq!((last.actor.as_str(), last.reason.as_str()), ("carol", "adapter fixed"));
    server.stop().await;
}

async fn tokens_are_sealed_at_rest(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let server = start_server(backend).await;
    let mut client = connectors(&server);
    create_connector(&mut client, http_connector("sealed", "https://adapter.example.com/")).await;
    // What the database holds: never the token.
    let db = sea_orm::Database::connect(&server.database.url).await.unwrap();
    let query =
        Statement::from_string(db.get_database_backend(), "SELECT auth_token FROM connectors WHERE name = 'sealed'");
    let row = db.query_one_raw(query).await.unwrap().expect("the row");
    let stored: String = row.try_get("", "auth_token").unwrap();
    assert!(stored.starts_with("sealed:v1:") && !stored.contains("s3cret-token"), "{stored}");
    // The server reads it back for its calls, and never shows it.
    let fetched = client.get_connector(pb::GetConnectorRequest { connector_name: "sealed".into() }).await.unwrap();
    let fetched = fetched.into_inner().connector.unwrap();
    assert!(fetched.has_auth_token && fetched.auth_token.is_empty());
    server.stop().await;

    // Without a secret key, a token is not stored at all; a connector without one is.
    let keyless = common::Options { secret_key: None, ..Default::default() };
    let server = start_server_with(backend, keyless).await;
    let mut client = connectors(&server);
    let request = pb::CreateConnectorRequest {
        connector: Some(http_connector("clear", "https://a.example.com/")),
        ..Default::default()
    };
    let refused = assert_code(client.create_connector(request).await, Code::FailedPrecondition);
    assert!(refused.message().contains("secret key"), "{}", refused.message());
    let tokenless = pb::Connector { auth_token: String::new(), ..http_connector("no-token", "https://a.example.com/") };
    create_connector(&mut client, tokenless).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_calls_go_nowhere_they_should_not() {
    let strict = common::Options { allow_loopback_connectors: false, ..Default::default() };
    let server = start_server_with(Backend::Sqlite, strict).await;
    let mut client = connectors(&server);
    for (endpoint, why) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://metadata.google.internal/", "metadata"),
        ("http://127.0.0.1:8080/", "--allow-loopback-connectors"),
        ("http://user:pw@adapter.example.com/", "credentials"),
        ("http://", "URL"),
        ("http://a b/", "URL"),
    ] {
        let request =
            pb::CreateConnectorRequest { connector: Some(http_connector("sneaky", endpoint)), ..Default::default() };
        let status = assert_code(client.create_connector(request).await, Code::InvalidArgument);
        let violations = status.get_error_details().bad_request().unwrap().field_violations.clone();
        assert!(
            violations.iter().any(|v| v.field == "connector.endpoint" && v.description.contains(why)),
            "{endpoint}: {violations:?}"
        );
    }
    // Moving an allowed connector onto a metadata address is refused the same way.
    create_connector(&mut client, http_connector("fine", "https://adapter.example.com/")).await;
    let moved = pb::UpdateConnectorRequest {
        connector: Some(pb::Connector {
            name: "fine".into(),
            endpoint: "http://169.254.169.254/".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["endpoint".into()] }),
        ..Default::default()
    };
    assert_code(client.update_connector(moved).await, Code::InvalidArgument);
    server.stop().await;

    // Redirects are not followed: the adapter's answer is the answer.
    let server = start_server(Backend::Sqlite).await;
    let followed = Arc::new(AtomicU16::new(0));
    let counter = followed.clone();
    let app = Router::new()
        .route("/v1/health", get(|| async { (StatusCode::TEMPORARY_REDIRECT, [("location", "/v1/elsewhere")]) }))
        .route(
            "/v1/elsewhere",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "ok" }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut client = connectors(&server);
    create_connector(&mut client, http_connector("redirecting", &endpoint)).await;
    let probe = pb::CheckConnectorHealthRequest { connector_name: "redirecting".into() };
    let health = client.check_connector_health(probe).await.unwrap().into_inner().health.unwrap();
    assert_eq!(health.status(), pb::ConnectorHealthStatus::Unhealthy);
    assert!(health.last_error.contains("307"), "{}", health.last_error);
    assert_eq!(followed.load(Ordering::SeqCst), 0, "the redirect was not followed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_follow_the_adapter() {
    let server = start_server(Backend::Sqlite).await;
    let (endpoint, _adapter) = start_adapter().await;
    let mut client = connectors(&server);
    create_connector(&mut client, http_connector("adapter", &endpoint)).await;
    let dead = pb::Connector {
        connector_type: pb::ConnectorType::Jamf.into(),
        ..http_connector("dead", "http://127.0.0.1:9")
    };
    create_connector(&mut client, dead).await;

    let healthy = client
        .check_connector_health(pb::CheckConnectorHealthRequest { connector_name: "adapter".into() })
        .await
        .unwrap();
    assert_eq!(healthy.into_inner().health.unwrap().status(), pb::ConnectorHealthStatus::Healthy);
    let down =
        client.check_connector_health(pb::CheckConnectorHealthRequest { connector_name: "dead".into() }).await.unwrap();
    let down = down.into_inner().health.unwrap();
    assert_eq!(down.status(), pb::ConnectorHealthStatus::Unhealthy);
    assert!(down.last_error.contains("connection failed"), "{}", down.last_error);
    let stored = client.get_connector(pb::GetConnectorRequest { connector_name: "dead".into() }).await.unwrap();
    assert_eq!(stored.into_inner().connector.unwrap().health.unwrap().status(), pb::ConnectorHealthStatus::Unhealthy);

    let m = scrape(&server).await;
    assert_eq!(m.value("connector_health", &[("connector_type", "ansible")]), 1.0);
    assert_eq!(m.value("connector_health", &[("connector_type", "jamf")]), 0.0);

    // The gauge is per type: a broken connector is not hidden by a healthy
    // one of the same type probed after it, and deleting it clears the type.
    create_connector(&mut client, http_connector("dead-ansible", "http://127.0.0.1:9")).await;
    for name in ["dead-ansible", "adapter"] {
        client.check_connector_health(pb::CheckConnectorHealthRequest { connector_name: name.into() }).await.unwrap();
    }
    assert_eq!(scrape(&server).await.value("connector_health", &[("connector_type", "ansible")]), 0.0);
    client
        .delete_connector(pb::DeleteConnectorRequest { connector_name: "dead-ansible".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(scrape(&server).await.value("connector_health", &[("connector_type", "ansible")]), 1.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_dispatch_once() {
    let server = start_server(Backend::Sqlite).await;
    let (endpoint, adapter) = start_adapter().await;
    create_connector(&mut connectors(&server), http_connector("adapter", &endpoint)).await;
    let deployment = approved(&server, "concurrent").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut client = server.deployments();
            let request = pb::StartDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() };
            tokio::spawn(async move { client.start_deployment(request).await })
        })
        .collect();
    // One start wins the decision; a racer that sees it queued joins its
    // delivery (OK), a later one finds it started (FAILED_PRECONDITION).
    for task in tasks {
        if let Err(status) = task.await.unwrap() {
            assert_eq!(status.code(), Code::FailedPrecondition, "{}", status.message());
        }
    }
    assert_eq!(adapter.deploys.lock().unwrap().len(), 1, "the adapter got the work once");
    let events = events_of(&mut server.deployments(), &deployment.id).await;
    let started = events.iter().filter(|e| {
        e.to_status() == pb::DeploymentStatus::Deploying && e.kind() == pb::DeploymentEventKind::StatusChanged
    });
    assert_eq!(started.count(), 1, "one start");
    server.stop().await;
}

async fn a_simulator_rollout_runs_from_lab_to_global(backend: Backend) {
    let server = start_server(backend).await;
    let simulator = pb::Connector {
        name: "sim-fast".into(),
        connector_type: pb::ConnectorType::Landscape.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig {
            latency: Some(prost_types::Duration { seconds: 0, nanos: 5_000_000 }),
            failure_rate: 0.005,
            device_count: 400,
        }),
        ..Default::default()
    };
    create_connector(&mut connectors(&server), simulator).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Landscape.into(),
        connector_name: "sim-fast".into(),
        target_ring: pb::Ring::Global.into(),
        ..create_request("sim-rollout", "libreoffice", 10)
    };
    let created = deployments.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let mut watch = deployments
        .watch_deployments(pb::WatchDeploymentsRequest { deployment_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut deployment = deployments
        .start_deployment(pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .deployment
        .unwrap();
    while deployment.status() == pb::DeploymentStatus::Deploying {
        // The simulator reports the ring's devices on its own; wait for that event.
        let ring = deployment.current_ring;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(20), watch.next())
                .await
                .expect("an outcome within 20 s")
                .unwrap()
                .unwrap();
            if let Some(Payload::Event(event)) = next.payload
                && event.kind() == pb::DeploymentEventKind::OutcomeReported
                && event.ring == ring
            {
                assert_eq!(event.actor, "connector:sim-fast");
                break;
            }
        }
        let promote = pb::PromoteDeploymentRequest {
            deployment_id: deployment.id.clone(),
            from_ring: ring,
            ..Default::default()
        };
        deployment = promotions.promote_deployment(promote).await.unwrap().into_inner().deployment.unwrap();
    }
    assert_eq!(deployment.status(), pb::DeploymentStatus::Completed);
    assert!(deployment.ring_progress.iter().all(|p| p.success_count == 398 && p.failure_count == 2));
    assert!(deployment.ring_progress.iter().all(|p| p.connector_object_id.starts_with("sim-")));
    let events = events_of(&mut deployments, &deployment.id).await;
    let dispatched = events.iter().filter(|e| e.kind() == pb::DeploymentEventKind::Dispatched).count();
    assert_eq!(dispatched, 5);
    assert!(
        events
            .iter()
            .filter(|e| e.kind() == pb::DeploymentEventKind::Dispatched)
            .all(|e| e.reason.contains("via sim-fast"))
    );
    server.stop().await;
}
