//! gRPC adapters: one file per service (validate → domain/store → `to_proto`),
//! plus the pieces they share: request validation, page tokens, enum and
//! message conversion, and the correlation-id layer.

pub mod convert;
pub mod correlation;
pub mod deployment;
pub mod page_token;
pub mod validate;
