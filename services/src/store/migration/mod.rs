//! Schema migrations, run on `serve` and `migrate`; applied ones are recorded
//! in `seaql_migrations`, so running them again changes nothing. One file per
//! migration; a migration is never edited once released.

mod m20261202_000001_initial;
mod m20261202_000002_control_changes;
mod m20261202_000003_leases;
mod m20261203_000001_dispatch_claims;
mod m20261203_000002_app_history_indexes;
mod m20261203_000003_change_calendar;
mod m20261204_000001_drop_superseded_index;
mod m20261204_000002_one_app_index;

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261202_000001_initial::Migration),
            Box::new(m20261202_000002_control_changes::Migration),
            Box::new(m20261202_000003_leases::Migration),
            Box::new(m20261203_000001_dispatch_claims::Migration),
            Box::new(m20261203_000002_app_history_indexes::Migration),
            Box::new(m20261203_000003_change_calendar::Migration),
            Box::new(m20261204_000001_drop_superseded_index::Migration),
            Box::new(m20261204_000002_one_app_index::Migration),
        ]
    }
}
