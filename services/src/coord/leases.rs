//! Keeping the lease of a background duty: a task per duty tries to take
//! the lease, renews it three times per lease period while held, and
//! publishes the current [`Fence`] (or none) to the duty through a
//! [`LeaseHandle`]. A replica that dies stops renewing: another takes over
//! once the lease lapses (within two lease periods). One that is paused or
//! cut off and comes back acts with a stale fence, which its writes'
//! transactions refuse. On shutdown a held lease is given up at once.

use std::sync::Arc;
use std::time::Duration;

use eucora_otel::Catalog;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::domain::Fence;
use crate::store::Store;

/// The rollout controller's lease.
pub const CONTROLLER: &str = "controller";
/// The lease of probing connectors' health.
pub const CONNECTOR_PROBES: &str = "connector_probes";

/// Takes and keeps leases for this replica.
pub struct LeaseKeeper {
    store: Arc<Store>,
    clock: Clock,
    catalog: Catalog,
    /// This replica, as lease rows name it: unique per process.
    holder: String,
    period: Duration,
}

/// What a duty knows of its lease: the fence while held.
#[derive(Clone, Debug)]
pub struct LeaseHandle(watch::Receiver<Option<Fence>>);

impl LeaseHandle {
    /// A lease that is always held (a duty outside any coordination, in tests).
    pub fn always(lease: &'static str) -> LeaseHandle {
        let (tx, rx) = watch::channel(Some(Fence { lease, token: 0 }));
        // The receiver keeps the last value once the sender is gone.
        drop(tx);
        LeaseHandle(rx)
    }

    /// The fence to act under, while the lease is held.
    pub fn fence(&self) -> Option<Fence> {
        self.0.borrow().clone()
    }

    /// Resolves when the lease changes hands (taken, lost); never when the
    /// keeper is gone.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl LeaseKeeper {
    /// Keeps leases for `holder` ([`super::replica_id`]).
    pub fn new(store: Arc<Store>, clock: Clock, catalog: Catalog, holder: String, period: Duration) -> LeaseKeeper {
        LeaseKeeper { store, clock, catalog, holder, period }
    }

    /// Starts keeping lease `name` until `stop`: the handle, and the task
    /// that keeps it.
    pub fn keep(
        self: &Arc<Self>,
        name: &'static str,
        stop: CancellationToken,
    ) -> (LeaseHandle, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let keeper = self.clone();
        let task = tokio::spawn(async move { keeper.run(name, tx, stop).await });
        (LeaseHandle(rx), task)
    }

    async fn run(&self, name: &'static str, current: watch::Sender<Option<Fence>>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.period / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let held = current.borrow().as_ref().map(|fence| fence.token);
            let now = self.clock.now();
            let next = match self.store.acquire_lease(name, &self.holder, held, now, self.period).await {
                Ok(next) => next,
                Err(err) => {
                    // Unconfirmed is not held: the duty pauses until the database answers.
                    tracing::warn!(lease = name, error = %err, "lease not renewed");
                    None
                }
            };
            match (&held, &next) {
                (None, Some(fence)) => {
                    tracing::info!(lease = name, token = fence.token, holder = %self.holder, "lease taken")
                }
                (Some(token), None) => tracing::warn!(lease = name, token, holder = %self.holder, "lease lost"),
                _ => {}
            }
            self.catalog.lease_held(name, next.is_some());
            current.send_if_modified(|value| {
                let changed = *value != next;
                *value = next;
                changed
            });
        }
        let last = current.borrow().clone();
        current.send_replace(None);
        self.catalog.lease_held(name, false);
        if let Some(fence) = last
            && let Err(err) = self.store.release_lease(&fence).await
        {
            tracing::warn!(lease = name, error = %err, "lease not released; it lapses by itself");
        }
    }
}
