//! Per-call limits applied around every gRPC handler: the caller's
//! `grpc-timeout`, or the server's default deadline when it sends none,
//! becomes the call's deadline, which bounds the database work done for it
//! (see [`crate::deadline`]) and, once passed, answers DEADLINE_EXCEEDED
//! (a connector that hangs cannot hold a call past it); and a request larger
//! than the decoding limit is answered RESOURCE_EXHAUSTED, as gRPC
//! specifies, rather than tonic's OUT_OF_RANGE. Both count in
//! `limits_exceeded_total`. A request that is not a valid protobuf message
//! is the caller's fault, so it is answered INVALID_ARGUMENT rather than
//! tonic's INTERNAL (which pages the operator for a client's bug).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use eucora_otel::Catalog;
use http::HeaderValue;
use tower::{Layer, Service};

/// Tower layer applying the per-call limits.
#[derive(Debug, Clone)]
pub struct CallLimitsLayer {
    /// The deadline of a call whose caller sets none.
    pub default_deadline: Duration,
    pub catalog: Catalog,
}

impl<S> Layer<S> for CallLimitsLayer {
    type Service = CallLimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimitsService { inner, default_deadline: self.default_deadline, catalog: self.catalog.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct CallLimitsService<S> {
    inner: S,
    default_deadline: Duration,
    catalog: Catalog,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for CallLimitsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let timeout =
            request.headers().get("grpc-timeout").and_then(parse_grpc_timeout).unwrap_or(self.default_deadline);
        let deadline = tokio::time::Instant::now() + timeout;
        let response = self.inner.call(request);
        let catalog = self.catalog.clone();
        Box::pin(async move {
            let answered = tokio::time::timeout_at(deadline, crate::deadline::scope(deadline, response)).await;
            let Ok(response) = answered else {
                catalog.limit_exceeded("deadline");
                let message = format!("no answer within the call's deadline ({timeout:?})");
                return Ok(tonic::Status::deadline_exceeded(message).into_http());
            };
            let mut response = response?;
            let headers = response.headers_mut();
            if is_decode_limit(headers) {
                catalog.limit_exceeded("message_size");
                headers.insert("grpc-status", HeaderValue::from(tonic::Code::ResourceExhausted as i32));
            } else if is_undecodable_request(headers) {
                headers.insert("grpc-status", HeaderValue::from(tonic::Code::InvalidArgument as i32));
            }
            Ok(response)
        })
    }
}

/// tonic refuses a request over its decoding limit with OUT_OF_RANGE in a
/// trailers-only answer, before any handler runs.
fn is_decode_limit(headers: &http::HeaderMap) -> bool {
    is_refusal(headers, b"11", "decoded message length too large")
}

/// tonic answers a request body that does not decode as the method's message
/// with INTERNAL in a trailers-only answer, before any handler runs.
fn is_undecodable_request(headers: &http::HeaderMap) -> bool {
    is_refusal(headers, b"13", "failed to decode Protobuf message")
}

/// Whether `headers` carry `code` and a message (percent-encoded or not) that says `says`.
fn is_refusal(headers: &http::HeaderMap, code: &[u8], says: &str) -> bool {
    headers.get("grpc-status").is_some_and(|status| status.as_bytes() == code)
        && headers.get("grpc-message").is_some_and(|message| {
            let message = String::from_utf8_lossy(message.as_bytes());
            message.contains(says) || message.contains(&says.replace(' ', "%20"))
        })
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let value = value.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_tonics_refusals_from_other_errors() {
        let headers = |code: &'static str, message: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-status", HeaderValue::from_static(code));
            headers.insert("grpc-message", HeaderValue::from_static(message));
            headers
        };
        let undecodable = headers("13", "failed%20to%20decode%20Protobuf%20message%3A%20invalid%20wire%20type");
        assert!(is_undecodable_request(&undecodable) && !is_decode_limit(&undecodable));
        let too_large = headers("11", "Error, decoded message length too large: found 5242880 bytes");
        assert!(is_decode_limit(&too_large) && !is_undecodable_request(&too_large));
        assert!(!is_undecodable_request(&headers("13", "database%20failed%20to%20decode%20a%20row")));
    }

    #[test]
    fn parses_grpc_timeouts() {
        let parse = |s: &str| parse_grpc_timeout(&HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("1S"), Some(Duration::from_secs(1)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse("123456789S"), None, "at most 8 digits");
        assert_eq!(parse("S"), None);
        assert_eq!(parse("10x"), None);
        assert_eq!(parse(""), None);
    }
}
