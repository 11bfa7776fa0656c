//! gRPC adapters: one file per service (validate → `app` → `to_proto`), plus
//! the pieces they share: request validation, page tokens, enum and message
//! conversion, the one error-to-status mapping, and the call layers.

pub mod admission;
pub mod calendar;
pub mod call_limits;
pub mod connector;
pub mod control;
pub mod convert;
pub mod correlation;
pub mod deployment;
pub mod page_token;
pub mod promotion;
pub mod risk;
mod status;
pub mod validate;

use tonic::Request;

use crate::auth::Identity;
use crate::clock::Clock;
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

/// The context of a change made now by the call's authenticated caller, for
/// `reason`, under the call's correlation id.
fn change_context<T>(clock: &Clock, request: &Request<T>, reason: Option<String>) -> ChangeContext {
    clock.context(caller(request), reason.unwrap_or_default(), Some(correlation::correlation_id(request)))
}

/// The name of the call's authenticated caller (the auth layer put it there).
fn caller<T>(request: &Request<T>) -> String {
    request.extensions().get::<Identity>().map_or_else(|| Identity::anonymous().name, |identity| identity.name.clone())
}
