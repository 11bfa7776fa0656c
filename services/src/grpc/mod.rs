//! gRPC adapters: one file per service (validate → domain/store → `to_proto`),
//! plus the pieces they share: request validation, page tokens, enum and
//! message conversion, and the correlation-id layer.

pub mod call_limits;
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
use crate::store::Page;

/// Largest encoded size of one List answer: under the 4 MiB that grpcurl
/// and grpcio accept by default, with room to spare. A page that would be
/// larger ends early, with a token for the rest.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// The longest prefix of `page` that encodes within [`MAX_PAGE_BYTES`].
fn fitting<T: prost::Message>(page: Page<T>) -> Page<T> {
    let mut total = 0;
    page.cut_where(|item| {
        // Each repeated field element carries a tag and a length prefix.
        total += item.encoded_len() + 8;
        total <= MAX_PAGE_BYTES
    })
}

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
