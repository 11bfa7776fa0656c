//! Conversions between the domain's types and the `eucora.v1` messages.
//! Domain enums never see proto numbers; proto enums never reach the domain.

use chrono::{DateTime, Utc};
use eucora::v1 as pb;

use crate::domain::breaker::BreakerState;
use crate::domain::calendar::CalendarChangeKind;
use crate::domain::connector::Driver;
use crate::domain::control::ControlState;
use crate::domain::risk::FactorKind;
use crate::domain::window::WindowKind;
use crate::domain::{
    ChangeKind, CheckKind, ConnectorType, Delivery, Deployment, DeploymentStatus, EventKind, GateEvaluation, Promotion,
    PromotionResult, Ring, RingPolicy, RingProgress, SiteClass,
};
use crate::store::StoredEvent;

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    std::time::SystemTime::from(at).into()
}

/// A domain enum and the generated proto enum that carries it on the wire.
/// Both live in other crates, so `From`/`TryFrom` cannot join them here:
/// this trait does, declared once per pair by [`wire_enum!`].
pub trait Wire: Sized + Copy {
    type Proto: Copy + TryFrom<i32> + Into<i32>;

    fn to_proto(self) -> Self::Proto;

    /// `None` for the proto's `*_UNSPECIFIED`.
    fn from_proto(proto: Self::Proto) -> Option<Self>;
}

/// Declares a [`Wire`] pair whose variants share their names; both matches
/// are exhaustive, so a variant added on either side fails the build.
macro_rules! wire_enum {
    ($domain:ty => $proto:ty { $($variant:ident),+ $(,)? }) => {
        impl Wire for $domain {
            type Proto = $proto;

            fn to_proto(self) -> $proto {
                match self {
                    $(<$domain>::$variant => <$proto>::$variant),+
                }
            }

            fn from_proto(proto: $proto) -> Option<Self> {
                match proto {
                    <$proto>::Unspecified => None,
                    $(<$proto>::$variant => Some(<$domain>::$variant)),+
                }
            }
        }
    };
}

wire_enum!(Ring => pb::Ring { Lab, Canary, Pilot, Department, Global });
wire_enum!(DeploymentStatus => pb::DeploymentStatus {
    Pending, AwaitingCab, Approved, Rejected, Deploying, Completed, Failed, RolledBack,
});
wire_enum!(ConnectorType => pb::ConnectorType { Intune, Jamf, Sccm, Landscape, Ansible });
wire_enum!(SiteClass => pb::SiteClass { Online, Intermittent, AirGapped });
wire_enum!(EventKind => pb::DeploymentEventKind {
    Created, StatusChanged, OutcomeReported, RingPromoted, Dispatched, Paused, Resumed, Stalled, OutcomeCorrected,
    Delivered, DeliveryFailed, BreakGlass,
});
wire_enum!(Delivery => pb::DeliveryState { Pending, Delivered, Refused });
wire_enum!(CheckKind => pb::GateCheckKind {
    SuccessRate, SampleSize, TimeToCompliance, CabApproval, EvidencePack, RollbackValidated, Window,
});
wire_enum!(PromotionResult => pb::PromotionResult { Promoted, Blocked, RolledBack });
wire_enum!(ControlState => pb::ControlChangeState { Pending, Approved, Rejected, Expired, Superseded });
wire_enum!(Driver => pb::ConnectorDriver { Http, Simulator });
wire_enum!(BreakerState => pb::CircuitBreakerState { Closed, Open, HalfOpen });
wire_enum!(ChangeKind => pb::ConnectorChangeKind { Created, Updated, Deleted, BreakerReset });
wire_enum!(WindowKind => pb::ChangeWindowKind { Allow, Deny });
wire_enum!(CalendarChangeKind => pb::CalendarChangeKind {
    WindowCreated, WindowUpdated, WindowDeleted, FreezeSet, FreezeLifted, FreezeExpired,
});
wire_enum!(FactorKind => pb::RiskFactorKind {
    PrivilegeElevation, BlastRadius, RollbackComplexity, VulnerabilitySeverity, ComplianceImpact,
    DeploymentFrequency, EvidenceCompleteness, HistoricalSuccessRate,
});

pub fn etag(revision: i64) -> String {
    revision.to_string()
}

pub fn deployment_to_proto(d: &Deployment) -> pb::Deployment {
    pb::Deployment {
        id: d.id.to_string(),
        app_name: d.app_name.clone(),
        version: d.version.clone(),
        connector_type: d.connector_type.to_proto().into(),
        current_ring: d.current_ring.to_proto().into(),
        target_ring: d.target_ring.to_proto().into(),
        risk_score: i32::from(d.risk_score),
        requires_cab_approval: d.requires_cab_approval,
        evidence_pack_id: d.evidence_pack_id.to_string(),
        submitter: d.submitter.clone(),
        correlation_id: d.correlation_id.clone(),
        status: d.status.to_proto().into(),
        ring_progress: d.rings.iter().map(ring_progress_to_proto).collect(),
        site_class: d.site_class.to_proto().into(),
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
        ring: p.ring.to_proto().into(),
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
        kind: e.kind.to_proto().into(),
        from_status: e.from_status.map_or(pb::DeploymentStatus::Unspecified, DeploymentStatus::to_proto).into(),
        to_status: e.to_status.to_proto().into(),
        ring: e.ring.to_proto().into(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
        correlation_id: e.correlation_id.clone(),
        create_time: Some(timestamp(e.at)),
        app_name: stored.app_name.clone(),
    }
}

pub fn duration_to_proto(duration: std::time::Duration) -> prost_types::Duration {
    // Only durations past 292 billion years do not fit.
    duration.try_into().unwrap_or(prost_types::Duration { seconds: i64::MAX, nanos: 999_999_999 })
}

pub fn policy_to_proto(p: &RingPolicy) -> pb::RingPolicy {
    pb::RingPolicy {
        ring: p.ring.to_proto().into(),
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

pub fn gate_to_proto(deployment_id: &str, g: &GateEvaluation) -> pb::GateEvaluation {
    pb::GateEvaluation {
        deployment_id: deployment_id.to_owned(),
        ring: g.ring.to_proto().into(),
        next_ring: g.next_ring.map_or(pb::Ring::Unspecified, Ring::to_proto).into(),
        passed: g.passed,
        checks: g
            .checks
            .iter()
            .map(|c| pb::GateCheck {
                kind: c.kind.to_proto().into(),
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
        from_ring: p.from_ring.to_proto().into(),
        to_ring: p.to_ring.map_or(pb::Ring::Unspecified, Ring::to_proto).into(),
        result: p.result.to_proto().into(),
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
    use crate::domain::Label;

    fn round_trips<T: Wire + PartialEq + std::fmt::Debug>(all: &[T]) {
        for &value in all {
            assert_eq!(T::from_proto(value.to_proto()), Some(value));
        }
        let unspecified = T::Proto::try_from(0).ok().expect("value 0 exists");
        assert_eq!(T::from_proto(unspecified), None, "*_UNSPECIFIED is no domain value");
    }

    #[test]
    fn times_convert_exactly() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00.123456Z").unwrap().with_timezone(&Utc);
        assert_eq!(timestamp(at), prost_types::Timestamp { seconds: 1_796_205_600, nanos: 123_456_000 });
        let bake = std::time::Duration::from_millis(3_600_250);
        assert_eq!(duration_to_proto(bake), prost_types::Duration { seconds: 3600, nanos: 250_000_000 });
    }

    #[test]
    fn enums_round_trip_through_proto() {
        round_trips(Ring::ALL);
        round_trips(DeploymentStatus::ALL);
        round_trips(ConnectorType::ALL);
        round_trips(SiteClass::ALL);
        round_trips(EventKind::ALL);
        round_trips(Delivery::ALL);
        round_trips(PromotionResult::ALL);
        round_trips(FactorKind::ALL);
        for &ring in Ring::ALL {
            assert_eq!(ring.to_proto() as i32, i32::from(ring.number()) + 1, "proto numbers LAB as 1");
        }
    }
}
