//! Drops `idx_deployments_app_name_ended_at`: the history count it was made
//! for reads `idx_deployments_app_name_status_ended_at` (a covering index
//! that also narrows by status), and every insert and every end of a
//! deployment paid for keeping it.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261204_000001_drop_superseded_index"
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .if_exists()
                    .name("idx_deployments_app_name_ended_at")
                    .table(Deployments::Table)
                    .to_owned(),
            )
            .await
    }
}
