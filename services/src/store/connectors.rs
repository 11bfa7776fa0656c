//! Persistence of connector definitions (with their last health) and of the
//! dispatch log that keeps work from being handed to a connector twice.

use crate::domain::Label;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use super::audit::{RequestKey, log_connector_change, record_request};
use super::entity::{connector, dispatch};
use super::secrets::SecretError;
use super::{Store, StoreError, StoreResult, parse};
use crate::domain::breaker::BreakerConfig;
use crate::domain::connector::{ConnectorDef, Driver, Health, SimulatorConfig};
use crate::domain::{ChangeContext, ChangeKind, ConnectorType, Delivery, Fence, Ring};

/// Work handed to a connector for one deployment and ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchRecord {
    pub deployment_id: Uuid,
    pub ring: Ring,
    /// `deploy` or `remove`.
    pub operation: &'static str,
    pub connector_name: String,
    /// The platform's identifier of what was created.
    pub object_id: Option<String>,
}

impl Store {
    /// The row of `def`, its token sealed.
    fn sealed_row(&self, def: &ConnectorDef) -> StoreResult<connector::ActiveModel> {
        let mut row = connector_row(def);
        if let Some(token) = &def.auth_token {
            let key = self.secret_key.as_ref().ok_or(SecretError::NoKey)?;
            row.auth_token = Set(Some(key.seal(token)));
        }
        Ok(row)
    }

    /// The connector of a row, its token opened.
    fn opened(&self, mut row: connector::Model) -> StoreResult<ConnectorDef> {
        if let Some(sealed) = row.auth_token.take() {
            let key = self.secret_key.as_ref().ok_or(SecretError::NoKey)?;
            row.auth_token = Some(key.open(&sealed)?);
        }
        connector_from_row(row)
    }

    /// Stores a new connector and logs its creation (with the request id
    /// that asked for it, when given), in one transaction.
    ///
    /// # Errors
    /// [`StoreError::ConnectorExists`], [`StoreError::RequestIdTaken`] or database failures.
    pub async fn create_connector(
        &self,
        def: &ConnectorDef,
        request: Option<&RequestKey>,
        ctx: &ChangeContext,
    ) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            match connector::Entity::insert(self.sealed_row(def)?).exec_without_returning(&txn).await {
                Ok(_) => {}
                Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    return Err(StoreError::ConnectorExists(def.name.clone()));
                }
                Err(err) => return Err(err.into()),
            }
            if let Some(key) = request {
                record_request(&txn, key, &def.name, ctx).await?;
            }
            log_connector_change(&txn, ChangeKind::Created, None, Some(def), ctx).await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    /// # Errors
    /// [`StoreError::ConnectorNotFound`] or database failures.
    pub async fn get_connector(&self, name: &str) -> StoreResult<ConnectorDef> {
        self.guard(async {
            let row = connector::Entity::find_by_id(name.to_owned())
                .one(&self.db)
                .await?
                .ok_or_else(|| StoreError::ConnectorNotFound(name.to_owned()))?;
            self.opened(row)
        })
        .await
    }

    /// Connectors by name, optionally of one type, after name `after`; and
    /// whether more follow.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_connectors(
        &self,
        connector_type: Option<ConnectorType>,
        after: Option<&str>,
        limit: u64,
    ) -> StoreResult<(Vec<ConnectorDef>, bool)> {
        self.guard(async {
            let mut query = connector::Entity::find();
            if let Some(connector_type) = connector_type {
                query = query.filter(connector::Column::ConnectorType.eq(connector_type.as_label()));
            }
            if let Some(after) = after {
                query = query.filter(connector::Column::Name.gt(after));
            }
            let mut rows = query.order_by_asc(connector::Column::Name).limit(limit + 1).all(&self.db).await?;
            let more = rows.len() as u64 > limit;
            rows.truncate(limit as usize);
            Ok((rows.into_iter().map(|row| self.opened(row)).collect::<StoreResult<Vec<_>>>()?, more))
        })
        .await
    }

    /// Every enabled connector (for health probing and dispatch).
    ///
    /// # Errors
    /// Database failures.
    pub async fn enabled_connectors(&self) -> StoreResult<Vec<ConnectorDef>> {
        self.guard(async {
            let rows = connector::Entity::find()
                .filter(connector::Column::Enabled.eq(true))
                .order_by_asc(connector::Column::Name)
                .all(&self.db)
                .await?;
            rows.into_iter().map(|row| self.opened(row)).collect()
        })
        .await
    }

    /// Saves `after` in place of `before` (the version it was read at) and
    /// logs the change; health is kept.
    ///
    /// # Errors
    /// [`StoreError::ConnectorConflict`], [`StoreError::ConnectorNotFound`] or database failures.
    pub async fn update_connector(
        &self,
        before: &ConnectorDef,
        after: &ConnectorDef,
        ctx: &ChangeContext,
    ) -> StoreResult<ConnectorDef> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let saved = ConnectorDef { revision: before.revision + 1, ..after.clone() };
            let mut row = self.sealed_row(&saved)?;
            row.healthy = NotSet;
            row.health_error = NotSet;
            row.health_checked_at = NotSet;
            row.created_at = NotSet;
            let updated = connector::Entity::update_many()
                .set(row)
                .filter(connector::Column::Name.eq(before.name.as_str()))
                .filter(connector::Column::Revision.eq(before.revision))
                .exec(&txn)
                .await?;
            if updated.rows_affected == 0 {
                drop(txn);
                self.get_connector(&before.name).await?;
                return Err(StoreError::ConnectorConflict { name: before.name.clone(), expected: before.revision });
            }
            log_connector_change(&txn, ChangeKind::Updated, Some(before), Some(&saved), ctx).await?;
            txn.commit().await?;
            Ok(saved)
        })
        .await
    }

    /// Deletes `def` if it is still at the version read, and logs the deletion.
    ///
    /// # Errors
    /// [`StoreError::ConnectorConflict`] when it changed since, [`StoreError::ConnectorNotFound`], or database failures.
    pub async fn delete_connector(&self, def: &ConnectorDef, ctx: &ChangeContext) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let deleted = connector::Entity::delete_many()
                .filter(connector::Column::Name.eq(def.name.as_str()))
                .filter(connector::Column::Revision.eq(def.revision))
                .exec(&txn)
                .await?;
            if deleted.rows_affected == 0 {
                drop(txn);
                self.get_connector(&def.name).await?;
                return Err(StoreError::ConnectorConflict { name: def.name.clone(), expected: def.revision });
            }
            log_connector_change(&txn, ChangeKind::Deleted, Some(def), None, ctx).await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    /// Logs that an operator reset `def`'s circuit breaker.
    ///
    /// # Errors
    /// Database failures.
    pub async fn log_breaker_reset(&self, def: &ConnectorDef, ctx: &ChangeContext) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            log_connector_change(&self.db, ChangeKind::BreakerReset, Some(def), Some(def), ctx).await
        })
        .await
    }

    /// Records the result of a health probe.
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_connector_health(&self, name: &str, health: &Health, fence: Option<&Fence>) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            super::leases::check_fence(&txn, fence).await?;
            connector::Entity::update_many()
                .col_expr(connector::Column::Healthy, health.healthy.into())
                .col_expr(connector::Column::HealthError, health.last_error.clone().into())
                .col_expr(connector::Column::HealthCheckedAt, health.checked_at.into())
                .filter(connector::Column::Name.eq(name))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    /// The outbox row of this deployment, ring and operation, with its state.
    ///
    /// # Errors
    /// Database failures.
    pub async fn find_dispatch(
        &self,
        deployment_id: Uuid,
        ring: Ring,
        operation: &str,
    ) -> StoreResult<Option<(DispatchRecord, Delivery)>> {
        self.guard(async {
            let key = (deployment_id.to_string(), ring.as_label().to_owned(), operation.to_owned());
            match dispatch::Entity::find_by_id(key).one(&self.db).await? {
                Some(row) => Ok(Some(dispatch_from_row(row)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Claims queued work for `replica` to deliver until `until`: `false`
    /// when it is no longer queued, or another replica's claim still holds.
    /// (On SQLite, one process: always `true`, nothing written.)
    /// A claim that lapsed (its replica died mid-delivery) can be taken: the
    /// connector may then hear of the work twice, and deduplicates on its
    /// idempotency key.
    ///
    /// # Errors
    /// Database failures.
    pub async fn claim_dispatch(
        &self,
        record: &DispatchRecord,
        replica: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        use sea_orm::sea_query::Condition;
        // SQLite is one process: its in-process dispatch lock is enough.
        if self.backend() != sea_orm::DbBackend::Postgres {
            return Ok(true);
        }
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let free = Condition::any()
                .add(dispatch::Column::ClaimedUntil.is_null())
                .add(dispatch::Column::ClaimedUntil.lte(now))
                .add(dispatch::Column::ClaimedBy.eq(replica));
            let claimed = dispatch::Entity::update_many()
                .col_expr(dispatch::Column::ClaimedBy, replica.into())
                .col_expr(dispatch::Column::ClaimedUntil, until.into())
                .filter(dispatch_key(record))
                .filter(dispatch::Column::State.eq(Delivery::Pending.as_label()))
                .filter(free)
                .exec(&self.db)
                .await?;
            Ok(claimed.rows_affected == 1)
        })
        .await
    }

    /// Gives up `replica`'s claim on work still queued (its delivery failed
    /// for now), so that any replica's next retry may take it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_dispatch(&self, record: &DispatchRecord, replica: &str) -> StoreResult<()> {
        if self.backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        self.guard(async {
            let _guard = self.lock_writes().await?;
            dispatch::Entity::update_many()
                .col_expr(dispatch::Column::ClaimedBy, Option::<String>::None.into())
                .col_expr(dispatch::Column::ClaimedUntil, Option::<DateTime<Utc>>::None.into())
                .filter(dispatch_key(record))
                .filter(dispatch::Column::ClaimedBy.eq(replica))
                .exec(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    /// Work still to be delivered, oldest first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn pending_dispatches(&self, limit: u64) -> StoreResult<Vec<DispatchRecord>> {
        self.guard(async {
            let rows = dispatch::Entity::find()
                .filter(dispatch::Column::State.eq(Delivery::Pending.as_label()))
                .order_by_asc(dispatch::Column::CreatedAt)
                .limit(limit)
                .all(&self.db)
                .await?;
            rows.into_iter().map(|row| dispatch_from_row(row).map(|(record, _)| record)).collect()
        })
        .await
    }
}

/// What a save does to the outbox, in the same transaction as the change.
#[derive(Debug, Clone, Copy)]
pub enum OutboxWrite<'a> {
    /// The decision hands this work over: queue it for delivery (once: the
    /// same work queued again is ignored).
    Queue(&'a DispatchRecord),
    /// Delivery of this work ended (delivered, or refused).
    Settle(&'a DispatchRecord, Delivery),
}

pub(super) async fn write_outbox(
    txn: &impl ConnectionTrait,
    outbox: OutboxWrite<'_>,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    match outbox {
        OutboxWrite::Queue(record) => {
            let row = dispatch::ActiveModel {
                deployment_id: Set(record.deployment_id.to_string()),
                ring: Set(record.ring.as_label().to_owned()),
                operation: Set(record.operation.to_owned()),
                connector_name: Set(record.connector_name.clone()),
                object_id: Set(record.object_id.clone()),
                created_at: Set(at),
                state: Set(Delivery::Pending.as_label().to_owned()),
                claimed_by: Set(None),
                claimed_until: Set(None),
            };
            dispatch::Entity::insert(row).on_conflict_do_nothing().exec_without_returning(txn).await?;
        }
        OutboxWrite::Settle(record, state) => {
            dispatch::Entity::update_many()
                .col_expr(dispatch::Column::State, state.as_label().into())
                .col_expr(dispatch::Column::ObjectId, record.object_id.clone().into())
                .filter(dispatch_key(record))
                .exec(txn)
                .await?;
        }
    }
    Ok(())
}

/// The row of `record` in `dispatches`.
fn dispatch_key(record: &DispatchRecord) -> sea_orm::sea_query::Condition {
    sea_orm::sea_query::Condition::all()
        .add(dispatch::Column::DeploymentId.eq(record.deployment_id.to_string()))
        .add(dispatch::Column::Ring.eq(record.ring.as_label()))
        .add(dispatch::Column::Operation.eq(record.operation))
}

fn dispatch_from_row(row: dispatch::Model) -> StoreResult<(DispatchRecord, Delivery)> {
    let record = DispatchRecord {
        deployment_id: super::parse_uuid(&row.deployment_id)?,
        ring: parse(&row.ring, "ring", Ring::from_label)?,
        operation: if row.operation == "remove" { "remove" } else { "deploy" },
        connector_name: row.connector_name,
        object_id: row.object_id,
    };
    Ok((record, parse(&row.state, "delivery state", Delivery::from_label)?))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn from_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn connector_row(d: &ConnectorDef) -> connector::ActiveModel {
    connector::ActiveModel {
        name: Set(d.name.clone()),
        connector_type: Set(d.connector_type.as_label().to_owned()),
        driver: Set(d.driver.as_label().to_owned()),
        endpoint: Set(d.endpoint.clone()),
        auth_token: Set(d.auth_token.clone()),
        enabled: Set(d.enabled),
        call_timeout_ms: Set(millis(d.call_timeout)),
        breaker_fail_max: Set(i32::try_from(d.breaker.fail_max).unwrap_or(i32::MAX)),
        breaker_reset_timeout_ms: Set(millis(d.breaker.reset_timeout)),
        simulator_latency_ms: Set(millis(d.simulator.latency)),
        simulator_failure_rate: Set(d.simulator.failure_rate),
        simulator_device_count: Set(i64::try_from(d.simulator.device_count).unwrap_or(i64::MAX)),
        healthy: Set(d.health.as_ref().map(|h| h.healthy)),
        health_error: Set(d.health.as_ref().and_then(|h| h.last_error.clone())),
        health_checked_at: Set(d.health.as_ref().map(|h| h.checked_at)),
        revision: Set(d.revision),
        created_at: Set(d.created_at),
        updated_at: Set(d.updated_at),
    }
}

pub(super) fn connector_from_row(row: connector::Model) -> StoreResult<ConnectorDef> {
    let health = match (row.healthy, row.health_checked_at) {
        (Some(healthy), Some(checked_at)) => Some(Health { healthy, last_error: row.health_error, checked_at }),
        _ => None,
    };
    Ok(ConnectorDef {
        connector_type: parse(&row.connector_type, "connector type", ConnectorType::from_label)?,
        driver: parse(&row.driver, "driver", Driver::from_label)?,
        name: row.name,
        endpoint: row.endpoint,
        auth_token: row.auth_token,
        enabled: row.enabled,
        call_timeout: from_millis(row.call_timeout_ms),
        breaker: BreakerConfig {
            fail_max: u32::try_from(row.breaker_fail_max).unwrap_or(1),
            reset_timeout: from_millis(row.breaker_reset_timeout_ms),
        },
        simulator: SimulatorConfig {
            latency: from_millis(row.simulator_latency_ms),
            failure_rate: row.simulator_failure_rate,
            device_count: u64::try_from(row.simulator_device_count).unwrap_or(0),
        },
        health,
        revision: row.revision,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
