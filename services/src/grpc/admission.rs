//! Admission of authenticated calls, after the auth layer: a per-identity
//! request rate (a token bucket per caller) and a global bound on calls in
//! flight, past which calls are shed rather than queued. Both answer
//! RESOURCE_EXHAUSTED with `google.rpc.RetryInfo` saying when to retry, and
//! count in `limits_exceeded_total{limit}`. grpc.health.v1 and reflection
//! are never limited: probes must answer under load.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eucora_otel::Catalog;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tower::{Layer, Service};

use crate::auth::Identity;
use crate::auth::roles::required_role;

/// How long a shed caller is told to wait.
const SHED_RETRY: Duration = Duration::from_millis(200);

/// The limits calls are admitted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Most calls in flight at once on this server.
    pub max_in_flight: usize,
    /// Calls per second one identity may make on average (`None`: unlimited) …
    pub rate_per_identity: Option<NonZeroU32>,
    /// … and in a burst.
    pub burst_per_identity: NonZeroU32,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_in_flight: 1024,
            rate_per_identity: NonZeroU32::new(200),
            burst_per_identity: NonZeroU32::new(400).expect("non-zero"),
        }
    }
}

/// Tower layer admitting calls under [`AdmissionLimits`].
#[derive(Clone)]
pub struct AdmissionLayer {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    rate: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    catalog: Catalog,
}

impl AdmissionLayer {
    pub fn new(limits: AdmissionLimits, catalog: Catalog) -> AdmissionLayer {
        let rate = limits.rate_per_identity.map(|rate| {
            Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(limits.burst_per_identity)))
        });
        AdmissionLayer {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            max_in_flight: limits.max_in_flight,
            rate,
            catalog,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, layer: self.clone() }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    layer: AdmissionLayer,
}

/// RESOURCE_EXHAUSTED telling the caller when to come back.
fn exhausted(message: String, retry_after: Duration) -> Status {
    Status::with_error_details(Code::ResourceExhausted, message, ErrorDetails::with_retry_info(Some(retry_after)))
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for Admission<S>
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
        if required_role(request.uri().path()).is_none() {
            return Box::pin(self.inner.call(request));
        }
        let layer = &self.layer;
        let caller = request.extensions().get::<Identity>().map_or_else(String::new, |identity| identity.name.clone());
        if let Some(rate) = &layer.rate
            && let Err(not_until) = rate.check_key(&caller)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            layer.catalog.limit_exceeded("rate");
            let refusal = exhausted(format!("{caller} is calling faster than its rate limit; retry in {wait:?}"), wait);
            return Box::pin(async move { Ok(refusal.into_http()) });
        }
        let Ok(permit) = layer.in_flight.clone().try_acquire_owned() else {
            layer.catalog.limit_exceeded("in_flight");
            let refusal = exhausted(
                format!("the server is at its limit of {} calls in flight; retry shortly", layer.max_in_flight),
                SHED_RETRY,
            );
            return Box::pin(async move { Ok(refusal.into_http()) });
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(permit);
            response
        })
    }
}
