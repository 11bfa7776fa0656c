//! `control_changes`: changes that weaken a safety control, pending a second
//! admin or decided.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "control_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: String,
    /// `ring_policy` or `risk_model_activation`.
    pub kind: String,
    /// What it changes, as JSON (a ring policy before and after, or risk model versions).
    pub subject: String,
    /// JSON list of what weakens.
    pub weakenings: String,
    pub state: String,
    pub proposed_by: String,
    pub reason: String,
    pub correlation_id: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub decided_by: Option<String>,
    pub decision_reason: String,
    pub decided_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
