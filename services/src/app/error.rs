//! Why a use-case failed, in the terms of DESIGN §3: one error for the
//! whole application layer, each kind a caller can act on. The gRPC adapter
//! maps it to a status once (`grpc::status`).

use crate::connectors::DispatchError;
use crate::domain::{DeploymentError, GateEvaluation};
use crate::store::StoreError;
use crate::store::secrets::SecretError;

/// One bad field of a request (a dotted path) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation { field: field.into(), description: description.into() }
    }
}

/// Why a call failed, in the terms of DESIGN §3.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// Bad input, with one violation per field (dotted paths).
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A promotion gate did not pass; the evaluation names every failed check.
    #[error("{message}")]
    GateBlocked { message: String, evaluation: Box<GateEvaluation> },
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller's view is out of date (a stale etag, a ring someone else left).
    #[error("{0}")]
    Aborted(String),
    /// Lost an optimistic-concurrency race to a concurrent change: the same
    /// call on fresh state may succeed (ABORTED on the wire once retries end).
    #[error("{0}")]
    Conflict(String),
    /// A background duty acted under a lease another replica has taken
    /// since: refused (ABORTED on the wire).
    #[error("{0}")]
    Fenced(String),
    /// A bounded resource (open watches, …) is taken; the caller may retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or corrupt data: never bad input.
    #[error("{0}")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

fn describe(violations: &[FieldViolation]) -> String {
    violations.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; ")
}

impl AppError {
    /// A single field violation.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> AppError {
        AppError::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => AppError::NotFound(format!("deployment {id} not found")),
            StoreError::RevisionConflict { id, expected } => AppError::Conflict(format!(
                "deployment {id} changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::PolicyConflict { ring, expected } => AppError::Conflict(format!(
                "the {ring} policy changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::RiskModelNotFound(version) => {
                AppError::NotFound(format!("risk model version {version} not found"))
            }
            StoreError::RiskModelConflict { version, expected } => AppError::Aborted(format!(
                "risk model version {version} changed since etag {expected:?} was read; get it again and retry"
            )),
            StoreError::ConnectorNotFound(name) => AppError::NotFound(format!("connector {name:?} not found")),
            err @ StoreError::Fenced { .. } => AppError::Fenced(err.to_string()),
            StoreError::ControlChangeNotFound(id) => AppError::NotFound(format!("control change {id} not found")),
            StoreError::ControlChangeDecided(id) => {
                AppError::Aborted(format!("control change {id} was decided by someone else meanwhile; get it again"))
            }
            StoreError::ControlChangeSuperseded(id) => AppError::FailedPrecondition(format!(
                "control change {id} is superseded: what it changes changed since it was proposed; propose it again"
            )),
            StoreError::ConnectorExists(name) => {
                AppError::AlreadyExists(format!("connector {name:?} already exists; update it or pick another name"))
            }
            StoreError::WindowNotFound(name) => AppError::NotFound(format!("change window {name:?} not found")),
            StoreError::WindowExists(name) => AppError::AlreadyExists(format!(
                "change window {name:?} already exists; update it, or choose another name"
            )),
            StoreError::WindowConflict { name, expected } => AppError::Conflict(format!(
                "change window {name:?} changed since etag \"{expected}\" was read; read it again"
            )),
            StoreError::TooManyWindows(max) => AppError::FailedPrecondition(format!(
                "the calendar already holds {max} change windows, its limit; delete one first"
            )),
            StoreError::ConnectorConflict { name, expected } => AppError::Conflict(format!(
                "connector {name:?} changed since etag \"{expected}\" was read; get it again and retry"
            )),
            StoreError::RequestIdTaken(request_id) => {
                AppError::Conflict(format!("request_id {request_id:?} is being used by a concurrent call; retry"))
            }
            StoreError::Unavailable(err) => AppError::Unavailable(format!("the database is unavailable: {err}")),
            StoreError::Timeout(budget) => AppError::Unavailable(format!(
                "the database did not answer within {budget:?} (or before the call's deadline); retry later"
            )),
            StoreError::FileReplaced(what) => AppError::Unavailable(format!("the database is unavailable: {what}")),
            StoreError::DiskFull(what) => {
                AppError::Unavailable(format!("the database is unavailable: disk full: {what}"))
            }
            StoreError::Secret(err @ SecretError::NoKey) => AppError::FailedPrecondition(err.to_string()),
            StoreError::Secret(err) => AppError::Unavailable(err.to_string()),
            StoreError::Database(err) => AppError::Internal(format!("database error: {err}")),
            StoreError::Corrupt(what) => AppError::Internal(format!("stored data is corrupt: {what}")),
        }
    }
}

impl From<DeploymentError> for AppError {
    fn from(err: DeploymentError) -> Self {
        let message = err.to_string();
        match err {
            DeploymentError::SelfApproval { .. } | DeploymentError::BreakGlassAlone(_) => {
                AppError::PermissionDenied(message)
            }
            DeploymentError::NotLive { .. } | DeploymentError::AlreadyInState(_) => {
                AppError::FailedPrecondition(message)
            }
            DeploymentError::RingMoved { .. } => AppError::Aborted(message),
            DeploymentError::Transition(_)
            | DeploymentError::NotDeploying { .. }
            | DeploymentError::RingNotStarted { .. }
            | DeploymentError::RingLeft { .. }
            | DeploymentError::TooManyDevices { .. }
            | DeploymentError::CountDecreased { .. }
            | DeploymentError::TargetRingNotReached { .. }
            | DeploymentError::NotPromotable { .. }
            | DeploymentError::GateNotPassed { .. } => AppError::FailedPrecondition(message),
        }
    }
}

impl From<DispatchError> for AppError {
    fn from(err: DispatchError) -> Self {
        let message = err.to_string();
        match err {
            DispatchError::NoConnector(_) | DispatchError::Permanent { .. } => AppError::FailedPrecondition(message),
            DispatchError::Open { .. } | DispatchError::Transient { .. } | DispatchError::Elsewhere => {
                AppError::Unavailable(message)
            }
            DispatchError::Store(err) => err.into(),
        }
    }
}
