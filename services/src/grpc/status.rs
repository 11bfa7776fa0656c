//! The one mapping from [`AppError`] to `tonic::Status`: the gRPC code, the
//! message a person can act on, `google.rpc` details, and the log level
//! (client faults `info`, server faults `warn`/`error`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

use super::convert::Wire;
use crate::app::AppError;
use crate::domain::GateEvaluation;

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

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        let message = bounded(err.to_string());
        match err {
            AppError::InvalidArgument(violations) => {
                tracing::info!(%message, "rejected invalid request");
                let violations =
                    violations.into_iter().map(|v| tonic_types::FieldViolation::new(v.field, v.description));
                Status::with_error_details(
                    Code::InvalidArgument,
                    message,
                    ErrorDetails::with_bad_request(violations.collect::<Vec<_>>()),
                )
            }
            AppError::NotFound(_) => {
                tracing::info!(%message, "not found");
                Status::not_found(message)
            }
            AppError::AlreadyExists(_) => {
                tracing::info!(%message, "already exists");
                Status::already_exists(message)
            }
            AppError::FailedPrecondition(_) => {
                tracing::info!(%message, "failed precondition");
                Status::failed_precondition(message)
            }
            AppError::GateBlocked { evaluation, .. } => {
                tracing::info!(%message, "promotion gate blocked");
                Status::with_error_details(
                    Code::FailedPrecondition,
                    message,
                    ErrorDetails::with_precondition_failure(gate_violations(&evaluation)),
                )
            }
            AppError::PermissionDenied(_) => {
                tracing::info!(%message, "permission denied");
                Status::permission_denied(message)
            }
            AppError::Aborted(_) | AppError::Conflict(_) | AppError::Fenced(_) => {
                tracing::info!(%message, "aborted");
                Status::aborted(message)
            }
            AppError::ResourceExhausted(_) => {
                tracing::info!(%message, "resource exhausted");
                Status::resource_exhausted(message)
            }
            AppError::Unavailable(_) => {
                tracing::warn!(%message, "dependency unavailable");
                Status::unavailable(message)
            }
            AppError::Internal(_) => {
                tracing::error!(%message, "internal error");
                Status::internal(message)
            }
        }
    }
}

/// One `google.rpc.PreconditionFailure` violation per failed check.
fn gate_violations(evaluation: &GateEvaluation) -> Vec<PreconditionViolation> {
    evaluation
        .failed_checks()
        .map(|c| {
            PreconditionViolation::new(
                c.kind.to_proto().as_str_name(),
                format!("ring/{}", evaluation.ring),
                c.message.clone(),
            )
        })
        .collect()
}
