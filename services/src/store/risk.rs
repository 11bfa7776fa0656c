//! Persistence of risk models (and their audit log), and the indexed counts
//! of an app's recent history that the risk factors need.

use crate::domain::Label;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, ExprTrait, Order};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::audit::{RequestKey, record_request};
use super::entity::{deployment, risk_model, risk_model_event};
use super::{Store, StoreError, StoreResult};
use crate::domain::risk::{Factor, History, RiskModel};
use crate::domain::{ChangeContext, DeploymentStatus};

impl Store {
    /// The model that scores new deployments.
    ///
    /// # Errors
    /// Database failures, or no active model (the migrations install one).
    pub async fn active_risk_model(&self) -> StoreResult<RiskModel> {
        let Some(cached) = &self.active_model else { return self.read_active_risk_model().await };
        let (kept, changes) = cached.get();
        if let Some(model) = kept {
            return Ok(model);
        }
        let model = self.read_active_risk_model().await?;
        cached.keep(&model, changes);
        Ok(model)
    }

    /// The active model changed (after its commit).
    pub(super) fn active_risk_model_changed(&self) {
        if let Some(cached) = &self.active_model {
            cached.changed();
        }
    }

    async fn read_active_risk_model(&self) -> StoreResult<RiskModel> {
        self.guard(async {
            let row = risk_model::Entity::find()
                .filter(risk_model::Column::Active.eq(true))
                .one(&self.db)
                .await?
                .ok_or_else(|| StoreError::Corrupt("no active risk model".into()))?;
            model_from_row(row)
        })
        .await
    }

    /// Every model, oldest version first.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_risk_models(&self) -> StoreResult<Vec<RiskModel>> {
        self.guard(async {
            let rows = risk_model::Entity::find().order_by_asc(risk_model::Column::Version).all(&self.db).await?;
            rows.into_iter().map(model_from_row).collect()
        })
        .await
    }

    /// # Errors
    /// [`StoreError::RiskModelNotFound`] or database failures.
    pub async fn get_risk_model(&self, version: i32) -> StoreResult<RiskModel> {
        self.guard(async {
            let row = risk_model::Entity::find_by_id(version)
                .one(&self.db)
                .await?
                .ok_or(StoreError::RiskModelNotFound(version))?;
            model_from_row(row)
        })
        .await
    }

    /// Stores `model` as the next version, inactive, with an audit event.
    ///
    /// # Errors
    /// Database failures.
    pub async fn create_risk_model(
        &self,
        model: &RiskModel,
        request: Option<&RequestKey>,
        change: &ChangeContext,
    ) -> StoreResult<RiskModel> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let latest = risk_model::Entity::find().order_by_desc(risk_model::Column::Version).one(&txn).await?;
            let mut created = model.clone();
            created.version = latest.map_or(1, |row| row.version + 1);
            created.active = false;
            created.created_at = change.now;
            created.activated_at = None;
            let row = risk_model::ActiveModel {
                version: Set(created.version),
                name: Set(created.name.clone()),
                threshold: Set(i32::from(created.threshold)),
                factors: Set(serde_json::to_string(&created.factors).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                active: Set(false),
                created_at: Set(created.created_at),
                activated_at: Set(None),
            };
            risk_model::Entity::insert(row).exec_without_returning(&txn).await?;
            if let Some(key) = request {
                record_request(&txn, key, &created.version.to_string(), change).await?;
            }
            audit(&txn, created.version, "created", change, None).await?;
            txn.commit().await?;
            Ok(created)
        })
        .await
    }

    /// Makes `version` the only active model, with an audit event; when
    /// `etag` is given, only if the model is still at it.
    ///
    /// # Errors
    /// [`StoreError::RiskModelNotFound`], [`StoreError::RiskModelConflict`] or database failures.
    pub async fn activate_risk_model(
        &self,
        version: i32,
        etag: Option<&str>,
        change: &ChangeContext,
    ) -> StoreResult<RiskModel> {
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            super::serialize(&txn, super::Serialized::RiskModelActivation).await?;
            let row = risk_model::Entity::find_by_id(version)
                .one(&txn)
                .await?
                .ok_or(StoreError::RiskModelNotFound(version))?;
            if let Some(etag) = etag
                && model_from_row(row)?.etag() != etag
            {
                return Err(StoreError::RiskModelConflict { version, expected: etag.to_owned() });
            }
            write_activation(&txn, version, change, None).await?;
            txn.commit().await?;
            self.active_risk_model_changed();
            self.get_risk_model(version).await
        })
        .await
    }

    /// The recent record of each of `apps` (an app with none has the
    /// default), in two statements whatever their number: each a range of a
    /// covering index per app.
    ///
    /// # Errors
    /// Database failures.
    pub async fn app_histories(
        &self,
        apps: &[&str],
        now: DateTime<Utc>,
    ) -> StoreResult<std::collections::HashMap<String, History>> {
        if apps.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        self.guard(async {
            let since = now - chrono::Duration::days(30);
            // The count reads each app's entries from the first deployment
            // created since then, in the order they were stored. One created
            // just after that one but stored before it (as only creates in
            // flight together can be) is not counted. An exact start, the
            // least seq created since then, would read the whole window or,
            // as SQLite plans it, every older row.
            let first_since = sea_orm::sea_query::Query::select()
                .column(deployment::Column::Seq)
                .from(deployment::Entity)
                .and_where(deployment::Column::CreatedAt.gte(since))
                .order_by(deployment::Column::CreatedAt, Order::Asc)
                .order_by(deployment::Column::Seq, Order::Asc)
                .limit(1)
                .to_owned();
            let recent: Vec<(String, i64)> = deployment::Entity::find()
                .select_only()
                .column(deployment::Column::AppName)
                .column_as(deployment::Column::Seq.count(), "recent")
                .filter(deployment::Column::AppName.is_in(apps.iter().copied()))
                .filter(Expr::col(deployment::Column::Seq).gte(Expr::SubQuery(None, Box::new(first_since.into()))))
                .filter(deployment::Column::CreatedAt.gte(since))
                .group_by(deployment::Column::AppName)
                .into_tuple()
                .all(&self.db)
                .await?;
            let (completed, failed) = (DeploymentStatus::Completed.as_label(), DeploymentStatus::Failed.as_label());
            let ended: Vec<(String, String, i64)> = deployment::Entity::find()
                .select_only()
                .column(deployment::Column::AppName)
                .column(deployment::Column::Status)
                .column_as(deployment::Column::Seq.count(), "ended")
                .filter(deployment::Column::AppName.is_in(apps.iter().copied()))
                .filter(deployment::Column::EndedAt.gte(now - chrono::Duration::days(90)))
                .filter(deployment::Column::Status.is_in([completed, failed]))
                .group_by(deployment::Column::AppName)
                .group_by(deployment::Column::Status)
                .into_tuple()
                .all(&self.db)
                .await?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            let mut histories = std::collections::HashMap::<String, History>::with_capacity(apps.len());
            for (app, n) in recent {
                histories.entry(app).or_default().deployments_last_30_days = count(n);
            }
            for (app, status, n) in ended {
                let history = histories.entry(app).or_default();
                if status == completed {
                    history.completed_last_90_days = count(n);
                } else {
                    history.failed_last_90_days = count(n);
                }
            }
            Ok(histories)
        })
        .await
    }
}

/// Makes `version` the only active model in `txn`, and logs it (with the
/// second admin who approved it, when it needed one).
pub(super) async fn write_activation(
    txn: &impl sea_orm::ConnectionTrait,
    version: i32,
    change: &ChangeContext,
    approved_by: Option<&str>,
) -> StoreResult<()> {
    super::serialize(txn, super::Serialized::RiskModelActivation).await?;
    risk_model::Entity::update_many()
        .col_expr(risk_model::Column::Active, false.into())
        .filter(risk_model::Column::Active.eq(true))
        .exec(txn)
        .await?;
    risk_model::Entity::update_many()
        .col_expr(risk_model::Column::Active, true.into())
        .col_expr(risk_model::Column::ActivatedAt, change.now.into())
        .filter(risk_model::Column::Version.eq(version))
        .exec(txn)
        .await?;
    audit(txn, version, "activated", change, approved_by).await
}

async fn audit(
    conn: &impl sea_orm::ConnectionTrait,
    version: i32,
    action: &str,
    change: &ChangeContext,
    approved_by: Option<&str>,
) -> StoreResult<()> {
    let row = risk_model_event::ActiveModel {
        seq: NotSet,
        version: Set(version),
        action: Set(action.to_owned()),
        actor: Set(change.actor.clone()),
        reason: Set(change.reason.clone()),
        correlation_id: Set(change.correlation_id.clone()),
        created_at: Set(change.now),
        approved_by: Set(approved_by.map(str::to_owned)),
    };
    risk_model_event::Entity::insert(row).exec_without_returning(conn).await?;
    Ok(())
}

fn model_from_row(row: risk_model::Model) -> StoreResult<RiskModel> {
    let factors: Vec<Factor> =
        serde_json::from_str(&row.factors).map_err(|e| StoreError::Corrupt(format!("risk model factors: {e}")))?;
    Ok(RiskModel {
        version: row.version,
        name: row.name,
        factors,
        threshold: u8::try_from(row.threshold).unwrap_or(100),
        active: row.active,
        created_at: row.created_at,
        activated_at: row.activated_at,
    })
}
