//! `connector_changes`: append-only audit of connector creations, updates,
//! deletions and breaker resets.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "connector_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub connector_name: String,
    /// `created`, `updated`, `deleted` or `breaker_reset`.
    pub kind: String,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    /// The connector before and after, as JSON without secrets.
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
