//! Promotion use-cases: ring policies, gate evaluation, promotion (exactly
//! once per ring step, idempotent by request id), break-glass (a held
//! promotion made on two identities' word) and rollback.

use crate::domain::Label;
use std::sync::Arc;

use uuid::Uuid;

use super::{AppError, AppResult, ControlChanges, Deployments, Guarded, check_etag, retry_on_conflict};
use crate::connectors::Operation;
use crate::domain::control::{self, ControlChange, ControlSubject};
use crate::domain::{
    Change, ChangeContext, Deployment, DeploymentError, DeploymentStatus, GateEvaluation, Promotion, PromotionResult,
    Ring, RingPolicies, RingPolicy, gate,
};
use crate::metrics::DeploymentMetrics;
use crate::store::connectors::OutboxWrite;
use crate::store::{Page, Store, StoreError};

/// Promotion use-cases.
#[derive(Clone)]
pub struct Promotions {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
    /// Hands work to connectors and fails deployments they refuse.
    deployments: Deployments,
    /// Holds policy updates that weaken a control for a second admin.
    control: ControlChanges,
}

impl Promotions {
    pub fn new(
        store: Arc<Store>,
        metrics: DeploymentMetrics,
        deployments: Deployments,
        control: ControlChanges,
    ) -> Promotions {
        Promotions { store, metrics, deployments, control }
    }

    /// # Errors
    /// Database failures.
    pub async fn policy(&self, ring: Ring) -> AppResult<RingPolicy> {
        Ok(self.store.get_policy(ring).await?)
    }

    /// # Errors
    /// Database failures.
    pub async fn policies(&self) -> AppResult<RingPolicies> {
        Ok(self.store.list_policies().await?)
    }

    /// Changes `ring`'s policy to what `change` makes of the stored one,
    /// recording who and why; without an etag a lost race is retried. An
    /// update that weakens a control is proposed instead, for a second admin.
    ///
    /// # Errors
    /// ABORTED for a stale etag; whatever `change` refuses; database failures.
    pub async fn update_policy(
        &self,
        ring: Ring,
        etag: Option<i64>,
        ctx: &ChangeContext,
        change: impl Fn(&RingPolicy) -> AppResult<RingPolicy>,
    ) -> AppResult<Guarded<RingPolicy>> {
        let saved = retry_on_conflict(etag.is_none(), || async {
            let before = self.store.get_policy(ring).await?;
            check_etag(etag, before.revision, format_args!("the {ring} policy"))?;
            let after = change(&before)?;
            let weakenings = control::policy_weakenings(&before, &after);
            if !weakenings.is_empty() {
                let subject = ControlSubject::RingPolicy { before: Box::new(before.clone()), after: Box::new(after) };
                let change = self.control.propose(subject, weakenings, ctx).await?;
                return Ok(Guarded::Proposed { current: before, change });
            }
            Ok(Guarded::Applied(self.store.update_policy(&before, &after, ctx).await?))
        })
        .await?;
        self.metrics.policies_changed();
        Ok(saved)
    }

    /// The ring policy change log after sequence `after`, of one ring or all.
    ///
    /// # Errors
    /// Database failures.
    pub async fn policy_changes(
        &self,
        ring: Option<Ring>,
        after: Option<i64>,
        limit: u64,
    ) -> AppResult<Page<Change<RingPolicy>>> {
        Ok(self.store.list_policy_changes(ring, after, limit).await?)
    }

    /// The gate of the deployment's current ring, judged at `ctx`'s time.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn evaluate_gate(&self, id: Uuid, now: chrono::DateTime<chrono::Utc>) -> AppResult<GateEvaluation> {
        let deployment = self.store.get_deployment(id).await?;
        let policy = self.store.get_policy(deployment.current_ring).await?;
        let mut evaluation = gate::evaluate(&deployment, &policy, now);
        self.store.calendar().await?.check_gate(&deployment, &mut evaluation);
        self.metrics.gate_evaluated(&evaluation);
        Ok(evaluation)
    }

    /// The promotions and rollbacks of one deployment, a page at a time.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn promotions_of(&self, id: Uuid, after: Option<i64>, limit: u64) -> AppResult<Page<Promotion>> {
        self.store.get_deployment(id).await?;
        Ok(self.store.list_promotions(id, after, limit).await?)
    }

    /// The answer to a call whose request id already has a recorded result.
    async fn replay(
        &self,
        deployment_id: Uuid,
        recorded: Promotion,
        expected: &[PromotionResult],
    ) -> AppResult<(Deployment, Promotion)> {
        if recorded.deployment_id != deployment_id || !expected.contains(&recorded.result) {
            return Err(AppError::AlreadyExists(format!(
                "request_id {:?} was already used for another call (deployment {}, {}); use a new request_id",
                recorded.request_id.as_deref().unwrap_or_default(),
                recorded.deployment_id,
                recorded.result.as_label()
            )));
        }
        if let (PromotionResult::Blocked, Some(gate)) = (recorded.result, &recorded.gate) {
            return Err(blocked(gate));
        }
        let deployment = self.store.get_deployment(deployment_id).await?;
        Ok((deployment, recorded))
    }

    /// Promotes one step as `ctx.actor` (an operator's call or the controller).
    ///
    /// # Errors
    /// As PromoteDeployment.
    pub async fn promote_as(&self, step: Step, ctx: &ChangeContext) -> AppResult<(Deployment, Promotion)> {
        self.promote_step(step, ctx, None).await
    }

    /// Asks for break-glass on deployment `id`: a promotion out of its current
    /// ring although its gate or the change calendar holds it, proposed as a
    /// control change listing what it would override, for another identity to approve.
    ///
    /// # Errors
    /// NOT_FOUND; FAILED_PRECONDITION when the deployment is not deploying or
    /// nothing holds it; database failures.
    pub async fn request_break_glass(&self, id: Uuid, ctx: &ChangeContext) -> AppResult<Box<ControlChange>> {
        let deployment = self.store.get_deployment(id).await?;
        if deployment.status != DeploymentStatus::Deploying {
            return Err(DeploymentError::NotPromotable { status: deployment.status }.into());
        }
        let policy = self.store.get_policy(deployment.current_ring).await?;
        let mut evaluation = gate::evaluate(&deployment, &policy, ctx.now);
        self.store.calendar().await?.check_gate(&deployment, &mut evaluation);
        if evaluation.passed {
            return Err(AppError::FailedPrecondition(format!(
                "nothing holds deployment {id} in {}: its gate passes and the change calendar lets it through; promote it",
                deployment.current_ring
            )));
        }
        let overrides = evaluation.failed_checks().map(|check| check.message.clone()).collect();
        let subject = ControlSubject::BreakGlass { deployment_id: id, from_ring: deployment.current_ring };
        self.control.propose(subject, overrides, ctx).await
    }

    /// Approves or rejects control change `id` as `ctx.actor`. Approving a
    /// break-glass promotes at once, as the approver, with the request's
    /// reason (idempotent by the change's id); other changes are
    /// [`ControlChanges::decide`]d.
    ///
    /// # Errors
    /// As [`ControlChanges::decide`]; FAILED_PRECONDITION when the deployment
    /// moved on since the request (the change is then superseded).
    pub async fn decide_control_change(
        &self,
        id: Uuid,
        decision: control::Decision,
        ctx: &ChangeContext,
    ) -> AppResult<ControlChange> {
        let mut change = self.control.get(id, ctx.now).await?;
        if let (ControlSubject::BreakGlass { deployment_id, from_ring }, control::Decision::Approve) =
            (change.subject.clone(), decision)
        {
            // Refused before anything moves: not pending, or approved by its requester.
            change.decide(decision, &ctx.actor, &ctx.reason, ctx.now)?;
            let step = Step {
                id: deployment_id,
                request_id: Some(format!("break-glass-{id}")),
                etag: None,
                from_ring: Some(from_ring),
            };
            let approved = ChangeContext { reason: change.reason.clone(), ..ctx.clone() };
            match self.promote_step(step, &approved, Some(&change.proposed_by)).await {
                Ok(_) => {}
                Err(err @ (AppError::Aborted(_) | AppError::FailedPrecondition(_))) => {
                    self.store.supersede_control_change(id, ctx.now).await?;
                    return Err(AppError::FailedPrecondition(format!("break-glass {id} is superseded: {err}")));
                }
                Err(err) => return Err(err),
            }
        }
        self.control.decide(id, decision, ctx).await
    }

    /// Promotes one step; with `break_glass` (who requested it), even when
    /// the gate or the calendar holds it.
    async fn promote_step(
        &self,
        step: Step,
        ctx: &ChangeContext,
        break_glass: Option<&str>,
    ) -> AppResult<(Deployment, Promotion)> {
        let Step { id, request_id, etag, from_ring } = step;
        let ctx = ctx.clone();
        let expected = [PromotionResult::Promoted, PromotionResult::Blocked];
        if let Some(recorded) = self.recorded(request_id.as_deref()).await? {
            return self.replay(id, recorded, &expected).await;
        }
        let mut deployment = self.store.get_deployment(id).await?;
        check_etag(etag, deployment.revision, format_args!("deployment {}", deployment.id))?;
        if let Some(expected_ring) = from_ring.filter(|ring| *ring != deployment.current_ring) {
            return Err(DeploymentError::RingMoved { expected: expected_ring, current: deployment.current_ring }.into());
        }
        if deployment.status != DeploymentStatus::Deploying {
            return Err(DeploymentError::NotPromotable { status: deployment.status }.into());
        }
        let policy = self.store.get_policy(deployment.current_ring).await?;
        let mut evaluation = gate::evaluate(&deployment, &policy, ctx.now);
        // The freeze and the windows hold manual, automatic and CAB-approved promotions alike.
        self.store.calendar().await?.check_gate(&deployment, &mut evaluation);
        self.metrics.gate_evaluated(&evaluation);
        let mut promotion = new_promotion(&deployment, &ctx, request_id.clone(), PromotionResult::Promoted);
        promotion.to_ring = evaluation.next_ring;
        promotion.gate = Some(evaluation.clone());

        if !evaluation.passed && break_glass.is_none() {
            promotion.result = PromotionResult::Blocked;
            promotion.to_ring = evaluation.next_ring;
            return match self.store.record_blocked_promotion(&promotion).await {
                Ok(()) => {
                    self.metrics.promotion(&promotion);
                    Err(blocked(&evaluation))
                }
                Err(StoreError::RequestIdTaken(_)) => self.replay_raced(id, request_id, &expected).await,
                Err(err) => Err(err.into()),
            };
        }

        let queued = match evaluation.next_ring {
            Some(next) => Some(self.deployments.queue(&deployment, next, Operation::Deploy).await?),
            None => None,
        };
        let handover = queued.as_ref().map(|q| &q.handover);
        let events = match break_glass {
            Some(requested_by) => deployment.break_glass(&evaluation, handover, requested_by, &ctx)?,
            None => deployment.promote(&evaluation, handover, &ctx)?,
        };
        let outbox = queued.as_ref().map(|q| OutboxWrite::Queue(&q.record));
        match self.store.save_promotion(&deployment, &events, &promotion, outbox, ctx.fence.as_ref()).await {
            Ok(saved) => {
                self.metrics.committed(&saved, &events);
                self.metrics.promotion(&promotion);
                // The next ring's connector hears of it only once the promotion is durable.
                let shown = match &queued {
                    Some(queued) => self.deployments.deliver(&saved, &queued.record, &ctx).await?,
                    None => saved,
                };
                Ok((shown, promotion))
            }
            Err(StoreError::RevisionConflict { .. } | StoreError::RequestIdTaken(_)) => {
                self.replay_raced(id, request_id, &expected).await
            }
            Err(err) => Err(err.into()),
        }
    }

    /// After losing a race: the winner's result when it carried our request
    /// id (a concurrent retry), ABORTED otherwise.
    async fn replay_raced(
        &self,
        id: Uuid,
        request_id: Option<String>,
        expected: &[PromotionResult],
    ) -> AppResult<(Deployment, Promotion)> {
        if let Some(recorded) = self.recorded(request_id.as_deref()).await? {
            return self.replay(id, recorded, expected).await;
        }
        let now = self.store.get_deployment(id).await?;
        Err(AppError::Aborted(format!(
            "a concurrent change won: deployment {id} is now {} in {}; read it again and retry",
            now.status, now.current_ring
        )))
    }

    async fn recorded(&self, request_id: Option<&str>) -> AppResult<Option<Promotion>> {
        match request_id {
            Some(request_id) => Ok(self.store.find_promotion(request_id).await?),
            None => Ok(None),
        }
    }

    /// Rolls back as `ctx.actor` (an operator's call or the controller), with `ctx.reason`.
    ///
    /// # Errors
    /// As RollbackDeployment.
    pub async fn roll_back_as(&self, step: Step, ctx: &ChangeContext) -> AppResult<(Deployment, Promotion)> {
        let Step { id, request_id, etag, from_ring } = step;
        let ctx = ctx.clone();
        let expected = [PromotionResult::RolledBack];
        if let Some(recorded) = self.recorded(request_id.as_deref()).await? {
            return self.replay(id, recorded, &expected).await;
        }
        let rolled_back = retry_on_conflict(etag.is_none() && request_id.is_none(), || async {
            let mut deployment = self.store.get_deployment(id).await?;
            check_etag(etag, deployment.revision, format_args!("deployment {}", deployment.id))?;
            if let Some(expected_ring) = from_ring.filter(|ring| *ring != deployment.current_ring) {
                return Err(
                    DeploymentError::RingMoved { expected: expected_ring, current: deployment.current_ring }.into()
                );
            }
            let promotion = new_promotion(&deployment, &ctx, request_id.clone(), PromotionResult::RolledBack);
            deployment.status.check_transition(DeploymentStatus::RolledBack).map_err(DeploymentError::from)?;
            // Only a deny window that forbids rollbacks holds one; the freeze never does.
            let calendar = self.store.calendar().await?;
            super::calendar::check_hold(
                &calendar,
                &deployment,
                deployment.current_ring,
                true,
                ctx.now,
                "the rollback",
            )?;
            let removal = match deployment.rings.is_empty() {
                true => None,
                false => {
                    let ring = deployment.current_ring;
                    Some(self.deployments.queue(&deployment, ring, Operation::Remove).await?)
                }
            };
            let events = deployment.roll_back(removal.as_ref().map(|q| &q.handover), &ctx)?;
            let outbox = removal.as_ref().map(|q| OutboxWrite::Queue(&q.record));
            let saved = self.store.save_promotion(&deployment, &events, &promotion, outbox, ctx.fence.as_ref()).await?;
            self.metrics.committed(&saved, &events);
            self.metrics.promotion(&promotion);
            Ok((saved, promotion, removal))
        })
        .await;
        match rolled_back {
            Ok((saved, promotion, removal)) => {
                // The removal reaches the connector only once the rollback is durable.
                let shown = match &removal {
                    Some(queued) => self.deployments.deliver(&saved, &queued.record, &ctx).await?,
                    None => saved,
                };
                Ok((shown, promotion))
            }
            // Lost to a concurrent change: a retry of ours answers as the first did.
            Err(AppError::Conflict(_)) => self.replay_raced(id, request_id, &expected).await,
            Err(err) => Err(err),
        }
    }
}

/// Which deployment step a promotion or rollback is about.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: Uuid,
    /// Client-chosen idempotency key.
    pub request_id: Option<String>,
    /// The revision the caller read.
    pub etag: Option<i64>,
    /// The ring the caller means to leave: another ring means someone else moved it.
    pub from_ring: Option<Ring>,
}

fn new_promotion(
    d: &Deployment,
    ctx: &ChangeContext,
    request_id: Option<String>,
    result: PromotionResult,
) -> Promotion {
    Promotion {
        id: Uuid::new_v4(),
        deployment_id: d.id,
        from_ring: d.current_ring,
        to_ring: None,
        result,
        gate: None,
        actor: ctx.actor.clone(),
        reason: ctx.reason.clone(),
        correlation_id: ctx.correlation_id.clone(),
        request_id,
        created_at: ctx.now,
    }
}

/// FAILED_PRECONDITION naming every failed check.
fn blocked(evaluation: &GateEvaluation) -> AppError {
    let failed: Vec<_> = evaluation.failed_checks().map(|c| c.message.as_str()).collect();
    let message = format!("the gate to leave {} did not pass: {}", evaluation.ring, failed.join("; "));
    AppError::GateBlocked { message, evaluation: Box::new(evaluation.clone()) }
}
