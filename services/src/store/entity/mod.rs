//! sea-orm entities: the rows the store reads and writes. Enum columns hold
//! the domain's lower snake case labels; timestamps are UTC.

pub mod calendar_change;
pub mod change_freeze;
pub mod change_window;
pub mod connector;
pub mod connector_change;
pub mod control_change;
pub mod deployment;
pub mod deployment_event;
pub mod dispatch;
pub mod lease;
pub mod promotion;
pub mod request;
pub mod ring_policy;
pub mod ring_policy_change;
pub mod ring_progress;
pub mod risk_model;
pub mod risk_model_event;
