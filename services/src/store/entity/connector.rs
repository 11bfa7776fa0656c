//! `connectors`: registered execution-plane connectors.
//! A row (its token redacted) is also the JSON form of a connector in its change log.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "connectors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub connector_type: String,
    pub driver: String,
    pub endpoint: Option<String>,
    /// Secret: never returned by the API nor logged.
    pub auth_token: Option<String>,
    pub enabled: bool,
    pub call_timeout_ms: i64,
    pub breaker_fail_max: i32,
    pub breaker_reset_timeout_ms: i64,
    pub simulator_latency_ms: i64,
    pub simulator_failure_rate: f64,
    pub simulator_device_count: i64,
    pub healthy: Option<bool>,
    pub health_error: Option<String>,
    pub health_checked_at: Option<DateTimeUtc>,
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
