//! `deployment_events`: the append-only audit trail. Rows are inserted, never
//! updated or deleted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_events")]
pub struct Model {
    /// Position in the log; strictly increasing.
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub deployment_id: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub ring: String,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub app_name: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
