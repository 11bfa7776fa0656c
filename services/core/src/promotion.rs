//! Recorded promotion attempts: promotions, blocked attempts and rollbacks,
//! with the gate evaluation that decided them. Append-only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::gate::GateEvaluation;
use super::ring::Ring;

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum PromotionResult {
    Promoted,
    Blocked,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub from_ring: Ring,
    /// `None` when leaving `from_ring` completed the deployment, or for a rollback.
    pub to_ring: Option<Ring>,
    pub result: PromotionResult,
    /// The evaluation behind a promotion or a block; `None` for a rollback.
    pub gate: Option<GateEvaluation>,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    /// Client-chosen idempotency key, when the call carried one.
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}
