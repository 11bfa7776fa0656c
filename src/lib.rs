//! EUCORA API contract: the generated gRPC stubs (clients and servers) of
//! package `eucora.v1` and its encoded file descriptor set.
//!
//! A client needs only this crate to call the control plane:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use eucora::v1::{deployment_service_client::DeploymentServiceClient, GetDeploymentRequest};
//! let mut client = DeploymentServiceClient::connect("http://127.0.0.1:50051").await?;
//! let request = GetDeploymentRequest { deployment_id: "3f0c…".into() };
//! let _ = client.get_deployment(request).await;
//! # Ok(()) }
//! ```
//!
//! Calls carry a bearer token ([`auth::Bearer`]): the server's auth file
//! names who holds it and with which roles.
//!
//! # Layout
//! - [`v1`]: messages, enums, `*_client` and `*_server` modules generated from `proto/eucora/v1`.
//! - [`auth`]: the interceptor that adds a bearer token to every call.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server reflection.
#![forbid(unsafe_code)]

pub use prost;
pub use prost_types;
pub use tonic;

/// Generated code of package `eucora.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("eucora.v1");
}

/// Client-side credentials: every call to the control plane but grpc.health
/// and reflection carries a bearer token.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eucora::auth::Bearer;
/// use eucora::v1::deployment_service_client::DeploymentServiceClient;
/// let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect().await?;
/// let mut client = DeploymentServiceClient::with_interceptor(channel, Bearer::new("dev-alice")?);
/// # Ok(()) }
/// ```
pub mod auth {
    use tonic::metadata::{Ascii, MetadataValue};
    use tonic::service::Interceptor;
    use tonic::{Request, Status};

    /// Adds `authorization: Bearer <token>` to every call.
    #[derive(Clone)]
    pub struct Bearer(MetadataValue<Ascii>);

    impl Bearer {
        /// # Errors
        /// The token is not a valid header value.
        pub fn new(token: &str) -> Result<Bearer, tonic::metadata::errors::InvalidMetadataValue> {
            Ok(Bearer(format!("Bearer {token}").parse()?))
        }
    }

    impl std::fmt::Debug for Bearer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // The token is a secret: never in logs or panics.
            f.write_str("Bearer(…)")
        }
    }

    impl Interceptor for Bearer {
        fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
            request.metadata_mut().insert("authorization", self.0.clone());
            Ok(request)
        }
    }

    /// A channel whose calls carry a bearer token.
    pub type Authenticated<C = tonic::transport::Channel> = tonic::service::interceptor::InterceptedService<C, Bearer>;
}

/// Encoded `FileDescriptorSet` of every file under `proto/`, including the
/// well-known types they import, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/eucora_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_decodes_and_names_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let services: Vec<String> = set
            .file
            .iter()
            .filter(|f| f.package() == "eucora.v1")
            .flat_map(|f| f.service.iter().map(|s| s.name().to_owned()))
            .collect();
        for expected in ["DeploymentService", "RingPromotionService", "ConnectorService", "RiskModelService"] {
            assert!(services.iter().any(|s| s == expected), "{expected} missing from {services:?}");
        }
    }
}
