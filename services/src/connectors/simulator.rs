//! The built-in simulator driver, for demos and the default `make run`: each
//! call takes the configured latency; after a deploy it reports, once per
//! deployment and ring, that `device_count × (1 − failure_rate)` devices
//! succeeded and the rest failed (and, in LAB, that the rollback was
//! exercised), so a rollout runs end to end with no external system.
//! Deterministic: the same settings give the same outcomes.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::{CallError, Deployed, Driver, Operation, ReportedOutcome, RingCounts, WorkItem};
use crate::domain::Ring;
use crate::domain::connector::{ConnectorDef, SimulatorConfig};

pub struct Simulator {
    name: String,
    config: SimulatorConfig,
    outcomes: mpsc::Sender<ReportedOutcome>,
    /// Idempotency keys already deployed: a repeat is acknowledged, not redone.
    deployed: Mutex<HashSet<String>>,
}

impl Simulator {
    pub fn new(def: &ConnectorDef, outcomes: mpsc::Sender<ReportedOutcome>) -> Simulator {
        Simulator { name: def.name.clone(), config: def.simulator, outcomes, deployed: Mutex::new(HashSet::new()) }
    }

    fn counts(&self) -> RingCounts {
        let failure_count = (self.config.device_count as f64 * self.config.failure_rate).round() as u64;
        RingCounts {
            success_count: self.config.device_count - failure_count.min(self.config.device_count),
            failure_count,
        }
    }
}

#[async_trait::async_trait]
impl Driver for Simulator {
    async fn deploy(&self, work: &WorkItem) -> Result<Deployed, CallError> {
        tokio::time::sleep(self.config.latency).await;
        let key = work.idempotency_key(Operation::Deploy);
        let first = self.deployed.lock().expect("simulator lock").insert(key.clone());
        if first && self.config.device_count > 0 {
            let outcome = ReportedOutcome {
                connector: self.name.clone(),
                deployment_id: work.deployment_id,
                ring: work.ring,
                counts: self.counts(),
                rollback_validated: work.ring == Ring::Lab,
            };
            let (latency, outcomes) = (self.config.latency, self.outcomes.clone());
            tokio::spawn(async move {
                tokio::time::sleep(latency).await;
                let _ = outcomes.send(outcome).await;
            });
        }
        let device_count = (self.config.device_count > 0).then_some(self.config.device_count);
        Ok(Deployed { object_id: Some(format!("sim-{key}")), device_count })
    }

    async fn status(&self, _work: &WorkItem) -> Result<RingCounts, CallError> {
        tokio::time::sleep(self.config.latency).await;
        Ok(self.counts())
    }

    async fn remove(&self, _work: &WorkItem) -> Result<(), CallError> {
        tokio::time::sleep(self.config.latency).await;
        Ok(())
    }

    async fn health(&self) -> Result<(), CallError> {
        Ok(())
    }
}
