//! Domain rules of the control plane as plain Rust: rings, the deployment
//! lifecycle state machine, deployment mutations, ring policies and gates,
//! connector definitions, the circuit breaker, risk scoring and the rollout
//! controller's decisions, change windows. No I/O, no tonic, no sea-orm —
//! this crate depends on chrono, uuid, thiserror, serde, strum, humantime,
//! rrule and chrono-tz only, so Cargo keeps it so: the server's store
//! persists what these functions decide. rrule turns chrono's clock on; the
//! domain still never reads it (clippy forbids `Utc::now`), it is given the time.
#![forbid(unsafe_code)]

pub mod audit;
pub mod breaker;
pub mod calendar;
pub mod connector;
pub mod control;
pub mod controller;
pub mod deployment;
pub mod gate;
pub mod lifecycle;
pub mod promotion;
pub mod ring;
pub mod risk;
pub mod window;

pub use audit::{Change, ChangeKind};

/// The lower snake case form of a domain enum — its storage string, its
/// metric label value, its page-token filter — derived once by strum on the
/// enum (`IntoStaticStr`, `EnumString`, `VariantArray` with
/// `serialize_all = "snake_case"`); this trait gives every such enum the same
/// three names for it.
pub trait Label: Copy + Into<&'static str> + std::str::FromStr + strum::VariantArray + 'static {
    /// Every value, in declaration order.
    const ALL: &'static [Self] = Self::VARIANTS;

    fn as_label(self) -> &'static str {
        self.into()
    }

    fn from_label(label: &str) -> Option<Self> {
        label.parse().ok()
    }
}

impl<T> Label for T where T: Copy + Into<&'static str> + std::str::FromStr + strum::VariantArray + 'static {}
pub use deployment::{
    ChangeContext, ConnectorType, Delivery, Deployment, DeploymentError, EventKind, Fence, Handover, MAX_RING_DEVICES,
    NewDeployment, NewEvent, Outcome, RingProgress, SiteClass,
};
pub use gate::{CheckKind, GateCheck, GateEvaluation, RingPolicies, RingPolicy};
pub use lifecycle::{DeploymentStatus, TransitionError};
pub use promotion::{Promotion, PromotionResult};
pub use ring::Ring;

/// Shared test fixtures: example values each test adjusts with struct update syntax.
#[cfg(test)]
pub(crate) mod fixtures {
    use uuid::Uuid;

    use crate::risk::Evidence;
    use crate::{ConnectorType, NewDeployment, Ring, SiteClass};

    impl NewDeployment {
        /// An ordinary request: firefox 128.0 through Intune to GLOBAL for
        /// online sites, risk 10, submitted by alice.
        pub fn example() -> NewDeployment {
            NewDeployment {
                app_name: "firefox".into(),
                version: "128.0".into(),
                connector_type: ConnectorType::Intune,
                connector_name: None,
                target_ring: Ring::Global,
                risk_score: 10,
                evidence_pack_id: Uuid::new_v4(),
                submitter: "alice".into(),
                site_class: SiteClass::Online,
                evidence: Evidence::default(),
                assessment: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels<T: Copy + Into<&'static str>>(all: &[T]) -> Vec<&'static str> {
        all.iter().map(|&value| value.into()).collect()
    }

    /// The lower snake case labels are a public contract: storage, metric
    /// labels (DESIGN §4) and page tokens use them.
    #[test]
    fn labels_are_the_contract() {
        assert_eq!(labels(Ring::ALL), ["lab", "canary", "pilot", "department", "global"]);
        assert_eq!(
            labels(DeploymentStatus::ALL),
            ["pending", "awaiting_cab", "approved", "rejected", "deploying", "completed", "failed", "rolled_back"]
        );
        assert_eq!(labels(ConnectorType::ALL), ["intune", "jamf", "sccm", "landscape", "ansible"]);
        assert_eq!(labels(PromotionResult::ALL), ["promoted", "blocked", "rolled_back"]);
        assert_eq!(labels(SiteClass::ALL), ["online", "intermittent", "air_gapped"]);
        assert_eq!(
            labels(<CheckKind as strum::VariantArray>::VARIANTS),
            [
                "success_rate",
                "sample_size",
                "time_to_compliance",
                "cab_approval",
                "evidence_pack",
                "rollback_validated",
                "window"
            ]
        );
        assert_eq!(labels(<breaker::BreakerState as strum::VariantArray>::VARIANTS), ["closed", "open", "half_open"]);
        for &ring in Ring::ALL {
            assert_eq!(Ring::from_label(ring.as_label()), Some(ring));
        }
        assert_eq!(Ring::from_label("LAB"), None, "labels are exact");
    }
}
