//! DeploymentService adapter: validates requests, calls the deployment
//! use-cases, converts their answers, and streams the committed event feed
//! to watchers.

use crate::domain::Label;
use std::pin::Pin;

use eucora::v1 as pb;
use eucora::v1::deployment_service_server::DeploymentService;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::Wire;
use super::convert::{self, deployment_to_proto, event_to_proto};
use super::page_token::Scope;
use super::validate::{MAX_REASON_LEN, MAX_REQUEST_ID_LEN, Violations};
use super::{change_context, fitting};
use crate::app::{AppResult, Deployments, Shown, Watch};
use crate::domain::connector::{NAME_RULE, is_valid_name};
use crate::domain::{
    ChangeContext, ConnectorType, Deployment, DeploymentError, DeploymentStatus, MAX_RING_DEVICES, NewDeployment,
    NewEvent, Outcome, Ring, SiteClass,
};
use crate::store::DeploymentFilter;

const MAX_APP_NAME_LEN: usize = 200;
const MAX_VERSION_LEN: usize = 100;
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_EVENT_PAGE_SIZE: u64 = 100;
const MAX_EVENT_PAGE_SIZE: u64 = 1000;
/// Messages buffered per watcher between the feed and its HTTP/2 stream.
const WATCH_BUFFER: usize = 256;

/// The DeploymentService implementation.
#[derive(Clone)]
pub struct DeploymentApi {
    app: Deployments,
}

impl DeploymentApi {
    pub fn new(app: Deployments) -> DeploymentApi {
        DeploymentApi { app }
    }

    /// Applies `change` to a validated mutation.
    async fn apply<T>(
        &self,
        request: &Request<T>,
        valid: ValidMutation,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> Result<Option<pb::Deployment>, Status> {
        let ctx = self.context(request, valid.reason);
        let deployment = self.app.mutate(valid.id, valid.etag, &ctx, change).await?;
        Ok(Some(deployment_to_proto(&deployment)))
    }

    async fn record_outcome<T>(
        &self,
        request: &Request<T>,
        valid: ValidMutation,
        outcome: Outcome,
        correction: bool,
    ) -> Result<Option<pb::Deployment>, Status> {
        let ctx = self.context(request, valid.reason);
        let deployment = self.app.record_outcome(valid.id, valid.etag, outcome, correction, &ctx).await?;
        Ok(Some(deployment_to_proto(&deployment)))
    }

    fn context<T>(&self, request: &Request<T>, reason: Option<String>) -> ChangeContext {
        change_context(self.app.clock(), request, reason)
    }
}

/// A deployment as the API shows it: with the current ring's gate as of now
/// and what the rollout controller will do next.
fn shown_to_proto(shown: &Shown) -> pb::Deployment {
    let mut proto = deployment_to_proto(&shown.deployment);
    let current = shown.deployment.current_ring.to_proto() as i32;
    if let Some(progress) = proto.ring_progress.iter_mut().find(|p| p.ring == current) {
        progress.last_gate = Some(convert::gate_to_proto(&proto.id, &shown.gate));
    }
    pb::Deployment {
        next_action: shown.next_action.clone(),
        next_action_time: shown.next_action_time.map(convert::timestamp),
        ..proto
    }
}

/// A create request as the domain takes it, submitted by `submitter` (the caller).
fn validate_create(req: &pb::CreateDeploymentRequest, submitter: String) -> AppResult<(String, NewDeployment)> {
    let mut v = Violations::new();
    let request_id = v.required_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
    let app_name = v.required_text("app_name", &req.app_name, MAX_APP_NAME_LEN);
    let version = v.required_text("version", &req.version, MAX_VERSION_LEN);
    let connector_type = v
        .enumeration::<pb::ConnectorType>("connector_type", req.connector_type, true)
        .and_then(ConnectorType::from_proto);
    let target_ring = v.enumeration::<pb::Ring>("target_ring", req.target_ring, false).and_then(Ring::from_proto);
    let evidence_pack_id = v.uuid("evidence_pack_id", &req.evidence_pack_id);
    let site_class =
        v.enumeration::<pb::SiteClass>("site_class", req.site_class, false).and_then(SiteClass::from_proto);
    let connector_name = v.optional_text("connector_name", &req.connector_name, 63);
    if connector_name.as_deref().is_some_and(|name| !is_valid_name(name)) {
        v.add("connector_name", NAME_RULE);
    }
    let evidence = super::risk::evidence_from_proto(&mut v, req.evidence.as_ref());
    v.finish()?;
    let new = NewDeployment {
        app_name,
        version,
        connector_type: connector_type.expect("validated"),
        connector_name,
        target_ring: target_ring.unwrap_or(Ring::Global),
        // Set from the assessment before the deployment is created.
        risk_score: 0,
        evidence_pack_id,
        submitter,
        site_class: site_class.unwrap_or(SiteClass::Online),
        evidence,
        assessment: None,
    };
    Ok((request_id, new))
}

/// The raw fields every lifecycle mutation carries.
struct MutationFields<'a> {
    id: &'a str,
    reason: &'a str,
    reason_required: bool,
    etag: &'a str,
}

impl<'a> MutationFields<'a> {
    fn new(id: &'a str, reason: &'a str, etag: &'a str) -> Self {
        MutationFields { id, reason, reason_required: false, etag }
    }

    fn reason_required(self) -> Self {
        MutationFields { reason_required: true, ..self }
    }

    /// Validates the fields, reporting them with any violations already in `v`.
    fn validate(self, mut v: Violations) -> AppResult<ValidMutation> {
        let id = v.uuid("deployment_id", self.id);
        let reason = if self.reason_required {
            Some(v.required_text("reason", self.reason, MAX_REASON_LEN))
        } else {
            v.reason(self.reason)
        };
        let etag = v.etag("etag", self.etag);
        v.finish()?;
        Ok(ValidMutation { id, reason, etag })
    }
}

/// The ring and device counts of a report or correction, validated.
struct RingCounts {
    ring: Ring,
    success_count: u64,
    failure_count: u64,
}

impl RingCounts {
    /// Each count in 0..=[`MAX_RING_DEVICES`], and so is their sum.
    fn validate(v: &mut Violations, ring: i32, success_count: i64, failure_count: i64) -> RingCounts {
        let ring = v.enumeration::<pb::Ring>("ring", ring, true).and_then(Ring::from_proto);
        let mut count = |field: &str, value: i64| match u64::try_from(value) {
            Ok(count) if count <= MAX_RING_DEVICES => count,
            Ok(_) => {
                v.add(field, format!("must be at most {MAX_RING_DEVICES} devices per ring (got {value})"));
                0
            }
            Err(_) => {
                v.add(field, format!("must not be negative (got {value})"));
                0
            }
        };
        let success_count = count("success_count", success_count);
        let failure_count = count("failure_count", failure_count);
        if success_count + failure_count > MAX_RING_DEVICES {
            v.add(
                "failure_count",
                format!(
                    "success_count + failure_count must be at most {MAX_RING_DEVICES} devices per ring (got {})",
                    success_count + failure_count
                ),
            );
        }
        RingCounts { ring: ring.unwrap_or(Ring::Lab), success_count, failure_count }
    }

    fn outcome(&self, rollback_validated: bool) -> Outcome {
        Outcome {
            ring: self.ring,
            success_count: self.success_count,
            failure_count: self.failure_count,
            rollback_validated,
        }
    }
}

/// A mutation's fields after validation.
struct ValidMutation {
    id: Uuid,
    reason: Option<String>,
    etag: Option<i64>,
}

fn list_scope(filter: &DeploymentFilter) -> Scope {
    Scope::new("deployments")
        .with("status", filter.status.map(|s| s.as_label()))
        .with("ring", filter.ring.map(|r| r.as_label()))
        .with("app_name", filter.app_name.as_deref())
        .with("connector_type", filter.connector_type.map(|c| c.as_label()))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchDeploymentsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DeploymentService for DeploymentApi {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::CreateDeploymentResponse>, Status> {
        let ctx = self.context(&request, None);
        let (request_id, new) = validate_create(request.get_ref(), ctx.actor.clone())?;
        let deployment = self.app.create(&request_id, new, &ctx).await?;
        Ok(Response::new(pb::CreateDeploymentResponse { deployment: Some(deployment_to_proto(&deployment)) }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::GetDeploymentResponse>, Status> {
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &request.get_ref().deployment_id);
        v.finish()?;
        let shown = self.app.get(id).await?;
        Ok(Response::new(pb::GetDeploymentResponse { deployment: Some(shown_to_proto(&shown)) }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        let filter = DeploymentFilter {
            status: v
                .enumeration::<pb::DeploymentStatus>("status", req.status, false)
                .and_then(DeploymentStatus::from_proto),
            ring: v.enumeration::<pb::Ring>("ring", req.ring, false).and_then(Ring::from_proto),
            app_name: v.optional_text("app_name", &req.app_name, MAX_APP_NAME_LEN),
            connector_type: v
                .enumeration::<pb::ConnectorType>("connector_type", req.connector_type, false)
                .and_then(ConnectorType::from_proto),
        };
        v.finish()?;
        let scope = list_scope(&filter);
        let after = scope.key(&req.page_token)?;
        let page = self.app.list(&filter, after, limit).await?;
        let shown = page.items.iter().map(shown_to_proto).collect();
        let page = fitting(page.with_items(shown));
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: page.items,
            next_page_token: scope.token(page.next_after),
        }))
    }

    async fn approve_deployment(
        &self,
        request: Request<pb::ApproveDeploymentRequest>,
    ) -> Result<Response<pb::ApproveDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::approve).await?;
        Ok(Response::new(pb::ApproveDeploymentResponse { deployment }))
    }

    async fn reject_deployment(
        &self,
        request: Request<pb::RejectDeploymentRequest>,
    ) -> Result<Response<pb::RejectDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::reject).await?;
        Ok(Response::new(pb::RejectDeploymentResponse { deployment }))
    }

    async fn start_deployment(
        &self,
        request: Request<pb::StartDeploymentRequest>,
    ) -> Result<Response<pb::StartDeploymentResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        let valid = MutationFields::new(&req.deployment_id, "", &req.etag).validate(v)?;
        let ctx = self.context(&request, valid.reason);
        let deployment = self.app.start(valid.id, valid.etag, request_id.as_deref(), &ctx).await?;
        Ok(Response::new(pb::StartDeploymentResponse { deployment: Some(deployment_to_proto(&deployment)) }))
    }

    async fn report_ring_outcome(
        &self,
        request: Request<pb::ReportRingOutcomeRequest>,
    ) -> Result<Response<pb::ReportRingOutcomeResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let counts = RingCounts::validate(&mut v, req.ring, req.success_count, req.failure_count);
        let valid = MutationFields::new(&req.deployment_id, "", &req.etag).validate(v)?;
        let deployment = self.record_outcome(&request, valid, counts.outcome(req.rollback_validated), false).await?;
        Ok(Response::new(pb::ReportRingOutcomeResponse { deployment }))
    }

    async fn correct_ring_outcome(
        &self,
        request: Request<pb::CorrectRingOutcomeRequest>,
    ) -> Result<Response<pb::CorrectRingOutcomeResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let counts = RingCounts::validate(&mut v, req.ring, req.success_count, req.failure_count);
        if req.etag.is_empty() {
            v.add(
                "etag",
                "is required: read the deployment and pass its etag, so the correction applies to what was read",
            );
        }
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag).reason_required();
        let valid = fields.validate(v)?;
        let deployment = self.record_outcome(&request, valid, counts.outcome(false), true).await?;
        Ok(Response::new(pb::CorrectRingOutcomeResponse { deployment }))
    }

    async fn complete_deployment(
        &self,
        request: Request<pb::CompleteDeploymentRequest>,
    ) -> Result<Response<pb::CompleteDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::complete).await?;
        Ok(Response::new(pb::CompleteDeploymentResponse { deployment }))
    }

    async fn fail_deployment(
        &self,
        request: Request<pb::FailDeploymentRequest>,
    ) -> Result<Response<pb::FailDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag).reason_required();
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::fail).await?;
        Ok(Response::new(pb::FailDeploymentResponse { deployment }))
    }

    async fn pause_deployment(
        &self,
        request: Request<pb::PauseDeploymentRequest>,
    ) -> Result<Response<pb::PauseDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::pause).await?;
        Ok(Response::new(pb::PauseDeploymentResponse { deployment }))
    }

    async fn resume_deployment(
        &self,
        request: Request<pb::ResumeDeploymentRequest>,
    ) -> Result<Response<pb::ResumeDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::new(&req.deployment_id, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::resume).await?;
        Ok(Response::new(pb::ResumeDeploymentResponse { deployment }))
    }

    async fn list_deployment_events(
        &self,
        request: Request<pb::ListDeploymentEventsRequest>,
    ) -> Result<Response<pb::ListDeploymentEventsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let id = v.uuid("deployment_id", &req.deployment_id);
        let limit = v.page_size("page_size", req.page_size, DEFAULT_EVENT_PAGE_SIZE, MAX_EVENT_PAGE_SIZE);
        v.finish()?;
        let scope = Scope::new("deployment_events").with("deployment_id", Some(id));
        let after = scope.key(&req.page_token)?;
        let page = self.app.events(id, after, limit).await?;
        let events = page.items.iter().map(event_to_proto).collect();
        let page = fitting(page.with_items(events));
        Ok(Response::new(pb::ListDeploymentEventsResponse {
            events: page.items,
            next_page_token: scope.token(page.next_after),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let limit = v.page_size("page_size", req.page_size, DEFAULT_EVENT_PAGE_SIZE, MAX_EVENT_PAGE_SIZE);
        let start = v.sequence("after_sequence", req.after_sequence);
        v.finish()?;
        let scope = Scope::new("events").with("after_sequence", Some(start));
        let after = scope.key(&req.page_token)?.unwrap_or(start);
        let page = self.app.events_after(None, after, limit).await?;
        let events = page.items.iter().map(event_to_proto).collect();
        let page = fitting(page.with_items(events));
        Ok(Response::new(pb::ListEventsResponse { events: page.items, next_page_token: scope.token(page.next_after) }))
    }

    type WatchDeploymentsStream = WatchStream;

    async fn watch_deployments(
        &self,
        request: Request<pb::WatchDeploymentsRequest>,
    ) -> Result<Response<Self::WatchDeploymentsStream>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let filter = (!req.deployment_id.is_empty()).then(|| v.uuid("deployment_id", &req.deployment_id));
        let after_sequence = v.sequence("after_sequence", req.after_sequence);
        v.finish()?;
        let watch = self.app.watch(filter, &super::caller(&request)).await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let resume = (after_sequence > 0).then_some(after_sequence);
        tokio::spawn(forward_events(self.app.clone(), watch, resume, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

type WatchSender = mpsc::Sender<Result<pb::WatchDeploymentsResponse, Status>>;

/// Copies events to one watcher until it disconnects or the server shuts
/// down: first the stored ones after `resume` (when set), then the
/// committed-event feed, skipping what the stored pages already carried. A
/// watcher slower than the feed only delays itself: the feed drops what it
/// cannot buffer for it, and it is told how many it missed.
async fn forward_events(app: Deployments, mut watch: Watch, resume: Option<i64>, tx: WatchSender) {
    use pb::watch_deployments_response::Payload;
    let shutdown = app.shutdown().clone();
    let filter = watch.deployment;
    // The feed was subscribed before the stored pages are read: an event
    // committed meanwhile is in both, and is sent once. Without a resume,
    // what the feed carries from before the watch began is skipped.
    let mut last_sent = if resume.is_some() { 0 } else { watch.committed };
    if let Some(mut after) = resume {
        loop {
            let page = match app.events_after(filter, after, DEFAULT_EVENT_PAGE_SIZE).await {
                Ok(page) => page,
                Err(err) => {
                    let _ = tx.send(Err(err.into())).await;
                    return;
                }
            };
            for stored in &page.items {
                let message = pb::WatchDeploymentsResponse { payload: Some(Payload::Event(event_to_proto(stored))) };
                if !send(&tx, Ok(message), &shutdown).await {
                    return;
                }
                last_sent = stored.seq;
            }
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    loop {
        let payload = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            received = watch.feed.recv() => match received {
                Ok(stored) if stored.seq > last_sent && filter.is_none_or(|id| id == stored.event.deployment_id) => {
                    Payload::Event(event_to_proto(&stored))
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => Payload::MissedEventCount(i64::try_from(missed).unwrap_or(i64::MAX)),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !send(&tx, Ok(pb::WatchDeploymentsResponse { payload: Some(payload) }), &shutdown).await {
            return;
        }
    }
}

/// False once the watcher is gone or the server is shutting down.
async fn send(
    tx: &WatchSender,
    message: Result<pb::WatchDeploymentsResponse, Status>,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        sent = tx.send(message) => sent.is_ok(),
    }
}
