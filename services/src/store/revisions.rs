//! PostgreSQL: the stored revisions that decide whether a kept deployment
//! may serve a Get, read for many Gets at once.
//!
//! Other replicas write too, so a Get serves its kept copy only at the
//! revision the database holds. Read one Get at a time, that check is a
//! statement per Get, and the statement's cost (the round trip, and
//! PostgreSQL's own work on the same cores) bounds the Get rate. Here each
//! Get queues its id to one reader, which reads the revisions of every id
//! queued meanwhile in one statement (a few, past [`MAX_IDS_PER_READ`]).
//! That statement starts after each of its Gets was queued, so a Get still
//! sees every commit that finished before it began, whichever replica made
//! it. A read that fails answers no one: each of its Gets then reads alone,
//! and meets the failure as its own error.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::entity::deployment;
use super::{StoreResult, parse_uuid};

/// Most Gets answered by one read.
const MAX_BATCH: usize = 256;

/// Most ids in one statement; a batch with more distinct ids makes several,
/// in a handful of shapes (powers of two) each connection prepares once.
const MAX_IDS_PER_READ: usize = 32;

/// A Get's revision check: its id and where the revision goes (`None`: no
/// such deployment).
type Check = (Uuid, oneshot::Sender<Option<i64>>);

/// The queue to the reader; the reader ends when it is dropped.
pub(super) struct RevisionReads(mpsc::Sender<Check>);

/// The batch the revision was to come with failed (or the reader is gone):
/// the Get reads it alone.
pub(super) struct ReadAlone;

impl RevisionReads {
    /// Starts the reader on `db`, each read bounded by `timeout`.
    pub(super) fn start(db: DatabaseConnection, timeout: Duration) -> RevisionReads {
        let (checks, queue) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(read(db, timeout, queue));
        RevisionReads(checks)
    }

    /// The stored revision of deployment `id` (`None`: there is none), read
    /// with whatever other Gets queued meanwhile.
    pub(super) async fn revision(&self, id: Uuid) -> Result<Option<i64>, ReadAlone> {
        let (reply, answer) = oneshot::channel();
        self.0.send((id, reply)).await.map_err(|_| ReadAlone)?;
        answer.await.map_err(|_| ReadAlone)
    }
}

async fn read(db: DatabaseConnection, timeout: Duration, mut queue: mpsc::Receiver<Check>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut ids: Vec<Uuid> = batch.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Dropping the replies of a failed read sends its Gets to read alone.
        let Ok(Ok(stored)) = tokio::time::timeout(timeout, revisions(&db, ids)).await else {
            batch.clear();
            continue;
        };
        for (id, reply) in batch.drain(..) {
            let _ = reply.send(stored.get(&id).copied());
        }
    }
}

/// The stored revision of each of `ids` that exists.
async fn revisions(db: &DatabaseConnection, ids: Vec<Uuid>) -> StoreResult<HashMap<Uuid, i64>> {
    let mut stored = HashMap::with_capacity(ids.len());
    for ids in super::deployments::chunks(ids, MAX_IDS_PER_READ) {
        let rows: Vec<(String, i64)> = deployment::Entity::find()
            .select_only()
            .column(deployment::Column::Id)
            .column(deployment::Column::Revision)
            .filter(deployment::Column::Id.is_in(ids.iter().map(Uuid::to_string)))
            .into_tuple()
            .all(db)
            .await?;
        for (id, revision) in rows {
            stored.insert(parse_uuid(&id)?, revision);
        }
    }
    Ok(stored)
}
