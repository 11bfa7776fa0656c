//! Regression tests of the defects an adversarial round of bad input found:
//! impossible outcome counts, reports rewriting a ring already left, control
//! characters in text, oversized names echoed back, oversized pages, and
//! small validation gaps. On SQLite and on the machine's PostgreSQL.

mod common;

use common::{Backend, assert_code, create_request, events_of, promote_request, report_healthy, start_server, started};
use eucora::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

on_every_backend!(
    impossible_counts_are_invalid_and_change_nothing,
    a_bad_report_is_corrected_with_an_audit_event,
    reports_for_a_ring_already_left_are_refused,
    reports_past_the_connectors_device_count_are_refused,
    control_characters_are_refused_in_every_text_field,
    echoed_input_stays_small,
    small_validation_gaps_are_closed,
    a_page_fits_what_clients_accept,
);

fn report(id: &str, ring: pb::Ring, success_count: i64, failure_count: i64) -> pb::ReportRingOutcomeRequest {
    pb::ReportRingOutcomeRequest {
        deployment_id: id.to_owned(),
        ring: ring.into(),
        success_count,
        failure_count,
        ..Default::default()
    }
}

async fn impossible_counts_are_invalid_and_change_nothing(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let deployment = started(&mut client, "counts-1").await;

    let huge = client.report_ring_outcome(report(&deployment.id, pb::Ring::Lab, i64::MAX, i64::MAX)).await;
    let status = assert_code(huge, Code::InvalidArgument);
    let fields: Vec<_> =
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["success_count", "failure_count"]);
    // Each count fits, their sum does not.
    let sum = client.report_ring_outcome(report(&deployment.id, pb::Ring::Lab, 6_000_000, 6_000_000)).await;
    assert_code(sum, Code::InvalidArgument);

    let read = client.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    let read = read.into_inner().deployment.unwrap();
    assert_eq!(read.status(), pb::DeploymentStatus::Deploying);
    assert_eq!(read.ring_progress[0].success_count, 0, "nothing recorded");
    assert_eq!(read.etag, deployment.etag, "nothing changed");
    server.stop().await;
}

async fn a_bad_report_is_corrected_with_an_audit_event(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let deployment = started(&mut client, "correct-1").await;
    let reported = client.report_ring_outcome(report(&deployment.id, pb::Ring::Lab, 900, 900)).await.unwrap();
    let reported = reported.into_inner().deployment.unwrap();

    // Counts only grow: a lower report is refused and points at the correction.
    let lower = client.report_ring_outcome(report(&deployment.id, pb::Ring::Lab, 10, 0)).await;
    let status = assert_code(lower, Code::FailedPrecondition);
    assert!(status.message().contains("CorrectRingOutcome"), "{}", status.message());

    let correction = |etag: &str, reason: &str| pb::CorrectRingOutcomeRequest {
        deployment_id: deployment.id.clone(),
        ring: pb::Ring::Lab.into(),
        success_count: 10,
        failure_count: 0,
        reason: reason.into(),
        etag: etag.into(),
    };
    let missing = client.correct_ring_outcome(correction("", "")).await;
    let status = assert_code(missing, Code::InvalidArgument);
    let fields: Vec<_> =
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["etag", "reason"]);
    let stale = client.correct_ring_outcome(correction(&deployment.etag, "double-counted devices")).await;
    assert_code(stale, Code::Aborted);

    let corrected = client.correct_ring_outcome(correction(&reported.etag, "double-counted devices")).await.unwrap();
    let corrected = corrected.into_inner().deployment.unwrap();
    let lab = &corrected.ring_progress[0];
    assert_eq!((lab.success_count, lab.failure_count), (10, 0));
    let events = events_of(&mut client, &deployment.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind(), pb::DeploymentEventKind::OutcomeCorrected);
    assert_eq!(last.actor, "carol", "the authenticated caller corrected it");
    assert_eq!(
        last.reason,
        "LAB: corrected from 900 succeeded, 900 failed to 10 succeeded, 0 failed: double-counted devices"
    );
    server.stop().await;
}

async fn reports_for_a_ring_already_left_are_refused(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let mut promotions = server.promotions();
    let deployment = started(&mut client, "left-1").await;
    report_healthy(&mut client, &deployment).await;
    let promoted = promotions.promote_deployment(promote_request(&deployment)).await.unwrap();
    let promoted = promoted.into_inner().deployment.unwrap();
    assert_eq!(promoted.current_ring(), pb::Ring::Canary);
    let lab_before = promoted.ring_progress[0].clone();

    let late = client.report_ring_outcome(report(&deployment.id, pb::Ring::Lab, 100, 900)).await;
    let status = assert_code(late, Code::FailedPrecondition);
    assert!(status.message().contains("current ring only"), "{}", status.message());
    let read = client.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    let read = read.into_inner().deployment.unwrap();
    assert_eq!(read.ring_progress[0], lab_before, "LAB's figures stay as recorded");
    assert_eq!(read.etag, promoted.etag);
    server.stop().await;
}

#[track_caller]
fn assert_bad_field<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = assert_code(result, Code::InvalidArgument);
    let violations = status.get_details_bad_request().expect("BadRequest details").field_violations;
    assert!(violations.iter().any(|v| v.field == field), "{field} not named: {violations:?}");
}

async fn control_characters_are_refused_in_every_text_field(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let mut promotions = server.promotions();
    let mut connectors = eucora::v1::connector_service_client::ConnectorServiceClient::new(server.channel.clone());

    let nul_app = pb::CreateDeploymentRequest { app_name: "fire\0fox".into(), ..create_request("cc-1", "x", 10) };
    assert_bad_field(client.create_deployment(nul_app).await, "app_name");
    let mut ansi_notes = create_request("cc-2", "firefox", 10);
    ansi_notes.evidence.as_mut().unwrap().notes = "\u{1b}[31mall good\u{1b}[0m".into();
    assert_bad_field(client.create_deployment(ansi_notes).await, "evidence.notes");

    let deployment = started(&mut client, "cc-3").await;
    let events_before = events_of(&mut client, &deployment.id).await.len();
    // The rollback is refused before anything reaches the connector.
    let rollback = pb::RollbackDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "crash\0reports".into(),
        ..Default::default()
    };
    assert_bad_field(promotions.rollback_deployment(rollback).await, "reason");
    let fail = pb::FailDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "\u{1b}]8;;evil\u{7}".into(),
        ..Default::default()
    };
    assert_bad_field(client.fail_deployment(fail).await, "reason");
    let read = client.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    assert_eq!(read.into_inner().deployment.unwrap().status(), pb::DeploymentStatus::Deploying);
    assert_eq!(events_of(&mut client, &deployment.id).await.len(), events_before, "nothing dispatched or recorded");

    let policy = pb::RingPolicy { ring: pb::Ring::Canary.into(), ..Default::default() };
    let update = pb::UpdateRingPolicyRequest {
        policy: Some(policy),
        update_mask: Some(prost_types::FieldMask { paths: vec!["auto_promote".into()] }),
        reason: "tidy\0".into(),
    };
    assert_bad_field(promotions.update_ring_policy(update).await, "reason");
    let connector = pb::Connector {
        name: "jamf-nul".into(),
        connector_type: pb::ConnectorType::Jamf.into(),
        driver: pb::ConnectorDriver::Http.into(),
        endpoint: "http://127.0.0.1:9/\0".into(),
        enabled: true,
        ..Default::default()
    };
    let request = pb::CreateConnectorRequest { connector: Some(connector), ..Default::default() };
    assert_bad_field(connectors.create_connector(request).await, "connector.endpoint");
    server.stop().await;
}

async fn echoed_input_stays_small(backend: Backend) {
    let server = start_server(backend).await;
    let mut connectors = eucora::v1::connector_service_client::ConnectorServiceClient::new(server.channel.clone());
    let long = "a".repeat(15_000);
    let status = assert_code(
        connectors.get_connector(pb::GetConnectorRequest { connector_name: long.clone() }).await,
        Code::InvalidArgument,
    );
    assert!(status.message().len() < 500, "{} bytes echoed", status.message().len());
    let reset = pb::ResetCircuitBreakerRequest { connector_name: long, ..Default::default() };
    let status = assert_code(connectors.reset_circuit_breaker(reset).await, Code::InvalidArgument);
    assert!(status.message().len() < 500);
    server.stop().await;
}

async fn small_validation_gaps_are_closed(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    let mut connectors = eucora::v1::connector_service_client::ConnectorServiceClient::new(server.channel.clone());

    let odd_timeout = pb::Connector {
        name: "jamf-odd".into(),
        connector_type: pb::ConnectorType::Jamf.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        call_timeout: Some(prost_types::Duration { seconds: 1, nanos: 2_000_000_000 }),
        ..Default::default()
    };
    let request = pb::CreateConnectorRequest { connector: Some(odd_timeout), ..Default::default() };
    assert_bad_field(connectors.create_connector(request).await, "connector.call_timeout");

    let nil = pb::CreateDeploymentRequest {
        evidence_pack_id: "00000000-0000-0000-0000-000000000000".into(),
        ..create_request("gap-1", "firefox", 10)
    };
    assert_bad_field(client.create_deployment(nil).await, "evidence_pack_id");
    let unknown_connector = pb::CreateDeploymentRequest {
        connector_name: "intune-nowhere".into(),
        ..create_request("gap-2", "firefox", 10)
    };
    let status = assert_code(client.create_deployment(unknown_connector).await, Code::FailedPrecondition);
    assert!(status.message().contains("intune-nowhere"), "{}", status.message());
    let wrong_type = pb::CreateDeploymentRequest {
        connector_name: "simulator-jamf".into(),
        ..create_request("gap-3", "firefox", 10)
    };
    assert_bad_field(client.create_deployment(wrong_type).await, "connector_name");

    // A page token for a deployment that does not exist: NOT_FOUND, not an empty page.
    let unknown = uuid::Uuid::new_v4().to_string();
    let scope =
        eucora_services::grpc::page_token::Scope::new("deployment_events").with("deployment_id", Some(&unknown));
    let token = scope.token(Some(5));
    let request = pb::ListDeploymentEventsRequest { deployment_id: unknown, page_token: token, ..Default::default() };
    assert_code(client.list_deployment_events(request).await, Code::NotFound);

    // Over the 4 MiB decoding limit: RESOURCE_EXHAUSTED, as gRPC specifies.
    let huge = pb::CreateDeploymentRequest { app_name: "x".repeat(5 << 20), ..create_request("gap-4", "firefox", 10) };
    assert_code(client.create_deployment(huge).await, Code::ResourceExhausted);
    server.stop().await;
}

async fn a_page_fits_what_clients_accept(backend: Backend) {
    let server = start_server(backend).await;
    let mut client = server.deployments();
    const CREATED: usize = 300;
    for i in 0..CREATED {
        let mut request = create_request(&format!("big-{i}"), "firefox", 10);
        // 4,000 three-byte characters: 12 KB of notes per deployment, 3.6 MB in all.
        request.evidence.as_mut().unwrap().notes = "€".repeat(4000);
        client.create_deployment(request).await.unwrap();
    }
    // The client keeps tonic's default 4 MiB limit, as grpcurl and grpcio do.
    let mut seen = 0;
    let mut pages = 0;
    let mut page_token = String::new();
    loop {
        let request = pb::ListDeploymentsRequest { page_size: 500, page_token, ..Default::default() };
        let page = client.list_deployments(request).await.expect("a page within 4 MiB").into_inner();
        seen += page.deployments.len();
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, CREATED, "every deployment on some page");
    assert!(pages >= 2, "the answer was cut by size");
    server.stop().await;
}

async fn reports_past_the_connectors_device_count_are_refused(backend: Backend) {
    let server = start_server(backend).await;
    let mut connectors = eucora::v1::connector_service_client::ConnectorServiceClient::new(server.channel.clone());
    let simulator = pb::Connector {
        name: "landscape-100".into(),
        connector_type: pb::ConnectorType::Landscape.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig { device_count: 100, ..Default::default() }),
        ..Default::default()
    };
    connectors
        .create_connector(pb::CreateConnectorRequest { connector: Some(simulator), ..Default::default() })
        .await
        .unwrap();
    let mut client = server.deployments();
    let request = pb::CreateDeploymentRequest {
        connector_type: pb::ConnectorType::Landscape.into(),
        connector_name: "landscape-100".into(),
        ..create_request("devices-1", "libreoffice", 10)
    };
    let created = client.create_deployment(request).await.unwrap().into_inner().deployment.unwrap();
    let start = pb::StartDeploymentRequest { deployment_id: created.id.clone(), ..Default::default() };
    let started = client.start_deployment(start).await.unwrap().into_inner().deployment.unwrap();
    assert_eq!(started.ring_progress[0].expected_device_count, 100, "the platform said how many devices LAB has");

    let status = assert_code(
        client.report_ring_outcome(report(&created.id, pb::Ring::Lab, 150, 0)).await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("more than the 100"), "{}", status.message());
    // The simulator reports 100 healthy devices on its own, before or after this call: a report
    // of exactly the device count is accepted either way, one device more is refused.
    client.report_ring_outcome(report(&created.id, pb::Ring::Lab, 100, 0)).await.expect("exactly the device count");
    assert_code(client.report_ring_outcome(report(&created.id, pb::Ring::Lab, 100, 1)).await, Code::FailedPrecondition);
    server.stop().await;
}
