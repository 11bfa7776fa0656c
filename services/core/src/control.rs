//! Dual control ("four eyes") over changes that weaken a safety control:
//! which changes weaken one ([`policy_weakenings`], [`threshold_weakening`]),
//! and the life of such a change — proposed by one admin, applied only when
//! another approves it within [`PROPOSAL_LIFETIME`], or rejected (its
//! proposer may withdraw it), or superseded when what it changes moved on.
//! Break-glass (a held promotion made anyway) is such a change too.

use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

use crate::gate::RingPolicy;
use crate::ring::Ring;

/// How long a proposal waits for its second admin.
pub const PROPOSAL_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What a control change changes.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlSubject {
    /// A ring policy update: the policy when proposed, and as proposed.
    RingPolicy { before: Box<RingPolicy>, after: Box<RingPolicy> },
    /// Activating a risk model with a higher CAB threshold than the active one.
    RiskModelActivation { active_version: Option<i32>, version: i32 },
    /// Break-glass: promoting a deployment one step out of `from_ring` although
    /// its gate or the change calendar holds it. Approving it promotes.
    BreakGlass { deployment_id: Uuid, from_ring: Ring },
}

/// Where a control change stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum ControlState {
    /// Waiting for a second admin.
    Pending,
    /// Approved by a second admin, and applied.
    Approved,
    /// Rejected by an admin, or withdrawn by its proposer.
    Rejected,
    /// Not approved within [`PROPOSAL_LIFETIME`].
    Expired,
    /// What it changes changed in between: it would no longer do what was approved.
    Superseded,
}

/// A change that weakens a control, and its decision.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlChange {
    pub id: Uuid,
    pub subject: ControlSubject,
    /// What weakens, one line each, e.g. `min_success_rate 0.98 → 0.5`.
    pub weakenings: Vec<String>,
    /// As stored; [`ControlChange::state_at`] tells whether it expired.
    pub state: ControlState,
    pub proposed_by: String,
    pub reason: String,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decision_reason: String,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Why a control change cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("separation of duties: {0} proposed this change, so another admin must approve it")]
    OwnProposal(String),
    #[error("the change is {0}, not pending")]
    NotPending(ControlState),
}

/// A decision on a pending change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

impl ControlChange {
    /// A new pending change `id` proposed by `proposed_by` at `now`.
    pub fn propose(
        id: Uuid,
        subject: ControlSubject,
        weakenings: Vec<String>,
        proposed_by: &str,
        reason: &str,
        correlation_id: &str,
        now: DateTime<Utc>,
    ) -> ControlChange {
        ControlChange {
            id,
            subject,
            weakenings,
            state: ControlState::Pending,
            proposed_by: proposed_by.to_owned(),
            reason: reason.to_owned(),
            correlation_id: correlation_id.to_owned(),
            created_at: now,
            expires_at: now + PROPOSAL_LIFETIME,
            decided_by: None,
            decision_reason: String::new(),
            decided_at: None,
        }
    }

    /// The state as of `now`: a pending change past its lifetime has expired.
    pub fn state_at(&self, now: DateTime<Utc>) -> ControlState {
        match self.state {
            ControlState::Pending if now >= self.expires_at => ControlState::Expired,
            state => state,
        }
    }

    /// Records `decision` by `decider`: approving needs another identity
    /// than the proposer's; rejecting is open to the proposer (withdrawing).
    ///
    /// # Errors
    /// The change is not pending (decided, expired), or its proposer approves it.
    pub fn decide(
        &mut self,
        decision: Decision,
        decider: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), ControlError> {
        let state = self.state_at(now);
        if state != ControlState::Pending {
            return Err(ControlError::NotPending(state));
        }
        if decision == Decision::Approve && decider == self.proposed_by {
            return Err(ControlError::OwnProposal(self.proposed_by.clone()));
        }
        self.state = match decision {
            Decision::Approve => ControlState::Approved,
            Decision::Reject => ControlState::Rejected,
        };
        self.decided_by = Some(decider.to_owned());
        self.decision_reason = reason.to_owned();
        self.decided_at = Some(now);
        Ok(())
    }
}

/// What `after` weakens compared with `before`, one line each; empty when
/// the update tightens or keeps every control. A gate that passes more
/// easily, a rollback that fires later, a requirement dropped, a shorter
/// bake, promotion without a person, or more time allowed to comply.
pub fn policy_weakenings(before: &RingPolicy, after: &RingPolicy) -> Vec<String> {
    let mut weaker = Vec::new();
    let mut lower = |name: &str, was: f64, now: f64| {
        if now < was {
            weaker.push(format!("{name} {was} → {now}"));
        }
    };
    lower("min_success_rate", before.min_success_rate, after.min_success_rate);
    #[allow(clippy::cast_precision_loss)] // sample sizes are capped far below 2^52
    lower("min_sample_size", before.min_sample_size as f64, after.min_sample_size as f64);
    let mut longer = |name: &str, was: Duration, now: Duration| {
        if now > was {
            weaker.push(format!("{name} {} → {}", humantime::format_duration(was), humantime::format_duration(now)));
        }
    };
    longer("online_compliance_limit", before.online_compliance_limit, after.online_compliance_limit);
    longer("intermittent_compliance_limit", before.intermittent_compliance_limit, after.intermittent_compliance_limit);
    longer("air_gapped_compliance_limit", before.air_gapped_compliance_limit, after.air_gapped_compliance_limit);
    if after.bake_time < before.bake_time {
        weaker.push(format!(
            "bake_time {} → {}",
            humantime::format_duration(before.bake_time),
            humantime::format_duration(after.bake_time)
        ));
    }
    let mut dropped = |name: &str, was: bool, now: bool| {
        if was && !now {
            weaker.push(format!("{name} true → false"));
        }
    };
    dropped("require_cab_approval", before.require_cab_approval, after.require_cab_approval);
    dropped("require_evidence_pack", before.require_evidence_pack, after.require_evidence_pack);
    dropped("require_rollback_validated", before.require_rollback_validated, after.require_rollback_validated);
    if after.auto_promote && !before.auto_promote {
        weaker.push("auto_promote false → true".to_owned());
    }
    if after.rollback_failure_rate > before.rollback_failure_rate {
        weaker
            .push(format!("rollback_failure_rate {} → {}", before.rollback_failure_rate, after.rollback_failure_rate));
    }
    if after.rollback_min_sample > before.rollback_min_sample {
        weaker.push(format!("rollback_min_sample {} → {}", before.rollback_min_sample, after.rollback_min_sample));
    }
    weaker
}

/// The weakening of activating a model with CAB threshold `candidate` over
/// the active one's `active`: a higher threshold sends fewer deployments to
/// CAB.
pub fn threshold_weakening(active: u8, candidate: u8) -> Option<String> {
    (candidate > active).then(|| format!("cab threshold {active} → {candidate}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn policy() -> RingPolicy {
        RingPolicy::default_for(Ring::Canary, at(0))
    }

    #[test]
    fn tightening_or_keeping_a_policy_weakens_nothing() {
        let before = policy();
        assert!(policy_weakenings(&before, &before).is_empty());
        let tighter = RingPolicy {
            min_success_rate: 0.999,
            min_sample_size: before.min_sample_size + 10,
            bake_time: before.bake_time * 2,
            require_evidence_pack: true,
            auto_promote: false,
            rollback_failure_rate: before.rollback_failure_rate / 2.0,
            stall_timeout: before.stall_timeout * 3,
            ..before.clone()
        };
        assert!(policy_weakenings(&before, &tighter).is_empty());
    }

    #[test]
    fn each_weakening_is_named() {
        let before = RingPolicy { auto_promote: false, require_cab_approval: true, ..policy() };
        let cases: Vec<(RingPolicy, &str)> = vec![
            (RingPolicy { min_success_rate: 0.5, ..before.clone() }, "min_success_rate 0.98 → 0.5"),
            (RingPolicy { min_sample_size: 1, ..before.clone() }, "min_sample_size"),
            (RingPolicy { bake_time: Duration::ZERO, ..before.clone() }, "bake_time 1day → 0s"),
            (RingPolicy { require_cab_approval: false, ..before.clone() }, "require_cab_approval true → false"),
            (RingPolicy { auto_promote: true, ..before.clone() }, "auto_promote false → true"),
            (RingPolicy { rollback_failure_rate: 1.0, ..before.clone() }, "rollback_failure_rate"),
            (RingPolicy { rollback_min_sample: 1_000_000, ..before.clone() }, "rollback_min_sample"),
            (
                RingPolicy { online_compliance_limit: before.online_compliance_limit * 10, ..before.clone() },
                "online_compliance_limit",
            ),
        ];
        for (after, expected) in cases {
            let weaker = policy_weakenings(&before, &after);
            assert_eq!(weaker.len(), 1, "{expected}: {weaker:?}");
            assert!(weaker[0].starts_with(expected), "{expected}: {weaker:?}");
        }
    }

    #[test]
    fn a_higher_cab_threshold_weakens() {
        assert_eq!(threshold_weakening(50, 100).as_deref(), Some("cab threshold 50 → 100"));
        assert_eq!(threshold_weakening(50, 50), None);
        assert_eq!(threshold_weakening(50, 30), None);
    }

    fn proposal() -> ControlChange {
        let subject = ControlSubject::RiskModelActivation { active_version: Some(1), version: 2 };
        ControlChange::propose(
            Uuid::nil(),
            subject,
            vec!["cab threshold 50 → 90".into()],
            "carol",
            "quarter end",
            "c-1",
            at(0),
        )
    }

    #[test]
    fn a_second_admin_approves_within_the_lifetime() {
        let mut own = proposal();
        assert_eq!(own.decide(Decision::Approve, "carol", "", at(60)), Err(ControlError::OwnProposal("carol".into())));
        assert_eq!(own.state, ControlState::Pending, "a refused decision changes nothing");
        own.decide(Decision::Approve, "dave", "checked with CAB", at(60)).unwrap();
        assert_eq!((own.state, own.decided_by.as_deref()), (ControlState::Approved, Some("dave")));
        assert_eq!(
            own.decide(Decision::Reject, "erin", "", at(61)),
            Err(ControlError::NotPending(ControlState::Approved))
        );

        let mut withdrawn = proposal();
        withdrawn.decide(Decision::Reject, "carol", "typo", at(10)).unwrap();
        assert_eq!(withdrawn.state, ControlState::Rejected, "the proposer may withdraw");

        let mut late = proposal();
        let lifetime = i64::try_from(PROPOSAL_LIFETIME.as_secs()).unwrap();
        assert_eq!(late.state_at(at(lifetime - 1)), ControlState::Pending);
        assert_eq!(late.state_at(at(lifetime)), ControlState::Expired);
        assert_eq!(
            late.decide(Decision::Approve, "dave", "", at(lifetime)),
            Err(ControlError::NotPending(ControlState::Expired))
        );
    }
}
