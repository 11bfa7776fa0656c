//! The initial schema: deployments with their ring progress and event log,
//! ring policies and their change log, promotions, connectors, their change
//! log and the dispatch outbox, risk models and their audit log, request
//! ids, and the health probe's row. Seed rows are literals (DESIGN's ring
//! policies and default risk model, as they were when this migration was
//! written), so later changes to the code's defaults never rewrite history.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    // Recorded in `seaql_migrations`: never rename a released migration.
    fn name(&self) -> &str {
        "m20261202_000001_initial"
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
    Paused,
    StalledSince,
    Evidence,
    RiskModelVersion,
    RiskAssessment,
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
    RollbackValidatedAt,
    LastReportedAt,
    DeliveryState,
    DeliveryError,
    ExpectedDevices,
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
    BakeTimeSeconds,
    AutoPromote,
    RollbackFailureRate,
    RollbackMinSample,
    StallTimeoutSeconds,
    Revision,
    UpdatedAt,
}

/// The change logs of ring policies and of connectors share their shape.
#[derive(DeriveIden)]
enum Change {
    Seq,
    Actor,
    Reason,
    CorrelationId,
    Before,
    After,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RingPolicyChanges {
    Table,
    Ring,
}

#[derive(DeriveIden)]
enum ConnectorChanges {
    Table,
    ConnectorName,
    Kind,
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
    State,
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
enum Requests {
    Table,
    Operation,
    RequestId,
    Fingerprint,
    Target,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HealthProbe {
    Table,
    Id,
    ProbedAt,
}

/// DESIGN's ring policies: (ring, min success rate, min sample, require CAB,
/// require rollback validated, bake time in seconds). Every ring: compliance
/// within 24 h online, 72 h intermittent, 7 d air-gapped; an evidence pack;
/// auto-promotion; rollback past 5 % failures with 50 devices; stalled after 24 h.
const RING_POLICIES: [(&str, f64, i64, bool, bool, i64); 5] = [
    ("lab", 0.98, 10, false, true, 3_600),
    ("canary", 0.98, 25, true, false, 86_400),
    ("pilot", 0.97, 50, true, false, 172_800),
    ("department", 0.99, 100, true, false, 259_200),
    ("global", 0.99, 100, true, false, 259_200),
];

/// The default risk model's eight factors, weights and rubrics (threshold 50).
const DEFAULT_RISK_FACTORS: &str = r#"[
{"kind":"privilege_elevation","weight":0.15,"rubric":{"admin":1.0,"elevation":0.5,"none":0.0}},
{"kind":"blast_radius","weight":0.2,"rubric":{"canary":0.2,"department":0.7,"global":1.0,"lab":0.0,"pilot":0.4}},
{"kind":"rollback_complexity","weight":0.15,"rubric":{"none":1.0,"planned":0.5,"tested":0.0}},
{"kind":"vulnerability_severity","weight":0.2,"rubric":{"critical":1.0,"high":0.7,"medium":0.3,"none":0.0}},
{"kind":"compliance_impact","weight":0.1,"rubric":{"none":0.0,"other":0.3,"pci":0.7,"sox_or_hipaa":1.0}},
{"kind":"deployment_frequency","weight":0.05,"rubric":{"more":0.0,"none":1.0,"one_to_two":0.7,"six_to_ten":0.2,"three_to_five":0.4}},
{"kind":"evidence_completeness","weight":0.1,"rubric":{}},
{"kind":"historical_success_rate","weight":0.05,"rubric":{"at_least_50":0.6,"at_least_75":0.3,"at_least_90":0.1,"at_least_99":0.0,"below_50":1.0,"no_history":0.5}}
]"#;

const DAY: i64 = 86_400;

/// An index named `name` on `columns` of `table`.
fn index(name: &str, table: impl IntoIden, columns: impl IntoIterator<Item = impl IntoIden>) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).if_not_exists().table(table);
    for column in columns {
        index.col(column);
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
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
                .col(boolean(Deployments::Paused).default(false))
                .col(timestamp_with_time_zone_null(Deployments::StalledSince))
                .col(text_null(Deployments::Evidence))
                .col(integer_null(Deployments::RiskModelVersion))
                .col(text_null(Deployments::RiskAssessment))
                .to_owned(),
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
                .col(timestamp_with_time_zone_null(RingProgress::RollbackValidatedAt))
                .col(timestamp_with_time_zone_null(RingProgress::LastReportedAt))
                .col(string(RingProgress::DeliveryState).default("delivered"))
                .col(string_null(RingProgress::DeliveryError))
                .col(big_integer_null(RingProgress::ExpectedDevices))
                .primary_key(Index::create().col(RingProgress::DeploymentId).col(RingProgress::Ring))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_ring_progress_deployment")
                        .from(RingProgress::Table, RingProgress::DeploymentId)
                        .to(Deployments::Table, Deployments::Id),
                )
                .to_owned(),
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
                .col(big_integer(RingPolicies::BakeTimeSeconds))
                .col(boolean(RingPolicies::AutoPromote))
                .col(double(RingPolicies::RollbackFailureRate))
                .col(big_integer(RingPolicies::RollbackMinSample))
                .col(big_integer(RingPolicies::StallTimeoutSeconds))
                .col(big_integer(RingPolicies::Revision))
                .col(timestamp_with_time_zone(RingPolicies::UpdatedAt))
                .to_owned(),
            Table::create()
                .table(RingPolicyChanges::Table)
                .if_not_exists()
                .col(big_pk_auto(Change::Seq))
                .col(string(RingPolicyChanges::Ring))
                .col(string(Change::Actor))
                .col(text(Change::Reason))
                .col(string(Change::CorrelationId))
                .col(text(Change::Before))
                .col(text(Change::After))
                .col(timestamp_with_time_zone(Change::CreatedAt))
                .to_owned(),
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
            Table::create()
                .table(ConnectorChanges::Table)
                .if_not_exists()
                .col(big_pk_auto(Change::Seq))
                .col(string(ConnectorChanges::ConnectorName))
                .col(string(ConnectorChanges::Kind))
                .col(string(Change::Actor))
                .col(text(Change::Reason))
                .col(string(Change::CorrelationId))
                .col(text_null(Change::Before))
                .col(text_null(Change::After))
                .col(timestamp_with_time_zone(Change::CreatedAt))
                .to_owned(),
            Table::create()
                .table(Dispatches::Table)
                .if_not_exists()
                .col(string(Dispatches::DeploymentId))
                .col(string(Dispatches::Ring))
                .col(string(Dispatches::Operation))
                .col(string(Dispatches::ConnectorName))
                .col(string_null(Dispatches::ObjectId))
                .col(timestamp_with_time_zone(Dispatches::CreatedAt))
                .col(string(Dispatches::State))
                .primary_key(
                    Index::create().col(Dispatches::DeploymentId).col(Dispatches::Ring).col(Dispatches::Operation),
                )
                .to_owned(),
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
            Table::create()
                .table(HealthProbe::Table)
                .if_not_exists()
                .col(integer(HealthProbe::Id).primary_key())
                .col(timestamp_with_time_zone_null(HealthProbe::ProbedAt))
                .to_owned(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }

        let indexes = [
            // One per list filter, each ending in `seq`: a filtered,
            // newest-first page is an index range scan.
            index("idx_deployments_status_seq", Deployments::Table, [Deployments::Status, Deployments::Seq]),
            index("idx_deployments_current_ring_seq", Deployments::Table, [Deployments::CurrentRing, Deployments::Seq]),
            index("idx_deployments_app_name_seq", Deployments::Table, [Deployments::AppName, Deployments::Seq]),
            index(
                "idx_deployments_connector_type_seq",
                Deployments::Table,
                [Deployments::ConnectorType, Deployments::Seq],
            ),
            // The history risk factors count an app's deployments by creation and by end.
            index(
                "idx_deployments_app_name_created_at",
                Deployments::Table,
                [Deployments::AppName, Deployments::CreatedAt],
            ),
            index(
                "idx_deployments_app_name_ended_at",
                Deployments::Table,
                [Deployments::AppName, Deployments::EndedAt],
            ),
            index(
                "idx_deployment_events_deployment_seq",
                DeploymentEvents::Table,
                [DeploymentEvents::DeploymentId, DeploymentEvents::Seq],
            ),
            index("idx_promotions_deployment_seq", Promotions::Table, [Promotions::DeploymentId, Promotions::Seq]),
            index("idx_ring_policy_changes_ring", RingPolicyChanges::Table, [RingPolicyChanges::Ring]),
            index("idx_connector_changes_name", ConnectorChanges::Table, [ConnectorChanges::ConnectorName]),
            index("idx_dispatches_state", Dispatches::Table, [Dispatches::State]),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }

        let now = Expr::current_timestamp();
        let mut policies = Query::insert();
        policies.into_table(RingPolicies::Table).columns([
            RingPolicies::Ring,
            RingPolicies::MinSuccessRate,
            RingPolicies::MinSampleSize,
            RingPolicies::OnlineComplianceLimitSeconds,
            RingPolicies::IntermittentComplianceLimitSeconds,
            RingPolicies::AirGappedComplianceLimitSeconds,
            RingPolicies::RequireCabApproval,
            RingPolicies::RequireEvidencePack,
            RingPolicies::RequireRollbackValidated,
            RingPolicies::BakeTimeSeconds,
            RingPolicies::AutoPromote,
            RingPolicies::RollbackFailureRate,
            RingPolicies::RollbackMinSample,
            RingPolicies::StallTimeoutSeconds,
            RingPolicies::Revision,
            RingPolicies::UpdatedAt,
        ]);
        for (ring, min_success_rate, min_sample_size, require_cab, require_rollback, bake_seconds) in RING_POLICIES {
            policies.values_panic([
                ring.into(),
                min_success_rate.into(),
                min_sample_size.into(),
                DAY.into(),
                (3 * DAY).into(),
                (7 * DAY).into(),
                require_cab.into(),
                true.into(),
                require_rollback.into(),
                bake_seconds.into(),
                true.into(),
                0.05.into(),
                50i64.into(),
                DAY.into(),
                0i64.into(),
                now.clone(),
            ]);
        }
        manager.exec_stmt(policies).await?;

        let factors: String = DEFAULT_RISK_FACTORS.split('\n').collect();
        let model = Query::insert()
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
            .values_panic([1.into(), "default".into(), 50.into(), factors.into(), true.into(), now.clone(), now])
            .to_owned();
        manager.exec_stmt(model).await?;

        let probe = Query::insert()
            .into_table(HealthProbe::Table)
            .columns([HealthProbe::Id])
            .values_panic([1.into()])
            .to_owned();
        manager.exec_stmt(probe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::risk::{Factor, RiskModel};
    use crate::domain::{Label, Ring, RingPolicy};

    #[test]
    fn the_seeded_risk_model_is_the_code_default_at_writing() {
        let factors: Vec<Factor> = serde_json::from_str(DEFAULT_RISK_FACTORS).unwrap();
        let default = RiskModel::default_model(chrono::DateTime::UNIX_EPOCH);
        assert_eq!(factors, default.factors);
        assert_eq!(default.threshold, 50);
    }

    #[test]
    fn the_seeded_policies_are_the_code_defaults_at_writing() {
        for ((label, min_success_rate, min_sample, require_cab, require_rollback, bake), &ring) in
            RING_POLICIES.into_iter().zip(Ring::ALL)
        {
            let policy = RingPolicy::default_for(ring, chrono::DateTime::UNIX_EPOCH);
            assert_eq!(label, ring.as_label());
            assert_eq!(
                (min_success_rate, min_sample as u64, require_cab, require_rollback, bake as u64),
                (
                    policy.min_success_rate,
                    policy.min_sample_size,
                    policy.require_cab_approval,
                    policy.require_rollback_validated,
                    policy.bake_time.as_secs()
                )
            );
            assert!(policy.require_evidence_pack && policy.auto_promote);
            assert_eq!(policy.online_compliance_limit.as_secs(), DAY as u64);
            assert_eq!(policy.intermittent_compliance_limit.as_secs(), 3 * DAY as u64);
            assert_eq!(policy.air_gapped_compliance_limit.as_secs(), 7 * DAY as u64);
            assert_eq!((policy.rollback_failure_rate, policy.rollback_min_sample), (0.05, 50));
            assert_eq!(policy.stall_timeout.as_secs(), DAY as u64);
        }
    }
}
