//! The change calendar: `change_windows` (named allow and deny windows),
//! `change_freeze` (at most one row: the global freeze while it is set) and
//! `calendar_changes`, the append-only audit of both.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261203_000003_change_calendar"
    }
}

#[derive(DeriveIden)]
enum ChangeWindows {
    Table,
    Name,
    Kind,
    Rule,
    FirstStart,
    TimeZone,
    DurationSeconds,
    Rings,
    SiteClasses,
    ConnectorTypes,
    ForbidsRollback,
    Description,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ChangeFreeze {
    Table,
    Id,
    Reason,
    SetBy,
    SetAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum CalendarChanges {
    Table,
    Seq,
    Kind,
    Subject,
    Actor,
    Reason,
    CorrelationId,
    Before,
    After,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ChangeWindows::Table)
                    .if_not_exists()
                    .col(string(ChangeWindows::Name).primary_key())
                    .col(string(ChangeWindows::Kind))
                    .col(text(ChangeWindows::Rule))
                    .col(string(ChangeWindows::FirstStart))
                    .col(string(ChangeWindows::TimeZone))
                    .col(big_integer(ChangeWindows::DurationSeconds))
                    .col(text(ChangeWindows::Rings))
                    .col(text(ChangeWindows::SiteClasses))
                    .col(text(ChangeWindows::ConnectorTypes))
                    .col(boolean(ChangeWindows::ForbidsRollback))
                    .col(text(ChangeWindows::Description))
                    .col(big_integer(ChangeWindows::Revision))
                    .col(timestamp_with_time_zone(ChangeWindows::CreatedAt))
                    .col(timestamp_with_time_zone(ChangeWindows::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ChangeFreeze::Table)
                    .if_not_exists()
                    .col(integer(ChangeFreeze::Id).primary_key())
                    .col(text(ChangeFreeze::Reason))
                    .col(string(ChangeFreeze::SetBy))
                    .col(timestamp_with_time_zone(ChangeFreeze::SetAt))
                    .col(timestamp_with_time_zone(ChangeFreeze::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CalendarChanges::Table)
                    .if_not_exists()
                    .col(big_pk_auto(CalendarChanges::Seq))
                    .col(string(CalendarChanges::Kind))
                    .col(string(CalendarChanges::Subject))
                    .col(string(CalendarChanges::Actor))
                    .col(text(CalendarChanges::Reason))
                    .col(string(CalendarChanges::CorrelationId))
                    .col(text_null(CalendarChanges::Before))
                    .col(text_null(CalendarChanges::After))
                    .col(timestamp_with_time_zone(CalendarChanges::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}
