//! The deployment status state machine of DESIGN §2: which transitions are
//! allowed, which statuses are terminal, and the first status of a new
//! deployment.

use crate::Label;
use std::fmt;

/// Lifecycle status of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum DeploymentStatus {
    Pending,
    AwaitingCab,
    Approved,
    Rejected,
    Deploying,
    Completed,
    Failed,
    RolledBack,
}

/// A transition the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a deployment in status {from} cannot move to {to}{hint}", hint = hint(*.from, *.to))]
pub struct TransitionError {
    pub from: DeploymentStatus,
    pub to: DeploymentStatus,
}

fn hint(from: DeploymentStatus, to: DeploymentStatus) -> &'static str {
    match (from, to) {
        (f, _) if f.is_terminal() => " (it is terminal)",
        (_, DeploymentStatus::Approved | DeploymentStatus::Rejected) => " (only AWAITING_CAB deployments go to CAB)",
        (_, DeploymentStatus::Deploying) => " (only APPROVED deployments can start)",
        (_, DeploymentStatus::Completed) => " (only DEPLOYING deployments can complete)",
        _ => "",
    }
}

/// Risk scores above this need a CAB approval (DESIGN §2).
pub const CAB_RISK_THRESHOLD: u8 = 50;

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Completed
                | DeploymentStatus::Failed
                | DeploymentStatus::Rejected
                | DeploymentStatus::RolledBack
        )
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_move_to(self, to: DeploymentStatus) -> bool {
        use DeploymentStatus::*;
        match (self, to) {
            (from, _) if from.is_terminal() => false,
            (Pending, AwaitingCab | Approved) => true,
            (AwaitingCab, Approved | Rejected) => true,
            (Approved, Deploying) => true,
            (Deploying, Completed) => true,
            (_, Failed | RolledBack) => true,
            _ => false,
        }
    }

    /// # Errors
    /// [`TransitionError`] when the state machine forbids `self → to`.
    pub fn check_transition(self, to: DeploymentStatus) -> Result<(), TransitionError> {
        if self.can_move_to(to) { Ok(()) } else { Err(TransitionError { from: self, to }) }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_label().to_ascii_uppercase())
    }
}

/// Whether a risk score needs a CAB approval.
pub fn requires_cab_approval(risk_score: u8) -> bool {
    risk_score > CAB_RISK_THRESHOLD
}

#[cfg(test)]
mod tests {
    use super::DeploymentStatus::*;
    use super::*;
    use proptest::prelude::*;

    /// The complete list of allowed transitions, written out independently of
    /// `can_move_to` so that the two check each other.
    const ALLOWED: &[(DeploymentStatus, DeploymentStatus)] = &[
        (Pending, AwaitingCab),
        (Pending, Approved),
        (Pending, Failed),
        (Pending, RolledBack),
        (AwaitingCab, Approved),
        (AwaitingCab, Rejected),
        (AwaitingCab, Failed),
        (AwaitingCab, RolledBack),
        (Approved, Deploying),
        (Approved, Failed),
        (Approved, RolledBack),
        (Deploying, Completed),
        (Deploying, Failed),
        (Deploying, RolledBack),
    ];

    #[test]
    fn every_pair_is_allowed_exactly_when_listed() {
        for &from in DeploymentStatus::ALL {
            for &to in DeploymentStatus::ALL {
                let listed = ALLOWED.contains(&(from, to));
                assert_eq!(from.can_move_to(to), listed, "{from} -> {to}");
                assert_eq!(from.check_transition(to).is_ok(), listed, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn terminal_statuses_are_the_four_of_design() {
        let terminal: Vec<_> = DeploymentStatus::ALL.iter().copied().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![Rejected, Completed, Failed, RolledBack]);
    }

    #[test]
    fn cab_threshold_is_strictly_above_fifty() {
        assert!(!requires_cab_approval(0));
        assert!(!requires_cab_approval(50));
        assert!(requires_cab_approval(51));
        assert!(requires_cab_approval(100));
    }

    #[test]
    fn errors_explain_the_refusal() {
        let err = Completed.check_transition(Failed).unwrap_err();
        assert_eq!(err.to_string(), "a deployment in status COMPLETED cannot move to FAILED (it is terminal)");
        let err = Approved.check_transition(Rejected).unwrap_err();
        assert!(err.to_string().contains("only AWAITING_CAB"), "{err}");
    }

    #[test]
    fn labels_round_trip() {
        for &status in DeploymentStatus::ALL {
            assert_eq!(DeploymentStatus::from_label(status.as_label()), Some(status));
        }
    }

    fn any_status() -> impl Strategy<Value = DeploymentStatus> {
        proptest::sample::select(DeploymentStatus::ALL.to_vec())
    }

    proptest! {
        /// Any walk through allowed transitions ends in at most a handful of
        /// steps, never leaves a terminal status, and never returns to PENDING.
        #[test]
        fn random_walks_respect_the_machine(steps in proptest::collection::vec(any_status(), 0..32)) {
            let mut current = Pending;
            let mut moves = 0;
            for to in steps {
                let allowed = current.check_transition(to).is_ok();
                if current.is_terminal() {
                    prop_assert!(!allowed);
                }
                if allowed {
                    prop_assert_ne!(to, Pending);
                    current = to;
                    moves += 1;
                }
            }
            // PENDING → AWAITING_CAB → APPROVED → DEPLOYING → terminal is the longest path.
            prop_assert!(moves <= 4);
        }

        #[test]
        fn failing_or_rolling_back_is_allowed_from_every_live_status(from in any_status()) {
            prop_assert_eq!(from.can_move_to(Failed), !from.is_terminal());
            prop_assert_eq!(from.can_move_to(RolledBack), !from.is_terminal());
        }
    }
}
