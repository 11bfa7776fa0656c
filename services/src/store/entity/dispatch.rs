//! `dispatches`: the outbox of work handed to connectors, one row per
//! deployment, ring and operation, written with the decision that hands it
//! over; `state` says whether it is still to be delivered, and a claim which
//! replica is delivering it.

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
    /// `pending`, `delivered` or `refused`.
    pub state: String,
    /// The replica delivering it (PostgreSQL), until `claimed_until`.
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
