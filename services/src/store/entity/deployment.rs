//! `deployments`: one row per deployment intent.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    /// Insertion order; the keyset for newest-first pagination.
    #[sea_orm(primary_key)]
    pub seq: i64,
    #[sea_orm(unique)]
    pub id: String,
    /// Client-chosen idempotency key of the create call.
    #[sea_orm(unique)]
    pub request_id: String,
    /// Hash of the create request's content, to tell a retry from a reuse.
    pub request_fingerprint: String,
    pub app_name: String,
    pub version: String,
    pub connector_type: String,
    pub connector_name: Option<String>,
    pub current_ring: String,
    pub target_ring: String,
    pub risk_score: i32,
    pub requires_cab_approval: bool,
    pub evidence_pack_id: String,
    pub submitter: String,
    pub correlation_id: String,
    pub status: String,
    pub site_class: String,
    pub cab_approver: Option<String>,
    pub status_reason: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deploy_started_at: Option<DateTimeUtc>,
    pub ended_at: Option<DateTimeUtc>,
    /// Optimistic-concurrency revision (the API's etag).
    pub revision: i64,
    pub paused: bool,
    pub stalled_since: Option<DateTimeUtc>,
    /// The evidence pack as JSON.
    pub evidence: Option<String>,
    pub risk_model_version: Option<i32>,
    /// The risk assessment as JSON.
    pub risk_assessment: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Read together with the deployment in one statement.
    #[sea_orm(has_many = "super::ring_progress::Entity")]
    RingProgress,
}

impl Related<super::ring_progress::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RingProgress.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
