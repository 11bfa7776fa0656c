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
pub struct LeaseHandle {
    current: watch::Receiver<Option<Fence>>,
    /// The keeper's channel, to drop a fence a write was refused under.
    keeper: Option<watch::Sender<Option<Fence>>>,
}

impl LeaseHandle {
    /// A lease that is always held (a duty outside any coordination, in tests).
    pub fn always(lease: &'static str) -> LeaseHandle {
        let (tx, rx) = watch::channel(Some(Fence { lease, token: 0 }));
        // The receiver keeps the last value once the sender is gone.
        drop(tx);
        LeaseHandle { current: rx, keeper: None }
    }

    /// The fence to act under, while the lease is held.
    pub fn fence(&self) -> Option<Fence> {
        self.current.borrow().clone()
    }

    /// A write under `fence` was refused: the lease is held elsewhere, so
    /// the duty stops acting now rather than at the keeper's next renewal
    /// (a replica that was frozen wakes with a stale fence and would try
    /// every action it had due). The keeper takes the lease again when it can.
    pub fn refused(&self, fence: &Fence) {
        let Some(keeper) = &self.keeper else { return };
        let dropped = keeper.send_if_modified(|held| {
            let stale = held.as_ref() == Some(fence);
            if stale {
                *held = None;
            }
            stale
        });
        if dropped {
            tracing::warn!(lease = fence.lease, token = fence.token, "lease lost: a write under it was refused");
        }
    }

    /// Resolves when the lease changes hands (taken, lost); never when the
    /// keeper is gone.
    pub async fn changed(&mut self) {
        if self.current.changed().await.is_err() {
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
        let handle = LeaseHandle { current: rx, keeper: Some(tx.clone()) };
        let keeper = self.clone();
        let task = tokio::spawn(async move { keeper.run(name, tx, stop).await });
        (handle, task)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_fence_is_dropped_but_a_newer_one_is_kept() {
        let (old, new) = (Fence { lease: CONTROLLER, token: 4 }, Fence { lease: CONTROLLER, token: 5 });
        let (tx, rx) = watch::channel(Some(new.clone()));
        let handle = LeaseHandle { current: rx, keeper: Some(tx) };
        // A write decided under an older fence, refused after the keeper renewed.
        handle.refused(&old);
        assert_eq!(handle.fence(), Some(new.clone()));
        handle.refused(&new);
        assert_eq!(handle.fence(), None);
        // Outside coordination nothing is dropped.
        let always = LeaseHandle::always(CONTROLLER);
        always.refused(&Fence { lease: CONTROLLER, token: 0 });
        assert!(always.fence().is_some());
    }
}
