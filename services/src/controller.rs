//! The rollout controller: re-evaluates deploying deployments when their
//! outcomes change and on an interval, and acts on the pure decision of
//! [`crate::domain::controller::decide`] through the same code paths as the
//! RPCs (same transaction, gate, dispatch, events and metrics) with actor
//! `controller`. It never acts on paused, terminal or CAB-waiting
//! deployments, and promotes with `from_ring` so that a concurrent manual
//! promotion (or a second controller) cannot make it act twice on one step.
//! Among replicas only the holder of the controller lease acts, and every
//! action carries the lease's fence, so a former holder cannot act. The
//! change calendar holds promotions (a freeze, windows) and its sweep lifts
//! a freeze that has expired.

use std::sync::Arc;
use std::time::Duration;

use eucora_otel::Catalog;
use eucora_otel::catalog::ActionStatusLabel;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{AppError, AppResult, ChangeCalendar, Deployments, Promotions, Step};
use crate::clock::{Clock, stored_time};
use crate::coord::LeaseHandle;
use crate::domain::calendar::{Calendar, Hold};
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
    calendar: ChangeCalendar,
    catalog: Catalog,
    clock: Clock,
}

impl Controller {
    pub fn new(
        store: Arc<Store>,
        deployments: Deployments,
        promotions: Promotions,
        calendar: ChangeCalendar,
        catalog: Catalog,
        clock: Clock,
    ) -> Controller {
        Controller { store, deployments, promotions, calendar, catalog, clock }
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
            let fence = tokio::select! {
                () = stop.cancelled() => return,
                // Taken over: whatever the former holder left is looked at now.
                () = lease.changed() => lease.fence(),
                _ = ticks.tick() => lease.fence(),
                received = feed.recv() => match (received, lease.fence()) {
                    (_, None) => None,
                    (Ok(event), Some(fence)) if wakes_controller(&event) && event.event.actor != ACTOR => {
                        if self.evaluate(event.event.deployment_id, &fence).await.is_err() {
                            lease.refused(&fence);
                        }
                        None
                    }
                    (Ok(_), _) => None,
                    // Missed some events: look at everything instead.
                    (Err(broadcast::error::RecvError::Lagged(_)), fence) => fence,
                    (Err(broadcast::error::RecvError::Closed), _) => return,
                },
            };
            if let Some(fence) = fence
                && self.sweep(&fence).await.is_err()
            {
                lease.refused(&fence);
            }
        }
    }

    /// Lifts an expired freeze, then evaluates every deploying deployment
    /// under `fence`; publishes how many are stalled and how many the
    /// calendar holds.
    ///
    /// # Errors
    /// [`LeaseLost`] when an action under `fence` was refused: the sweep
    /// stops there, as every further action would be refused too.
    pub async fn sweep(&self, fence: &Fence) -> Result<(), LeaseLost> {
        // Idempotent (only an expired freeze is removed): no fence needed.
        let ctx = self.clock.context(ACTOR.to_owned(), "the change freeze reached its expiry".to_owned(), None);
        if let Err(err) = self.calendar.expire_freeze(&ctx).await {
            tracing::warn!(error = %err, "controller sweep could not lift an expired freeze");
        }
        let filter = DeploymentFilter { status: Some(DeploymentStatus::Deploying), ..DeploymentFilter::default() };
        // One read of the five policies and the calendar serves the whole sweep.
        let read = async {
            Ok::<_, crate::store::StoreError>((self.store.list_policies().await?, self.store.calendar().await?))
        };
        let (policies, calendar) = match read.await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(error = %err, "controller sweep could not read the ring policies and calendar");
                return Ok(());
            }
        };
        let mut after = None;
        let mut stalled = 0;
        let mut held = [0; Hold::LABELS.len()];
        loop {
            let page = match self.store.list_deployments(&filter, after, SWEEP_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, "controller sweep could not list deployments");
                    return Ok(());
                }
            };
            for deployment in &page.items {
                let policy = &policies[deployment.current_ring];
                let acted = self.act(deployment, policy, &calendar, fence).await?;
                if acted.deployment.is_some_and(|d| d.stalled_since.is_some()) {
                    stalled += 1;
                }
                if let Some(hold) = acted.held {
                    held[Hold::LABELS.iter().position(|label| *label == hold).expect("a known label")] += 1;
                }
            }
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        self.catalog.deployments_stalled(stalled);
        for (label, count) in Hold::LABELS.iter().zip(held) {
            self.catalog.deployments_waiting_for_window(label, count);
        }
        Ok(())
    }

    /// Evaluates one deployment now, under `fence`.
    ///
    /// # Errors
    /// [`LeaseLost`] when its action under `fence` was refused.
    pub async fn evaluate(&self, id: Uuid, fence: &Fence) -> Result<(), LeaseLost> {
        let read = async {
            let deployment = self.store.get_deployment(id).await?;
            let policy = self.store.get_policy(deployment.current_ring).await?;
            Ok::<_, crate::store::StoreError>((deployment, policy, self.store.calendar().await?))
        };
        match read.await {
            Ok((deployment, policy, calendar)) => self.act(&deployment, &policy, &calendar, fence).await.map(drop),
            Err(err) => {
                tracing::warn!(deployment = %id, error = %err, "controller could not read deployment");
                Ok(())
            }
        }
    }

    /// Decides and acts under `policy` (the current ring's) and `calendar`.
    async fn act(
        &self,
        deployment: &Deployment,
        policy: &RingPolicy,
        calendar: &Calendar,
        fence: &Fence,
    ) -> Result<Acted, LeaseLost> {
        let now = stored_time(self.clock.now());
        let mut evaluation = gate::evaluate(deployment, policy, now);
        let hold = calendar.check_gate(deployment, &mut evaluation);
        let decision = decide(deployment, policy, &evaluation, calendar, now);
        // Held by the calendar alone: counted as waiting for a window.
        let held = match &decision {
            Decision::Wait { .. } if evaluation.failed_checks().all(|c| c.kind == crate::domain::CheckKind::Window) => {
                hold.map(|hold| hold.label())
            }
            _ => None,
        };
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
            Decision::Wait { .. } | Decision::Skip { .. } => {
                return Ok(Acted { deployment: Some(deployment.clone()), held });
            }
        };
        let deployment = match result {
            Ok(after) => {
                tracing::info!(deployment = %deployment.id, action, "controller acted");
                self.catalog.controller_acted(action, ActionStatusLabel::Done);
                after
            }
            Err(err @ AppError::Fenced(_)) => {
                tracing::warn!(deployment = %deployment.id, action, error = %err, "controller action refused: this replica lost the lease");
                self.catalog.controller_acted(action, ActionStatusLabel::Fenced);
                return Err(LeaseLost);
            }
            Err(err) => {
                // Someone else acted first, a connector is down, …: the next evaluation retries.
                tracing::info!(deployment = %deployment.id, action, error = %err, "controller action did not happen");
                self.catalog.controller_acted(action, ActionStatusLabel::Failed);
                None
            }
        };
        Ok(Acted { deployment, held: None })
    }
}

/// An action under the controller's fence was refused: another replica
/// holds the lease now, whatever this one's keeper last heard.
#[derive(Debug)]
pub struct LeaseLost;

/// What became of one evaluation.
struct Acted {
    /// The deployment as it stands afterwards, when known.
    deployment: Option<Deployment>,
    /// Ready to promote but held by the calendar: the hold's label.
    held: Option<&'static str>,
}

/// Events after which a deployment may be ready for the controller.
fn wakes_controller(event: &StoredEvent) -> bool {
    matches!(event.event.kind, EventKind::OutcomeReported | EventKind::RingPromoted | EventKind::Resumed)
        || (event.event.kind == EventKind::StatusChanged && event.event.to_status == DeploymentStatus::Deploying)
}
