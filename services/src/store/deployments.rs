//! Persistence of deployments: the deployment rows with their per-ring
//! progress, the append-only event log (and the feed it publishes after
//! each commit), keyset-paginated listings, and the counts behind
//! `deployments_current`.

use crate::domain::Label;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    TransactionTrait,
};
use uuid::Uuid;

use super::connectors::{self, OutboxWrite};
use super::entity::{deployment, deployment_event, ring_progress};
use super::{Page, Store, StoreError, StoreResult, audit, parse, parse_uuid, promotions};
use crate::domain::{
    ConnectorType, Delivery, Deployment, DeploymentStatus, EventKind, Fence, NewEvent, Promotion, Ring, RingProgress,
    SiteClass,
};

/// An event as stored: the domain event plus its log position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: i64,
    pub app_name: String,
    pub event: NewEvent,
}

/// What a deployment save writes in its transaction besides the deployment
/// and its events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alongside<'a> {
    /// The promotion attempt that moved it.
    pub promotion: Option<&'a Promotion>,
    pub outbox: Option<OutboxWrite<'a>>,
    /// The request id of the call that made the change.
    pub request: Option<&'a audit::RequestKey>,
    /// The lease a background duty made the change under.
    pub fence: Option<&'a Fence>,
}

impl<'a> Alongside<'a> {
    /// Just an outbox write.
    pub fn outbox(outbox: OutboxWrite<'a>) -> Alongside<'a> {
        Alongside { outbox: Some(outbox), ..Alongside::default() }
    }
}

/// Filters of ListDeployments; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeploymentFilter {
    pub status: Option<DeploymentStatus>,
    pub ring: Option<Ring>,
    pub app_name: Option<String>,
    pub connector_type: Option<ConnectorType>,
}

/// A List page asked for: its filter, the key it starts after, its size.
pub(super) type PageQuery = (DeploymentFilter, Option<i64>, u64);

/// A List page's keys as read: seq, id and revision of each deployment
/// (and of one more when a next page follows).
pub(super) type PageKeys = std::sync::Arc<Vec<(i64, Uuid, i64)>>;

/// One create of a group commit ([`Store::create_deployments`]).
#[derive(Debug, Clone, Copy)]
pub struct NewCreate<'a> {
    pub request_id: &'a str,
    pub fingerprint: &'a str,
    pub deployment: &'a Deployment,
    pub events: &'a [NewEvent],
}

/// What CreateDeployment found.
#[derive(Debug)]
pub enum CreateOutcome {
    Created(Deployment),
    /// A deployment with this request id exists; its fingerprint tells a retry from a reuse.
    Existing {
        deployment: Deployment,
        fingerprint: String,
    },
}

impl Store {
    /// Group commit of creates: inserts every new deployment of `batch` with
    /// its events in one transaction, and answers each on its own. A request
    /// id used before (or earlier in the batch) answers with the existing
    /// deployment and its fingerprint; any other failure of one item is
    /// retried alone, so that it fails only itself.
    ///
    /// # Errors
    /// Per item: database failures, [`StoreError::RequestIdTaken`].
    pub async fn create_deployments(&self, batch: &[NewCreate<'_>]) -> Vec<StoreResult<CreateOutcome>> {
        match self.guard(self.create_batch(batch)).await {
            Ok(outcomes) => outcomes,
            Err(err) if batch.len() == 1 => vec![Err(err)],
            Err(err) => {
                tracing::debug!(error = %err, items = batch.len(), "group commit failed; committing its items one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for item in batch {
                    let alone = self.guard(self.create_batch(std::slice::from_ref(item))).await;
                    outcomes.push(alone.and_then(|mut one| one.pop().expect("one item in, one outcome out")));
                }
                outcomes
            }
        }
    }

    async fn create_batch(&self, batch: &[NewCreate<'_>]) -> StoreResult<Vec<StoreResult<CreateOutcome>>> {
        let _guard = self.lock_writes().await?;
        let txn = self.db.begin().await?;
        super::serialize(&txn, super::Serialized::EventOrder).await?;
        let inserted = insert_new_deployments(&txn, batch).await?;
        let new: Vec<&NewCreate<'_>> =
            batch.iter().zip(&inserted).filter(|(_, inserted)| **inserted).map(|(item, _)| item).collect();
        insert_rings(&txn, &new).await?;
        let events: Vec<(&str, &NewEvent)> = new
            .iter()
            .flat_map(|item| item.events.iter().map(|event| (item.deployment.app_name.as_str(), event)))
            .collect();
        let stored = insert_event_batch(&txn, &events).await?;
        txn.commit().await?;
        drop(_guard);
        self.publish(stored);
        let mut outcomes = Vec::with_capacity(batch.len());
        for (item, inserted) in batch.iter().zip(inserted) {
            outcomes.push(match inserted {
                true => Ok(CreateOutcome::Created(item.deployment.clone())),
                // Used before (or by another item of this batch).
                false => self
                    .find_by_request_id(item.request_id)
                    .await
                    .and_then(|found| found.ok_or_else(|| StoreError::RequestIdTaken(item.request_id.to_owned()))),
            });
        }
        Ok(outcomes)
    }

    async fn find_by_request_id(&self, request_id: &str) -> StoreResult<Option<CreateOutcome>> {
        let mut found = deployment::Entity::find()
            .filter(deployment::Column::RequestId.eq(request_id))
            .find_with_related(ring_progress::Entity)
            .all(&self.db)
            .await?;
        let Some((row, progress)) = found.pop() else { return Ok(None) };
        let fingerprint = row.request_fingerprint.clone();
        Ok(Some(CreateOutcome::Existing { deployment: with_rings(row, &progress)?, fingerprint }))
    }

    /// # Errors
    /// [`StoreError::NotFound`] or database failures.
    pub async fn get_deployment(&self, id: Uuid) -> StoreResult<Deployment> {
        let cache = &self.read_cache;
        if let Some(kept) = cache.get(id) {
            if self.cache_is_current {
                return Ok(kept);
            }
            // Other replicas write too: the kept copy serves only while its
            // revision is the stored one (a narrow read of one index entry
            // and one column, where a full read decodes every ring).
            match self.stored_revision(id).await? {
                Some(revision) if revision == kept.revision => return Ok(kept),
                Some(_) => {}
                None => return Err(StoreError::NotFound(id)),
            }
        }
        let saves = cache.saves();
        let read = self.read_deployment(id).await?;
        cache.keep(&read, saves);
        Ok(read)
    }

    /// The revision deployment `id` has in the database, read with other
    /// Gets' ([`super::revisions`]), or alone when that read failed.
    async fn stored_revision(&self, id: Uuid) -> StoreResult<Option<i64>> {
        self.guard(async {
            if let Some(reads) = &self.revision_reads
                && let Ok(revision) = reads.revision(id).await
            {
                return Ok(revision);
            }
            Ok(deployment::Entity::find()
                .select_only()
                .column(deployment::Column::Revision)
                .filter(deployment::Column::Id.eq(id.to_string()))
                .into_tuple()
                .one(&self.db)
                .await?)
        })
        .await
    }

    async fn read_deployment(&self, id: Uuid) -> StoreResult<Deployment> {
        self.guard(async {
            // One statement (a join): one round trip, and one snapshot of the
            // deployment and its rings without a transaction.
            let mut found = deployment::Entity::find()
                .filter(deployment::Column::Id.eq(id.to_string()))
                .find_with_related(ring_progress::Entity)
                .all(&self.db)
                .await?;
            let (row, progress) = found.pop().ok_or(StoreError::NotFound(id))?;
            with_rings(row, &progress)
        })
        .await
    }

    /// Deployments matching `filter`, newest first, strictly older than `after`.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<Deployment>> {
        self.guard(async {
            let mut query = deployment::Entity::find();
            if let Some(status) = filter.status {
                query = query.filter(deployment::Column::Status.eq(status.as_label()));
            }
            if let Some(ring) = filter.ring {
                query = query.filter(deployment::Column::CurrentRing.eq(ring.as_label()));
            }
            if let Some(app_name) = &filter.app_name {
                query = query.filter(deployment::Column::AppName.eq(app_name.as_str()));
            }
            if let Some(connector_type) = filter.connector_type {
                query = query.filter(deployment::Column::ConnectorType.eq(connector_type.as_label()));
            }
            if let Some(after) = after {
                query = query.filter(deployment::Column::Seq.lt(after));
            }
            // Pages asked for at once (dashboards polling the first) read their keys once.
            let page_key = (filter.clone(), after, limit);
            let keys = self
                .page_keys
                .read(&page_key, || async {
                    let rows: Vec<(i64, String, i64)> = query
                        .select_only()
                        .column(deployment::Column::Seq)
                        .column(deployment::Column::Id)
                        .column(deployment::Column::Revision)
                        .order_by_desc(deployment::Column::Seq)
                        .limit(limit + 1)
                        .into_tuple()
                        .all(&self.db)
                        .await?;
                    let keys = rows.into_iter().map(|(seq, id, revision)| Ok((seq, parse_uuid(&id)?, revision)));
                    Ok::<_, StoreError>(PageKeys::new(keys.collect::<StoreResult<Vec<_>>>()?))
                })
                .await?;
            let page = Page::from_rows(
                std::sync::Arc::unwrap_or_clone(keys),
                limit,
                |(seq, ..)| *seq,
                |(_, id, revision)| Ok((id, revision)),
            )?;
            let items = self.deployments_at(&page.items).await?;
            Ok(Page { items, keys: page.keys, next_after: page.next_after })
        })
        .await
    }

    /// The deployments `keys` name (id and the revision a listing read),
    /// from the read cache where it holds them at that revision or later;
    /// the others are read in one transaction of two statements, and kept.
    async fn deployments_at(&self, keys: &[(Uuid, i64)]) -> StoreResult<Vec<Deployment>> {
        let cache = &self.read_cache;
        let ids: Vec<Uuid> = keys.iter().map(|(id, _)| *id).collect();
        let mut found = cache.get_many(&ids);
        for (kept, (_, revision)) in found.iter_mut().zip(keys) {
            // On SQLite the cache is never older than the database; elsewhere a
            // copy older than the listing's is read again.
            if kept.as_ref().is_some_and(|kept| !self.cache_is_current && kept.revision < *revision) {
                *kept = None;
            }
        }
        let missing: Vec<String> =
            ids.iter().zip(&found).filter(|(_, kept)| kept.is_none()).map(|(id, _)| id.to_string()).collect();
        if !missing.is_empty() {
            let saves = cache.saves();
            let txn = self.begin_read().await?;
            let rows = deployment::Entity::find().filter(deployment::Column::Id.is_in(missing)).all(&txn).await?;
            let read = Self::hydrate(&txn, rows).await?;
            txn.commit().await?;
            for read in read {
                cache.keep(&read, saves);
                if let Some(slot) = ids.iter().position(|id| *id == read.id) {
                    found[slot] = Some(read);
                }
            }
        }
        // Deployments are never deleted, so every key is found.
        found.into_iter().zip(ids).map(|(item, id)| item.ok_or(StoreError::NotFound(id))).collect()
    }

    /// How many deployments are in each status and current ring (pairs with none are left out).
    ///
    /// # Errors
    /// Database failures.
    pub async fn deployment_counts(&self) -> StoreResult<Vec<(DeploymentStatus, Ring, u64)>> {
        self.guard(async {
            let rows: Vec<(String, String, i64)> = deployment::Entity::find()
                .select_only()
                .column(deployment::Column::Status)
                .column(deployment::Column::CurrentRing)
                .column_as(deployment::Column::Seq.count(), "deployments")
                .group_by(deployment::Column::Status)
                .group_by(deployment::Column::CurrentRing)
                .into_tuple()
                .all(&self.db)
                .await?;
            rows.into_iter()
                .map(|(status, ring, count)| {
                    Ok((
                        parse(&status, "status", DeploymentStatus::from_label)?,
                        parse(&ring, "ring", Ring::from_label)?,
                        u64::try_from(count).unwrap_or(0),
                    ))
                })
                .collect()
        })
        .await
    }

    /// Saves a mutated deployment whose `revision` is the one it was read at,
    /// appending `events` in the same transaction, and returns it with its new
    /// revision.
    ///
    /// # Errors
    /// [`StoreError::RevisionConflict`] when the row changed since it was read,
    /// or database failures.
    pub async fn save_deployment(&self, deployment: &Deployment, events: &[NewEvent]) -> StoreResult<Deployment> {
        self.guard(async { self.save_with(deployment, events, Alongside::default()).await }).await
    }

    /// [`Store::save_deployment`], with what `alongside` says in the same
    /// transaction: the work a decision hands to a connector is queued with
    /// it, the end of a delivery is recorded with its outcome, the request id
    /// of the call that made the change is kept.
    ///
    /// # Errors
    /// As [`Store::save_deployment`], and [`StoreError::RequestIdTaken`].
    pub async fn save_deployment_with(
        &self,
        deployment: &Deployment,
        events: &[NewEvent],
        alongside: Alongside<'_>,
    ) -> StoreResult<Deployment> {
        self.guard(async { self.save_with(deployment, events, alongside).await }).await
    }

    pub(super) async fn save_with(
        &self,
        deployment: &Deployment,
        events: &[NewEvent],
        Alongside { promotion, outbox, request, fence }: Alongside<'_>,
    ) -> StoreResult<Deployment> {
        let _guard = self.lock_writes().await?;
        let txn = self.db.begin().await?;
        super::leases::check_fence(&txn, fence).await?;
        let expected = deployment.revision;
        let mut saved = deployment.clone();
        saved.revision = expected + 1;
        let mut row = deployment_row(&saved, "", "");
        // Identity and idempotency columns never change after create.
        row.seq = sea_orm::ActiveValue::NotSet;
        row.request_id = sea_orm::ActiveValue::NotSet;
        row.request_fingerprint = sea_orm::ActiveValue::NotSet;
        let updated = deployment::Entity::update_many()
            .set(row)
            .filter(deployment::Column::Id.eq(deployment.id.to_string()))
            .filter(deployment::Column::Revision.eq(expected))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(
                match deployment::Entity::find()
                    .filter(deployment::Column::Id.eq(deployment.id.to_string()))
                    .one(&txn)
                    .await?
                {
                    Some(_) => StoreError::RevisionConflict { id: deployment.id, expected },
                    None => StoreError::NotFound(deployment.id),
                },
            );
        }
        upsert_rings(&txn, &saved).await?;
        let stored = insert_events(&txn, &saved.app_name, events).await?;
        if let Some(promotion) = promotion {
            promotions::insert_promotion(&txn, promotion).await?;
        }
        if let Some(outbox) = outbox {
            connectors::write_outbox(&txn, outbox, saved.updated_at).await?;
        }
        if let Some(key) = request {
            audit::record_request_at(&txn, key, &saved.id.to_string(), saved.updated_at).await?;
        }
        txn.commit().await?;
        self.read_cache.saved(saved.id);
        self.publish(stored);
        Ok(saved)
    }

    /// The sequence of the last event committed (0 with none).
    ///
    /// # Errors
    /// Database failures.
    pub async fn last_event_seq(&self) -> StoreResult<i64> {
        self.guard(async {
            let last: Option<Option<i64>> = deployment_event::Entity::find()
                .select_only()
                .column_as(deployment_event::Column::Seq.max(), "last")
                .into_tuple()
                .one(&self.db)
                .await?;
            Ok(last.flatten().unwrap_or(0))
        })
        .await
    }

    /// Events in sequence order after sequence `after`: one deployment's
    /// audit trail (`Some`), or every deployment's.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown deployment, or database failures.
    pub async fn list_events(
        &self,
        deployment_id: Option<Uuid>,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<StoredEvent>> {
        self.guard(async {
            let mut query = deployment_event::Entity::find();
            if let Some(id) = deployment_id {
                query = query.filter(deployment_event::Column::DeploymentId.eq(id.to_string()));
            }
            let rows = self.rows_after(query, deployment_event::Column::Seq, after, limit).await?;
            if let Some(id) = deployment_id
                && rows.is_empty()
                && deployment::Entity::find()
                    .filter(deployment::Column::Id.eq(id.to_string()))
                    .one(&self.db)
                    .await?
                    .is_none()
            {
                return Err(StoreError::NotFound(id));
            }
            Page::from_rows(rows, limit, |row| row.seq, event_from_row)
        })
        .await
    }

    /// Turns rows into deployments, loading the ring progress of all of them in one query.
    async fn hydrate(conn: &impl ConnectionTrait, rows: Vec<deployment::Model>) -> StoreResult<Vec<Deployment>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
        let progress =
            ring_progress::Entity::find().filter(ring_progress::Column::DeploymentId.is_in(ids)).all(conn).await?;
        let mut by_deployment: std::collections::HashMap<&str, Vec<&ring_progress::Model>> =
            std::collections::HashMap::with_capacity(rows.len());
        for ring in &progress {
            by_deployment.entry(ring.deployment_id.as_str()).or_default().push(ring);
        }
        rows.into_iter()
            .map(|row| {
                let rings = by_deployment.remove(row.id.as_str()).unwrap_or_default();
                with_rings(row, rings)
            })
            .collect()
    }
}

/// The deployment of `row` with its `progress` rows, rings in order.
fn with_rings<'a>(
    row: deployment::Model,
    progress: impl IntoIterator<Item = &'a ring_progress::Model>,
) -> StoreResult<Deployment> {
    let mut rings = progress.into_iter().map(ring_from_row).collect::<StoreResult<Vec<_>>>()?;
    rings.sort_by_key(|p| p.ring);
    deployment_from_row(row, rings)
}

/// Writes every ring of a saved deployment in one statement (a deployment
/// has at most five: five statement shapes).
async fn upsert_rings(txn: &impl ConnectionTrait, deployment: &Deployment) -> StoreResult<()> {
    if deployment.rings.is_empty() {
        return Ok(());
    }
    ring_progress::Entity::insert_many(deployment.rings.iter().map(|progress| ring_row(deployment, progress)))
        .on_conflict(
            OnConflict::columns([ring_progress::Column::DeploymentId, ring_progress::Column::Ring])
                .update_columns([
                    ring_progress::Column::ConnectorObjectId,
                    ring_progress::Column::SuccessCount,
                    ring_progress::Column::FailureCount,
                    ring_progress::Column::PromotedAt,
                    ring_progress::Column::CompliantAt,
                    ring_progress::Column::RollbackValidatedAt,
                    ring_progress::Column::LastReportedAt,
                    ring_progress::Column::DeliveryState,
                    ring_progress::Column::DeliveryError,
                    ring_progress::Column::ExpectedDevices,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

fn ring_row(deployment: &Deployment, progress: &RingProgress) -> ring_progress::ActiveModel {
    ring_progress::ActiveModel {
        deployment_id: Set(deployment.id.to_string()),
        ring: Set(progress.ring.as_label().to_owned()),
        connector_object_id: Set(progress.connector_object_id.clone()),
        success_count: Set(to_i64(progress.success_count)),
        failure_count: Set(to_i64(progress.failure_count)),
        started_at: Set(progress.started_at),
        promoted_at: Set(progress.promoted_at),
        compliant_at: Set(progress.compliant_at),
        rollback_validated_at: Set(progress.rollback_validated_at),
        last_reported_at: Set(progress.last_reported_at),
        delivery_state: Set(progress.delivery.as_label().to_owned()),
        delivery_error: Set(progress.delivery_error.clone()),
        expected_devices: Set(progress.expected_devices.map(to_i64)),
    }
}

/// Appends `events` of a deployment of `app_name` in sequence order.
async fn insert_events(
    txn: &impl ConnectionTrait,
    app_name: &str,
    events: &[NewEvent],
) -> StoreResult<Vec<StoredEvent>> {
    super::serialize(txn, super::Serialized::EventOrder).await?;
    let events: Vec<(&str, &NewEvent)> = events.iter().map(|event| (app_name, event)).collect();
    insert_event_batch(txn, &events).await
}

fn event_row(app_name: &str, event: &NewEvent) -> deployment_event::ActiveModel {
    deployment_event::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        deployment_id: Set(event.deployment_id.to_string()),
        kind: Set(event.kind.as_label().to_owned()),
        from_status: Set(event.from_status.map(|s| s.as_label().to_owned())),
        to_status: Set(event.to_status.as_label().to_owned()),
        ring: Set(event.ring.as_label().to_owned()),
        actor: Set(event.actor.clone()),
        reason: Set(event.reason.clone()),
        correlation_id: Set(event.correlation_id.clone()),
        app_name: Set(app_name.to_owned()),
        created_at: Set(event.at),
    }
}

/// Most rows one multi-row insert writes. Its statements come in a few
/// fixed shapes (a power of two of rows up to this, [`chunks`]), so that
/// every connection's statement cache holds a handful of them rather than
/// one per batch size.
const MAX_ROWS_PER_INSERT: usize = 32;

/// `rows` cut into runs of a power of two rows, at most `max` each (a
/// statement per run: a handful of shapes, each prepared once per connection).
pub(super) fn chunks<T>(mut rows: Vec<T>, max: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    while !rows.is_empty() {
        let size = max.min(1 << rows.len().ilog2());
        let rest = rows.split_off(size);
        chunks.push(std::mem::replace(&mut rows, rest));
    }
    chunks
}

/// Inserts the deployments of `batch` whose request id is new, and says
/// which were (a request id used before, or twice in the batch, is skipped).
async fn insert_new_deployments(txn: &impl ConnectionTrait, batch: &[NewCreate<'_>]) -> StoreResult<Vec<bool>> {
    let mut new_ids = std::collections::HashSet::with_capacity(batch.len());
    let rows = batch.iter().map(|item| deployment_row(item.deployment, item.request_id, item.fingerprint)).collect();
    for rows in chunks(rows, MAX_ROWS_PER_INSERT) {
        let mut insert = deployment::Entity::insert_many(rows)
            .on_conflict(OnConflict::column(deployment::Column::RequestId).do_nothing().to_owned())
            .into_query();
        insert.returning_col(deployment::Column::Id);
        for row in txn.query_all(&insert).await? {
            new_ids.insert(row.try_get::<String>("", "id")?);
        }
    }
    Ok(batch.iter().map(|item| new_ids.contains(&item.deployment.id.to_string())).collect())
}

/// Inserts the rings of new deployments.
async fn insert_rings(txn: &impl ConnectionTrait, deployments: &[&NewCreate<'_>]) -> StoreResult<()> {
    let rows = deployments
        .iter()
        .flat_map(|item| item.deployment.rings.iter().map(|progress| ring_row(item.deployment, progress)))
        .collect();
    for rows in chunks(rows, MAX_ROWS_PER_INSERT) {
        ring_progress::Entity::insert_many(rows).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Appends `events` (each with its app) in a transaction serialized for
/// event order, and returns them stored, in sequence order.
async fn insert_event_batch(txn: &impl ConnectionTrait, events: &[(&str, &NewEvent)]) -> StoreResult<Vec<StoredEvent>> {
    let mut stored = Vec::with_capacity(events.len());
    let mut pending = events.iter();
    for rows in chunks(events.iter().map(|(app, event)| event_row(app, event)).collect(), MAX_ROWS_PER_INSERT) {
        let rows_in_chunk = rows.len();
        // The rows of one statement are numbered in the order of its values.
        let mut seqs = deployment_event::Entity::insert_many(rows).exec_with_returning_keys(txn).await?;
        seqs.sort_unstable();
        if seqs.len() != rows_in_chunk {
            return Err(StoreError::Corrupt(format!("{rows_in_chunk} events inserted, {} returned", seqs.len())));
        }
        for (seq, (app_name, event)) in seqs.into_iter().zip(pending.by_ref()) {
            stored.push(StoredEvent { seq, app_name: (*app_name).to_owned(), event: (*event).clone() });
        }
    }
    Ok(stored)
}

fn to_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn deployment_row(d: &Deployment, request_id: &str, fingerprint: &str) -> deployment::ActiveModel {
    deployment::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        id: Set(d.id.to_string()),
        request_id: Set(request_id.to_owned()),
        request_fingerprint: Set(fingerprint.to_owned()),
        app_name: Set(d.app_name.clone()),
        version: Set(d.version.clone()),
        connector_type: Set(d.connector_type.as_label().to_owned()),
        connector_name: Set(d.connector_name.clone()),
        current_ring: Set(d.current_ring.as_label().to_owned()),
        target_ring: Set(d.target_ring.as_label().to_owned()),
        risk_score: Set(i32::from(d.risk_score)),
        requires_cab_approval: Set(d.requires_cab_approval),
        evidence_pack_id: Set(d.evidence_pack_id.to_string()),
        submitter: Set(d.submitter.clone()),
        correlation_id: Set(d.correlation_id.clone()),
        status: Set(d.status.as_label().to_owned()),
        site_class: Set(d.site_class.as_label().to_owned()),
        cab_approver: Set(d.cab_approver.clone()),
        status_reason: Set(d.status_reason.clone()),
        created_at: Set(d.created_at),
        updated_at: Set(d.updated_at),
        deploy_started_at: Set(d.deploy_started_at),
        ended_at: Set(d.ended_at),
        revision: Set(d.revision),
        paused: Set(d.paused),
        stalled_since: Set(d.stalled_since),
        evidence: Set(serde_json::to_string(&d.evidence).ok()),
        risk_model_version: Set(d.risk.as_ref().map(|r| r.model_version)),
        risk_assessment: Set(d.risk.as_ref().and_then(|r| serde_json::to_string(r).ok())),
    }
}

fn deployment_from_row(row: deployment::Model, rings: Vec<RingProgress>) -> StoreResult<Deployment> {
    Ok(Deployment {
        id: parse_uuid(&row.id)?,
        connector_type: parse(&row.connector_type, "connector type", ConnectorType::from_label)?,
        current_ring: parse(&row.current_ring, "ring", Ring::from_label)?,
        target_ring: parse(&row.target_ring, "ring", Ring::from_label)?,
        risk_score: u8::try_from(row.risk_score)
            .map_err(|_| StoreError::Corrupt(format!("risk score {}", row.risk_score)))?,
        evidence_pack_id: parse_uuid(&row.evidence_pack_id)?,
        status: parse(&row.status, "status", DeploymentStatus::from_label)?,
        site_class: parse(&row.site_class, "site class", SiteClass::from_label)?,
        app_name: row.app_name,
        version: row.version,
        connector_name: row.connector_name,
        requires_cab_approval: row.requires_cab_approval,
        submitter: row.submitter,
        correlation_id: row.correlation_id,
        cab_approver: row.cab_approver,
        status_reason: row.status_reason,
        created_at: row.created_at,
        updated_at: row.updated_at,
        deploy_started_at: row.deploy_started_at,
        ended_at: row.ended_at,
        revision: row.revision,
        paused: row.paused,
        stalled_since: row.stalled_since,
        evidence: row
            .evidence
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("evidence: {e}")))?
            .unwrap_or_default(),
        risk: row
            .risk_assessment
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("risk assessment: {e}")))?,
        rings,
    })
}

fn ring_from_row(row: &ring_progress::Model) -> StoreResult<RingProgress> {
    Ok(RingProgress {
        ring: parse(&row.ring, "ring", Ring::from_label)?,
        connector_object_id: row.connector_object_id.clone(),
        success_count: u64::try_from(row.success_count).unwrap_or(0),
        failure_count: u64::try_from(row.failure_count).unwrap_or(0),
        started_at: row.started_at,
        promoted_at: row.promoted_at,
        compliant_at: row.compliant_at,
        rollback_validated_at: row.rollback_validated_at,
        last_reported_at: row.last_reported_at,
        delivery: parse(&row.delivery_state, "delivery state", Delivery::from_label)?,
        delivery_error: row.delivery_error.clone(),
        expected_devices: row.expected_devices.and_then(|n| u64::try_from(n).ok()),
    })
}

fn event_from_row(row: deployment_event::Model) -> StoreResult<StoredEvent> {
    let from_status =
        row.from_status.as_deref().map(|s| parse(s, "status", DeploymentStatus::from_label)).transpose()?;
    Ok(StoredEvent {
        seq: row.seq,
        app_name: row.app_name,
        event: NewEvent {
            deployment_id: parse_uuid(&row.deployment_id)?,
            kind: parse(&row.kind, "event kind", EventKind::from_label)?,
            from_status,
            to_status: parse(&row.to_status, "status", DeploymentStatus::from_label)?,
            ring: parse(&row.ring, "ring", Ring::from_label)?,
            actor: row.actor,
            reason: row.reason,
            correlation_id: row.correlation_id,
            at: row.created_at,
        },
    })
}
