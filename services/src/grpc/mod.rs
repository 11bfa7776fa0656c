//! gRPC adapters: one file per service (validate → domain/store → `to_proto`),
//! plus the pieces they share: request validation, page tokens, enum and
//! message conversion, and the correlation-id layer.

pub mod connector;
pub mod convert;
pub mod correlation;
pub mod deployment;
pub mod page_token;
pub mod promotion;
pub mod risk;
pub mod validate;

use chrono::Utc;
use tonic::Request;

use crate::clock::stored_time;
use crate::domain::ChangeContext;

/// The actor recorded when a call names none.
const ANONYMOUS: &str = "anonymous";

/// The context of a mutation: actor (defaulted), reason and correlation id.
fn change_context<T>(request: &Request<T>, actor: Option<String>, reason: Option<String>) -> ChangeContext {
    ChangeContext {
        actor: actor.unwrap_or_else(|| ANONYMOUS.to_owned()),
        reason: reason.unwrap_or_default(),
        correlation_id: correlation::correlation_id(request),
        now: stored_time(Utc::now()),
    }
}
