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
use super::{Authenticator, Failure, Identity};
use crate::tls::PeerInfo;

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

/// The caller of a request with these headers and peer, or why there is none.
async fn authenticate(
    authenticator: &Authenticator,
    authorization: Option<http::HeaderValue>,
    peer: Option<PeerInfo>,
) -> Result<Identity, Failure> {
    if !authenticator.required() {
        return Ok(Identity::anonymous());
    }
    let Some(header) = authorization else {
        // No token: a client certificate the auth file knows will do.
        let leaf = peer.as_ref().and_then(|peer| peer.certificates.as_ref()).and_then(|chain| chain.first().cloned());
        return match leaf {
            Some(leaf) => authenticator.identify_certificate(&leaf).ok_or(Failure::Invalid),
            None => Err(Failure::Missing),
        };
    };
    let value = header.to_str().map_err(|_| Failure::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Failure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Failure::Malformed);
    }
    authenticator.identify(token.trim()).await
}

type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
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
        // The service that was polled ready serves this call; its clone
        // waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (authenticator, catalog) = (self.authenticator.clone(), self.catalog.clone());
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        let peer = request.extensions().get::<PeerInfo>().cloned();
        Box::pin(async move {
            let refusal = match authenticate(&authenticator, authorization, peer).await {
                Err(failure) => {
                    tracing::info!(method = %path, reason = failure.label(), "unauthenticated call refused");
                    catalog.auth_failed(failure.label());
                    Status::unauthenticated("missing or invalid credentials: send `authorization: Bearer <token>`")
                }
                Ok(identity) if !identity.roles.permit(needed) => {
                    tracing::info!(method = %path, identity = %identity.name, role = %needed, "call denied");
                    catalog.auth_denied(needed.into());
                    Status::permission_denied(format!(
                        "{path} needs the {needed} role, which {} does not hold",
                        identity.name
                    ))
                }
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    return inner.call(request).await;
                }
            };
            Ok(refusal.into_http())
        })
    }
}
