//! Persistence of ring policies (with their change log) and of promotion
//! attempts. A promotion is saved in the same transaction as the deployment
//! it moved, behind the deployment's revision check, so that across any
//! number of server processes exactly one promotion happens per ring step.

use crate::domain::Label;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, SqlErr, TransactionTrait};
use uuid::Uuid;

use super::connectors::OutboxWrite;
use super::entity::{promotion, ring_policy, ring_policy_change};
use super::{Page, Store, StoreError, StoreResult, parse, parse_uuid};
use crate::domain::{
    ChangeContext, Deployment, Fence, GateEvaluation, NewEvent, Promotion, PromotionResult, Ring, RingPolicies,
    RingPolicy,
};

/// How long shown policies are trusted on PostgreSQL, where another replica
/// may change one.
pub const SHOWN_POLICIES_TTL: Duration = Duration::from_secs(1);

impl Store {
    /// The policies of every ring, in ring order.
    ///
    /// # Errors
    /// Database failures, or a ring without a policy row.
    pub async fn list_policies(&self) -> StoreResult<RingPolicies> {
        self.guard(async {
            let rows = ring_policy::Entity::find().all(&self.db).await?;
            let policies = rows.into_iter().map(policy_from_row).collect::<StoreResult<Vec<_>>>()?;
            let stored = policies.len();
            RingPolicies::new(policies)
                .ok_or_else(|| StoreError::Corrupt(format!("{stored} ring policies stored, not one per ring")))
        })
        .await
    }

    /// The ring policies for showing deployments (gate, next action):
    /// cached, forgotten when this process changes one, and on PostgreSQL
    /// read again at most [`SHOWN_POLICIES_TTL`] later (another replica may
    /// have changed one). Decisions read the database.
    ///
    /// # Errors
    /// As [`Store::list_policies`].
    pub async fn shown_policies(&self) -> StoreResult<Arc<RingPolicies>> {
        self.shown(&self.shown_policies, async { Ok(Arc::new(self.list_policies().await?)) }).await
    }

    /// What `cache` keeps, when fresh enough for showing (on PostgreSQL at
    /// most [`SHOWN_POLICIES_TTL`] old); else what `read` reads, kept.
    pub(super) async fn shown<T: Clone>(
        &self,
        cache: &super::Cached<(T, Instant)>,
        read: impl std::future::Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let fresh_for = if self.backend() == DbBackend::Postgres { SHOWN_POLICIES_TTL } else { Duration::MAX };
        let (kept, changes) = cache.get();
        if let Some((value, read_at)) = kept
            && read_at.elapsed() < fresh_for
        {
            return Ok(value);
        }
        let value = read.await?;
        cache.keep(&(value.clone(), Instant::now()), changes);
        Ok(value)
    }

    /// Drops the shown policies after changing one.
    pub(super) fn forget_shown_policies(&self) {
        self.shown_policies.changed();
    }

    /// # Errors
    /// Database failures, or no row for `ring`.
    pub async fn get_policy(&self, ring: Ring) -> StoreResult<RingPolicy> {
        self.guard(async {
            let row = ring_policy::Entity::find_by_id(ring.as_label().to_owned())
                .one(&self.db)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("no policy stored for {ring}")))?;
            policy_from_row(row)
        })
        .await
    }

    /// Saves `policy` (its `revision` is the one it was read at) and appends
    /// the change with the policy before and after.
    ///
    /// # Errors
    /// [`StoreError::PolicyConflict`] when it changed since it was read, or database failures.
    pub async fn update_policy(
        &self,
        before: &RingPolicy,
        after: &RingPolicy,
        change: &ChangeContext,
    ) -> StoreResult<RingPolicy> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let saved = write_policy(&txn, before, after, change, None).await?;
            txn.commit().await?;
            self.forget_shown_policies();
            Ok(saved)
        })
        .await
    }

    /// Saves a promoted or rolled-back deployment, its events and the
    /// promotion record in one transaction.
    ///
    /// # Errors
    /// [`StoreError::RevisionConflict`] when the deployment changed since it
    /// was read, [`StoreError::RequestIdTaken`] when the request id was used
    /// concurrently, or database failures.
    pub async fn save_promotion(
        &self,
        deployment: &Deployment,
        events: &[NewEvent],
        promotion: &Promotion,
        outbox: Option<OutboxWrite<'_>>,
        fence: Option<&Fence>,
    ) -> StoreResult<Deployment> {
        let alongside = super::Alongside { promotion: Some(promotion), outbox, request: None, fence };
        self.guard(async { self.save_with(deployment, events, alongside).await }).await
    }

    /// Records a blocked promotion attempt (the deployment is unchanged).
    ///
    /// # Errors
    /// [`StoreError::RequestIdTaken`] when the request id was used before, or database failures.
    pub async fn record_blocked_promotion(&self, promotion: &Promotion) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            insert_promotion(&self.db, promotion).await
        })
        .await
    }

    /// The promotion recorded under a client's request id, if any.
    ///
    /// # Errors
    /// Database failures or a corrupt row.
    pub async fn find_promotion(&self, request_id: &str) -> StoreResult<Option<Promotion>> {
        self.guard(async {
            let row =
                promotion::Entity::find().filter(promotion::Column::RequestId.eq(request_id)).one(&self.db).await?;
            row.map(promotion_from_row).transpose()
        })
        .await
    }

    /// Promotion records of one deployment, oldest first, after sequence `after`.
    ///
    /// # Errors
    /// Database failures or a corrupt row.
    pub async fn list_promotions(
        &self,
        deployment_id: Uuid,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<Promotion>> {
        self.guard(async {
            let query = promotion::Entity::find().filter(promotion::Column::DeploymentId.eq(deployment_id.to_string()));
            let rows = self.rows_after(query, promotion::Column::Seq, after, limit).await?;
            Page::from_rows(rows, limit, |row| row.seq, promotion_from_row)
        })
        .await
    }
}

pub(super) async fn insert_promotion(conn: &impl ConnectionTrait, p: &Promotion) -> StoreResult<()> {
    let row = promotion::ActiveModel {
        seq: NotSet,
        id: Set(p.id.to_string()),
        deployment_id: Set(p.deployment_id.to_string()),
        from_ring: Set(p.from_ring.as_label().to_owned()),
        to_ring: Set(p.to_ring.map(|r| r.as_label().to_owned())),
        result: Set(p.result.as_label().to_owned()),
        gate: Set(p.gate.as_ref().map(|g| serde_json::to_string(g).expect("gate evaluations serialize"))),
        actor: Set(p.actor.clone()),
        reason: Set(p.reason.clone()),
        correlation_id: Set(p.correlation_id.clone()),
        request_id: Set(p.request_id.clone()),
        created_at: Set(p.created_at),
    };
    match promotion::Entity::insert(row).exec_without_returning(conn).await {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(StoreError::RequestIdTaken(p.request_id.clone().unwrap_or_default()))
        }
        Err(err) => Err(err.into()),
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn duration(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Replaces `before` by `after` in `txn`, conditional on `before`'s
/// revision, and logs the change (with the second admin who approved it,
/// when it needed one).
///
/// # Errors
/// [`StoreError::PolicyConflict`] when the policy changed since `before` was read.
pub(super) async fn write_policy(
    txn: &impl ConnectionTrait,
    before: &RingPolicy,
    after: &RingPolicy,
    change: &ChangeContext,
    approved_by: Option<&str>,
) -> StoreResult<RingPolicy> {
    let mut saved = after.clone();
    saved.revision = before.revision + 1;
    saved.updated_at = change.now;
    let updated = ring_policy::Entity::update_many()
        .set(policy_row(&saved))
        .filter(ring_policy::Column::Ring.eq(before.ring.as_label()))
        .filter(ring_policy::Column::Revision.eq(before.revision))
        .exec(txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(StoreError::PolicyConflict { ring: before.ring, expected: before.revision });
    }
    let audit = ring_policy_change::ActiveModel {
        seq: NotSet,
        ring: Set(before.ring.as_label().to_owned()),
        actor: Set(change.actor.clone()),
        reason: Set(change.reason.clone()),
        correlation_id: Set(change.correlation_id.clone()),
        before: Set(super::audit::policy_json(before)),
        after: Set(super::audit::policy_json(&saved)),
        created_at: Set(change.now),
        approved_by: Set(approved_by.map(str::to_owned)),
    };
    ring_policy_change::Entity::insert(audit).exec_without_returning(txn).await?;
    Ok(saved)
}

pub(super) fn policy_row(p: &RingPolicy) -> ring_policy::ActiveModel {
    ring_policy::ActiveModel {
        ring: Set(p.ring.as_label().to_owned()),
        min_success_rate: Set(p.min_success_rate),
        min_sample_size: Set(i64::try_from(p.min_sample_size).unwrap_or(i64::MAX)),
        online_compliance_limit_seconds: Set(seconds(p.online_compliance_limit)),
        intermittent_compliance_limit_seconds: Set(seconds(p.intermittent_compliance_limit)),
        air_gapped_compliance_limit_seconds: Set(seconds(p.air_gapped_compliance_limit)),
        require_cab_approval: Set(p.require_cab_approval),
        require_evidence_pack: Set(p.require_evidence_pack),
        require_rollback_validated: Set(p.require_rollback_validated),
        bake_time_seconds: Set(seconds(p.bake_time)),
        auto_promote: Set(p.auto_promote),
        rollback_failure_rate: Set(p.rollback_failure_rate),
        rollback_min_sample: Set(i64::try_from(p.rollback_min_sample).unwrap_or(i64::MAX)),
        stall_timeout_seconds: Set(seconds(p.stall_timeout)),
        revision: Set(p.revision),
        updated_at: Set(p.updated_at),
    }
}

pub(super) fn policy_from_row(row: ring_policy::Model) -> StoreResult<RingPolicy> {
    Ok(RingPolicy {
        ring: parse(&row.ring, "ring", Ring::from_label)?,
        min_success_rate: row.min_success_rate,
        min_sample_size: u64::try_from(row.min_sample_size).unwrap_or(0),
        online_compliance_limit: duration(row.online_compliance_limit_seconds),
        intermittent_compliance_limit: duration(row.intermittent_compliance_limit_seconds),
        air_gapped_compliance_limit: duration(row.air_gapped_compliance_limit_seconds),
        require_cab_approval: row.require_cab_approval,
        require_evidence_pack: row.require_evidence_pack,
        require_rollback_validated: row.require_rollback_validated,
        bake_time: duration(row.bake_time_seconds),
        auto_promote: row.auto_promote,
        rollback_failure_rate: row.rollback_failure_rate,
        rollback_min_sample: u64::try_from(row.rollback_min_sample).unwrap_or(0),
        stall_timeout: duration(row.stall_timeout_seconds),
        revision: row.revision,
        updated_at: row.updated_at,
    })
}

fn gate_from_json(text: &str) -> StoreResult<GateEvaluation> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("gate evaluation: {err}")))
}

fn promotion_from_row(row: promotion::Model) -> StoreResult<Promotion> {
    Ok(Promotion {
        id: parse_uuid(&row.id)?,
        deployment_id: parse_uuid(&row.deployment_id)?,
        from_ring: parse(&row.from_ring, "ring", Ring::from_label)?,
        to_ring: row.to_ring.as_deref().map(|r| parse(r, "ring", Ring::from_label)).transpose()?,
        result: parse(&row.result, "promotion result", PromotionResult::from_label)?,
        gate: row.gate.as_deref().map(gate_from_json).transpose()?,
        actor: row.actor,
        reason: row.reason,
        correlation_id: row.correlation_id,
        request_id: row.request_id,
        created_at: row.created_at,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::{CheckKind, GateCheck};

    #[test]
    fn gate_evaluations_round_trip_through_json() {
        let gate = GateEvaluation {
            ring: Ring::Pilot,
            next_ring: Some(Ring::Department),
            passed: false,
            checks: vec![GateCheck {
                kind: CheckKind::SuccessRate,
                passed: false,
                observed: 0.962,
                threshold: 0.97,
                message: "success rate 0.962 < 0.970 on PILOT with 1,204 devices reported".into(),
            }],
            evaluated_at: DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&Utc),
        };
        assert_eq!(gate_from_json(&serde_json::to_string(&gate).unwrap()).unwrap(), gate);
        assert!(gate_from_json("{}").is_err());
    }
}
