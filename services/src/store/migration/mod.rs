//! Schema migrations, run on `serve` and `migrate`; applied ones are recorded
//! in `seaql_migrations`, so running them again changes nothing. One file per
//! migration; a migration is never edited once released (the product has not
//! been: its history starts with one initial schema).

mod m20261202_000001_initial;

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261202_000001_initial::Migration)]
    }
}
