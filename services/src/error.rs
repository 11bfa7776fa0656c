//! The service layer's error and its one mapping to `tonic::Status`: the gRPC
//! code, the message a person can act on, `google.rpc` details, and the log
//! level (client faults `info`, server faults `warn`/`error`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, PreconditionViolation, StatusExt};

use crate::connectors::DispatchError;
use crate::domain::DeploymentError;
use crate::store::StoreError;

/// Why a call failed, in the terms of DESIGN §3.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input, with one violation per field (dotted paths).
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A promotion gate did not pass: one precondition violation per failed check.
    #[error("{message}")]
    GateBlocked { message: String, violations: Vec<PreconditionViolation> },
    #[error("{0}")]
    PermissionDenied(String),
    /// Lost an optimistic-concurrency race (stale etag).
    #[error("{0}")]
    Aborted(String),
    /// A dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data: never bad input.
    #[error("{0}")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

fn describe(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl ApiError {
    /// A single field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        ApiError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => ApiError::NotFound(format!("deployment {id} not found")),
            StoreError::RevisionConflict { id, expected } => ApiError::Aborted(format!(
                "deployment {id} changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::PolicyConflict { ring, expected } => ApiError::Aborted(format!(
                "the {ring} policy changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::RiskModelNotFound(version) => {
                ApiError::NotFound(format!("risk model version {version} not found"))
            }
            StoreError::ConnectorNotFound(name) => ApiError::NotFound(format!("connector {name:?} not found")),
            StoreError::ConnectorExists(name) => {
                ApiError::AlreadyExists(format!("connector {name:?} already exists; update it or pick another name"))
            }
            StoreError::ConnectorConflict { name, expected } => ApiError::Aborted(format!(
                "connector {name:?} changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::RequestIdTaken(request_id) => {
                ApiError::Aborted(format!("request_id {request_id:?} is being used by a concurrent call; retry"))
            }
            StoreError::Unavailable(err) => ApiError::Unavailable(format!("the database is unavailable: {err}")),
            StoreError::Timeout(budget) => ApiError::Unavailable(format!(
                "the database did not answer within {budget:?} (or before the call's deadline); retry later"
            )),
            StoreError::FileReplaced(what) => ApiError::Unavailable(format!("the database is unavailable: {what}")),
            StoreError::DiskFull(what) => {
                ApiError::Unavailable(format!("the database is unavailable: disk full: {what}"))
            }
            StoreError::Database(err) => ApiError::Internal(format!("database error: {err}")),
            StoreError::Corrupt(what) => ApiError::Internal(format!("stored data is corrupt: {what}")),
        }
    }
}

impl From<DeploymentError> for ApiError {
    fn from(err: DeploymentError) -> Self {
        let message = err.to_string();
        match err {
            DeploymentError::SelfApproval { .. } => ApiError::PermissionDenied(message),
            DeploymentError::NotLive { .. } | DeploymentError::AlreadyInState(_) => {
                ApiError::FailedPrecondition(message)
            }
            DeploymentError::RingMoved { .. } => ApiError::Aborted(message),
            DeploymentError::Transition(_)
            | DeploymentError::NotDeploying { .. }
            | DeploymentError::RingNotStarted { .. }
            | DeploymentError::RingLeft { .. }
            | DeploymentError::TooManyDevices { .. }
            | DeploymentError::CountDecreased { .. }
            | DeploymentError::TargetRingNotReached { .. }
            | DeploymentError::NotPromotable { .. }
            | DeploymentError::GateNotPassed { .. } => ApiError::FailedPrecondition(message),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(err: DispatchError) -> Self {
        let message = err.to_string();
        match err {
            DispatchError::NoConnector(_) | DispatchError::Permanent { .. } => ApiError::FailedPrecondition(message),
            DispatchError::Open { .. } | DispatchError::Transient { .. } => ApiError::Unavailable(message),
            DispatchError::Store(err) => err.into(),
        }
    }
}

/// Longest message a status carries: whatever a message quotes of the
/// request, the answer (and its log line) stays small.
const MAX_MESSAGE_CHARS: usize = 2048;

fn bounded(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let message = bounded(err.to_string());
        match err {
            ApiError::InvalidArgument(violations) => {
                tracing::info!(%message, "rejected invalid request");
                Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
            }
            ApiError::NotFound(_) => {
                tracing::info!(%message, "not found");
                Status::not_found(message)
            }
            ApiError::AlreadyExists(_) => {
                tracing::info!(%message, "already exists");
                Status::already_exists(message)
            }
            ApiError::FailedPrecondition(_) => {
                tracing::info!(%message, "failed precondition");
                Status::failed_precondition(message)
            }
            ApiError::GateBlocked { violations, .. } => {
                tracing::info!(%message, "promotion gate blocked");
                Status::with_error_details(
                    Code::FailedPrecondition,
                    message,
                    ErrorDetails::with_precondition_failure(violations),
                )
            }
            ApiError::PermissionDenied(_) => {
                tracing::info!(%message, "permission denied");
                Status::permission_denied(message)
            }
            ApiError::Aborted(_) => {
                tracing::info!(%message, "aborted");
                Status::aborted(message)
            }
            ApiError::Unavailable(_) => {
                tracing::warn!(%message, "dependency unavailable");
                Status::unavailable(message)
            }
            ApiError::Internal(_) => {
                tracing::error!(%message, "internal error");
                Status::internal(message)
            }
        }
    }
}
