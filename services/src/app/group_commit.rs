//! Group commit of CreateDeployment: callers queue their create to one
//! writer per process, which commits whatever has queued meanwhile in one
//! transaction ([`Store::create_deployments`]) and answers each caller with
//! its own outcome. Under load the queue fills while a batch commits, so
//! batches grow with the load and the cost of a transaction (the write lock,
//! BEGIN/COMMIT, the event-order lock) is shared; with one caller a batch is
//! one create. A caller that goes away does not undo its create (a retry
//! with its request id finds it).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{AppError, AppResult};
use crate::domain::{Deployment, NewEvent};
use crate::store::{CreateOutcome, NewCreate, Store, StoreResult};

/// Most creates committed in one transaction.
const MAX_BATCH: usize = 256;

struct Job {
    request_id: String,
    fingerprint: String,
    deployment: Deployment,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<StoreResult<CreateOutcome>>,
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

    /// Commits one create with whatever others are queued.
    ///
    /// # Errors
    /// As [`Store::create_deployment`]; UNAVAILABLE once the writer is gone.
    pub async fn create(
        &self,
        request_id: &str,
        fingerprint: String,
        deployment: Deployment,
        events: Vec<NewEvent>,
    ) -> AppResult<CreateOutcome> {
        let gone = || AppError::Unavailable("the server is shutting down; retry with the same request_id".into());
        let (reply, answer) = oneshot::channel();
        let job = Job { request_id: request_id.to_owned(), fingerprint, deployment, events, reply };
        self.0.send(job).await.map_err(|_| gone())?;
        Ok(answer.await.map_err(|_| gone())??)
    }
}

async fn write(store: Arc<Store>, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let items: Vec<NewCreate<'_>> = batch
            .iter()
            .map(|job| NewCreate {
                request_id: &job.request_id,
                fingerprint: &job.fingerprint,
                deployment: &job.deployment,
                events: &job.events,
            })
            .collect();
        let outcomes = store.create_deployments(&items).await;
        drop(items);
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that went away still has its create committed.
            let _ = job.reply.send(outcome);
        }
    }
}
