//! `change_windows`: named allow and deny windows of the change calendar.
//! A row is also the JSON form of a window in the calendar's change log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "change_windows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// `allow` or `deny`.
    pub kind: String,
    /// RFC 5545 RRULE, e.g. `FREQ=WEEKLY;BYDAY=MO`.
    pub rule: String,
    /// The first local start, ISO 8601 without offset (`2026-12-07T22:00:00`).
    pub first_start: String,
    /// IANA zone name.
    pub time_zone: String,
    pub duration_seconds: i64,
    /// JSON arrays of labels; empty: everywhere.
    pub rings: String,
    pub site_classes: String,
    pub connector_types: String,
    pub forbids_rollback: bool,
    pub description: String,
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
