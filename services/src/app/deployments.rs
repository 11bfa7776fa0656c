//! Deployment use-cases: create (scored, idempotent), read with the next
//! action, lifecycle mutations with optimistic concurrency, outcome reports,
//! the audit trail and its live feed, and the outbox that hands work to
//! connectors once the decision recording it is durable.

use crate::domain::Label;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::group_commit::CreateQueue;
use super::{AppError, AppResult, check_etag, retry_on_conflict};
use crate::clock::Clock;
use crate::connectors::{Connectors, Deployed, DispatchError, Operation, ReportedOutcome};
use crate::domain::{
    ChangeContext, ConnectorType, Delivery, Deployment, DeploymentError, DeploymentStatus, GateEvaluation, Handover,
    NewDeployment, NewEvent, Outcome, Ring, controller, gate,
};
use crate::metrics::DeploymentMetrics;
use crate::store::audit::RequestKey;
use crate::store::connectors::{DispatchRecord, OutboxWrite};
use crate::store::{Alongside, CreateOutcome, DeploymentFilter, Page, Store, StoreError, StoredEvent};

/// Queued deliveries retried per round.
const PENDING_BATCH: u64 = 100;

/// Deployment use-cases over one store and one set of connectors.
#[derive(Clone)]
pub struct Deployments {
    store: Arc<Store>,
    metrics: DeploymentMetrics,
    connectors: Arc<Connectors>,
    clock: Clock,
    shutdown: CancellationToken,
    /// One per open watch, so that watchers cannot take all memory.
    watch_permits: Arc<Semaphore>,
    /// Open watches by identity, so that one caller cannot take them all.
    watchers: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    max_watches_per_identity: usize,
    in_flight: Arc<InFlight>,
    creates: CreateQueue,
}

/// A deployment as shown to callers: with its current ring's gate as of now
/// and what the rollout controller will do next (and when).
#[derive(Debug, Clone)]
pub struct Shown {
    pub deployment: Deployment,
    pub gate: GateEvaluation,
    pub next_action: String,
    pub next_action_time: Option<DateTime<Utc>>,
}

/// How many WatchDeployments streams may be open.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    pub total: usize,
    pub per_identity: usize,
}

/// An open watch: the committed-event feed, and its place among the open ones.
pub struct Watch {
    pub feed: broadcast::Receiver<Arc<StoredEvent>>,
    /// The last sequence committed when the watch began: the feed's events
    /// up to it are older than the watch.
    pub committed: i64,
    /// Only this deployment's events, when set.
    pub deployment: Option<Uuid>,
    _permit: OwnedSemaphorePermit,
    _slot: WatcherSlot,
}

/// One identity's place among the open watches, given back on drop.
struct WatcherSlot {
    watchers: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    identity: String,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().expect("watchers");
        if let Some(open) = watchers.get_mut(&self.identity) {
            *open -= 1;
            if *open == 0 {
                watchers.remove(&self.identity);
            }
        }
    }
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

impl Deployments {
    /// `shutdown` ends open WatchDeployments streams; at most `max_watch_streams` are open at once.
    pub fn new(
        store: Arc<Store>,
        metrics: DeploymentMetrics,
        connectors: Arc<Connectors>,
        clock: Clock,
        shutdown: CancellationToken,
        watch_limits: WatchLimits,
    ) -> Deployments {
        Deployments {
            store: store.clone(),
            metrics,
            connectors,
            clock,
            shutdown,
            watch_permits: Arc::new(Semaphore::new(watch_limits.total)),
            watchers: Arc::default(),
            max_watches_per_identity: watch_limits.per_identity,
            in_flight: Arc::default(),
            creates: CreateQueue::start(store),
        }
    }

    /// The clock every decision of this layer reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Ends open watches when the server shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Creates a deployment scored by the active risk model, or, for a retry
    /// with the same `request_id` and content, returns the one created first.
    ///
    /// # Errors
    /// ALREADY_EXISTS when `request_id` was used with other content;
    /// INVALID_ARGUMENT or FAILED_PRECONDITION for a named connector that
    /// does not fit; database failures.
    pub async fn create(&self, request_id: &str, new: NewDeployment, ctx: &ChangeContext) -> AppResult<Deployment> {
        if let Some(name) = &new.connector_name {
            self.check_named_connector(name, new.connector_type).await?;
        }
        let fingerprint = fingerprint(&new);
        match self.creates.create(request_id, fingerprint.clone(), new, ctx).await? {
            (CreateOutcome::Created(deployment), events) => {
                self.metrics.committed(&deployment, &events);
                Ok(deployment)
            }
            (CreateOutcome::Existing { deployment, fingerprint: existing }, _) if existing == fingerprint => {
                Ok(deployment)
            }
            (CreateOutcome::Existing { deployment, .. }, _) => Err(AppError::AlreadyExists(format!(
                "request_id {request_id:?} was already used for deployment {} with different content; use a new request_id",
                deployment.id
            ))),
        }
    }

    /// One deployment as shown, with its current gate and next action.
    ///
    /// # Errors
    /// NOT_FOUND; database failures.
    pub async fn get(&self, id: Uuid) -> AppResult<Shown> {
        let deployment = self.store.get_deployment(id).await?;
        let shown = self.shown(vec![deployment]).await?;
        Ok(shown.into_iter().next().expect("one in, one out"))
    }

    /// A page of deployments matching `filter`, after the `after` key.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list(&self, filter: &DeploymentFilter, after: Option<i64>, limit: u64) -> AppResult<Page<Shown>> {
        let page = self.store.list_deployments(filter, after, limit).await?;
        let Page { items, keys, next_after } = page;
        Ok(Page { items: self.shown(items).await?, keys, next_after })
    }

    /// Deployments with what the rollout controller will do next, judged now.
    async fn shown(&self, deployments: Vec<Deployment>) -> AppResult<Vec<Shown>> {
        let policies = self.store.shown_policies().await?;
        let calendar = self.store.shown_calendar().await?;
        let now = self.clock.now();
        Ok(deployments
            .into_iter()
            .map(|deployment| {
                let policy = &policies[deployment.current_ring];
                let mut gate = gate::evaluate(&deployment, policy, now);
                calendar.check_gate(&deployment, &mut gate);
                let (next_action, next_action_time) =
                    controller::decide(&deployment, policy, &gate, &calendar, now).explain(&deployment);
                Shown { deployment, gate, next_action, next_action_time }
            })
            .collect())
    }

    /// The audit trail of one deployment, a page at a time.
    ///
    /// # Errors
    /// Database failures.
    pub async fn events(&self, id: Uuid, after: Option<i64>, limit: u64) -> AppResult<Page<StoredEvent>> {
        Ok(self.store.list_events(Some(id), after, limit).await?)
    }

    /// Stored events after sequence `after`, in sequence order: of one
    /// deployment (`Some`), or of all.
    ///
    /// # Errors
    /// NOT_FOUND for an unknown deployment; database failures.
    pub async fn events_after(&self, deployment: Option<Uuid>, after: i64, limit: u64) -> AppResult<Page<StoredEvent>> {
        Ok(self.store.list_events(deployment, Some(after), limit).await?)
    }

    /// A feed of every event committed from now on, for one deployment
    /// (`Some`) or all; at most `--max-watch-streams` are open at once.
    ///
    /// # Errors
    /// NOT_FOUND for an unknown deployment; RESOURCE_EXHAUSTED when too many
    /// are open, on the server or by `identity`.
    pub async fn watch(&self, deployment: Option<Uuid>, identity: &str) -> AppResult<Watch> {
        if let Some(id) = deployment {
            self.store.get_deployment(id).await?;
        }
        let slot = {
            let mut watchers = self.watchers.lock().expect("watchers");
            let open = watchers.entry(identity.to_owned()).or_default();
            if *open >= self.max_watches_per_identity {
                self.metrics.limit_exceeded("watch_streams");
                return Err(AppError::ResourceExhausted(format!(
                    "{identity} holds {open} WatchDeployments streams, its limit; close one (a watch can resume with after_sequence)"
                )));
            }
            *open += 1;
            WatcherSlot { watchers: self.watchers.clone(), identity: identity.to_owned() }
        };
        let permit = self.watch_permits.clone().try_acquire_owned().map_err(|_| {
            self.metrics.limit_exceeded("watch_streams");
            AppError::ResourceExhausted(
                "too many WatchDeployments streams are open on this server; retry later or close an idle one".into(),
            )
        })?;
        // Subscribed before the call is answered: every event committed after
        // it reaches the watcher. The last sequence is read after subscribing,
        // so an event the feed still carries from before (PostgreSQL's tail
        // runs behind commits) is told apart from the later ones.
        let feed = self.store.subscribe();
        let committed = self.store.last_event_seq().await?;
        Ok(Watch { feed, committed, deployment, _permit: permit, _slot: slot })
    }

    /// Starts a created (or approved) deployment in its first ring, handing
    /// the work to its connector once the decision is durable. A retried
    /// start whose work is still queued delivers it; with a request id, a
    /// retry of a start that succeeded returns the deployment.
    ///
    /// # Errors
    /// FAILED_PRECONDITION from the state machine or the connector; ABORTED
    /// for a stale etag; ALREADY_EXISTS for a request id used for another call.
    pub async fn start(
        &self,
        id: Uuid,
        etag: Option<i64>,
        request_id: Option<&str>,
        ctx: &ChangeContext,
    ) -> AppResult<Deployment> {
        let key = request_id.map(|request_id| RequestKey {
            operation: "start_deployment",
            request_id: request_id.to_owned(),
            fingerprint: super::fingerprint(&(id, etag, &ctx.actor)),
        });
        let replay = match &key {
            Some(key) => super::replayed(&self.store, key).await?.is_some(),
            None => false,
        };
        let current = self.store.get_deployment(id).await?;
        if !replay {
            check_etag(etag, current.revision, format_args!("deployment {}", current.id))?;
        }
        if current.status == DeploymentStatus::Deploying
            && let Some((record, Delivery::Pending)) =
                self.store.find_dispatch(current.id, current.current_ring, "deploy").await?
        {
            return self.deliver(&current, &record, ctx).await;
        }
        if replay {
            return Ok(current);
        }
        // Refuse before anything reaches the connector.
        current.status.check_transition(DeploymentStatus::Deploying).map_err(DeploymentError::from)?;
        let calendar = self.store.calendar().await?;
        super::calendar::check_hold(&calendar, &current, current.current_ring, false, ctx.now, "StartDeployment")?;
        let queued = self.queue(&current, current.current_ring, Operation::Deploy).await?;
        let alongside = Alongside {
            outbox: Some(OutboxWrite::Queue(&queued.record)),
            request: key.as_ref(),
            ..Alongside::default()
        };
        let started = match self.mutate_with(id, etag, ctx, alongside, |d, ctx| d.start(&queued.handover, ctx)).await {
            // A concurrent retry with the same request id may have started it.
            Err(err) if let Some(key) = &key => match super::replayed(&self.store, key).await? {
                Some(_) => return Ok(self.store.get_deployment(id).await?),
                None => return Err(err),
            },
            started => started?,
        };
        // The connector hears of the work only once the decision is durable.
        self.deliver(&started, &queued.record, ctx).await
    }

    /// Records device counts for a ring, judged against its policy
    /// (`correction` replaces counts that were wrong, and may lower them).
    ///
    /// # Errors
    /// FAILED_PRECONDITION from the domain rules; ABORTED for a stale etag.
    pub async fn record_outcome(
        &self,
        id: Uuid,
        etag: Option<i64>,
        outcome: Outcome,
        correction: bool,
        ctx: &ChangeContext,
    ) -> AppResult<Deployment> {
        let policy = self.store.get_policy(outcome.ring).await?;
        match correction {
            false => self.mutate(id, etag, ctx, |d, ctx| d.report_outcome(outcome, &policy, ctx)).await,
            true => self.mutate(id, etag, ctx, |d, ctx| d.correct_outcome(outcome, &policy, ctx)).await,
        }
    }

    /// A create that names its connector must name one that exists, of its type.
    async fn check_named_connector(&self, name: &str, connector_type: ConnectorType) -> AppResult<()> {
        match self.store.get_connector(name).await {
            Ok(def) if def.connector_type == connector_type => Ok(()),
            Ok(def) => Err(AppError::invalid(
                "connector_name",
                format!(
                    "connector {name:?} is of type {}, not {}",
                    def.connector_type.as_label(),
                    connector_type.as_label()
                ),
            )),
            Err(StoreError::ConnectorNotFound(_)) => Err(AppError::FailedPrecondition(format!(
                "connector_name {name:?} names no connector; create it first or leave connector_name empty"
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// The outbox row handing `operation` in `ring` to the deployment's
    /// connector, and the handover its decision records. Nothing is called:
    /// the row is saved with the decision, then [`Deployments::deliver`]ed
    /// by the caller, which holds the work until then.
    ///
    /// # Errors
    /// FAILED_PRECONDITION when no enabled connector fits.
    pub(crate) async fn queue(&self, deployment: &Deployment, ring: Ring, operation: Operation) -> AppResult<Queued> {
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
    ) -> AppResult<Deployment> {
        let id = record.deployment_id;
        let ring = record.ring;
        let name = record.connector_name.as_str();
        let settle = async |result: Result<Deployed, DispatchError>| match result {
            Ok(deployed) => {
                let delivered = DispatchRecord { object_id: deployed.object_id.clone(), ..record.clone() };
                let handover = Handover {
                    connector: name.to_owned(),
                    object_id: deployed.object_id,
                    device_count: deployed.device_count,
                };
                let settle = OutboxWrite::Settle(&delivered, Delivery::Delivered);
                self.mutate_with(id, None, ctx, Alongside::outbox(settle), |d, ctx| {
                    Ok(d.delivered(ring, &handover, ctx))
                })
                .await
            }
            Err(DispatchError::Permanent { message, .. }) => {
                let settle = OutboxWrite::Settle(record, Delivery::Refused);
                let refused = self
                    .mutate_with(id, None, ctx, Alongside::outbox(settle), |d, ctx| {
                        Ok(d.delivery_refused(ring, name, &message, ctx))
                    })
                    .await?;
                Err(AppError::FailedPrecondition(format!(
                    "connector {name:?} refused to {} in {ring}: {message}; the deployment is now {}",
                    record.operation, refused.status
                )))
            }
            Err(
                err @ (DispatchError::Transient { .. } | DispatchError::Open { .. } | DispatchError::NoConnector(_)),
            ) => {
                let error = err.to_string();
                tracing::warn!(deployment = %id, connector = name, %error, "delivery failed; it stays queued");
                self.mutate_with(id, None, ctx, Alongside::default(), |d, ctx| {
                    Ok(d.delivery_failed(ring, name, &error, ctx))
                })
                .await
            }
            // Another replica delivers it and records how it went.
            Err(DispatchError::Elsewhere) => Ok(self.store.get_deployment(id).await?),
            Err(DispatchError::Store(err)) => Err(err.into()),
        };
        self.connectors.deliver(deployment, record, settle).await
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
            let ctx = self.clock.context("dispatcher".to_owned(), String::new(), None);
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
                Err(AppError::Unavailable(_) | AppError::Conflict(_)) if attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(AppError::FailedPrecondition(_)) if attempt < ATTEMPTS && self.may_apply_later(&reported).await => {
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

    async fn apply_reported_outcome(&self, reported: &ReportedOutcome) -> AppResult<Deployment> {
        let ctx = self.clock.context(format!("connector:{}", reported.connector), String::new(), None);
        let outcome = Outcome {
            ring: reported.ring,
            success_count: reported.counts.success_count,
            failure_count: reported.counts.failure_count,
            rollback_validated: reported.rollback_validated,
        };
        self.record_outcome(reported.deployment_id, None, outcome, false, &ctx).await
    }

    /// Reads, mutates and saves a deployment. With an etag, a stale read is
    /// ABORTED; without one, a lost race is retried on fresh state so that the
    /// rules are always checked against what is stored.
    pub async fn mutate(
        &self,
        id: Uuid,
        etag: Option<i64>,
        ctx: &ChangeContext,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> AppResult<Deployment> {
        self.mutate_with(id, etag, ctx, Alongside::default(), change).await
    }

    /// [`Deployments::mutate`], writing what `alongside` says in the same
    /// transaction (an outbox queue write is saved even when the change
    /// records no event).
    async fn mutate_with(
        &self,
        id: Uuid,
        etag: Option<i64>,
        ctx: &ChangeContext,
        alongside: Alongside<'_>,
        change: impl Fn(&mut Deployment, &ChangeContext) -> Result<Vec<NewEvent>, DeploymentError>,
    ) -> AppResult<Deployment> {
        // A background duty's change is fenced by the lease it holds.
        let alongside = Alongside { fence: alongside.fence.or(ctx.fence.as_ref()), ..alongside };
        retry_on_conflict(etag.is_none(), || async {
            let mut deployment = self.store.get_deployment(id).await?;
            check_etag(etag, deployment.revision, format_args!("deployment {id}"))?;
            let events = change(&mut deployment, ctx)?;
            // Settled already (the ring's delivery state and the outbox row commit together).
            if events.is_empty() && !matches!(alongside.outbox, Some(OutboxWrite::Queue(_))) {
                return Ok(deployment);
            }
            let saved = self.store.save_deployment_with(&deployment, &events, alongside).await?;
            self.metrics.committed(&saved, &events);
            Ok(saved)
        })
        .await
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
