//! `risk_model_events`: append-only audit of risk model creations and activations.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "risk_model_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub version: i32,
    /// `created` or `activated`.
    pub action: String,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub created_at: DateTimeUtc,
    /// The second admin who approved an activation that weakened a control.
    pub approved_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
