//! RingPromotionService adapter: ring policies, gate evaluation, promotion
//! (exactly once per ring step) and rollback.

use std::sync::Arc;

use eucora::v1 as pb;
use eucora::v1::ring_promotion_service_server::RingPromotionService;
use tonic::{Request, Response, Status};
use tonic_types::PreconditionViolation;
use uuid::Uuid;

use super::change_context;
use super::convert::{self, deployment_to_proto, gate_to_proto, policy_to_proto, promotion_to_proto};
use super::deployment::DeploymentApi;
use super::page_token;
use super::validate::{MAX_ACTOR_LEN, MAX_REASON_LEN, Violations, check_etag, truncate};
use crate::connectors::Operation;
use crate::domain::{
    ChangeContext, Deployment, DeploymentError, DeploymentStatus, GateEvaluation, Promotion, PromotionResult, Ring,
    RingPolicy, gate,
};
use crate::error::{ApiError, ApiResult};
use crate::metrics::DeploymentMetrics;
use crate::store::connectors::OutboxWrite;
use crate::store::promotions::PolicyChange;
use crate::store::{Store, StoreError};

const MAX_REQUEST_ID_LEN: usize = 128;
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
/// Retries of a rollback or policy update without etag that lost a race.
const MAX_ATTEMPTS: usize = 8;

/// The RingPromotionService implementation.
#[derive(Clone)]
pub struct PromotionApi {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
    /// Hands work to connectors and fails deployments they refuse.
    deployments: DeploymentApi,
}

impl PromotionApi {
    pub fn new(store: Arc<Store>, metrics: DeploymentMetrics, deployments: DeploymentApi) -> PromotionApi {
        PromotionApi { store, metrics, deployments }
    }

    /// The answer to a call whose request id already has a recorded result.
    async fn replay(
        &self,
        deployment_id: Uuid,
        recorded: Promotion,
        expected: &[PromotionResult],
    ) -> ApiResult<(pb::Deployment, pb::Promotion)> {
        if recorded.deployment_id != deployment_id || !expected.contains(&recorded.result) {
            return Err(ApiError::AlreadyExists(format!(
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
        Ok((deployment_to_proto(&deployment), promotion_to_proto(&recorded)))
    }

    async fn promote(
        &self,
        request: &Request<pb::PromoteDeploymentRequest>,
    ) -> ApiResult<(pb::Deployment, pb::Promotion)> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let actor = v.optional_text("actor", &req.actor, MAX_ACTOR_LEN);
        let reason = v.optional_text("reason", &req.reason, MAX_REASON_LEN);
        let etag = v.etag("etag", &req.etag);
        let from_ring = v.enumeration::<pb::Ring>("from_ring", req.from_ring, false).and_then(convert::ring_from_proto);
        v.finish()?;
        let step = Step { id, request_id, etag, from_ring };
        self.promote_as(step, &change_context(request, actor, reason)).await
    }

    /// Promotes one step as `ctx.actor` (an operator's call or the controller).
    ///
    /// # Errors
    /// As PromoteDeployment.
    pub async fn promote_as(&self, step: Step, ctx: &ChangeContext) -> ApiResult<(pb::Deployment, pb::Promotion)> {
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
        let evaluation = gate::evaluate(&deployment, &policy, ctx.now);
        self.metrics.gate_evaluated(&evaluation);
        let mut promotion = new_promotion(&deployment, &ctx, request_id.clone(), PromotionResult::Promoted);
        promotion.to_ring = evaluation.next_ring;
        promotion.gate = Some(evaluation.clone());

        if !evaluation.passed {
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
        let events = deployment.promote(&evaluation, queued.as_ref().map(|q| &q.handover), &ctx)?;
        let outbox = queued.as_ref().map(|q| OutboxWrite::Queue(&q.record));
        match self.store.save_promotion(&deployment, &events, &promotion, outbox).await {
            Ok(saved) => {
                self.metrics.committed(&saved, &events);
                self.metrics.promotion(&promotion);
                // The next ring's connector hears of it only once the promotion is durable.
                let shown = match &queued {
                    Some(queued) => self.deployments.deliver(&saved, &queued.record, &ctx).await?,
                    None => saved,
                };
                Ok((deployment_to_proto(&shown), promotion_to_proto(&promotion)))
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
    ) -> ApiResult<(pb::Deployment, pb::Promotion)> {
        if let Some(recorded) = self.recorded(request_id.as_deref()).await? {
            return self.replay(id, recorded, expected).await;
        }
        let now = self.store.get_deployment(id).await?;
        Err(ApiError::Aborted(format!(
            "a concurrent change won: deployment {id} is now {} in {}; read it again and retry",
            now.status, now.current_ring
        )))
    }

    async fn recorded(&self, request_id: Option<&str>) -> ApiResult<Option<Promotion>> {
        match request_id {
            Some(request_id) => Ok(self.store.find_promotion(request_id).await?),
            None => Ok(None),
        }
    }

    async fn roll_back(
        &self,
        request: &Request<pb::RollbackDeploymentRequest>,
    ) -> ApiResult<(pb::Deployment, pb::Promotion)> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let actor = v.optional_text("actor", &req.actor, MAX_ACTOR_LEN);
        let reason = v.required_text("reason", &req.reason, MAX_REASON_LEN);
        let etag = v.etag("etag", &req.etag);
        v.finish()?;
        let step = Step { id, request_id, etag, from_ring: None };
        self.roll_back_as(step, &change_context(request, actor, Some(reason))).await
    }

    /// Rolls back as `ctx.actor` (an operator's call or the controller), with `ctx.reason`.
    ///
    /// # Errors
    /// As RollbackDeployment.
    pub async fn roll_back_as(&self, step: Step, ctx: &ChangeContext) -> ApiResult<(pb::Deployment, pb::Promotion)> {
        let Step { id, request_id, etag, from_ring } = step;
        let ctx = ctx.clone();
        let expected = [PromotionResult::RolledBack];
        if let Some(recorded) = self.recorded(request_id.as_deref()).await? {
            return self.replay(id, recorded, &expected).await;
        }
        for _ in 0..MAX_ATTEMPTS {
            let mut deployment = self.store.get_deployment(id).await?;
            check_etag(etag, deployment.revision, format_args!("deployment {}", deployment.id))?;
            if let Some(expected_ring) = from_ring.filter(|ring| *ring != deployment.current_ring) {
                return Err(
                    DeploymentError::RingMoved { expected: expected_ring, current: deployment.current_ring }.into()
                );
            }
            let promotion = new_promotion(&deployment, &ctx, request_id.clone(), PromotionResult::RolledBack);
            deployment.status.check_transition(DeploymentStatus::RolledBack).map_err(DeploymentError::from)?;
            let removal = match deployment.rings.is_empty() {
                true => None,
                false => {
                    let ring = deployment.current_ring;
                    Some(self.deployments.queue(&deployment, ring, Operation::Remove).await?)
                }
            };
            let events = deployment.roll_back(removal.as_ref().map(|q| &q.handover), &ctx)?;
            let outbox = removal.as_ref().map(|q| OutboxWrite::Queue(&q.record));
            match self.store.save_promotion(&deployment, &events, &promotion, outbox).await {
                Ok(saved) => {
                    self.metrics.committed(&saved, &events);
                    self.metrics.promotion(&promotion);
                    // The removal reaches the connector only once the rollback is durable.
                    let shown = match &removal {
                        Some(queued) => self.deployments.deliver(&saved, &queued.record, &ctx).await?,
                        None => saved,
                    };
                    return Ok((deployment_to_proto(&shown), promotion_to_proto(&promotion)));
                }
                Err(StoreError::RevisionConflict { .. }) if etag.is_none() && request_id.is_none() => continue,
                Err(StoreError::RevisionConflict { .. } | StoreError::RequestIdTaken(_)) => {
                    return self.replay_raced(id, request_id, &expected).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::Aborted(format!("deployment {id} is changing too fast; retry")))
    }

    async fn update_policy(&self, request: &Request<pb::UpdateRingPolicyRequest>) -> ApiResult<RingPolicy> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let Some(update) = req.policy.as_ref() else {
            return Err(ApiError::invalid("policy", "is required"));
        };
        let ring = v.enumeration::<pb::Ring>("policy.ring", update.ring, true).and_then(convert::ring_from_proto);
        let actor = v.optional_text("actor", &req.actor, MAX_ACTOR_LEN);
        let reason = v.optional_text("reason", &req.reason, MAX_REASON_LEN);
        let etag = v.etag("etag", if req.etag.is_empty() { &update.etag } else { &req.etag });
        let paths: Vec<String> = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
        for path in &paths {
            if !POLICY_FIELDS.contains(&path.as_str()) {
                v.add(
                    "update_mask",
                    format!("unknown field {:?}; updatable fields: {}", truncate(path), POLICY_FIELDS.join(", ")),
                );
            }
        }
        v.finish()?;
        let ring = ring.expect("validated");
        let ctx = change_context(request, actor, reason);
        let change = PolicyChange {
            actor: ctx.actor.clone(),
            reason: ctx.reason.clone(),
            correlation_id: ctx.correlation_id.clone(),
            at: ctx.now,
        };
        for _ in 0..MAX_ATTEMPTS {
            let before = self.store.get_policy(ring).await?;
            check_etag(etag, before.revision, format_args!("the {ring} policy"))?;
            let after = apply_policy_update(&before, update, &paths)?;
            match self.store.update_policy(&before, &after, &change).await {
                Ok(saved) => {
                    self.metrics.policies_changed();
                    return Ok(saved);
                }
                Err(StoreError::PolicyConflict { .. }) if etag.is_none() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::Aborted(format!("the {ring} policy is changing too fast; retry")))
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

/// Fields UpdateRingPolicy may change (`update_mask` paths).
const POLICY_FIELDS: &[&str] = &[
    "min_success_rate",
    "min_sample_size",
    "online_compliance_limit",
    "intermittent_compliance_limit",
    "air_gapped_compliance_limit",
    "require_cab_approval",
    "require_evidence_pack",
    "require_rollback_validated",
    "bake_time",
    "auto_promote",
    "rollback_failure_rate",
    "rollback_min_sample",
    "stall_timeout",
];

/// `before` with the fields of `update` named by `paths` (all when empty), validated.
fn apply_policy_update(before: &RingPolicy, update: &pb::RingPolicy, paths: &[String]) -> ApiResult<RingPolicy> {
    let mut v = Violations::new();
    let wanted = |field: &str| paths.is_empty() || paths.iter().any(|p| p == field);
    let mut after = before.clone();
    let mut duration = |field: &str, value: Option<&prost_types::Duration>, current: std::time::Duration| {
        let field = format!("policy.{field}");
        if value.is_none() {
            v.add(&field, "is required when updated");
        }
        v.duration(&field, value).unwrap_or(current)
    };
    if wanted("online_compliance_limit") {
        after.online_compliance_limit = duration(
            "online_compliance_limit",
            update.online_compliance_limit.as_ref(),
            before.online_compliance_limit,
        );
    }
    if wanted("intermittent_compliance_limit") {
        after.intermittent_compliance_limit = duration(
            "intermittent_compliance_limit",
            update.intermittent_compliance_limit.as_ref(),
            before.intermittent_compliance_limit,
        );
    }
    if wanted("air_gapped_compliance_limit") {
        after.air_gapped_compliance_limit = duration(
            "air_gapped_compliance_limit",
            update.air_gapped_compliance_limit.as_ref(),
            before.air_gapped_compliance_limit,
        );
    }
    if wanted("bake_time") {
        after.bake_time = duration("bake_time", update.bake_time.as_ref(), before.bake_time);
    }
    if wanted("stall_timeout") {
        after.stall_timeout = duration("stall_timeout", update.stall_timeout.as_ref(), before.stall_timeout);
    }
    if wanted("min_success_rate") {
        after.min_success_rate = update.min_success_rate;
    }
    if wanted("min_sample_size") {
        match u64::try_from(update.min_sample_size) {
            Ok(size) => after.min_sample_size = size,
            Err(_) => v.add("policy.min_sample_size", format!("must not be negative (got {})", update.min_sample_size)),
        }
    }
    if wanted("require_cab_approval") {
        after.require_cab_approval = update.require_cab_approval;
    }
    if wanted("require_evidence_pack") {
        after.require_evidence_pack = update.require_evidence_pack;
    }
    if wanted("require_rollback_validated") {
        after.require_rollback_validated = update.require_rollback_validated;
    }
    if wanted("auto_promote") {
        after.auto_promote = update.auto_promote;
    }
    if wanted("rollback_failure_rate") {
        after.rollback_failure_rate = update.rollback_failure_rate;
    }
    if wanted("rollback_min_sample") {
        match u64::try_from(update.rollback_min_sample) {
            Ok(size) => after.rollback_min_sample = size,
            Err(_) => v.add(
                "policy.rollback_min_sample",
                format!("must not be negative (got {})", update.rollback_min_sample),
            ),
        }
    }
    for (field, problem) in after.problems() {
        v.add(field, problem);
    }
    v.finish()?;
    Ok(after)
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

/// FAILED_PRECONDITION naming every failed check, with one
/// `google.rpc.PreconditionFailure` violation per check.
fn blocked(evaluation: &GateEvaluation) -> ApiError {
    let failed: Vec<_> = evaluation.failed_checks().collect();
    let message = format!(
        "the gate to leave {} did not pass: {}",
        evaluation.ring,
        failed.iter().map(|c| c.message.as_str()).collect::<Vec<_>>().join("; ")
    );
    let violations = failed
        .iter()
        .map(|c| {
            PreconditionViolation::new(
                convert::check_kind_to_proto(c.kind).as_str_name(),
                format!("ring/{}", evaluation.ring),
                c.message.clone(),
            )
        })
        .collect();
    ApiError::GateBlocked { message, violations }
}

fn ring_field(v: &mut Violations, field: &str, value: i32) -> Option<Ring> {
    v.enumeration::<pb::Ring>(field, value, true).and_then(convert::ring_from_proto)
}

#[tonic::async_trait]
impl RingPromotionService for PromotionApi {
    async fn get_ring_policy(
        &self,
        request: Request<pb::GetRingPolicyRequest>,
    ) -> Result<Response<pb::GetRingPolicyResponse>, Status> {
        let mut v = Violations::new();
        let ring = ring_field(&mut v, "ring", request.get_ref().ring);
        v.finish()?;
        let policy = self.store.get_policy(ring.expect("validated")).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::GetRingPolicyResponse { policy: Some(policy_to_proto(&policy)) }))
    }

    async fn list_ring_policies(
        &self,
        _request: Request<pb::ListRingPoliciesRequest>,
    ) -> Result<Response<pb::ListRingPoliciesResponse>, Status> {
        let policies = self.store.list_policies().await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListRingPoliciesResponse { policies: policies.iter().map(policy_to_proto).collect() }))
    }

    async fn update_ring_policy(
        &self,
        request: Request<pb::UpdateRingPolicyRequest>,
    ) -> Result<Response<pb::UpdateRingPolicyResponse>, Status> {
        let policy = self.update_policy(&request).await?;
        Ok(Response::new(pb::UpdateRingPolicyResponse { policy: Some(policy_to_proto(&policy)) }))
    }

    async fn evaluate_promotion_gate(
        &self,
        request: Request<pb::EvaluatePromotionGateRequest>,
    ) -> Result<Response<pb::EvaluatePromotionGateResponse>, Status> {
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &request.get_ref().deployment_id);
        v.finish()?;
        let deployment = self.store.get_deployment(id).await.map_err(ApiError::from)?;
        let policy = self.store.get_policy(deployment.current_ring).await.map_err(ApiError::from)?;
        let evaluation = gate::evaluate(&deployment, &policy, chrono::Utc::now());
        self.metrics.gate_evaluated(&evaluation);
        Ok(Response::new(pb::EvaluatePromotionGateResponse {
            evaluation: Some(gate_to_proto(&request.get_ref().deployment_id, &evaluation)),
        }))
    }

    async fn promote_deployment(
        &self,
        request: Request<pb::PromoteDeploymentRequest>,
    ) -> Result<Response<pb::PromoteDeploymentResponse>, Status> {
        let (deployment, promotion) = self.promote(&request).await?;
        Ok(Response::new(pb::PromoteDeploymentResponse { deployment: Some(deployment), promotion: Some(promotion) }))
    }

    async fn rollback_deployment(
        &self,
        request: Request<pb::RollbackDeploymentRequest>,
    ) -> Result<Response<pb::RollbackDeploymentResponse>, Status> {
        let (deployment, promotion) = self.roll_back(&request).await?;
        Ok(Response::new(pb::RollbackDeploymentResponse { deployment: Some(deployment), promotion: Some(promotion) }))
    }

    async fn list_promotions(
        &self,
        request: Request<pb::ListPromotionsRequest>,
    ) -> Result<Response<pb::ListPromotionsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        v.finish()?;
        let filters_key = format!("promotions={id}");
        let after = page_token::decode(&req.page_token, &filters_key)?;
        self.store.get_deployment(id).await.map_err(ApiError::from)?;
        let page = self.store.list_promotions(id, after, limit).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListPromotionsResponse {
            promotions: page.items.iter().map(promotion_to_proto).collect(),
            next_page_token: page.next_after.map(|after| page_token::encode(after, &filters_key)).unwrap_or_default(),
        }))
    }
}
