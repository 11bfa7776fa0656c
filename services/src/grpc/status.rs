//! The one mapping from [`AppError`] to `tonic::Status`: the gRPC code, the
//! message a person can act on, `google.rpc` details, and the log level
//! (client faults `info`, server faults `warn`/`error`).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, PreconditionViolation, StatusExt};

use super::convert::Wire;
use crate::app::AppError;
use crate::domain::GateEvaluation;

/// Longest message a status carries, in bytes: whatever a message quotes of
/// the request, the answer (and its log line) stays small.
const MAX_MESSAGE_BYTES: usize = 2048;
/// The same for the BadRequest details. Message and details travel in
/// headers, and a client refuses headers past its limit (16 KiB for hyper's
/// HTTP/2 client) with a reset stream: a request with thousands of bad
/// fields, or quoting huge values, must still get its INVALID_ARGUMENT.
const MAX_VIOLATIONS: usize = 16;
const MAX_FIELD_BYTES: usize = 128;
const MAX_DESCRIPTION_BYTES: usize = 192;

fn bounded(message: String) -> String {
    bounded_to(message, MAX_MESSAGE_BYTES)
}

/// `text` cut to at most `bytes` bytes (on a character boundary), marked when cut.
fn bounded_to(mut text: String, bytes: usize) -> String {
    if text.len() > bytes {
        let cut = (0..=bytes - '…'.len_utf8()).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The first [`MAX_VIOLATIONS`] violations, each bounded, and a last one saying how many were left out.
fn bad_request(violations: Vec<crate::app::FieldViolation>) -> ErrorDetails {
    let left_out = violations.len().saturating_sub(MAX_VIOLATIONS);
    let mut shown: Vec<_> = violations
        .into_iter()
        .take(MAX_VIOLATIONS)
        .map(|v| {
            tonic_types::FieldViolation::new(
                bounded_to(v.field, MAX_FIELD_BYTES),
                bounded_to(v.description, MAX_DESCRIPTION_BYTES),
            )
        })
        .collect();
    if left_out > 0 {
        shown.push(tonic_types::FieldViolation::new("", format!("{left_out} more violations not listed")));
    }
    ErrorDetails::with_bad_request(shown)
}

impl From<AppError> for Status {
    fn from(err: AppError) -> Self {
        let message = bounded(err.to_string());
        match err {
            AppError::InvalidArgument(violations) => {
                tracing::info!(%message, "rejected invalid request");
                Status::with_error_details(Code::InvalidArgument, message, bad_request(violations))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::FieldViolation;

    #[test]
    fn an_answer_fits_a_clients_header_limit_whatever_the_request() {
        // Four-byte characters: the worst case for percent-encoding the message.
        let huge = "\u{1F600}".repeat(70_000);
        let violations = (0..40).map(|i| FieldViolation::new(format!("factors[{i}].{huge}"), huge.clone())).collect();
        let status = Status::from(AppError::InvalidArgument(violations));
        assert_eq!(status.code(), Code::InvalidArgument);
        let listed = status.get_error_details().bad_request().expect("BadRequest").field_violations.clone();
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert!(
            listed.iter().all(|v| v.field.len() <= MAX_FIELD_BYTES && v.description.len() <= MAX_DESCRIPTION_BYTES)
        );
        assert!(listed[0].field.starts_with("factors[0]") && listed[0].field.ends_with('…'));
        assert_eq!(listed[MAX_VIOLATIONS].description, "24 more violations not listed");
        let response = status.into_http::<tonic::body::Body>();
        let header_bytes: usize =
            response.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 32).sum();
        assert!(header_bytes < 16 * 1024, "{header_bytes} bytes of headers");
    }

    #[test]
    fn bounded_text_is_cut_on_a_character_boundary() {
        assert_eq!(bounded_to("short".into(), 10), "short");
        assert_eq!(bounded_to("abcdefghij".into(), 6), "abc…");
        assert_eq!(bounded_to("ééééé".into(), 6), "é…");
    }
}
