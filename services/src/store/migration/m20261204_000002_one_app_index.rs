//! One index per app where there were three. Apps are many, so each create
//! wrote an entry into a different page of each index beginning with the
//! app name: measured with Python's `sqlite3` on a copy of a benchmark
//! database, a batch of 31 creates took 106–112 µs a create with three such
//! indexes, 53 with none, 78 with this migration's.
//!
//! - `(app_name, seq, created_at)` replaces `(app_name, seq)` for pages of
//!   one app and `(app_name, created_at)` for the count of an app's recent
//!   deployments: the count reads this index from the `seq` of the first
//!   deployment created in its window, found in `(created_at)` (an index
//!   that grows at one end, cheap to keep), filtering by `created_at` in the
//!   entries themselves.
//! - `(app_name, status, ended_at)` is kept for ended deployments only (a
//!   partial index): it is there to count completions and failures, and a
//!   deployment enters it when it ends, not at create and at every change of
//!   status before.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261204_000002_one_app_index"
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    AppName,
    Seq,
    CreatedAt,
    Status,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = |name: &str| Index::create().if_not_exists().name(name).table(Deployments::Table).to_owned();
        manager
            .create_index(
                create("idx_deployments_app_name_seq_created_at")
                    .col(Deployments::AppName)
                    .col(Deployments::Seq)
                    .col(Deployments::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager.create_index(create("idx_deployments_created_at").col(Deployments::CreatedAt).to_owned()).await?;
        manager
            .create_index(
                create("idx_deployments_app_name_ended")
                    .col(Deployments::AppName)
                    .col(Deployments::Status)
                    .col(Deployments::EndedAt)
                    .and_where(Expr::col(Deployments::EndedAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        for superseded in [
            "idx_deployments_app_name_seq",
            "idx_deployments_app_name_created_at",
            "idx_deployments_app_name_status_ended_at",
        ] {
            manager.drop_index(Index::drop().if_exists().name(superseded).table(Deployments::Table).to_owned()).await?;
        }
        Ok(())
    }
}
