//! Dual control: `control_changes` holds changes that weaken a safety
//! control, pending or decided; the change logs of ring policies and risk
//! models name who approved a change that needed it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261202_000002_control_changes"
    }
}

#[derive(DeriveIden)]
enum ControlChanges {
    Table,
    Seq,
    Id,
    Kind,
    Subject,
    Weakenings,
    State,
    ProposedBy,
    Reason,
    CorrelationId,
    CreatedAt,
    ExpiresAt,
    DecidedBy,
    DecisionReason,
    DecidedAt,
}

#[derive(DeriveIden)]
enum RingPolicyChanges {
    Table,
    ApprovedBy,
}

#[derive(DeriveIden)]
enum RiskModelEvents {
    Table,
    ApprovedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ControlChanges::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ControlChanges::Seq))
                    .col(string_uniq(ControlChanges::Id))
                    .col(string(ControlChanges::Kind))
                    .col(text(ControlChanges::Subject))
                    .col(text(ControlChanges::Weakenings))
                    .col(string(ControlChanges::State))
                    .col(string(ControlChanges::ProposedBy))
                    .col(text(ControlChanges::Reason))
                    .col(string(ControlChanges::CorrelationId))
                    .col(timestamp_with_time_zone(ControlChanges::CreatedAt))
                    .col(timestamp_with_time_zone(ControlChanges::ExpiresAt))
                    .col(string_null(ControlChanges::DecidedBy))
                    .col(text(ControlChanges::DecisionReason))
                    .col(timestamp_with_time_zone_null(ControlChanges::DecidedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_control_changes_state")
                    .table(ControlChanges::Table)
                    .col(ControlChanges::State)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        manager
            .alter_table(
                Table::alter()
                    .table(RingPolicyChanges::Table)
                    .add_column(string_null(RingPolicyChanges::ApprovedBy))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RiskModelEvents::Table)
                    .add_column(string_null(RiskModelEvents::ApprovedBy))
                    .to_owned(),
            )
            .await
    }
}
