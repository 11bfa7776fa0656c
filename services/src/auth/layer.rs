//! The tower layer in front of every gRPC handler that authenticates the
//! caller, checks the role the method needs, and hands the identity to the
//! handler in the request's extensions. Refusals are answered here, before
//! any handler runs: UNAUTHENTICATED with nothing that helps a guesser, or
//! PERMISSION_DENIED naming the role needed; each is logged and counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eucora_otel::Catalog;
use tonic::Status;
use tower::{Layer, Service};

use super::roles::required_role;
use super::{Authenticator, Identity};

/// Tower layer applying authentication and authorization.
#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Arc<Authenticator>,
    catalog: Catalog,
}

impl AuthLayer {
    pub fn new(authenticator: Arc<Authenticator>, catalog: Catalog) -> AuthLayer {
        AuthLayer { authenticator, catalog }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, authenticator: self.authenticator.clone(), catalog: self.catalog.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
    catalog: Catalog,
}

/// Why a call has no identity (the `reason` of `auth_failures_total`).
enum Failure {
    Missing,
    Malformed,
    Invalid,
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Invalid => "invalid",
        }
    }
}

impl<S> AuthService<S> {
    /// The caller of `request`, or why there is none.
    fn authenticate<B>(&self, request: &http::Request<B>) -> Result<Identity, Failure> {
        if !self.authenticator.required() {
            return Ok(Identity::anonymous());
        }
        let header = request.headers().get(http::header::AUTHORIZATION).ok_or(Failure::Missing)?;
        let value = header.to_str().map_err(|_| Failure::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(Failure::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Failure::Malformed);
        }
        self.authenticator.identify(token.trim()).ok_or(Failure::Invalid)
    }
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Answer<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let Some(needed) = required_role(&path) else {
            return Box::pin(self.inner.call(request));
        };
        let refusal = match self.authenticate(&request) {
            Err(failure) => {
                tracing::info!(method = %path, reason = failure.label(), "unauthenticated call refused");
                self.catalog.auth_failed(failure.label());
                Status::unauthenticated("missing or invalid credentials: send `authorization: Bearer <token>`")
            }
            Ok(identity) if !identity.roles.permit(needed) => {
                tracing::info!(method = %path, identity = %identity.name, role = %needed, "call denied");
                self.catalog.auth_denied(needed.into());
                Status::permission_denied(format!(
                    "{path} needs the {needed} role, which {} does not hold",
                    identity.name
                ))
            }
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                return Box::pin(self.inner.call(request));
            }
        };
        Box::pin(async move { Ok(refusal.into_http()) })
    }
}
