//! DeploymentService adapter: validates requests, applies domain mutations
//! with optimistic concurrency, persists through the store, and streams the
//! committed event feed to watchers.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eucora::v1 as pb;
use eucora::v1::deployment_service_server::DeploymentService;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{self, deployment_to_proto, event_to_proto};
use super::page_token;
use super::validate::{MAX_ACTOR_LEN, MAX_REASON_LEN, Violations, check_etag};
use super::{change_context, fitting};
use crate::clock::Clock;
use crate::connectors::{Connectors, DispatchError, Operation, ReportedOutcome};
use crate::domain::connector::{NAME_RULE, is_valid_name};
use crate::domain::{
    ChangeContext, ConnectorType, Delivery, Deployment, DeploymentError, DeploymentStatus, Handover, MAX_RING_DEVICES,
    NewDeployment, NewEvent, Outcome, Ring, SiteClass, controller, gate,
};
use crate::error::{ApiError, ApiResult};
use crate::metrics::DeploymentMetrics;
use crate::store::connectors::{DispatchRecord, OutboxWrite};
use crate::store::{CreateOutcome, DeploymentFilter, Store, StoreError};

const MAX_APP_NAME_LEN: usize = 200;
const MAX_VERSION_LEN: usize = 100;
const MAX_REQUEST_ID_LEN: usize = 128;
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_EVENT_PAGE_SIZE: u64 = 100;
const MAX_EVENT_PAGE_SIZE: u64 = 1000;
/// Messages buffered per watcher between the feed and its HTTP/2 stream.
const WATCH_BUFFER: usize = 256;
/// Queued deliveries retried per round.
const PENDING_BATCH: u64 = 100;
/// Retries of a mutation without etag that lost a race to a concurrent one.
const MAX_MUTATION_ATTEMPTS: usize = 8;

/// The DeploymentService implementation.
#[derive(Clone)]
pub struct DeploymentApi {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
    connectors: Arc<Connectors>,
    clock: Clock,
    shutdown: CancellationToken,
    /// One per open WatchDeployments stream, so that watchers cannot take all memory.
    watch_permits: Arc<Semaphore>,
    in_flight: Arc<InFlight>,
}

/// Work a call in this process has queued and is delivering: the dispatcher
/// leaves it to that call rather than deliver it alongside.
#[derive(Default)]
struct InFlight(std::sync::Mutex<HashSet<DispatchKey>>);

type DispatchKey = (Uuid, Ring, &'static str);

impl InFlight {
    /// None while another call holds the same work.
    fn claim(self: &Arc<Self>, record: &DispatchRecord) -> Option<Claim> {
        let key = (record.deployment_id, record.ring, record.operation);
        let fresh = self.0.lock().expect("in-flight set").insert(key);
        fresh.then(|| Claim { in_flight: self.clone(), key })
    }
}

/// Held from before the decision that queues the work is saved until its
/// delivery has been recorded.
pub(crate) struct Claim {
    in_flight: Arc<InFlight>,
    key: DispatchKey,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.in_flight.0.lock().expect("in-flight set").remove(&self.key);
    }
}

/// Work to hand to a connector once the decision that queues it is durable.
pub(crate) struct Queued {
    pub record: DispatchRecord,
    pub handover: Handover,
    /// None when a concurrent call already claimed the same work.
    _claim: Option<Claim>,
}

impl DeploymentApi {
    /// `shutdown` ends open WatchDeployments streams; at most `max_watch_streams` are open at once.
    pub fn new(
        store: Arc<Store>,
        metrics: DeploymentMetrics,
        connectors: Arc<Connectors>,
        clock: Clock,
        shutdown: CancellationToken,
        max_watch_streams: usize,
    ) -> DeploymentApi {
        let watch_permits = Arc::new(Semaphore::new(max_watch_streams));
        DeploymentApi { store, metrics, connectors, clock, shutdown, watch_permits, in_flight: Arc::default() }
    }

    /// Deployments as the API shows them, with what the rollout controller will do next.
    async fn with_next_action(&self, deployments: &[Deployment]) -> ApiResult<Vec<pb::Deployment>> {
        let policies = self.store.list_policies().await?;
        let now = self.clock.now();
        Ok(deployments
            .iter()
            .map(|d| {
                let policy = &policies[usize::from(d.current_ring.number())];
                let gate = gate::evaluate(d, policy, now);
                let (next_action, at) = controller::decide(d, policy, &gate, now).explain(d);
                let mut shown = deployment_to_proto(d);
                // The current ring's gate as of now: what blocks or allows leaving it.
                let current = convert::ring_to_proto(d.current_ring) as i32;
                if let Some(progress) = shown.ring_progress.iter_mut().find(|p| p.ring == current) {
                    progress.last_gate = Some(convert::gate_to_proto(&shown.id, &gate));
                }
                pb::Deployment { next_action, next_action_time: at.map(convert::timestamp), ..shown }
            })
            .collect())
    }

    /// A create that names its connector must name one that exists, of its type.
    async fn check_named_connector(&self, name: &str, connector_type: ConnectorType) -> ApiResult<()> {
        match self.store.get_connector(name).await {
            Ok(def) if def.connector_type == connector_type => Ok(()),
            Ok(def) => Err(ApiError::invalid(
                "connector_name",
                format!(
                    "connector {name:?} is of type {}, not {}",
                    def.connector_type.as_label(),
                    connector_type.as_label()
                ),
            )),
            Err(StoreError::ConnectorNotFound(_)) => Err(ApiError::FailedPrecondition(format!(
                "connector_name {name:?} names no connector; create it first or leave connector_name empty"
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// The outbox row handing `operation` in `ring` to the deployment's
    /// connector, and the handover its decision records. Nothing is called:
    /// the row is saved with the decision, then [`DeploymentApi::deliver`]ed
    /// by the caller, which holds the work until then.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when no enabled connector fits.
    pub(crate) async fn queue(&self, deployment: &Deployment, ring: Ring, operation: Operation) -> ApiResult<Queued> {
        let record = self.connectors.queue(deployment, ring, operation).await?;
        let handover = Handover { connector: record.connector_name.clone(), object_id: None, device_count: None };
        let claim = self.in_flight.claim(&record);
        Ok(Queued { record, handover, _claim: claim })
    }

    /// Delivers work whose decision is committed, and records how it went:
    /// delivered; failed transiently (it stays queued, and is retried every
    /// `--delivery-retry-interval`); or refused, which fails a live
    /// deployment with the connector's answer in its audit trail.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when the connector refused the work; database failures.
    /// `deployment` is any stored version of it (the work names its app and version).
    pub(crate) async fn deliver(
        &self,
        deployment: &Deployment,
        record: &DispatchRecord,
        ctx: &ChangeContext,
    ) -> ApiResult<Deployment> {
        let id = record.deployment_id;
        let ring = record.ring;
        let name = record.connector_name.as_str();
        match self.connectors.deliver(deployment, record).await {
            Ok(deployed) => {
                let delivered = DispatchRecord { object_id: deployed.object_id.clone(), ..record.clone() };
                let handover = Handover {
                    connector: name.to_owned(),
                    object_id: deployed.object_id,
                    device_count: deployed.device_count,
                };
                let settle = OutboxWrite::Settle(&delivered, Delivery::Delivered);
                self.mutate_with(id, None, ctx, Some(settle), |d, ctx| Ok(d.delivered(ring, &handover, ctx))).await
            }
            Err(DispatchError::Permanent { message, .. }) => {
                let settle = OutboxWrite::Settle(record, Delivery::Refused);
                let refused =
                    self.mutate_with(id, None, ctx, Some(settle), |d, ctx| {
                        Ok(d.delivery_refused(ring, name, &message, ctx))
                    })
                    .await?;
                Err(ApiError::FailedPrecondition(format!(
                    "connector {name:?} refused to {} in {ring}: {message}; the deployment is now {}",
                    record.operation, refused.status
                )))
            }
            Err(
                err @ (DispatchError::Transient { .. } | DispatchError::Open { .. } | DispatchError::NoConnector(_)),
            ) => {
                let error = err.to_string();
                tracing::warn!(deployment = %id, connector = name, %error, "delivery failed; it stays queued");
                self.mutate_with(id, None, ctx, None, |d, ctx| Ok(d.delivery_failed(ring, name, &error, ctx))).await
            }
            Err(DispatchError::Store(err)) => Err(err.into()),
        }
    }

    /// Delivers what is still queued (a first attempt failed, or the server
    /// stopped in between), oldest first.
    pub async fn deliver_pending(&self) {
        let pending = match self.store.pending_dispatches(PENDING_BATCH).await {
            Ok(pending) => pending,
            Err(err) => {
                tracing::warn!(error = %err, "listing queued deliveries");
                return;
            }
        };
        for record in pending {
            let Some(_claim) = self.in_flight.claim(&record) else { continue };
            let ctx = ChangeContext {
                actor: "dispatcher".to_owned(),
                reason: String::new(),
                correlation_id: Uuid::new_v4().to_string(),
                now: crate::clock::stored_time(self.clock.now()),
            };
            let delivered = match self.store.get_deployment(record.deployment_id).await {
                Ok(deployment) => self.deliver(&deployment, &record, &ctx).await,
                Err(err) => Err(err.into()),
            };
            if let Err(err) = delivered {
                tracing::info!(deployment = %record.deployment_id, error = %err, "queued delivery not completed");
            }
        }
    }

    /// Applies outcomes a connector reported on its own, as ReportRingOutcome
    /// would. A report can overtake the commit of the dispatch it answers
    /// (the ring has not started yet), or meet a database hiccup: then it is
    /// retried for a few seconds rather than lost.
    pub async fn record_reported_outcome(&self, reported: ReportedOutcome) {
        const ATTEMPTS: u32 = 30;
        for attempt in 1..=ATTEMPTS {
            match self.apply_reported_outcome(&reported).await {
                Err(ApiError::Unavailable(_) | ApiError::Aborted(_)) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(ApiError::FailedPrecondition(_)) if attempt < ATTEMPTS && self.may_apply_later(&reported).await => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(err) => {
                    // The deployment moved on (e.g. rolled back) before the report arrived.
                    tracing::info!(deployment = %reported.deployment_id, error = %err, "connector outcome not applied");
                    return;
                }
                Ok(_) => return,
            }
        }
    }

    /// Whether a refused report may apply on another try: the ring has not
    /// started yet, or started since and holds lower counts (or the
    /// deployment cannot be read right now).
    async fn may_apply_later(&self, reported: &ReportedOutcome) -> bool {
        let counts = reported.counts;
        match self.store.get_deployment(reported.deployment_id).await {
            Ok(d) => {
                !d.status.is_terminal()
                    && d.current_ring <= reported.ring
                    && d.progress(reported.ring).is_none_or(|p| {
                        p.success_count <= counts.success_count
                            && p.failure_count <= counts.failure_count
                            && (p.success_count, p.failure_count) != (counts.success_count, counts.failure_count)
                    })
            }
            Err(err) => !matches!(err, StoreError::NotFound(_)),
        }
    }

    async fn apply_reported_outcome(&self, reported: &ReportedOutcome) -> ApiResult<Deployment> {
        {
            let policy = self.store.get_policy(reported.ring).await?;
            let ctx = ChangeContext {
                actor: format!("connector:{}", reported.connector),
                reason: String::new(),
                correlation_id: Uuid::new_v4().to_string(),
                now: crate::clock::stored_time(chrono::Utc::now()),
            };
            let outcome = Outcome {
                ring: reported.ring,
                success_count: reported.counts.success_count,
                failure_count: reported.counts.failure_count,
                rollback_validated: reported.rollback_validated,
            };
            self.mutate(reported.deployment_id, None, &ctx, |d, ctx| d.report_outcome(outcome, &policy, ctx)).await
        }
    }

    /// Reads, mutates and saves a deployment. With an etag, a stale read is
    /// ABORTED; without one, a lost race is retried on fresh state so that the
    /// rules are always checked against what is stored.
    pub(crate) async fn mutate(
        &self,
        id: Uuid,
        etag: Option<i64>,
        ctx: &ChangeContext,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> ApiResult<Deployment> {
        self.mutate_with(id, etag, ctx, None, change).await
    }

    /// [`DeploymentApi::mutate`], writing `outbox` in the same transaction
    /// (saved even when the change records no event).
    pub(crate) async fn mutate_with(
        &self,
        id: Uuid,
        etag: Option<i64>,
        ctx: &ChangeContext,
        outbox: Option<OutboxWrite<'_>>,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> ApiResult<Deployment> {
        for _ in 0..MAX_MUTATION_ATTEMPTS {
            let mut deployment = self.store.get_deployment(id).await?;
            check_etag(etag, deployment.revision, format_args!("deployment {id}"))?;
            let events = change(&mut deployment, ctx)?;
            let saved = match outbox {
                // Settled already (the ring's delivery state and the outbox row commit together).
                None | Some(OutboxWrite::Settle(..)) if events.is_empty() => return Ok(deployment),
                Some(outbox) => self.store.save_deployment_with(&deployment, &events, outbox).await,
                None => self.store.save_deployment(&deployment, &events).await,
            };
            match saved {
                Ok(saved) => {
                    self.metrics.committed(&saved, &events);
                    return Ok(saved);
                }
                Err(StoreError::RevisionConflict { .. }) if etag.is_none() => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(ApiError::Aborted(format!("deployment {id} is changing too fast; retry")))
    }

    /// Applies `change` to a validated mutation through [`DeploymentApi::mutate`].
    async fn apply<T>(
        &self,
        request: &Request<T>,
        valid: ValidMutation,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> Result<Option<pb::Deployment>, Status> {
        let ctx = change_context(request, valid.actor, valid.reason);
        let deployment = self.mutate(valid.id, valid.etag, &ctx, change).await?;
        Ok(Some(deployment_to_proto(&deployment)))
    }
}

/// Hash of a create request's content: equal for a retry, different for a
/// reuse of the request id with other content.
fn fingerprint(new: &NewDeployment) -> String {
    let canonical = serde_json::json!([
        new.app_name,
        new.version,
        new.connector_type.as_label(),
        new.connector_name,
        new.target_ring.as_label(),
        new.evidence_pack_id.to_string(),
        new.submitter,
        new.site_class.as_label(),
        new.evidence,
    ]);
    Sha256::digest(canonical.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn validate_create(req: &pb::CreateDeploymentRequest) -> ApiResult<(String, NewDeployment)> {
    let mut v = Violations::new();
    let request_id = v.required_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
    let app_name = v.required_text("app_name", &req.app_name, MAX_APP_NAME_LEN);
    let version = v.required_text("version", &req.version, MAX_VERSION_LEN);
    let connector_type = v
        .enumeration::<pb::ConnectorType>("connector_type", req.connector_type, true)
        .and_then(convert::connector_type_from_proto);
    let target_ring =
        v.enumeration::<pb::Ring>("target_ring", req.target_ring, false).and_then(convert::ring_from_proto);
    let evidence_pack_id = v.uuid("evidence_pack_id", &req.evidence_pack_id);
    let submitter = v.required_text("submitter", &req.submitter, MAX_ACTOR_LEN);
    let site_class =
        v.enumeration::<pb::SiteClass>("site_class", req.site_class, false).and_then(convert::site_class_from_proto);
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
    /// (field name, value); CAB decisions require an approver, others default to anonymous.
    actor: (&'static str, &'a str),
    actor_required: bool,
    reason: &'a str,
    reason_required: bool,
    etag: &'a str,
}

impl<'a> MutationFields<'a> {
    fn cab(id: &'a str, approver: &'a str, reason: &'a str, etag: &'a str) -> Self {
        MutationFields { id, actor: ("approver", approver), actor_required: true, reason, reason_required: false, etag }
    }

    fn lifecycle(id: &'a str, actor: &'a str, reason: &'a str, etag: &'a str) -> Self {
        MutationFields { id, actor: ("actor", actor), actor_required: false, reason, reason_required: false, etag }
    }

    fn reason_required(self) -> Self {
        MutationFields { reason_required: true, ..self }
    }

    /// Validates the fields, reporting them with any violations already in `v`.
    fn validate(self, mut v: Violations) -> ApiResult<ValidMutation> {
        let id = v.uuid("id", self.id);
        let (actor_field, actor) = self.actor;
        let actor = if self.actor_required {
            Some(v.required_text(actor_field, actor, MAX_ACTOR_LEN))
        } else {
            v.optional_text(actor_field, actor, MAX_ACTOR_LEN)
        };
        let reason = if self.reason_required {
            Some(v.required_text("reason", self.reason, MAX_REASON_LEN))
        } else {
            v.optional_text("reason", self.reason, MAX_REASON_LEN)
        };
        let etag = v.etag("etag", self.etag);
        v.finish()?;
        Ok(ValidMutation { id, actor, reason, etag })
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
        let ring = v.enumeration::<pb::Ring>("ring", ring, true).and_then(convert::ring_from_proto);
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
    actor: Option<String>,
    reason: Option<String>,
    etag: Option<i64>,
}

fn list_filters_key(filter: &DeploymentFilter) -> String {
    format!(
        "status={:?};ring={:?};app={:?};connector={:?}",
        filter.status.map(|s| s.as_label()),
        filter.ring.map(|r| r.as_label()),
        filter.app_name,
        filter.connector_type.map(|c| c.as_label())
    )
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchDeploymentsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DeploymentService for DeploymentApi {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::CreateDeploymentResponse>, Status> {
        let (request_id, mut new) = validate_create(request.get_ref())?;
        if let Some(name) = &new.connector_name {
            self.check_named_connector(name, new.connector_type).await?;
        }
        let fingerprint = fingerprint(&new);
        let ctx = change_context(&request, Some(new.submitter.clone()), None);
        // Scoring reads the active model and two indexed counts; the create itself stays one transaction.
        let model = self.store.active_risk_model().await.map_err(ApiError::from)?;
        let history = self.store.app_history(&new.app_name, ctx.now).await.map_err(ApiError::from)?;
        new.assessment = Some(crate::domain::risk::assess(&model, &new.evidence, new.target_ring, history));
        let (deployment, events) = Deployment::create(Uuid::new_v4(), new, &ctx);
        let deployment = match self
            .store
            .create_deployment(&request_id, &fingerprint, &deployment, &events)
            .await
            .map_err(ApiError::from)?
        {
            CreateOutcome::Created(deployment) => {
                self.metrics.committed(&deployment, &events);
                deployment
            }
            CreateOutcome::Existing { deployment, fingerprint: existing } if existing == fingerprint => deployment,
            CreateOutcome::Existing { deployment, .. } => {
                return Err(ApiError::AlreadyExists(format!(
                    "request_id {request_id:?} was already used for deployment {} with different content; use a new request_id",
                    deployment.id
                ))
                .into());
            }
        };
        Ok(Response::new(pb::CreateDeploymentResponse { deployment: Some(deployment_to_proto(&deployment)) }))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::GetDeploymentResponse>, Status> {
        let mut v = Violations::new();
        let id = v.uuid("id", &request.get_ref().id);
        v.finish()?;
        let deployment = self.store.get_deployment(id).await.map_err(ApiError::from)?;
        let shown = self.with_next_action(std::slice::from_ref(&deployment)).await?.pop();
        Ok(Response::new(pb::GetDeploymentResponse { deployment: shown }))
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
                .and_then(convert::status_from_proto),
            ring: v.enumeration::<pb::Ring>("ring", req.ring, false).and_then(convert::ring_from_proto),
            app_name: v.optional_text("app_name", &req.app_name, MAX_APP_NAME_LEN),
            connector_type: v
                .enumeration::<pb::ConnectorType>("connector_type", req.connector_type, false)
                .and_then(convert::connector_type_from_proto),
        };
        v.finish()?;
        let filters_key = list_filters_key(&filter);
        let after = page_token::decode(&req.page_token, &filters_key)?;
        let page = self.store.list_deployments(&filter, after, limit).await.map_err(ApiError::from)?;
        let shown = self.with_next_action(&page.items).await?;
        let page = fitting(page.with_items(shown));
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: page.items,
            next_page_token: page.next_after.map(|after| page_token::encode(after, &filters_key)).unwrap_or_default(),
        }))
    }

    async fn approve_deployment(
        &self,
        request: Request<pb::ApproveDeploymentRequest>,
    ) -> Result<Response<pb::ApproveDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::cab(&req.id, &req.approver, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::approve).await?;
        Ok(Response::new(pb::ApproveDeploymentResponse { deployment }))
    }

    async fn reject_deployment(
        &self,
        request: Request<pb::RejectDeploymentRequest>,
    ) -> Result<Response<pb::RejectDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::cab(&req.id, &req.approver, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::reject).await?;
        Ok(Response::new(pb::RejectDeploymentResponse { deployment }))
    }

    async fn start_deployment(
        &self,
        request: Request<pb::StartDeploymentRequest>,
    ) -> Result<Response<pb::StartDeploymentResponse>, Status> {
        let req = request.get_ref();
        let valid = MutationFields::lifecycle(&req.id, &req.actor, "", &req.etag).validate(Violations::new())?;
        let ctx = change_context(&request, valid.actor, valid.reason);
        let current = self.store.get_deployment(valid.id).await.map_err(ApiError::from)?;
        check_etag(valid.etag, current.revision, format_args!("deployment {}", current.id))?;
        if current.status == DeploymentStatus::Deploying
            && let Some((record, Delivery::Pending)) =
                self.store.find_dispatch(current.id, current.current_ring, "deploy").await.map_err(ApiError::from)?
        {
            // Started, its work still queued: a retried start delivers it now.
            let deployment = self.deliver(&current, &record, &ctx).await?;
            return Ok(Response::new(pb::StartDeploymentResponse {
                deployment: Some(deployment_to_proto(&deployment)),
            }));
        }
        // Refuse before anything reaches the connector.
        current
            .status
            .check_transition(DeploymentStatus::Deploying)
            .map_err(DeploymentError::from)
            .map_err(ApiError::from)?;
        let queued = self.queue(&current, current.current_ring, Operation::Deploy).await?;
        let outbox = Some(OutboxWrite::Queue(&queued.record));
        let started =
            self.mutate_with(valid.id, valid.etag, &ctx, outbox, |d, ctx| d.start(&queued.handover, ctx)).await?;
        // The connector hears of the work only once the decision is durable.
        let deployment = self.deliver(&started, &queued.record, &ctx).await?;
        Ok(Response::new(pb::StartDeploymentResponse { deployment: Some(deployment_to_proto(&deployment)) }))
    }

    async fn report_ring_outcome(
        &self,
        request: Request<pb::ReportRingOutcomeRequest>,
    ) -> Result<Response<pb::ReportRingOutcomeResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let counts = RingCounts::validate(&mut v, req.ring, req.success_count, req.failure_count);
        let valid = MutationFields::lifecycle(&req.id, &req.actor, "", &req.etag).validate(v)?;
        let policy = self.store.get_policy(counts.ring).await.map_err(ApiError::from)?;
        let outcome = counts.outcome(req.rollback_validated);
        let deployment = self.apply(&request, valid, |d, ctx| d.report_outcome(outcome, &policy, ctx)).await?;
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
        let fields = MutationFields::lifecycle(&req.id, &req.actor, &req.reason, &req.etag).reason_required();
        let valid = fields.validate(v)?;
        let policy = self.store.get_policy(counts.ring).await.map_err(ApiError::from)?;
        let outcome = counts.outcome(false);
        let deployment = self.apply(&request, valid, |d, ctx| d.correct_outcome(outcome, &policy, ctx)).await?;
        Ok(Response::new(pb::CorrectRingOutcomeResponse { deployment }))
    }

    async fn complete_deployment(
        &self,
        request: Request<pb::CompleteDeploymentRequest>,
    ) -> Result<Response<pb::CompleteDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::lifecycle(&req.id, &req.actor, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::complete).await?;
        Ok(Response::new(pb::CompleteDeploymentResponse { deployment }))
    }

    async fn fail_deployment(
        &self,
        request: Request<pb::FailDeploymentRequest>,
    ) -> Result<Response<pb::FailDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::lifecycle(&req.id, &req.actor, &req.reason, &req.etag).reason_required();
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::fail).await?;
        Ok(Response::new(pb::FailDeploymentResponse { deployment }))
    }

    async fn pause_deployment(
        &self,
        request: Request<pb::PauseDeploymentRequest>,
    ) -> Result<Response<pb::PauseDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::lifecycle(&req.id, &req.actor, &req.reason, &req.etag);
        let deployment = self.apply(&request, fields.validate(Violations::new())?, Deployment::pause).await?;
        Ok(Response::new(pb::PauseDeploymentResponse { deployment }))
    }

    async fn resume_deployment(
        &self,
        request: Request<pb::ResumeDeploymentRequest>,
    ) -> Result<Response<pb::ResumeDeploymentResponse>, Status> {
        let req = request.get_ref();
        let fields = MutationFields::lifecycle(&req.id, &req.actor, &req.reason, &req.etag);
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
        let filters_key = format!("deployment={id}");
        let after = page_token::decode(&req.page_token, &filters_key)?;
        let page = self.store.list_events(id, after, limit).await.map_err(ApiError::from)?;
        let events = page.items.iter().map(event_to_proto).collect();
        let page = fitting(page.with_items(events));
        Ok(Response::new(pb::ListDeploymentEventsResponse {
            events: page.items,
            next_page_token: page.next_after.map(|after| page_token::encode(after, &filters_key)).unwrap_or_default(),
        }))
    }

    type WatchDeploymentsStream = WatchStream;

    async fn watch_deployments(
        &self,
        request: Request<pb::WatchDeploymentsRequest>,
    ) -> Result<Response<Self::WatchDeploymentsStream>, Status> {
        let deployment_id = request.get_ref().deployment_id.as_str();
        let filter = if deployment_id.is_empty() {
            None
        } else {
            let mut v = Violations::new();
            let id = v.uuid("deployment_id", deployment_id);
            v.finish()?;
            self.store.get_deployment(id).await.map_err(ApiError::from)?;
            Some(id)
        };
        let permit = self.watch_permits.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "too many WatchDeployments streams are open on this server; retry later or close an idle one",
            )
        })?;
        // Subscribe before answering so that every event committed after the
        // call was accepted reaches this watcher.
        let feed = self.store.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            forward_events(feed, tx, filter, shutdown).await;
            drop(permit);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Copies the committed-event feed to one watcher until it disconnects or the
/// server shuts down. A watcher slower than the feed only delays itself: the
/// feed drops what it cannot buffer for it, and it is told how many it missed.
async fn forward_events(
    mut feed: broadcast::Receiver<Arc<crate::store::StoredEvent>>,
    tx: mpsc::Sender<Result<pb::WatchDeploymentsResponse, Status>>,
    filter: Option<Uuid>,
    shutdown: CancellationToken,
) {
    use pb::watch_deployments_response::Payload;
    loop {
        let payload = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
            received = feed.recv() => match received {
                Ok(stored) if filter.is_none_or(|id| id == stored.event.deployment_id) => Payload::Event(event_to_proto(&stored)),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => Payload::MissedEventCount(i64::try_from(missed).unwrap_or(i64::MAX)),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let message = Ok(pb::WatchDeploymentsResponse { payload: Some(payload) });
        tokio::select! {
            () = shutdown.cancelled() => return,
            sent = tx.send(message) => if sent.is_err() { return },
        }
    }
}
