//! `ring_progress`: one row per deployment and ring entered.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ring_progress")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub deployment_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub ring: String,
    pub connector_object_id: Option<String>,
    pub success_count: i64,
    pub failure_count: i64,
    pub started_at: DateTimeUtc,
    pub promoted_at: Option<DateTimeUtc>,
    pub compliant_at: Option<DateTimeUtc>,
    pub rollback_validated_at: Option<DateTimeUtc>,
    pub last_reported_at: Option<DateTimeUtc>,
    pub delivery_state: String,
    pub delivery_error: Option<String>,
    pub expected_devices: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::deployment::Entity",
        from = "Column::DeploymentId",
        to = "super::deployment::Column::Id"
    )]
    Deployment,
}

impl ActiveModelBehavior for ActiveModel {}

impl Related<super::deployment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployment.def()
    }
}
