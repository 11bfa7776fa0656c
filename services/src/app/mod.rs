//! Application use-cases: domain types in, domain types out, one
//! [`AppError`]. The gRPC adapters, the rollout controller, connector
//! callbacks and background tasks all act through this layer; it knows
//! nothing of the wire.

pub mod connectors;
pub mod deployments;
mod error;
pub mod promotions;
pub mod risk;

pub use connectors::ConnectorRegistry;
pub use deployments::{Deployments, Shown, Watch};
pub use error::{AppError, AppResult, FieldViolation};
pub use promotions::{Promotions, Step};
pub use risk::RiskModels;

/// ABORTED when the caller's etag is not the current revision of `what`.
///
/// # Errors
/// The etag is stale.
pub fn check_etag(etag: Option<i64>, current: i64, what: impl std::fmt::Display) -> AppResult<()> {
    match etag {
        Some(etag) if etag != current => Err(AppError::Aborted(format!(
            "etag \"{etag}\" is stale: {what} is at \"{current}\"; get it again and retry"
        ))),
        _ => Ok(()),
    }
}
