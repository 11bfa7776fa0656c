//! Execution-plane connectors at run time: the [`Driver`] trait and its two
//! drivers (HTTP adapter, built-in simulator), and [`Connectors`], which
//! resolves a deployment's connector and calls it through its circuit
//! breaker with per-call timeouts, bounded jittered retries of TRANSIENT
//! errors and metrics, delivering the work its callers queued in the outbox
//! (never the same work twice at once in a process, never work already
//! delivered; among replicas a claim on the work decides who delivers it),
//! and probes every connector's health on its own schedule. Breakers are
//! kept by [`Coordination`], shared among replicas when Redis is configured.

pub mod egress;
pub mod http;
pub mod simulator;

use crate::domain::Label;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use eucora_otel::Catalog;
use eucora_otel::catalog::{ErrorTypeLabel, OperationStatusLabel};
use tokio::sync::{Mutex, broadcast, mpsc};

use egress::EgressPolicy;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::clock::Clock;
use crate::coord::{Coordination, LeaseHandle};
use crate::domain::breaker::{BreakerState, CircuitBreaker};
use crate::domain::connector::{ConnectorDef, Driver as DriverKind, Health, SimulatorConfig};
use crate::domain::{ChangeContext, ConnectorType, Delivery, Deployment, Fence, Ring};
use crate::store::connectors::DispatchRecord;
use crate::store::{Store, StoreError};

/// Why a single call to a connector failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Timeouts, connection errors, 5xx, 429: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// Validation errors, other 4xx: retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// What a deployment asks of a connector for one ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub deployment_id: Uuid,
    pub app_name: String,
    pub version: String,
    pub ring: Ring,
}

impl WorkItem {
    pub fn of(deployment: &Deployment, ring: Ring) -> WorkItem {
        WorkItem {
            deployment_id: deployment.id,
            app_name: deployment.app_name.clone(),
            version: deployment.version.clone(),
            ring,
        }
    }

    /// Same for every retry of the same work: adapters deduplicate on it.
    pub fn idempotency_key(&self, operation: Operation) -> String {
        format!("{}:{}:{}", self.deployment_id, self.ring.as_label(), operation.as_label())
    }
}

/// Device counts a connector reports for one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingCounts {
    pub success_count: u64,
    pub failure_count: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Operation {
    Deploy,
    Status,
    Remove,
    Health,
}

impl Operation {
    /// `operation` of the connector metrics; also the outbox's and idempotency keys' word.
    pub fn as_label(self) -> &'static str {
        self.into()
    }
}

/// What a platform answered to a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployed {
    /// The platform's identifier of what it created.
    pub object_id: Option<String>,
    /// How many devices the ring has on the platform, when it knows:
    /// outcome reports may not exceed it.
    pub device_count: Option<u64>,
}

/// One platform, as the control plane talks to it.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// Starts `work` on the platform.
    async fn deploy(&self, work: &WorkItem) -> Result<Deployed, CallError>;
    async fn status(&self, work: &WorkItem) -> Result<RingCounts, CallError>;
    /// Removes the deployment's application version (rollback).
    async fn remove(&self, work: &WorkItem) -> Result<(), CallError>;
    async fn health(&self) -> Result<(), CallError>;
}

/// Device outcomes a driver reports back on its own (the simulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedOutcome {
    pub connector: String,
    pub deployment_id: Uuid,
    pub ring: Ring,
    pub counts: RingCounts,
    pub rollback_validated: bool,
}

/// Why work could not be handed to a connector.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no enabled connector {0}; create one with ConnectorService/CreateConnector")]
    NoConnector(String),
    #[error("connector {name:?} is failing fast (circuit open) until {retry_at}; retry after that")]
    Open { name: String, retry_at: DateTime<Utc> },
    #[error("connector {name:?} failed: {message}")]
    Transient { name: String, message: String },
    #[error("connector {name:?} refused the work: {message}")]
    Permanent { name: String, message: String },
    #[error("another replica is delivering this work")]
    Elsewhere,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Retry settings for TRANSIENT errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, min_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

/// A breaker's state for operators.
#[derive(Debug, Clone)]
pub struct BreakerView {
    pub state: BreakerState,
    pub breaker: CircuitBreaker,
}

impl BreakerView {
    /// Opaque version of the breaker's state: it changes with every
    /// transition and every failure counted.
    pub fn etag(&self) -> String {
        let opened = self.breaker.opened_at().map_or(0, |at| at.timestamp_millis());
        format!("{}.{}.{opened}", self.state.as_label(), self.breaker.consecutive_failures())
    }
}

type CachedDriver = (i64, Arc<dyn Driver>);

/// The connector runtime shared by the services.
pub struct Connectors {
    clock: Clock,
    store: Arc<Store>,
    catalog: Catalog,
    retry: RetryPolicy,
    http: reqwest::Client,
    egress: EgressPolicy,
    outcomes: mpsc::Sender<ReportedOutcome>,
    coordination: Arc<Coordination>,
    /// Drivers by connector name, with the revision they were built from.
    drivers: SyncMutex<HashMap<String, CachedDriver>>,
    /// The last probe of each connector by name: `connector_health` is per
    /// type, so a type is healthy only while every connector of it is.
    health: SyncMutex<HashMap<String, (&'static str, bool)>>,
    /// One dispatch of the same work at a time in this process.
    dispatch_locks: SyncMutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Ends every outstanding call when shutdown's grace period is over.
    cancel: CancellationToken,
}

impl Connectors {
    /// `outcomes` receives what drivers report on their own.
    pub fn new(
        store: Arc<Store>,
        catalog: Catalog,
        retry: RetryPolicy,
        clock: Clock,
        outcomes: mpsc::Sender<ReportedOutcome>,
        egress: EgressPolicy,
        coordination: Arc<Coordination>,
    ) -> Connectors {
        Connectors {
            clock,
            store,
            catalog,
            retry,
            http: egress.client(),
            egress,
            outcomes,
            coordination,
            drivers: SyncMutex::new(HashMap::new()),
            health: SyncMutex::new(HashMap::new()),
            dispatch_locks: SyncMutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        }
    }

    /// Where connector calls may go.
    pub fn egress(&self) -> EgressPolicy {
        self.egress
    }

    /// Ends every outstanding and later call at once, as TRANSIENT (shutdown).
    pub fn cancel_calls(&self) {
        self.cancel.cancel();
    }

    /// The connector a deployment uses: the named one, or the first enabled
    /// one of its type.
    ///
    /// # Errors
    /// [`DispatchError::NoConnector`] or database failures.
    pub async fn resolve(&self, deployment: &Deployment) -> Result<ConnectorDef, DispatchError> {
        let wanted = deployment.connector_type;
        if let Some(name) = &deployment.connector_name {
            return match self.store.get_connector(name).await {
                Ok(def) if def.enabled && def.connector_type == wanted => Ok(def),
                Ok(_) | Err(StoreError::ConnectorNotFound(_)) => {
                    Err(DispatchError::NoConnector(format!("{name:?} of type {}", wanted.as_label())))
                }
                Err(err) => Err(err.into()),
            };
        }
        self.store
            .enabled_connectors()
            .await?
            .into_iter()
            .find(|def| def.connector_type == wanted)
            .ok_or_else(|| DispatchError::NoConnector(format!("of type {}", wanted.as_label())))
    }

    /// The outbox row that hands `operation` of `deployment` in `ring` to
    /// its connector (resolved now; nothing is called until it is delivered).
    ///
    /// # Errors
    /// [`DispatchError::NoConnector`] or database failures.
    pub async fn queue(
        &self,
        deployment: &Deployment,
        ring: Ring,
        operation: Operation,
    ) -> Result<DispatchRecord, DispatchError> {
        let def = self.resolve(deployment).await?;
        Ok(DispatchRecord {
            deployment_id: deployment.id,
            ring,
            operation: if operation == Operation::Remove { "remove" } else { "deploy" },
            connector_name: def.name,
            object_id: None,
        })
    }

    /// Delivers queued work to its connector, through its breaker, with
    /// retries; returns what the platform answered. Work already delivered is
    /// not delivered again (one delivery of the same work at a time in this
    /// process; adapters deduplicate on the idempotency key across processes).
    ///
    /// # Errors
    /// See [`DispatchError`]; a connector deleted since the work was queued
    /// is a PERMANENT refusal.
    pub async fn deliver<T>(
        &self,
        deployment: &Deployment,
        record: &DispatchRecord,
        settle: impl AsyncFnOnce(Result<Deployed, DispatchError>) -> T,
    ) -> T {
        let work = WorkItem::of(deployment, record.ring);
        let operation = if record.operation == "remove" { Operation::Remove } else { Operation::Deploy };
        let key = work.idempotency_key(operation);
        let lock = self.dispatch_locks.lock().expect("lock").entry(key.clone()).or_default().clone();
        // Held until the outcome is recorded: a racer waiting for it then
        // finds the work delivered rather than calling the connector again.
        let held = lock.lock().await;
        let result = self.deliver_once(record, &work, operation, &key).await;
        let settled = settle(result).await;
        drop(held);
        let mut locks = self.dispatch_locks.lock().expect("lock");
        // Forgotten once nobody else holds or waits for it (the map's and ours).
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&key);
        }
        settled
    }

    async fn deliver_once(
        &self,
        record: &DispatchRecord,
        work: &WorkItem,
        operation: Operation,
        key: &str,
    ) -> Result<Deployed, DispatchError> {
        if let Some((done, Delivery::Delivered)) =
            self.store.find_dispatch(work.deployment_id, work.ring, record.operation).await?
        {
            return Ok(Deployed { object_id: done.object_id, device_count: None });
        }
        let def = match self.store.get_connector(&record.connector_name).await {
            Ok(def) => def,
            Err(StoreError::ConnectorNotFound(name)) => {
                return Err(DispatchError::Permanent { name, message: "the connector was deleted".into() });
            }
            Err(err) => return Err(err.into()),
        };
        // Among replicas, the one that claims the work delivers it: Redis
        // answers first when it can, the database's claim decides.
        let budget = self.delivery_budget(&def);
        if !self.coordination.claim_work(key, budget).await {
            return Err(DispatchError::Elsewhere);
        }
        let replica = self.coordination.replica();
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::MAX);
        let claimed = self.store.claim_dispatch(record, replica, now, until).await;
        if !matches!(claimed, Ok(true)) {
            self.coordination.release_work(key).await;
            return Err(claimed.err().map_or(DispatchError::Elsewhere, DispatchError::from));
        }
        let result = self.call_for(&def, operation, work).await;
        // Still queued (a refusal or a delivery settles it): any replica may retry it now.
        if result.as_ref().is_err_and(|err| !matches!(err, DispatchError::Permanent { .. }))
            && let Err(err) = self.store.release_dispatch(record, replica).await
        {
            tracing::warn!(error = %err, "claim on queued work not released; it lapses by itself");
        }
        self.coordination.release_work(key).await;
        result
    }

    /// How long one delivery may take at most, every retry included: the
    /// life of its claim.
    fn delivery_budget(&self, def: &ConnectorDef) -> Duration {
        let attempts = u32::try_from(self.retry.max_attempts).unwrap_or(u32::MAX);
        (def.call_timeout + self.retry.max_delay) * attempts + Duration::from_secs(10)
    }

    /// Hands `work` to the connector (`operation`: deploy or remove).
    async fn call_for(
        &self,
        def: &ConnectorDef,
        operation: Operation,
        work: &WorkItem,
    ) -> Result<Deployed, DispatchError> {
        match operation {
            Operation::Remove => {
                self.call(def, operation, |driver| {
                    let work = work.clone();
                    async move { driver.remove(&work).await.map(|()| Deployed::default()) }
                })
                .await
            }
            _ => {
                self.call(def, Operation::Deploy, |driver| {
                    let work = work.clone();
                    async move { driver.deploy(&work).await }
                })
                .await
            }
        }
    }

    /// Calls `def` through its breaker, retrying TRANSIENT errors with
    /// jittered exponential backoff.
    ///
    /// # Errors
    /// Open breaker, TRANSIENT after the last attempt, or PERMANENT.
    pub async fn call<T, F, Fut>(&self, def: &ConnectorDef, operation: Operation, call: F) -> Result<T, DispatchError>
    where
        F: Fn(Arc<dyn Driver>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let driver = self.driver(def);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.max_attempts.saturating_sub(1))
            .with_jitter();
        let attempt = || self.attempt(def, operation, &driver, &call);
        attempt.retry(backoff).when(|err| matches!(err, DispatchError::Transient { .. })).await
    }

    async fn attempt<T, F, Fut>(
        &self,
        def: &ConnectorDef,
        operation: Operation,
        driver: &Arc<dyn Driver>,
        call: &F,
    ) -> Result<T, DispatchError>
    where
        F: Fn(Arc<dyn Driver>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let now = self.clock.now();
        self.with_breaker(def, |breaker| breaker.acquire(now))
            .await
            .map_err(|rejected| DispatchError::Open { name: def.name.clone(), retry_at: rejected.retry_at })?;
        let result = self.timed(def, operation, call(driver.clone())).await;
        let connector_type = def.connector_type.as_label();
        match &result {
            Ok(_) => self.with_breaker(def, CircuitBreaker::on_success).await,
            Err(CallError::Transient(message)) => {
                self.catalog.breaker_failure(&def.name, connector_type, ErrorTypeLabel::Transient);
                let now = self.clock.now();
                self.with_breaker(def, |b| b.on_failure(now, message.clone())).await;
            }
            Err(CallError::Permanent(_)) => {
                // The adapter answered: its health is not in doubt.
                self.catalog.breaker_failure(&def.name, connector_type, ErrorTypeLabel::Permanent);
                self.with_breaker(def, CircuitBreaker::on_neutral).await;
            }
        }
        result.map_err(|err| match err {
            CallError::Transient(message) => DispatchError::Transient { name: def.name.clone(), message },
            CallError::Permanent(message) => DispatchError::Permanent { name: def.name.clone(), message },
        })
    }

    /// Runs one call under the connector's timeout and records its duration
    /// and outcome in `connector_operation_duration_seconds`.
    async fn timed<T>(
        &self,
        def: &ConnectorDef,
        operation: Operation,
        call: impl Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        let started = Instant::now();
        let result = tokio::select! {
            result = tokio::time::timeout(def.call_timeout, call) => match result {
                Ok(result) => result,
                Err(_) => Err(CallError::Transient(format!("timed out after {:?}", def.call_timeout))),
            },
            () = self.cancel.cancelled() => Err(CallError::Transient("cancelled: the server is shutting down".into())),
        };
        let status = if result.is_ok() { OperationStatusLabel::Success } else { OperationStatusLabel::Failure };
        let seconds = started.elapsed().as_secs_f64();
        self.catalog.connector_operation(def.connector_type.as_label(), operation.as_label(), status, seconds);
        result
    }

    /// Applies `transition` to the connector's breaker (shared among
    /// replicas when coordination is) and publishes its state.
    async fn with_breaker<R>(&self, def: &ConnectorDef, transition: impl FnMut(&mut CircuitBreaker) -> R) -> R {
        let (result, breaker) = self.coordination.update_breaker(&def.name, def.breaker, transition).await;
        self.publish_breaker(def, &breaker);
        result
    }

    fn publish_breaker(&self, def: &ConnectorDef, breaker: &CircuitBreaker) {
        let state = breaker.state(self.clock.now()).gauge_value();
        self.catalog.breaker_state(&def.name, def.connector_type.as_label(), state);
    }

    /// The breaker of a connector, as of now.
    pub async fn breaker(&self, def: &ConnectorDef) -> BreakerView {
        let breaker = self.coordination.breaker(&def.name, def.breaker).await;
        self.publish_breaker(def, &breaker);
        BreakerView { state: breaker.state(self.clock.now()), breaker }
    }

    /// Closes the breaker (operator action; on every replica), if it is
    /// still at `etag` when one is given; otherwise returns, as the error,
    /// the breaker as it is.
    ///
    /// # Errors
    /// The breaker changed since `etag` was read.
    pub async fn reset_breaker(&self, def: &ConnectorDef, etag: Option<&str>) -> Result<BreakerView, BreakerView> {
        let now = self.clock.now();
        self.with_breaker(def, |b| {
            let current = BreakerView { state: b.state(now), breaker: b.clone() };
            if etag.is_some_and(|etag| etag != current.etag()) {
                return Err(current);
            }
            b.reset();
            Ok(BreakerView { state: b.state(now), breaker: b.clone() })
        })
        .await
    }

    /// Keeps `circuit_breaker_state` of every enabled connector current on
    /// this replica: at once when another replica changes a breaker, and
    /// every `period` (an OPEN breaker turns HALF_OPEN by the clock alone),
    /// until `stop`.
    pub async fn follow_breakers(self: Arc<Self>, period: Duration, stop: CancellationToken) {
        let mut changes = self.coordination.breaker_changes();
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                () = stop.cancelled() => return,
                _ = interval.tick() => None,
                changed = changes.recv() => match changed {
                    Ok(name) => name,
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            };
            let defs = match self.store.enabled_connectors().await {
                Ok(defs) => defs,
                Err(err) => {
                    tracing::debug!(error = %err, "breaker gauges not refreshed");
                    continue;
                }
            };
            for def in defs.iter().filter(|def| changed.as_ref().is_none_or(|name| *name == def.name)) {
                self.breaker(def).await;
            }
        }
    }

    /// Drops what is cached for a connector that was changed or deleted.
    pub fn forget(&self, name: &str) {
        self.drivers.lock().expect("drivers lock").remove(name);
        let mut health = self.health.lock().expect("health lock");
        if let Some((connector_type, _)) = health.remove(name) {
            Self::record_type_health(&self.catalog, &health, connector_type);
        }
    }

    /// Sets `connector_health` of `connector_type` from the last probes:
    /// unhealthy while any connector of that type is (one healthy connector
    /// must not hide a broken one of the same type).
    fn record_type_health(
        catalog: &Catalog,
        health: &HashMap<String, (&'static str, bool)>,
        connector_type: &'static str,
    ) {
        let mut probed = health.values().filter(|(t, _)| *t == connector_type).peekable();
        if probed.peek().is_some() {
            catalog.connector_health(connector_type, probed.all(|(_, healthy)| *healthy));
        }
    }

    /// Probes a connector's health now (outside its breaker: probing is how
    /// recovery is noticed), records it and sets `connector_health`.
    ///
    /// # Errors
    /// Database failures recording the result.
    pub async fn probe(&self, def: &ConnectorDef, fence: Option<&Fence>) -> Result<Health, StoreError> {
        let driver = self.driver(def);
        let result = self.timed(def, Operation::Health, driver.health()).await;
        let connector_type = def.connector_type.as_label();
        let health = Health {
            healthy: result.is_ok(),
            last_error: result.err().map(|e| e.to_string()),
            checked_at: self.clock.now(),
        };
        {
            let mut probed = self.health.lock().expect("health lock");
            probed.insert(def.name.clone(), (connector_type, health.healthy));
            Self::record_type_health(&self.catalog, &probed, connector_type);
        }
        if !health.healthy {
            tracing::warn!(connector = %def.name, error = health.last_error.as_deref().unwrap_or(""), "connector unhealthy");
        }
        self.store.set_connector_health(&def.name, &health, fence).await?;
        Ok(health)
    }

    /// Probes every enabled connector every `period` until `stop`, each on
    /// its own: a connector is probed again only once its last probe ended
    /// (bounded by its call timeout), so a hung adapter delays no other
    /// connector, and a probe still waiting at shutdown is abandoned.
    pub async fn probe_every(self: Arc<Self>, period: Duration, lease: LeaseHandle, stop: CancellationToken) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probing = tokio::task::JoinSet::new();
        let mut in_flight = HashSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    probing.abort_all();
                    return;
                }
                Some(Ok(name)) = probing.join_next() => {
                    in_flight.remove(&name);
                    continue;
                }
                _ = interval.tick() => {}
            }
            // Among replicas, the holder of the probing lease probes.
            let Some(fence) = lease.fence() else { continue };
            let defs = match self.store.enabled_connectors().await {
                Ok(defs) => defs,
                Err(err) => {
                    tracing::warn!(error = %err, "listing connectors to probe");
                    continue;
                }
            };
            for def in defs {
                if in_flight.insert(def.name.clone()) {
                    let (connectors, fence) = (self.clone(), fence.clone());
                    probing.spawn(async move {
                        if let Err(err) = connectors.probe(&def, Some(&fence)).await {
                            tracing::warn!(connector = %def.name, error = %err, "recording connector health");
                        }
                        def.name
                    });
                }
            }
        }
    }

    fn driver(&self, def: &ConnectorDef) -> Arc<dyn Driver> {
        let mut drivers = self.drivers.lock().expect("drivers lock");
        // A driver built from an older revision of the connector is rebuilt.
        if let Some((_, driver)) = drivers.get(&def.name).filter(|(revision, _)| *revision == def.revision) {
            return driver.clone();
        }
        let driver: Arc<dyn Driver> = match def.driver {
            DriverKind::Http => Arc::new(http::HttpDriver::new(self.http.clone(), self.egress, def)),
            DriverKind::Simulator => Arc::new(simulator::Simulator::new(def, self.outcomes.clone())),
        };
        drivers.insert(def.name.clone(), (def.revision, driver.clone()));
        driver
    }
}

/// Makes sure a simulator connector `simulator-<type>` exists for every
/// connector type (the embedded demo set-up); existing ones are left alone.
///
/// # Errors
/// Database failures.
pub async fn ensure_simulators(
    store: &Store,
    simulator: SimulatorConfig,
    ctx: &ChangeContext,
) -> Result<(), StoreError> {
    let now = ctx.now;
    for &connector_type in ConnectorType::ALL {
        let def = ConnectorDef {
            name: format!("simulator-{}", connector_type.as_label()),
            connector_type,
            driver: DriverKind::Simulator,
            endpoint: None,
            auth_token: None,
            enabled: true,
            call_timeout: Duration::from_secs(30),
            breaker: crate::domain::breaker::BreakerConfig::default(),
            simulator,
            health: None,
            revision: 0,
            created_at: now,
            updated_at: now,
        };
        match store.create_connector(&def, None, ctx).await {
            Ok(()) | Err(StoreError::ConnectorExists(_)) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
