//! `ring_policy_changes`: append-only audit of ring policy updates.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ring_policy_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub ring: String,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    /// The policy before and after, as JSON.
    pub before: String,
    pub after: String,
    pub created_at: DateTimeUtc,
    /// The second admin who approved a change that weakened a control.
    pub approved_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
