//! `requests`: what each request id of a create or side-effecting call was
//! first used for (calls whose records have no request id column of their own).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "requests")]
pub struct Model {
    /// The call, e.g. `create_connector`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub operation: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// Hash of the request's content: equal for a retry, different for a reuse.
    pub fingerprint: String,
    /// The key of what the first call created or changed.
    pub target: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
