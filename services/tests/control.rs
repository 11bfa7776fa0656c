//! Dual control end to end: a ring policy update or a risk model activation
//! that weakens a control waits for a second admin — its proposer cannot
//! approve it, nor can a non-admin; once approved it is applied and the
//! audit trail names both; a change whose subject moved on is superseded;
//! the proposer may withdraw it; changes that tighten apply at once.

mod common;

use common::{ADMIN, Backend, OPERATOR, assert_code, start_server};
use eucora::v1 as pb;
use eucora::v1::control_change_service_client::ControlChangeServiceClient;
use eucora::v1::ring_promotion_service_client::RingPromotionServiceClient;
use eucora::v1::risk_model_service_client::RiskModelServiceClient;
use tonic::Code;

on_every_backend!(weakening_a_ring_policy_needs_a_second_admin, raising_the_cab_threshold_needs_a_second_admin,);

/// The second development admin.
const SECOND_ADMIN: &str = "dev-dave";

fn canary_update(policy: pb::RingPolicy, fields: &[&str], reason: &str) -> pb::UpdateRingPolicyRequest {
    pb::UpdateRingPolicyRequest {
        policy: Some(pb::RingPolicy { ring: pb::Ring::Canary.into(), ..policy }),
        update_mask: Some(prost_types::FieldMask { paths: fields.iter().map(|f| (*f).to_owned()).collect() }),
        reason: reason.into(),
    }
}

fn approve(id: &str) -> pb::ApproveControlChangeRequest {
    pb::ApproveControlChangeRequest { id: id.to_owned(), reason: "checked with the CAB chair".into() }
}

async fn canary(promotions: &mut RingPromotionServiceClient<eucora::auth::Authenticated>) -> pb::RingPolicy {
    let request = pb::GetRingPolicyRequest { ring: pb::Ring::Canary.into() };
    promotions.get_ring_policy(request).await.unwrap().into_inner().policy.unwrap()
}

async fn weakening_a_ring_policy_needs_a_second_admin(backend: Backend) {
    let server = start_server(backend).await;
    let mut carol = RingPromotionServiceClient::new(server.channel_as(ADMIN));
    let mut control = ControlChangeServiceClient::new(server.channel_as(ADMIN));
    let mut dave = ControlChangeServiceClient::new(server.channel_as(SECOND_ADMIN));
    let before = canary(&mut carol).await;

    // Lowering the gate and dropping a requirement: proposed, not applied.
    let weaker = pb::RingPolicy { min_success_rate: 0.5, require_evidence_pack: false, ..Default::default() };
    let update = canary_update(weaker, &["min_success_rate", "require_evidence_pack"], "vendor hotfix");
    let answer = carol.update_ring_policy(update).await.unwrap().into_inner();
    assert_eq!(answer.policy.as_ref().unwrap().min_success_rate, before.min_success_rate, "nothing applied yet");
    assert_eq!(answer.weakenings, ["min_success_rate 0.98 → 0.5", "require_evidence_pack true → false"]);
    let id = answer.pending_change_id;
    assert!(!id.is_empty());
    assert_eq!(canary(&mut carol).await, before);
    let pending = pb::ListControlChangesRequest { state: pb::ControlChangeState::Pending.into(), ..Default::default() };
    let listed = control.list_control_changes(pending.clone()).await.unwrap().into_inner().changes;
    assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    assert_eq!((listed[0].kind(), listed[0].proposed_by.as_str()), (pb::ControlChangeKind::RingPolicy, "carol"));
    assert_eq!(listed[0].policy_after.as_ref().unwrap().min_success_rate, 0.5);

    // Not by its proposer, not by an operator.
    let own = assert_code(control.approve_control_change(approve(&id)).await, Code::PermissionDenied);
    assert!(own.message().contains("separation of duties"), "{}", own.message());
    let mut alice = ControlChangeServiceClient::new(server.channel_as(OPERATOR));
    assert_code(alice.approve_control_change(approve(&id)).await, Code::PermissionDenied);
    assert_eq!(canary(&mut carol).await, before);

    // A second admin approves: applied, and both names are in the change log.
    let approved = dave.approve_control_change(approve(&id)).await.unwrap().into_inner().change.unwrap();
    assert_eq!((approved.state(), approved.decided_by.as_str()), (pb::ControlChangeState::Approved, "dave"));
    let after = canary(&mut carol).await;
    assert_eq!((after.min_success_rate, after.require_evidence_pack), (0.5, false));
    let log = carol
        .list_ring_policy_changes(pb::ListRingPolicyChangesRequest {
            ring: pb::Ring::Canary.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    let last = log.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.approved_by.as_str(), last.reason.as_str()),
        ("carol", "dave", "vendor hotfix")
    );
    assert_code(dave.approve_control_change(approve(&id)).await, Code::FailedPrecondition);
    assert!(control.list_control_changes(pending.clone()).await.unwrap().into_inner().changes.is_empty());

    // Tightening applies at once, with one admin.
    let stricter =
        canary_update(pb::RingPolicy { min_success_rate: 0.9, ..Default::default() }, &["min_success_rate"], "");
    let answer = carol.update_ring_policy(stricter).await.unwrap().into_inner();
    assert!(answer.pending_change_id.is_empty() && answer.weakenings.is_empty());
    assert_eq!(answer.policy.unwrap().min_success_rate, 0.9);

    // A proposal whose policy changed meanwhile is superseded, not applied.
    let fewer = canary_update(pb::RingPolicy { min_sample_size: 1, ..Default::default() }, &["min_sample_size"], "");
    let stale = carol.update_ring_policy(fewer.clone()).await.unwrap().into_inner().pending_change_id;
    let stricter =
        canary_update(pb::RingPolicy { min_success_rate: 0.95, ..Default::default() }, &["min_success_rate"], "");
    carol.update_ring_policy(stricter).await.unwrap();
    let superseded = assert_code(dave.approve_control_change(approve(&stale)).await, Code::FailedPrecondition);
    assert!(superseded.message().contains("propose it again"), "{}", superseded.message());
    let stale = control.get_control_change(pb::GetControlChangeRequest { id: stale }).await.unwrap().into_inner();
    assert_eq!(stale.change.unwrap().state(), pb::ControlChangeState::Superseded);
    assert_eq!(canary(&mut carol).await.min_sample_size, before.min_sample_size);

    // The proposer may withdraw; a withdrawn change cannot be approved.
    let withdrawn = carol.update_ring_policy(fewer).await.unwrap().into_inner().pending_change_id;
    let reject = pb::RejectControlChangeRequest { id: withdrawn.clone(), reason: "not needed".into() };
    let rejected = control.reject_control_change(reject).await.unwrap().into_inner().change.unwrap();
    assert_eq!((rejected.state(), rejected.decided_by.as_str()), (pb::ControlChangeState::Rejected, "carol"));
    assert_code(dave.approve_control_change(approve(&withdrawn)).await, Code::FailedPrecondition);
    let unknown = approve("0191e0c4-0000-7000-8000-000000000000");
    assert_code(dave.approve_control_change(unknown).await, Code::NotFound);
    assert_code(dave.approve_control_change(approve("not-a-uuid")).await, Code::InvalidArgument);
    server.stop().await;
}

async fn raising_the_cab_threshold_needs_a_second_admin(backend: Backend) {
    let server = start_server(backend).await;
    let mut carol = RiskModelServiceClient::new(server.channel_as(ADMIN));
    let mut dave = ControlChangeServiceClient::new(server.channel_as(SECOND_ADMIN));
    let listed = carol.list_risk_models(pb::ListRiskModelsRequest {}).await.unwrap().into_inner().models;
    let create = |name: &str, threshold| pb::CreateRiskModelRequest {
        model: Some(pb::RiskModel { name: name.into(), threshold, ..listed[0].clone() }),
        ..Default::default()
    };
    let lax = carol.create_risk_model(create("lax", 100)).await.unwrap().into_inner().model.unwrap();
    let activate = |version| pb::ActivateRiskModelRequest { version, ..Default::default() };

    // CAB off (threshold 100): proposed, the active model stays.
    let answer = carol.activate_risk_model(activate(lax.version)).await.unwrap().into_inner();
    assert!(!answer.model.unwrap().active);
    assert_eq!(answer.weakenings, [format!("cab threshold {} → 100", listed[0].threshold)]);
    let active = |models: Vec<pb::RiskModel>| models.into_iter().find(|m| m.active).map(|m| m.version);
    let models = carol.list_risk_models(pb::ListRiskModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(active(models), Some(listed[0].version));
    let approved = dave.approve_control_change(approve(&answer.pending_change_id)).await.unwrap().into_inner();
    let approved = approved.change.unwrap();
    assert_eq!(
        (approved.kind(), approved.active_risk_model_version, approved.risk_model_version),
        (pb::ControlChangeKind::RiskModelActivation, listed[0].version, lax.version)
    );
    let models = carol.list_risk_models(pb::ListRiskModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(active(models), Some(lax.version), "applied once a second admin approved");

    // Back to a lower threshold: at once, with one admin.
    let strict = carol.create_risk_model(create("strict", 40)).await.unwrap().into_inner().model.unwrap();
    let answer = carol.activate_risk_model(activate(strict.version)).await.unwrap().into_inner();
    assert!(answer.pending_change_id.is_empty() && answer.model.unwrap().active);
    server.stop().await;
}
