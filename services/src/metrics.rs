//! Records the deployment instruments of the telemetry catalog from what the
//! store committed: every status entered counts in `deployment_total`, a
//! terminal status observes `deployment_duration_seconds` (from DEPLOYING),
//! creates observe `risk_score_distribution`, and a ring reaching compliance
//! sets `deployment_time_to_compliance_seconds`, every gate check evaluated
//! counts in `promotion_gate_checks_total`. `deployments_current` and
//! `promotion_gate_threshold` are read from the store (on start, shortly after
//! each change, and every minute for other replicas' changes), never summed
//! in memory, so they stay right across restarts. Also maps domain values to
//! the catalog's bounded label enums.

use std::sync::Arc;
use std::time::Duration;

use eucora_otel::Catalog;
use eucora_otel::catalog::{CheckResultLabel, GateCheckLabel, PromotionLabel, RingLabel, StatusLabel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{
    CheckKind, Deployment, DeploymentStatus, EventKind, GateEvaluation, NewEvent, Promotion, PromotionResult, Ring,
};
use crate::store::Store;

/// How long after a change the stored counts are read again (changes in a
/// burst are counted once), and how often regardless.
const RECOUNT_DELAY: Duration = Duration::from_secs(1);
const RECOUNT_INTERVAL: Duration = Duration::from_secs(60);

pub fn check_label(kind: CheckKind) -> GateCheckLabel {
    match kind {
        CheckKind::SuccessRate => GateCheckLabel::SuccessRate,
        CheckKind::SampleSize => GateCheckLabel::SampleSize,
        CheckKind::TimeToCompliance => GateCheckLabel::TimeToCompliance,
        CheckKind::CabApproval => GateCheckLabel::CabApproval,
        CheckKind::EvidencePack => GateCheckLabel::EvidencePack,
        CheckKind::RollbackValidated => GateCheckLabel::RollbackValidated,
    }
}

pub fn ring_label(ring: Ring) -> RingLabel {
    match ring {
        Ring::Lab => RingLabel::Lab,
        Ring::Canary => RingLabel::Canary,
        Ring::Pilot => RingLabel::Pilot,
        Ring::Department => RingLabel::Department,
        Ring::Global => RingLabel::Global,
    }
}

pub fn status_label(status: DeploymentStatus) -> StatusLabel {
    match status {
        DeploymentStatus::Pending => StatusLabel::Pending,
        DeploymentStatus::AwaitingCab => StatusLabel::AwaitingCab,
        DeploymentStatus::Approved => StatusLabel::Approved,
        DeploymentStatus::Rejected => StatusLabel::Rejected,
        DeploymentStatus::Deploying => StatusLabel::Deploying,
        DeploymentStatus::Completed => StatusLabel::Completed,
        DeploymentStatus::Failed => StatusLabel::Failed,
        DeploymentStatus::RolledBack => StatusLabel::RolledBack,
    }
}

/// Deployment instruments, fed with committed changes.
#[derive(Debug, Clone)]
pub struct DeploymentMetrics {
    catalog: Catalog,
    /// Woken by each committed change: the stored counts changed.
    changed: Arc<Notify>,
}

impl DeploymentMetrics {
    pub fn new(catalog: Catalog) -> DeploymentMetrics {
        DeploymentMetrics { catalog, changed: Arc::new(Notify::new()) }
    }

    /// Keeps `deployments_current` and `promotion_gate_threshold` equal to
    /// what the store holds, until `stop`.
    pub async fn keep_current(self, store: Arc<Store>, stop: CancellationToken) {
        loop {
            self.recount(&store).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.changed.notified() => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RECOUNT_DELAY) => {}
                    }
                }
                () = tokio::time::sleep(RECOUNT_INTERVAL) => {}
            }
        }
    }

    async fn recount(&self, store: &Store) {
        match store.deployment_counts().await {
            Ok(counts) => {
                for status in DeploymentStatus::ALL {
                    for ring in Ring::ALL {
                        let count = counts.iter().find(|(s, r, _)| (*s, *r) == (status, ring)).map_or(0, |c| c.2);
                        self.catalog.deployments_current(status_label(status), ring_label(ring), count);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "counting deployments for deployments_current"),
        }
        match store.list_policies().await {
            Ok(policies) => {
                for policy in policies {
                    self.catalog.gate_threshold(ring_label(policy.ring), policy.min_success_rate);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading ring policies for promotion_gate_threshold"),
        }
    }

    /// Ring policies changed: their thresholds are read again.
    pub fn policies_changed(&self) {
        self.changed.notify_one();
    }

    /// Records `events`, just committed for `deployment` (its state after them).
    pub fn committed(&self, deployment: &Deployment, events: &[NewEvent]) {
        self.changed.notify_one();
        let app = deployment.app_name.as_str();
        for event in events {
            match event.kind {
                EventKind::Created => {
                    self.catalog.risk_scored(deployment.risk_score, deployment.requires_cab_approval);
                    self.entered(deployment, event);
                }
                EventKind::StatusChanged => {
                    self.entered(deployment, event);
                    if let (true, Some(progress)) = (event.to_status.is_terminal(), deployment.progress(event.ring)) {
                        self.catalog.ring_left(
                            ring_label(event.ring),
                            (event.at - progress.started_at).as_seconds_f64().max(0.0),
                        );
                    }
                    if let (true, Some(started)) = (event.to_status.is_terminal(), deployment.deploy_started_at) {
                        let seconds = (event.at - started).as_seconds_f64().max(0.0);
                        self.catalog.deployment_finished(
                            status_label(event.to_status),
                            ring_label(event.ring),
                            app,
                            seconds,
                        );
                    }
                }
                EventKind::OutcomeReported | EventKind::OutcomeCorrected => {
                    let reached_now = deployment.progress(event.ring).filter(|p| p.compliant_at == Some(event.at));
                    if let Some(seconds) = reached_now.and_then(|p| p.time_to_compliance()) {
                        self.catalog.compliance_reached(ring_label(event.ring), app, seconds.as_seconds_f64().max(0.0));
                    }
                }
                EventKind::RingPromoted => {
                    // The ring left is the one promoted at this event's time.
                    let left = deployment.rings.iter().find(|p| p.promoted_at == Some(event.at) && p.ring < event.ring);
                    if let Some(left) = left {
                        self.catalog
                            .ring_left(ring_label(left.ring), (event.at - left.started_at).as_seconds_f64().max(0.0));
                    }
                }
                EventKind::Dispatched
                | EventKind::Delivered
                | EventKind::DeliveryFailed
                | EventKind::Paused
                | EventKind::Resumed
                | EventKind::Stalled => {}
            }
        }
    }

    /// A gate was evaluated: its ring's observed success rate becomes current.
    pub fn gate_evaluated(&self, evaluation: &GateEvaluation) {
        if let Some(rate) = evaluation.success_rate() {
            self.catalog.gate_evaluated(ring_label(evaluation.ring), rate);
        }
        for check in &evaluation.checks {
            let result = if check.passed { CheckResultLabel::Pass } else { CheckResultLabel::Fail };
            self.catalog.gate_check(ring_label(evaluation.ring), check_label(check.kind), result);
        }
    }

    /// A promotion attempt was recorded. Completions (leaving the target
    /// ring) and rollbacks have no next ring: `to_ring` repeats `from_ring`.
    pub fn promotion(&self, promotion: &Promotion) {
        let result = match promotion.result {
            PromotionResult::Promoted => PromotionLabel::Promoted,
            PromotionResult::Blocked => PromotionLabel::Blocked,
            PromotionResult::RolledBack => PromotionLabel::RolledBack,
        };
        let to = promotion.to_ring.unwrap_or(promotion.from_ring);
        self.catalog.ring_promotion(ring_label(promotion.from_ring), ring_label(to), result);
    }

    fn entered(&self, deployment: &Deployment, event: &NewEvent) {
        self.catalog.deployment_entered(
            status_label(event.to_status),
            ring_label(event.ring),
            &deployment.app_name,
            deployment.requires_cab_approval,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eucora_otel::catalog::{RingLabel, StatusLabel};

    #[test]
    fn every_domain_value_has_its_label() {
        let rings: Vec<_> = Ring::ALL.iter().map(|r| ring_label(*r).as_str()).collect();
        assert_eq!(rings, RingLabel::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        for status in DeploymentStatus::ALL {
            assert_eq!(status_label(status).as_str(), status.as_label());
        }
        assert_eq!(StatusLabel::ALL.len(), DeploymentStatus::ALL.len());
    }
}
