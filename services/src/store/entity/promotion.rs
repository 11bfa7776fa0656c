//! `promotions`: append-only record of promotion attempts and rollbacks.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "promotions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: String,
    pub deployment_id: String,
    pub from_ring: String,
    pub to_ring: Option<String>,
    pub result: String,
    /// The gate evaluation as JSON, when there was one.
    pub gate: Option<String>,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    /// Unique when set: a retried call finds its first result.
    #[sea_orm(unique)]
    pub request_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
