//! The rollout controller: re-evaluates deploying deployments when their
//! outcomes change and on an interval, and acts on the pure decision of
//! [`crate::domain::controller::decide`] through the same code paths as the
//! RPCs (same transaction, gate, dispatch, events and metrics) with actor
//! `controller`. It never acts on paused, terminal or CAB-waiting
//! deployments, and promotes with `from_ring` so that a concurrent manual
//! promotion (or a second controller) cannot make it act twice on one step.
//! Among replicas only the holder of the controller lease acts, and every
//! action carries the lease's fence, so a former holder cannot act.

use std::sync::Arc;
use std::time::Duration;

use eucora_otel::Catalog;
use eucora_otel::catalog::ActionStatusLabel;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{AppError, AppResult, Deployments, Promotions, Step};
use crate::clock::{Clock, stored_time};
use crate::coord::LeaseHandle;
use crate::domain::controller::{Decision, decide};
use crate::domain::{ChangeContext, Deployment, DeploymentStatus, EventKind, Fence, RingPolicy, gate};
use crate::store::{DeploymentFilter, Store, StoredEvent};

/// The actor recorded on everything the controller does.
pub const ACTOR: &str = "controller";
/// Deployments read per page during a sweep.
const SWEEP_PAGE: u64 = 200;

pub struct Controller {
    store: Arc<Store>,
    deployments: Deployments,
    promotions: Promotions,
    catalog: Catalog,
    clock: Clock,
}

impl Controller {
    pub fn new(
        store: Arc<Store>,
        deployments: Deployments,
        promotions: Promotions,
        catalog: Catalog,
        clock: Clock,
    ) -> Controller {
        Controller { store, deployments, promotions, catalog, clock }
    }

    /// Evaluates on every `interval`, whenever a deployment's outcomes or
    /// state change, and at once on taking the lease — only while `lease`
    /// is held — until `stop`.
    pub async fn run(
        self,
        mut feed: broadcast::Receiver<Arc<StoredEvent>>,
        interval: Duration,
        mut lease: LeaseHandle,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                // Taken over: whatever the former holder left is looked at now.
                () = lease.changed() => if let Some(fence) = lease.fence() { self.sweep(&fence).await },
                _ = ticks.tick() => if let Some(fence) = lease.fence() { self.sweep(&fence).await },
                received = feed.recv() => match (received, lease.fence()) {
                    (_, None) => {}
                    (Ok(event), Some(fence)) if wakes_controller(&event) && event.event.actor != ACTOR => {
                        self.evaluate(event.event.deployment_id, &fence).await;
                    }
                    (Ok(_), _) => {}
                    // Missed some events: look at everything instead.
                    (Err(broadcast::error::RecvError::Lagged(_)), Some(fence)) => self.sweep(&fence).await,
                    (Err(broadcast::error::RecvError::Closed), _) => return,
                },
            }
        }
    }

    /// Evaluates every deploying deployment under `fence`; publishes how
    /// many are stalled.
    pub async fn sweep(&self, fence: &Fence) {
        let filter = DeploymentFilter { status: Some(DeploymentStatus::Deploying), ..DeploymentFilter::default() };
        // One read of the five policies serves the whole sweep.
        let policies = match self.store.list_policies().await {
            Ok(policies) => policies,
            Err(err) => {
                tracing::warn!(error = %err, "controller sweep could not read the ring policies");
                return;
            }
        };
        let mut after = None;
        let mut stalled = 0;
        loop {
            let page = match self.store.list_deployments(&filter, after, SWEEP_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, "controller sweep could not list deployments");
                    return;
                }
            };
            for deployment in &page.items {
                let policy = &policies[deployment.current_ring];
                if self.act(deployment, policy, fence).await.is_some_and(|d| d.stalled_since.is_some()) {
                    stalled += 1;
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.catalog.deployments_stalled(stalled);
    }

    /// Evaluates one deployment now, under `fence`.
    pub async fn evaluate(&self, id: Uuid, fence: &Fence) {
        let read = async {
            let deployment = self.store.get_deployment(id).await?;
            let policy = self.store.get_policy(deployment.current_ring).await?;
            Ok::<_, crate::store::StoreError>((deployment, policy))
        };
        match read.await {
            Ok((deployment, policy)) => {
                self.act(&deployment, &policy, fence).await;
            }
            Err(err) => tracing::warn!(deployment = %id, error = %err, "controller could not read deployment"),
        }
    }

    /// Decides and acts under `policy` (the current ring's); returns the
    /// deployment as it stands afterwards when known.
    async fn act(&self, deployment: &Deployment, policy: &RingPolicy, fence: &Fence) -> Option<Deployment> {
        let now = stored_time(self.clock.now());
        let evaluation = gate::evaluate(deployment, policy, now);
        let decision = decide(deployment, policy, &evaluation, now);
        let action = decision.as_label();
        self.catalog.controller_evaluated(action);
        let ctx = |reason: String| ChangeContext {
            now,
            fence: Some(fence.clone()),
            ..self.clock.context(ACTOR.to_owned(), reason, None)
        };
        let step = Step { id: deployment.id, request_id: None, etag: None, from_ring: Some(deployment.current_ring) };
        let result: AppResult<Option<Deployment>> = match decision {
            Decision::Promote => {
                let reason = format!(
                    "gate passed and {} baked {}",
                    deployment.current_ring,
                    gate::human_duration(policy.bake_time)
                );
                self.promotions.promote_as(step, &ctx(reason)).await.map(|_| None)
            }
            Decision::RollBack { reason } => self.promotions.roll_back_as(step, &ctx(reason)).await.map(|_| None),
            Decision::FlagStalled { reason } => self
                .deployments
                .mutate(deployment.id, Some(deployment.revision), &ctx(reason), |d, ctx| d.flag_stalled(ctx))
                .await
                .map(Some),
            Decision::Wait { .. } | Decision::Skip { .. } => return Some(deployment.clone()),
        };
        match result {
            Ok(after) => {
                tracing::info!(deployment = %deployment.id, action, "controller acted");
                self.catalog.controller_acted(action, ActionStatusLabel::Done);
                after
            }
            Err(err @ AppError::Fenced(_)) => {
                tracing::warn!(deployment = %deployment.id, action, error = %err, "controller action refused: this replica lost the lease");
                self.catalog.controller_acted(action, ActionStatusLabel::Fenced);
                None
            }
            Err(err) => {
                // Someone else acted first, a connector is down, …: the next evaluation retries.
                tracing::info!(deployment = %deployment.id, action, error = %err, "controller action did not happen");
                self.catalog.controller_acted(action, ActionStatusLabel::Failed);
                None
            }
        }
    }
}

/// Events after which a deployment may be ready for the controller.
fn wakes_controller(event: &StoredEvent) -> bool {
    matches!(event.event.kind, EventKind::OutcomeReported | EventKind::RingPromoted | EventKind::Resumed)
        || (event.event.kind == EventKind::StatusChanged && event.event.to_status == DeploymentStatus::Deploying)
}
