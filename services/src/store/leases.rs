//! Leases of background duties (the controller, connector probing), with
//! fencing tokens: a lease is taken when free or lapsed, and its token then
//! grows; its holder keeps it by renewing before it lapses. A duty's writes
//! carry the [`Fence`] they were decided under and [`check_fence`] verifies
//! it in their own transaction, so a holder that was paused or cut off past
//! its lease — and replaced — cannot act any more.
//!
//! Lapse times come from each replica's clock: skew only moves when a
//! takeover may happen, never lets two holders act (the token decides).

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, SqlErr, TransactionTrait,
};

use super::entity::lease;
use super::{Store, StoreError, StoreResult};
use crate::domain::Fence;

impl Store {
    /// Takes lease `name` for `holder` until `now + period` when it is free
    /// or lapsed (a new token), or keeps it when `holder` holds it under
    /// `held` (the same token). `None`: another holder has it.
    ///
    /// # Errors
    /// Database failures.
    pub async fn acquire_lease(
        &self,
        name: &'static str,
        holder: &str,
        held: Option<i64>,
        now: DateTime<Utc>,
        period: std::time::Duration,
    ) -> StoreResult<Option<Fence>> {
        let until = now + period;
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let mut query = lease::Entity::find_by_id(name);
            if txn.get_database_backend() == DbBackend::Postgres {
                query = query.lock_exclusive();
            }
            let token = match query.one(&txn).await? {
                None => {
                    let row = lease::ActiveModel {
                        name: Set(name.to_owned()),
                        holder: Set(holder.to_owned()),
                        token: Set(1),
                        expires_at: Set(until),
                    };
                    match lease::Entity::insert(row).exec_without_returning(&txn).await {
                        Ok(_) => 1,
                        // Another replica created it first.
                        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                            return Ok(None);
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                Some(row) => {
                    let token = if row.holder == holder && Some(row.token) == held {
                        row.token
                    } else if row.expires_at <= now {
                        row.token + 1
                    } else {
                        return Ok(None);
                    };
                    lease::Entity::update_many()
                        .col_expr(lease::Column::Holder, holder.into())
                        .col_expr(lease::Column::Token, token.into())
                        .col_expr(lease::Column::ExpiresAt, until.into())
                        .filter(lease::Column::Name.eq(name))
                        .exec(&txn)
                        .await?;
                    token
                }
            };
            txn.commit().await?;
            Ok(Some(Fence { lease: name, token }))
        })
        .await
    }

    /// Gives lease `fence` up at once (on shutdown), so that another replica
    /// need not wait for it to lapse.
    ///
    /// # Errors
    /// Database failures.
    pub async fn release_lease(&self, fence: &Fence) -> StoreResult<()> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            lease::Entity::update_many()
                .col_expr(lease::Column::ExpiresAt, DateTime::<Utc>::UNIX_EPOCH.into())
                .filter(lease::Column::Name.eq(fence.lease))
                .filter(lease::Column::Token.eq(fence.token))
                .exec(&self.db)
                .await?;
            Ok(())
        })
        .await
    }
}

/// Refuses, in `txn`, a change made under `fence` once the lease has been
/// taken by another acquisition. On PostgreSQL the lease row stays share-
/// locked until `txn` ends, so a takeover waits for this change to commit.
///
/// # Errors
/// [`StoreError::Fenced`]; database failures.
pub(super) async fn check_fence(txn: &impl ConnectionTrait, fence: Option<&Fence>) -> StoreResult<()> {
    let Some(fence) = fence else { return Ok(()) };
    let mut query = lease::Entity::find_by_id(fence.lease);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_shared();
    }
    match query.one(txn).await? {
        Some(row) if row.token == fence.token => Ok(()),
        _ => Err(StoreError::Fenced { lease: fence.lease, token: fence.token }),
    }
}
