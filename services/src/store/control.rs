//! Control changes (dual control): proposals that weaken a safety control,
//! stored pending; their decision, recorded only while they are still
//! pending, and an approval applied in the same transaction as the change it
//! approves — conditional on what it changes being as it was proposed
//! (break-glass promotes through the application layer instead).

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entity::{control_change, ring_policy, risk_model};
use super::{Page, Store, StoreError, StoreResult, parse, parse_uuid};
use crate::domain::control::{ControlChange, ControlState, ControlSubject};
use crate::domain::{ChangeContext, Label, Ring};

/// The stored form of a [`ControlSubject`] (ring policies as their rows).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SubjectRow {
    RingPolicy { before: Box<ring_policy::Model>, after: Box<ring_policy::Model> },
    RiskModelActivation { active_version: Option<i32>, version: i32 },
    BreakGlass { deployment_id: String, from_ring: String },
}

impl SubjectRow {
    fn kind(&self) -> &'static str {
        match self {
            SubjectRow::RingPolicy { .. } => "ring_policy",
            SubjectRow::RiskModelActivation { .. } => "risk_model_activation",
            SubjectRow::BreakGlass { .. } => "break_glass",
        }
    }
}

fn subject_row(subject: &ControlSubject) -> SubjectRow {
    use sea_orm::TryIntoModel;
    let row = |policy| super::promotions::policy_row(policy).try_into_model().expect("every column set");
    match subject {
        ControlSubject::RingPolicy { before, after } => {
            SubjectRow::RingPolicy { before: Box::new(row(before)), after: Box::new(row(after)) }
        }
        ControlSubject::RiskModelActivation { active_version, version } => {
            SubjectRow::RiskModelActivation { active_version: *active_version, version: *version }
        }
        ControlSubject::BreakGlass { deployment_id, from_ring } => SubjectRow::BreakGlass {
            deployment_id: deployment_id.to_string(),
            from_ring: from_ring.as_label().to_owned(),
        },
    }
}

fn change_from_row(row: control_change::Model) -> StoreResult<ControlChange> {
    let corrupt = |err: serde_json::Error| StoreError::Corrupt(format!("control change {}: {err}", row.id));
    let subject = match serde_json::from_str(&row.subject).map_err(corrupt)? {
        SubjectRow::RingPolicy { before, after } => ControlSubject::RingPolicy {
            before: Box::new(super::promotions::policy_from_row(*before)?),
            after: Box::new(super::promotions::policy_from_row(*after)?),
        },
        SubjectRow::RiskModelActivation { active_version, version } => {
            ControlSubject::RiskModelActivation { active_version, version }
        }
        SubjectRow::BreakGlass { deployment_id, from_ring } => ControlSubject::BreakGlass {
            deployment_id: parse_uuid(&deployment_id)?,
            from_ring: parse(&from_ring, "ring", Ring::from_label)?,
        },
    };
    Ok(ControlChange {
        id: parse_uuid(&row.id)?,
        subject,
        weakenings: serde_json::from_str(&row.weakenings).map_err(corrupt)?,
        state: parse(&row.state, "control change state", ControlState::from_label)?,
        proposed_by: row.proposed_by,
        reason: row.reason,
        correlation_id: row.correlation_id,
        created_at: row.created_at,
        expires_at: row.expires_at,
        decided_by: row.decided_by,
        decision_reason: row.decision_reason,
        decided_at: row.decided_at,
    })
}

impl Store {
    /// Stores a new pending change.
    ///
    /// # Errors
    /// Database failures.
    pub async fn propose_control_change(&self, change: &ControlChange) -> StoreResult<()> {
        let subject = subject_row(&change.subject);
        let row = control_change::ActiveModel {
            seq: NotSet,
            id: Set(change.id.to_string()),
            kind: Set(subject.kind().to_owned()),
            subject: Set(serde_json::to_string(&subject).expect("a subject serializes")),
            weakenings: Set(serde_json::to_string(&change.weakenings).expect("strings serialize")),
            state: Set(change.state.as_label().to_owned()),
            proposed_by: Set(change.proposed_by.clone()),
            reason: Set(change.reason.clone()),
            correlation_id: Set(change.correlation_id.clone()),
            created_at: Set(change.created_at),
            expires_at: Set(change.expires_at),
            decided_by: Set(None),
            decision_reason: Set(String::new()),
            decided_at: Set(None),
        };
        self.guard(async {
            let _guard = self.lock_writes().await?;
            control_change::Entity::insert(row).exec_without_returning(&self.db).await?;
            Ok(())
        })
        .await
    }

    /// # Errors
    /// [`StoreError::ControlChangeNotFound`]; database failures.
    pub async fn get_control_change(&self, id: Uuid) -> StoreResult<ControlChange> {
        self.guard(async {
            let row = control_change::Entity::find()
                .filter(control_change::Column::Id.eq(id.to_string()))
                .one(&self.db)
                .await?
                .ok_or(StoreError::ControlChangeNotFound(id))?;
            change_from_row(row)
        })
        .await
    }

    /// Control changes in proposal order after sequence `after`, only those
    /// in `state` as of `now` when given.
    ///
    /// # Errors
    /// Database failures, or a row the code cannot read.
    pub async fn list_control_changes(
        &self,
        state: Option<ControlState>,
        now: DateTime<Utc>,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Page<ControlChange>> {
        use control_change::Column;
        self.guard(async {
            let pending = ControlState::Pending.as_label();
            let query = match state {
                None => control_change::Entity::find(),
                Some(ControlState::Pending) => {
                    control_change::Entity::find().filter(Column::State.eq(pending)).filter(Column::ExpiresAt.gt(now))
                }
                Some(ControlState::Expired) => {
                    control_change::Entity::find().filter(Column::State.eq(pending)).filter(Column::ExpiresAt.lte(now))
                }
                Some(state) => control_change::Entity::find().filter(Column::State.eq(state.as_label())),
            };
            let rows = self.rows_after(query, Column::Seq, after, limit).await?;
            Page::from_rows(rows, limit, |row| row.seq, change_from_row)
        })
        .await
    }

    /// Records the decision on `decided` (as decided: approved or rejected)
    /// if the change is still pending, and applies an approved one in the
    /// same transaction, recording `applied` with its approver.
    ///
    /// # Errors
    /// [`StoreError::ControlChangeDecided`] when another decision came first;
    /// [`StoreError::ControlChangeSuperseded`] when what the change changes is
    /// no longer as proposed (nothing is written); database failures.
    pub async fn decide_control_change(&self, decided: &ControlChange, applied: &ChangeContext) -> StoreResult<()> {
        use control_change::Column;
        self.guard(async {
            let _guard = self.lock_writes().await?;
            let txn = self.db.begin().await?;
            let recorded = control_change::Entity::update_many()
                .col_expr(Column::State, decided.state.as_label().into())
                .col_expr(Column::DecidedBy, decided.decided_by.clone().into())
                .col_expr(Column::DecisionReason, decided.decision_reason.clone().into())
                .col_expr(Column::DecidedAt, decided.decided_at.into())
                .filter(Column::Id.eq(decided.id.to_string()))
                .filter(Column::State.eq(ControlState::Pending.as_label()))
                .exec(&txn)
                .await?;
            if recorded.rows_affected == 0 {
                return Err(StoreError::ControlChangeDecided(decided.id));
            }
            if decided.state == ControlState::Approved {
                let approver = decided.decided_by.as_deref();
                match &decided.subject {
                    ControlSubject::RingPolicy { before, after } => {
                        super::promotions::write_policy(&txn, before, after, applied, approver).await.map_err(
                            |err| match err {
                                StoreError::PolicyConflict { .. } => StoreError::ControlChangeSuperseded(decided.id),
                                err => err,
                            },
                        )?;
                    }
                    ControlSubject::RiskModelActivation { active_version, version } => {
                        super::serialize(&txn, super::Serialized::RiskModelActivation).await?;
                        let active = risk_model::Entity::find()
                            .filter(risk_model::Column::Active.eq(true))
                            .one(&txn)
                            .await?
                            .map(|row| row.version);
                        if active != *active_version {
                            return Err(StoreError::ControlChangeSuperseded(decided.id));
                        }
                        super::risk::write_activation(&txn, *version, applied, approver).await?;
                    }
                    // Promoted by the application layer before the approval is recorded.
                    ControlSubject::BreakGlass { .. } => {}
                }
            }
            txn.commit().await?;
            self.forget_shown_policies();
            self.active_risk_model_changed();
            Ok(())
        })
        .await
    }

    /// Marks a pending change superseded.
    ///
    /// # Errors
    /// Database failures.
    pub async fn supersede_control_change(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        use control_change::Column;
        self.guard(async {
            let _guard = self.lock_writes().await?;
            control_change::Entity::update_many()
                .col_expr(Column::State, ControlState::Superseded.as_label().into())
                .col_expr(Column::DecidedAt, Some(now).into())
                .filter(Column::Id.eq(id.to_string()))
                .filter(Column::State.eq(ControlState::Pending.as_label()))
                .exec(&self.db)
                .await?;
            Ok(())
        })
        .await
    }
}
