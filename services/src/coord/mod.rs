//! Coordination between replicas sharing one database.
//!
//! - [`leases`]: which replica runs each background duty — leases in the
//!   database, with fencing tokens checked in the duty's own transactions
//!   (deliberately not in Redis: a fence is only as good as the transaction
//!   that checks it).
//! - [`Coordination`]: the rest, in process by default or shared through
//!   Redis ([`redis`]) when `--redis-url` is given: wake-ups when another
//!   replica commits events, circuit breakers every replica agrees on, and
//!   a fast path against delivering the same work twice at once (the
//!   database's dispatch claim stays the guarantee). While Redis is
//!   unreachable each replica falls back to its local state, says so
//!   (`coordination_redis_up` 0, the `coordination` health entry
//!   NOT_SERVING, a warning), and returns to Redis by itself.

pub mod leases;
pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use eucora_otel::Catalog;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use leases::{LeaseHandle, LeaseKeeper};
use redis::{Notice, Redis};

use crate::domain::breaker::{BreakerConfig, CircuitBreaker};
use crate::store::Store;

/// The grpc.health.v1 entry that tells whether coordination is shared.
pub const HEALTH_ENTRY: &str = "coordination";
/// How often Redis is pinged to notice it going and coming back.
const REDIS_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Attempts at a breaker transition racing other replicas' before it is
/// applied locally.
const BREAKER_ATTEMPTS: usize = 32;

/// A name for this process, unique among replicas (lease holders, claims).
pub fn replica_id() -> String {
    format!("{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Cross-replica state and wake-ups: shared through Redis when configured,
/// local otherwise (and while Redis is unreachable).
pub struct Coordination {
    replica: String,
    redis: Option<Redis>,
    /// Redis answered its last check.
    redis_up: AtomicBool,
    catalog: Catalog,
    /// Breakers as this replica last knew them: the whole truth without
    /// Redis, the fallback while it is unreachable.
    breakers: SyncMutex<HashMap<String, CircuitBreaker>>,
    /// Connectors whose breaker another replica changed (`None`: any).
    breaker_changes: broadcast::Sender<Option<String>>,
    /// One shared transition per connector at a time from this replica:
    /// compare-and-set then only races other replicas.
    breaker_turns: SyncMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Coordination {
    /// Coordination within this process only.
    pub fn local(replica: String, catalog: Catalog) -> Coordination {
        Coordination::new(replica, None, catalog)
    }

    /// Coordination shared through `redis`.
    pub fn shared(replica: String, redis: Redis, catalog: Catalog) -> Coordination {
        Coordination::new(replica, Some(redis), catalog)
    }

    fn new(replica: String, redis: Option<Redis>, catalog: Catalog) -> Coordination {
        Coordination {
            replica,
            redis,
            redis_up: AtomicBool::new(false),
            catalog,
            breakers: SyncMutex::new(HashMap::new()),
            breaker_changes: broadcast::Sender::new(256),
            breaker_turns: SyncMutex::new(HashMap::new()),
        }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Whether Redis answered its last check (always `false` without one).
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Redis, while it answers.
    fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref().filter(|_| self.redis_up.load(Ordering::Relaxed))
    }

    /// A Redis command failed: local until the next check finds it back.
    fn redis_failed(&self, what: &str, err: &fred::error::Error) {
        if self.redis_up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %err, what, "Redis failed: coordination degrades to this replica until it is back");
            self.catalog.redis_up(false);
        }
    }

    /// Keeps the health entry and gauge current, forwards other replicas'
    /// notices (events to `store`'s tail, breaker changes to
    /// [`Coordination::breaker_changes`]) and tells them of this one's
    /// commits, until `stop`.
    pub async fn run(self: Arc<Self>, store: Arc<Store>, health: HealthReporter, stop: CancellationToken) {
        let Some(redis) = &self.redis else {
            health.set_service_status(HEALTH_ENTRY, ServingStatus::Serving).await;
            return;
        };
        health.set_service_status(HEALTH_ENTRY, ServingStatus::NotServing).await;
        self.catalog.redis_up(false);
        let (mut messages, _) = redis.subscribe().await;
        let mut committed = store.committed();
        let mut checks = tokio::time::interval(REDIS_CHECK_INTERVAL);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = checks.tick() => {
                    let up = redis.ping().await.is_ok();
                    let was = self.redis_up.swap(up, Ordering::Relaxed);
                    if up && !was {
                        // Whatever was missed while away is read from the database.
                        store.events_committed_elsewhere();
                        // Every breaker may have moved meanwhile.
                        let _ = self.breaker_changes.send(None);
                    }
                    if reported != Some(up) {
                        if up {
                            tracing::info!("Redis reachable: coordination is shared across replicas");
                        } else {
                            tracing::warn!("Redis unreachable: coordination degrades to this replica (leases and \
                                the event order stay in the database)");
                        }
                        reported = Some(up);
                        self.catalog.redis_up(up);
                        let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
                        health.set_service_status(HEALTH_ENTRY, status).await;
                    }
                }
                received = messages.recv() => match received.as_ref().ok().and_then(|message| redis.notice(message)) {
                    Some(Notice::EventsCommitted(_)) => store.events_committed_elsewhere(),
                    Some(Notice::BreakerChanged(name)) => { let _ = self.breaker_changes.send(Some(name)); }
                    None => {}
                },
                changed = committed.changed() => {
                    if changed.is_err() { break; }
                    let sequence = *committed.borrow_and_update();
                    if self.redis_up.load(Ordering::Relaxed)
                        && let Err(err) = redis.publish_events(sequence).await
                    {
                        self.redis_failed("publishing committed events", &err);
                    }
                }
            }
        }
        redis.quit().await;
    }

    /// Connectors whose breaker another replica changed (`None` when Redis
    /// comes back: any may have).
    pub fn breaker_changes(&self) -> broadcast::Receiver<Option<String>> {
        self.breaker_changes.subscribe()
    }

    /// Applies `transition` to the breaker of `connector` atomically among
    /// replicas, returning what it returned and the breaker after it. Under
    /// contention the transition is applied again to the newer state, so it
    /// must be a pure function of the breaker.
    pub async fn update_breaker<R>(
        &self,
        connector: &str,
        config: BreakerConfig,
        mut transition: impl FnMut(&mut CircuitBreaker) -> R,
    ) -> (R, CircuitBreaker) {
        if let Some(redis) = self.redis() {
            let turn = self.breaker_turns.lock().expect("turns lock").entry(connector.to_owned()).or_default().clone();
            let _turn = turn.lock().await;
            for attempt in 0..BREAKER_ATTEMPTS {
                let (version, stored) = match redis.breaker(connector).await {
                    Ok(read) => read,
                    Err(err) => {
                        self.redis_failed("reading a circuit breaker", &err);
                        break;
                    }
                };
                let before = configured(stored, config);
                let mut after = before.clone();
                let result = transition(&mut after);
                if after == before {
                    self.remember(connector, &after);
                    return (result, after);
                }
                match redis.set_breaker(connector, version, &after).await {
                    Ok(true) => {
                        self.remember(connector, &after);
                        return (result, after);
                    }
                    // Another replica moved it first: again, on its state.
                    Ok(false) if attempt + 1 < BREAKER_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(rand::random_range(0..=2 * attempt as u64))).await;
                    }
                    Ok(false) => tracing::warn!(
                        connector,
                        "circuit breaker contended past {BREAKER_ATTEMPTS} attempts: this transition is local"
                    ),
                    Err(err) => {
                        self.redis_failed("changing a circuit breaker", &err);
                        break;
                    }
                }
            }
        }
        let mut breakers = self.breakers.lock().expect("breakers lock");
        let breaker = breakers.entry(connector.to_owned()).or_insert_with(|| CircuitBreaker::new(config));
        breaker.reconfigure(config);
        let result = transition(breaker);
        (result, breaker.clone())
    }

    /// The breaker of `connector` as every replica sees it.
    pub async fn breaker(&self, connector: &str, config: BreakerConfig) -> CircuitBreaker {
        self.update_breaker(connector, config, |_| ()).await.1
    }

    fn remember(&self, connector: &str, breaker: &CircuitBreaker) {
        self.breakers.lock().expect("breakers lock").insert(connector.to_owned(), breaker.clone());
    }

    /// The fast path against two replicas delivering `work` at once: `false`
    /// when another replica holds it in Redis. `true` when this replica
    /// claimed it, or when nobody can tell (no Redis): the database's claim
    /// decides then.
    pub async fn claim_work(&self, work: &str, ttl: Duration) -> bool {
        let Some(redis) = self.redis() else { return true };
        match redis.claim(work, &self.replica, ttl).await {
            Ok(claimed) => claimed,
            Err(err) => {
                self.redis_failed("claiming work", &err);
                true
            }
        }
    }

    /// Gives up this replica's fast-path claim on `work`.
    pub async fn release_work(&self, work: &str) {
        if let Some(redis) = self.redis()
            && let Err(err) = redis.release(work, &self.replica).await
        {
            self.redis_failed("releasing a claim", &err);
        }
    }
}

/// A stored breaker (or a new one) under the connector's current settings.
fn configured(stored: Option<CircuitBreaker>, config: BreakerConfig) -> CircuitBreaker {
    let mut breaker = stored.unwrap_or_else(|| CircuitBreaker::new(config));
    breaker.reconfigure(config);
    breaker
}
