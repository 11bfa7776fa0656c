//! `dispatches`: work handed to a connector, one row per deployment, ring and
//! operation, so that nothing is dispatched twice.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dispatches")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub ring: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub operation: String,
    pub connector_name: String,
    pub object_id: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
