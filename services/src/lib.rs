//! EUCORA control plane server.
//!
//! # Layout
//! - [`domain`]: the `eucora-core` crate — rings, the lifecycle state
//!   machine, deployment rules, gates, breaker, risk (pure: its Cargo
//!   dependencies leave it no I/O).
//! - [`app`]: the use-cases (domain in, domain out, one error); everything
//!   that acts — RPCs, the controller, connector callbacks — goes through it.
//! - [`store`]: sea-orm entities, migrations, the event feed.
//! - [`connectors`]: connector drivers (HTTP, simulator), breakers, retries, dispatch.
//! - [`controller`]: the rollout controller (automatic promotion, rollback, stall flags).
//! - [`alerts`]: stop the line: Alertmanager's webhook pausing deployments.
//! - [`auth`]: identities (bearer tokens), the role each RPC needs, the layer enforcing both.
//! - [`grpc`]: one adapter per gRPC service, validation, conversions.
//! - [`metrics`]: deployment instruments recorded from committed changes.
//! - [`server`]: wiring, health, reflection, graceful shutdown.
//! - [`net`]: listeners with connection caps and idle timeouts.
//! - [`tls`]: TLS (and mTLS) on both listeners from PEM files, reloaded on SIGHUP.
//! - [`clock`]: injectable time for breakers and the controller.
//! - [`deadline`]: the served call's deadline, which bounds database work.
//! - [`config`]: command line and `EUCORA_*` environment settings.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connectors;
pub mod controller;
pub mod coord;
pub mod deadline;
pub use eucora_core as domain;
pub mod grpc;
pub mod metrics;
pub mod net;
pub mod server;
pub mod store;
pub mod tls;
