//! `calendar_changes`: append-only audit of window creations, updates and
//! deletions and of the freeze being set, lifted or expiring.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "calendar_changes")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// `window_created`, `window_updated`, `window_deleted`, `freeze_set`,
    /// `freeze_lifted` or `freeze_expired`.
    pub kind: String,
    /// The window's name, or `freeze`.
    pub subject: String,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    /// The window or freeze before and after, as JSON rows.
    pub before: Option<String>,
    pub after: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
