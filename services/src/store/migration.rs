//! Schema migrations, run on `serve` and `migrate`; applied ones are recorded
//! in `seaql_migrations`, so running them again changes nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateDeploymentTables)]
    }
}

/// Deployments, per-ring progress and the event log.
struct CreateDeploymentTables;

impl MigrationName for CreateDeploymentTables {
    // Recorded in `seaql_migrations`: never rename an applied migration.
    fn name(&self) -> &str {
        "m20261125_000001_create_deployment_tables"
    }
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Seq,
    Id,
    RequestId,
    RequestFingerprint,
    AppName,
    Version,
    ConnectorType,
    ConnectorName,
    CurrentRing,
    TargetRing,
    RiskScore,
    RequiresCabApproval,
    EvidencePackId,
    Submitter,
    CorrelationId,
    Status,
    SiteClass,
    CabApprover,
    StatusReason,
    CreatedAt,
    UpdatedAt,
    DeployStartedAt,
    EndedAt,
    Revision,
}

#[derive(DeriveIden)]
enum RingProgress {
    Table,
    DeploymentId,
    Ring,
    ConnectorObjectId,
    SuccessCount,
    FailureCount,
    StartedAt,
    PromotedAt,
    CompliantAt,
}

#[derive(DeriveIden)]
enum DeploymentEvents {
    Table,
    Seq,
    DeploymentId,
    Kind,
    FromStatus,
    ToStatus,
    Ring,
    Actor,
    Reason,
    CorrelationId,
    AppName,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeploymentTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Deployments::Seq))
                    .col(string_uniq(Deployments::Id))
                    .col(string_uniq(Deployments::RequestId))
                    .col(string(Deployments::RequestFingerprint))
                    .col(string(Deployments::AppName))
                    .col(string(Deployments::Version))
                    .col(string(Deployments::ConnectorType))
                    .col(string_null(Deployments::ConnectorName))
                    .col(string(Deployments::CurrentRing))
                    .col(string(Deployments::TargetRing))
                    .col(integer(Deployments::RiskScore))
                    .col(boolean(Deployments::RequiresCabApproval))
                    .col(string(Deployments::EvidencePackId))
                    .col(string(Deployments::Submitter))
                    .col(string(Deployments::CorrelationId))
                    .col(string(Deployments::Status))
                    .col(string(Deployments::SiteClass))
                    .col(string_null(Deployments::CabApprover))
                    .col(text(Deployments::StatusReason))
                    .col(timestamp_with_time_zone(Deployments::CreatedAt))
                    .col(timestamp_with_time_zone(Deployments::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Deployments::DeployStartedAt))
                    .col(timestamp_with_time_zone_null(Deployments::EndedAt))
                    .col(big_integer(Deployments::Revision))
                    .to_owned(),
            )
            .await?;
        // One index per list filter, each ending in `seq` so a filtered,
        // newest-first page is an index range scan.
        for (name, column) in [
            ("idx_deployments_status_seq", Deployments::Status),
            ("idx_deployments_current_ring_seq", Deployments::CurrentRing),
            ("idx_deployments_app_name_seq", Deployments::AppName),
            ("idx_deployments_connector_type_seq", Deployments::ConnectorType),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .if_not_exists()
                        .table(Deployments::Table)
                        .col(column)
                        .col(Deployments::Seq)
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RingProgress::Table)
                    .if_not_exists()
                    .col(string(RingProgress::DeploymentId))
                    .col(string(RingProgress::Ring))
                    .col(string_null(RingProgress::ConnectorObjectId))
                    .col(big_integer(RingProgress::SuccessCount))
                    .col(big_integer(RingProgress::FailureCount))
                    .col(timestamp_with_time_zone(RingProgress::StartedAt))
                    .col(timestamp_with_time_zone_null(RingProgress::PromotedAt))
                    .col(timestamp_with_time_zone_null(RingProgress::CompliantAt))
                    .primary_key(Index::create().col(RingProgress::DeploymentId).col(RingProgress::Ring))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_ring_progress_deployment")
                            .from(RingProgress::Table, RingProgress::DeploymentId)
                            .to(Deployments::Table, Deployments::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(DeploymentEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(DeploymentEvents::Seq))
                    .col(string(DeploymentEvents::DeploymentId))
                    .col(string(DeploymentEvents::Kind))
                    .col(string_null(DeploymentEvents::FromStatus))
                    .col(string(DeploymentEvents::ToStatus))
                    .col(string(DeploymentEvents::Ring))
                    .col(string(DeploymentEvents::Actor))
                    .col(text(DeploymentEvents::Reason))
                    .col(string(DeploymentEvents::CorrelationId))
                    .col(string(DeploymentEvents::AppName))
                    .col(timestamp_with_time_zone(DeploymentEvents::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deployment_events_deployment")
                            .from(DeploymentEvents::Table, DeploymentEvents::DeploymentId)
                            .to(Deployments::Table, Deployments::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deployment_events_deployment_seq")
                    .if_not_exists()
                    .table(DeploymentEvents::Table)
                    .col(DeploymentEvents::DeploymentId)
                    .col(DeploymentEvents::Seq)
                    .to_owned(),
            )
            .await
    }
}
