//! Domain rules of the control plane as plain Rust: rings, the deployment
//! lifecycle state machine and deployment mutations. No I/O, no tonic, no
//! sea-orm: the store persists what these functions decide.

pub mod deployment;
pub mod lifecycle;
pub mod ring;

pub use deployment::{
    ChangeContext, ConnectorType, Deployment, DeploymentError, EventKind, NewDeployment, NewEvent, RingProgress,
    SiteClass,
};
pub use lifecycle::{DeploymentStatus, TransitionError};
pub use ring::Ring;
