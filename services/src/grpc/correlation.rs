//! Correlation ids: every call gets one, taken from `x-correlation-id`
//! metadata when the caller sent a usable one or generated otherwise, and the
//! same value is echoed in the response headers (also on errors). Handlers
//! read it back from the request metadata and record it on audit events.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use tower::{Layer, Service};

/// Metadata key carrying the correlation id.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// Longest correlation id accepted from a caller; longer ones are replaced.
const MAX_LEN: usize = 128;

/// A caller-supplied id is kept when it is short, printable ASCII.
fn usable(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(|b| b.is_ascii_graphic())
}

fn generate() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid header value")
}

/// The correlation id of a request: the caller's when usable, else a fresh one.
pub fn correlation_id<T>(request: &tonic::Request<T>) -> String {
    request
        .metadata()
        .get(CORRELATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| usable(value.as_bytes()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Tower layer that ensures and echoes `x-correlation-id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CorrelationIdLayer;

impl<S> Layer<S> for CorrelationIdLayer {
    type Service = CorrelationIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorrelationIdService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CorrelationIdService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CorrelationIdService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let id = match request.headers().get(CORRELATION_ID_HEADER) {
            Some(value) if usable(value.as_bytes()) => value.clone(),
            _ => generate(),
        };
        request.headers_mut().insert(CORRELATION_ID_HEADER, id.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            response.headers_mut().insert(CORRELATION_ID_HEADER, id);
            Ok(response)
        })
    }
}
