//! Records the deployment instruments of the telemetry catalog from what the
//! store committed: every status entered counts in `deployment_total`, a
//! terminal status observes `deployment_duration_seconds` (from DEPLOYING),
//! creates observe `risk_score_distribution`, and a ring reaching compliance
//! sets `deployment_time_to_compliance_seconds`, every gate check evaluated
//! counts in `promotion_gate_checks_total`. `deployments_current` and
//! `promotion_gate_threshold` are read from the store (on start, shortly after
//! each change, and every minute for other replicas' changes), never summed
//! in memory, so they stay right across restarts; so is `change_freeze_active`
//! (also read again when the freeze expires). Label values are the domain's
//! own lower snake case labels.

use crate::domain::Label;
use std::sync::Arc;
use std::time::Duration;

use eucora_otel::Catalog;
use eucora_otel::catalog::CheckResultLabel;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::{Deployment, DeploymentStatus, EventKind, GateEvaluation, NewEvent, Promotion, Ring};
use crate::store::Store;

/// How long after a change the stored counts are read again (changes in a
/// burst are counted once), and how often regardless.
const RECOUNT_DELAY: Duration = Duration::from_secs(1);
const RECOUNT_INTERVAL: Duration = Duration::from_secs(60);

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

    /// Keeps `deployments_current`, `promotion_gate_threshold` and
    /// `change_freeze_active` equal to what the store holds at `clock`'s
    /// time, until `stop`.
    pub async fn keep_current(self, store: Arc<Store>, clock: Clock, stop: CancellationToken) {
        loop {
            let freeze_ends = self.recount(&store, &clock).await;
            let next = freeze_ends.map_or(RECOUNT_INTERVAL, |ends| ends.clamp(RECOUNT_DELAY, RECOUNT_INTERVAL));
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.changed.notified() => {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RECOUNT_DELAY) => {}
                    }
                }
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Reads the gauges' values again; how long until the freeze expires, if one holds.
    async fn recount(&self, store: &Store, clock: &Clock) -> Option<Duration> {
        match store.deployment_counts().await {
            Ok(counts) => {
                for &status in DeploymentStatus::ALL {
                    for &ring in Ring::ALL {
                        let count = counts.iter().find(|(s, r, _)| (*s, *r) == (status, ring)).map_or(0, |c| c.2);
                        self.catalog.deployments_current(status.as_label(), ring.as_label(), count);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "counting deployments for deployments_current"),
        }
        match store.list_policies().await {
            Ok(policies) => {
                for policy in policies {
                    self.catalog.gate_threshold(policy.ring.as_label(), policy.min_success_rate);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading ring policies for promotion_gate_threshold"),
        }
        match store.calendar().await {
            Ok(calendar) => {
                let now = clock.now();
                let freeze = calendar.freeze_at(now);
                self.catalog.change_freeze_active(freeze.is_some());
                freeze.map(|freeze| (freeze.expires_at - now).to_std().unwrap_or_default())
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading the change calendar for change_freeze_active");
                None
            }
        }
    }

    /// The change calendar changed: the freeze gauge is read again.
    pub fn calendar_changed(&self) {
        self.changed.notify_one();
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
                            event.ring.as_label(),
                            (event.at - progress.started_at).as_seconds_f64().max(0.0),
                        );
                    }
                    if let (true, Some(started)) = (event.to_status.is_terminal(), deployment.deploy_started_at) {
                        let seconds = (event.at - started).as_seconds_f64().max(0.0);
                        self.catalog.deployment_finished(
                            event.to_status.as_label(),
                            event.ring.as_label(),
                            app,
                            seconds,
                        );
                    }
                }
                EventKind::OutcomeReported | EventKind::OutcomeCorrected => {
                    let reached_now = deployment.progress(event.ring).filter(|p| p.compliant_at == Some(event.at));
                    if let Some(seconds) = reached_now.and_then(|p| p.time_to_compliance()) {
                        self.catalog.compliance_reached(event.ring.as_label(), app, seconds.as_seconds_f64().max(0.0));
                    }
                }
                EventKind::RingPromoted => {
                    // The ring left is the one promoted at this event's time.
                    let left = deployment.rings.iter().find(|p| p.promoted_at == Some(event.at) && p.ring < event.ring);
                    if let Some(left) = left {
                        self.catalog
                            .ring_left(left.ring.as_label(), (event.at - left.started_at).as_seconds_f64().max(0.0));
                    }
                }
                EventKind::Dispatched
                | EventKind::Delivered
                | EventKind::DeliveryFailed
                | EventKind::Paused
                | EventKind::Resumed
                | EventKind::Stalled
                | EventKind::BreakGlass => {}
            }
        }
    }

    /// A gate was evaluated: its ring's observed success rate becomes current.
    pub fn gate_evaluated(&self, evaluation: &GateEvaluation) {
        if let Some(rate) = evaluation.success_rate() {
            self.catalog.gate_evaluated(evaluation.ring.as_label(), rate);
        }
        for check in &evaluation.checks {
            let result = if check.passed { CheckResultLabel::Pass } else { CheckResultLabel::Fail };
            self.catalog.gate_check(evaluation.ring.as_label(), check.kind.as_label(), result);
        }
    }

    /// A call was refused by `limit` (see the catalog's `limits_exceeded_total`).
    pub fn limit_exceeded(&self, limit: &'static str) {
        self.catalog.limit_exceeded(limit);
    }

    /// A promotion attempt was recorded. Completions (leaving the target
    /// ring) and rollbacks have no next ring: `to_ring` repeats `from_ring`.
    pub fn promotion(&self, promotion: &Promotion) {
        let to = promotion.to_ring.unwrap_or(promotion.from_ring);
        self.catalog.ring_promotion(promotion.from_ring.as_label(), to.as_label(), promotion.result.as_label());
    }

    fn entered(&self, deployment: &Deployment, event: &NewEvent) {
        self.catalog.deployment_entered(
            event.to_status.as_label(),
            event.ring.as_label(),
            &deployment.app_name,
            deployment.requires_cab_approval,
        );
    }
}
