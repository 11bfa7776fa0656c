//! ControlChangeService adapter: dual control over changes that weaken a
//! safety control — list, read, approve, reject — and break-glass requests.

use eucora::v1 as pb;
use eucora::v1::control_change_service_server::ControlChangeService;
use tonic::{Request, Response, Status};

use super::change_context;
use super::convert::{Wire, policy_to_proto, timestamp};
use super::page_token::Scope;
use super::validate::{MAX_REASON_LEN, Violations};
use crate::app::{ControlChanges, Promotions};
use crate::clock::Clock;
use crate::domain::Label;
use crate::domain::control::{ControlChange, ControlState, ControlSubject, Decision};

const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;

pub struct ControlApi {
    app: ControlChanges,
    /// Applies an approved break-glass (a promotion).
    promotions: Promotions,
    clock: Clock,
}

impl ControlApi {
    pub fn new(app: ControlChanges, promotions: Promotions, clock: Clock) -> ControlApi {
        ControlApi { app, promotions, clock }
    }

    async fn decide(
        &self,
        request: &Request<impl IdAndReason>,
        decision: Decision,
    ) -> Result<pb::ControlChange, Status> {
        let mut v = Violations::new();
        let id = v.uuid("id", request.get_ref().id());
        let reason = v.reason(request.get_ref().reason());
        v.finish()?;
        let ctx = change_context(&self.clock, request, reason);
        Ok(change_to_proto(&self.promotions.decide_control_change(id, decision, &ctx).await?))
    }
}

/// The two fields approve and reject requests share.
trait IdAndReason {
    fn id(&self) -> &str;
    fn reason(&self) -> &str;
}

impl IdAndReason for pb::ApproveControlChangeRequest {
    fn id(&self) -> &str {
        &self.id
    }

    fn reason(&self) -> &str {
        &self.reason
    }
}

impl IdAndReason for pb::RejectControlChangeRequest {
    fn id(&self) -> &str {
        &self.id
    }

    fn reason(&self) -> &str {
        &self.reason
    }
}

fn change_to_proto(change: &ControlChange) -> pb::ControlChange {
    let mut out = pb::ControlChange {
        id: change.id.to_string(),
        state: change.state.to_proto().into(),
        weakenings: change.weakenings.clone(),
        proposed_by: change.proposed_by.clone(),
        reason: change.reason.clone(),
        decided_by: change.decided_by.clone().unwrap_or_default(),
        decision_reason: change.decision_reason.clone(),
        correlation_id: change.correlation_id.clone(),
        create_time: Some(timestamp(change.created_at)),
        expire_time: Some(timestamp(change.expires_at)),
        decide_time: change.decided_at.map(timestamp),
        ..pb::ControlChange::default()
    };
    match &change.subject {
        ControlSubject::RingPolicy { before, after } => {
            out.kind = pb::ControlChangeKind::RingPolicy.into();
            out.policy_before = Some(policy_to_proto(before));
            out.policy_after = Some(policy_to_proto(after));
        }
        ControlSubject::RiskModelActivation { active_version, version } => {
            out.kind = pb::ControlChangeKind::RiskModelActivation.into();
            out.active_risk_model_version = active_version.unwrap_or_default();
            out.risk_model_version = *version;
        }
        ControlSubject::BreakGlass { deployment_id, from_ring } => {
            out.kind = pb::ControlChangeKind::BreakGlass.into();
            out.deployment_id = deployment_id.to_string();
            out.from_ring = from_ring.to_proto().into();
        }
    }
    out
}

#[tonic::async_trait]
impl ControlChangeService for ControlApi {
    async fn request_break_glass(
        &self,
        request: Request<pb::RequestBreakGlassRequest>,
    ) -> Result<Response<pb::RequestBreakGlassResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let reason = v.required_text("reason", &req.reason, MAX_REASON_LEN);
        v.finish()?;
        let ctx = change_context(&self.clock, &request, Some(reason));
        let change = self.promotions.request_break_glass(id, &ctx).await?;
        Ok(Response::new(pb::RequestBreakGlassResponse { change: Some(change_to_proto(&change)) }))
    }

    async fn list_control_changes(
        &self,
        request: Request<pb::ListControlChangesRequest>,
    ) -> Result<Response<pb::ListControlChangesResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let state =
            v.enumeration::<pb::ControlChangeState>("state", req.state, false).and_then(ControlState::from_proto);
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        v.finish()?;
        let scope = Scope::new("control_changes").with("state", state.map(Label::as_label));
        let page = self.app.list(state, self.clock.now(), scope.key(&req.page_token)?, limit).await?;
        Ok(Response::new(pb::ListControlChangesResponse {
            changes: page.items.iter().map(change_to_proto).collect(),
            next_page_token: scope.token(page.next_after),
        }))
    }

    async fn get_control_change(
        &self,
        request: Request<pb::GetControlChangeRequest>,
    ) -> Result<Response<pb::GetControlChangeResponse>, Status> {
        let mut v = Violations::new();
        let id = v.uuid("id", &request.get_ref().id);
        v.finish()?;
        let change = self.app.get(id, self.clock.now()).await?;
        Ok(Response::new(pb::GetControlChangeResponse { change: Some(change_to_proto(&change)) }))
    }

    async fn approve_control_change(
        &self,
        request: Request<pb::ApproveControlChangeRequest>,
    ) -> Result<Response<pb::ApproveControlChangeResponse>, Status> {
        let change = self.decide(&request, Decision::Approve).await?;
        Ok(Response::new(pb::ApproveControlChangeResponse { change: Some(change) }))
    }

    async fn reject_control_change(
        &self,
        request: Request<pb::RejectControlChangeRequest>,
    ) -> Result<Response<pb::RejectControlChangeResponse>, Status> {
        let change = self.decide(&request, Decision::Reject).await?;
        Ok(Response::new(pb::RejectControlChangeResponse { change: Some(change) }))
    }
}
