//! Application use-cases: domain types in, domain types out, one
//! [`AppError`]. The gRPC adapters, the rollout controller, connector
//! callbacks and background tasks all act through this layer; it knows
//! nothing of the wire.

pub mod calendar;
pub mod connectors;
pub mod control;
pub mod deployments;
mod error;
mod group_commit;
pub mod promotions;
pub mod risk;

pub use calendar::ChangeCalendar;
pub use connectors::ConnectorRegistry;
pub use control::{ControlChanges, Guarded};
pub use deployments::{Deployments, Shown, Watch};
pub use error::{AppError, AppResult, FieldViolation};
pub use promotions::{Promotions, Step};
pub use risk::RiskModels;

use crate::store::audit::RequestKey;

/// Tries of a read-decide-save cycle that loses races to concurrent changes.
const CONFLICT_RETRIES: usize = 8;

/// Runs a read-decide-save `cycle` again, on fresh state, while it loses a
/// race to a concurrent change and `may_retry` (a caller that named an etag
/// or a request id wants the conflict, not a retry): a few times, with a
/// short jittered backoff; then the conflict is the answer.
///
/// # Errors
/// The cycle's error, the last conflict once the retries are spent.
pub(crate) async fn retry_on_conflict<T, Fut>(may_retry: bool, cycle: impl FnMut() -> Fut) -> AppResult<T>
where
    Fut: std::future::Future<Output = AppResult<T>>,
{
    use backon::{ExponentialBuilder, Retryable};
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(1))
        .with_max_delay(std::time::Duration::from_millis(50))
        .with_max_times(CONFLICT_RETRIES)
        .with_jitter();
    cycle.retry(backoff).when(|err| may_retry && matches!(err, AppError::Conflict(_))).await
}

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

/// Hash of a request's content: equal for a retry, different for a reuse
/// of its request id with other content.
pub(crate) fn fingerprint(content: &impl serde::Serialize) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(content).expect("request content serializes");
    Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
}

/// The target of a request id's first use, when `key` is a retry of it.
///
/// # Errors
/// ALREADY_EXISTS when the request id was used with other content; database failures.
pub(crate) async fn replayed(store: &crate::store::Store, key: &RequestKey) -> AppResult<Option<String>> {
    match store.find_request(key.operation, &key.request_id).await? {
        None => Ok(None),
        Some(first) if first.fingerprint == key.fingerprint => Ok(Some(first.target)),
        Some(first) => Err(AppError::AlreadyExists(format!(
            "request_id {:?} was already used for {} with different content; use a new request_id",
            key.request_id, first.target
        ))),
    }
}
