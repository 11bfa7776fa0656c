//! Regression tests of the defects an adversarial round of bad input found:
//! impossible outcome counts, reports rewriting a ring already left, control
//! characters in text, oversized names echoed back, oversized pages, and
//! small validation gaps. On SQLite and on the machine's PostgreSQL.

mod common;

use common::{Backend, assert_code, events_of, promote_request, report_healthy, start_server, started};
use eucora::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

on_every_backend!(
    impossible_counts_are_invalid_and_change_nothing,
    a_bad_report_is_corrected_with_an_audit_event,
    reports_for_a_ring_already_left_are_refused,
);

fn report(id: &str, ring: pb::Ring, success_count: i64, failure_count: i64) -> pb::ReportRingOutcomeRequest {
    pb::ReportRingOutcomeRequest {
        id: id.to_owned(),
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

    let read = client.get_deployment(pb::GetDeploymentRequest { id: deployment.id.clone() }).await.unwrap();
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
        id: deployment.id.clone(),
        ring: pb::Ring::Lab.into(),
        success_count: 10,
        failure_count: 0,
        actor: "oncall".into(),
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
    assert_eq!(last.actor, "oncall");
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
    let read = client.get_deployment(pb::GetDeploymentRequest { id: deployment.id.clone() }).await.unwrap();
    let read = read.into_inner().deployment.unwrap();
    assert_eq!(read.ring_progress[0], lab_before, "LAB's figures stay as recorded");
    assert_eq!(read.etag, promoted.etag);
    server.stop().await;
}
