//! Claims on queued dispatches: which replica is delivering a piece of work
//! and until when, so that two replicas never hand it to the connector at
//! once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261203_000001_dispatch_claims"
    }
}

#[derive(DeriveIden)]
enum Dispatches {
    Table,
    ClaimedBy,
    ClaimedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds columns one at a time.
        manager
            .alter_table(
                Table::alter().table(Dispatches::Table).add_column(string_null(Dispatches::ClaimedBy)).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Dispatches::Table)
                    .add_column(timestamp_with_time_zone_null(Dispatches::ClaimedUntil))
                    .to_owned(),
            )
            .await
    }
}
