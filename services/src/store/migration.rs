//! Schema migrations, run on `serve` and `migrate`; applied ones are recorded
//! in `seaql_migrations`, so running them again changes nothing.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateDeploymentTables),
            Box::new(CreatePromotionTables),
            Box::new(CreateConnectorTables),
            Box::new(AddControllerColumns),
            Box::new(CreateRiskTables),
            Box::new(CreateHealthProbe),
            Box::new(AddDeliveryState),
            Box::new(CreateAuditAndRequestTables),
        ]
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

/// Ring policies (seeded with DESIGN's defaults), their change log,
/// promotions, and rollback validation on ring progress.
struct CreatePromotionTables;

impl MigrationName for CreatePromotionTables {
    fn name(&self) -> &str {
        "m20261125_000002_create_promotion_tables"
    }
}

#[derive(DeriveIden)]
enum RingPolicies {
    Table,
    Ring,
    MinSuccessRate,
    MinSampleSize,
    OnlineComplianceLimitSeconds,
    IntermittentComplianceLimitSeconds,
    AirGappedComplianceLimitSeconds,
    RequireCabApproval,
    RequireEvidencePack,
    RequireRollbackValidated,
    Revision,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RingPolicyChanges {
    Table,
    Seq,
    Ring,
    Actor,
    Reason,
    CorrelationId,
    Before,
    After,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Promotions {
    Table,
    Seq,
    Id,
    DeploymentId,
    FromRing,
    ToRing,
    Result,
    Gate,
    Actor,
    Reason,
    CorrelationId,
    RequestId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RingProgressRollback {
    #[sea_orm(iden = "ring_progress")]
    Table,
    RollbackValidatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePromotionTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RingProgressRollback::Table)
                    .add_column(timestamp_with_time_zone_null(RingProgressRollback::RollbackValidatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RingPolicies::Table)
                    .if_not_exists()
                    .col(string(RingPolicies::Ring).primary_key())
                    .col(double(RingPolicies::MinSuccessRate))
                    .col(big_integer(RingPolicies::MinSampleSize))
                    .col(big_integer(RingPolicies::OnlineComplianceLimitSeconds))
                    .col(big_integer(RingPolicies::IntermittentComplianceLimitSeconds))
                    .col(big_integer(RingPolicies::AirGappedComplianceLimitSeconds))
                    .col(boolean(RingPolicies::RequireCabApproval))
                    .col(boolean(RingPolicies::RequireEvidencePack))
                    .col(boolean(RingPolicies::RequireRollbackValidated))
                    .col(big_integer(RingPolicies::Revision))
                    .col(timestamp_with_time_zone(RingPolicies::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        let now = chrono::Utc::now();
        for &ring in crate::domain::Ring::ALL {
            let policy = crate::domain::RingPolicy::default_for(ring, now);
            let seconds = |d: std::time::Duration| <i64 as TryFrom<u64>>::try_from(d.as_secs()).unwrap_or(i64::MAX);
            manager
                .exec_stmt(
                    Query::insert()
                        .into_table(RingPolicies::Table)
                        .columns([
                            RingPolicies::Ring,
                            RingPolicies::MinSuccessRate,
                            RingPolicies::MinSampleSize,
                            RingPolicies::OnlineComplianceLimitSeconds,
                            RingPolicies::IntermittentComplianceLimitSeconds,
                            RingPolicies::AirGappedComplianceLimitSeconds,
                            RingPolicies::RequireCabApproval,
                            RingPolicies::RequireEvidencePack,
                            RingPolicies::RequireRollbackValidated,
                            RingPolicies::Revision,
                            RingPolicies::UpdatedAt,
                        ])
                        .values_panic([
                            ring.as_label().into(),
                            policy.min_success_rate.into(),
                            <i64 as TryFrom<u64>>::try_from(policy.min_sample_size).unwrap_or(i64::MAX).into(),
                            seconds(policy.online_compliance_limit).into(),
                            seconds(policy.intermittent_compliance_limit).into(),
                            seconds(policy.air_gapped_compliance_limit).into(),
                            policy.require_cab_approval.into(),
                            policy.require_evidence_pack.into(),
                            policy.require_rollback_validated.into(),
                            0i64.into(),
                            now.into(),
                        ])
                        .to_owned(),
                )
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RingPolicyChanges::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RingPolicyChanges::Seq))
                    .col(string(RingPolicyChanges::Ring))
                    .col(string(RingPolicyChanges::Actor))
                    .col(text(RingPolicyChanges::Reason))
                    .col(string(RingPolicyChanges::CorrelationId))
                    .col(text(RingPolicyChanges::Before))
                    .col(text(RingPolicyChanges::After))
                    .col(timestamp_with_time_zone(RingPolicyChanges::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Promotions::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Promotions::Seq))
                    .col(string_uniq(Promotions::Id))
                    .col(string(Promotions::DeploymentId))
                    .col(string(Promotions::FromRing))
                    .col(string_null(Promotions::ToRing))
                    .col(string(Promotions::Result))
                    .col(text_null(Promotions::Gate))
                    .col(string(Promotions::Actor))
                    .col(text(Promotions::Reason))
                    .col(string(Promotions::CorrelationId))
                    .col(string_null(Promotions::RequestId).unique_key())
                    .col(timestamp_with_time_zone(Promotions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_promotions_deployment_seq")
                    .if_not_exists()
                    .table(Promotions::Table)
                    .col(Promotions::DeploymentId)
                    .col(Promotions::Seq)
                    .to_owned(),
            )
            .await
    }
}

/// Connectors and the dispatch log.
struct CreateConnectorTables;

impl MigrationName for CreateConnectorTables {
    fn name(&self) -> &str {
        "m20261125_000003_create_connector_tables"
    }
}

#[derive(DeriveIden)]
enum Connectors {
    Table,
    Name,
    ConnectorType,
    Driver,
    Endpoint,
    AuthToken,
    Enabled,
    CallTimeoutMs,
    BreakerFailMax,
    BreakerResetTimeoutMs,
    SimulatorLatencyMs,
    SimulatorFailureRate,
    SimulatorDeviceCount,
    Healthy,
    HealthError,
    HealthCheckedAt,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Dispatches {
    Table,
    DeploymentId,
    Ring,
    Operation,
    ConnectorName,
    ObjectId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateConnectorTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connectors::Table)
                    .if_not_exists()
                    .col(string(Connectors::Name).primary_key())
                    .col(string(Connectors::ConnectorType))
                    .col(string(Connectors::Driver))
                    .col(string_null(Connectors::Endpoint))
                    .col(string_null(Connectors::AuthToken))
                    .col(boolean(Connectors::Enabled))
                    .col(big_integer(Connectors::CallTimeoutMs))
                    .col(integer(Connectors::BreakerFailMax))
                    .col(big_integer(Connectors::BreakerResetTimeoutMs))
                    .col(big_integer(Connectors::SimulatorLatencyMs))
                    .col(double(Connectors::SimulatorFailureRate))
                    .col(big_integer(Connectors::SimulatorDeviceCount))
                    .col(boolean_null(Connectors::Healthy))
                    .col(text_null(Connectors::HealthError))
                    .col(timestamp_with_time_zone_null(Connectors::HealthCheckedAt))
                    .col(big_integer(Connectors::Revision))
                    .col(timestamp_with_time_zone(Connectors::CreatedAt))
                    .col(timestamp_with_time_zone(Connectors::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Dispatches::Table)
                    .if_not_exists()
                    .col(string(Dispatches::DeploymentId))
                    .col(string(Dispatches::Ring))
                    .col(string(Dispatches::Operation))
                    .col(string(Dispatches::ConnectorName))
                    .col(string_null(Dispatches::ObjectId))
                    .col(timestamp_with_time_zone(Dispatches::CreatedAt))
                    .primary_key(
                        Index::create().col(Dispatches::DeploymentId).col(Dispatches::Ring).col(Dispatches::Operation),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// Rollout controller: bake time, auto-promotion, rollback and stall rules
/// on ring policies; pause and stall flags on deployments; last report time
/// on ring progress.
struct AddControllerColumns;

impl MigrationName for AddControllerColumns {
    fn name(&self) -> &str {
        "m20261125_000004_add_controller_columns"
    }
}

#[derive(DeriveIden)]
enum ControllerColumns {
    #[sea_orm(iden = "ring_policies")]
    RingPolicies,
    BakeTimeSeconds,
    AutoPromote,
    RollbackFailureRate,
    RollbackMinSample,
    StallTimeoutSeconds,
    #[sea_orm(iden = "deployments")]
    Deployments,
    Paused,
    StalledSince,
    #[sea_orm(iden = "ring_progress")]
    RingProgress,
    LastReportedAt,
    Ring,
}

#[async_trait::async_trait]
impl MigrationTrait for AddControllerColumns {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ControllerColumns as C;
        // One column per statement: SQLite alters one at a time.
        let columns = [
            (C::RingPolicies, big_integer(C::BakeTimeSeconds).default(0).to_owned()),
            (C::RingPolicies, boolean(C::AutoPromote).default(true).to_owned()),
            (C::RingPolicies, double(C::RollbackFailureRate).default(0.05).to_owned()),
            (C::RingPolicies, big_integer(C::RollbackMinSample).default(50).to_owned()),
            (C::RingPolicies, big_integer(C::StallTimeoutSeconds).default(86_400).to_owned()),
            (C::Deployments, boolean(C::Paused).default(false).to_owned()),
            (C::Deployments, timestamp_with_time_zone_null(C::StalledSince)),
            (C::RingProgress, timestamp_with_time_zone_null(C::LastReportedAt)),
        ];
        for (table, mut column) in columns {
            manager.alter_table(Table::alter().table(table).add_column(&mut column).to_owned()).await?;
        }
        let now = chrono::Utc::now();
        for &ring in crate::domain::Ring::ALL {
            let policy = crate::domain::RingPolicy::default_for(ring, now);
            manager
                .exec_stmt(
                    Query::update()
                        .table(C::RingPolicies)
                        .value(
                            C::BakeTimeSeconds,
                            <i64 as TryFrom<u64>>::try_from(policy.bake_time.as_secs()).unwrap_or(i64::MAX),
                        )
                        .and_where(Expr::col(C::Ring).eq(ring.as_label()))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Risk models (with the default model, active), their audit log, and the
/// evidence and risk assessment of each deployment.
struct CreateRiskTables;

impl MigrationName for CreateRiskTables {
    fn name(&self) -> &str {
        "m20261125_000005_create_risk_tables"
    }
}

#[derive(DeriveIden)]
enum RiskModels {
    Table,
    Version,
    Name,
    Threshold,
    Factors,
    Active,
    CreatedAt,
    ActivatedAt,
}

#[derive(DeriveIden)]
enum RiskModelEvents {
    Table,
    Seq,
    Version,
    Action,
    Actor,
    Reason,
    CorrelationId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DeploymentRisk {
    #[sea_orm(iden = "deployments")]
    Table,
    Evidence,
    RiskModelVersion,
    RiskAssessment,
    AppName,
    CreatedAt,
    EndedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRiskTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RiskModels::Table)
                    .if_not_exists()
                    .col(integer(RiskModels::Version).primary_key())
                    .col(string(RiskModels::Name))
                    .col(integer(RiskModels::Threshold))
                    .col(text(RiskModels::Factors))
                    .col(boolean(RiskModels::Active))
                    .col(timestamp_with_time_zone(RiskModels::CreatedAt))
                    .col(timestamp_with_time_zone_null(RiskModels::ActivatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RiskModelEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(RiskModelEvents::Seq))
                    .col(integer(RiskModelEvents::Version))
                    .col(string(RiskModelEvents::Action))
                    .col(string(RiskModelEvents::Actor))
                    .col(text(RiskModelEvents::Reason))
                    .col(string(RiskModelEvents::CorrelationId))
                    .col(timestamp_with_time_zone(RiskModelEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        let model = crate::domain::risk::RiskModel::default_model(chrono::Utc::now());
        let factors = serde_json::to_string(&model.factors).map_err(|e| DbErr::Custom(e.to_string()))?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(RiskModels::Table)
                    .columns([
                        RiskModels::Version,
                        RiskModels::Name,
                        RiskModels::Threshold,
                        RiskModels::Factors,
                        RiskModels::Active,
                        RiskModels::CreatedAt,
                        RiskModels::ActivatedAt,
                    ])
                    .values_panic([
                        model.version.into(),
                        model.name.into(),
                        i32::from(model.threshold).into(),
                        factors.into(),
                        true.into(),
                        model.created_at.into(),
                        model.created_at.into(),
                    ])
                    .to_owned(),
            )
            .await?;
        for column in [DeploymentRisk::Evidence, DeploymentRisk::RiskAssessment] {
            manager
                .alter_table(Table::alter().table(DeploymentRisk::Table).add_column(text_null(column)).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(DeploymentRisk::Table)
                    .add_column(integer_null(DeploymentRisk::RiskModelVersion))
                    .to_owned(),
            )
            .await?;
        // The history factors count an app's deployments by creation and by end.
        for (name, column) in [
            ("idx_deployments_app_name_created_at", DeploymentRisk::CreatedAt),
            ("idx_deployments_app_name_ended_at", DeploymentRisk::EndedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .if_not_exists()
                        .table(DeploymentRisk::Table)
                        .col(DeploymentRisk::AppName)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// One row the health probe rewrites, proving the database takes writes.
struct CreateHealthProbe;

impl MigrationName for CreateHealthProbe {
    fn name(&self) -> &str {
        "m20261202_000006_create_health_probe"
    }
}

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    ProbedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateHealthProbe {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HealthProbe::Table)
                    .if_not_exists()
                    .col(integer(HealthProbe::Id).primary_key())
                    .col(timestamp_with_time_zone_null(HealthProbe::ProbedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(HealthProbe::Table)
                    .columns([HealthProbe::Id])
                    .values_panic([1.into()])
                    .to_owned(),
            )
            .await
    }
}

/// The dispatch log becomes an outbox: each row is written with the
/// decision and delivered afterwards; ring progress shows how delivery went,
/// and how many devices the platform said the ring has.
struct AddDeliveryState;

impl MigrationName for AddDeliveryState {
    fn name(&self) -> &str {
        "m20261202_000007_add_delivery_state"
    }
}

#[derive(DeriveIden)]
enum DeliveryColumns {
    #[sea_orm(iden = "dispatches")]
    Dispatches,
    State,
    #[sea_orm(iden = "ring_progress")]
    RingProgress,
    DeliveryState,
    DeliveryError,
    ExpectedDevices,
}

#[async_trait::async_trait]
impl MigrationTrait for AddDeliveryState {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use DeliveryColumns as C;
        // Work recorded before this migration was delivered before it was recorded.
        let columns = [
            (C::Dispatches, string(C::State).default("delivered").to_owned()),
            (C::RingProgress, string(C::DeliveryState).default("delivered").to_owned()),
            (C::RingProgress, string_null(C::DeliveryError)),
            (C::RingProgress, big_integer_null(C::ExpectedDevices)),
        ];
        for (table, mut column) in columns {
            manager.alter_table(Table::alter().table(table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_dispatches_state")
                    .if_not_exists()
                    .table(C::Dispatches)
                    .col(C::State)
                    .to_owned(),
            )
            .await
    }
}

/// Connector changes are audited like everything else, and request ids of
/// creates and side-effecting calls without a table of their own are kept
/// with what they were first used for.
struct CreateAuditAndRequestTables;

impl MigrationName for CreateAuditAndRequestTables {
    fn name(&self) -> &str {
        "m20261202_000008_create_audit_and_request_tables"
    }
}

#[derive(DeriveIden)]
enum ConnectorChanges {
    Table,
    Seq,
    ConnectorName,
    Kind,
    Actor,
    Reason,
    CorrelationId,
    Before,
    After,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Requests {
    Table,
    Operation,
    RequestId,
    Fingerprint,
    Target,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditAndRequestTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ConnectorChanges as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .if_not_exists()
                    .col(big_pk_auto(C::Seq))
                    .col(string(C::ConnectorName))
                    .col(string(C::Kind))
                    .col(string(C::Actor))
                    .col(text(C::Reason))
                    .col(string(C::CorrelationId))
                    .col(text_null(C::Before))
                    .col(text_null(C::After))
                    .col(timestamp_with_time_zone(C::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connector_changes_name")
                    .if_not_exists()
                    .table(C::Table)
                    .col(C::ConnectorName)
                    .col(C::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Requests::Table)
                    .if_not_exists()
                    .col(string(Requests::Operation))
                    .col(string(Requests::RequestId))
                    .col(string(Requests::Fingerprint))
                    .col(string(Requests::Target))
                    .col(timestamp_with_time_zone(Requests::CreatedAt))
                    .primary_key(Index::create().col(Requests::Operation).col(Requests::RequestId))
                    .to_owned(),
            )
            .await
    }
}
