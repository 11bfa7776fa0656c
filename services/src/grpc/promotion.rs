//! RingPromotionService adapter: validates requests for ring policies, gate
//! evaluation, promotion and rollback, calls the promotion use-cases, and
//! converts their answers.

use eucora::v1 as pb;
use eucora::v1::ring_promotion_service_server::RingPromotionService;
use tonic::{Request, Response, Status};

use super::change_context;
use super::convert::Wire;
use super::convert::{self, deployment_to_proto, gate_to_proto, policy_to_proto, promotion_to_proto};
use super::page_token::Scope;
use super::validate::{MAX_REASON_LEN, MAX_REQUEST_ID_LEN, Violations, truncate};
use crate::app::{AppError, AppResult, Guarded, Promotions, Step};
use crate::clock::Clock;
use crate::domain::{Change, ChangeContext, Deployment, Label, Promotion, Ring, RingPolicy};

const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;

/// The RingPromotionService implementation.
#[derive(Clone)]
pub struct PromotionApi {
    app: Promotions,
    clock: Clock,
}

impl PromotionApi {
    pub fn new(app: Promotions, clock: Clock) -> PromotionApi {
        PromotionApi { app, clock }
    }

    fn context<T>(&self, request: &Request<T>, reason: Option<String>) -> ChangeContext {
        change_context(&self.clock, request, reason)
    }

    async fn promote(
        &self,
        request: &Request<pb::PromoteDeploymentRequest>,
    ) -> AppResult<(pb::Deployment, pb::Promotion)> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let reason = v.reason(&req.reason);
        let etag = v.etag("etag", &req.etag);
        let from_ring = v.enumeration::<pb::Ring>("from_ring", req.from_ring, false).and_then(Ring::from_proto);
        v.finish()?;
        let step = Step { id, request_id, etag, from_ring };
        let (deployment, promotion) = self.app.promote_as(step, &self.context(request, reason)).await?;
        Ok(shown(&deployment, &promotion))
    }

    async fn roll_back(
        &self,
        request: &Request<pb::RollbackDeploymentRequest>,
    ) -> AppResult<(pb::Deployment, pb::Promotion)> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let reason = v.required_text("reason", &req.reason, MAX_REASON_LEN);
        let etag = v.etag("etag", &req.etag);
        v.finish()?;
        let step = Step { id, request_id, etag, from_ring: None };
        let (deployment, promotion) = self.app.roll_back_as(step, &self.context(request, Some(reason))).await?;
        Ok(shown(&deployment, &promotion))
    }

    async fn update_policy(&self, request: &Request<pb::UpdateRingPolicyRequest>) -> AppResult<Guarded<RingPolicy>> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let Some(update) = req.policy.as_ref() else {
            return Err(AppError::invalid("policy", "is required"));
        };
        let ring = v.enumeration::<pb::Ring>("policy.ring", update.ring, true).and_then(Ring::from_proto);
        let reason = v.reason(&req.reason);
        let etag = v.etag("policy.etag", &update.etag);
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
        let ctx = self.context(request, reason);
        self.app.update_policy(ring, etag, &ctx, |before| apply_policy_update(before, update, &paths)).await
    }
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
fn apply_policy_update(before: &RingPolicy, update: &pb::RingPolicy, paths: &[String]) -> AppResult<RingPolicy> {
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

fn policy_change_to_proto(change: &Change<RingPolicy>) -> pb::RingPolicyChange {
    let ring = change.after.as_ref().or(change.before.as_ref()).map(|p| p.ring);
    pb::RingPolicyChange {
        sequence: change.seq,
        ring: ring.map_or(pb::Ring::Unspecified, Ring::to_proto).into(),
        before: change.before.as_ref().map(policy_to_proto),
        after: change.after.as_ref().map(policy_to_proto),
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        correlation_id: change.correlation_id.clone(),
        create_time: Some(convert::timestamp(change.at)),
        approved_by: change.approved_by.clone().unwrap_or_default(),
    }
}

fn shown(deployment: &Deployment, promotion: &Promotion) -> (pb::Deployment, pb::Promotion) {
    (deployment_to_proto(deployment), promotion_to_proto(promotion))
}

fn ring_field(v: &mut Violations, field: &str, value: i32) -> Option<Ring> {
    v.enumeration::<pb::Ring>(field, value, true).and_then(Ring::from_proto)
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
        let policy = self.app.policy(ring.expect("validated")).await?;
        Ok(Response::new(pb::GetRingPolicyResponse { policy: Some(policy_to_proto(&policy)) }))
    }

    async fn list_ring_policies(
        &self,
        _request: Request<pb::ListRingPoliciesRequest>,
    ) -> Result<Response<pb::ListRingPoliciesResponse>, Status> {
        let policies = self.app.policies().await?;
        Ok(Response::new(pb::ListRingPoliciesResponse { policies: policies.iter().map(policy_to_proto).collect() }))
    }

    async fn update_ring_policy(
        &self,
        request: Request<pb::UpdateRingPolicyRequest>,
    ) -> Result<Response<pb::UpdateRingPolicyResponse>, Status> {
        let answer = match self.update_policy(&request).await? {
            Guarded::Applied(policy) => {
                pb::UpdateRingPolicyResponse { policy: Some(policy_to_proto(&policy)), ..Default::default() }
            }
            Guarded::Proposed { current, change } => pb::UpdateRingPolicyResponse {
                policy: Some(policy_to_proto(&current)),
                pending_change_id: change.id.to_string(),
                weakenings: change.weakenings,
            },
        };
        Ok(Response::new(answer))
    }

    async fn evaluate_promotion_gate(
        &self,
        request: Request<pb::EvaluatePromotionGateRequest>,
    ) -> Result<Response<pb::EvaluatePromotionGateResponse>, Status> {
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &request.get_ref().deployment_id);
        v.finish()?;
        let evaluation = self.app.evaluate_gate(id, self.clock.now()).await?;
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
        let scope = Scope::new("promotions").with("deployment_id", Some(id));
        let page = self.app.promotions_of(id, scope.key(&req.page_token)?, limit).await?;
        Ok(Response::new(pb::ListPromotionsResponse {
            promotions: page.items.iter().map(promotion_to_proto).collect(),
            next_page_token: scope.token(page.next_after),
        }))
    }

    async fn list_ring_policy_changes(
        &self,
        request: Request<pb::ListRingPolicyChangesRequest>,
    ) -> Result<Response<pb::ListRingPolicyChangesResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let ring = v.enumeration::<pb::Ring>("ring", req.ring, false).and_then(Ring::from_proto);
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        v.finish()?;
        let scope = Scope::new("ring_policy_changes").with("ring", ring.map(Label::as_label));
        let page = self.app.policy_changes(ring, scope.key(&req.page_token)?, limit).await?;
        Ok(Response::new(pb::ListRingPolicyChangesResponse {
            changes: page.items.iter().map(policy_change_to_proto).collect(),
            next_page_token: scope.token(page.next_after),
        }))
    }
}
