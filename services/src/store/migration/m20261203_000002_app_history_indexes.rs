//! Indexes for an app's recent history, read by every create (the risk
//! model's frequency and track-record factors): both counts become range
//! scans of one index, not a visit to every row the app ever had.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261203_000002_app_history_indexes"
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    AppName,
    CreatedAt,
    Status,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_deployments_app_name_created_at")
                    .table(Deployments::Table)
                    .col(Deployments::AppName)
                    .col(Deployments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_deployments_app_name_status_ended_at")
                    .table(Deployments::Table)
                    .col(Deployments::AppName)
                    .col(Deployments::Status)
                    .col(Deployments::EndedAt)
                    .to_owned(),
            )
            .await
    }
}
