//! End-to-end tests of RingPromotionService through the generated clients:
//! policies, a full LAB → GLOBAL rollout, blocked promotions with reasons,
//! rollback, CAB rejection, and exactly-once promotion under concurrency —
//! within one server and across two server processes on one PostgreSQL.

mod common;

use common::{
    ADMIN, APPROVER, Backend, ServerProcess, TestDatabase, assert_code, create, events_of, promote_request,
    report_healthy, scrape, start_server, started,
};
use eucora::auth::Authenticated;
use eucora::v1 as pb;
use eucora::v1::connector_service_client::ConnectorServiceClient;
use eucora::v1::deployment_service_client::DeploymentServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

on_every_backend!(
    policies_have_design_defaults_and_validated_audited_updates,
    a_deployment_rolls_out_from_lab_to_global,
    a_blocked_promotion_says_why,
    rollback_from_pilot_removes_and_ends_rolled_back,
    a_cab_rejection_stops_the_deployment,
    racing_promotions_promote_exactly_once,
);

/// Reports healthy outcomes and promotes until the deployment is in `ring`.
async fn advance_to(
    deployments: &mut DeploymentServiceClient<Authenticated>,
    promotions: &mut RingPromotionServiceClient<Authenticated>,
    mut deployment: pb::Deployment,
    ring: pb::Ring,
) -> pb::Deployment {
    while deployment.current_ring() != ring {
        report_healthy(deployments, &deployment).await;
        deployment =
            promotions.promote_deployment(promote_request(&deployment)).await.unwrap().into_inner().deployment.unwrap();
    }
    deployment
}

async fn promotions_of(promotions: &mut RingPromotionServiceClient<Authenticated>, id: &str) -> Vec<pb::Promotion> {
    let request = pb::ListPromotionsRequest { deployment_id: id.to_owned(), ..Default::default() };
    promotions.list_promotions(request).await.unwrap().into_inner().promotions
}

async fn policies_have_design_defaults_and_validated_audited_updates(backend: Backend) {
    let server = start_server(backend).await;
    let mut promotions = server.promotions();
    let policies = promotions.list_ring_policies(pb::ListRingPoliciesRequest {}).await.unwrap().into_inner().policies;
    let summary: Vec<_> = policies
        .iter()
        .map(|p| (p.ring(), p.min_success_rate, p.require_cab_approval, p.require_rollback_validated))
        .collect();
    assert_eq!(
        summary,
        vec![
            (pb::Ring::Lab, 0.98, false, true),
            (pb::Ring::Canary, 0.98, true, false),
            (pb::Ring::Pilot, 0.97, true, false),
            (pb::Ring::Department, 0.99, true, false),
            (pb::Ring::Global, 0.99, true, false),
        ]
    );
    let pilot = &policies[2];
    assert_eq!(pilot.online_compliance_limit.unwrap().seconds, 24 * 3600);
    assert_eq!(pilot.intermittent_compliance_limit.unwrap().seconds, 72 * 3600);
    assert_eq!(pilot.air_gapped_compliance_limit.unwrap().seconds, 7 * 24 * 3600);

    let bad = pb::UpdateRingPolicyRequest {
        policy: Some(pb::RingPolicy { ring: pb::Ring::Pilot.into(), min_success_rate: 1.5, ..pilot.clone() }),
        ..Default::default()
    };
    let status = assert_code(promotions.update_ring_policy(bad).await, Code::InvalidArgument);
    let fields: Vec<_> =
        status.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["policy.min_success_rate"]);
    let unknown_field = pb::UpdateRingPolicyRequest {
        policy: Some(pilot.clone()),
        update_mask: Some(prost_types::FieldMask { paths: vec!["ring".into()] }),
        ..Default::default()
    };
    assert_code(promotions.update_ring_policy(unknown_field).await, Code::InvalidArgument);
    let zero_limit = pb::UpdateRingPolicyRequest {
        policy: Some(pb::RingPolicy {
            online_compliance_limit: Some(prost_types::Duration::default()),
            ..pilot.clone()
        }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["online_compliance_limit".into()] }),
        ..Default::default()
    };
    assert_code(promotions.update_ring_policy(zero_limit).await, Code::InvalidArgument);

    let update = pb::UpdateRingPolicyRequest {
        // `policy.etag` (here the one read) makes the update conditional.
        policy: Some(pb::RingPolicy { min_sample_size: 500, min_success_rate: 0.1, ..pilot.clone() }),
        update_mask: Some(prost_types::FieldMask { paths: vec!["min_sample_size".into()] }),
        reason: "bigger PILOT sample".into(),
    };
    let updated = promotions.update_ring_policy(update.clone()).await.unwrap().into_inner().policy.unwrap();
    assert_eq!(updated.min_sample_size, 500);
    assert_eq!(updated.min_success_rate, 0.97, "fields outside the mask are kept");
    assert_ne!(updated.etag, pilot.etag);
    assert_code(promotions.update_ring_policy(update).await, Code::Aborted);
    let fetched = promotions.get_ring_policy(pb::GetRingPolicyRequest { ring: pb::Ring::Pilot.into() }).await.unwrap();
    assert_eq!(fetched.into_inner().policy.unwrap(), updated);
    assert_code(promotions.get_ring_policy(pb::GetRingPolicyRequest { ring: 0 }).await, Code::InvalidArgument);

    // The change log, through its RPC: one change of PILOT, with who, why, before and after.
    let request = pb::ListRingPolicyChangesRequest { ring: pb::Ring::Pilot.into(), ..Default::default() };
    let changes = promotions.list_ring_policy_changes(request).await.unwrap().into_inner();
    assert_eq!(changes.changes.len(), 1, "{changes:?}");
    assert!(changes.next_page_token.is_empty());
    let change = &changes.changes[0];
    assert_eq!((change.actor.as_str(), change.reason.as_str()), ("carol", "bigger PILOT sample"));
    assert_eq!(change.ring(), pb::Ring::Pilot);
    assert_eq!(change.before.as_ref().unwrap(), pilot, "the policy before, as it was read");
    assert_eq!(change.after.as_ref().unwrap(), &updated, "the policy after, as the update answered");
    let other_ring = pb::ListRingPolicyChangesRequest { ring: pb::Ring::Canary.into(), ..Default::default() };
    assert!(promotions.list_ring_policy_changes(other_ring).await.unwrap().into_inner().changes.is_empty());
    server.stop().await;
}

async fn a_deployment_rolls_out_from_lab_to_global(backend: Backend) {
    let server = start_server(backend).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let mut deployment = started(&mut deployments, "rollout").await;
    let mut visited = vec![deployment.current_ring()];
    while deployment.status() == pb::DeploymentStatus::Deploying {
        report_healthy(&mut deployments, &deployment).await;
        let evaluation = promotions
            .evaluate_promotion_gate(pb::EvaluatePromotionGateRequest { deployment_id: deployment.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .evaluation
            .unwrap();
        assert!(evaluation.passed, "{evaluation:#?}");
        assert_eq!(evaluation.ring, deployment.current_ring);
        let response = promotions.promote_deployment(promote_request(&deployment)).await.unwrap().into_inner();
        let promotion = response.promotion.unwrap();
        assert_eq!(promotion.result(), pb::PromotionResult::Promoted);
        assert_eq!(promotion.from_ring, deployment.current_ring);
        assert!(promotion.gate.unwrap().passed);
        deployment = response.deployment.unwrap();
        visited.push(deployment.current_ring());
    }
    assert_eq!(deployment.status(), pb::DeploymentStatus::Completed);
    use pb::Ring::*;
    assert_eq!(visited, vec![Lab, Canary, Pilot, Department, Global, Global]);
    assert_eq!(deployment.ring_progress.len(), 5);
    assert!(deployment.ring_progress.iter().all(|p| p.promote_time.is_some() && p.compliance_time.is_some()));

    let recorded = promotions_of(&mut promotions, &deployment.id).await;
    let steps: Vec<_> = recorded.iter().map(|p| (p.from_ring(), p.to_ring(), p.result())).collect();
    let promoted = pb::PromotionResult::Promoted;
    assert_eq!(
        steps,
        vec![
            (Lab, Canary, promoted),
            (Canary, Pilot, promoted),
            (Pilot, Department, promoted),
            (Department, Global, promoted),
            (Global, Unspecified, promoted)
        ]
    );
    let events = events_of(&mut deployments, &deployment.id).await;
    let dispatched: Vec<_> =
        events.iter().filter(|e| e.kind() == pb::DeploymentEventKind::Dispatched).map(|e| e.ring()).collect();
    assert_eq!(dispatched, vec![Lab, Canary, Pilot, Department, Global], "each ring dispatched once");

    let m = scrape(&server).await;
    for (from, to) in [
        ("lab", "canary"),
        ("canary", "pilot"),
        ("pilot", "department"),
        ("department", "global"),
        ("global", "global"),
    ] {
        assert_eq!(
            m.value("ring_promotion_total", &[("from_ring", from), ("to_ring", to), ("status", "promoted")]),
            1.0
        );
    }
    assert_eq!(m.value("promotion_gate_success_rate", &[("ring", "global")]), 1.0);
    assert_eq!(m.value("deployment_total", &[("app_name", "edge"), ("status", "completed"), ("ring", "global")]), 1.0);
    server.stop().await;
}

async fn a_blocked_promotion_says_why(backend: Backend) {
    let server = start_server(backend).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let deployment = started(&mut deployments, "blocked").await;
    let report = pb::ReportRingOutcomeRequest {
        deployment_id: deployment.id.clone(),
        ring: pb::Ring::Lab.into(),
        success_count: 90,
        failure_count: 10,
        ..Default::default()
    };
    deployments.report_ring_outcome(report).await.unwrap();

    let mut request = promote_request(&deployment);
    request.request_id = "promote-blocked-1".into();
    let status = assert_code(promotions.promote_deployment(request.clone()).await, Code::FailedPrecondition);
    assert!(
        status.message().contains("success rate 0.900 < 0.980 on LAB with 100 devices reported"),
        "{}",
        status.message()
    );
    let details = status.get_error_details();
    let failure = details.precondition_failure().expect("PreconditionFailure details");
    let kinds: Vec<_> = failure.violations.iter().map(|v| v.r#type.as_str()).collect();
    assert_eq!(
        kinds,
        ["GATE_CHECK_KIND_SUCCESS_RATE", "GATE_CHECK_KIND_TIME_TO_COMPLIANCE", "GATE_CHECK_KIND_ROLLBACK_VALIDATED"]
    );
    assert!(failure.violations.iter().all(|v| v.subject == "ring/LAB"));

    // A retry with the same request id gets the same answer and records nothing new.
    let again = assert_code(promotions.promote_deployment(request).await, Code::FailedPrecondition);
    assert_eq!(again.message(), status.message());
    let recorded = promotions_of(&mut promotions, &deployment.id).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].result(), pb::PromotionResult::Blocked);
    assert_eq!(recorded[0].to_ring(), pb::Ring::Canary);
    let unchanged =
        deployments.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    let unchanged = unchanged.into_inner().deployment.unwrap();
    assert_eq!(unchanged.current_ring(), pb::Ring::Lab);
    let gate = unchanged.ring_progress[0].last_gate.clone().expect("the current ring's gate");
    assert!(!gate.passed && gate.checks.iter().any(|c| c.message.contains("0.900 < 0.980")), "{gate:#?}");

    let m = scrape(&server).await;
    assert_eq!(
        m.value("ring_promotion_total", &[("from_ring", "lab"), ("to_ring", "canary"), ("status", "blocked")]),
        1.0
    );
    assert_eq!(m.value("promotion_gate_success_rate", &[("ring", "lab")]), 0.9);
    server.stop().await;
}

async fn rollback_from_pilot_removes_and_ends_rolled_back(backend: Backend) {
    let server = start_server(backend).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let deployment = started(&mut deployments, "rollback").await;
    let deployment = advance_to(&mut deployments, &mut promotions, deployment, pb::Ring::Pilot).await;

    let no_reason = pb::RollbackDeploymentRequest { deployment_id: deployment.id.clone(), ..Default::default() };
    assert_code(promotions.rollback_deployment(no_reason).await, Code::InvalidArgument);
    let request = pb::RollbackDeploymentRequest {
        deployment_id: deployment.id.clone(),
        request_id: "rollback-1".into(),
        reason: "crash reports from PILOT".into(),
        etag: deployment.etag.clone(),
    };
    let response = promotions.rollback_deployment(request.clone()).await.unwrap().into_inner();
    let rolled_back = response.deployment.unwrap();
    assert_eq!(rolled_back.status(), pb::DeploymentStatus::RolledBack);
    assert_eq!(rolled_back.status_reason, "crash reports from PILOT");
    let promotion = response.promotion.unwrap();
    assert_eq!((promotion.from_ring(), promotion.result()), (pb::Ring::Pilot, pb::PromotionResult::RolledBack));
    let retried = promotions.rollback_deployment(request).await.unwrap().into_inner();
    assert_eq!(retried.promotion.unwrap().id, promotion.id, "a retry returns the first result");

    // The removal is decided with the rollback, then delivered.
    let events = events_of(&mut deployments, &deployment.id).await;
    let last: Vec<_> = events[events.len() - 3..].iter().map(|e| (e.kind(), e.to_status(), e.reason.clone())).collect();
    assert_eq!(last[0].0, pb::DeploymentEventKind::Dispatched);
    assert!(last[0].2.starts_with("remove edge 1.0.0 from LAB, CANARY, PILOT"), "{}", last[0].2);
    assert_eq!((last[1].0, last[1].1), (pb::DeploymentEventKind::StatusChanged, pb::DeploymentStatus::RolledBack));
    assert_eq!((last[2].0, last[2].1), (pb::DeploymentEventKind::Delivered, pb::DeploymentStatus::RolledBack));
    assert_eq!(rolled_back.ring_progress[2].delivery_state(), pb::DeliveryState::Delivered);

    assert_code(promotions.promote_deployment(promote_request(&rolled_back)).await, Code::FailedPrecondition);
    let again = pb::RollbackDeploymentRequest {
        deployment_id: deployment.id.clone(),
        reason: "again".into(),
        ..Default::default()
    };
    assert_code(promotions.rollback_deployment(again).await, Code::FailedPrecondition);

    let m = scrape(&server).await;
    assert_eq!(m.value("ring_promotion_total", &[("from_ring", "pilot"), ("status", "rolled_back")]), 1.0);
    assert_eq!(m.value("deployment_total", &[("app_name", "edge"), ("status", "rolled_back"), ("ring", "pilot")]), 1.0);
    assert_eq!(m.value("deployment_duration_seconds_count", &[("app_name", "edge"), ("status", "rolled_back")]), 1.0);
    server.stop().await;
}

async fn a_cab_rejection_stops_the_deployment(backend: Backend) {
    let server = start_server(backend).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let risky = create(&mut deployments, "cab-reject", "kernel-driver", 90).await;
    // carol submitted it: she may hold the approver role (admin), never on her own submission.
    let self_reject = pb::RejectDeploymentRequest { deployment_id: risky.id.clone(), ..Default::default() };
    assert_code(deployments.reject_deployment(self_reject).await, Code::PermissionDenied);
    let reject = pb::RejectDeploymentRequest {
        deployment_id: risky.id.clone(),
        reason: "no rollback plan".into(),
        ..Default::default()
    };
    let rejected = server.deployments_as(APPROVER).reject_deployment(reject).await.unwrap();
    let rejected = rejected.into_inner().deployment.unwrap();
    assert_eq!(rejected.status(), pb::DeploymentStatus::Rejected);
    assert_code(
        deployments
            .start_deployment(pb::StartDeploymentRequest { deployment_id: risky.id.clone(), ..Default::default() })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(promotions.promote_deployment(promote_request(&rejected)).await, Code::FailedPrecondition);
    let events = events_of(&mut deployments, &risky.id).await;
    let last = events.last().unwrap();
    assert_eq!(
        (last.to_status(), last.actor.as_str(), last.reason.as_str()),
        (pb::DeploymentStatus::Rejected, "bob", "no rollback plan")
    );
    server.stop().await;
}

/// Sends `count` identical promotions at once over `clients` and returns (successes, codes of the rest).
async fn race(
    clients: Vec<RingPromotionServiceClient<Authenticated>>,
    request: pb::PromoteDeploymentRequest,
    count: usize,
) -> (usize, Vec<Code>) {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let request = request.clone();
            tokio::spawn(async move { client.promote_deployment(request).await })
        })
        .collect();
    let mut wins = 0;
    let mut losses = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(status) => losses.push(status.code()),
        }
    }
    (wins, losses)
}

async fn racing_promotions_promote_exactly_once(backend: Backend) {
    let server = start_server(backend).await;
    let (mut deployments, mut promotions) = (server.deployments(), server.promotions());
    let deployment = started(&mut deployments, "race").await;
    report_healthy(&mut deployments, &deployment).await;
    let (wins, losses) = race(vec![server.promotions()], promote_request(&deployment), 32).await;
    assert_eq!(wins, 1, "losers: {losses:?}");
    assert!(losses.iter().all(|c| matches!(c, Code::Aborted | Code::FailedPrecondition)), "{losses:?}");
    let recorded = promotions_of(&mut promotions, &deployment.id).await;
    assert_eq!(recorded.iter().filter(|p| p.result() == pb::PromotionResult::Promoted).count(), 1);
    let m = scrape(&server).await;
    assert_eq!(
        m.value("ring_promotion_total", &[("from_ring", "lab"), ("to_ring", "canary"), ("status", "promoted")]),
        1.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_one_postgres_promote_exactly_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    // One after the other: the first applies the migrations, the second finds them done.
    let first = ServerProcess::spawn(&database.url).await;
    let second = ServerProcess::spawn(&database.url).await;
    let channel = |addr: &str| {
        common::authenticated(&Channel::from_shared(format!("http://{addr}")).unwrap().connect_lazy(), ADMIN)
    };
    let (a, b) = (channel(&first.grpc), channel(&second.grpc));
    // A simulator that reports nothing: the test reports the outcomes.
    let quiet = pb::Connector {
        name: "quiet-simulator".into(),
        connector_type: pb::ConnectorType::Intune.into(),
        driver: pb::ConnectorDriver::Simulator.into(),
        enabled: true,
        simulator: Some(pb::SimulatorConfig { device_count: 0, ..Default::default() }),
        ..Default::default()
    };
    let create = pb::CreateConnectorRequest { connector: Some(quiet), ..Default::default() };
    ConnectorServiceClient::new(a.clone()).create_connector(create).await.unwrap();
    let mut deployments = DeploymentServiceClient::new(a.clone());
    let deployment = started(&mut deployments, "two-processes").await;
    report_healthy(&mut deployments, &deployment).await;

    let clients = vec![RingPromotionServiceClient::new(a.clone()), RingPromotionServiceClient::new(b.clone())];
    let (wins, losses) = race(clients, promote_request(&deployment), 32).await;
    assert_eq!(wins, 1, "losers: {losses:?}");
    assert!(losses.iter().all(|c| matches!(c, Code::Aborted | Code::FailedPrecondition)), "{losses:?}");

    let recorded = promotions_of(&mut RingPromotionServiceClient::new(b), &deployment.id).await;
    assert_eq!(recorded.iter().filter(|p| p.result() == pb::PromotionResult::Promoted).count(), 1);
    let moved =
        deployments.get_deployment(pb::GetDeploymentRequest { deployment_id: deployment.id.clone() }).await.unwrap();
    assert_eq!(moved.into_inner().deployment.unwrap().current_ring(), pb::Ring::Canary);

    let mut promoted = 0.0;
    for process in [&first, &second] {
        let body = reqwest::get(format!("http://{}/metrics", process.metrics)).await.unwrap().text().await.unwrap();
        let m = common::exposition::Exposition::parse(&body);
        promoted += m
            .find("ring_promotion_total", &[("from_ring", "lab"), ("to_ring", "canary"), ("status", "promoted")])
            .iter()
            .map(|s| s.value)
            .sum::<f64>();
    }
    assert_eq!(promoted, 1.0, "the two processes' counters agree with the audit trail");
    drop((first, second));
}
