//! Conversions between the domain's types and the `eucora.v1` messages.
//! Domain enums never see proto numbers; proto enums never reach the domain.

use chrono::{DateTime, Utc};
use eucora::v1 as pb;

use crate::domain::{
    CheckKind, ConnectorType, Delivery, Deployment, DeploymentStatus, EventKind, GateEvaluation, Promotion,
    PromotionResult, Ring, RingPolicy, RingProgress, SiteClass,
};
use crate::store::StoredEvent;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0) }
}

pub fn ring_to_proto(ring: Ring) -> pb::Ring {
    match ring {
        Ring::Lab => pb::Ring::Lab,
        Ring::Canary => pb::Ring::Canary,
        Ring::Pilot => pb::Ring::Pilot,
        Ring::Department => pb::Ring::Department,
        Ring::Global => pb::Ring::Global,
    }
}

/// `None` for `RING_UNSPECIFIED`.
pub fn ring_from_proto(ring: pb::Ring) -> Option<Ring> {
    match ring {
        pb::Ring::Unspecified => None,
        pb::Ring::Lab => Some(Ring::Lab),
        pb::Ring::Canary => Some(Ring::Canary),
        pb::Ring::Pilot => Some(Ring::Pilot),
        pb::Ring::Department => Some(Ring::Department),
        pb::Ring::Global => Some(Ring::Global),
    }
}

pub fn status_to_proto(status: DeploymentStatus) -> pb::DeploymentStatus {
    match status {
        DeploymentStatus::Pending => pb::DeploymentStatus::Pending,
        DeploymentStatus::AwaitingCab => pb::DeploymentStatus::AwaitingCab,
        DeploymentStatus::Approved => pb::DeploymentStatus::Approved,
        DeploymentStatus::Rejected => pb::DeploymentStatus::Rejected,
        DeploymentStatus::Deploying => pb::DeploymentStatus::Deploying,
        DeploymentStatus::Completed => pb::DeploymentStatus::Completed,
        DeploymentStatus::Failed => pb::DeploymentStatus::Failed,
        DeploymentStatus::RolledBack => pb::DeploymentStatus::RolledBack,
    }
}

pub fn status_from_proto(status: pb::DeploymentStatus) -> Option<DeploymentStatus> {
    DeploymentStatus::ALL.into_iter().find(|s| status_to_proto(*s) == status)
}

pub fn connector_type_to_proto(connector_type: ConnectorType) -> pb::ConnectorType {
    match connector_type {
        ConnectorType::Intune => pb::ConnectorType::Intune,
        ConnectorType::Jamf => pb::ConnectorType::Jamf,
        ConnectorType::Sccm => pb::ConnectorType::Sccm,
        ConnectorType::Landscape => pb::ConnectorType::Landscape,
        ConnectorType::Ansible => pb::ConnectorType::Ansible,
    }
}

pub fn connector_type_from_proto(connector_type: pb::ConnectorType) -> Option<ConnectorType> {
    ConnectorType::ALL.into_iter().find(|t| connector_type_to_proto(*t) == connector_type)
}

pub fn site_class_to_proto(site_class: SiteClass) -> pb::SiteClass {
    match site_class {
        SiteClass::Online => pb::SiteClass::Online,
        SiteClass::Intermittent => pb::SiteClass::Intermittent,
        SiteClass::AirGapped => pb::SiteClass::AirGapped,
    }
}

pub fn site_class_from_proto(site_class: pb::SiteClass) -> Option<SiteClass> {
    SiteClass::ALL.into_iter().find(|s| site_class_to_proto(*s) == site_class)
}

fn event_kind_to_proto(kind: EventKind) -> pb::DeploymentEventKind {
    match kind {
        EventKind::Created => pb::DeploymentEventKind::Created,
        EventKind::StatusChanged => pb::DeploymentEventKind::StatusChanged,
        EventKind::OutcomeReported => pb::DeploymentEventKind::OutcomeReported,
        EventKind::RingPromoted => pb::DeploymentEventKind::RingPromoted,
        EventKind::Dispatched => pb::DeploymentEventKind::Dispatched,
        EventKind::Paused => pb::DeploymentEventKind::Paused,
        EventKind::Resumed => pb::DeploymentEventKind::Resumed,
        EventKind::Stalled => pb::DeploymentEventKind::Stalled,
        EventKind::OutcomeCorrected => pb::DeploymentEventKind::OutcomeCorrected,
        EventKind::Delivered => pb::DeploymentEventKind::Delivered,
        EventKind::DeliveryFailed => pb::DeploymentEventKind::DeliveryFailed,
    }
}

pub fn etag(revision: i64) -> String {
    revision.to_string()
}

pub fn deployment_to_proto(d: &Deployment) -> pb::Deployment {
    pb::Deployment {
        id: d.id.to_string(),
        app_name: d.app_name.clone(),
        version: d.version.clone(),
        connector_type: connector_type_to_proto(d.connector_type).into(),
        current_ring: ring_to_proto(d.current_ring).into(),
        target_ring: ring_to_proto(d.target_ring).into(),
        risk_score: i32::from(d.risk_score),
        requires_cab_approval: d.requires_cab_approval,
        evidence_pack_id: d.evidence_pack_id.to_string(),
        submitter: d.submitter.clone(),
        correlation_id: d.correlation_id.clone(),
        status: status_to_proto(d.status).into(),
        ring_progress: d.rings.iter().map(ring_progress_to_proto).collect(),
        site_class: site_class_to_proto(d.site_class).into(),
        cab_approver: d.cab_approver.clone().unwrap_or_default(),
        status_reason: d.status_reason.clone(),
        create_time: Some(timestamp(d.created_at)),
        update_time: Some(timestamp(d.updated_at)),
        deploy_start_time: d.deploy_started_at.map(timestamp),
        end_time: d.ended_at.map(timestamp),
        etag: etag(d.revision),
        connector_name: d.connector_name.clone().unwrap_or_default(),
        paused: d.paused,
        stall_time: d.stalled_since.map(timestamp),
        next_action: String::new(),
        next_action_time: None,
        evidence: Some(super::risk::evidence_to_proto(&d.evidence)),
        risk_assessment: d.risk.as_ref().map(super::risk::assessment_to_proto),
    }
}

fn ring_progress_to_proto(p: &RingProgress) -> pb::RingProgress {
    pb::RingProgress {
        ring: ring_to_proto(p.ring).into(),
        connector_object_id: p.connector_object_id.clone().unwrap_or_default(),
        success_count: i64::try_from(p.success_count).unwrap_or(i64::MAX),
        failure_count: i64::try_from(p.failure_count).unwrap_or(i64::MAX),
        success_rate: p.success_rate(),
        start_time: Some(timestamp(p.started_at)),
        promote_time: p.promoted_at.map(timestamp),
        last_gate: None,
        compliance_time: p.compliant_at.map(timestamp),
        rollback_validate_time: p.rollback_validated_at.map(timestamp),
        last_report_time: p.last_reported_at.map(timestamp),
        delivery_state: match p.delivery {
            Delivery::Pending => pb::DeliveryState::Pending,
            Delivery::Delivered => pb::DeliveryState::Delivered,
            Delivery::Refused => pb::DeliveryState::Refused,
        }
        .into(),
        delivery_error: p.delivery_error.clone().unwrap_or_default(),
        expected_device_count: p.expected_devices.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
    }
}

pub fn event_to_proto(stored: &StoredEvent) -> pb::DeploymentEvent {
    let e = &stored.event;
    pb::DeploymentEvent {
        sequence: stored.seq,
        deployment_id: e.deployment_id.to_string(),
        kind: event_kind_to_proto(e.kind).into(),
        from_status: e.from_status.map_or(pb::DeploymentStatus::Unspecified, status_to_proto).into(),
        to_status: status_to_proto(e.to_status).into(),
        ring: ring_to_proto(e.ring).into(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
        correlation_id: e.correlation_id.clone(),
        create_time: Some(timestamp(e.at)),
        app_name: stored.app_name.clone(),
    }
}

pub fn duration_to_proto(duration: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

pub fn policy_to_proto(p: &RingPolicy) -> pb::RingPolicy {
    pb::RingPolicy {
        ring: ring_to_proto(p.ring).into(),
        min_success_rate: p.min_success_rate,
        min_sample_size: i64::try_from(p.min_sample_size).unwrap_or(i64::MAX),
        online_compliance_limit: Some(duration_to_proto(p.online_compliance_limit)),
        intermittent_compliance_limit: Some(duration_to_proto(p.intermittent_compliance_limit)),
        air_gapped_compliance_limit: Some(duration_to_proto(p.air_gapped_compliance_limit)),
        require_cab_approval: p.require_cab_approval,
        require_evidence_pack: p.require_evidence_pack,
        require_rollback_validated: p.require_rollback_validated,
        update_time: Some(timestamp(p.updated_at)),
        etag: etag(p.revision),
        bake_time: Some(duration_to_proto(p.bake_time)),
        auto_promote: p.auto_promote,
        rollback_failure_rate: p.rollback_failure_rate,
        rollback_min_sample: i64::try_from(p.rollback_min_sample).unwrap_or(i64::MAX),
        stall_timeout: Some(duration_to_proto(p.stall_timeout)),
    }
}

pub fn check_kind_to_proto(kind: CheckKind) -> pb::GateCheckKind {
    match kind {
        CheckKind::SuccessRate => pb::GateCheckKind::SuccessRate,
        CheckKind::SampleSize => pb::GateCheckKind::SampleSize,
        CheckKind::TimeToCompliance => pb::GateCheckKind::TimeToCompliance,
        CheckKind::CabApproval => pb::GateCheckKind::CabApproval,
        CheckKind::EvidencePack => pb::GateCheckKind::EvidencePack,
        CheckKind::RollbackValidated => pb::GateCheckKind::RollbackValidated,
    }
}

pub fn gate_to_proto(deployment_id: &str, g: &GateEvaluation) -> pb::GateEvaluation {
    pb::GateEvaluation {
        deployment_id: deployment_id.to_owned(),
        ring: ring_to_proto(g.ring).into(),
        next_ring: g.next_ring.map_or(pb::Ring::Unspecified, ring_to_proto).into(),
        passed: g.passed,
        checks: g
            .checks
            .iter()
            .map(|c| pb::GateCheck {
                kind: check_kind_to_proto(c.kind).into(),
                passed: c.passed,
                observed_value: c.observed,
                threshold_value: c.threshold,
                message: c.message.clone(),
            })
            .collect(),
        evaluate_time: Some(timestamp(g.evaluated_at)),
    }
}

pub fn promotion_to_proto(p: &Promotion) -> pb::Promotion {
    let deployment_id = p.deployment_id.to_string();
    pb::Promotion {
        id: p.id.to_string(),
        from_ring: ring_to_proto(p.from_ring).into(),
        to_ring: p.to_ring.map_or(pb::Ring::Unspecified, ring_to_proto).into(),
        result: match p.result {
            PromotionResult::Promoted => pb::PromotionResult::Promoted,
            PromotionResult::Blocked => pb::PromotionResult::Blocked,
            PromotionResult::RolledBack => pb::PromotionResult::RolledBack,
        }
        .into(),
        gate: p.gate.as_ref().map(|g| gate_to_proto(&deployment_id, g)),
        deployment_id,
        actor: p.actor.clone(),
        reason: p.reason.clone(),
        correlation_id: p.correlation_id.clone(),
        create_time: Some(timestamp(p.created_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_proto() {
        for ring in Ring::ALL {
            assert_eq!(ring_from_proto(ring_to_proto(ring)), Some(ring));
            assert_eq!(ring_to_proto(ring) as i32, i32::from(ring.number()) + 1);
        }
        for status in DeploymentStatus::ALL {
            assert_eq!(status_from_proto(status_to_proto(status)), Some(status));
        }
        for t in ConnectorType::ALL {
            assert_eq!(connector_type_from_proto(connector_type_to_proto(t)), Some(t));
        }
        for s in SiteClass::ALL {
            assert_eq!(site_class_from_proto(site_class_to_proto(s)), Some(s));
        }
        assert_eq!(status_from_proto(pb::DeploymentStatus::Unspecified), None);
        assert_eq!(ring_from_proto(pb::Ring::Unspecified), None);
    }
}
