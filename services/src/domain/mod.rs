//! Domain rules of the control plane as plain Rust: rings, the deployment
//! lifecycle state machine, deployment mutations, ring policies and gates,
//! connector definitions and the circuit breaker. No I/O, no tonic, no
//! sea-orm: the store persists what these functions decide.

pub mod audit;
pub mod breaker;
pub mod connector;
pub mod controller;
pub mod deployment;
pub mod gate;
pub mod lifecycle;
pub mod promotion;
pub mod ring;
pub mod risk;

pub use audit::{Change, ChangeKind};
pub use deployment::{
    ChangeContext, ConnectorType, Delivery, Deployment, DeploymentError, EventKind, Handover, MAX_RING_DEVICES,
    NewDeployment, NewEvent, Outcome, RingProgress, SiteClass,
};
pub use gate::{CheckKind, GateCheck, GateEvaluation, RingPolicy};
pub use lifecycle::{DeploymentStatus, TransitionError};
pub use promotion::{Promotion, PromotionResult};
pub use ring::Ring;
