//! Change logs of configuration (ring policies, connectors), written in the
//! transaction of the change they record, and the record of request ids for
//! calls whose own rows have no request id column. A logged object is its
//! row as JSON (connector tokens redacted), so the log reads back with the
//! same code that reads the live table.

use crate::domain::Label;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, SqlErr, TryIntoModel};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::entity::{connector, connector_change, request, ring_policy, ring_policy_change};
use super::{Page, Store, StoreError, StoreResult, parse};
use crate::domain::connector::ConnectorDef;
use crate::domain::{Change, ChangeContext, ChangeKind, Ring, RingPolicy};

/// Stands for a connector's auth token in its change log: whether one was
/// set is worth keeping, the token never is.
const REDACTED: &str = "<redacted>";

/// A request id of a create or side-effecting call, with the content it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// The call, e.g. `create_connector`.
    pub operation: &'static str,
    pub request_id: String,
    /// Hash of the request's content: equal for a retry.
    pub fingerprint: String,
}

/// What a request id was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub fingerprint: String,
    /// The key of what the first call created or changed.
    pub target: String,
}

fn to_json(row: &impl Serialize) -> String {
    serde_json::to_string(row).expect("rows serialize")
}

fn from_json<T: DeserializeOwned>(json: Option<&str>) -> StoreResult<Option<T>> {
    json.map(|json| serde_json::from_str(json).map_err(|err| StoreError::Corrupt(format!("change log entry: {err}"))))
        .transpose()
}

pub(super) fn policy_json(policy: &RingPolicy) -> String {
    to_json(&super::promotions::policy_row(policy).try_into_model().expect("every column set"))
}

fn connector_json(def: &ConnectorDef) -> String {
    let mut row = super::connectors::connector_row(def).try_into_model().expect("every column set");
    row.auth_token = row.auth_token.map(|_| REDACTED.to_owned());
    to_json(&row)
}

/// Appends a connector change in `txn`, the transaction of the change itself.
pub(super) async fn log_connector_change(
    txn: &impl ConnectionTrait,
    kind: ChangeKind,
    before: Option<&ConnectorDef>,
    after: Option<&ConnectorDef>,
    ctx: &ChangeContext,
) -> StoreResult<()> {
    let name = after.or(before).map(|def| def.name.clone()).unwrap_or_default();
    let row = connector_change::ActiveModel {
        seq: NotSet,
        connector_name: Set(name),
        kind: Set(kind.as_label().to_owned()),
        actor: Set(ctx.actor.clone()),
        reason: Set(ctx.reason.clone()),
        correlation_id: Set(ctx.correlation_id.clone()),
        before: Set(before.map(connector_json)),
        after: Set(after.map(connector_json)),
        created_at: Set(ctx.now),
    };
    connector_change::Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

/// Records in `txn` that `key` was used for `target`.
///
/// # Errors
/// [`StoreError::RequestIdTaken`] when a concurrent call recorded it first.
pub(super) async fn record_request(
    txn: &impl ConnectionTrait,
    key: &RequestKey,
    target: &str,
    ctx: &ChangeContext,
) -> StoreResult<()> {
    record_request_at(txn, key, target, ctx.now).await
}

pub(super) async fn record_request_at(
    txn: &impl ConnectionTrait,
    key: &RequestKey,
    target: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<()> {
    let row = request::ActiveModel {
        operation: Set(key.operation.to_owned()),
        request_id: Set(key.request_id.clone()),
        fingerprint: Set(key.fingerprint.clone()),
        target: Set(target.to_owned()),
        created_at: Set(at),
    };
    match request::Entity::insert(row).exec_without_returning(txn).await {
        Ok(_) => Ok(()),
        Err(err) if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(StoreError::RequestIdTaken(key.request_id.clone()))
        }
        Err(err) => Err(err.into()),
    }
}

impl Store {
    /// What `request_id` was first used for by `operation`, if it was.
    ///
    /// # Errors
    /// Database failures.
    pub async fn find_request(&self, operation: &str, request_id: &str) -> StoreResult<Option<RecordedRequest>> {
        self.guard(async {
            let row = request::Entity::find_by_id((operation.to_owned(), request_id.to_owned())).one(&self.db).await?;
            Ok(row.map(|row| RecordedRequest { fingerprint: row.fingerprint, target: row.target }))
        })
        .await
    }

    /// Ring policy updates in log order after sequence `after`, of one ring or all.
    ///
    /// # Errors
    /// Database failures, or a log entry the code cannot read.
    pub async fn list_policy_changes(
        &self,
        ring: Option<Ring>,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<Change<RingPolicy>>> {
        use ring_policy_change::Column;
        self.guard(async {
            let mut query = ring_policy_change::Entity::find();
            if let Some(ring) = ring {
                query = query.filter(Column::Ring.eq(ring.as_label()));
            }
            let rows = self.rows_after(query, Column::Seq, after, limit).await?;
            Page::from_rows(
                rows,
                limit,
                |row| row.seq,
                |row| {
                    let policy = |json: &str| -> StoreResult<Option<RingPolicy>> {
                        from_json::<ring_policy::Model>(Some(json))?.map(super::promotions::policy_from_row).transpose()
                    };
                    Ok(Change {
                        seq: row.seq,
                        kind: ChangeKind::Updated,
                        before: policy(&row.before)?,
                        after: policy(&row.after)?,
                        actor: row.actor,
                        reason: row.reason,
                        correlation_id: row.correlation_id,
                        at: row.created_at,
                        approved_by: row.approved_by,
                    })
                },
            )
        })
        .await
    }

    /// Connector changes in log order after sequence `after`, of one connector or all.
    ///
    /// # Errors
    /// Database failures, or a log entry the code cannot read.
    pub async fn list_connector_changes(
        &self,
        name: Option<&str>,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<Change<ConnectorDef>>> {
        use connector_change::Column;
        self.guard(async {
            let mut query = connector_change::Entity::find();
            if let Some(name) = name {
                query = query.filter(Column::ConnectorName.eq(name));
            }
            let rows = self.rows_after(query, Column::Seq, after, limit).await?;
            Page::from_rows(
                rows,
                limit,
                |row| row.seq,
                |row| {
                    let def = |json: Option<&str>| -> StoreResult<Option<ConnectorDef>> {
                        from_json::<connector::Model>(json)?.map(super::connectors::connector_from_row).transpose()
                    };
                    Ok(Change {
                        seq: row.seq,
                        kind: parse(&row.kind, "connector change kind", ChangeKind::from_label)?,
                        before: def(row.before.as_deref())?,
                        after: def(row.after.as_deref())?,
                        actor: row.actor,
                        reason: row.reason,
                        correlation_id: row.correlation_id,
                        at: row.created_at,
                        approved_by: None,
                    })
                },
            )
        })
        .await
    }
}
