//! Coordination between replicas sharing one database: which replica runs
//! each background duty ([`leases`]: leases in the database, with fencing
//! tokens checked in the duty's own transactions). A single process holds
//! every lease at once.

pub mod leases;

pub use leases::{LeaseHandle, LeaseKeeper};
