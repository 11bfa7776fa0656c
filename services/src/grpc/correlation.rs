//! Correlation ids: every call gets one, taken from `x-correlation-id`
//! metadata when the caller sent a usable one and generated otherwise
//! (tower-http's request-id layers), and the same value is echoed in the
//! response headers, also on errors. Handlers read it back from the request
//! metadata and record it on audit events.

use http::{HeaderName, Request};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Metadata key carrying the correlation id.
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// Longest correlation id accepted from a caller; longer ones are replaced.
const MAX_LEN: usize = 128;

/// A caller-supplied id is kept when it is short, printable ASCII.
fn usable(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(|b| b.is_ascii_graphic())
}

/// Drops an id no audit trail should carry, so that one is generated instead.
fn drop_unusable<B>(mut request: Request<B>) -> Request<B> {
    if request.headers().get(&CORRELATION_ID_HEADER).is_some_and(|id| !usable(id.as_bytes())) {
        request.headers_mut().remove(&CORRELATION_ID_HEADER);
    }
    request
}

/// The layers that give every call a usable correlation id and echo it.
pub type CorrelationLayer<B> = ServiceBuilder<
    Stack<
        PropagateRequestIdLayer,
        Stack<SetRequestIdLayer<MakeRequestUuid>, Stack<MapRequestLayer<fn(Request<B>) -> Request<B>>, Identity>>,
    >,
>;

/// See [`CorrelationLayer`].
pub fn layer<B>() -> CorrelationLayer<B> {
    ServiceBuilder::new()
        .map_request(drop_unusable::<B> as fn(Request<B>) -> Request<B>)
        .layer(SetRequestIdLayer::new(CORRELATION_ID_HEADER, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(CORRELATION_ID_HEADER))
}

/// The correlation id of a request (the layers above made sure it has one).
pub fn correlation_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(CORRELATION_ID_HEADER.as_str())
        .and_then(|value| value.to_str().ok())
        .filter(|value| usable(value.as_bytes()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}
