//! `ring_policies`: the gate policy of each ring, seeded with DESIGN's defaults.
//! A row is also the JSON form of a policy in its change log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "ring_policies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub ring: String,
    pub min_success_rate: f64,
    pub min_sample_size: i64,
    pub online_compliance_limit_seconds: i64,
    pub intermittent_compliance_limit_seconds: i64,
    pub air_gapped_compliance_limit_seconds: i64,
    pub require_cab_approval: bool,
    pub require_evidence_pack: bool,
    pub require_rollback_validated: bool,
    pub bake_time_seconds: i64,
    pub auto_promote: bool,
    pub rollback_failure_rate: f64,
    pub rollback_min_sample: i64,
    pub stall_timeout_seconds: i64,
    pub revision: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
