//! Group commit of CreateDeployment: callers queue their create to one
//! writer per process, which scores and commits whatever has queued
//! meanwhile and answers each caller with its own outcome. Under load the
//! queue fills while a batch commits, so batches grow with the load and the
//! cost of a batch is shared: one read of the active risk model, two of the
//! apps' history, and a transaction of a few multi-row inserts
//! ([`Store::create_deployments`]); with one caller a batch is one create. A
//! caller that goes away does not undo its create (a retry with its request
//! id finds it).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{AppError, AppResult};
use crate::domain::{ChangeContext, Deployment, NewDeployment, NewEvent, risk};
use crate::store::{CreateOutcome, NewCreate, Store, StoreResult};

/// Most creates committed in one transaction.
const MAX_BATCH: usize = 256;

/// A create, as committed: what the store found, and the events it recorded
/// (when it created the deployment).
pub type Committed = (CreateOutcome, Vec<NewEvent>);

struct Job {
    request_id: String,
    fingerprint: String,
    /// Taken when the batch scores it.
    new: Option<NewDeployment>,
    ctx: ChangeContext,
    reply: oneshot::Sender<AppResult<Committed>>,
}

/// The queue to the writer; the writer ends when every clone is gone.
#[derive(Clone)]
pub struct CreateQueue(mpsc::Sender<Job>);

impl CreateQueue {
    /// Starts the writer of `store`.
    pub fn start(store: Arc<Store>) -> CreateQueue {
        let (jobs, queue) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(write(store, queue));
        CreateQueue(jobs)
    }

    /// Scores `new` by the active risk model and its app's history, and
    /// commits it with whatever other creates are queued.
    ///
    /// # Errors
    /// As [`Store::create_deployments`]; UNAVAILABLE once the writer is gone.
    pub async fn create(
        &self,
        request_id: &str,
        fingerprint: String,
        new: NewDeployment,
        ctx: &ChangeContext,
    ) -> AppResult<Committed> {
        let gone = || AppError::Unavailable("the server is shutting down; retry with the same request_id".into());
        let (reply, answer) = oneshot::channel();
        let job = Job { request_id: request_id.to_owned(), fingerprint, new: Some(new), ctx: ctx.clone(), reply };
        self.0.send(job).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn write(store: Arc<Store>, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let created = match score(&store, &mut batch).await {
            Ok(created) => created,
            Err(err) => {
                let err = AppError::from(err);
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(err.clone()));
                }
                continue;
            }
        };
        let items: Vec<NewCreate<'_>> = batch
            .iter()
            .zip(&created)
            .map(|(job, (deployment, events))| NewCreate {
                request_id: &job.request_id,
                fingerprint: &job.fingerprint,
                deployment,
                events,
            })
            .collect();
        let outcomes = store.create_deployments(&items).await;
        drop(items);
        for ((job, (_, events)), outcome) in batch.drain(..).zip(created).zip(outcomes) {
            // A caller that went away still has its create committed.
            let _ = job.reply.send(outcome.map(|outcome| (outcome, events)).map_err(AppError::from));
        }
    }
}

/// The deployments of `batch`, each scored by the active model and its
/// app's history (read once for the batch).
async fn score(store: &Store, batch: &mut [Job]) -> StoreResult<Vec<(Deployment, Vec<NewEvent>)>> {
    let model = store.active_risk_model().await?;
    let mut apps: Vec<&str> =
        batch.iter().filter_map(|job| job.new.as_ref()).map(|new| new.app_name.as_str()).collect();
    apps.sort_unstable();
    apps.dedup();
    let now = batch.iter().map(|job| job.ctx.now).max().expect("a batch has a job");
    let histories = store.app_histories(&apps, now).await?;
    Ok(batch
        .iter_mut()
        .map(|job| {
            let mut new = job.new.take().expect("scored once");
            let history = histories.get(&new.app_name).copied().unwrap_or_default();
            new.assessment = Some(risk::assess(&model, &new.evidence, new.target_ring, history));
            // Time-ordered ids: each index keyed by a deployment id (its
            // own, its rings', its events') grows at one end, in pages
            // already cached, where random ids touch a page anywhere.
            Deployment::create(Uuid::now_v7(), new, &job.ctx)
        })
        .collect())
}
